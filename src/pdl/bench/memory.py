"""The memory a loader costs: main process and workers together, sampled while an epoch runs.

The measure is the PSS (proportional set size) of anonymous and shared memory: heap, stacks, pages a forked
worker copied, /dev/shm. PSS counts each page once in all, split among the processes that map it, so summed
over the main process and its workers it counts the pages forked workers still share with their parent, and
the shared-memory ring, once; RSS would count them once per process (a 2-worker run showed 1046 MB of summed
RSS for 479 MB in use). File-backed pages, the code of numpy, OpenCV, torch, are left out: they are shared
with every other process that maps the same libraries (so their PSS depends on what else runs) and the
kernel can drop them.

Each loader is measured in a fresh process of its own, spawned for it: that process is the main process a
training script would be, and no other loader's workers share (and so split) its pages.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from multiprocessing import connection
from types import TracebackType
from typing import Any

import psutil

from ..data.pipeline import Pipeline
from ..data.protocol import Dataset
from ..errors import PdlError, WorkerDiedError, worker_error
from ..loaders import Loader, LoaderSpec, make_loader
from ..loaders.forking import forking

Reader = Callable[[int], int | None]


def pss_bytes(pid: int) -> int | None:
    """PSS of ``pid``'s anonymous and shared memory in bytes; None when the process is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:  # Linux 4.14+: one line per total, cheap
            fields = dict(line.split()[:2] for line in f if line.endswith(b" kB\n"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        fields = {}
    if b"Pss_Anon:" in fields:  # Linux 5.8+
        return (int(fields[b"Pss_Anon:"]) + int(fields.get(b"Pss_Shmem:", 0))) * 1024
    if b"Pss:" in fields:
        return int(fields[b"Pss:"]) * 1024
    try:  # other systems: psutil's PSS where it has one, else USS (pages only this process maps)
        info = psutil.Process(pid).memory_full_info()
    except psutil.Error:
        return None
    return int(getattr(info, "pss", getattr(info, "uss", info.rss)))


def total_bytes(pids: Iterable[int], read: Reader = pss_bytes) -> int:
    return sum(read(pid) or 0 for pid in pids)


class PeakSampler:
    """Samples the summed PSS of ``pids()`` every ``interval_s`` in a thread, from ``with`` to its end.

    ``pids`` is called at each sample, so workers started or replaced meanwhile are counted. Reading PSS walks
    the page tables (about 1 ms per 100 MB mapped), which is why pdl samples in epochs of their own, never in
    the timed ones.
    """

    def __init__(self, pids: Callable[[], Iterable[int]], interval_s: float = 0.02, read: Reader = pss_bytes) -> None:
        self.pids, self.interval_s, self.read = pids, interval_s, read
        self.peak_bytes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pdl-memory", daemon=True)

    def sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, total_bytes(self.pids(), self.read))
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> PeakSampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        if exc_type is None:
            self.sample()


def counted_pids(loader: Loader) -> list[int]:
    """This process, the loader's workers, and whatever process they were forked from if not this one (a
    forkserver): they share its pages, so its memory is the loader's too."""
    me, workers = os.getpid(), loader.worker_pids
    parents = set()
    for pid in workers:
        with contextlib.suppress(psutil.Error):
            parents.add(psutil.Process(pid).ppid())
    return [me, *workers, *sorted(parents - {me, *workers})]


def epoch_peaks(loader: Loader, epochs: int, after_epoch: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Peak PSS of this process and the loader's workers in each of ``epochs`` epochs, and the largest batch in
    MB, so that the cost of parallelism reads in batches."""
    peaks, batch_bytes = [], 0
    for _ in range(epochs):
        with PeakSampler(lambda: counted_pids(loader)) as sampler:
            for batch in loader:
                batch_bytes = max(batch_bytes, batch.images.nbytes)
                del batch  # hand the slot back before the next batch, as a training loop does
        peaks.append(sampler.peak_bytes / 2**20)
        after_epoch()
    return {"memory_peak_mb": peaks, "batch_mb": batch_bytes / 2**20}


def peak_memory(
    kind: str, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec, epochs: int, tick: Callable[[], None]
) -> dict[str, Any]:
    """``epoch_peaks`` of a ``kind`` loader, run in a fresh spawned process after one unsampled warm-up epoch.

    ``tick`` is called after each sampled epoch. Ctrl-C or an error here stops the probe, which closes its
    loader (workers, shared memory) on the way out.
    """
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    args = (send, kind, dataset, pipeline, spec, epochs)
    proc = ctx.Process(target=_probe, args=args, name=f"pdl-memory-{kind}")  # not a daemon: it has workers
    with forking("spawn"):
        proc.start()
    send.close()
    try:
        while True:
            ready = connection.wait([receive, proc.sentinel])
            message = None
            if receive in ready:
                try:
                    message = receive.recv()
                except EOFError:
                    pass
            if message is None:
                proc.join(5)
                raise WorkerDiedError(
                    f"the memory probe for loader '{kind}' (pid {proc.pid}) died: exit code {proc.exitcode}",
                    exc_type="WorkerDied",
                )
            what, payload = message
            if what == "epoch":
                tick()
            elif what == "error":
                raise payload
            else:
                proc.join(30)  # its loader is closed: let it exit on its own
                peaks: dict[str, Any] = payload
                return peaks
    finally:
        receive.close()
        if proc.is_alive():
            proc.terminate()  # SIGTERM: the probe closes its loader and exits
            proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()


def _probe(conn: Any, kind: str, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec, epochs: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds, so the loader closes
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # blocked while spawning
    from .._env import keep_freed_memory, limit_threads, quiet_opencv

    limit_threads()  # the settings the measured run had
    keep_freed_memory()
    quiet_opencv()
    try:
        with make_loader(kind, dataset, pipeline, spec) as loader:
            for batch in loader:  # warm-up: workers started, pipeline built, nothing sampled
                del batch
            result: dict[str, Any] | PdlError = epoch_peaks(loader, epochs, lambda: conn.send(("epoch", None)))
    except PdlError as exc:
        result = exc
    except Exception as exc:
        result = worker_error(exc, None, "measuring memory")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the loader is closed: nothing left to unwind
    conn.send(("error", result) if isinstance(result, PdlError) else ("done", result))
