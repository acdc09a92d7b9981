"""What machine this is: usable cores (affinity, cgroup quota, override) and the metadata every result carries."""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import platform
import shutil
import sys
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from ._version import __version__
from .errors import ConfigError

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


def cgroup_quota(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the process's own cgroup may use: v2 ``cpu.max``, else v1 ``cfs_quota_us / cfs_period_us``.

    Walks from the process's cgroup up to the root, as a quota anywhere above also binds.
    """
    text = _read(proc_cgroup)
    if text is None:
        return None
    best: float | None = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":  # v2 unified hierarchy
            quota = _walk(root, rel, _v2_quota)
        elif "cpu" in controllers.split(","):
            base = next((root / d for d in ("cpu,cpuacct", "cpu", "cpuacct,cpu") if (root / d).is_dir()), None)
            quota = _walk(base, rel, _v1_quota) if base else None
        else:
            continue
        if quota is not None:
            best = quota if best is None else min(best, quota)
    return best


def _walk(base: Path, rel: str, read_quota) -> float | None:  # type: ignore[no-untyped-def]
    found: float | None = None
    path = Path(rel.lstrip("/"))
    for candidate in [path, *path.parents]:
        quota = read_quota(base / candidate)
        if quota is not None:
            found = quota if found is None else min(found, quota)
    return found


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


def memory_room_bytes(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = CGROUP_ROOT) -> int | None:
    """Memory this process may still take: what the machine has available, or what a cgroup memory limit leaves
    (v2 ``memory.max − memory.current``, v1 ``limit_in_bytes − usage_in_bytes``, walked up as for the CPU quota)
    where that is less; None when it cannot be read."""
    import psutil

    try:
        room: int | None = int(psutil.virtual_memory().available)
    except (OSError, psutil.Error):
        room = None
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":
            left = _walk(root, rel, partial(_memory_left, "memory.max", "memory.current"))
        elif "memory" in controllers.split(",") and (root / "memory").is_dir():
            left = _walk(root / "memory", rel, partial(_memory_left, "memory.limit_in_bytes", "memory.usage_in_bytes"))
        else:
            continue
        if left is not None:
            room = int(left) if room is None else min(room, int(left))
    return room


def _memory_left(limit_file: str, usage_file: str, directory: Path) -> float | None:
    limit, usage = _read(directory / limit_file), _read(directory / usage_file)
    try:
        cap, used = int(limit or "max"), int(usage or "0")
    except ValueError:  # "max": no limit here
        return None
    return None if cap >= 2**62 else float(max(0, cap - used))  # v1 writes "no limit" as a huge number


def shm_free_bytes(path: str = "/dev/shm") -> int | None:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def filesystem(path: str | os.PathLike[str]) -> tuple[str, str, str] | None:
    """(filesystem type, device, mount point) of the mount holding ``path`` (the longest mount point that
    contains it); None when it cannot be told."""
    import psutil

    try:
        real = os.path.realpath(path)
        mounts = psutil.disk_partitions(all=True)
    except (OSError, psutil.Error):
        return None
    best = None
    for m in mounts:
        mp = m.mountpoint.rstrip("/") or "/"
        if (real == mp or real.startswith(mp if mp.endswith("/") else mp + "/")) and (
            best is None or len(mp) > len(best.mountpoint.rstrip("/") or "/")
        ):
            best = m
    return None if best is None else (best.fstype, best.device, best.mountpoint)


def default_start_method() -> str:
    """fork on Linux: workers start in milliseconds, inherit the dataset without pickling, and scripts need no
    ``if __name__ == "__main__"`` guard. Its one known hazard here, OpenCV's thread pool (a child forked after
    the parent used the pool hangs in ``cv2.setNumThreads``), is defused by ``forking``. Elsewhere
    spawn, as Python itself defaults to. forkserver and spawn are one argument away.
    """
    methods = mp.get_all_start_methods()
    return "fork" if sys.platform.startswith("linux") and "fork" in methods else "spawn"


def system_info(start_method: str | None = None) -> dict[str, object]:
    """Everything a result needs to be compared honestly later: machine, software, settings."""
    from ._augment import augmentation_library

    library, _ = augmentation_library()  # which distribution is behind `import albumentations` (one line if none)
    import albumentations
    import cv2
    import numpy
    import psutil

    shm = shm_free_bytes()
    try:
        shm_total: int | None = shutil.disk_usage("/dev/shm").total
    except OSError:
        shm_total = None
    return {
        "hostname": platform.node(),
        "cpu": asdict(cpu_info()),
        "memory_total_bytes": psutil.virtual_memory().total,
        "shm_total_bytes": shm_total,
        "shm_free_bytes": shm,
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "versions": {
            "opencv": cv2.__version__,
            "albumentations": albumentations.__version__,
            "albumentations_dist": library,  # albumentations (the MIT line) or albumentationsx (AGPL-3.0 or commercial)
            "numpy": numpy.__version__,
            "pdl": __version__,
        },
        "opencv_threads": cv2.getNumThreads(),
        "start_method": start_method or default_start_method(),
    }


def git_source(directory: str | None = None) -> dict[str, object] | None:
    """The commit, branch and dirtiness of the git checkout ``directory`` (default: the current one) is in;
    None outside a repository, without git, or when git does not answer within 5 s."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, timeout=5, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "branch": branch, "dirty": dirty}
