"""The ceiling: what this machine can give this work in parallel, measured, not assumed.

``num_workers`` copies of the sequential loop, each in its own process, started together, sharing the epoch's
images: each copy claims the next chunk of the epoch's order from a counter in shared memory (a lock and an add,
no message to the main process), reads, decodes, augments and collates it exactly as the sequential loader does,
and drops it. No queues of images, no shared-memory batches, no hand-off to the main process. Equal shares by count
were the first design: on real photos of mixed sizes one copy drew the large ones and the rest waited, so the
ceiling moved 30% between runs (1.82× then 1.40×, heavy, 2 copies) and a loader that balances its chunks read
above it; copies that take the next chunk when free end within a chunk of each other, whatever the images cost.
A chunk is a 16th of a copy's share (at most a batch), so the last one costs little; one copy makes whole batches.

Timed in the same interleaved rounds as the loaders, its speedup over the sequential loop is the most any loader
can reach here for that work: cores that share memory bandwidth, caches, a turbo budget or SMT siblings give less
than their count. A loader's share of it says whether the loader or the machine is the limit.

Its "batches" are only counts (one empty batch per copy, holding the indices it made): nothing to compare.

A copy says which chunk it claims and when it has made it (a few bytes each), so progress.py's rule names a copy
that stalls: it is killed, and a fresh copy makes the chunk it held, then claims on; the stall is in ``stalls()``,
so the round is measured again. Past ``REPLACEMENTS`` per copy, the epoch ends in an error naming it. Without
`timeout`, no wait is longer than the watchdog's bound without a chunk made (watchdog.py).
"""

from __future__ import annotations

import math
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


CHUNKS_PER_COPY = 16  # a copy's share in this many claims: the last one leaves the others little to wait for


def chunk_size(images: int, copies: int, batch_size: int) -> int:
    """Images per claim: whole batches for one copy (exactly the sequential loop); else a 16th of a copy's share,
    at most a batch."""
    if copies <= 1:
        return batch_size
    return max(1, min(batch_size, math.ceil(images / (copies * CHUNKS_PER_COPY))))


def copy_loop(k: int, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec, counter: Any, conn: connection.Connection) -> None:
    """Copy ``k``: for each (epoch, chunk size, chunks to redo) asked for, the sequential loop over the chunks it
    redoes, then over the chunks it claims from ``counter`` until the epoch's order is used up; says each chunk it
    claims and each it has made (its indices and seconds), then that it is done (or the error)."""
    worker_started()
    conn.send(("ready", None, 0.0))
    while True:
        asked = conn.recv()
        if asked is None:
            return
        epoch, size, redo = asked
        try:
            plan = epoch_plan(len(dataset), spec, epoch)
            order = np.concatenate(plan) if plan else np.zeros(0, np.int64)
            chunks = math.ceil(len(order) / size)
            for j in _claims(counter, chunks, redo):
                conn.send(("claim", j, 0.0))
                t0 = time.perf_counter()
                batch = make_batch(dataset, pipeline, order[j * size : (j + 1) * size], epoch, spec)
                conn.send(("batch", batch.indices, time.perf_counter() - t0))
                del batch
            conn.send(("done", None, 0.0))
        except Exception as exc:
            conn.send(("failed", worker_error(exc, None, "making a batch of the ceiling"), 0.0))


def _claims(counter: Any, chunks: int, redo: list[int]) -> Iterator[int]:
    """The chunks to redo, then each next one no copy has claimed yet."""
    yield from redo
    while True:
        with counter.get_lock():
            j = counter.value
            counter.value = j + 1
        if j >= chunks:
            return
        yield j


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
        self._counter: Any = None  # the next chunk of the epoch's order no copy has claimed (shared memory)
        self._held: list[int | None] = [None] * self.num_workers  # the chunk each copy claimed and has not made
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
            self._counter = mp.get_context(self.start_method).Value("q", 0)
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
        args = (k, self.dataset, self.pipeline, self.spec, self._counter, theirs)
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
        images = sum(len(b) for b in epoch_plan(len(self.dataset), self.spec, epoch))
        size = chunk_size(images, self.num_workers, self.spec.batch_size)
        with self._counter.get_lock():
            self._counter.value = 0
        self._held = [None] * self.num_workers
        for conn in self._conns:
            conn.send((epoch, size, []))
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
                if kind == "claim":
                    self._held[k] = indices
                    continue
                if kind == "done":
                    done.add(k)
                    progress.retired.add(k)  # nothing left to claim: idle, not stalled
                else:
                    self._held[k] = None
                    made[k].append(indices)
                    progress.done(k, seconds)
                    self.watchdog.saw(seconds)
            for k, said in progress.check_workers():
                self._redo(k, said, epoch, size)
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

    def _redo(self, k: int, said: str, epoch: int, size: int) -> None:
        """Stalled copy ``k``: killed, and a fresh copy makes the chunk it held, then claims on."""
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
        held, self._held[k] = self._held[k], None
        self._conns[k].send((epoch, size, [] if held is None else [held]))
        line = (
            f"copy {k} of the ceiling{said.removeprefix(f'worker {k}')}; ended (SIGKILL) and replaced by pid "
            f"{self._procs[k].pid}: the chunk it held made again by the new copy, {lost:.1f} s lost"
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
