"""ReportLoader: the seed report's parallel DataLoader ("DataLoaderPar", its Section 3), run as described.

Its design, kept here on purpose, since measuring it is the point: one private index queue per worker, filled
round-robin (``worker_cycle``); one output queue shared by all workers; workers that poll their index queue with
``get(timeout=0)`` and spin on ``queue.Empty``; images sent to the main process one at a time, pickled, with
their index; a ``cache`` list for images that arrive before their turn; prefetching at most ``prefetch`` batches
(the report's ``prefetch_batches``, 2 there) ahead of the images handed out; and augmentation in the main
process (the workers only read and decode). stdlib only.

What it keeps of pdl: every image is decoded by pdl's read path (``make_batch`` on one index) and augmented with
its per-image seed, so its batches equal the sequential loader's bit for bit; a worker's failure comes back as
a pdl error; no wait lasts longer than ``--timeout`` (else 120 s); a dead worker is reported, not waited for.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing as mp
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ...data.pipeline import Pipeline
from ...data.protocol import Dataset
from ...machine.host import default_start_method
from ..base import Loader
from ..batching import Batch, Produced
from ..chunks import merged, merged_labels
from ..forking import forking, worker_started
from ..spec import LoaderSpec
from .common import checked, one_image, safely, wait_for

Key = tuple[int, int]  # (epoch, position in the epoch's order): unique, so a stale image is never mistaken


def worker_funct(
    dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec, index_queue: Any, output_queue: Any, active: Any
) -> None:
    """The report's Figure 3: poll the private index queue, decode that image, put it on the shared queue.

    One change, for measuring side by side: between the loader's epochs (``active`` 0) a worker blocks on its own
    index queue instead of spinning, so the report's polling burns CPU only in its own epochs, not in the epochs of
    the loaders it is compared with; the epoch's first index (or the None that stops it) wakes it. Within an epoch
    it polls with ``get(timeout=0)`` as the report does. ``active`` is a lock-free shared byte, not an Event: a
    worker killed while it held an Event's lock left the main process's ``set()`` waiting for ever."""
    worker_started()
    while True:
        try:
            item = index_queue.get(timeout=0 if active.value else 1.0)
        except queue.Empty:
            continue
        if item is None:
            break
        epoch, position, index = item
        made = safely(
            one_image, dataset, pipeline, spec, epoch, index, False
        )  # the pipeline: its first resize, for reduce_decode
        output_queue.put(((epoch, position), made))


def _drain(output_queue: Any, inbox: queue.Queue[tuple[Key, Any]]) -> None:
    """The shared output queue → the inbox, until the queue is closed (or broken by a killed worker)."""
    while True:
        try:
            item = output_queue.get()
        except Exception:
            return
        if item is None:
            return
        inbox.put(item)


class ReportLoader(Loader):
    name = "report"
    min_workers = 1

    def __init__(self, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec | None = None, **options: Any) -> None:
        super().__init__(dataset, pipeline, spec, **options)
        self.start_method: str = self.spec.start_method or default_start_method()
        self._ctx: Any = mp.get_context(self.start_method)
        self._workers: list[Any] = []
        self._index_queues: list[Any] = []
        self._output_queue: Any = None
        self._active: Any = None  # 1 while an epoch runs: the workers poll; 0: they block on their index queues
        self._inbox: queue.Queue[tuple[Key, Any]] = queue.Queue()
        self._reader: threading.Thread | None = None
        self.left_behind = 0  # worker processes that had to be killed on close

    @property
    def worker_pids(self) -> list[int]:
        return [w.pid for w in self._workers if w.pid is not None]

    def start(self) -> None:
        self._check_open()
        if self._workers:
            return
        self._output_queue = self._ctx.Queue()
        self._active = self._ctx.RawValue("b", 0)
        try:
            with forking(self.start_method, self.pipeline):
                for _ in range(self.num_workers):
                    index_queue = self._ctx.Queue()
                    worker = self._ctx.Process(
                        target=worker_funct,
                        args=(self.dataset, self.pipeline, self.spec, index_queue, self._output_queue, self._active),
                        daemon=True,
                    )
                    worker.start()
                    self._index_queues.append(index_queue)
                    self._workers.append(worker)
        except BaseException:
            self.close()
            raise

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        plan = self.plan(epoch)
        order = np.concatenate(plan) if plan else np.empty(0, dtype=np.int64)
        worker_cycle = itertools.cycle(self._index_queues)
        cache: list[tuple[Key, Produced]] = []
        ahead = self.spec.prefetch * self.spec.batch_size
        state = {"prefetch_index": 0, "index": 0}

        def prefetch() -> None:
            """Hand out indices round-robin until the end, or ``prefetch`` batches ahead of the images taken."""
            while state["prefetch_index"] < len(order) and state["prefetch_index"] < state["index"] + ahead:
                position = state["prefetch_index"]
                next(worker_cycle).put((epoch, position, int(order[position])))
                state["prefetch_index"] += 1

        def get() -> Produced:
            """The report's Figure 5: the next image from the cache, else from the output queue (caching others)."""
            key = (epoch, state["index"])
            state["index"] += 1
            prefetch()
            for i, (cached, made) in enumerate(cache):
                if cached == key:
                    del cache[i]
                    return checked(made)
            while True:
                found, made = self._get()
                if found == key:
                    return checked(made)
                if found[0] == epoch:  # an earlier epoch's image (an abandoned epoch) is dropped
                    cache.append((found, made))

        if self._reader is None:
            # a thread that moves the shared queue's items to this process's inbox, so no wait blocks past the
            # timeout (a worker killed mid-message leaves a pipe that a read never returns from); started at the
            # first epoch, not in start(): other loaders may still fork after this one started
            self._reader = threading.Thread(target=_drain, args=(self._output_queue, self._inbox), daemon=True)
            self._reader.start()
        self._active.value = 1  # the workers poll from here to the end of the epoch
        try:
            prefetch()
            for indices in plan:
                t0 = time.perf_counter()
                parts = [get() for _ in indices]
                indices, skipped, times = merged(parts)
                images = self._augment_here([im for part in parts for im in part.images], indices, epoch, times)
                self.stats.wait_s.append(time.perf_counter() - t0)
                self.stats.stages.append(times)
                yield self._to_batch(images, indices, skipped, merged_labels(parts))
        finally:
            if self._active is not None:
                self._active.value = 0

    def _get(self) -> tuple[Key, Any]:
        """One item from the shared output queue, within the timeout, noticing a dead worker."""
        got: list[tuple[Key, Any]] = []

        def ready(seconds: float) -> bool:
            try:
                got.append(self._inbox.get(timeout=seconds))
            except queue.Empty:
                return False
            return True

        wait_for(ready, self.name, self.spec, lambda: [(w.pid, w.is_alive()) for w in self._workers])
        return got[0]

    def _shutdown(self) -> None:
        for index_queue in self._index_queues:
            try:
                index_queue.put(None)
            except (ValueError, OSError):
                pass
        deadline = time.monotonic() + 2.0
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                worker.kill()
                worker.join(1.0)
                self.left_behind += 1
        if self._output_queue is not None:
            with contextlib.suppress(Exception):
                self._output_queue.put(None)  # ends the reader thread
        for q in [*self._index_queues, *([self._output_queue] if self._output_queue is not None else [])]:
            q.cancel_join_thread()
            q.close()
        self._workers, self._index_queues, self._output_queue = [], [], None
