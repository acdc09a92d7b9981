"""ParallelLoader: persistent worker processes, whole-batch tasks, a bounded window, in-order delivery.

Each worker has its own task pipe and result pipe; the parent blocks in ``connection.wait`` on the result
pipes and the workers' sentinels together, so a batch and a dead worker both wake it at once, with no polling.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing as mp
import signal
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing import connection
from typing import Any

import numpy as np

from ..dataset import ImageFolder, read_image
from ..errors import ConfigError, ImageReadError, LoaderTimeoutError, SharedMemoryError, WorkerDiedError
from ..pipeline import Pipeline
from .base import AugmentIn, Batch, Loader, LoaderSpec, OnError, augment_into, epoch_plan
from .shm import SlotRing, view
from .worker import DONE, FAILED, READY, worker_loop

START_TIMEOUT_S = 60.0


class PdlWarning(UserWarning):
    """Something the user should know about a run that still works (shown once)."""


def default_start_method() -> str:
    """fork on Linux: workers start in milliseconds, inherit the dataset without pickling, and scripts need no
    ``if __name__ == "__main__"`` guard. Its one known hazard here, OpenCV's thread pool (a child forked after
    the parent used the pool hangs in ``cv2.setNumThreads``), is defused by ``forking``. Elsewhere
    spawn, as Python itself defaults to. forkserver and spawn are one argument away.
    """
    methods = mp.get_all_start_methods()
    return "fork" if sys.platform.startswith("linux") and "fork" in methods else "spawn"


SIGNALS = {signal.SIGINT, signal.SIGTERM}


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


class ParallelLoader(Loader):
    name = "process"

    def __init__(
        self,
        dataset: ImageFolder,
        pipeline: Pipeline,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        num_workers: int = 2,
        prefetch: int = 2,
        augment_in: AugmentIn = "workers",
        start_method: str | None = None,
        on_error: OnError = "fail",
        timeout: float | None = None,
        shared_memory: bool = True,
    ) -> None:
        spec = LoaderSpec(batch_size, shuffle, seed, drop_last, num_workers, prefetch, augment_in, on_error, timeout)
        if num_workers < 1:
            raise ConfigError(f"`num_workers` must be at least 1 for ParallelLoader. Found: {num_workers}")
        self.start_method = start_method or default_start_method()
        if self.start_method not in mp.get_all_start_methods():
            raise ConfigError(f"`start_method` must be one of {mp.get_all_start_methods()}. Found: {start_method!r}")
        super().__init__(dataset, pipeline, spec)
        self.num_workers = num_workers
        self.use_shared_memory = shared_memory
        if not shared_memory:
            self.name = "process-pickle"  # measured side by side with "process": what the ring gains
        self._procs: list[Any] = []
        self._tasks: list[connection.Connection] = []
        self._results: list[connection.Connection] = []
        self._ring: SlotRing | None = None
        self._task_ids = itertools.count()
        self._pending: dict[int, tuple[int, int, int | None]] = {}  # task → (epoch, batch number, slot)
        self._done: dict[int, tuple[Any, float]] = {}  # batch number → (message payload, time received)
        self._load = [0] * num_workers
        self._started = self._closed = False

    @property
    def worker_pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def start(self) -> None:
        if self._closed:
            raise ConfigError("this loader was closed; create a new one")
        if self._started:
            return
        self._started = True
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        ctx = mp.get_context(self.start_method)
        if self.start_method == "forkserver":
            ctx.set_forkserver_preload(["pdl.loaders.worker", "albumentations"])
        self._ring = self._make_ring()
        with forking(self.start_method, self.pipeline):
            for wid in range(self.num_workers):
                self._spawn(ctx, wid)
        ready = 0
        deadline = time.monotonic() + START_TIMEOUT_S
        while ready < self.num_workers:  # verify the pool really started before anything is timed
            for kind, *_ in self._receive(deadline, "start"):
                ready += kind == READY

    def _spawn(self, ctx: Any, wid: int) -> None:
        task_r, task_w = ctx.Pipe(duplex=False)
        res_r, res_w = ctx.Pipe(duplex=False)
        ring = self._ring
        args = (wid, self.dataset, self.pipeline, self.spec, task_r, res_w, ring and ring.name, ring and ring.slot_bytes)
        proc = ctx.Process(target=worker_loop, args=args, name=f"pdl-worker-{wid}", daemon=True)
        proc.start()
        task_r.close()
        res_w.close()
        self._procs.append(proc)
        self._tasks.append(task_w)
        self._results.append(res_r)

    def _make_ring(self) -> SlotRing | None:
        if not self.use_shared_memory:
            return None
        spec, shape = self.spec, self.pipeline.output_shape
        if spec.augment_in == "workers":
            if shape is None:
                note = f"pipeline '{self.pipeline.name}': output size unknown until run: batches are pickled"
                warnings.warn(note, PdlWarning, stacklevel=3)
                return None
            slot_bytes = spec.batch_size * math.prod(shape) * np.dtype(self.pipeline.output_dtype).itemsize
        else:
            slot_bytes = spec.batch_size * self._raw_image_bytes()
        n_slots = self.num_workers * spec.prefetch + 2  # the window, the batch being consumed, and one spare
        try:
            return SlotRing(n_slots, slot_bytes)
        except SharedMemoryError as exc:
            warnings.warn(f"{exc}; falling back to pickling batches (slower)", PdlWarning, stacklevel=3)
            return None

    def _raw_image_bytes(self) -> int:
        """Room per raw image when workers only read: 1.5× the largest of a few sample images."""
        sizes = []
        for i in np.linspace(0, len(self.dataset) - 1, num=min(8, len(self.dataset)), dtype=int):
            try:
                sizes.append(read_image(self.dataset.path(int(i))).nbytes)
            except ImageReadError:
                continue
        return int(1.5 * max(sizes, default=500 * 375 * 3))

    # -- one epoch -------------------------------------------------------------------------------------------
    def _epoch(self, epoch: int) -> Iterator[Batch]:
        self._drain_stale()
        plan = epoch_plan(len(self.dataset), self.spec, epoch)
        window = self.num_workers * self.spec.prefetch
        sent = 0
        try:
            for number in range(len(plan)):
                # batches dispatched but not yet handed out (in flight or in the reorder buffer) stay within
                # the window, so they never need more slots than the ring has
                while sent < len(plan) and sent - number < window:
                    self._dispatch(epoch, sent, plan[sent])
                    sent += 1
                t0 = time.perf_counter()
                deadline = None if self.spec.timeout is None else time.monotonic() + self.spec.timeout
                while number not in self._done:
                    self._collect(self._receive(deadline, f"batch {number} of epoch {epoch}"))
                payload, _ = self._done.pop(number)
                batch = self._unpack(payload, epoch)
                now = time.perf_counter()
                self.stats.wait_s.append(now - t0)
                if payload["t_done"] >= t0:  # finished while we waited: the time to get it is the hand-off
                    # (until its data was in hand, before any augmenting here; the clock is system-wide)
                    self.stats.handoff_s.append(payload["t_held"] - payload["t_done"])
                yield batch
                del batch  # the caller may drop it before asking for the next: let its slot go then
        except GeneratorExit:  # the caller stopped early (break): the loader stays usable
            raise
        except BaseException:
            self.close()  # an error, a worker's death, Ctrl-C: stop everything, leave nothing behind
            raise
        finally:
            for task, (ep, _, slot) in list(self._pending.items()):
                if ep == epoch:
                    self._pending[task] = (-1, -1, slot)  # abandoned (early break): dropped when it arrives
            for payload, _ in self._done.values():  # arrived but never handed out: their slots go back now
                if payload["slot"] is not None and self._ring:
                    self._ring.release(payload["slot"])
            self._done.clear()

    def _dispatch(self, epoch: int, number: int, indices: np.ndarray) -> None:
        wid = min(range(self.num_workers), key=self._load.__getitem__)  # least busy worker
        slot = self._ring.acquire() if self._ring else None  # None: every slot is held by batches the caller kept
        task = next(self._task_ids)
        self._pending[task] = (epoch, number, slot)
        self._load[wid] += 1
        try:
            self._tasks[wid].send((task, epoch, indices, slot))
        except OSError:  # the worker is gone: say how
            self._died(wid)

    def _collect(self, messages: list[tuple[Any, ...]]) -> None:
        for kind, wid, task, payload in messages:
            epoch, number, slot = self._pending.pop(task)
            self._load[wid] -= 1
            used_slot = kind == DONE and payload["slot"] is not None
            if slot is not None and self._ring and (epoch < 0 or not used_slot):
                self._ring.release(slot)  # abandoned, failed, or pickled instead (raw images larger than a slot)
            if epoch < 0:
                continue
            if kind == FAILED:
                raise payload
            self._done[number] = (payload, time.perf_counter())

    def _drain_stale(self) -> None:
        while any(ep < 0 for ep, _, _ in self._pending.values()):
            self._collect(self._receive(time.monotonic() + START_TIMEOUT_S, "an abandoned batch"))

    def _unpack(self, payload: dict[str, Any], epoch: int) -> Batch:
        self.stats.stages.append(payload["times"])
        indices, skipped, slot = payload["indices"], payload["skipped"], payload["slot"]
        if slot is None:
            images = payload["images"]
            self.stats.copied_batches += 1  # pickled: no ring, no free slot, or raw images too big for one
        else:
            assert self._ring is not None
            raw = self._ring.lease(slot)
            if self.spec.augment_in == "workers":
                images = view(raw, payload["shape"], payload["dtype"])
            else:
                images = [view(raw, shape, np.uint8, off) for off, shape in payload["offsets"]]
        payload["t_held"] = time.perf_counter()
        if self.spec.augment_in == "main":
            paths = [self.dataset.path(i) for i in indices]
            images = augment_into(self.pipeline, images, indices, self.spec.seed, epoch, paths, payload["times"])
        return self._to_batch(images, indices, skipped)

    # -- receiving -------------------------------------------------------------------------------------------
    def _receive(self, deadline: float | None, waiting_for: str) -> list[tuple[Any, ...]]:
        """Block until at least one message arrives; a dead worker raises, a passed deadline raises."""
        sentinels = {p.sentinel: i for i, p in enumerate(self._procs)}
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = connection.wait([*self._results, *sentinels], timeout)
        if not ready:
            raise LoaderTimeoutError(
                f"no message from the workers within the timeout while waiting for {waiting_for}; a worker may be "
                "stuck (a transform that never returns?): raise --timeout or check the pipeline"
            )
        messages = []
        for conn in self._results:
            if conn in ready:
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    continue  # the worker is gone; its sentinel says how
                if msg[0] == READY:
                    messages.append(msg)
                else:
                    messages.append((msg[0], self._results.index(conn), msg[1], msg[2]))
        if not messages:
            for sentinel, wid in sentinels.items():
                if sentinel in ready:
                    self._died(wid)
        return messages

    def _died(self, wid: int) -> None:
        proc = self._procs[wid]
        proc.join(1.0)
        code = proc.exitcode
        if code is not None and code < 0:
            sig = signal.Signals(-code)
            how = f"killed by signal {sig.name} ({-code})"
            if sig == signal.SIGKILL:
                how += "; the out-of-memory killer sends SIGKILL: check memory, or lower --workers/--batch-size"
            elif sig == signal.SIGBUS and self._ring is not None:
                how += (
                    "; a worker gets SIGBUS when /dev/shm fills up: free it, enlarge it "
                    "(docker: --shm-size), or lower --batch-size/--prefetch"
                )
        else:
            how = f"exited with code {code}"
        raise WorkerDiedError(f"worker {wid} (pid {proc.pid}) died: {how}", exc_type="WorkerDied")

    # -- shutdown --------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in self._tasks:
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2.0
        for proc in self._procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
                proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        for conn in (*self._tasks, *self._results):
            conn.close()
        for proc in self._procs:
            try:
                proc.close()
            except ValueError:
                pass
        self._procs.clear()
        if self._ring is not None:
            self._ring.close()
        self._pending.clear()
        self._done.clear()


__all__ = ["ParallelLoader", "PdlWarning", "default_start_method"]
