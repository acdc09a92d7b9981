"""What the peer loaders (report, batchup, spdl, torchdata) share: pdl's per-image work, a timeout, a reaper.

A peer runs its own machinery (queues, pools, pipelines) but makes every image with pdl's read path and
per-image seed, so its batches equal the sequential loader's bit for bit. Where a peer would block forever
(a dead worker, a lost task, a stopped one), the adapter waits at most ``wait_s(spec)`` and checks the peer's
processes while it waits: past it, `timeout`'s LoaderTimeoutError, or without `timeout` the watchdog's
NoProgressError (exit code 6), one line naming the peer; the loader is then closed. What a peer leaves running
when it is closed is killed here and counted; a helper thread stuck inside the peer is waited for at most
``CLOSE_WAIT_S`` (``stop_waiter``). The peers' workers call ``worker_started``: they die with the main process.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil

from ...data.pipeline import Pipeline
from ...data.protocol import Dataset
from ...errors import LoaderTimeoutError, NoProgressError, WorkerDiedError, WorkerError, worker_error
from ..batching import Produced, make_batch
from ..chunks import merged, merged_labels, stack
from ..spec import LoaderSpec

DEFAULT_TIMEOUT_S = 120.0  # without --timeout: long enough for any sane batch, short enough to report a hang
POLL_S = 0.1  # how often a wait checks that the peer's workers are still alive
CLOSE_WAIT_S = 5.0  # for a helper thread to leave a call into the peer, at close


def wait_s(spec: LoaderSpec) -> float:
    """The longest a peer waits for one batch (or image): ``--timeout``, else ``DEFAULT_TIMEOUT_S``."""
    return float(spec.timeout) if spec.timeout is not None else DEFAULT_TIMEOUT_S


def version(distribution: str) -> str | None:
    """The installed version of a peer's distribution (``spdl-core``), None if unknown."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def one_image(dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec, epoch: int, index: int, augment: bool) -> Produced:
    """One image through pdl's read path (and, if ``augment``, its per-image seed): a batch of one (or of none,
    when it was skipped under ``on_error="skip"``)."""
    return make_batch(dataset, pipeline, np.array([index], dtype=np.int64), epoch, spec, augment=augment)


def safely(fn: Callable[..., Produced], *args: Any) -> Produced | WorkerError:
    """``fn(*args)``, a failure returned as a picklable WorkerError (a peer would log or flatten it)."""
    try:
        return fn(*args)
    except Exception as exc:
        return worker_error(exc, getattr(exc, "path", None), "reading")


def checked(made: Produced | WorkerError) -> Produced:
    """A result from a peer's worker: raised if it is an error."""
    if isinstance(made, BaseException):
        raise made
    return made


def join_images(pipeline: Pipeline, parts: Sequence[Produced]) -> Produced:
    """Per-image results (augmented, each [0 or 1, H, W, C]) → one batch: the same array ``make_batch`` writes."""
    indices, skipped, times = merged(parts)
    t0 = time.perf_counter()
    images = stack([part.images for part in parts], pipeline)  # an image skipped as unreadable adds none
    times.collate += time.perf_counter() - t0
    return Produced(images, indices, skipped, times, merged_labels(parts))


def wait_for(
    ready: Callable[[float], bool], loader: str, spec: LoaderSpec, alive: Callable[[], Iterable[tuple[int, bool]]]
) -> None:
    """Wait until ``ready(seconds)`` says so, at most ``wait_s(spec)``, checking the workers every ``POLL_S``.

    ``alive()`` gives (pid, alive) for each worker process; one that died, seen before the wait or during it, is a
    WorkerDiedError naming the loader.
    """
    limit = wait_s(spec)
    deadline = time.monotonic() + limit
    check_alive(loader, alive)  # first: a pool that replaced a dead worker may not wait, but its work may be lost
    while not ready(max(0.0, min(POLL_S, deadline - time.monotonic()))):
        check_alive(loader, alive)
        if time.monotonic() >= deadline:
            raise timed_out(loader, spec)


def timed_out(loader: str, spec: LoaderSpec) -> LoaderTimeoutError:
    """The error of a wait past ``wait_s(spec)``: `timeout`'s, or without it the watchdog's (exit code 6)."""
    if spec.timeout is not None:
        return LoaderTimeoutError(f"{loader}: no batch within {spec.timeout:g}s; a worker may be stuck: raise `timeout`")
    return NoProgressError(
        f"{loader}: no batch within {DEFAULT_TIMEOUT_S:g} s (the peers' watchdog, with no `timeout` given); a worker "
        "may be stuck or stopped: find what blocks it, or set `timeout` to wait longer"
    )


def stop_waiter(waiter: Any) -> None:
    """Shut down an adapter's helper ``ThreadPoolExecutor`` without waiting for ever on a call stuck in the peer:
    its thread is given ``CLOSE_WAIT_S`` to finish, then left (Python cannot stop a thread)."""
    if waiter is None:
        return
    waiter.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + CLOSE_WAIT_S
    for thread in list(getattr(waiter, "_threads", ())):
        thread.join(max(0.0, deadline - time.monotonic()))


def check_alive(loader: str, alive: Callable[[], Iterable[tuple[int, bool]]]) -> None:
    """A WorkerDiedError naming ``loader`` if one of its worker processes has died."""
    dead = [pid for pid, ok in alive() if not ok]
    if dead:
        raise WorkerDiedError(
            f"{loader}: worker process {dead[0]} died (killed, crashed or out of memory) and its work is lost",
            exc_type="WorkerDied",
        )


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is dead)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass
class Reaper:
    """The processes a peer started, so ``close()`` can stop what the peer itself leaves running.

    ``reap()`` stops those still running and says how many it had to stop.
    """

    pids: set[int] = field(default_factory=set)

    def add(self, pids: Iterable[int | None]) -> None:
        self.pids.update(pid for pid in pids if pid is not None)

    def reap(self, wait: float = 0.0, grace_s: float = 1.0) -> int:
        """Give the processes ``wait`` seconds to end by themselves, then stop the rest (SIGTERM, SIGKILL after
        ``grace_s``); returns how many had to be stopped. Polls, never waits on a pid (its owner reaps it)."""
        procs = []
        for pid in self.pids:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                procs += [*proc.children(recursive=True), proc]
        self.pids.clear()
        alive = _until_dead(procs, wait)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        stubborn = _until_dead(alive, grace_s)
        for proc in stubborn:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        _until_dead(stubborn, grace_s)  # gone before close() returns, not merely signalled
        return len(alive)


def stop_pool(executor: Any, reaper: Reaper) -> int:
    """Shut a ``ProcessPoolExecutor`` down whatever its workers left it in; how many processes had to be stopped.

    A worker killed while it sent a result leaves the pool's manager thread reading the rest of a message that
    never comes, and Python joins that thread at exit: the interpreter would hang there. Once every worker is
    gone, closing the pool's own copy of the result pipe's writing end ends that read (end of file): the thread
    takes the pool for broken and ends.
    """
    manager = getattr(executor, "_executor_manager_thread", None)  # both dropped by shutdown: taken first
    results = getattr(executor, "_result_queue", None)
    executor.shutdown(wait=False, cancel_futures=True)
    stopped = reaper.reap(wait=2.0)
    if manager is not None:
        manager.join(1.0)  # a pool whose workers all died ends by itself
        if manager.is_alive() and results is not None:
            with contextlib.suppress(OSError, AttributeError):
                results._writer.close()
            manager.join(5.0)
    return stopped


def _until_dead(procs: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    """Those of ``procs`` still running after up to ``seconds`` (a zombie has ended)."""
    deadline = time.monotonic() + seconds
    while True:
        alive = [proc for proc in procs if process_alive(proc.pid)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)
