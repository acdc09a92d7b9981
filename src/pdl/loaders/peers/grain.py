"""GrainLoader: the same batches made by Google Grain's ``grain.DataLoader(worker_count=N)`` (Python ≥ 3.11).
Needs ``pip install 'pdl[grain]'``.

As ``grain/_src/python/data_loader.py`` builds it, ``DataLoader`` is the dataset API underneath: the sampler's
records → ``to_iter_dataset`` → the operations → ``mp_prefetch(MultiprocessingOptions(num_workers, per_worker_buffer_size))``;
``mp_prefetch`` (``dataset/transformations/process_prefetch.py``) gives worker ``w`` the records ``w::N``, each in
its own **spawned** process (always spawn), which copies every array of an element into a fresh
``multiprocessing.shared_memory`` block and sends its name through a queue; the main process reads the workers in
turn (an ``InterleaveIterDataset`` with a prefetch thread per worker), maps each block as a ``SharedMemoryArray``,
and unlinks it when that array is garbage, on a class-wide ``ThreadPool`` (``enable_async_del``) that nothing
ever stops. A worker's death is seen within 1 s (its exit code); a stuck worker is waited for forever.

Which API: both were run here (``DataLoader(worker_count=N)`` and ``MapDataset…mp_prefetch(MultiprocessingOptions(
num_workers=N))``); they are one machinery and made the same batches at the same speed. Grain's "Choice of API"
page says to prefer ``DataLoader`` when a pipeline is a source, a sampler and a flat list of transformations,
which this is, and the dataset API for mixing sources or packing, which it is not: ``DataLoader`` it is.

How it runs here: one record per batch (a record is a batch number; the map makes that batch with pdl's
``make_batch``), so the batches are pdl's (Grain's own ``Batch`` would batch each worker's records ``w::N``
apart). One endless sampler, so the workers live as long as the loader, as a Grain user's iterator does. Adapted,
not changed: an epoch's batches are made only once that epoch is asked for (each worker waits on a pipe of its
own for the epoch number), so no work runs ahead into another loader's timed epoch, as torchdata's source is
fed; each wait for a batch is bounded by the timeout and notices a dead worker; ``close()`` stops the workers,
unlinks every block still in flight and the names of those the caller still holds (their pages stay readable;
held at exit, they would go to the resource tracker, which warns and removes them), drains and stops Grain's
unlink pool, and removes the pipes. A batch held in a global until the interpreter ends still meets Grain's
``__del__`` after its module is torn down: one "Exception ignored" line, nothing left behind.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ...data.pipeline import Pipeline
from ...data.protocol import Dataset
from ...errors import WorkerDiedError
from ..base import Loader
from ..batching import Batch, epoch_plan, make_batch
from ..forking import worker_started
from ..spec import LoaderSpec
from .common import Reaper, checked, process_alive, safely, stop_waiter, version, wait_for

if sys.version_info < (3, 11):  # Grain's own floor: the registry says so in one line
    raise ImportError("grain needs Python 3.11 or newer", name="grain")

logging.getLogger("absl").setLevel(logging.ERROR)  # Grain's import warns that JAX's profiler is missing
import grain  # noqa: E402
from grain._src.python.ipc.shared_memory_array import SharedMemoryArray  # noqa: E402

ENDLESS = 2**40  # the sampler's records: more batches than any run asks for
STOP = -1  # sent down a worker's pipe at close: stop waiting, make nothing
NONE = -2  # no epoch released yet

_released: dict[str, tuple[int, int]] = {}  # in a worker: its pipe's folder → (fd, the last epoch released)
_open_loaders = 0  # GrainLoaders open in this process: the last to close stops Grain's unlink pool


def _wait_released(folder: str, worker: int, epoch: int) -> bool:
    """In a worker: block until the loader has asked for ``epoch`` (False: it is closing, or gone)."""
    fd, seen = _released.get(folder, (-1, NONE))
    if fd < 0:
        if threading.current_thread() is threading.main_thread():
            worker_started()
        fd = os.open(os.path.join(folder, str(worker)), os.O_RDONLY)
        _announce(folder, worker)
    while seen != STOP and seen < epoch:
        data = os.read(fd, 8)  # blocks: no polling while the loader is not asking
        seen = int.from_bytes(data, "little", signed=True) if len(data) == 8 else STOP  # short: the loader is gone
    _released[folder] = (fd, seen)
    return seen != STOP


def _announce(folder: str, worker: int) -> None:
    """In a worker: leave its pid in the loader's folder, so the loader knows its own workers by name, not by
    guessing among the main process's children (a resource tracker caught between fork and exec, or another
    loader's workers, were taken for Grain's and killed at close)."""
    path = os.path.join(folder, f"pid-{worker}")
    with open(path + ".part", "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(path + ".part", path)


class _Make(grain.transforms.Map):  # type: ignore[misc]
    """Grain's map, in a worker: batch number ``start + record`` of the stream, made by pdl's ``make_batch``.

    Returns (epoch, number in the epoch, pid, images, the rest or an error): Grain moves ``images`` through
    shared memory; the rest (indices, skipped, stage times, labels) is pickled."""

    def __init__(self, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec, folder: str, start: int, per_epoch: int) -> None:
        self.dataset, self.pipeline, self.spec = dataset, pipeline, spec
        self.folder, self.start, self.per_epoch = folder, start, per_epoch
        self._plans: dict[int, list[np.ndarray]] = {}

    def map(self, element: int) -> tuple[int, int, int, Any, Any]:
        epoch, number = divmod(self.start + int(element), self.per_epoch)
        workers = max(1, self.spec.num_workers)
        if not _wait_released(self.folder, int(element) % workers, epoch):
            return epoch, number, os.getpid(), None, None
        if epoch not in self._plans:
            self._plans = {epoch: epoch_plan(len(self.dataset), self.spec, epoch)}
        indices = self._plans[epoch][number]
        made = safely(make_batch, self.dataset, self.pipeline, indices, epoch, self.spec)
        if isinstance(made, BaseException):
            return epoch, number, os.getpid(), None, made
        images, made.images = made.images, None
        return epoch, number, os.getpid(), images, made


class _Records(grain.sources.RandomAccessDataSource):  # type: ignore[misc]
    """The sampler's records: record ``i`` is ``i``, the map's batch number from the stream's start."""

    def __len__(self) -> int:
        return ENDLESS

    def __getitem__(self, record: int) -> int:
        return int(record)


class GrainLoader(Loader):
    name = "grain"
    min_workers = 1
    start_method = "spawn"  # Grain's, always

    def __init__(self, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec | None = None, **options: Any) -> None:
        super().__init__(dataset, pipeline, spec, **options)
        self.version = version("grain")
        self._folder: str | None = None
        self._pipes: list[int] = []
        self._iterator: Any = None
        self._next_at = -1  # the stream's next batch number (epoch × batches per epoch + batch); -1: none yet
        self._released = -1
        self._waiter: ThreadPoolExecutor | None = None
        self._pending: Future[Any] | None = None
        self._pids: list[int] = []
        self._reaper = Reaper()
        self._handed: list[weakref.ref[Any]] = []  # Grain's blocks handed out as batches
        self.left_behind = 0
        self._registered = False

    @property
    def worker_pids(self) -> list[int]:
        return list(self._pids)

    def start(self) -> None:
        self._check_open()
        if self._iterator is None:
            self._begin(self._position_of(self.epoch, self._skip))

    def _position_of(self, epoch: int, done: int) -> int:
        return epoch * len(self) + done

    def _begin(self, at: int) -> None:
        """A Grain iterator whose first batch is number ``at`` of the stream: its workers started, and waited for."""
        global _open_loaders
        try:
            if self._folder is None:
                self._folder = tempfile.mkdtemp(prefix=f"pdl-{os.getpid()}-grain-")
                for w in range(self.num_workers):
                    os.mkfifo(os.path.join(self._folder, str(w)))
                    self._pipes.append(os.open(os.path.join(self._folder, str(w)), os.O_RDWR))  # never blocks
                if not self._registered:
                    self._registered, _open_loaders = True, _open_loaders + 1
            self._iterator = self._grain(_Make(self.dataset, self.pipeline, self.spec, self._folder, at, max(1, len(self))))
            self._next_at = at
            self._waiter = self._waiter or ThreadPoolExecutor(1, thread_name_prefix="pdl-grain")
        except BaseException:
            self.close()
            raise

    def _grain(self, make: _Make) -> Any:
        """Grain's iterator over the stream (it spawns its workers at the first next(): start-up is in the first
        batch)."""
        loader = grain.DataLoader(
            data_source=_Records(),
            sampler=grain.samplers.IndexSampler(ENDLESS, grain.sharding.NoSharding(), shuffle=False, num_epochs=1),
            operations=[make],
            worker_count=self.num_workers,
            worker_buffer_size=self.spec.prefetch,
        )
        return iter(loader)

    def _alive(self) -> list[tuple[int, bool]]:
        """(pid, alive) of the workers Grain started, as each announced itself in this loader's folder; new ones
        are handed to the reaper."""
        for name in os.listdir(self._folder) if self._folder is not None else ():
            if name.startswith("pid-") and not name.endswith(".part"):
                with contextlib.suppress(OSError, ValueError), open(os.path.join(self._folder, name)) as fh:
                    pid = int(fh.read())
                    if pid not in self._pids:
                        self._pids.append(pid)
                        self._reaper.add([pid])
        return [(pid, process_alive(pid)) for pid in self._pids]

    def _release(self, epoch: int) -> None:
        """Let the workers make ``epoch``'s batches (they wait on their pipes until then)."""
        if epoch > self._released:
            self._released = epoch
            for fd in self._pipes:
                os.write(fd, epoch.to_bytes(8, "little", signed=True))

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        plan = self.plan(epoch)
        if not plan:
            return
        at = self._position_of(epoch, len(self) - len(plan))
        if at != self._next_at:  # a resumed state, or an epoch left early: the stream starts again there
            self._stop_iterator()
            self._begin(at)
        self._release(epoch)
        self._handed = [ref for ref in self._handed if ref() is not None]
        for _ in plan:
            t0 = time.perf_counter()
            made_epoch, number, pid, images, made = self._next()
            self._next_at += 1
            made = checked(made)
            assert made_epoch == epoch and made is not None, (made_epoch, number)
            if pid not in self._pids:
                self._alive()
            self._handed.append(weakref.ref(images))  # unlinked once dropped, or at close() if the caller still holds it
            images = images.view(np.ndarray)
            self.stats.wait_s.append(time.perf_counter() - t0)
            self.stats.stages.append(made.times)
            yield self._to_batch(images, made.indices, made.skipped, made.labels)

    def _next(self) -> Any:
        """The next element, within the timeout, noticing a dead worker (Grain waits for a stuck one forever)."""
        assert self._waiter is not None
        if self._pending is None:
            self._pending = self._waiter.submit(next, self._iterator)
        pending = self._pending

        def ready(seconds: float) -> bool:
            with contextlib.suppress(TimeoutError):
                pending.exception(seconds)
            return pending.done()

        wait_for(ready, self.name, self.spec, self._alive)
        self._pending = None
        try:
            return pending.result()
        except RuntimeError as exc:  # Grain's "Worker process was terminated unexpectedly with exit code -9"
            if "terminated unexpectedly" in str(exc):
                raise WorkerDiedError(f"{self.name}: a worker process died ({exc})", exc_type="WorkerDied") from None
            raise

    def _stop_iterator(self) -> None:
        """Stop the workers of the current iterator; blocks still in its queues are unlinked by Grain."""
        iterator, self._iterator = self._iterator, None
        for fd in self._pipes:  # a worker waiting for an epoch stops waiting
            with contextlib.suppress(OSError):
                os.write(fd, STOP.to_bytes(8, "little", signed=True))
        if self._pending is not None:
            with contextlib.suppress(BaseException):
                self._pending.result(timeout=5)  # Grain's iterator is not thread-safe: its next() ends first
            self._pending = None
        inner = getattr(iterator, "_iterator", None)  # DataLoaderIterator has no close(); its dataset iterator has
        if inner is not None:
            with contextlib.suppress(Exception):
                inner.close()
        self.left_behind += self._reaper.reap(wait=2.0)
        self._pids = []
        self._released = -1
        for fd in self._pipes:  # fresh pipes: the next workers must not read the STOP sent to these
            with contextlib.suppress(OSError):
                os.close(fd)
        self._pipes = []
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def _shutdown(self) -> None:
        global _open_loaders
        self._stop_iterator()
        for ref in self._handed:  # batches the caller still holds: their names go now, their pages stay
            block = ref()
            if block is not None and getattr(block, "_unlink_on_del", False) and block.shm is not None:
                with contextlib.suppress(OSError):
                    block.shm.unlink()
                block._unlink_on_del = False
        self._handed = []
        if self._waiter is not None:
            stop_waiter(self._waiter)
            self._waiter = None
        if self._registered:
            self._registered, _open_loaders = False, _open_loaders - 1
            if _open_loaders == 0:
                _stop_unlink_pool()


def _stop_unlink_pool() -> None:
    """Unlink the blocks whose arrays are garbage now, then stop Grain's unlink pool: what it still held at exit
    would be left to the resource tracker. A later Grain iterator starts a new one."""
    gc.collect()
    pool = SharedMemoryArray._del_thread_pool
    if pool is None:
        return
    SharedMemoryArray._disable_async_del()  # from here, a dropped block is unlinked at once, on the caller's thread
    pool.close()
    pool.join()
