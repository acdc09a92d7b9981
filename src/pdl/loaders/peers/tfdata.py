"""TfDataLoader: the same batches made by tf.data (``tensorflow-cpu``), as a TensorFlow user runs albumentations:
``Dataset.range(batches).map(tf.numpy_function(make), num_parallel_calls=AUTOTUNE, deterministic=True)
.prefetch(AUTOTUNE)``. Needs ``pip install 'pdl[tfdata]'``.

As tf.data runs it (``ParallelMapDataset``, ``PrefetchDataset`` in TensorFlow's C++ runtime): the map's calls run on
a thread pool (here the dataset's own, ``options.threading.private_threadpool_size`` = workers, so ``--workers``
counts threads, and the pool ends with the iterator); AUTOTUNE picks how many run at once and how deep the
prefetch buffer is, within that pool; ``deterministic=True`` hands results out in input order.
``tf.numpy_function`` runs Python, holding the GIL: only what releases it (OpenCV's decode and resize, most of
albumentations' numpy work) runs in parallel.

How it runs here: one element per batch (a batch number; the function makes that batch with pdl's ``make_batch``
on the calling thread's own copy of the pipeline, as albumentations' Compose is not thread-safe), so the
batches are pdl's; a skipped image makes its batch shorter, as everywhere in pdl (TF's own ``batch()`` over
per-image elements could not). The images come out as the dataset's tensor; the rest (indices, skipped, stage
times, an error) is kept beside it by batch number. AUTOTUNE rather than the worker count: it is what TF users
write and what TF's guide recommends, and the private pool already caps it at the worker count. The dataset is
built once per loader (traced once); each epoch iterates it anew, as a training loop does, so no work runs
ahead of the epoch asked for. Each wait for a batch is bounded by the timeout; ``close()`` drops the iterator
and the dataset, whose threads end with them. TensorFlow's own process-wide pools (started at import, used by
no tf.data map here) cannot be stopped by any API; they are threads, not processes, and start once per process.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...data.pipeline import Pipeline
from ...data.protocol import Dataset
from ...errors import WorkerError
from ..base import Loader
from ..batching import Batch, Produced, make_batch
from ..spec import LoaderSpec
from .common import checked, safely, stop_waiter, version, wait_for

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up notes are not pdl's output
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # nor its oneDNN note (no TF arithmetic runs here: numpy does it)
import tensorflow as tf


@dataclass
class _Work:
    """What the mapped function reads (not the loader itself: TensorFlow keeps the function, and with it this)."""

    dataset: Dataset
    pipeline: Pipeline
    spec: LoaderSpec
    epoch: int = 0
    plan: list[np.ndarray] = field(default_factory=list)
    offset: int = 0  # the epoch's batches already handed out before a resume: batch number j is plan[j - offset]
    made: dict[int, Produced | WorkerError] = field(default_factory=dict)
    local: threading.local = field(default_factory=threading.local)

    def make(self, number: np.int64) -> np.ndarray:
        """The mapped function, on a tf.data thread: batch ``number`` of the epoch, its images returned."""
        j = int(number)
        own = getattr(self.local, "pipeline", None)
        if own is None:
            own = self.local.pipeline = copy.copy(self.pipeline)
        result = safely(make_batch, self.dataset, own, self.plan[j - self.offset], self.epoch, self.spec)
        if isinstance(result, BaseException):
            self.made[j] = result
            return np.empty((0, *(self.pipeline.output_shape or (0, 0, 3))), dtype=self.pipeline.output_dtype)
        images, result.images = result.images, None
        self.made[j] = result
        return np.ascontiguousarray(images)


class TfDataLoader(Loader):
    name = "tfdata"
    min_workers = 1

    def __init__(self, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec | None = None, **options: Any) -> None:
        super().__init__(dataset, pipeline, spec, **options)
        self.version = version("tensorflow-cpu") or version("tensorflow")
        self._work = _Work(dataset, pipeline, self.spec)
        self._datasets: dict[int, Any] = {}  # by the first batch number: 0, or where a resumed epoch starts
        self._iterator: Any = None
        self._waiter: ThreadPoolExecutor | None = None
        self._pending: Future[Any] | None = None

    def start(self) -> None:
        self._check_open()
        if self._waiter is None:
            self._waiter = ThreadPoolExecutor(1, thread_name_prefix="pdl-tfdata")
            self._dataset(0)

    def _dataset(self, first: int) -> Any:
        """The tf.data pipeline over batch numbers ``first`` … the epoch's last (built, and traced, once)."""
        if first not in self._datasets:
            work, dtype = self._work, tf.as_dtype(self.pipeline.output_dtype)
            options = tf.data.Options()
            options.threading.private_threadpool_size = self.num_workers
            options.threading.max_intra_op_parallelism = 1
            ds = tf.data.Dataset.range(first, len(self)).map(
                lambda j: (j, tf.numpy_function(work.make, [j], Tout=dtype, stateful=True)),
                num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True,
            )
            self._datasets[first] = ds.prefetch(tf.data.AUTOTUNE).with_options(options)
        return self._datasets[first]

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        plan = self.plan(epoch)
        if not plan:
            return
        work = self._work
        work.epoch, work.plan, work.offset = epoch, plan, len(self) - len(plan)
        work.made.clear()
        iterator = self._iterator = iter(self._dataset(work.offset))
        try:
            for _ in plan:
                t0 = time.perf_counter()
                number, images = self._next()
                made = checked(work.made.pop(int(number)))
                self.stats.wait_s.append(time.perf_counter() - t0)
                self.stats.stages.append(made.times)
                yield self._to_batch(images.numpy(), made.indices, made.skipped, made.labels)
        finally:
            if self._iterator is iterator:  # not an epoch another one replaced (its iterator still held)
                self._drop_iterator()

    def _next(self) -> Any:
        """The next element within the timeout (tf.data's own next() waits as long as the map takes)."""
        assert self._waiter is not None
        pending = self._pending = self._waiter.submit(next, self._iterator)

        def ready(seconds: float) -> bool:
            with contextlib.suppress(TimeoutError):
                pending.exception(seconds)
            return pending.done()

        wait_for(ready, self.name, self.spec, list)
        self._pending = None
        return pending.result()

    def _drop_iterator(self) -> None:
        """End the epoch's iterator: its map and prefetch threads end with it (a call still running finishes)."""
        if self._pending is not None:
            with contextlib.suppress(BaseException):
                self._pending.result(timeout=self.spec.timeout or 120)
            self._pending = None
        self._iterator = None  # not gc.collect() here: with TensorFlow loaded it costs a timed epoch ~0.1 s

    def _shutdown(self) -> None:
        self._drop_iterator()
        self._datasets.clear()
        if self._waiter is not None:
            stop_waiter(self._waiter)
            self._waiter = None
        self._work.made.clear()
        gc.collect()
