"""The cores pdl may use: affinity, the cgroup's CPU quota, PDL_MAX_CPUS; the CPU's model."""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    """The CPU model name."""
    logical: int
    """Logical cores (hardware threads) of the machine."""
    physical: int | None
    """Physical cores; None where unknown."""
    affinity: int
    """Cores this process may run on (its CPU affinity)."""
    cgroup_quota: float | None  # CPUs allowed by the cgroup, None when unlimited or unknown
    override: int | None  # PDL_MAX_CPUS
    usable: int
    """Cores pdl plans with: min(affinity, cgroup quota, PDL_MAX_CPUS). Speed-ups cannot exceed it."""


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


V1_DIRS = {"cpu": ("cpu,cpuacct", "cpu", "cpuacct,cpu"), "memory": ("memory",)}  # where v1 mounts each controller


def cgroups(controller: str, proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = CGROUP_ROOT) -> list[Cgroup]:
    """Every cgroup directory that governs this process for ``controller`` ("cpu", "memory"): its own and each
    ancestor's, in the v2 hierarchy and in v1's ``controller`` hierarchy where mounted; a limit anywhere above binds
    too. Empty where ``/proc/self/cgroup`` cannot be read."""
    found: list[Cgroup] = []
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":
            base: Path | None = root
            version = "v2"
        elif controller in controllers.split(","):
            base = next((root / d for d in V1_DIRS[controller] if (root / d).is_dir()), None)
            version = "v1"
        else:
            continue
        if base is not None:
            path = Path(rel.lstrip("/"))
            found += [Cgroup(base / p, version) for p in (path, *path.parents)]
    return found


@dataclass(frozen=True)
class Cgroup:
    """One cgroup directory and its hierarchy's version ("v1" or "v2")."""

    directory: Path
    version: str


def cgroup_quota(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the process's own cgroup may use: v2 ``cpu.max``, else v1 ``cfs_quota_us / cfs_period_us``; the
    smallest of its own and its ancestors'."""
    quotas = [
        (_v2_quota if g.version == "v2" else _v1_quota)(g.directory) for g in cgroups("cpu", proc_cgroup, root)
    ]  # fmt: skip
    return min((q for q in quotas if q is not None), default=None)


def _v2_quota(directory: Path) -> float | None:
    text = _read(directory / "cpu.max")
    if not text:
        return None
    quota, _, period = text.partition(" ")
    if quota == "max":
        return None
    try:
        return int(quota) / int(period or "100000")
    except ValueError:
        return None


def _v1_quota(directory: Path) -> float | None:
    quota, period = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
    try:
        q, p = int(quota or "-1"), int(period or "0")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def max_cpus_override(env: dict[str, str] | None = None) -> int | None:
    value = (env if env is not None else os.environ).get("PDL_MAX_CPUS")
    if value is None or value == "":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"PDL_MAX_CPUS={value!r} is not a positive whole number; unset it or set e.g. PDL_MAX_CPUS=4")
    return n


def usable_cores(affinity: int, quota: float | None, override: int | None) -> int:
    """min(affinity, ceil(quota), override): a quota of 1.5 CPUs lets 2 processes run at once."""
    limits = [affinity]
    if quota is not None:
        limits.append(max(1, math.ceil(quota - 1e-9)))
    if override is not None:
        limits.append(override)
    return max(1, min(limits))


def cpu_model() -> str:
    text = _read(Path("/proc/cpuinfo")) or ""
    for line in text.splitlines():
        if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_info() -> CpuInfo:
    import psutil

    logical = os.cpu_count() or 1
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = logical
    quota, override = cgroup_quota(), max_cpus_override()
    return CpuInfo(
        model=cpu_model(),
        logical=logical,
        physical=psutil.cpu_count(logical=False),
        affinity=affinity,
        cgroup_quota=quota,
        override=override,
        usable=usable_cores(affinity, quota, override),
    )
