"""One loader measured on one configuration (``Point``), and the Ray cluster a ``ray`` point ran on. Pure data.

To add a measured quantity: one field in ``Point`` (with a default if old files lack it), set in
``timing.make_point``; add its name to ``files.CSV_FIELDS`` if the CSV should carry it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..machine.contention import Interference


@dataclass(frozen=True)
class Cluster:
    """The Ray cluster a ``ray`` point ran on."""

    address: str  # "local" for a cluster started in-process
    nodes: int
    """Nodes alive in the cluster."""
    cpus: float
    """CPUs of the cluster, as Ray counts them."""
    object_store_mb: float | None = None
    """The cluster's object store memory, MB."""
    startup_s: float | None = None  # connecting to (or starting) the cluster
    task_nodes: int | None = None  # nodes the loader's tasks ran on


@dataclass(frozen=True)
class Point:
    """One loader measured on one configuration: the configuration, the raw per-round timings, and what they give.

    ``speedup*`` are derivable from the two lists of walls but stored: the report shows exactly what was
    measured, and the file stays readable without pdl.
    """

    pipeline: str
    """Pipeline name (a shipped level or a YAML path)."""
    loader: str
    """Loader kind: sequential, process, thread, torch, ray, ..."""
    workers: int
    """Worker count (0 for sequential)."""
    batch_size: int
    """Images per batch."""
    prefetch: int
    """Batches in flight per worker."""
    augment_in: str
    """Where augmentation ran: 'workers' or 'main'."""
    images: int
    """Images per epoch (after any skipped)."""
    wall_s: tuple[float, ...]
    """Wall time of each timed round's epoch, in round order."""
    baseline_wall_s: tuple[float, ...]
    """The sequential baseline's wall time in the same rounds."""
    speedup: float
    """Median over rounds of baseline / this loader, both timed in the same round."""
    speedup_min: float
    """The lowest of the per-round ratios (`speedup_rounds`)."""
    speedup_max: float
    """The highest of the per-round ratios (`speedup_rounds`)."""
    speedup_rounds: tuple[float, ...]
    """The per-round ratios the median, min and max are taken from."""
    noisy: bool
    """The speedup is uncertain: its 95% interval (``stats.rounds.interval``) is wider than ±the run's precision
    (--precision, default 3%). Before schema 5: the rounds disagreed by more than 10% of their median."""
    images_per_s: float
    """Images per second at the median wall time."""
    startup_s: float
    """Starting the loader (workers, shared memory), not in the wall times."""
    first_batch_s: float
    """From start-up to the first batch of the warm-up epoch."""
    warmup_epoch_s: float
    """The untimed warm-up epoch."""
    wait_share: float
    """Median share of the wall time the consumer spent waiting for batches."""
    cpu_main_s: float
    """Median CPU seconds of the main process per epoch."""
    cpu_workers_s: float
    """Median CPU seconds of the workers per epoch."""
    stages_s: dict[str, float]
    """Median seconds per epoch in each stage (read, decode, augment, collate), summed over processes."""
    handoff_ms: float | None
    """Median from a worker finishing a batch to the consumer holding it; None without workers."""
    copied_batches: int
    """Batches pickled instead of shared, over all timed rounds."""
    skipped: tuple[tuple[str, str], ...]
    """(path, reason) of each image skipped under --on-error skip."""
    worker_busy_s: tuple[float, ...] = ()
    """Median seconds per epoch each worker spent making tasks (chunks or batches), for loaders that report it."""
    tail_idle_s: float | None = None
    """Median worker-seconds idle at the end of an epoch: each worker from its last task's end to the last one's."""
    chunk_size: int | None = None
    """Images per task for loaders that split batches (process, process-pickle, thread); None for the others."""
    start_method: str | None = None
    """How this loader's worker processes started; None for loaders without processes."""
    cluster: Cluster | None = None
    """The Ray cluster; None on one machine."""
    memory_peak_mb: tuple[float, ...] | None = None
    """Peak PSS (main + workers) of each untimed memory epoch, with --memory."""
    batch_mb: float | None = None
    """Size of one batch, with --memory: the unit the memory budget is counted in."""
    stall_share: float | None = None
    """With --step-ms: median over rounds of the epoch's wall time outside the training step / the wall time (the
    data stall: the consumer's waits for batches, and the epoch's end waiting for work the loader started ahead);
    the sequential loop's is its whole load time. None without a step."""
    stall_rounds: tuple[float, ...] = ()
    """With --step-ms: the stall share of each round, in round order."""
    wait_p50_ms: float | None = None
    """With --step-ms: the median per-batch wait of the consumer over all timed rounds, ms."""
    wait_p90_ms: float | None = None
    """With --step-ms: the 90th percentile of the per-batch wait over all timed rounds, ms."""
    wait_p99_ms: float | None = None
    """With --step-ms: the 99th percentile of the per-batch wait over all timed rounds, ms."""
    step_ms: float | None = None
    """With --step-ms: the simulated training step per full batch, ms; None without one."""
    step_kind: str | None = None
    """With --step-ms: 'gpu' (waits without the CPU) or 'cpu' (spins)."""
    step_s: float | None = None
    """With --step-ms: median seconds per epoch the consumer spent in the step."""
    first_wait_share: float | None = None
    """With --step-ms: the part of the stall share spent on each epoch's first batch (median over rounds):
    with ``prefetch_epochs`` off (and in the loaders without it) prefetching does not carry across epochs, so it is
    waited for however many workers there are."""
    cache: str = "warm"
    """The page cache at each timed epoch: warm (as left), or cold (the dataset's files evicted before it)."""
    cache_resident: float | None = None
    """With --cache cold: share of a sample of the files' pages still cached after eviction (0: evicted; near 1:
    the filesystem ignored it); None when warm or when it could not be checked."""
    loader_version: str | None = None
    """The installed version of a peer loader's package (batchup, spdl-core, torchdata); None for pdl's own."""
    same_batches: bool | None = None
    """Whether the warm-up epoch's batches equal the baseline's bit for bit (indices and images); None if unchecked."""
    left_behind: int = 0
    """Processes a peer loader left running that pdl had to stop when closing it."""
    epoch_first_batch_s: float | None = None
    """Each timed epoch's first batch, from asking for it to holding it (median over rounds): what every epoch
    after the first waits before its first step, workers started and warm; ``first_batch_s`` is the cold one."""
    reduce_decode: bool = False
    """Whether JPEGs were decoded at a reduced scale (``ImageFolder.reduce_decode``); files written before this
    field was recorded read False (their options' ``reduce_decode`` says what the whole run used)."""
    decoder: str = "opencv"
    """The JPEG decoder the dataset read with (``ImageFolder.decoder``: opencv, pillow, simplejpeg); files written
    before it was recorded, and datasets of one's own (which decode themselves), read "opencv"."""
    calibration_s: tuple[float, ...] = ()
    """Seconds of the calibration workload (``bench/calibrate.py``) in each round, the mean of its timing before and after
    the round: the machine's speed then. Images/s × these seconds is throughput with the machine's drift cancelled,
    what the gate compares. Empty in files written before it was measured."""
    disturbed: bool = False
    """The speedup is above what the usable cores allow by more than the noise (``stats.impossible``): the
    sequential baseline was slowed by something else, so the speedup is not a result."""
    interference: tuple[Interference, ...] = ()
    """What else competed for the usable CPUs in each round, in round order (other processes, steal, cgroup
    throttling, CPU pressure; ``machine/contention.py``). Empty in files written before it was measured (schema < 4)."""
    redone: int = 0
    """Rounds measured again because another process (or the hypervisor) disturbed them; only the last try of
    each round is kept."""
    redone_why: str = ""
    """What disturbed the first round measured again, in words ('other processes used 0.98 of 2 cores (…)')."""
    waited_s: float = 0.0
    """Seconds spent waiting for the machine to be quiet before or between this point's rounds."""
    ceiling: float | None = None
    """The measured ceiling: median over its rounds of the sequential loop's wall / that of ``ceiling_copies``
    independent copies of it run at once, sharing the epoch's images as free copies take them (``loaders/ceiling.py``),
    in the same rounds as the loaders. The most any loader reaches here for this work; None when not measured
    (--no-ceiling, or an older file)."""
    ceiling_rounds: tuple[float, ...] = ()
    """The ceiling's per-round ratios, in the order of its own rounds (since schema 5 it may run in fewer or more
    rounds than the point: it leaves them once its interval is precise)."""
    ceiling_copies: int | None = None
    """Copies of the sequential loop the ceiling ran: ``workers``, never more than the usable cores (more copies take
    turns on the same cores). None in files before schema 5 (there: ``workers`` copies)."""
    side: str = ""
    """`pdl compare`: the side the point was measured on, "base" or "head"; empty for every other command."""

    def __post_init__(self) -> None:
        rounds = {len(self.wall_s), len(self.baseline_wall_s), len(self.speedup_rounds)}
        if len(rounds) != 1 or 0 in rounds:
            raise ValueError(
                f"wall_s, baseline_wall_s and speedup_rounds must hold one value per round (at least one). "
                f"Found: {len(self.wall_s)}, {len(self.baseline_wall_s)}, {len(self.speedup_rounds)}"
            )
        for name in ("wall_s", "baseline_wall_s", "speedup_rounds"):  # what every ratio and verdict divides by
            bad = next((v for v in getattr(self, name) if not (math.isfinite(v) and v > 0)), None)
            if bad is not None:
                raise ValueError(f"{name} must hold positive, finite seconds and ratios. Found: {bad!r}")
        # images may be 0: every image skipped under --on-error skip is a measured point
        for name, least in (("images", 0), ("batch_size", 1), ("workers", 0), ("prefetch", 0), ("copied_batches", 0)):
            if getattr(self, name) < least:  # counts the tables divide by, or print as they are
                raise ValueError(f"{name} must be a whole number >= {least}. Found: {getattr(self, name)!r}")
        for name in ("speedup", "speedup_min", "speedup_max", "step_ms", "ceiling"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be a positive number. Found: {value!r}")
        if self.images_per_s < 0:
            raise ValueError(f"images_per_s must be a number >= 0. Found: {self.images_per_s!r}")
        for name in ("stall_rounds", "calibration_s", "interference"):  # read beside the rounds
            if len(getattr(self, name)) not in (0, self.rounds):
                raise ValueError(
                    f"{name} must hold one value per round ({self.rounds}) or none. Found: {len(getattr(self, name))}"
                )

    @property
    def rounds(self) -> int:
        return len(self.wall_s)

    @property
    def of_ceiling(self) -> float | None:
        """The loader's share of the measured ceiling (0.97: it reaches 97% of what the machine gives): its speedup
        over the ceiling's, both medians of rounds measured in the same command."""
        if not self.ceiling:
            return None
        return self.speedup / self.ceiling

    def quiet(self) -> tuple[bool, ...]:
        """Per round: True when nothing else disturbed it (or when that was not measured: older files)."""
        if len(self.interference) != self.rounds:
            return (True,) * self.rounds
        return tuple(not i.disturbed for i in self.interference)

    def busy_rounds(self) -> tuple[Interference, ...]:
        """The kept rounds that another process (or the hypervisor) disturbed."""
        return tuple(i for i in self.interference if i.disturbed) if len(self.interference) == self.rounds else ()

    def rates(self) -> tuple[float, ...]:
        """Images/s of each round."""
        return self._per_second(self.wall_s)

    def baseline_rates(self) -> tuple[float, ...]:
        """The sequential baseline's images/s in each round."""
        return self._per_second(self.baseline_wall_s)

    def _per_second(self, walls: tuple[float, ...]) -> tuple[float, ...]:
        return tuple(self.images / w if w > 0 else 0.0 for w in walls)

    @property
    def ideal_images_per_s(self) -> float | None:
        """With --step-ms: the step-bound ideal, batch / step (what a loader that never stalls would reach)."""
        return None if not self.step_ms else self.batch_size * 1e3 / self.step_ms
