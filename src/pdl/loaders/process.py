"""ParallelLoader: persistent worker processes, batches cut into chunks, a bounded window, in-order delivery.

The workers share one task pipe, so whichever worker is free takes the next chunk; each has its own result
pipe (pool.py). The parent blocks in ``connection.wait`` on the result pipes and the workers' sentinels together,
so a finished chunk and a dead worker both wake it at once, with no polling.

A stalled worker's work is redone (MapReduce's backup tasks): every chunk is a pure function of (seed, epoch,
indices), so any worker makes it bit for bit. When progress.py names a worker stalled (stopped, in
uninterruptible sleep, or finishing nothing while the others carry on), it is killed (SIGKILL), what it had sent
is taken, the chunk it held is sent again to the others, and a fresh worker takes its place (past
``REPLACEMENTS`` per worker, the loader goes on with fewer and says so). The worker is killed *before* its chunk
is made again, so no late copy can write into a ring slot reused meanwhile; a worker not seen dead (uninterruptible
sleep) keeps its batch's slot out of the ring until it is (pool.py says why this is enough). A chunk made again
whose new worker stalls too is not sent a third time: the work itself hangs, and the watchdog or `timeout` ends the
wait. The stall stays in ``stalls()``, so a measured round it touched is measured again.

Without `timeout`, no wait is longer than the watchdog's bound without a chunk finished (watchdog.py).
"""

from __future__ import annotations

import itertools
import math
import multiprocessing as mp
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.pipeline import Pipeline
from ..data.protocol import Dataset, check_picklable, sample_image
from ..errors import ConfigError, ImageReadError, LoaderTimeoutError, PdlWarning, SharedMemoryError, WorkerDiedError
from ..machine.host import default_start_method
from .base import Loader
from .batching import Batch
from .chunks import Part, WorkRate, compact, merged, merged_labels, split, stack
from .forking import forking
from .pool import Ended, Message, Pool
from .progress import Progress
from .ring import RingState, SlotRing, backing, fitting_slots, room, view
from .spec import LoaderSpec
from .watchdog import Watchdog
from .worker import FAILED

START_TIMEOUT_S = 60.0
STALL_CHECK_S = 1.0  # a wait for the workers looks at their progress this often
RAW_SAMPLES = 32  # images decoded up front to size the slots for --augment-in main
REPLACEMENTS = 2  # stalled workers replaced per worker of the pool, over the loader's life; past it, none
TRIES = 2  # copies of a chunk sent at most: a second stall on the same chunk is the work's, not a worker's


@dataclass
class _InFlight:
    """A batch dispatched as chunks: its slot, its parts as they land, how many chunks are still out."""

    slot: int | None
    batch_len: int
    parts: list[Part | None]
    outstanding: int
    abandoned: bool = False
    t_done: float = 0.0  # when its last chunk was finished (perf_counter: one clock for all processes)
    t_held: float = 0.0  # when the consumer held its data
    hold: Callable[[], bool] | None = None  # a killed worker that may write its slot is not yet seen dead


@dataclass
class _Chunk:
    """A chunk sent and not yet answered: its batch, its place in it, its message, how many copies were sent."""

    made: _InFlight
    part: int
    task: tuple[Any, ...]
    tries: int = 1


def _rows(raw: np.ndarray | None, made: _InFlight, part: Part, pipeline: Pipeline) -> np.ndarray:
    """A part's images: pickled, or its rows of the slot (copied: the batch is being stacked anyway)."""
    if part.images is not None or raw is None:
        pickled: np.ndarray = np.asarray(part.images, dtype=pipeline.output_dtype)
        return pickled
    shape = pipeline.output_shape
    assert shape is not None
    rows = view(raw, (made.batch_len, *shape), pipeline.output_dtype)[part.offset : part.offset + part.count]
    return np.array(rows)


def _raw_images(raw: np.ndarray | None, part: Part) -> list[np.ndarray]:
    if part.images is not None or raw is None:
        return list(part.images or [])
    return [view(raw, shape, np.uint8, off) for off, shape in part.raw_offsets]


class ParallelLoader(Loader):
    name = "process"

    min_workers = 1
    splits_batches = True
    prefetches_epochs = True
    use_shared_memory = True  # batches written into the shared-memory ring; False: pickled through the pipes

    def __init__(
        self,
        dataset: Dataset,
        pipeline: Pipeline,
        spec: LoaderSpec | None = None,
        *,
        shared_memory: bool | None = None,
        **options: Any,
    ) -> None:
        super().__init__(dataset, pipeline, spec, **options)
        self.start_method: str = self.spec.start_method or default_start_method()
        if self.start_method not in mp.get_all_start_methods():
            raise ConfigError(f"`start_method` must be one of {mp.get_all_start_methods()}. Found: {self.start_method!r}")
        if shared_memory is not None:
            self.use_shared_memory = shared_memory
        if not self.use_shared_memory:
            self.name = "process-pickle"  # measured side by side with "process": what the ring gains
        self._pool: Pool | None = None
        self._replaced = 0  # stalled workers replaced so far
        self.watchdog = Watchdog()  # without `timeout`: how long a wait without a chunk finished may last
        self._ring: SlotRing | None = None
        self._window = self.num_workers * self.spec.prefetch  # batches dispatched ahead; smaller if the ring is
        self._squeezed = False  # the ring was cut to fit a small room
        self._task_ids = itertools.count()
        self._rate = WorkRate()  # work per image, from the chunks made: sizes the chunks of cheap images
        self._pending: dict[int, _Chunk] = {}  # task → the chunk sent
        self._batches: dict[int, _InFlight] = {}  # this epoch's batches dispatched and not yet handed out
        self._stale: list[_InFlight] = []  # abandoned batches whose chunks are still in flight
        self._ahead: tuple[int, dict[int, _InFlight]] | None = None  # (epoch, its first batches) dispatched early
        self._started = False
        self._progress = Progress([])  # each worker's last finished chunk: a stalled one is named (progress.py)

    def _check_stalls(self) -> bool:
        """A worker newly stalled has its work redone (``_redo``) and is named (a warning); with `timeout`, one
        stalled past it is an error naming it. Returns whether chunks were taken or sent again meanwhile."""
        changed = False
        assert self._pool is not None
        for wid in self._pool.starting:  # a replacement still starting (spawn: seconds) has had nothing to take
            self._progress.last[wid] = self._progress.clock()
        for wid, said in self._progress.check_workers():
            changed = self._redo(wid, said) or changed
        if self.spec.timeout is not None:
            overdue = self._progress.overdue(self.spec.timeout)
            if overdue is not None:
                raise LoaderTimeoutError(f"{overdue}: raise `timeout`, or find what stopped that worker")
        return changed

    def _redo(self, wid: int, said: str) -> bool:
        """End stalled worker ``wid``, send the chunk it held to the others, and replace it (module docstring)."""
        pool = self._pool
        assert pool is not None
        held = pool.holding(wid)
        if held in self._pending and self._pending[held].tries >= TRIES:
            warnings.warn(PdlWarning(f"{said}; its chunk was made again once already: the work itself may hang"), stacklevel=4)
            return False
        lost = self._progress.idle_s(wid)
        ended = [pool.end(wid)]
        self._collect(ended[0].messages)  # sent before it was killed: done (the first copy wins)
        if not ended[0].lock_free:  # killed holding the task lock: a new pool, everything outstanding sent again
            ended += pool.restart()
            for more in ended[1:]:
                self._collect(more.messages)
            again = list(self._pending)
            replaced: int | None = pool.pid(wid)
            lines = [line for line in self._progress.take() if line != said]
            self._progress = Progress(pool.pids)
            self._progress.said = lines
        else:
            again = [held] if held in self._pending else []
            replaced = self._replace(wid)
        for end in ended:
            self._hold(end)
        for task in again:
            self._pending[task].tries += 1
            self._send(self._pending[task].task)
        if again:
            self._progress.working(len(self._pending))
        what = f"its chunk made again by another worker, {lost:.1f} s lost" if again else "it held no chunk: nothing lost"
        how = (
            f"ended (SIGKILL) and replaced by pid {replaced}"
            if replaced is not None
            else f"ended (SIGKILL); the loader goes on with {pool.alive()} worker(s) of {self.num_workers}"
        )
        line = f"{said}; {how}: {what}"
        self._progress.replace(wid, replaced, line)
        warnings.warn(PdlWarning(line), stacklevel=4)
        if not pool.alive():
            raise WorkerDiedError(f"every worker stalled and was ended, the last: {line}", exc_type="WorkerDied")
        return True

    def _replace(self, wid: int) -> int | None:
        """A fresh worker in place of ``wid``: its pid; None past ``REPLACEMENTS`` per worker (the loader goes on
        without it)."""
        assert self._pool is not None
        if self._replaced >= REPLACEMENTS * self.num_workers:
            return None
        self._replaced += 1
        with forking(self.start_method, self.pipeline):
            return self._pool.spawn(wid)

    def _hold(self, ended: Ended) -> None:
        """A killed worker not yet seen dead: the slot it may still write stays out of the ring until it is."""
        if ended.alive is not None and ended.held in self._pending:
            self._pending[ended.held].made.hold = ended.alive

    def stalls(self) -> tuple[str, ...]:
        """The workers named stalled since the last call (one line each: pid, state, for how long, what was done)."""
        if self._pool is not None and not self._closed:
            self._check_stalls()  # one named here has its work redone too, as in a wait
        return self._progress.take()

    @property
    def ring(self) -> RingState | None:
        """The shared-memory ring now: its name, its slots, how many are free and where it lives (None: batches
        are pickled instead)."""
        ring = self._ring
        return None if ring is None else RingState(ring.name, ring.n_slots, ring.free_slots, ring.where)

    @property
    def worker_pids(self) -> list[int]:
        return [] if self._pool is None else self._pool.pids

    def start(self) -> None:
        self._check_open()
        if self._started:
            return
        self._started = True
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        check_picklable(self.dataset, self.start_method)
        self._ring = self._make_ring()
        ring = self._ring and self._ring.handle
        self._pool = Pool(self.start_method, self.num_workers, (self.dataset, self.pipeline, self.spec, ring))
        self._pool.start()  # verify the pool really started before anything is timed
        self._progress = Progress(self.worker_pids)

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
        # the window, the batch asked for, the one the loop still holds (a for loop's), and a spare: a slot never
        # written costs no memory
        n_slots = self.num_workers * spec.prefetch + 3
        has = room(backing())  # read once: the slots are fitted to it and the ring checked against it
        fit = fitting_slots(n_slots, slot_bytes, has.free)
        try:
            ring = SlotRing(fit, slot_bytes, has)
        except SharedMemoryError as exc:
            warnings.warn(f"{exc}; falling back to pickling batches (slower)", PdlWarning, stacklevel=3)
            return None
        if fit < n_slots:  # a smaller window in the room there is, rather than every batch pickled
            # every slot but the one the loop holds is in flight (the window and the batch asked for); at least a
            # window of 1: with 2 slots, a batch dispatched while the loop still holds the last one finds no free
            # slot and is pickled (a loop that drops its batch first keeps them all zero-copy)
            self._window = max(1, fit - 2)
            self._squeezed = True  # its pages go back between epochs
            warnings.warn(
                f"shared memory: {n_slots} batch slots of {slot_bytes / 2**20:.0f} MiB do not fit {has.said()}; "
                f"using {fit} (a window of {self._window} batch(es) in flight instead of {n_slots - 3}); "
                f"{has.advice} for the full window",
                PdlWarning,
                stacklevel=3,
            )
        return ring

    def _raw_image_bytes(self) -> int:
        """Room per raw image when workers only read: 1.5× the largest of some sample images (each chunk gets
        its share of the slot, so a chunk of one image has only its own room)."""
        sizes = []
        for i in np.linspace(0, len(self.dataset) - 1, num=min(RAW_SAMPLES, len(self.dataset)), dtype=int):
            try:
                sizes.append(sample_image(self.dataset, int(i)).nbytes)
            except ImageReadError:
                continue
        return int(1.5 * max(sizes, default=500 * 375 * 3))

    # -- one epoch -------------------------------------------------------------------------------------------
    def _epoch(self, epoch: int) -> Iterator[Batch]:
        self._drain_stale()
        if self._squeezed and self._ring is not None:
            self._ring.give_back(False)
        plan = self.plan(epoch)
        window = self._window
        sent = self._adopt(epoch)
        following = self.following(epoch)
        ahead: dict[int, _InFlight] = {}
        finished = False
        try:
            for number in range(len(plan)):
                # batch ``number`` (asked for now) and, beyond it, the window: while the loop holds this batch,
                # ``window`` batches are in flight (torch's prefetch_factor × workers), never more than the ring holds
                while sent < len(plan) and sent - number <= window:
                    self._dispatch(epoch, sent, plan[sent], edge=sent in (0, len(plan) - 1))
                    sent += 1
                # this epoch all dispatched: the room left in the window starts the next one (its order is known)
                while sent == len(plan) and len(ahead) < len(following) and sent - number + len(ahead) <= window:
                    n = len(ahead)
                    self._dispatch(epoch + 1, n, following[n], edge=n in (0, len(following) - 1), into=ahead)
                t0 = time.perf_counter()
                deadline = None if self.spec.timeout is None else time.monotonic() + self.spec.timeout
                made = self._batches[number]
                while made.outstanding:
                    self._collect(self._receive(deadline, f"batch {number} of epoch {epoch}"))
                del self._batches[number]
                batch = self._unpack(made, epoch)
                self.stats.wait_s.append(time.perf_counter() - t0)
                if made.t_done >= t0:  # finished while we waited: the time to get it is the hand-off
                    # (until its data was in hand, before any augmenting here; the clock is system-wide)
                    self.stats.handoff_s.append(made.t_held - made.t_done)
                self._check_stalls()  # one that stalled while the others carried on
                yield batch
                del batch  # the caller may drop it before asking for the next: let its slot go then
            finished = True
        finally:
            self._abandon(self._batches)  # never handed out: an early break
            self._batches = {}
            if finished and ahead:
                self._ahead = (epoch + 1, ahead)  # the next epoch adopts them; a break wastes them (the window at most)
            else:
                self._abandon(ahead)
            if self._squeezed and self._ring is not None:
                self._ring.give_back(True)

    def _adopt(self, epoch: int) -> int:
        """The batches of ``epoch`` dispatched during the last one, taken over, or dropped (``adoptable``).
        Returns how many are dispatched already."""
        if self._ahead is None:
            return 0
        (made_for, batches), self._ahead = self._ahead, None
        if not self.adoptable(made_for, epoch):
            self._abandon(batches)
            return 0
        self._batches.update(batches)
        return len(batches)

    def _abandon(self, batches: dict[int, _InFlight]) -> None:
        for made in batches.values():
            made.abandoned = True
            if made.outstanding:
                self._stale.append(made)  # chunks still in flight write into its slot: released when they land
            else:
                self._release(made)

    def settle(self) -> None:
        """Wait for the chunks of the next epoch's batches dispatched ahead (kept for it, not dropped)."""
        if self._ahead is None or self._closed:
            return
        deadline = time.monotonic() + (self.spec.timeout or START_TIMEOUT_S)
        while any(made.outstanding for made in self._ahead[1].values()):
            self._collect(self._receive(deadline, "the next epoch's first batches"))

    def _dispatch(
        self, epoch: int, number: int, indices: np.ndarray, edge: bool, into: dict[int, _InFlight] | None = None
    ) -> _InFlight:
        """Cut the batch into chunks, queued in order on the shared pipe: the first free worker takes each."""
        slot = self._ring.acquire() if self._ring else None  # None: every slot is held by batches the caller kept
        offsets = split(len(indices), self.num_workers, self.spec.chunk_size, edge, self._rate.per_image_s)
        made = _InFlight(slot, len(indices), [None] * len(offsets), len(offsets))
        (self._batches if into is None else into)[number] = made
        for part, (offset, count) in enumerate(offsets):
            task = next(self._task_ids)
            chunk = indices[offset : offset + count].tolist()  # a list of ints: a few bytes a message, not an array's
            self._pending[task] = _Chunk(made, part, (task, epoch, chunk, slot, offset, len(indices)))
            self._progress.working(len(self._pending))
            self._send(self._pending[task].task)
        return made

    def _send(self, task: tuple[Any, ...]) -> None:
        assert self._pool is not None
        try:
            self._pool.send(task)
        except OSError:  # no worker reads the pipe any more: say which died and how
            self._any_died()

    def _collect(self, messages: list[Message]) -> None:
        for kind, wid, task, payload in messages:
            chunk = self._pending.pop(task, None)
            if chunk is None:
                continue  # a late copy of a chunk made again: the first copy won
            made, part = chunk.made, chunk.part
            if not self._pending:
                self._progress.idle()
            made.outstanding -= 1
            if made.abandoned:
                if not made.outstanding:
                    self._release(made)  # no chunk writes into its slot any more
                continue
            if kind == FAILED:
                raise payload
            done, t_start, t_done = payload
            self._progress.done(wid, t_done - t_start, len(self._pending))
            self.watchdog.saw(t_done - t_start)
            made.parts[part] = done
            self._rate.add(done)
            made.t_done = max(made.t_done, t_done)
            self.stats.worker_did(wid, t_start, t_done)

    def _release(self, made: _InFlight) -> None:
        if made.slot is not None and self._ring is not None:
            self._ring.release(made.slot, made.hold)
            made.slot = None

    def _drain_stale(self) -> None:
        while any(made.outstanding for made in self._stale):
            self._collect(self._receive(time.monotonic() + START_TIMEOUT_S, "an abandoned batch"))
        self._stale.clear()

    def _unpack(self, made: _InFlight, epoch: int) -> Batch:
        parts = [p for p in made.parts if p is not None]
        indices, skipped, times = merged(parts)
        self.stats.stages.append(times)
        pickled = any(p.images is not None for p in parts)
        raw = self._ring.lease(made.slot, made.hold) if made.slot is not None and self._ring is not None else None
        made.slot = None  # the lease gives it back once the batch is dropped
        images: Any
        if self.spec.augment_in == "workers":
            if raw is None or pickled:  # no ring, no free slot, or the pipeline's output size unknown
                images = stack([_rows(raw, made, p, self.pipeline) for p in parts], self.pipeline)
                self.stats.copied_batches += 1
            else:
                shape, dtype = self.pipeline.output_shape, self.pipeline.output_dtype
                images = compact(view(raw, (made.batch_len, *shape), dtype), parts)  # type: ignore[misc]
        else:
            if pickled:
                self.stats.copied_batches += 1  # raw images too large for their share of the slot, or no slot
            images = [im for p in parts for im in _raw_images(raw, p)]
        made.t_held = time.perf_counter()
        if self.spec.augment_in == "main":
            images = self._augment_here(images, indices, epoch, times)
        return self._to_batch(images, indices, skipped, merged_labels(parts))

    # -- receiving -------------------------------------------------------------------------------------------
    def _receive(self, deadline: float | None, waiting_for: str) -> list[Message]:
        """Block until at least one chunk's answer arrives: a dead worker raises, a passed deadline (`timeout`) or,
        without one, the watchdog's bound raises. Returns none when a stalled worker's work was redone meanwhile
        (the caller looks again)."""
        assert self._pool is not None
        bound = None if self.spec.timeout is not None else time.monotonic() + self.watchdog.bound_s
        while True:  # in slices: a worker that stops making progress meanwhile is named as soon as it shows
            end = min(d for d in (deadline, bound, math.inf) if d is not None)
            messages, dead = self._pool.receive(min(STALL_CHECK_S, max(0.0, end - time.monotonic())))
            if messages:
                return messages
            for wid in dead:
                self._died(wid)
            if self._check_stalls():
                return []
            now = time.monotonic()
            stalled = "; ".join(self._progress.named.values())
            if deadline is not None and now >= deadline:
                raise LoaderTimeoutError(
                    f"no message from the workers within the timeout while waiting for {waiting_for}; "
                    + (f"{stalled}: " if stalled else "a worker may be stuck (a transform that never returns?): ")
                    + "raise `timeout` or check the pipeline"
                    + (" and what stopped that worker" if stalled else "")
                )
            if bound is not None and now >= bound:
                raise self.watchdog.expired(f"the {self.name} loader", waiting_for, "chunk", stalled)

    def _any_died(self) -> None:
        assert self._pool is not None
        for wid, proc in enumerate(self._pool.procs):
            if proc is not None and not proc.is_alive():
                self._died(wid)
        raise WorkerDiedError("the workers stopped reading their tasks", exc_type="WorkerDied")

    def _died(self, wid: int) -> None:
        assert self._pool is not None
        raise WorkerDiedError(self._pool.died(wid), exc_type="WorkerDied")

    # -- shutdown --------------------------------------------------------------------------------------------
    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.stop()
        if self._ring is not None:
            self._ring.close()
        self._pending.clear()
        self._batches.clear()
        self._stale.clear()


class PickledParallelLoader(ParallelLoader):
    """ParallelLoader with batches pickled through its pipes instead of the ring: measured beside it, what the
    ring gains."""

    use_shared_memory = False
