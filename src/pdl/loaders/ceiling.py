"""The ceiling: what this machine can give this work in parallel, measured, not assumed.

``num_workers`` independent copies of the sequential loop, each in its own process, each over an equal share of
the epoch's images (cut into batches of the batch size), started together: no queues, no shared memory, no hand-off to
the main process; each copy reads, decodes, augments and collates its batches exactly as the sequential loader
does, and drops them. Timed in the same interleaved rounds as the loaders, its speedup over the sequential loop
is the most any loader can reach here for that work: cores that share memory bandwidth, caches, a turbo budget or
SMT siblings give less than their count. A loader's share of it says whether the loader or the machine is the
limit.

Its "batches" are only counts (one empty batch per copy, holding the indices it made): nothing to compare.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterator
from multiprocessing import connection
from typing import Any

import numpy as np

from ..data.pipeline import Pipeline
from ..data.protocol import Dataset, check_picklable
from ..errors import LoaderTimeoutError, WorkerDiedError, worker_error
from ..machine.host import default_start_method
from .base import Loader
from .batching import Batch, epoch_plan, make_batch
from .forking import forking, worker_started
from .spec import LoaderSpec

START_TIMEOUT_S = 60.0


def copy_loop(k: int, n: int, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec, conn: connection.Connection) -> None:
    """Copy ``k`` of ``n``: for each epoch asked for, the sequential loop over the k-th of n equal shares of the
    epoch's images; replies with the indices it made (or the error)."""
    worker_started()
    conn.send(("ready", None))
    while True:
        epoch = conn.recv()
        if epoch is None:
            return
        made: list[np.ndarray] = []
        try:
            plan = epoch_plan(len(dataset), spec, epoch)
            order = np.concatenate(plan) if plan else np.zeros(0, np.int64)
            share = np.array_split(order, n)[k]  # an equal share of the epoch's images, cut into batches as the loop does
            for start in range(0, len(share), spec.batch_size):
                batch = make_batch(dataset, pipeline, share[start : start + spec.batch_size], epoch, spec)
                made.append(batch.indices)
                del batch
            conn.send(("done", np.concatenate(made) if made else np.zeros(0, np.int64)))
        except Exception as exc:
            conn.send(("failed", worker_error(exc, None, "making a batch of the ceiling")))


class CeilingLoader(Loader):
    """N copies of the sequential loop at once (``num_workers``): the measured bound of any loader here."""

    name = "ceiling"
    min_workers = 1

    def __init__(self, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec | None = None, **options: Any) -> None:
        super().__init__(dataset, pipeline, spec, **options)
        self.start_method: str = self.spec.start_method or default_start_method()
        self._procs: list[Any] = []
        self._conns: list[connection.Connection] = []
        self._started = False

    @property
    def worker_pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def start(self) -> None:
        self._check_open()
        if self._started:
            return
        self._started = True
        try:
            check_picklable(self.dataset, self.start_method)
            ctx: Any = mp.get_context(self.start_method)
            with forking(self.start_method, self.pipeline):
                for k in range(self.num_workers):
                    mine, theirs = ctx.Pipe()
                    args = (k, self.num_workers, self.dataset, self.pipeline, self.spec, theirs)
                    proc = ctx.Process(target=copy_loop, args=args, name=f"pdl-ceiling-{k}", daemon=True)
                    proc.start()
                    theirs.close()
                    self._procs.append(proc)
                    self._conns.append(mine)
            for kind, _ in self._replies(time.monotonic() + START_TIMEOUT_S, "the copies to start"):
                assert kind == "ready"
        except BaseException:
            self.close()
            raise

    def _replies(self, deadline: float | None, waiting_for: str) -> list[tuple[str, Any]]:
        """One reply from every copy; a dead copy or a passed deadline raises."""
        replies: dict[int, tuple[str, Any]] = {}
        while len(replies) < len(self._conns):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            waiting = [c for k, c in enumerate(self._conns) if k not in replies]
            ready = connection.wait([*waiting, *(p.sentinel for p in self._procs)], left)
            if not ready:
                raise LoaderTimeoutError(
                    f"the ceiling's copies did not answer within the timeout while waiting for {waiting_for}"
                )
            for k, conn in enumerate(self._conns):
                if conn in ready and k not in replies:
                    try:
                        replies[k] = conn.recv()
                    except (EOFError, OSError):
                        pass
            for k, proc in enumerate(self._procs):
                if k not in replies and not proc.is_alive():
                    raise WorkerDiedError(f"copy {k} of the ceiling (pid {proc.pid}) died: exit code {proc.exitcode}")
        for kind, payload in replies.values():
            if kind == "failed":
                raise payload
        return [replies[k] for k in range(len(self._conns))]

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        for conn in self._conns:
            conn.send(epoch)
        deadline = None if self.spec.timeout is None else time.monotonic() + self.spec.timeout
        for _, indices in self._replies(deadline, f"epoch {epoch}"):
            yield Batch(np.zeros((len(indices), 0, 0, 0), np.uint8), np.zeros(len(indices), np.int64), indices)

    def _shutdown(self) -> None:
        for conn in self._conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc in self._procs:
            proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(2.0)
        for conn in self._conns:
            conn.close()
        self._procs, self._conns = [], []
