"""The typed results: a measured point, the machine it ran on, the set a command wrote. Pure data, no I/O.

A record turns into the JSON-able dict the results file holds (``to_dict``) and back (``from_dict``, which
checks every field against its type, so a damaged file is refused naming the field). The format's history
lives here too: ``upgrade`` migrates a dict of an older schema version to the current shape, one step per
version, as pyperf keeps its own; the readers only ever see the current shape.

To add a measured quantity: one field in ``Point`` (with a default if old files lack it), set in
``timing.make_point``; add its name to ``files.CSV_FIELDS`` if the CSV should carry it.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from ..machine.contention import Interference
from ..machine.cpu import CpuInfo as Cpu  # the cores a run could use, and why: one record, measured and stored
from .compared import Compared

SCHEMA = "pdl.results"
VERSION = 5
Kind = Literal[
    "run", "sweep-workers", "sweep-batch", "tune", "decode", "profile", "compare"
]  # what a results file holds: the command
KINDS: tuple[str, ...] = get_args(Kind)
R = TypeVar("R")


@dataclass(frozen=True)
class Machine:
    """Where the points were measured: what a later comparison needs to know it is fair."""

    hostname: str
    """The machine's network name."""
    cpu: Cpu
    """The CPU and the cores pdl may use."""
    memory_total_bytes: int
    """Total RAM, bytes."""
    shm_total_bytes: int | None  # /dev/shm, None where it cannot be read
    shm_free_bytes: int | None
    """Free space in /dev/shm when the run started, bytes; None where it cannot be read."""
    os: str  # "Linux 6.8.0"
    python: str  # "3.11.7"
    versions: dict[str, str]  # opencv, albumentations, numpy, pdl
    opencv_threads: int
    """OpenCV's thread count in the measuring process (pdl sets 1)."""
    start_method: str  # how worker processes start by default (fork, forkserver, spawn)

    def summary(self) -> str:
        """One line for table titles: 'AMD EPYC · 2 usable of 2 logical cores · vm'."""
        return f"{self.cpu.model} · {self.cpu.usable} usable of {self.cpu.logical} logical cores · {self.hostname}"


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


@dataclass(frozen=True)
class Source:
    """The git checkout pdl ran in, when it ran in one: what a history of results is ordered and labelled by."""

    commit: str
    """The git commit pdl ran at."""
    branch: str  # "HEAD" when detached
    dirty: bool  # uncommitted changes to tracked files


@dataclass(frozen=True)
class Tuned:
    """What `pdl tune` chose (a results file of kind "tune"): the call to use, its stall, and why it stopped."""

    call: str
    """The loader call to paste: 'ParallelLoader(ds, pipe, batch_size=64, num_workers=3, prefetch=2)'."""
    workers: int
    """The chosen worker count."""
    prefetch: int
    """The chosen prefetch (batches in flight per worker)."""
    stall: float
    """The chosen configuration's median stall share (0–1)."""
    target: float
    """The stall share asked for (--target-stall)."""
    reached: bool
    """Whether the chosen configuration's stall is within the target."""
    reason: str
    """Why the search stopped, in words."""
    memory_peak_mb: float | None
    """The chosen configuration's peak memory (main + workers, one untimed epoch in a fresh process)."""
    search_s: float
    """Seconds the search took."""
    trials: int
    """Configurations measured (each is a point of the file)."""
    ceiling_check: Point | None = None
    """The chosen configuration measured again without the step, beside the sequential loop and the measured
    ceiling in the same rounds: its ``speedup``, ``ceiling`` and ``of_ceiling`` say whether the loader or the machine
    is the limit. None with --no-ceiling (or from a file written before it was measured)."""


@dataclass(frozen=True)
class Decoded:
    """One pipeline of `pdl decode`: how its first epoch's images decoded with --reduce-decode, and the mean
    absolute difference between the outputs from full and from reduced decoding."""

    pipeline: str
    """The pipeline measured."""
    loader: str
    """The loader timed both ways."""
    need: tuple[int, int] | None
    """(height, width) the pipeline's first transform reduces every image to; None: no reduced decode possible."""
    scales: dict[str, int]
    """Images decoded at each reduction factor ("2", "4", "8")."""
    reduced: int
    """Images of the first epoch decoded at a reduced scale."""
    full: int
    """Images decoded at full size: not a JPEG (PNG, WebP, ...), or a JPEG too small to halve."""
    jpegs: int
    """JPEGs among the images."""
    why_none: str | None
    """Why no image was decoded reduced, in words; None when some were."""
    mad: float
    """In the output's own units (0–255 for uint8)."""
    mad_images: int
    """Images the mean absolute difference is taken over: those decoded reduced."""
    output_dtype: str
    """The pipeline's output dtype (uint8, or float32 for a normalising pipeline)."""


@dataclass(frozen=True)
class TransformCost:
    """One transform of a profiled pipeline (a branch of ``OneOf``/``SomeOf`` is one too, one level deeper)."""

    name: str
    """Its class: "CLAHE", "OneOf"."""
    where: str
    """Its place in the pipeline: "transforms[7]", "transforms[2].transforms[0]"."""
    depth: int
    """0 for the pipeline's own transforms, 1 inside a OneOf/SomeOf, and so on."""
    p: float
    """Its own probability, as configured (a branch's is relative to its siblings')."""
    ran: int
    """Images it ran on (its random draw chose it), of ``Profiled.images``: the same in every repeat."""
    ms: tuple[float, ...]
    """Milliseconds per image (all images, those it skipped included), one value per repeat."""
    group: bool = False
    """A OneOf/SomeOf/Sequential: its time includes its branches' (not added again in the sum)."""


@dataclass(frozen=True)
class DecoderSpeed:
    """One decoder of `pdl profile --decoders`, on the profile's JPEGs, in the same interleaved rounds as the others."""

    decoder: str
    """The decoder: opencv, pillow or simplejpeg."""
    jpegs: int
    """JPEGs decoded per round (other formats are OpenCV's whatever the decoder)."""
    images_per_s: float | None
    """At full scale, the median round; None when the decoder is not installed."""
    reduced_per_s: float | None = None
    """At the scale --reduce-decode would use (the pipeline's first resize); None when none applies or not installed."""
    reduced: int = 0
    """JPEGs that --reduce-decode would decode at 1/2, 1/4 or 1/8 scale."""
    mad: float | None = None
    """Mean absolute difference from OpenCV's full-scale output, 0–255; None when not installed."""
    mad_reduced: float | None = None
    """The same at the reduced scale, against OpenCV's reduced output."""
    missing: str | None = None
    """The pip command that installs it, when it is not installed."""
    rates: tuple[float, ...] = ()
    """Full-scale JPEGs/s of each round, in round order (every decoder's round r ran in the same round)."""


@dataclass(frozen=True)
class Profiled:
    """`pdl profile`: what each transform of one pipeline costs per image, with read and decode beside them."""

    pipeline: str
    """The pipeline profiled (a shipped level or a YAML path)."""
    images: int
    """Images profiled (skipped ones left out)."""
    repeats: int
    """Measured repeats: each list of milliseconds holds one value per repeat."""
    read_ms: tuple[float, ...]
    """Milliseconds per image reading the file, one per repeat (a dataset of one's own: its whole ``__getitem__``)."""
    decode_ms: tuple[float, ...]
    """Milliseconds per image decoding, one per repeat (0 for a dataset of one's own: timed whole as read)."""
    augment_ms: tuple[float, ...]
    """The pipeline timed whole, as loaders run it (not instrumented), ms per image, one per repeat."""
    transforms: tuple[TransformCost, ...]
    """In pipeline order, each group followed by its branches."""
    same_output: bool
    """The instrumented pipeline's outputs equal the plain pipeline's, image for image (same seeds)."""
    decoder: str = "opencv"
    """The JPEG decoder the images were read with: opencv, pillow or simplejpeg."""
    timed_whole: bool = False
    """The dataset is one's own: its ``__getitem__`` is timed whole, as the read stage."""
    decoders: tuple[DecoderSpeed, ...] = ()
    """With --decoders: one per decoder asked for, in the order given."""


@dataclass(frozen=True)
class ResultSet:
    """What one command measured: its options, the machine, and one point per loader and configuration."""

    kind: str  # one of KINDS
    options: dict[str, Any]  # the experiment's settings, as given, plus images and thread settings
    machine: Machine
    """The machine the points were measured on stored under the key `system`."""
    points: tuple[Point, ...]
    """One per loader and configuration measured, in the order measured."""
    command: tuple[str, ...]  # the command line that measured it
    created: str  # local time, ISO 8601
    complete: bool = False  # False while measuring, and in a file an interruption left
    source: Source | None = None  # the git commit and branch of the directory pdl ran in; None outside a repository
    calibration: str | None = None  # which calibration workload the points' calibration_s timed (calibrate.CALIBRATION)
    tuned: Tuned | None = None  # kind "tune": what the search chose (None until it finished)
    decoded: tuple[Decoded, ...] = ()  # kind "decode": one per pipeline measured
    profiled: Profiled | None = None  # kind "profile": the transforms' costs (None until measured)
    compared: Compared | None = None  # kind "compare": both sides, every pair, the verdicts (None until the first pairs)
    schema: str = SCHEMA
    """Always `pdl.results`: what marks a JSON file as a pdl results file."""
    version: int = VERSION
    """The schema version the file was written in; older versions are migrated when read."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}. Found: {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        """The results file's content. The machine stays under "system", where version 1 kept it."""
        data = dataclasses.asdict(self)
        data["system"] = data.pop("machine")
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResultSet:
        """From a dict of the current version (see ``upgrade``); TypeError, KeyError or ValueError if damaged."""
        data = dict(data)
        if "system" in data:
            data["machine"] = data.pop("system")
        return _build(cls, data, "")


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Migrate a results dict from its version to ``VERSION``, one step per version."""
    version = data.get("version")
    while isinstance(version, int) and version < VERSION:
        data = MIGRATIONS[version](data)
        version = data["version"]
    return data


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 left out what a point did not measure and kept ``measured_s``; version 2 writes every field."""
    points = data.get("points")
    if not isinstance(points, list):  # damaged: left for the reader to refuse, naming the field
        return {**data, "version": 2}
    return {**data, "points": [_v1_point(p) if isinstance(p, dict) else p for p in points], "version": 2}


def _v1_point(p: dict[str, Any]) -> dict[str, Any]:
    p = {k: v for k, v in p.items() if k != "measured_s"}
    for name, absent in (("noisy", False), ("handoff_ms", None), ("copied_batches", 0), ("skipped", [])):
        p.setdefault(name, absent)  # what version 1's report assumed when the field was missing
    return p


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 kept `pdl tune`'s and `pdl decode`'s outcomes as untyped dicts in ``options["tune"]`` and
    ``options["decode"]``; version 3 keeps them typed, as ``tuned`` and ``decoded``."""
    options = data.get("options")
    if not isinstance(options, dict):  # damaged: left for the reader to refuse, naming the field
        return {**data, "version": 3}
    options = dict(options)
    moved: dict[str, Any] = {}
    if "tune" in options:
        moved["tuned"] = options.pop("tune")
    if "decode" in options:
        moved["decoded"] = options.pop("decode")
    return {**data, **moved, "options": options, "version": 3}


def _v3_to_v4(data: dict[str, Any]) -> dict[str, Any]:
    """Version 4 reads the machine in every round (``Point.interference``), measures disturbed rounds again
    (``redone``) and measures the ceiling (``ceiling``): a version-3 point's rounds were never checked, so they
    stay as they were, with nothing seen and no ceiling."""
    return {**data, "version": 4}


def _v4_to_v5(data: dict[str, Any]) -> dict[str, Any]:
    """Version 5 measures rounds until each speedup is precise (a point's rounds and its ceiling's may differ),
    marks a point noisy by its interval, and reads the loader's share of the ceiling as a ratio of medians: a
    version-4 file's fields keep their values, now read that way."""
    return {**data, "version": 5}


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5}


def _build(cls: type[R], data: Any, where: str) -> R:
    """``cls`` from ``data``, each field checked and converted by its annotation (lists become tuples)."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{where or 'the file'}: expected an object, got {type(data).__name__}")
    hints = get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], f"{where}{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise KeyError(f"{where}{f.name}")
    return cls(**kwargs)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _convert(next(a for a in args if a is not type(None)), value, where)
    if tp is Any:
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple) or (args[-1] is not Ellipsis and len(value) != len(args)):
            raise TypeError(f"{where}: expected a list, got {value!r}"[:200])
        kinds = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        return tuple(_convert(t, v, f"{where}[{i}]") for i, (t, v) in enumerate(zip(kinds, value, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected an object, got {type(value).__name__}")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and is_dataclass(tp):
        return _build(tp, value, f"{where}.")
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):  # Python's json reads NaN and Infinity; pdl never writes them
            raise ValueError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise TypeError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}"[:200])


def machine_from_info(info: Mapping[str, Any]) -> Machine:
    """The typed machine from what ``system.system_info`` returns."""
    return _build(Machine, info, "system.")


def point_from_dict(data: Mapping[str, Any]) -> Point:
    """A point from its dict (as ``dataclasses.asdict`` or a results file gives it), every field checked."""
    return _build(Point, data, "point.")


def source_from_info(info: Mapping[str, Any] | None) -> Source | None:
    """The typed source from what ``system.git_source`` returns."""
    return None if info is None else _build(Source, info, "source.")


def cluster_from_info(info: Mapping[str, Any] | None) -> Cluster | None:
    """The typed cluster from what ``Loader.cluster_info`` returns."""
    return None if info is None else _build(Cluster, info, "cluster.")
