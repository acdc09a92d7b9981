"""The worker process: a module-level loop that blocks on the shared task pipe and writes chunks into the ring.

Every worker reads the one task pipe, so a chunk goes to whichever worker is free first (a pull, not a guess
made at dispatch time); a lock makes one worker read a message whole. The task a worker took is written into
``held`` (a shared array, one entry per worker) before the lock is let go, and cleared once its answer is sent:
the parent can always say which chunk a worker holds, to make it again elsewhere if that worker stalls
(``pool.py``). Imported by the forkserver before any worker forks (preload), so a new worker costs a fork, not an
import.
"""

from __future__ import annotations

import os
import time
from multiprocessing import connection, parent_process
from typing import Any

import numpy as np

from .._env import keep_freed_memory
from ..data.pipeline import Pipeline
from ..data.protocol import Dataset
from ..errors import worker_error
from .batching import make_batch
from .chunks import Part
from .forking import worker_started
from .ring import RingHandle, attach, slot_array
from .spec import LoaderSpec

# message kinds, worker → parent
READY, DONE, FAILED = "ready", "done", "failed"


def worker_loop(
    worker_id: int,
    dataset: Dataset,
    pipeline: Pipeline,
    spec: LoaderSpec,
    tasks: connection.Connection,
    take: Any,
    results: connection.Connection,
    ring: RingHandle | None,
    held: Any = None,
) -> None:
    worker_started()
    keep_freed_memory()
    buf = attach(ring) if ring is not None else None
    slot_bytes = ring.slot_bytes if ring is not None else 0
    augment = spec.augment_in == "workers"
    if augment:
        pipeline.compose  # build the albumentations objects once, before the first task  # noqa: B018
    results.send((READY, worker_id, os.getpid()))
    parent = parent_process()
    watch: list[Any] = [tasks] if parent is None else [tasks, parent.sentinel]
    while True:
        ready = connection.wait(watch)  # blocks: no polling; wakes when a task comes or the parent dies
        if tasks not in ready:
            return
        task = _take(tasks, take, held, worker_id)
        if task is _TAKEN:
            continue
        if task is None:
            return
        task_id, epoch, listed, slot, offset, batch_len = task
        indices = np.asarray(listed, dtype=np.int64)
        t_start = time.perf_counter()
        try:
            part = _run(dataset, pipeline, spec, epoch, indices, slot, offset, batch_len, buf, slot_bytes, augment)
            results.send((DONE, task_id, (part, t_start, time.perf_counter())))
        except Exception as exc:
            results.send((FAILED, task_id, worker_error(exc, getattr(exc, "path", None), "reading")))
        if held is not None:
            held[worker_id] = NONE


_TAKEN = object()  # another worker read the task this one woke for
NONE = -1  # in ``held``: no task


def _take(tasks: connection.Connection, take: Any, held: Any, worker_id: int) -> Any:
    """The next task, if it is still there: every idle worker wakes when one arrives, one reads it (whole, under
    the lock, and notes it in ``held`` before letting go); None when the parent said stop or is gone."""
    with take:
        if not tasks.poll():
            return _TAKEN
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            return None
        if held is not None and task is not None:
            held[worker_id] = task[0]
        return task


def _run(
    dataset: Dataset,
    pipeline: Pipeline,
    spec: LoaderSpec,
    epoch: int,
    indices: np.ndarray,
    slot: int | None,
    offset: int,
    batch_len: int,
    buf: Any,
    slot_bytes: int,
    augment: bool,
) -> Part:
    """Make one chunk: rows ``offset`` on of a batch of ``batch_len`` images, written into ``slot`` when there is one."""
    if augment:
        shape, out = pipeline.output_shape, None
        if slot is not None and shape is not None:
            rows = slot_array(buf, slot, slot_bytes, (batch_len, *shape), pipeline.output_dtype)
            out = rows[offset : offset + len(indices)]
        made = make_batch(dataset, pipeline, indices, epoch, spec, out=out)
        part = Part(offset, made.indices, made.skipped, made.times, labels=made.labels)
        if out is None:
            part.images = made.images
        return part
    # the report's split: workers only read; raw images of any size, packed one after another into this
    # chunk's share of the slot's bytes
    made = make_batch(dataset, pipeline, indices, epoch, spec, augment=False)
    part = Part(offset, made.indices, made.skipped, made.times, labels=made.labels)
    t0 = time.perf_counter()
    lo, hi = slot_bytes * offset // batch_len, slot_bytes * (offset + len(indices)) // batch_len
    if slot is not None and sum(im.nbytes for im in made.images) <= hi - lo:
        flat = slot_array(buf, slot, slot_bytes, (slot_bytes,), "u1")
        at = lo
        for im in made.images:
            flat[at : at + im.nbytes] = im.reshape(-1)
            part.raw_offsets.append((at, im.shape))
            at += im.nbytes
    else:
        part.images = made.images
    made.times.collate += time.perf_counter() - t0
    return part
