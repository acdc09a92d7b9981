"""ThreadLoader: BatchUp's thread pool. Same constructor and batches as ParallelLoader, threads not processes.

OpenCV releases the GIL for decoding and most transforms, so threads overlap; albumentations' Python code
does not, which is what this backend measures. No copies between processes, no start-up cost.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import numpy as np

from .._env import limit_threads
from ..dataset import ImageFolder
from ..errors import ConfigError, LoaderTimeoutError
from ..pipeline import Pipeline
from .base import AugmentIn, Batch, Loader, LoaderSpec, OnError, Produced, augment_into, epoch_plan, make_batch


class ThreadLoader(Loader):
    name = "thread"

    def __init__(
        self,
        dataset: ImageFolder,
        pipeline: Pipeline,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        num_workers: int = 2,
        prefetch: int = 2,
        augment_in: AugmentIn = "workers",
        start_method: str | None = None,  # accepted for a drop-in swap with ParallelLoader; threads need none
        on_error: OnError = "fail",
        timeout: float | None = None,
        shared_memory: bool = True,  # accepted for a drop-in swap too: threads share the process's memory
    ) -> None:
        spec = LoaderSpec(batch_size, shuffle, seed, drop_last, num_workers, prefetch, augment_in, on_error, timeout)
        if num_workers < 1:
            raise ConfigError(f"`num_workers` must be at least 1 for ThreadLoader. Found: {num_workers}")
        super().__init__(dataset, pipeline, spec)
        self.num_workers = num_workers
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._closed = False

    def start(self) -> None:
        if self._closed:
            raise ConfigError("this loader was closed; create a new one")
        if self._pool is None:
            limit_threads()
            self._pool = ThreadPoolExecutor(self.num_workers, thread_name_prefix="pdl-thread")

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        assert self._pool is not None
        plan = epoch_plan(len(self.dataset), self.spec, epoch)
        augment = self.spec.augment_in == "workers"
        window: deque[Future[Produced]] = deque()
        sent = 0
        try:
            for _ in range(len(plan)):
                while sent < len(plan) and len(window) < self.num_workers * self.spec.prefetch:
                    args = (plan[sent], epoch, augment)
                    window.append(self._pool.submit(self._make, *args))
                    sent += 1
                t0 = time.perf_counter()
                try:
                    made = window.popleft().result(timeout=self.spec.timeout)
                except FutureTimeout:
                    raise LoaderTimeoutError(
                        f"no batch within {self.spec.timeout}s; a thread may be stuck: raise --timeout or check the pipeline"
                    ) from None
                images = made.images
                if not augment:
                    paths = [self.dataset.path(i) for i in made.indices]
                    images = augment_into(self.pipeline, images, made.indices, self.spec.seed, epoch, paths, made.times)
                self.stats.wait_s.append(time.perf_counter() - t0)
                self.stats.stages.append(made.times)
                yield self._to_batch(images, made.indices, made.skipped)
        finally:
            for future in window:
                future.cancel()

    def _make(self, indices: np.ndarray, epoch: int, augment: bool) -> Produced:
        """Runs in a pool thread, with that thread's own copy of the pipeline: a Compose holds its random
        state, so one shared between threads would mix up the images' seeds."""
        pipeline = getattr(self._local, "pipeline", None)
        if pipeline is None:
            pipeline = self._local.pipeline = copy.copy(self.pipeline)
        return make_batch(self.dataset, pipeline, indices, epoch, self.spec, None, augment)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
