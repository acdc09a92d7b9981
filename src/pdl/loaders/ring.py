"""A ring of fixed-size slots in one shared-memory segment: workers write batches in, the consumer reads views.

A slot goes back to the ring when the last array viewing it is garbage-collected, so a batch stays valid for
as long as the caller holds it; when every slot is held, batches are pickled instead (slower, never wrong).
"""

from __future__ import annotations

import mmap
import os
import secrets
import sys
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from ..errors import SharedMemoryError
from ..system import shm_free_bytes

SHM_PREFIX = "pdl-"


def fitting_slots(wanted: int, slot_bytes: int, free: int | None) -> int:
    """How many of ``wanted`` slots to make: all of them where they fit the free /dev/shm (or it cannot be read),
    else as many as fit but at least 2 (one batch in flight, one being consumed); below 2 the ring's own check
    refuses it, and batches are pickled."""
    if free is None or wanted * slot_bytes <= free:
        return wanted
    return max(2, min(wanted, free // max(1, slot_bytes)))


@dataclass(frozen=True)
class RingState:
    name: str  # the segment in /dev/shm
    slots: int
    free: int


class SlotRing:
    """``n_slots`` slots of ``slot_bytes`` in one /dev/shm segment, handed out last in, first out.

    /dev/shm is checked for room up front, but its pages are not reserved: tmpfs allocates a page when a worker
    first writes it, and the slot freed last is handed out first, so the ring costs the slots a run keeps busy
    (workers × prefetch in a plain loop), its spare slots nothing until a caller holds batches back, and the
    busy slots stay warm in cache. Reserving every page (posix_fallocate) would turn a /dev/shm that fills up
    later into an early error instead of a worker's SIGBUS (which the loader reports as such), at the price
    of memory never used.
    """

    def __init__(self, n_slots: int, slot_bytes: int) -> None:
        self.n_slots, self.slot_bytes = n_slots, max(1, slot_bytes)
        need = self.n_slots * self.slot_bytes
        free = shm_free_bytes()
        if free is not None and need > free:
            raise SharedMemoryError(
                f"shared memory: the batch ring needs {need / 2**20:.0f} MiB in /dev/shm but only {free / 2**20:.0f} MiB "
                "are free; lower `batch_size`, `num_workers` or `prefetch`, or enlarge /dev/shm (docker: --shm-size)"
            )
        name = f"{SHM_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.shm = shared_memory.SharedMemory(name=name, create=True, size=need)
        self._free: deque[int] = deque(range(self.n_slots))
        self._lock = threading.Lock()
        self._closed = False
        self._idle = False  # between epochs with ``give_back``: a slot released then returns its pages at once

    @property
    def name(self) -> str:
        return self.shm.name

    def acquire(self) -> int | None:
        with self._lock:
            return self._free.pop() if self._free else None  # last in, first out: see the class docstring

    def release(self, slot: int) -> None:
        with self._lock:
            if not self._closed:
                self._free.append(slot)
                if self._idle:
                    self._punch(slot)

    def give_back(self, idle: bool) -> None:
        """``idle=True`` (an epoch ended): the free slots' pages go back to /dev/shm now, and each slot released
        later goes back when it is; ``False`` (an epoch starts): slots keep their pages again. For a ring squeezed
        into a small /dev/shm, so that whatever else needs it between this loader's epochs (another loader, the
        training process) has the room; tmpfs hands the pages out again, zeroed, when a worker next writes."""
        with self._lock:
            self._idle = idle and not self._closed
            if self._idle:
                for slot in self._free:
                    self._punch(slot)

    def _punch(self, slot: int) -> None:
        """Free the backing pages of the slot's whole pages (MADV_REMOVE: tmpfs punches a hole)."""
        page = mmap.PAGESIZE
        start = -(-slot * self.slot_bytes // page) * page
        stop = (slot + 1) * self.slot_bytes // page * page
        mapping = getattr(self.shm, "_mmap", None)
        if stop > start and mapping is not None and hasattr(mmap, "MADV_REMOVE"):
            try:
                mapping.madvise(mmap.MADV_REMOVE, start, stop - start)
            except OSError:  # not tmpfs, or not allowed: the pages stay, as without this
                pass

    @property
    def resident_bytes(self) -> int:
        """Bytes of the segment backed by /dev/shm pages now (what it takes from the room)."""
        try:
            st = os.stat(f"/dev/shm/{self.name}")
        except OSError:
            return 0
        return int(st.st_blocks * 512)

    @property
    def free_slots(self) -> int:
        return len(self._free)

    def close(self) -> None:
        """Unlink the segment (nothing left in /dev/shm); the mapping lives on while arrays still view it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._destroy()

    def _destroy(self) -> None:
        try:
            self.shm.unlink()
        except FileNotFoundError:
            pass
        try:
            self.shm.close()
        except BufferError:  # batches still held by the caller: the mapping goes when they do
            pass

    def lease(self, slot: int) -> np.ndarray:
        """The slot's bytes; the slot returns to the ring once no array views them any more.

        One finalizer per lease: every array cut from it (``view``) keeps it alive through ``.base``.
        """
        arr: np.ndarray = np.ndarray((self.slot_bytes,), dtype=np.uint8, buffer=self.shm.buf, offset=slot * self.slot_bytes)
        weakref.finalize(arr, self.release, slot)
        return arr


def view(raw: np.ndarray, shape: tuple[int, ...], dtype: Any, offset: int = 0) -> np.ndarray:
    """An array of ``shape`` and ``dtype`` at ``offset`` bytes into ``raw``, sharing its memory."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    out: np.ndarray = raw[offset : offset + nbytes].view(dt).reshape(shape)
    return out


_ATTACHED: list[Any] = []  # keeps 3.13+ SharedMemory objects alive (their __del__ closes the mapping)


def attach(name: str) -> Any:
    """Map an existing segment in a worker without registering it with the resource tracker.

    Before Python 3.13, ``SharedMemory(name)`` registers the segment again in the child, and the tracker,
    shared with the parent, then reports it leaked or unlinks it twice.
    """
    if sys.version_info >= (3, 13):
        shm = shared_memory.SharedMemory(name=name, track=False)  # type: ignore[call-arg]
        _ATTACHED.append(shm)
        return shm.buf
    import _posixshmem

    fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def slot_array(buf: Any, slot: int, slot_bytes: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    out: np.ndarray = np.ndarray(shape, dtype=dtype, buffer=buf, offset=slot * slot_bytes)
    return out
