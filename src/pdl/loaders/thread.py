"""ThreadLoader: BatchUp's thread pool. Same constructor and batches as ParallelLoader, threads not processes.

Batches are cut into chunks as in ParallelLoader; the pool's one queue hands the next chunk to whichever thread
is free.

OpenCV releases the GIL for decoding and most transforms, so threads overlap; albumentations' Python code
does not, which is what this backend measures. No copies between processes, no start-up cost.

Without `timeout`, a wait for a chunk ends in ``NoProgressError`` once no chunk has finished for the watchdog's
bound (watchdog.py). A thread stuck for ever cannot be stopped (Python has no way to), so ``close`` waits for the
threads at most ``CLOSE_WAIT_S`` and leaves a stuck one behind.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np

from .._env import limit_threads
from ..data.pipeline import Pipeline
from ..data.protocol import Dataset
from ..errors import LoaderTimeoutError
from .base import Loader
from .batching import Batch, make_batch
from .chunks import Part, WorkRate, compact, merged, merged_labels, split, stack
from .spec import LoaderSpec
from .watchdog import Watchdog

CLOSE_WAIT_S = 5.0  # for the threads to finish their chunks at close
WAIT_SLICE_S = 1.0  # a wait for a chunk looks at the others' progress this often

Pending = tuple[np.ndarray | None, list[Future[Part]]]  # a batch submitted: its output array and its chunks' futures


def _cancel(batches: deque[Pending]) -> None:
    for _, futures in batches:
        for future in futures:
            future.cancel()


class ThreadLoader(Loader):
    name = "thread"

    min_workers = 1
    splits_batches = True
    prefetches_epochs = True

    def __init__(self, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec | None = None, **options: Any) -> None:
        super().__init__(dataset, pipeline, spec, **options)
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._rate = WorkRate()  # work per image, from the chunks made: sizes the chunks of cheap images
        self._ahead: tuple[int, deque[Pending]] | None = None  # (epoch, its first batches) submitted early
        self.watchdog = Watchdog()  # without `timeout`: how long a wait without a chunk finished may last
        self._last_done = 0.0  # when a thread last finished a chunk (monotonic)
        self._waiting_for = ""

    def start(self) -> None:
        self._check_open()
        if self._pool is None:
            limit_threads()
            self._pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="pdl-thread")

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        assert self._pool is not None
        plan = self.plan(epoch)
        window = self._adopt(epoch)
        sent = len(window)
        following = self.following(epoch)
        ahead: deque[Pending] = deque()
        room = self.num_workers * self.spec.prefetch
        finished = False
        try:
            for number in range(len(plan)):
                # the batch asked for and, beyond it, ``room`` in flight while the loop holds it
                while sent < len(plan) and len(window) <= room:
                    window.append(self._submit(plan[sent], epoch, edge=sent in (0, len(plan) - 1)))
                    sent += 1
                while sent == len(plan) and len(ahead) < len(following) and len(window) + len(ahead) <= room:
                    n = len(ahead)  # this epoch all submitted: the room left starts the next one
                    ahead.append(self._submit(following[n], epoch + 1, edge=n in (0, len(following) - 1)))
                t0 = time.perf_counter()
                out, futures = window.popleft()
                self._waiting_for = f"batch {number} of epoch {epoch}"
                parts = [self._result(f) for f in futures]
                for part in parts:
                    self._rate.add(part)
                indices, skipped, times = merged(parts)
                images: Any
                if self.spec.augment_in == "main":
                    images = self._augment_here([im for p in parts for im in p.images], indices, epoch, times)
                elif out is not None:
                    images = compact(out, parts)
                else:  # the pipeline's output size is unknown until run: each chunk made its own array
                    images = stack([p.images for p in parts], self.pipeline)
                self.stats.wait_s.append(time.perf_counter() - t0)
                self.stats.stages.append(times)
                yield self._to_batch(images, indices, skipped, merged_labels(parts))
            finished = True
        finally:
            _cancel(window)
            if finished and ahead:
                self._ahead = (epoch + 1, ahead)  # the next epoch adopts them; a break wastes them (the window at most)
            else:
                _cancel(ahead)

    def _adopt(self, epoch: int) -> deque[Pending]:
        """The batches of ``epoch`` submitted during the last one, taken over, or dropped (``adoptable``)."""
        if self._ahead is None:
            return deque()
        (made_for, batches), self._ahead = self._ahead, None
        if self.adoptable(made_for, epoch):
            return batches
        _cancel(batches)
        return deque()

    def settle(self) -> None:
        """Wait for the next epoch's batches submitted ahead (kept for it)."""
        if self._ahead is not None:
            self._waiting_for = "the next epoch's first batches"
            for _, futures in self._ahead[1]:
                for future in futures:
                    self._result(future)

    def _submit(self, indices: np.ndarray, epoch: int, edge: bool) -> Pending:
        """The batch's chunks, queued to the pool: any free thread takes the next, so threads share the work
        of one batch (and of the epoch's last) to the end; the epoch's first and last batches in finer ones."""
        assert self._pool is not None
        shape = self.pipeline.output_shape
        out = None
        if self.spec.augment_in == "workers" and shape is not None:
            out = np.empty((len(indices), *shape), dtype=self.pipeline.output_dtype)
        futures = [
            self._pool.submit(self._make, indices[lo : lo + n], epoch, lo, None if out is None else out[lo : lo + n])
            for lo, n in split(len(indices), self.num_workers, self.spec.chunk_size, edge, self._rate.per_image_s)
        ]
        return out, futures

    def _result(self, future: Future[Part]) -> Part:
        if self.spec.timeout is not None:
            try:
                return future.result(timeout=self.spec.timeout)
            except FutureTimeout:
                raise LoaderTimeoutError(
                    f"no batch within {self.spec.timeout}s; a thread may be stuck: raise `timeout` or check the pipeline"
                ) from None
        since = time.monotonic()
        while True:  # the watchdog: no chunk finished by any thread for its bound
            try:
                return future.result(timeout=min(WAIT_SLICE_S, self.watchdog.bound_s))
            except FutureTimeout:
                if time.monotonic() - max(since, self._last_done) >= self.watchdog.bound_s:
                    raise self.watchdog.expired("the thread loader", self._waiting_for, "chunk") from None

    def _make(self, indices: np.ndarray, epoch: int, offset: int, out: np.ndarray | None) -> Part:
        """Runs in a pool thread, with that thread's own copy of the pipeline: a Compose holds its random
        state, so one shared between threads would mix up the images' seeds."""
        pipeline = getattr(self._local, "pipeline", None)
        if pipeline is None:
            pipeline = self._local.pipeline = copy.copy(self.pipeline)
        augment = self.spec.augment_in == "workers"
        t0 = time.perf_counter()
        made = make_batch(self.dataset, pipeline, indices, epoch, self.spec, out, augment)
        self.watchdog.saw(time.perf_counter() - t0)
        self._last_done = time.monotonic()
        images = None if out is not None else made.images
        return Part(offset, made.indices, made.skipped, made.times, images=images, labels=made.labels)

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            deadline = time.monotonic() + CLOSE_WAIT_S
            for thread in list(getattr(self._pool, "_threads", ())):  # each bounded: a stuck one is left behind
                thread.join(max(0.0, deadline - time.monotonic()))
