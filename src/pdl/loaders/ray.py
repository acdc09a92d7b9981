"""RayLoader: the same batches made by Ray actors that live as long as the loader: Ray's overhead paid once.

Why it exists: when the augmentation is too heavy for the training machine's CPUs, Ray runs it on a pool of
CPU machines. Run beside ParallelLoader on one machine, it shows what Ray's generality costs here.
Optional: ``pip install 'pdl[ray]'``.

``start()`` connects to ``ray_address`` (or starts a local Ray instance) and creates one actor per worker,
spread over the nodes, each holding the dataset and the pipeline (put once in the object store): an epoch then
costs one method call per chunk, nothing more. (A Ray Data pipeline re-plans and restarts its execution every
epoch, and one row per batch left its operator one input at a time: the loader this one replaced ran at 0.85×
the sequential loop on 480 photos.) As in the process loader, each batch is cut into chunks
(``chunks.split``) and each chunk goes to the actor with the fewest images outstanding, so every Ray CPU stays
busy to the end of the epoch; at most ``num_workers × prefetch`` batches are in flight. An actor returns its
chunk's images as one numpy array through Ray's object store (``ray.get`` maps it without copying) and the
batch is stacked from its chunks in order, bit-identical to every other loader's (``batching.make_batch``, the
same per-image seeds).

Ray speaks only when asked: its loggers stay at ERROR, its warnings are ignored and the workers' output stays
in Ray's log files unless pdl's loggers are set to INFO (``pdl --verbose`` does). A local instance keeps its session files in a
temporary folder of its own, removed by ``close()`` with everything else Ray started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil

from .._env import keep_freed_memory, limit_threads, quiet_opencv
from ..data.folder import ImageFolder
from ..data.pipeline import Pipeline
from ..errors import LoaderTimeoutError, MissingDependencyError, WorkerDiedError, WorkerError, worker_error
from ..machine.cpu import cpu_info
from .base import Loader
from .batching import Batch, make_batch
from .chunks import Part, merged, merged_labels, split, stack
from .spec import LoaderSpec
from .watchdog import Watchdog

OBJECT_STORE_MB = 200  # a local instance's object store: a few batches in flight need far less than default
START_TIMEOUT_S = 120.0  # Ray up and every actor ready (a new worker process imports Ray, OpenCV, albumentations)
TIMEOUT_S = 300.0  # for one batch at least, unless ``timeout`` says otherwise: a dead actor is an error, not a hang
# Ray reads these when it starts; set only where the user has not chosen (setdefault)
QUIET_ENV = {
    "RAY_DEDUP_LOGS": "0",  # no "[repeated Nx across cluster]" summaries
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage-stats notice, no network call
}


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("the ray loader needs Ray: pip install 'pdl[ray]'") from None
    return ray


def verbose() -> bool:
    """Whether Ray may speak: pdl's own loggers were set to INFO or lower (``pdl --verbose`` does)."""
    return logging.getLogger(__name__).isEnabledFor(logging.INFO)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Ray's Python warnings kept off the terminal, unless ``verbose()``."""
    with warnings.catch_warnings():
        if not verbose():
            warnings.filterwarnings("ignore", module=r"ray(\.|$)")
        yield


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return list(proc.children(recursive=True))
    except psutil.Error:
        return []


class _Maker:
    """A Ray actor: holds the dataset and the pipeline for the loader's life and makes chunks of batches."""

    def __init__(self, dataset: ImageFolder, pipeline: Pipeline, spec: LoaderSpec) -> None:
        import ray

        limit_threads()
        keep_freed_memory()
        quiet_opencv()
        self.dataset, self.pipeline, self.spec = dataset, pipeline, spec
        self.augment = spec.augment_in == "workers"
        if self.augment:
            pipeline.compose  # build the albumentations objects once, before the first task  # noqa: B018
        self.node = ray.get_runtime_context().get_node_id()

    def ready(self) -> tuple[str, int]:
        return self.node, os.getpid()

    def make(self, indices: np.ndarray, epoch: int, offset: int) -> tuple[Part, float, float] | WorkerError:
        """One chunk: its images (one array, or raw images for ``augment_in="main"``), start and end times.
        A failure is returned as data: raised, Ray would flatten the pdl error into a traceback string."""
        t0 = time.time()
        try:
            made = make_batch(self.dataset, self.pipeline, indices, epoch, self.spec, None, self.augment)
        except Exception as exc:
            return worker_error(exc, getattr(exc, "path", None), "reading")
        return Part(offset, made.indices, made.skipped, made.times, images=made.images, labels=made.labels), t0, time.time()


@dataclass
class _InFlight:
    parts: list[Part | None]
    outstanding: int


RAY_TEMP_MAX = 40  # Ray's sockets live at <temp>/session_<date>_<time>_<pid>/sockets/plasma_store: 107 bytes at most


def ray_temp_dir(prefix: str) -> str:
    """A new folder for a Ray instance's session files: under the temp dir ($TMPDIR) when its path leaves room for
    Ray's socket paths (107 bytes, a Unix limit), else under /tmp; a long $TMPDIR would make ray.init fail."""
    base = tempfile.gettempdir()
    if len(os.path.join(base, prefix + "x" * 8)) > RAY_TEMP_MAX and os.path.isdir("/tmp"):
        base = "/tmp"
    return tempfile.mkdtemp(prefix=prefix, dir=base)


class RayLoader(Loader):
    name = "ray"
    splits_batches = True
    _owns_ray = False
    _temp_dir: str | None = None
    _ray_level: int | None = None  # the ``ray`` logger's level before this loader silenced it
    _node: tuple[psutil.Process, ...] = ()

    object_store_mb = OBJECT_STORE_MB

    def __init__(self, dataset: ImageFolder, pipeline: Pipeline, spec: LoaderSpec | None = None, **options: Any) -> None:
        self._ray = _import_ray()
        super().__init__(dataset, pipeline, spec, **options)
        self.address = self.spec.ray_address or os.environ.get("RAY_ADDRESS") or None  # None: a local instance
        self.num_workers = self.spec.num_workers or (0 if self.address else cpu_info().usable)  # 0: the cluster's CPUs
        self.startup_s = 0.0  # how long connecting to (or starting) Ray took (0 when it was already running)
        self._actors: list[Any] = []
        self._actor_nodes: list[str] = []
        self._actor_pids: list[int] = []
        self.node_tasks: Counter[str] = Counter()  # chunks made per Ray node id, over the loader's life
        self.watchdog = Watchdog(floor_s=TIMEOUT_S)  # without `timeout`: the longest wait for a batch
        self._pending: dict[Any, tuple[_InFlight, int, int, int]] = {}  # ref → (its batch, part, actor, images)
        self._load: list[int] = []

    # -- start-up --------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start a local Ray instance (or connect to ``ray_address``) unless one is running, then the actors."""
        self._check_open()
        if self._actors:
            return
        try:
            with quiet():
                self._connect()
                self._start_actors()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> None:
        ray = self._ray
        if ray.is_initialized():
            return
        for var, value in QUIET_ENV.items():
            os.environ.setdefault(var, value)
        talk = verbose()
        if not talk:  # Ray configures its ``ray`` logger at INFO when imported: ERROR while this loader lives
            ray_log = logging.getLogger("ray")
            self._ray_level = ray_log.level
            ray_log.setLevel(logging.ERROR)
        common = dict(
            include_dashboard=False,
            log_to_driver=talk,
            configure_logging=talk,
            logging_level=logging.INFO if talk else logging.ERROR,
        )
        before = {p.pid for p in psutil.Process().children()}
        # Ray's core installs its own SIGTERM/SIGINT handlers (a stack dump, then exit) in the driver: keep the
        # caller's, so a terminated run still cleans up and says so as it does without Ray
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        t0 = time.perf_counter()
        if self.address:
            ray.init(address=self.address, **common)
        else:
            # its session files (logs, sockets) in a folder of its own, removed by close(): not /tmp/ray
            self._temp_dir = ray_temp_dir("pdl-ray-")
            ray.init(
                num_cpus=self.num_workers, object_store_memory=self.object_store_mb * 2**20, _temp_dir=self._temp_dir, **common
            )
        self.startup_s = time.perf_counter() - t0
        if threading.current_thread() is threading.main_thread():
            for sig, handler in handlers.items():
                if handler is not None:
                    signal.signal(sig, handler)
        self._owns_ray = True
        self._node = tuple(p for p in psutil.Process().children() if p.pid not in before)  # GCS, raylet…

    def _start_actors(self) -> None:
        ray = self._ray
        cpus = ray.cluster_resources().get("CPU", 0.0)
        if not self.num_workers:
            self.num_workers = max(1, int(cpus))
        # one CPU each, as many as fit; more workers than CPUs share them
        share = min(1.0, cpus / self.num_workers) if cpus else 1.0
        maker = ray.remote(num_cpus=share, max_restarts=0, scheduling_strategy="SPREAD")(_Maker)
        shared = [ray.put(x) for x in (self.dataset, self.pipeline, self.spec)]  # once, not once per actor
        t0 = time.perf_counter()
        self._actors = [maker.remote(*shared) for _ in range(self.num_workers)]
        self._load = [0] * self.num_workers
        refs = [actor.ready.remote() for actor in self._actors]
        try:
            ready = ray.get(refs, timeout=START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            raise LoaderTimeoutError(
                f"the ray loader's {self.num_workers} workers were not ready within {START_TIMEOUT_S:.0f}s "
                f"(the cluster has {cpus:g} CPUs): lower `num_workers` or check the cluster"
            ) from None
        except ray.exceptions.RayError as exc:
            raise self._failure(exc, "starting its workers") from None
        self._actor_nodes = [node for node, _ in ready]
        self._actor_pids = [pid for _, pid in ready]
        self.startup_s += time.perf_counter() - t0

    def cluster_info(self) -> dict[str, Any]:
        self.start()
        ray = self._ray
        resources = ray.cluster_resources()
        return {
            "address": self.address or "local",
            "nodes": sum(1 for node in ray.nodes() if node.get("Alive")),
            "cpus": resources.get("CPU", 0.0),
            "object_store_mb": resources.get("object_store_memory", 0.0) / 2**20,
            "startup_s": self.startup_s,
            "task_nodes": len(set(self.node_tasks) or set(self._actor_nodes)),
        }

    @property
    def actor_nodes(self) -> list[str]:
        """The Ray node id of each actor, in worker order."""
        return list(self._actor_nodes)

    @property
    def actor_pids(self) -> list[int]:
        """The process id of each actor (on its own node), in worker order."""
        return list(self._actor_pids)

    @property
    def worker_pids(self) -> list[int]:
        """Every process of the local Ray instance this loader started (GCS, raylet, agents, actors), so CPU
        and memory count Ray's whole cost; the actors alone when Ray was already running on this machine."""
        pids = []
        for proc in self._node:
            with contextlib.suppress(psutil.Error):
                pids += [proc.pid, *(child.pid for child in proc.children(recursive=True))]
        if not pids:
            pids = [pid for pid in self._actor_pids if psutil.pid_exists(pid)]  # on this machine, if any
        return pids

    # -- one epoch -------------------------------------------------------------------------------------------
    def _epoch(self, epoch: int) -> Iterator[Batch]:
        plan = self.plan(epoch)
        self._pending.clear()  # an abandoned epoch's chunks: their results are dropped when they land
        self._load = [0] * self.num_workers
        batches: dict[int, _InFlight] = {}
        window = self.num_workers * self.spec.prefetch
        sent = 0
        try:
            for number in range(len(plan)):
                while sent < len(plan) and sent - number < window:
                    batches[sent] = self._dispatch(plan[sent], epoch)
                    sent += 1
                t0 = time.perf_counter()
                made = batches.pop(number)
                deadline = time.monotonic() + (self.spec.timeout or self.watchdog.bound_s)
                while made.outstanding:
                    self._collect(deadline, f"batch {number} of epoch {epoch}")
                batch = self._unpack(made, epoch)
                self.stats.wait_s.append(time.perf_counter() - t0)
                yield batch
        finally:
            self._pending.clear()

    def _dispatch(self, indices: np.ndarray, epoch: int) -> _InFlight:
        """Cut the batch into chunks, each queued on the actor with the fewest images outstanding."""
        offsets = split(len(indices), self.num_workers, self.spec.chunk_size)
        made = _InFlight([None] * len(offsets), len(offsets))
        for part, (offset, count) in enumerate(offsets):
            wid = min(range(self.num_workers), key=self._load.__getitem__)
            self._load[wid] += count
            ref = self._actors[wid].make.remote(indices[offset : offset + count], epoch, offset)
            self._pending[ref] = (made, part, wid, count)
        return made

    def _collect(self, deadline: float, waiting_for: str) -> None:
        """Wait for any chunk in flight; a late one is a timeout, a dead actor an error naming it."""
        ray = self._ray
        timeout = max(0.0, deadline - time.monotonic())
        ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=timeout)
        if not ready and self.spec.timeout is None:
            raise self.watchdog.expired("the ray loader", waiting_for, "chunk", "a worker or the cluster may be stuck")
        if not ready:
            raise LoaderTimeoutError(
                f"the ray loader got no chunk within {self.spec.timeout or TIMEOUT_S:g}s while waiting for "
                f"{waiting_for}; a worker may be stuck: raise `timeout` or check the pipeline and the cluster"
            )
        ref = ready[0]
        made, part, wid, count = self._pending.pop(ref)
        self._load[wid] -= count
        try:
            result = ray.get(ref, timeout=START_TIMEOUT_S)
        except ray.exceptions.RayError as exc:
            raise self._failure(exc, f"making {waiting_for}", wid) from None
        if isinstance(result, WorkerError):
            raise result
        made.parts[part], t_start, t_done = result
        self.watchdog.saw(t_done - t_start)
        made.outstanding -= 1
        self.node_tasks[self._actor_nodes[wid]] += 1
        self.stats.worker_did(wid, t_start, t_done)

    def _failure(self, exc: Exception, doing: str, wid: int | None = None) -> WorkerError:
        """Ray's exception as one line naming the loader (and the worker and its node)."""
        cause = getattr(exc, "cause", None) or exc
        lines = [line for line in str(cause).strip().splitlines() if line.strip()] or [type(cause).__name__]
        who = "the ray loader" if wid is None else f"the ray loader's worker {wid} (node {self._actor_nodes[wid][:8]})"
        if isinstance(exc, self._ray.exceptions.RayActorError):
            return WorkerDiedError(f"{who} died while {doing}: {lines[0]}", exc_type="WorkerDied")
        return WorkerError(f"{who} failed while {doing}: {lines[0]}", exc_type=type(cause).__name__)

    def _unpack(self, made: _InFlight, epoch: int) -> Batch:
        parts = [p for p in made.parts if p is not None]
        indices, skipped, times = merged(parts)
        self.stats.stages.append(times)
        images: Any
        if self.spec.augment_in == "main":
            images = self._augment_here([im for p in parts for im in p.images], indices, epoch, times)
        else:  # chunks mapped from the object store, stacked into one new (writable) array
            images = stack([p.images for p in parts], self.pipeline)
        return self._to_batch(images, indices, skipped, merged_labels(parts))

    # -- shutdown --------------------------------------------------------------------------------------------
    def _shutdown(self) -> None:
        """Kill the actors; stop the Ray instance this loader started (none it merely found running) and remove
        its session files."""
        self._pending.clear()
        ray = self._ray
        ours = [*self._node, *(c for p in self._node if p.is_running() for c in _children(p))]  # before they go
        with quiet():
            if ray.is_initialized():
                for actor in self._actors:
                    with contextlib.suppress(Exception):
                        ray.kill(actor)
            self._actors = []
            if self._owns_ray:
                ray.shutdown()
        if ours:  # ray.shutdown() stops them; wait, and stop any that lingers
            _, alive = psutil.wait_procs([p for p in ours if p.is_running()], timeout=10)
            for proc in alive:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        if self._ray_level is not None:
            logging.getLogger("ray").setLevel(self._ray_level)
            self._ray_level = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
