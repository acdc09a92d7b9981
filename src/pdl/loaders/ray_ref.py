"""RayLoader: the same batches made by Ray Data, as a reference for what a general-purpose engine costs.

Why it exists: Ray Data is what many teams reach for to parallelise preprocessing. Run beside ParallelLoader
on the same files, pipeline and per-image seeds, it shows what that generality costs here: cluster start-up,
a task per batch, images copied through the object store. Optional: ``pip install 'pdl[ray]'``.

One Ray Dataset per epoch with one row per pdl batch (its index array and the epoch); ``map_batches`` with
``batch_size=1`` runs ``make_batch`` on one row per task, so one task makes one whole pdl batch and the
batches are bit-identical to every other loader's. ``preserve_order`` delivers them in plan order; its cost
is head-of-line blocking: a slow batch holds back finished ones behind it (as ParallelLoader's window does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np
import psutil

from .._env import limit_threads
from ..dataset import ImageFolder
from ..errors import ConfigError, LoaderTimeoutError, MissingDependencyError, WorkerError, worker_error
from ..pipeline import Pipeline
from ..protocol import describe
from ..system import cpu_info
from .base import Loader
from .batching import STAGES, Batch, StageTimes, augment_into, epoch_plan, make_batch
from .spec import LoaderSpec

OBJECT_STORE_MB = 200  # a local instance's object store: a few batches in flight need far less than default


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingDependencyError("the ray loader needs Ray Data: pip install 'pdl[ray]'") from None
    return ray


def _one(value: Any) -> np.ndarray:
    """A one-row object column (Ray pickles it) for what is not one fixed-shape array."""
    column = np.empty(1, dtype=object)
    column[0] = value
    return column


def _make_rows(rows: dict[str, np.ndarray], dataset: ImageFolder, pipeline: Pipeline, spec: LoaderSpec) -> dict[str, np.ndarray]:
    """Runs in a Ray task: one row in (a batch's indices and epoch), one row out (the batch, stage times).

    A failure is returned as data: raised, Ray would flatten the pdl error into a traceback string.
    """
    limit_threads()
    augment = spec.augment_in == "workers"
    indices, epoch = np.asarray(rows["indices"][0]), int(rows["epoch"][0])
    try:
        made = make_batch(dataset, pipeline, indices, epoch, spec, None, augment)
    except Exception as exc:
        return {"error": _one(worker_error(exc, getattr(exc, "path", None), "reading"))}
    images = made.images[None] if augment else _one(made.images)  # raw images vary in size: a list
    times = {stage: np.array([seconds]) for stage, seconds in made.times.as_dict().items()}
    return {"images": images, "indices": made.indices[None], "skipped": _one(made.skipped), **times}


class RayLoader(Loader):
    name = "ray"
    _closed = _owns_ray = False
    _pool: ThreadPoolExecutor | None = None
    _node: tuple[psutil.Process, ...] = ()

    object_store_mb = OBJECT_STORE_MB

    def __init__(self, dataset: ImageFolder, pipeline: Pipeline, spec: LoaderSpec | None = None, **options: Any) -> None:
        self._ray = _import_ray()
        super().__init__(dataset, pipeline, spec, **options)
        self.num_workers = self.spec.num_workers or cpu_info().usable  # 0: every usable core
        self.address = self.spec.ray_address or os.environ.get("RAY_ADDRESS") or None  # None: a local instance
        self.startup_s = 0.0  # how long ray.init took (0 when Ray was already running)

    def start(self) -> None:
        """Start a local Ray instance (or connect to ``ray_address``) unless this process already runs one."""
        if self._closed:
            raise ConfigError("this loader was closed; create a new one")
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # not two INFO lines per epoch on stderr
        ray = self._ray
        if ray.is_initialized():
            return
        quiet = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        before = {p.pid for p in psutil.Process().children()}
        t0 = time.perf_counter()
        if self.address:
            ray.init(address=self.address, **quiet)
        else:
            ray.init(num_cpus=self.num_workers, object_store_memory=self.object_store_mb * 2**20, **quiet)
        self.startup_s = time.perf_counter() - t0
        self._owns_ray = True
        self._node = tuple(p for p in psutil.Process().children() if p.pid not in before)  # GCS, raylet…

    def cluster_info(self) -> dict[str, Any]:
        self.start()
        resources = self._ray.cluster_resources()
        return {
            "address": self.address or "local",
            "nodes": sum(1 for node in self._ray.nodes() if node.get("Alive")),
            "cpus": resources.get("CPU", 0.0),
            "object_store_mb": resources.get("object_store_memory", 0.0) / 2**20,
            "startup_s": self.startup_s,
        }

    @property
    def worker_pids(self) -> list[int]:
        """Every process of the local Ray instance this loader started (GCS, raylet, agents, workers), so CPU
        and memory count Ray's whole cost. Empty when Ray was already running or runs elsewhere."""
        pids = []
        for proc in self._node:
            with contextlib.suppress(psutil.Error):
                pids += [proc.pid, *(child.pid for child in proc.children(recursive=True))]
        return pids

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        ray, spec = self._ray, self.spec
        plan = epoch_plan(len(self.dataset), spec, epoch)
        if not plan:
            return
        items = [{"indices": indices, "epoch": epoch} for indices in plan]
        ds = ray.data.from_items(items, override_num_blocks=len(plan)).map_batches(
            _make_rows,
            batch_size=1,
            batch_format="numpy",
            num_cpus=1,
            compute=ray.data.TaskPoolStrategy(size=self.num_workers),
            fn_kwargs=dict(dataset=self.dataset, pipeline=self.pipeline, spec=spec),
        )
        ds.context.execution_options.preserve_order = True  # this dataset only, not the process default
        ds.context.enable_progress_bars = False
        augment = spec.augment_in == "workers"
        rows = iter(ds.iter_batches(batch_size=1, prefetch_batches=spec.prefetch, batch_format="numpy"))
        for _ in plan:
            t0 = time.perf_counter()
            row = self._next(rows)
            if "error" in row:
                raise row["error"][0]
            indices, images = np.array(row["indices"][0], dtype=np.int64), row["images"][0]
            times = StageTimes(**{stage: float(row[stage][0]) for stage in STAGES})
            if not augment:  # Ray hands the list back as an object array: iterate it as a list of images
                paths = [describe(self.dataset, i) for i in indices]
                images = augment_into(self.pipeline, list(images), indices, spec.seed, epoch, paths, times)
            elif not images.flags.writeable:  # a view of Ray's buffer; a batch is the caller's to edit
                images = images.copy()
            self.stats.wait_s.append(time.perf_counter() - t0)
            self.stats.stages.append(times)
            skipped = [(str(path), str(reason)) for path, reason in row["skipped"][0]]  # tuples again
            yield self._to_batch(images, indices, skipped)

    def _next(self, rows: Iterator[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The next row, within ``timeout`` if one is set; a failure of Ray itself becomes one line."""
        timeout = self.spec.timeout
        try:
            if timeout is None:
                return next(rows)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="pdl-ray")
            return self._pool.submit(next, rows).result(timeout)
        except FutureTimeout:
            raise LoaderTimeoutError(f"no batch from Ray within {timeout}s: raise --timeout") from None
        except self._ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            lines = str(cause).strip().splitlines() or [type(cause).__name__]
            raise WorkerError(f"Ray: {lines[0]}", exc_type=type(cause).__name__) from None

    def close(self) -> None:
        """Stop the Ray instance this loader started (none it merely found running). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._owns_ray:
            self._ray.shutdown()
