"""The facts every result carries: the machine, the software, how workers start, the git checkout, a file's mount."""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import shutil
import sys
from dataclasses import asdict

from .._version import __version__
from .cpu import cpu_info
from .memory import shm_free_bytes


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
    from .._augment import augmentation_library

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
