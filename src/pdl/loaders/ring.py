"""A ring of fixed-size slots in one shared-memory segment: workers write batches in, the consumer reads views.

A slot goes back to the ring when the last array viewing it is garbage-collected, so a batch stays valid for
as long as the caller holds it; when every slot is held, batches are pickled instead (slower, never wrong). A
slot released with a ``hold`` (a worker that may still write into it is not yet seen dead) is handed out again
only once the hold says so.

On Linux the segment is a memfd: anonymous shared memory, passed to the workers as a file descriptor. It is
not a file in /dev/shm, so Docker's 64 MB default (``--shm-size``) does not bound it (memory limits do), and
the kernel frees it when the last process holding it exits, however that happens. Elsewhere, or where the
kernel refuses a memfd, it is a named segment in /dev/shm.
"""

from __future__ import annotations

import functools
import mmap
import os
import secrets
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any, cast

import numpy as np

from ..errors import SharedMemoryError
from ..machine.memory import memory_room_bytes, shm_free_bytes

SHM_PREFIX = "pdl-"
MEMFD, SHM = "memfd", "/dev/shm"  # where a ring lives
MEMORY_SHARE = 2  # a memfd ring takes at most 1/2 of the memory still available: the rest is the workers' and the training's


@functools.cache
def backing() -> str:
    """Where new rings live: ``MEMFD`` where the kernel makes one (Linux), else ``SHM``."""
    if not hasattr(os, "memfd_create"):
        return SHM
    try:
        os.close(os.memfd_create(f"{SHM_PREFIX}probe", os.MFD_CLOEXEC))
    except OSError:  # ENOSYS, or a seccomp profile that forbids it
        return SHM
    return MEMFD


@dataclass(frozen=True)
class Room:
    """What a ring may take where it lives: bytes (None: cannot be read, so not limited), said in words."""

    where: str
    free: int | None

    def said(self) -> str:
        """'the 60 MiB free in /dev/shm', or 'half the 900 MiB of memory available'."""
        free = (self.free or 0) / 2**20
        return (
            f"the {free:.0f} MiB free in /dev/shm"
            if self.where == SHM
            else f"half the {free * MEMORY_SHARE:.0f} MiB of memory available"
        )

    @property
    def advice(self) -> str:
        return (
            "enlarge /dev/shm (docker: --shm-size)" if self.where == SHM else "free memory, or raise the container's memory limit"
        )

    def refusal(self, need: int) -> str | None:
        """Why ``need`` bytes do not fit, in one line; None when they do (or the room cannot be read)."""
        if self.free is None or need <= self.free:
            return None
        took, left = (
            ("in /dev/shm", "are free") if self.where == SHM else ("of memory", "may be taken (half the memory available)")
        )
        return (
            f"shared memory: the batch ring needs {need / 2**20:.0f} MiB {took} but only {self.free / 2**20:.0f} MiB {left}; "
            f"lower `batch_size`, `num_workers` or `prefetch`, or {self.advice}"
        )


def room(where: str) -> Room:
    if where == SHM:
        return Room(SHM, shm_free_bytes())
    available = memory_room_bytes()
    return Room(MEMFD, None if available is None else available // MEMORY_SHARE)


def fitting_slots(wanted: int, slot_bytes: int, free: int | None) -> int:
    """How many of ``wanted`` slots to make: all of them where they fit the room (or it cannot be read), else as
    many as fit but at least 2 (one batch in flight, one being consumed); below 2 the ring's own check refuses
    it, and batches are pickled."""
    if free is None or wanted * slot_bytes <= free:
        return wanted
    return max(2, min(wanted, free // max(1, slot_bytes)))


@dataclass(frozen=True)
class RingState:
    name: str  # the segment's name: its file in /dev/shm, or the memfd's (/proc/<pid>/fd shows it as /memfd:<name>)
    slots: int
    free: int
    where: str = MEMFD


@dataclass(frozen=True)
class RingHandle:
    """What a worker needs to map the ring. A memfd's descriptor travels with it when a worker is started: a
    forked worker inherits it, a spawned or forkserver one gets a duplicate (as multiprocessing passes a pipe)."""

    name: str
    size: int
    slot_bytes: int
    fd: int | None = None  # None: a named segment in /dev/shm

    def __reduce__(self) -> tuple[Any, ...]:
        if self.fd is None:
            return (RingHandle, (self.name, self.size, self.slot_bytes))
        from multiprocessing import reduction

        return (_rebuilt, (self.name, self.size, self.slot_bytes, reduction.DupFd(self.fd)))


def _rebuilt(name: str, size: int, slot_bytes: int, dup: Any) -> RingHandle:
    return RingHandle(name, size, slot_bytes, dup.detach())


class SlotRing:
    """``n_slots`` slots of ``slot_bytes`` in one shared-memory segment, handed out last in, first out. ``has``: the
    room it is checked against and where it lives (``MEMFD`` or ``SHM``); by default ``room(backing())``, read now.

    The room is checked up front, but the pages are not reserved: the kernel allocates a page when a worker first
    writes it, and the slot freed last is handed out first, so the ring costs the slots a run keeps busy
    (workers × prefetch in a plain loop), its spare slots nothing until a caller holds batches back, and the
    busy slots stay warm in cache. Reserving every page (posix_fallocate) would turn a /dev/shm that fills up
    later into an early error instead of a worker's SIGBUS (which the loader reports as such), at the price
    of memory never used.
    """

    def __init__(self, n_slots: int, slot_bytes: int, has: Room | None = None) -> None:
        self.n_slots, self.slot_bytes = n_slots, max(1, slot_bytes)
        has = has or room(backing())
        self.where = has.where
        need = self.n_slots * self.slot_bytes
        if (refused := has.refusal(need)) is not None:
            raise SharedMemoryError(refused)
        self.name = f"{SHM_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self._fd: int | None = None
        self.shm: shared_memory.SharedMemory | None = None
        if self.where == MEMFD:
            fd = os.memfd_create(self.name, os.MFD_CLOEXEC)
            try:
                os.ftruncate(fd, need)
                self._map = mmap.mmap(fd, need)
            except BaseException:
                os.close(fd)
                raise
            self._fd, self.buf = fd, memoryview(self._map)
        else:
            self.shm = shared_memory.SharedMemory(name=self.name, create=True, size=need)
            self._map, self.buf = self.shm._mmap, cast(memoryview, self.shm.buf)  # type: ignore[attr-defined]
        self._free: deque[int] = deque(range(self.n_slots))
        self._held: list[tuple[int, Callable[[], bool]]] = []  # released, but a late writer may still be alive
        self._lock = threading.Lock()
        self._closed = False
        self._leases = 0  # slots leased whose views are still alive: the mapping stays while any is
        self._idle = False  # between epochs with ``give_back``: a slot released then returns its pages at once

    @property
    def handle(self) -> RingHandle:
        return RingHandle(self.name, self.n_slots * self.slot_bytes, self.slot_bytes, self._fd)

    def acquire(self) -> int | None:
        with self._lock:
            if self._held:
                for slot, hold in [(s, h) for s, h in self._held if not h()]:
                    self._held.remove((slot, hold))
                    self._free.appendleft(slot)
            return self._free.pop() if self._free else None  # last in, first out: see the class docstring

    def release(self, slot: int, hold: Callable[[], bool] | None = None) -> None:
        """The slot is free again; with ``hold``, only once ``hold()`` is False (checked at each ``acquire``)."""
        with self._lock:
            if self._closed:
                return
            if hold is not None and hold():
                self._held.append((slot, hold))
                return
            self._free.append(slot)
            if self._idle:
                self._punch(slot)

    def give_back(self, idle: bool) -> None:
        """``idle=True`` (an epoch ended): the free slots' pages go back now, and each slot released later goes
        back when it is; ``False`` (an epoch starts): slots keep their pages again. For a ring squeezed into a
        small room, so that whatever else needs it between this loader's epochs (another loader, the training
        process) has it; the kernel hands the pages out again, zeroed, when a worker next writes."""
        with self._lock:
            self._idle = idle and not self._closed
            if self._idle:
                for slot in self._free:
                    self._punch(slot)

    def _punch(self, slot: int) -> None:
        """Free the backing pages of the slot's whole pages (MADV_REMOVE: shared memory punches a hole)."""
        page = mmap.PAGESIZE
        start = -(-slot * self.slot_bytes // page) * page
        stop = (slot + 1) * self.slot_bytes // page * page
        if stop > start and hasattr(mmap, "MADV_REMOVE"):
            try:
                self._map.madvise(mmap.MADV_REMOVE, start, stop - start)
            except (OSError, ValueError):  # not shared memory, or not allowed, or closed: the pages stay
                pass

    @property
    def resident_bytes(self) -> int:
        """Bytes of the segment backed by pages now (what it takes from the room)."""
        try:
            st = os.fstat(self._fd) if self._fd is not None else os.stat(f"/dev/shm/{self.name}")
        except OSError:
            return 0
        return int(st.st_blocks * 512)

    @property
    def free_slots(self) -> int:
        return len(self._free)

    def close(self) -> None:
        """Close the memfd, or unlink the /dev/shm segment; the mapping lives on while arrays still view it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            unmap = not self._leases
        self._destroy(unmap)

    def _destroy(self, unmap: bool) -> None:
        """The segment's name or descriptor goes now; its mapping too, unless batches still view it (``unmap``
        False): numpy keeps no buffer export of the mapping, only a pointer into it, so the mapping is closed when
        the last lease is let go (``_returned``), never under a batch the caller holds. Until then the memfd stays
        open in this process (Python's mmap keeps its own descriptor): the memory is still in use."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        elif self.shm is not None:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass
        if unmap:
            self._unmap()

    def _unmap(self) -> None:
        try:
            if self.shm is not None:
                self.shm.close()
            else:
                self.buf.release()
                self._map.close()
        except BufferError:  # a view made outside ``lease``: the mapping goes with the ring object
            pass

    def _returned(self, slot: int, hold: Callable[[], bool] | None) -> None:
        """A lease's last view is gone: the slot back to the ring, and the mapping closed if the ring was."""
        with self._lock:
            self._leases -= 1
            unmap = self._closed and not self._leases
        self.release(slot, hold)
        if unmap:
            self._unmap()

    def lease(self, slot: int, hold: Callable[[], bool] | None = None) -> np.ndarray:
        """The slot's bytes; the slot returns to the ring once no array views them any more (and, with ``hold``,
        once that says so: ``release``).

        One finalizer per lease: every array cut from it (``view``) keeps it alive through ``.base``.
        """
        arr: np.ndarray = np.ndarray((self.slot_bytes,), dtype=np.uint8, buffer=self.buf, offset=slot * self.slot_bytes)
        with self._lock:
            self._leases += 1
        weakref.finalize(arr, self._returned, slot, hold)
        return arr


def view(raw: np.ndarray, shape: tuple[int, ...], dtype: Any, offset: int = 0) -> np.ndarray:
    """An array of ``shape`` and ``dtype`` at ``offset`` bytes into ``raw``, sharing its memory."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    out: np.ndarray = raw[offset : offset + nbytes].view(dt).reshape(shape)
    return out


_ATTACHED: list[Any] = []  # keeps 3.13+ SharedMemory objects alive (their __del__ closes the mapping)


def attach(handle: RingHandle) -> Any:
    """Map the ring in a worker: its memfd (the descriptor is closed then; the mapping keeps the memory), or its
    /dev/shm segment without registering it with the resource tracker.

    Before Python 3.13, ``SharedMemory(name)`` registers the segment again in the child, and the tracker,
    shared with the parent, then reports it leaked or unlinks it twice.
    """
    if handle.fd is not None:
        try:
            return mmap.mmap(handle.fd, handle.size)
        finally:
            os.close(handle.fd)  # a worker's own copy (inherited or passed); the parent's stays open
    if sys.version_info >= (3, 13):
        shm = shared_memory.SharedMemory(name=handle.name, track=False)  # type: ignore[call-arg]
        _ATTACHED.append(shm)
        return shm.buf
    import _posixshmem

    fd = _posixshmem.shm_open("/" + handle.name, os.O_RDWR, mode=0o600)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def slot_array(buf: Any, slot: int, slot_bytes: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    out: np.ndarray = np.ndarray(shape, dtype=dtype, buffer=buf, offset=slot * slot_bytes)
    return out
