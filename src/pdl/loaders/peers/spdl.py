"""SpdlLoader, SpdlProcessLoader: the same batches made by SPDL's ``PipelineBuilder`` (``spdl-core``).

As ``spdl.pipeline`` builds it: ``add_source`` (iterated on its own thread), ``pipe(op, concurrency,
output_order="input")`` (an asyncio event loop on a background thread runs ``op`` in a thread pool of
``num_threads``, or in the ``executor`` given), ``aggregate(n)`` (collates ``n`` items into a list), and
``add_sink(buffer_size)``; ``Pipeline.get_item(timeout)`` hands out one item. Here one pipeline per epoch: the
source is the epoch's images in pdl's order, the stage makes one image with pdl's read path and per-image seed
(``concurrency`` = workers), ``aggregate(batch_size)`` gives pdl's batches, the sink buffers ``prefetch``.
``spdl`` runs the stage in threads (SPDL's recommended mode); ``spdl-process`` in a process pool.

Adapted, not changed: each thread has its own copy of the pipeline (an albumentations Compose is not
thread-safe: shared, two threads' seeds mix and batches differ); a failed image is returned as data (SPDL
drops a failed item by default, which would shift every later batch) and ``max_failures=0`` stops the pipeline
on anything else; the process pool is started in ``start()`` from the main thread, every worker at once,
before SPDL's event-loop thread exists (a pool that forks from that thread can hang); ``get_item`` always has
a timeout. Needs ``pip install 'pdl[spdl]'``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import logging
import multiprocessing as mp
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any

import numpy as np
from spdl.pipeline import PipelineBuilder

from ...data.pipeline import Pipeline
from ...data.protocol import Dataset
from ...errors import WorkerDiedError, WorkerError
from ...machine.host import default_start_method
from ..base import Loader
from ..batching import Batch, Produced
from ..forking import forking, worker_started
from ..spec import LoaderSpec
from .common import (
    Reaper,
    checked,
    join_images,
    one_image,
    process_alive,
    safely,
    stop_pool,
    timed_out,
    version,
    wait_s,
)

_local = threading.local()
_worker: tuple[Dataset, Pipeline, LoaderSpec] | None = None  # a pool process's dataset, pipeline, spec


def _in_thread(dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec, epoch: int, index: int) -> Any:
    """The stage in a pool thread: this thread's own copy of the pipeline."""
    copies = _local.__dict__.setdefault("pipelines", {})
    if id(pipeline) not in copies:
        copies[id(pipeline)] = copy.copy(pipeline)
    return safely(one_image, dataset, copies[id(pipeline)], spec, epoch, index, True)


def _init_process(dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec) -> None:
    global _worker
    worker_started()
    _worker = (dataset, pipeline, spec)


def _in_process(epoch: int, index: int) -> Any:
    """The stage in a pool process: only (epoch, index) travels; the rest was set by the initializer."""
    assert _worker is not None
    dataset, pipeline, spec = _worker
    return safely(one_image, dataset, pipeline, spec, epoch, index, True)


def _pid() -> int:
    import os

    time.sleep(0.05)  # long enough that every worker takes one
    return os.getpid()


def _broken(exc: BaseException) -> bool:
    """Whether ``exc`` is, or holds among its causes and sub-exceptions, a broken process pool."""
    if isinstance(exc, BrokenProcessPool):
        return True
    inner = [*getattr(exc, "exceptions", ()), exc.__cause__, exc.__context__]
    return any(_broken(e) for e in inner if isinstance(e, BaseException))


class SpdlLoader(Loader):
    name = "spdl"
    min_workers = 1
    processes = False

    def __init__(self, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec | None = None, **options: Any) -> None:
        super().__init__(dataset, pipeline, spec, **options)
        self.version = version("spdl-core")
        self.start_method = (self.spec.start_method or default_start_method()) if self.processes else None
        self._executor: ProcessPoolExecutor | None = None
        self._pids: list[int] = []
        self._reaper = Reaper()
        self._pipe: Any = None
        self.left_behind = 0
        logging.getLogger("spdl").setLevel(logging.CRITICAL)  # failures come back as pdl errors, not log lines

    @property
    def worker_pids(self) -> list[int]:
        return list(self._pids)

    def start(self) -> None:
        self._check_open()
        if not self.processes or self._executor is not None:
            return
        assert self.start_method is not None
        ctx = mp.get_context(self.start_method)
        init = (self.dataset, self.pipeline, self.spec)
        try:
            with forking(self.start_method, self.pipeline):
                self._executor = ProcessPoolExecutor(self.num_workers, mp_context=ctx, initializer=_init_process, initargs=init)
                futures = [self._executor.submit(_pid) for _ in range(self.num_workers)]  # every worker, now
            concurrent.futures.wait(futures, timeout=wait_s(self.spec))
            self._pids = [p.pid for p in getattr(self._executor, "_processes", {}).values()]
            self._reaper.add(self._pids)
        except BaseException:
            self.close()
            raise

    def _build(self, epoch: int, order: np.ndarray) -> Any:
        spec = self.spec
        if self._executor is not None:
            op: Any = partial(_in_process, epoch)
        else:
            op = partial(_in_thread, self.dataset, self.pipeline, spec, epoch)
        builder: Any = (
            PipelineBuilder()
            .add_source(order.tolist())
            .pipe(op, concurrency=self.num_workers, executor=self._executor, output_order="input")
            .aggregate(spec.batch_size)
            .add_sink(spec.prefetch)
        )
        return builder.build(num_threads=self.num_workers, max_failures=0)

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        plan = self.plan(epoch)
        if not plan:
            return
        pipe = self._pipe = self._build(epoch, np.concatenate(plan))
        pipe.start()
        try:
            for _ in plan:
                t0 = time.perf_counter()
                parts: list[Produced] = [checked(item) for item in self._next(pipe)]
                joined = join_images(self.pipeline, parts)
                self.stats.wait_s.append(time.perf_counter() - t0)
                self.stats.stages.append(joined.times)
                yield self._to_batch(joined.images, joined.indices, joined.skipped, joined.labels)
        finally:
            self._stop(pipe)

    def _next(self, pipe: Any) -> list[Any]:
        limit = wait_s(self.spec)
        try:
            items: list[Any] = pipe.get_item(timeout=limit)
            return items
        except TimeoutError:
            dead = [pid for pid in self._pids if not process_alive(pid)]
            if dead:
                raise self._died(dead[0]) from None
            raise timed_out(self.name, self.spec) from None
        except EOFError:
            raise WorkerError(f"{self.name}: the pipeline ended before the epoch did", exc_type="EOFError") from None
        except WorkerError:
            raise
        except BrokenProcessPool:
            raise self._died(None) from None
        except Exception as exc:  # SPDL's PipelineFailure: a stage failed (its sub-exceptions say why)
            dead = [pid for pid in self._pids if not process_alive(pid)]
            if dead or _broken(exc):
                raise self._died(dead[0] if dead else None) from None
            raise WorkerError(f"{self.name}: {type(exc).__name__}: {exc}", exc_type=type(exc).__name__) from None

    def _died(self, pid: int | None) -> WorkerDiedError:
        which = f"worker process {pid}" if pid else "a worker process"
        return WorkerDiedError(
            f"{self.name}: {which} died (killed, crashed or out of memory); SPDL's process pool is broken",
            exc_type="WorkerDied",
        )

    def _stop(self, pipe: Any) -> None:
        with contextlib.suppress(Exception):
            pipe.stop(timeout=5)
        if self._pipe is pipe:
            self._pipe = None

    def _shutdown(self) -> None:
        if self._pipe is not None:
            self._stop(self._pipe)
        executor, self._executor = self._executor, None
        if executor is not None:
            self.left_behind += stop_pool(executor, self._reaper)
        self._pids = []


class SpdlProcessLoader(SpdlLoader):
    """SPDL with the stage in a ``ProcessPoolExecutor``: per-image tasks, images pickled back."""

    name = "spdl-process"
    processes = True
