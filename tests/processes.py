"""What tests start, stopped: the children a test left, named and stopped, and a guard for fixtures whose setup
starts processes and can fail half-way (a Ray head started, the second node not)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

from pdl.loaders.ring import SHM_PREFIX

GRAIN_PREFIX = "psm_"  # multiprocessing.shared_memory's names: Grain's blocks, one per batch in flight


def shm_entries(creator: int | None = None) -> set[str]:
    """The rings of pdl made by ``creator`` (default: this test process) that still exist: their /dev/shm
    segments (named pdl-<creator pid>-...), and their memfds open in any process ("memfd:pdl-<pid>-...", from
    /proc/<pid>/fd), whatever other pdl runs do meanwhile. A memfd lives as long as a process holds it, so one
    listed here is held by a live process: this test process's own descriptor not closed, or a worker left.
    Also every ``psm_`` segment (Python's shared_memory: Grain's per-batch blocks): their names do not say who made
    them, so one that appears during a test and stays is counted against it."""
    mine = f"{SHM_PREFIX}{creator or os.getpid()}-"
    try:
        found = {name for name in os.listdir("/dev/shm") if name.startswith((mine, GRAIN_PREFIX))}
    except FileNotFoundError:
        found = set()
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        found |= {link.split()[0].lstrip("/") for link in _links(fd_dir) if link.startswith(f"/memfd:{mine}")}
    return found


def _links(fd_dir: Path) -> list[str]:
    """Where a process's descriptors point; those closed meanwhile (the listing's own) left out."""
    try:
        fds = list(fd_dir.iterdir())
    except OSError:  # gone, or not ours to read
        return []
    links = []
    for fd in fds:
        with suppress(OSError):
            links.append(os.readlink(fd))
    return links


def live_children() -> list[psutil.Process]:
    """Children of the test process, ignoring multiprocessing's own helpers and finished zombies."""
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
            if child.status() == psutil.STATUS_ZOMBIE or "resource_tracker" in cmd or "forkserver" in cmd:
                continue
        except psutil.Error:
            continue
        alive.append(child)
    return alive


def describe(proc: psutil.Process) -> str:
    """'pid 123: gcs_server --arg …' (the command line cut at 160 characters)."""
    try:
        cmd = " ".join(proc.cmdline()) or proc.name()
    except psutil.Error:
        cmd = "(gone)"
    return f"pid {proc.pid}: {cmd[:160]}"


def stop(procs: list[psutil.Process], grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL whatever is still there after ``grace_s``; each one reaped (no zombie stays)."""
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace_s)


def stop_leftovers(before: Collection[int] = ()) -> list[str]:
    """Stop every live child not in ``before`` (pids); returns what was stopped, described."""
    left = [p for p in live_children() if p.pid not in before]
    described = [describe(p) for p in left]
    stop(left)
    return described


def remove_segments(names: set[str]) -> None:
    """Unlink the /dev/shm segments; close this process's descriptors of the memfds (a worker's go with it)."""
    for fd in Path("/proc/self/fd").iterdir():
        try:
            if os.readlink(fd).split()[0].lstrip("/") in names:
                os.close(int(fd.name))
        except OSError:
            pass
    for name in names:
        try:
            os.unlink(os.path.join("/dev/shm", name))
        except FileNotFoundError:
            pass


def check_nothing_left(shm_before: set[str], exempt: Callable[[], Collection[int]] = tuple) -> None:
    """After a test: wait up to 3 s for its children and segments to go; then stop and remove what stayed, and
    fail naming it (pid and command line; segment names). ``exempt``: pids a module's fixture keeps alive."""
    deadline = time.monotonic() + 3
    while (stray(exempt) or shm_entries() - shm_before) and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped = stop_leftovers(exempt())
    segments = shm_entries() - shm_before
    remove_segments(segments)
    assert not stopped, "a test left child processes alive (now stopped): " + "; ".join(stopped)
    assert not segments, "a test left shared memory (now removed): " + ", ".join(sorted(segments))


def stray(exempt: Callable[[], Collection[int]] = tuple) -> list[psutil.Process]:
    kept = exempt()
    return [p for p in live_children() if p.pid not in kept]


@contextmanager
def stopping_what_it_starts() -> Iterator[None]:
    """Around a setup that starts processes: whatever it started and left alive is stopped on the way out,
    whether the body finished, raised half-way, or was interrupted."""
    before = {p.pid for p in live_children()}
    try:
        yield
    finally:
        stop_leftovers(before)
