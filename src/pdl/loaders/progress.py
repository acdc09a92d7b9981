"""Each worker's progress: which one finished nothing for a while, and what its process is doing (stopped, in
uninterruptible sleep), so a stalled worker is named, not averaged into a noisy speedup.

A worker is stalled when it finished nothing for ``stall_s`` (at least ``STALL_MIN_S``, and ``STALL_CHUNKS``
times the longest chunk seen, so a slow pipeline's long chunks are not taken for a stall) and either the other
workers finished ``STALL_OTHERS`` chunks each meanwhile while a chunk was outstanding for every worker all along
(a stopped worker that held no chunk lets the others carry on; with fewer chunks than workers, as under a slow
training step, one worker may take them all and the other is only idle) or, with work outstanding, the OS says its process is stopped or in
uninterruptible sleep. The clock is injected for the tests; the OS state is read through ``process_state``, looked
up when called (a test may replace it). A worker ended and replaced is forgotten (``replace``), its line kept for
``take``; one the loader goes on without is retired.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

STALL_MIN_S = 2.0
STALL_CHUNKS = 10  # a worker may take this many of the longest chunks seen before it counts as stalled
STALL_OTHERS = 3  # chunks per worker the others finish while it finishes none
STATES = {
    "stopped": "is stopped (T)",
    "tracing-stop": "is stopped by a tracer (t)",
    "disk-sleep": "is in uninterruptible sleep (D)",
}
STOPPED = {STATES["stopped"], STATES["tracing-stop"]}


def process_state(pid: int) -> str | None:
    """What the OS says of ``pid`` when that explains a stall ('is stopped (T)'); None otherwise or unknown."""
    import psutil

    try:
        return STATES.get(psutil.Process(pid).status())
    except (psutil.Error, OSError):
        return None


def _os_state(pid: int) -> str | None:
    return process_state(pid)  # the module's, when called: a test replaces it


class Progress:
    """Per worker: when it last finished a chunk, and how many chunks every worker finished since."""

    def __init__(
        self,
        pids: Sequence[int],
        clock: Callable[[], float] = time.monotonic,
        state: Callable[[int], str | None] | None = None,
    ) -> None:
        self.pids = list(pids)
        self.clock = clock
        self.state = state if state is not None else _os_state
        now = clock()
        self.last = [now] * len(self.pids)  # when each last finished a chunk (or when work became available)
        self.total = 0  # chunks finished by all workers
        self.total_at = [0] * len(self.pids)  # ``total`` at each worker's ``last``
        self.since: float | None = None  # when the outstanding work began; None while none is outstanding
        self.backlog: float | None = None  # since when a chunk has been outstanding for every worker, or None
        self.longest = 0.0  # the longest chunk seen, seconds
        self.named: dict[int, str] = {}  # stalls named since ``take``
        self.said: list[str] = []  # stalls of workers since replaced, for ``take``
        self.retired: set[int] = set()  # workers the loader goes on without: never named

    def working(self, outstanding: int | None = None) -> None:
        """Work was handed out (``outstanding`` chunks now; None: unknown, taken as one for every worker): from now
        on, a worker that finishes nothing is idle with work to take."""
        if self.since is None:
            self.since = self.clock()
        self._count(outstanding)

    def idle(self) -> None:
        """Nothing is outstanding: no worker can be stalled."""
        self.since = self.backlog = None

    def done(self, wid: int, seconds: float, outstanding: int | None = None) -> None:
        self.total += 1
        self.last[wid], self.total_at[wid] = self.clock(), self.total
        self.longest = max(self.longest, seconds)
        self._count(outstanding)

    def _count(self, outstanding: int | None) -> None:
        """A backlog is a chunk outstanding for every worker: only then must an idle worker have had one to take.
        With fewer (a slow consumer, one chunk at a time) one worker may take them all, and the other is not stalled."""
        if outstanding is not None and outstanding < len(self.pids) - len(self.retired):
            self.backlog = None
        elif self.backlog is None:
            self.backlog = self.clock()

    @property
    def stall_s(self) -> float:
        return max(STALL_MIN_S, STALL_CHUNKS * self.longest)

    def check(self) -> list[str]:
        """The workers stalled now, each named once until ``take``: 'worker 1 (pid 1234) is stopped (T): finished
        nothing for 12 s while the others finished 40 chunks'. Returns the newly named ones."""
        return [said for _, said in self.check_workers()]

    def check_workers(self) -> list[tuple[int, str]]:
        """``check``, each line with its worker's number."""
        now, new = self.clock(), []
        workers = len(self.pids) - len(self.retired)
        for wid, pid in enumerate(self.pids):
            idle = now - self.last[wid] if self.since is None else now - max(self.last[wid], min(self.since, now))
            others = self.total - self.total_at[wid]
            if wid in self.named or wid in self.retired or now - self.last[wid] < self.stall_s:
                continue
            # the others kept working, this one did not, though there was a chunk for it all along
            backlog = self.backlog is not None and now - max(self.backlog, self.last[wid]) >= self.stall_s
            carried_on = others >= STALL_OTHERS * workers and backlog
            if not carried_on and self.since is None:
                continue  # nothing to take: no stall, whatever the OS says
            state = self.state(pid)
            if not carried_on and (state is None or (idle < self.stall_s and state not in STOPPED)):
                # every worker waits alike (the work itself is slow), or work came too lately for a moment in D (a
                # plain read) to count; a stopped worker with work to take is stalled however lately it came: a
                # short epoch (the work comes and goes between epochs) would otherwise never show it
                continue
            said = f"worker {wid} (pid {pid}) {state or 'made no progress'}" + (
                f": finished nothing for {round(idle, 1):g} s while the others finished {others} chunks"
                if idle >= self.stall_s or carried_on
                else f", with work waiting for it ({round(idle, 1):g} s)"  # stopped, found as soon as work came
            )
            self.named[wid] = said
            new.append((wid, said))
        return new

    def idle_s(self, wid: int) -> float:
        """How long worker ``wid`` has finished nothing while there was work (since its last chunk, or since work
        came, whichever is later): the time it cost."""
        now = self.clock()
        return now - max(self.last[wid], min(self.since, now)) if self.since is not None else now - self.last[wid]

    def replace(self, wid: int, pid: int | None, said: str) -> None:
        """Worker ``wid`` was ended: ``said`` is its stall, in full, for ``take``; ``pid`` the worker that replaces it
        (None: none does, the loader goes on without it)."""
        self.named.pop(wid, None)
        self.said.append(said)
        if pid is None:
            self.retired.add(wid)
            return
        self.pids[wid] = pid
        self.last[wid], self.total_at[wid] = self.clock(), self.total

    def overdue(self, limit_s: float) -> str | None:
        """A named stalled worker that has now finished nothing for ``limit_s`` or more (the loader's timeout), in
        words; None when none has."""
        now = self.clock()
        for wid in self.named:
            idle = now - self.last[wid]
            if idle >= limit_s:
                state = self.state(self.pids[wid]) or "made no progress"
                return f"worker {wid} (pid {self.pids[wid]}) {state}: finished nothing for {idle:.0f} s, past the timeout of {limit_s:g} s"
        return None

    def take(self) -> tuple[str, ...]:
        """The stalls named since the last ``take`` (a round's), and forget them."""
        named = (*self.said, *self.named.values())
        self.said, self.named = [], {}
        return named
