"""The memory pdl may still take: the machine's, a cgroup's limit; /dev/shm's room; the limit and the
out-of-memory killer's count, to say why a worker was killed."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .cpu import CGROUP_ROOT, Cgroup, _read, cgroups


def memory_room_bytes(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = CGROUP_ROOT) -> int | None:
    """Memory this process may still take: what the machine has available, or what a cgroup memory limit leaves
    (v2 ``memory.max − memory.current``, v1 ``limit_in_bytes − usage_in_bytes``, walked up as for the CPU quota)
    where that is less; None when it cannot be read."""
    import psutil

    try:
        room: int | None = int(psutil.virtual_memory().available)
    except (OSError, psutil.Error):
        room = None
    for group in cgroups("memory", proc_cgroup, root):
        left = _memory_left(group)
        if left is not None:
            room = int(left) if room is None else min(room, int(left))
    return room


def _memory_left(group: Cgroup) -> float | None:
    limit_file, usage_file = (
        ("memory.max", "memory.current") if group.version == "v2" else ("memory.limit_in_bytes", "memory.usage_in_bytes")
    )
    limit, usage = _read(group.directory / limit_file), _read(group.directory / usage_file)
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


@dataclass(frozen=True)
class MemoryLimit:
    """The tightest cgroup memory limit over this process (v2 ``memory.max``, v1 ``memory.limit_in_bytes``), the
    peak use there, and how many processes the out-of-memory killer has ended so far, in that cgroup and on the
    machine (``/proc/vmstat``): a count that rose while a worker died by SIGKILL names the killer."""

    file: str | None  # the limit's file ("memory.max"); None: no cgroup limit, only the machine's memory
    limit: int | None  # bytes
    peak: int | None  # bytes: v2 ``memory.peak``, v1 ``memory.max_usage_in_bytes``, where the kernel keeps it
    oom_kills: int  # in the cgroups over this process (v2 ``memory.events``, v1 ``memory.oom_control``) and the machine's

    def said(self) -> str:
        """'the cgroup's memory.max is 400 MiB (peak 399 MiB)', or '' without a limit."""
        if self.file is None or self.limit is None:
            return ""
        peak = "" if self.peak is None else f" (peak {self.peak / 2**20:.0f} MiB)"
        return f"the cgroup's {self.file} is {self.limit / 2**20:.0f} MiB{peak}"


_V2 = ("memory.max", "memory.peak", "memory.events")
_V1 = ("memory.limit_in_bytes", "memory.max_usage_in_bytes", "memory.oom_control")


def memory_limit(
    proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = CGROUP_ROOT, vmstat: Path = Path("/proc/vmstat")
) -> MemoryLimit:
    """The memory limit this process runs under, read now (see ``MemoryLimit``)."""
    best: tuple[int, str, int | None] | None = None  # (limit, its file, the peak beside it)
    kills = _counter(_read(vmstat), "oom_kill")
    for group in cgroups("memory", proc_cgroup, root):
        files, directory = _V2 if group.version == "v2" else _V1, group.directory
        kills += _counter(_read(directory / files[2]), "oom_kill")
        try:
            cap = int(_read(directory / files[0]) or "max")
        except ValueError:  # "max", or absent: no limit here
            continue
        if cap < 2**62 and (best is None or cap < best[0]):  # v1 writes "no limit" as a huge number
            peak = _read(directory / files[1])
            best = (cap, files[0], int(peak) if peak and peak.isdigit() else None)
    if best is None:
        return MemoryLimit(None, None, None, kills)
    return MemoryLimit(best[1], best[0], best[2], kills)


def _counter(text: str | None, name: str) -> int:
    """``name``'s value in a flat-keyed file ('oom_kill 3'), 0 when absent."""
    for line in (text or "").splitlines():
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return 0
