"""Starting worker processes safely: signals held while forking, OpenCV's thread pool kept out of the child, and
every child tied to its parent's life (``die_with_parent``): no worker outlives pdl, however pdl ends.

Why the kernel and not a pipe: a parent killed by SIGKILL or the out-of-memory killer runs no code, so only the
kernel can end its children; a stopped child (SIGSTOP) or one busy in native code would never read a pipe.
``PR_SET_PDEATHSIG`` makes the kernel send SIGKILL to the child when its parent goes.

NOTE: the kernel's "parent" is the *thread* that forked, not its process: a child forked by a thread that ends
before the process would be killed with that thread. So the tie is made only in children forked by the main
thread (``os.register_at_fork`` notes the forking thread; a forkserver forks from its main thread); a child forked
by another thread watches for its parent's death instead (``_watch_parent``: a thread that notices the
re-parenting within a second), which a stopped child cannot do but every running one does.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .._env import limit_threads
from ..data.pipeline import Pipeline

SIGNALS = {signal.SIGINT, signal.SIGTERM}
PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCH_PARENT_S = 1.0  # how often a child not tied by the kernel looks for its parent
OOM_SCORE_ADJ = 1000  # a worker is the out-of-memory killer's first choice, before the process that started it


def _find_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once in the parent: a child between fork and exec (``preexec_fn``) should not load
    libraries."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _find_prctl()
_forked_by_main = True  # whether the thread that forked this process (if it was forked) was its parent's main thread


def _note_forking_thread() -> None:
    global _forked_by_main
    _forked_by_main = threading.current_thread() is threading.main_thread()


os.register_at_fork(before=_note_forking_thread)


def die_with_parent(parent: int | None = None) -> bool:
    """Have the kernel SIGKILL this process when its parent dies, however the parent dies (SIGKILL and the
    out-of-memory killer included): Linux's ``prctl(PR_SET_PDEATHSIG, SIGKILL)``. Call it first thing in a child;
    with no argument it is a ``preexec_fn``: ``subprocess.Popen(cmd, preexec_fn=die_with_parent)`` (the tie
    survives exec). ``parent``: the pid the parent should have; if the parent already died (this process was
    re-parented before the call), this process ends at once. Returns whether the kernel took it (False elsewhere
    than Linux).

    NOTE: the signal comes when the *thread* that forked this process ends: start such children from the main
    thread, or from a thread that lives as long as they do.
    """
    if _PRCTL is None or _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        return False
    if parent is not None and os.getppid() != parent:  # gone before the tie was made: it will never fire
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def _watch_parent(parent: int) -> None:
    """A daemon thread: when this process is re-parented (its parent died), it ends, whatever it was doing."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_PARENT_S)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="pdl-parent-watch", daemon=True).start()


@contextmanager
def forking(start_method: str, pipeline: Pipeline | None = None) -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while workers start, and keep the parent at one OpenCV thread if it forks.

    A signal that lands inside a fork is raised in an at-fork hook, where Python drops it; blocked, it waits and
    is raised right after. Workers unblock signals first thing. Forking while the parent's OpenCV pool is alive
    leaves children that hang in ``cv2.setNumThreads``. The workers' ``pipeline`` is built here first, once:
    forked workers then share the import (albumentations pulls in scipy, and torch when installed) instead of
    each making a private copy (172 MB each, measured).
    """
    if start_method == "fork" and pipeline is not None:
        pipeline.compose  # noqa: B018
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    before = None
    if start_method == "fork":
        import cv2

        before = cv2.getNumThreads()
        cv2.setNumThreads(1)
    try:
        yield
    finally:
        if before is not None:
            import cv2

            cv2.setNumThreads(before)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def worker_started() -> None:
    """First thing in a worker process, whoever started it: it dies with its parent (``die_with_parent``, or the
    watch where the kernel cannot tie it); Ctrl-C is the parent's to handle (it reaches the whole group, and the
    parent shuts the workers down); SIGTERM just stops (not the CLI's handler, inherited through fork); the signals
    ``forking`` held are let through again; one OpenCV and BLAS thread."""
    tie_to_parent()
    first_to_go()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
    limit_threads()


def tie_to_parent() -> None:
    """End this process with its parent: by the kernel where the main thread forked it (or it was spawned), else
    by a watching thread (see the module's note)."""
    parent = os.getppid()
    if not (_forked_by_main and die_with_parent(parent)):
        _watch_parent(parent)


def first_to_go() -> None:
    """Make this worker the out-of-memory killer's first choice (Linux ``oom_score_adj``; raising it needs no
    privilege). A killed worker is reported by its loader in one line naming the memory limit; a killed main
    process says nothing, and loses the training with it."""
    try:
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write(str(OOM_SCORE_ADJ))
    except OSError:
        pass
