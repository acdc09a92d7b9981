"""A cold page cache: evict a dataset's files before an epoch, and check that the kernel really let them go.

``posix_fadvise(POSIX_FADV_DONTNEED)`` asks the kernel to drop a file's clean pages (no root needed); a
filesystem may ignore it (tmpfs keeps its pages in memory; some network and FUSE filesystems). Whether it
worked is checked with ``mincore(2)`` on a sample of the files (through ctypes: Python has no binding), and
reported as the share of the sample's pages still resident after eviction.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import PdlWarning
from ..machine.host import filesystem

Cache = Literal["warm", "cold"]
CACHES: tuple[Cache, ...] = ("warm", "cold")
CHECK_SAMPLE = 32  # files whose residency is checked after each eviction
IGNORED_ABOVE = 0.5  # more than this share of the sample's pages still resident: the filesystem ignored it

_PAGE = mmap.PAGESIZE


@dataclass(frozen=True)
class Eviction:
    """One eviction: files asked, files that could not be opened, and the share of the checked sample's pages
    still in the page cache afterwards (None: could not be checked)."""

    files: int
    failed: int
    resident: float | None

    @property
    def worked(self) -> bool | None:
        """True: the pages went; False: the filesystem kept them; None: unknown."""
        return None if self.resident is None else self.resident <= IGNORED_ABOVE


def dataset_files(dataset: Any) -> list[str]:
    """The files a dataset reads: its ``paths`` array (an ImageFolder), else ``path(i)`` for every item; empty
    when it names none."""
    paths = getattr(dataset, "paths", None)
    if paths is not None:
        return [os.fsdecode(p) for p in paths]
    if callable(getattr(dataset, "path", None)):
        return [str(dataset.path(i)) for i in range(len(dataset))]
    return []


def evict(paths: Sequence[str]) -> Eviction:
    """Drop every file's pages from the page cache, then check a sample of them with ``mincore``."""
    failed = 0
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            failed += 1  # a missing or unreadable file: the loader reports it when it reads it
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            failed += 1
        finally:
            os.close(fd)
    step = max(1, len(paths) // CHECK_SAMPLE)
    return Eviction(len(paths), failed, resident_share(paths[::step][:CHECK_SAMPLE]))


def resident_share(paths: Iterable[str]) -> float | None:
    """The share of these files' pages now in the page cache (0.0 to 1.0); None if ``mincore`` is unavailable
    or no file could be checked."""
    resident = total = 0
    for path in paths:
        pages = resident_pages(path)
        if pages is None:
            continue
        resident += pages[0]
        total += pages[1]
    return None if total == 0 else resident / total


def resident_pages(path: str) -> tuple[int, int] | None:
    """(pages in the page cache, pages of the file), from ``mincore`` on a read-only mapping; None when it
    cannot tell (no libc ``mincore``, an empty or unreadable file)."""
    libc = _libc()
    if libc is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return None
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            pages = (size + _PAGE - 1) // _PAGE
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) != 0:
                return None
            return sum(v & 1 for v in vec), pages
        finally:
            libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(size))
    finally:
        os.close(fd)


_LIBC: list[Any] = []


def _libc() -> Any:
    if not _LIBC:
        lib = None
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            lib.mmap.restype = ctypes.c_void_p
            lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
            lib.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
            lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        except (OSError, AttributeError):
            lib = None
        _LIBC.append(lib)
    return _LIBC[0]


def describe(eviction: Eviction, filesystem: str | None = None) -> str:
    """One line on how an eviction went."""
    where = f" ({filesystem})" if filesystem else ""
    if eviction.files == 0:
        return "--cache cold: the dataset names no files (no paths or path(i)): nothing was evicted, the cache is warm"
    if eviction.resident is None:
        return f"--cache cold: evicted {eviction.files} files; could not check that the page cache let them go (no mincore)"
    share = f"{eviction.resident:.0%} of the checked pages still cached"
    if eviction.worked:
        return f"--cache cold: evicted {eviction.files} files before every epoch; {share}"
    return (
        f"--cache cold: the filesystem{where} ignored the eviction ({share}): the read stage is measured warm; "
        "put the images on a disk filesystem (ext4, xfs) to measure cold reads"
    )


class ColdCache:
    """Evicts a dataset's files before each epoch; warns once (PdlWarning) when eviction did not take."""

    def __init__(self, dataset: Any) -> None:
        self.files = dataset_files(dataset)
        self.last: Eviction | None = None
        self._warned = False

    @property
    def resident(self) -> float | None:
        """The share still cached after the last eviction (see ``Eviction.resident``)."""
        return None if self.last is None else self.last.resident

    def evict(self) -> Eviction:
        self.last = evict(self.files)
        if not self._warned and (self.last.worked is False or not self.files):
            self._warned = True
            fs = filesystem(self.files[0]) if self.files else None
            warnings.warn(describe(self.last, fs[0] if fs else None), PdlWarning, stacklevel=2)
        return self.last
