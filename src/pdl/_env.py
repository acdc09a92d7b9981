"""Process-wide settings that must be in place before numpy, OpenCV or albumentations load.

Imported first by ``pdl/__init__.py``. Only ``setdefault``: a user's explicit choice wins.
"""

from __future__ import annotations

import os

# albumentations checks PyPI for a newer version on import unless told not to: a benchmark must not touch
# the network.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def limit_threads() -> dict[str, str]:
    """One compute thread per process for OpenCV and the BLAS libraries; returns the settings in force.

    Called in every worker and, before measuring, in the main process, so the sequential baseline runs under
    the same settings as the workers (like compared with like). The environment variables only bind libraries
    that have not initialised yet; OpenCV's pool is set at run time.
    """
    for var in THREAD_VARS:
        os.environ.setdefault(var, "1")
    import cv2

    cv2.setNumThreads(1)
    settings = {var: os.environ[var] for var in THREAD_VARS}
    settings["cv2.getNumThreads"] = str(cv2.getNumThreads())
    return settings


def quiet_opencv() -> None:
    """OpenCV prints libjpeg warnings ("Corrupt JPEG data") itself; pdl detects and reports broken images."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def keep_freed_memory() -> dict[str, str]:
    """Let glibc reuse freed memory instead of handing it back to the kernel after every image.

    Decoded images (~0.5 MB) and their intermediates sit above glibc's 128 KiB mmap threshold: each one is
    mapped, zero-filled page by page and unmapped again. The sequential loop escapes this once glibc's dynamic
    threshold rises; a worker that writes its batches into shared memory never frees anything large enough to
    raise it, and measured ~110k page faults and 0.3 s of kernel time per epoch (22k without the ring).
    Set in every pdl worker and, when measuring, in the main process too, so the baseline runs alike.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return {}
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 64 << 20)
    libc.mallopt(m_trim_threshold, 256 << 20)
    return {"malloc": "M_MMAP_THRESHOLD=64MiB M_TRIM_THRESHOLD=256MiB"}
