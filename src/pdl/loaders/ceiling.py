"""The ceiling: what this machine can give this work in parallel, measured, not assumed.

``num_workers`` independent copies of the sequential loop, each in its own process, each over an equal share of
the epoch's images (cut into batches of the batch size), started together: no queues, no shared memory, no hand-off to
the main process; each copy reads, decodes, augments and collates its batches exactly as the sequential loader
does, and drops them. Timed in the same interleaved rounds as the loaders, its speedup over the sequential loop
is the most any loader can reach here for that work: cores that share memory bandwidth, caches, a turbo budget or
SMT siblings give less than their count. A loader's share of it says whether the loader or the machine is the
limit.

Its "batches" are only counts (one empty batch per copy, holding the indices it made): nothing to compare.

A copy says when each of its batches is made (a few bytes a batch), so progress.py's rule names a copy that
stalls: it is killed and a fresh copy makes the rest of its share; the stall is in ``stalls()``, so the round is
measured again. Past ``REPLACEMENTS`` per copy, the epoch ends in an error naming it. Without `timeout`, no wait
is longer than the watchdog's bound without a batch made (watchdog.py).
"""

from __future__ import annotations

import multiprocessing as mp
import time
import warnings
from collections.abc import Iterator
from multiprocessing import connection
from typing import Any

import numpy as np

from ..data.pipeline import Pipeline
from ..data.protocol import Dataset, check_picklable
from ..errors import LoaderTimeoutError, PdlWarning, WorkerDiedError, worker_error
from ..machine.host import default_start_method
from .base import Loader
from .batching import Batch, epoch_plan, make_batch
from .forking import forking, worker_started
from .progress import Progress
from .spec import LoaderSpec
from .watchdog import Watchdog

START_TIMEOUT_S = 60.0
STALL_CHECK_S = 1.0  # a wait for the copies looks at their progress this often
KILL_WAIT_S = 2.0  # for a killed copy to be seen dead
REPLACEMENTS = 2  # stalled copies replaced per copy, over the loader's life


def copy_loop(k: int, n: int, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec, conn: connection.Connection) -> None:
    """Copy ``k`` of ``n``: for each (epoch, first batch) asked for, the sequential loop over the k-th of n equal
    shares of the epoch's images, from that batch on; says each batch's indices and seconds, then that it is done
    (or the error)."""
    worker_started()
    conn.send(("ready", None, 0.0))
    while True:
        asked = conn.recv()
        if asked is None:
            return
        epoch, first = asked
        try:
            plan = epoch_plan(len(dataset), spec, epoch)
            order = np.concatenate(plan) if plan else np.zeros(0, np.int64)
            share = np.array_split(order, n)[k]  # an equal share of the epoch's images, cut into batches as the loop does
            for start in range(first * spec.batch_size, len(share), spec.batch_size):
                t0 = time.perf_counter()
                batch = make_batch(dataset, pipeline, share[start : start + spec.batch_size], epoch, spec)
                conn.send(("batch", batch.indices, time.perf_counter() - t0))
                del batch
            conn.send(("done", None, 0.0))
        except Exception as exc:
            conn.send(("failed", worker_error(exc, None, "making a batch of the ceiling"), 0.0))


class CeilingLoader(Loader):
    """N copies of the sequential loop at once (``num_workers``): the measured bound of any loader here."""

    name = "ceiling"
    min_workers = 1

    def __init__(self, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec | None = None, **options: Any) -> None:
        super().__init__(dataset, pipeline, spec, **options)
        self.start_method: str = self.spec.start_method or default_start_method()
        self._procs: list[Any] = []
        self._conns: list[Any] = []
        self._started = False
        self._progress = Progress([])  # each copy's last batch: a stalled one is named (progress.py)
        self._replaced = [0] * self.num_workers
        self.watchdog = Watchdog()  # without `timeout`: how long a wait without a batch made may last

    @property
    def worker_pids(self) -> list[int]:
        return [p.pid for p in self._procs if p is not None and p.pid is not None]

    def stalls(self) -> tuple[str, ...]:
        """The copies named stalled (and replaced) since the last call."""
        return self._progress.take()

    def start(self) -> None:
        self._check_open()
        if self._started:
            return
        self._started = True
        try:
            check_picklable(self.dataset, self.start_method)
            self._procs, self._conns = [None] * self.num_workers, [None] * self.num_workers
            with forking(self.start_method, self.pipeline):
                for k in range(self.num_workers):
                    self._spawn(k)
            for k in range(self.num_workers):
                self._ready(k)
            self._progress = Progress(self.worker_pids)
        except BaseException:
            self.close()
            raise

    def _spawn(self, k: int) -> None:
        """Start copy ``k`` (inside ``forking``), in its place."""
        ctx: Any = mp.get_context(self.start_method)
        mine, theirs = ctx.Pipe()
        args = (k, self.num_workers, self.dataset, self.pipeline, self.spec, theirs)
        proc = ctx.Process(target=copy_loop, args=args, name=f"pdl-ceiling-{k}", daemon=True)
        proc.start()
        theirs.close()
        self._procs[k], self._conns[k] = proc, mine

    def _ready(self, k: int) -> None:
        """Wait for copy ``k`` to say it started, at most START_TIMEOUT_S."""
        if not connection.wait([self._conns[k], self._procs[k].sentinel], START_TIMEOUT_S):
            raise LoaderTimeoutError(f"copy {k} of the ceiling did not start within {START_TIMEOUT_S:g} s")
        self._reply(k)

    def _reply(self, k: int) -> tuple[str, Any, float]:
        """Copy ``k``'s next message; a dead copy or one that failed raises."""
        try:
            kind, payload, seconds = self._conns[k].recv()
        except (EOFError, OSError):
            proc = self._procs[k]
            proc.join(1.0)
            raise WorkerDiedError(f"copy {k} of the ceiling (pid {proc.pid}) died: exit code {proc.exitcode}") from None
        if kind == "failed":
            raise payload
        return kind, payload, seconds

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        for conn in self._conns:
            conn.send((epoch, 0))
        made: list[list[np.ndarray]] = [[] for _ in self._conns]
        done: set[int] = set()
        progress = self._progress
        progress.retired.clear()
        progress.working(None)
        deadline = None if self.spec.timeout is None else time.monotonic() + self.spec.timeout
        last = time.monotonic()  # when a copy last made a batch: the watchdog's bound runs from there
        while len(done) < len(self._conns):
            end = deadline if deadline is not None else last + self.watchdog.bound_s
            waiting = [(k, c) for k, c in enumerate(self._conns) if k not in done]
            ready = connection.wait([c for _, c in waiting], min(STALL_CHECK_S, max(0.0, end - time.monotonic())))
            for k, conn in waiting:
                if conn not in ready:
                    continue
                kind, indices, seconds = self._reply(k)
                last = time.monotonic()
                if kind == "done":
                    done.add(k)
                    progress.retired.add(k)  # its share is made: idle, not stalled
                else:
                    made[k].append(indices)
                    progress.done(k, seconds)
                    self.watchdog.saw(seconds)
            for k, said in progress.check_workers():
                self._redo(k, said, epoch, len(made[k]))
            if not ready and time.monotonic() >= (deadline if deadline is not None else last + self.watchdog.bound_s):
                waited = f"epoch {epoch} (copies {sorted(set(range(len(self._conns))) - done)} not done)"
                if deadline is None:
                    stalled = "; ".join(progress.named.values())
                    raise self.watchdog.expired("the ceiling", waited, "batch", stalled)
                raise LoaderTimeoutError(f"the ceiling's copies did not answer within the timeout while waiting for {waited}")
        progress.idle()
        for indices in made:
            kept = np.concatenate(indices) if indices else np.zeros(0, np.int64)
            yield Batch(np.zeros((len(kept), 0, 0, 0), np.uint8), np.zeros(len(kept), np.int64), kept)

    def _redo(self, k: int, said: str, epoch: int, made: int) -> None:
        """Stalled copy ``k``: killed, and a fresh copy makes the rest of its share (from batch ``made``)."""
        lost = self._progress.idle_s(k)
        proc = self._procs[k]
        proc.kill()
        proc.join(KILL_WAIT_S)
        self._conns[k].close()
        if self._replaced[k] >= REPLACEMENTS:
            raise WorkerDiedError(f"the ceiling: {said}; ended (SIGKILL), {REPLACEMENTS} times already: giving up")
        self._replaced[k] += 1
        with forking(self.start_method, self.pipeline):
            self._spawn(k)
        self._ready(k)
        self._conns[k].send((epoch, made))
        line = (
            f"copy {k} of the ceiling{said.removeprefix(f'worker {k}')}; ended (SIGKILL) and replaced by pid "
            f"{self._procs[k].pid}: the rest of its share made by the new copy, {lost:.1f} s lost"
        )
        self._progress.replace(k, self._procs[k].pid, line)
        warnings.warn(PdlWarning(line), stacklevel=4)

    def _shutdown(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass
        deadline = time.monotonic() + 2.0
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
                proc.join(2.0)
        for conn in self._conns:
            conn.close()
        self._procs, self._conns = [], []
