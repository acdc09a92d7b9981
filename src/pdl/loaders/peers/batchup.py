"""BatchUpLoader, BatchUpThreadLoader: the same batches made by BatchUp's own worker pools (``batchup==0.2.3``).

As BatchUp's ``work_pool`` module has it: ``WorkerProcessPool`` starts a ``SyncManager`` process (its dict holds
the "shared constants", pickled once and cached by each worker) and a joblib ``MemmappingPool``;
``WorkerThreadPool`` is a ``multiprocessing.pool.ThreadPool``. ``work_stream(tasks, task_buffer_size)`` keeps
that many ``apply_async`` tasks in flight and ``retrieve_iter()`` yields their results in order, each through
``AsyncResult.get()``. Here a task is one whole batch, made by pdl's ``make_batch`` from pdl's plan and seeds,
and ``task_buffer_size`` = workers × prefetch. Needs ``pip install 'pdl[batchup]'``.

What the adapter adds, because BatchUp does not: ``AsyncResult.get()`` has no timeout and a pool silently
replaces a worker that died, losing its task, so a bare ``retrieve_iter()`` would wait forever; here the head
task is awaited with ``wait(timeout)`` while the original workers are checked, and a death or a timeout is a
pdl error naming the loader. BatchUp never stops its manager process (it outlives a parent that exits); ``close()``
shuts it down, terminates the pool (which also removes joblib's memmap folder) and kills what is still running
(counted in ``left_behind``).
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np
from batchup import work_pool  # type: ignore[import-untyped]

from ...data.pipeline import Pipeline
from ...data.protocol import Dataset
from ..base import Loader
from ..batching import Batch, make_batch
from ..forking import worker_started
from ..spec import LoaderSpec
from .common import Reaper, check_alive, checked, process_alive, safely, version, wait_for

_prepared = False
_local = threading.local()


def _make(dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec, epoch: int, indices: np.ndarray) -> Any:
    """A BatchUp task: one batch, made with pdl's ``make_batch``; a failure returned as data, not raised
    (BatchUp prints a raised one's traceback on stderr)."""
    global _prepared
    if threading.current_thread() is not threading.main_thread():  # a WorkerThreadPool thread
        copies = _local.__dict__.setdefault("pipelines", {})
        if id(pipeline) not in copies:  # its own albumentations objects: a Compose is not thread-safe
            copies[id(pipeline)] = copy.copy(pipeline)
        pipeline = copies[id(pipeline)]
    elif not _prepared:  # a process's first task: not the parent's signal handlers, one OpenCV thread
        _prepared = True
        worker_started()
    augment = spec.augment_in == "workers"
    return epoch, safely(make_batch, dataset, pipeline, indices, epoch, spec, None, augment)


def _terminate(pool: Any) -> None:
    with contextlib.suppress(Exception):
        pool.terminate()
        pool.join()


def _ready(result: Any, seconds: float) -> bool:
    """Whether a task's AsyncResult is in, after waiting up to ``seconds``."""
    result.wait(seconds)
    return bool(result.ready())


@contextlib.contextmanager
def opencv_single_threaded(pipeline: Pipeline) -> Iterator[None]:
    """``forking``'s OpenCV half, without its signal half: BatchUp's pool takes no initializer, so its workers
    could never unblock the signals ``forking`` holds (and ``Pool.terminate`` would wait on them forever)."""
    import cv2

    pipeline.compose  # noqa: B018  (built once, before the fork: shared by the workers)
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


class BatchUpLoader(Loader):
    name = "batchup"
    min_workers = 1
    threads = False
    _pool: Any = None

    def __init__(self, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec | None = None, **options: Any) -> None:
        super().__init__(dataset, pipeline, spec, **options)
        self.version = version("batchup")
        self.start_method = None if self.threads else "fork"  # BatchUp's pools use the platform default
        self._reaper = Reaper()
        self._workers: list[int] = []
        self._manager_pid: int | None = None
        self.left_behind = 0  # processes BatchUp left running that close() had to kill

    def _inner_pool(self) -> Any:
        """The multiprocessing pool inside BatchUp's (a name-mangled private attribute)."""
        pool = self._pool
        if pool is None:
            return None
        return getattr(pool, "_WorkerThreadPool__pool" if self.threads else "_WorkerProcessPool__pool", None)

    @property
    def worker_pids(self) -> list[int]:
        if self.threads or self._pool is None:
            return []
        return [*self._workers, *([self._manager_pid] if self._manager_pid else [])]

    def start(self) -> None:
        self._check_open()
        if self._pool is not None:
            return
        if self.threads:
            self._pool = work_pool.WorkerThreadPool(processes=self.num_workers)
            self._shared = (self.dataset, self.pipeline, self.spec)
            return
        try:
            with opencv_single_threaded(self.pipeline):  # the pool and manager fork here, from the main thread
                self._pool = work_pool.WorkerProcessPool(processes=self.num_workers)
            manager = getattr(self._pool, "_WorkerProcessPool__manager", None)
            self._manager_pid = getattr(getattr(manager, "_process", None), "pid", None)
            self._workers = [p.pid for p in self._inner_pool()._pool]
            self._reaper.add([*self._workers, self._manager_pid])  # not joblib's resource tracker: process-wide
            share = self._pool.shared_constant  # pickled once into the manager, cached per worker
            self._shared = (share(self.dataset), share(self.pipeline), share(self.spec))
        except BaseException:
            self.close()
            raise

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        plan = self.plan(epoch)
        tasks = ((_make, (*self._shared, epoch, indices)) for indices in plan)
        stream = self._pool.work_stream(tasks, task_buffer_size=self.num_workers * self.spec.prefetch)
        buffer = stream._WorkStream__result_buffer  # the AsyncResults in flight, head first
        results = stream.retrieve_iter()
        for _ in plan:
            t0 = time.perf_counter()
            if buffer:
                wait_for(partial(_ready, buffer[0]), self.name, self.spec, self._alive)
            else:
                check_alive(self.name, self._alive)
            made_epoch, made = next(results)
            made = checked(made)
            images = (
                made.images
                if self.spec.augment_in == "workers"
                else self._augment_here(made.images, made.indices, made_epoch, made.times)
            )
            self.stats.wait_s.append(time.perf_counter() - t0)
            self.stats.stages.append(made.times)
            yield self._to_batch(images, made.indices, made.skipped, made.labels)

    def _alive(self) -> list[tuple[int, bool]]:
        return [(pid, process_alive(pid)) for pid in self._workers]

    def _shutdown(self) -> None:
        inner, pool = self._inner_pool(), self._pool
        self._pool = None
        if inner is not None:
            if not self.threads:  # a replacement for a dead worker too
                self._reaper.add(p.pid for p in getattr(inner, "_pool", []))
            if any(not ok for _, ok in self._alive()):
                # a worker killed inside the pool's input-queue lock holds it forever, and terminate() takes it:
                # hand it back (a process-shared semaphore: no owner check)
                with contextlib.suppress(Exception):
                    inner._inqueue._rlock.release()
            # terminate() (which also removes joblib's memmap folder) can still hang on a queue a killed worker
            # broke: it runs on a thread pdl stops waiting for, and the processes are stopped below regardless
            stopper = threading.Thread(target=_terminate, args=(inner,), daemon=True)
            stopper.start()
            stopper.join(5.0)
            if stopper.is_alive():  # terminate() is stuck: remove joblib's memmap folder here
                with contextlib.suppress(Exception):
                    inner._temp_folder_manager._clean_temporary_resources()
        manager = getattr(pool, "_WorkerProcessPool__manager", None)
        if manager is not None:
            with contextlib.suppress(Exception):
                manager.shutdown()
        self.left_behind += self._reaper.reap()


class BatchUpThreadLoader(BatchUpLoader):
    """BatchUp's ``WorkerThreadPool``: the same tasks in threads. Each task makes its batch with its own copy
    of the pipeline (an albumentations Compose is not thread-safe), so batches stay bit-identical."""

    name = "batchup-thread"
    threads = True
