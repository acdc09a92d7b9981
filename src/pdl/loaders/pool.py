"""ParallelLoader's worker processes: started, each one's chunk in hand known, a stalled one ended and replaced.

Every worker pulls chunks from one shared task pipe under one lock (worker.py) and answers on a result pipe of
its own; each notes the task it took in ``held`` (a shared array) before it lets the lock go, so for any worker the
parent knows which chunk, if any, it holds (one at most).

Ending a stalled worker (``end``) kills it first (SIGKILL), then reads what it had sent (those chunks are done:
the first copy wins), then says which chunk it held, for the loader to send again. Killing *before* the chunk is
made again is what keeps the shared-memory ring safe: the new copy writes the same bytes into the same rows of
the same slot, and once SIGKILL is sent the old worker runs no more of its own code (a stopped process dies at
once; one in uninterruptible sleep dies when its system call returns, before it can write), so no late copy can
land in a slot that was reused meanwhile. Belt and braces: a worker not seen dead within ``KILL_WAIT_S`` is
returned as ``Ended.alive``, and the loader holds back the slot it may write until it is gone.

A worker killed while it held the lock (between reading a message and noting it) leaves the lock taken for ever
and maybe half a message in the pipe. ``end`` finds the lock still taken after the kill (``LOCK_WAIT_S``); the
loader then calls ``restart``: every worker ended, a new pipe and lock, a new pool; it sends everything
outstanding again.
"""

from __future__ import annotations

import fcntl
import multiprocessing as mp
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import connection
from typing import Any

from ..errors import LoaderTimeoutError, WorkerDiedError
from ..machine.memory import memory_limit
from .forking import forking
from .spec import LoaderSpec
from .worker import NONE, READY, worker_loop

START_TIMEOUT_S = 60.0  # for the workers to start, and for the task pipe to take a chunk
KILL_WAIT_S = 1.0  # for a killed worker to be seen dead
LOCK_WAIT_S = 0.5  # for the task lock, after a kill: held longer, the killed worker died holding it

Message = tuple[str, int, int, Any]  # (DONE or FAILED, worker number, task, payload)


@dataclass
class Ended:
    """What ending a worker left: its answers already sent, the task it held (None: none), whether the lock is
    usable, and whether it may still be alive (not seen dead: its slot must wait; ``alive`` says when it is gone)."""

    messages: list[Message]
    held: int | None
    lock_free: bool
    alive: Callable[[], bool] | None = None


@dataclass
class Pool:
    """``size`` workers running ``worker_loop`` over ``args`` (dataset, pipeline, spec, the ring's handle)."""

    start_method: str
    size: int
    args: tuple[Any, ...]
    procs: list[Any] = field(default_factory=list)  # by worker number; None: ended and not replaced
    results: list[connection.Connection | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ctx: Any = mp.get_context(self.start_method)
        if self.start_method == "forkserver":
            self.ctx.set_forkserver_preload(["pdl.loaders.worker", "albumentations"])
        self.held = self.ctx.RawArray("q", [NONE] * self.size)
        self.procs, self.results = [None] * self.size, [None] * self.size
        self.starting: set[int] = set()  # started, not yet ready
        self.lingering: list[Any] = []  # killed, not yet seen dead
        self.memory = memory_limit()  # the out-of-memory killer's count before: a SIGKILL is named by it
        self._open()

    @property
    def spec(self) -> LoaderSpec:
        spec: LoaderSpec = self.args[2]
        return spec

    def _open(self) -> None:
        """A new task pipe and lock. The parent keeps the reading end too: a worker started later needs it."""
        self._task_r, self.tasks = self.ctx.Pipe(duplex=False)
        try:  # a whole window of chunks (Linux: up to 1 MiB): dispatching never blocks while the workers are busy
            fcntl.fcntl(self.tasks.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        except (AttributeError, OSError):
            pass
        self.take = self.ctx.Lock()

    def start(self) -> None:
        with forking(self.start_method, self.args[1]):
            for wid in range(self.size):
                self.spawn(wid)
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.starting:  # verify the pool really started before anything is timed
            left = deadline - time.monotonic()
            if left <= 0:
                raise LoaderTimeoutError(f"{len(self.starting)} worker(s) did not start within {START_TIMEOUT_S:g} s")
            _, dead = self.receive(left)
            if dead:
                raise WorkerDiedError(self.died(dead[0]), exc_type="WorkerDied")

    def spawn(self, wid: int) -> int:
        """Start worker ``wid`` (call inside ``forking``); its pid. It says it is ready through ``receive``."""
        res_r, res_w = self.ctx.Pipe(duplex=False)
        self.held[wid] = NONE
        dataset, pipeline, spec, ring = self.args
        args = (wid, dataset, pipeline, spec, self._task_r, self.take, res_w, ring, self.held)
        proc = self.ctx.Process(target=worker_loop, args=args, name=f"pdl-worker-{wid}", daemon=True)
        proc.start()
        res_w.close()
        self.procs[wid], self.results[wid] = proc, res_r
        self.starting.add(wid)
        pid: int = proc.pid
        return pid

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None and p.pid is not None]

    def pid(self, wid: int) -> int | None:
        proc = self.procs[wid]
        return None if proc is None else proc.pid

    def alive(self) -> int:
        return sum(p is not None for p in self.procs)

    def receive(self, timeout: float | None) -> tuple[list[Message], list[int]]:
        """Wait up to ``timeout`` for answers: those that came, and (only when none came) the workers found dead."""
        conns = [(wid, c) for wid, c in enumerate(self.results) if c is not None]
        sentinels = {p.sentinel: wid for wid, p in enumerate(self.procs) if p is not None}
        ready = connection.wait([*(c for _, c in conns), *sentinels], timeout)
        messages: list[Message] = []
        for wid, conn in conns:
            if conn not in ready:
                continue
            try:
                msg: tuple[Any, ...] = conn.recv()
            except (EOFError, OSError):
                continue  # the worker is gone; its sentinel says how
            if msg[0] == READY:
                self.starting.discard(wid)
            else:
                messages.append((msg[0], wid, msg[1], msg[2]))
        dead = [] if messages else [wid for s, wid in sentinels.items() if s in ready]
        return messages, dead

    def send(self, task: tuple[Any, ...]) -> None:
        """Queue a chunk; the pipe holds a window of them, and a pipe that stays full (no worker takes anything)
        is an error within START_TIMEOUT_S, not a hang."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not select.select([], [self.tasks.fileno()], [], 1.0)[1]:
            if time.monotonic() >= deadline or not self.alive():
                raise WorkerDiedError("the workers stopped taking chunks: the task pipe stayed full", exc_type="WorkerDied")
        self.tasks.send(task)

    def holding(self, wid: int) -> int | None:
        task = int(self.held[wid])
        return None if task == NONE else task

    def end(self, wid: int, check_lock: bool = True) -> Ended:
        """Kill worker ``wid`` and take stock (see the module's docstring); it is not replaced here."""
        proc, conn = self.procs[wid], self.results[wid]
        assert proc is not None and conn is not None
        proc.kill()
        proc.join(KILL_WAIT_S)
        dead = proc.exitcode is not None
        messages: list[Message] = []
        while dead and conn.poll():  # what it sent before it died: whole messages (the writer is gone)
            try:
                kind, task, payload = conn.recv()
            except (EOFError, OSError):
                break
            messages.append((kind, wid, task, payload))
        conn.close()
        held = self.holding(wid)
        self.procs[wid] = self.results[wid] = None
        self.starting.discard(wid)
        lock_free = not check_lock or bool(self.take.acquire(timeout=LOCK_WAIT_S))
        if lock_free and check_lock:
            self.take.release()
        if dead:
            proc.close()
            return Ended(messages, held, lock_free)
        self.lingering.append(proc)

        def alive() -> bool:
            try:
                return bool(proc.is_alive())
            except ValueError:  # closed by ``stop``: gone, or left to the kernel
                return False

        return Ended(messages, held, lock_free, alive)

    def restart(self) -> list[Ended]:
        """End every worker, then start them all again on a new pipe and lock (the old lock was left taken)."""
        ended = [self.end(wid, check_lock=False) for wid in range(self.size) if self.procs[wid] is not None]
        self.tasks.close()
        self._task_r.close()
        self._open()
        with forking(self.start_method, self.args[1]):
            for wid in range(self.size):
                self.spawn(wid)
        return ended

    def died(self, wid: int) -> str:
        """Why worker ``wid`` ended, in words: 'worker 0 (pid 12) died: killed by signal SIGBUS (7); …'."""
        proc = self.procs[wid]
        proc.join(1.0)
        code, spec = proc.exitcode, self.spec
        if code is None or code >= 0:
            return f"worker {wid} (pid {proc.pid}) died: exited with code {code}"
        sig = signal.Signals(-code)
        how = f"killed by signal {sig.name} ({-code})"
        if sig == signal.SIGKILL:
            now = memory_limit()
            if now.oom_kills > self.memory.oom_kills:
                smaller = (
                    f"`num_workers` {max(1, self.size // 2)}, `batch_size` {max(1, spec.batch_size // 2)} "
                    f"or `prefetch` {max(1, spec.prefetch // 2)}"
                )
                how = (
                    f"killed by the out-of-memory killer (signal SIGKILL): {now.said() or 'the machine ran out of memory'};"
                    f" {self.size} workers of `batch_size` {spec.batch_size} with `prefetch` {spec.prefetch} do not fit:"
                    f" try {smaller}, or raise the memory limit"
                )
            else:
                how += "; the out-of-memory killer sends SIGKILL: check memory, or lower `num_workers` or `batch_size`"
                how += f" ({now.said()})" if now.said() else ""
        elif sig == signal.SIGBUS and self.args[3] is not None:
            how += (
                "; a worker gets SIGBUS when /dev/shm fills up: free it, enlarge it (docker: --shm-size)"
                if self.args[3].fd is None
                else "; a worker gets SIGBUS when shared memory runs out: free memory"
            ) + ", or lower `batch_size` or `prefetch`"
        return f"worker {wid} (pid {proc.pid}) died: {how}"

    def stop(self) -> None:
        """Stop every worker: one stop message each, then terminate and kill what is left, each wait bounded."""
        live = [p for p in self.procs if p is not None]
        if self.take.acquire(timeout=LOCK_WAIT_S):  # chunks still queued are nobody's now: out of the pipe
            try:
                while self._task_r.poll():
                    self._task_r.recv()
            except (EOFError, OSError):
                pass
            finally:
                self.take.release()
        try:
            os.set_blocking(self.tasks.fileno(), False)  # a full pipe (workers stuck) must not hang close
            for _ in live:
                self.tasks.send(None)  # one stop per worker: each reads one and exits
        except (OSError, ValueError):
            pass  # full or gone: the workers are stopped below
        deadline = time.monotonic() + 2.0
        results = {c for c in self.results if c is not None}
        while (running := [p for p in live if p.exitcode is None]) and (left := deadline - time.monotonic()) > 0:
            # answers nobody will read are read and dropped: a worker blocked writing one (a full pipe: pickled
            # batches) reaches its stop message instead of waiting for the kill
            for conn in connection.wait([*results, *(p.sentinel for p in running)], left):
                if conn in results:
                    try:
                        conn.recv()
                    except (EOFError, OSError):
                        results.discard(conn)
        for proc in [*live, *self.lingering]:
            if proc.is_alive():
                proc.terminate()
                proc.join(1.0)
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        for conn in [self.tasks, self._task_r, *self.results]:
            if conn is not None:
                conn.close()
        for proc in [*live, *self.lingering]:
            try:
                proc.close()
            except ValueError:  # still running (uninterruptible sleep): the kernel ends it when it wakes
                pass
        self.procs, self.results, self.lingering = [None] * self.size, [None] * self.size, []
