"""The typed results file: the machine it ran on, the git checkout, the set a command wrote, and the format's
history. Pure data, no I/O.

A ``ResultSet`` turns into the JSON-able dict the results file holds (``to_dict``) and back (``from_dict``, which
checks every field against its type through ``convert.build``, so a damaged file is refused naming the field).
``upgrade`` migrates a dict of an older schema version to the current shape, one step per version, as pyperf
keeps its own; the readers only ever see the current shape. The records it holds live beside it: the points in
``point.py``, the commands' outcomes in ``outcomes.py``, a comparison in ``compared.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from ..machine.cpu import CpuInfo as Cpu  # the cores a run could use, and why: one record, measured and stored
from .compared import Compared
from .convert import build
from .outcomes import Decoded, Profiled, Tuned
from .point import Cluster, Point

SCHEMA = "pdl.results"
VERSION = 5
Kind = Literal[
    "run", "sweep-workers", "sweep-batch", "tune", "decode", "profile", "compare"
]  # what a results file holds: the command
KINDS: tuple[str, ...] = get_args(Kind)


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
class Source:
    """The git checkout pdl ran in, when it ran in one: what a history of results is ordered and labelled by."""

    commit: str
    """The git commit pdl ran at."""
    branch: str  # "HEAD" when detached
    dirty: bool  # uncommitted changes to tracked files


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
        return build(cls, data, "")


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


def machine_from_info(info: Mapping[str, Any]) -> Machine:
    """The typed machine from what ``system.system_info`` returns."""
    return build(Machine, info, "system.")


def point_from_dict(data: Mapping[str, Any]) -> Point:
    """A point from its dict (as ``dataclasses.asdict`` or a results file gives it), every field checked."""
    return build(Point, data, "point.")


def source_from_info(info: Mapping[str, Any] | None) -> Source | None:
    """The typed source from what ``system.git_source`` returns."""
    return None if info is None else build(Source, info, "source.")


def cluster_from_info(info: Mapping[str, Any] | None) -> Cluster | None:
    """The typed cluster from what ``Loader.cluster_info`` returns."""
    return None if info is None else build(Cluster, info, "cluster.")
