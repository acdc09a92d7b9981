"""The worker process: a module-level loop that blocks on its task pipe and writes batches into the ring.

Imported by the forkserver before any worker forks (preload), so a new worker costs a fork, not an import.
"""

from __future__ import annotations

import os
import signal
import time
from multiprocessing import connection, parent_process
from typing import Any

from .._env import keep_freed_memory, limit_threads
from ..dataset import ImageFolder
from ..pipeline import Pipeline
from .base import LoaderSpec, make_batch, worker_error
from .shm import attach, slot_array

# message kinds, worker → parent
READY, DONE, FAILED = "ready", "done", "failed"


def worker_loop(
    worker_id: int,
    dataset: ImageFolder,
    pipeline: Pipeline,
    spec: LoaderSpec,
    tasks: connection.Connection,
    results: connection.Connection,
    shm_name: str | None,
    slot_bytes: int | None,
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent shuts us down
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the CLI's handler, inherited through fork: just stop
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # blocked while forking
    limit_threads()
    keep_freed_memory()
    buf = attach(shm_name) if shm_name else None
    augment = spec.augment_in == "workers"
    if augment:
        pipeline.compose  # build the albumentations objects once, before the first task  # noqa: B018
    results.send((READY, worker_id, os.getpid()))
    parent = parent_process()
    watch = [tasks] if parent is None else [tasks, parent.sentinel]
    while True:
        ready = connection.wait(watch)  # blocks: no polling; wakes when a task comes or the parent dies
        if tasks not in ready:
            return
        try:
            task = tasks.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        task_id, epoch, indices, slot = task
        try:
            payload = _run(dataset, pipeline, spec, epoch, indices, slot, buf, slot_bytes or 0, augment)
            results.send((DONE, task_id, payload))
        except Exception as exc:
            results.send((FAILED, task_id, worker_error(exc, getattr(exc, "path", None), "reading")))


def _run(
    dataset: ImageFolder,
    pipeline: Pipeline,
    spec: LoaderSpec,
    epoch: int,
    indices: Any,
    slot: int | None,
    buf: Any,
    slot_bytes: int,
    augment: bool,
) -> dict[str, Any]:
    if augment:
        shape = pipeline.output_shape
        out = None
        if slot is not None and shape is not None:
            out = slot_array(buf, slot, slot_bytes, (len(indices), *shape), pipeline.output_dtype)
        made = make_batch(dataset, pipeline, indices, epoch, spec, out=out)
        payload: dict[str, Any] = {"indices": made.indices, "skipped": made.skipped, "times": made.times}
        if out is not None:
            payload.update(slot=slot, shape=made.images.shape, dtype=made.images.dtype.str)
        else:
            payload.update(slot=None, images=made.images)
    else:  # the report's split: workers only read; raw images of any size, packed one after another
        made = make_batch(dataset, pipeline, indices, epoch, spec, augment=False)
        payload = {"indices": made.indices, "skipped": made.skipped, "times": made.times}
        t0 = time.perf_counter()
        total = sum(im.nbytes for im in made.images)
        if slot is not None and total <= slot_bytes:
            offsets, at = [], 0
            for im in made.images:
                slot_array(buf, slot, slot_bytes, (slot_bytes,), "u1")[at : at + im.nbytes] = im.reshape(-1)
                offsets.append((at, im.shape))
                at += im.nbytes
            payload.update(slot=slot, offsets=offsets)
        else:
            payload.update(slot=None, images=made.images)
        made.times.collate += time.perf_counter() - t0
    payload["t_done"] = time.perf_counter()
    return payload
