"""The memory pdl may still take: the machine's, a cgroup's limit; /dev/shm's room."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

from .cpu import CGROUP_ROOT, _read, _walk


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
