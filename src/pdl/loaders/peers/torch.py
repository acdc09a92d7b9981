"""TorchLoader: the same batches made by torch.utils.data.DataLoader: the reference pdl is measured against.

Most users of an image pipeline already load with PyTorch's DataLoader, so the honest baseline is that loader
set up as torch advises: persistent workers, ``prefetch_factor``, one OpenCV thread per worker, batches moved
as tensors through torch's shared memory. Each sampler item is a whole batch, (epoch, indices) from pdl's own
plan, and one worker call makes it with ``make_batch``: the batches are bit-identical to every pdl loader's,
so a comparison measures the loaders, not the work. Needs the optional extra: pip install 'pdl[torch]'.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ...data.pipeline import Pipeline
from ...data.protocol import Dataset, check_picklable
from ...errors import LoaderTimeoutError, MissingDependencyError, WorkerDiedError, WorkerError, worker_error
from ...machine.host import default_start_method
from ..base import Loader
from ..batching import Batch, epoch_plan, make_batch
from ..forking import forking, worker_started
from ..spec import LoaderSpec
from .common import timed_out, wait_s

try:
    import torch
    from torch.utils.data import DataLoader
except ImportError:  # the optional extra: TorchLoader() says how to install it
    torch = None  # type: ignore[assignment]


class _Plan:
    """The sampler: one item per batch, (epoch, indices); yields nothing until an epoch is set."""

    def __init__(self, n: int, spec: LoaderSpec) -> None:
        self.n, self.spec = n, spec
        self.epoch: int | None = None

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        epoch = self.epoch
        if epoch is None:
            return iter(())
        return ((epoch, indices) for indices in epoch_plan(self.n, self.spec, epoch))


class _Batches:
    """The map-style dataset whose item is one whole batch, made in a torch worker."""

    def __init__(self, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec) -> None:
        self.dataset, self.pipeline, self.spec = dataset, pipeline, spec

    def __getitem__(self, item: tuple[int, np.ndarray]) -> tuple[Any, ...] | WorkerError:
        epoch, indices = item
        augment = self.spec.augment_in == "workers"
        t_start = time.perf_counter()  # perf_counter is system-wide: the consumer compares it with its own
        shared = _shared_batch(len(indices), self.pipeline) if augment else None
        try:
            out = None if shared is None else shared.numpy()
            made = make_batch(self.dataset, self.pipeline, indices, epoch, self.spec, out=out, augment=augment)
        except Exception as exc:  # returned, not raised: torch re-raises it rebuilt from its message alone
            return worker_error(exc, getattr(exc, "path", None), "reading")
        if not augment:
            images: Any = [torch.from_numpy(im) for im in made.images]
        elif shared is not None:
            images = shared[: len(made.indices)]  # a view: only the kept rows are sent, no copy
        else:
            images = torch.from_numpy(made.images)
        info = torch.utils.data.get_worker_info()
        worker = (0 if info is None else info.id, t_start, time.perf_counter())
        return images, made.indices, made.skipped, made.times, made.labels, worker


def _shared_batch(n: int, pipeline: Pipeline) -> Any:
    """In a worker, the batch tensor in shared memory, as torch's default_collate makes it there: stacking
    into it directly saves the copy torch would make to share a private array (None: output size unknown)."""
    shape = pipeline.output_shape
    if shape is None or torch.utils.data.get_worker_info() is None:
        return None
    elem = torch.empty(0, dtype=torch.from_numpy(np.empty(0, dtype=pipeline.output_dtype)).dtype)
    storage = elem._typed_storage()._new_shared(n * math.prod(shape), device=elem.device)  # type: ignore[no-untyped-call]
    return elem.new(storage).resize_(n, *shape)


def _as_is(item: Any) -> Any:
    return item


def _init_worker(worker_id: int) -> None:
    worker_started()


def _translate(exc: RuntimeError, spec: LoaderSpec) -> Exception:
    message = str(exc)
    if message.startswith("DataLoader timed out"):
        if spec.timeout is None:  # torch's wait for ever (timeout 0) replaced by the peers' watchdog
            return timed_out("torch", spec)
        return LoaderTimeoutError(f"{message}; a worker may be stuck: raise `timeout` or check the pipeline")
    if message.startswith("DataLoader worker"):
        return WorkerDiedError(message, exc_type="WorkerDied")
    return WorkerError(message, exc_type=type(exc).__name__)


class TorchLoader(Loader):
    name = "torch"

    min_workers = 1

    def __init__(self, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec | None = None, **options: Any) -> None:
        if torch is None:
            raise MissingDependencyError("`loaders` torch needs PyTorch: pip install 'pdl[torch]'")
        super().__init__(dataset, pipeline, spec, **options)
        self.start_method: str = self.spec.start_method or default_start_method()
        self._plan = _Plan(len(dataset), self.spec)
        self._loader: Any = None

    @property
    def worker_pids(self) -> list[int]:
        workers = [] if self._loader is None else getattr(self._loader._iterator, "_workers", [])
        return [w.pid for w in workers if w.pid is not None]

    def start(self) -> None:
        self._check_open()
        if self._loader is not None:
            return
        spec = self.spec
        if self.num_workers:
            check_picklable(self.dataset, self.start_method)
        self._loader = DataLoader(
            _Batches(self.dataset, self.pipeline, spec),  # type: ignore[arg-type]
            batch_size=None,  # the sampler yields whole batches
            sampler=self._plan,
            collate_fn=_as_is,
            num_workers=self.num_workers,
            prefetch_factor=spec.prefetch,
            persistent_workers=True,
            worker_init_fn=_init_worker,
            timeout=wait_s(spec),  # torch's 0 waits for ever on a stopped worker
            multiprocessing_context=self.start_method,
        )
        try:
            with forking(self.start_method, self.pipeline):
                iter(self._loader)  # forks the workers; the plan is empty, so nothing is prefetched yet
            iter(self._loader)  # a round trip to every worker: the pool is up before anything is timed
        except BaseException:
            self.close()
            raise

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        self._plan.epoch = epoch
        try:
            batches = iter(self._loader)  # persistent: the same workers, reset to this epoch's plan
            while True:
                t0 = time.perf_counter()
                item = next(batches, None)
                if item is None:
                    return
                if isinstance(item, WorkerError):
                    raise item
                images, indices, skipped, times, labels, (wid, t_start, t_done) = item
                self.stats.worker_did(wid, t_start, t_done)
                if t_done >= t0:  # made while we waited: the time to get it (before any augmenting here)
                    self.stats.handoff_s.append(time.perf_counter() - t_done)
                if self.spec.augment_in == "workers":
                    images = images.numpy()  # zero copy: a view of torch's shared memory
                else:
                    images = self._augment_here([im.numpy() for im in images], indices, epoch, times)
                self.stats.wait_s.append(time.perf_counter() - t0)
                self.stats.stages.append(times)
                yield self._to_batch(images, indices, skipped, labels)
        except RuntimeError as exc:  # torch's own (from next() or its SIGCHLD handler): timeout, dead worker
            raise _translate(exc, self.spec) from None  # Loader closes it

    def _shutdown(self) -> None:
        loader, self._loader = self._loader, None
        if loader is not None and loader._iterator is not None:
            loader._iterator._shutdown_workers()
            loader._iterator = None
