"""TorchdataLoader: the same batches made by ``torchdata.nodes``: ``ParallelMapper(method="process",
in_order=True)`` over batch tasks, then ``Prefetcher``. Needs ``pip install 'pdl[torchdata]'`` (with pdl's torch).

As ``torchdata/nodes/map.py`` has it: ``_ParallelMapperIter`` starts a reader thread (``_populate_queue``: source
items → an input queue, at most ``max_concurrent`` = 2 × workers in flight, by a semaphore), then the worker
processes (``_apply_udf``: input queue → function → an intermediate queue), then, for ``in_order``, a sort thread
that re-orders results by their index; ``Prefetcher`` (``prefetch.py``) adds a thread that keeps
``prefetch_factor`` results ready. Every queue ``get`` polls with a 0.1 s timeout in a loop, and none gives up.

How it runs here: one task per batch, (epoch, indices) from pdl's plan, made by pdl's ``make_batch``; the
source is fed each epoch's tasks, so the workers live as long as the loader (as torch's ``persistent_workers``)
instead of being started again at every epoch's ``reset``. Adapted, not changed: the workers start with
``forkserver``, since torchdata starts them after its reader thread is running (forking a process that has
threads can hang the child); each wait for a batch is bounded by the timeout and notices a dead worker (torchdata
would wait for its result forever); what is still running at ``close()`` is stopped and counted.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np
from torchdata.nodes import IterableWrapper, ParallelMapper, Prefetcher  # type: ignore[import-untyped]

from ...data.pipeline import Pipeline
from ...data.protocol import Dataset
from ..base import Loader
from ..batching import Batch, make_batch
from ..forking import worker_started
from ..spec import LoaderSpec
from .common import POLL_S, Reaper, checked, safely, version, wait_for

_prepared = False


def _make(dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec, task: tuple[int, np.ndarray]) -> Any:
    """The mapped function, in a worker process: one batch with pdl's ``make_batch``, a failure as data."""
    global _prepared
    if not _prepared:
        _prepared = True
        worker_started()
    epoch, indices = task
    return epoch, safely(make_batch, dataset, pipeline, indices, epoch, spec, None, spec.augment_in == "workers")


def _feed(tasks: queue.Queue[tuple[int, np.ndarray]], stop: threading.Event) -> Iterator[tuple[int, np.ndarray]]:
    """The source: each epoch's tasks as the loader puts them in; ends when the loader closes."""
    while not stop.is_set():
        try:
            yield tasks.get(timeout=POLL_S)
        except queue.Empty:
            continue


class TorchdataLoader(Loader):
    name = "torchdata"
    min_workers = 1
    start_method = "forkserver"

    def __init__(self, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec | None = None, **options: Any) -> None:
        super().__init__(dataset, pipeline, spec, **options)
        self.version = version("torchdata")
        self._tasks: queue.Queue[tuple[int, np.ndarray]] = queue.Queue()
        self._stop = threading.Event()
        self._node: Any = None
        self._mapper: Any = None
        self._waiter: ThreadPoolExecutor | None = None
        self._pending: Future[Any] | None = None
        self._reaper = Reaper()
        self.left_behind = 0

    def _processes(self) -> list[Any]:
        """The mapper's worker processes (inside torchdata's private iterator)."""
        inner = getattr(getattr(self._mapper, "_it", None), "_it", None)
        return list(getattr(inner, "_workers", []))

    @property
    def worker_pids(self) -> list[int]:
        return [p.pid for p in self._processes() if p.pid is not None]

    def start(self) -> None:
        self._check_open()
        if self._node is not None:
            return
        spec = self.spec
        try:
            self._mapper = ParallelMapper(
                IterableWrapper(_feed(self._tasks, self._stop)),
                partial(_make, self.dataset, self.pipeline, spec),
                num_workers=self.num_workers,
                in_order=True,
                method="process",
                multiprocessing_context=self.start_method,
            )
            self._node = Prefetcher(self._mapper, prefetch_factor=spec.prefetch)
            self._node.reset()  # starts the threads and the worker processes
            self._reaper.add(self.worker_pids)
            self._waiter = ThreadPoolExecutor(1, thread_name_prefix="pdl-torchdata")
        except BaseException:
            self.close()
            raise

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        plan = self.plan(epoch)
        for indices in plan:
            self._tasks.put((epoch, indices))
        done = 0
        while done < len(plan):
            t0 = time.perf_counter()
            made_epoch, made = self._next()
            if made_epoch != epoch:  # a batch of an epoch abandoned earlier
                continue
            made = checked(made)
            images = made.images
            if self.spec.augment_in == "main":
                images = self._augment_here(images, made.indices, epoch, made.times)
            done += 1
            self.stats.wait_s.append(time.perf_counter() - t0)
            self.stats.stages.append(made.times)
            yield self._to_batch(images, made.indices, made.skipped, made.labels)

    def _next(self) -> Any:
        """The next result, within the timeout, noticing a dead worker (torchdata itself would wait forever)."""
        assert self._waiter is not None
        if self._pending is None:
            self._pending = self._waiter.submit(next, self._node)
        pending = self._pending

        def ready(seconds: float) -> bool:
            with contextlib.suppress(TimeoutError):
                pending.exception(seconds)
            return pending.done()

        wait_for(ready, self.name, self.spec, lambda: [(p.pid, p.is_alive()) for p in self._processes()])
        self._pending = None
        return pending.result()

    def _shutdown(self) -> None:
        self._stop.set()
        pids = self.worker_pids
        for node in (self._node, self._mapper):
            inner: Any = getattr(node, "_it", None)
            inner = getattr(inner, "_it", inner)
            with contextlib.suppress(Exception):
                inner._shutdown()  # stops torchdata's threads and tells its workers to stop
        if self._waiter is not None:
            self._waiter.shutdown(wait=False, cancel_futures=True)
        self._reaper.add(pids)
        self.left_behind += self._reaper.reap(wait=1.0)
        self._node = self._mapper = self._waiter = self._pending = None
