"""The worker process on its own, over its pipes: the protocol ParallelLoader speaks, message by message."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pdl import ImageFolder, load_pipeline
from pdl.data.pipeline import Pipeline
from pdl.errors import WorkerError
from pdl.loaders import LoaderSpec
from pdl.loaders.batching import make_batch
from pdl.loaders.chunks import Part
from pdl.loaders.forking import forking
from pdl.loaders.worker import DONE, FAILED, READY, worker_loop

pytestmark = pytest.mark.timeout(60)


@contextmanager
def worker(ds: ImageFolder, pipeline: Pipeline, spec: LoaderSpec) -> Iterator[tuple[Any, Any, Any]]:
    """A forked worker without a ring: (process, its task pipe, its result pipe); killed if a test fails."""
    ctx = mp.get_context("fork")
    task_r, task_w = ctx.Pipe(duplex=False)
    res_r, res_w = ctx.Pipe(duplex=False)
    args = (0, ds, pipeline, spec, task_r, ctx.Lock(), res_w, None)
    proc = ctx.Process(target=worker_loop, args=args, daemon=True)
    with forking("fork", pipeline):  # as the loader forks: OpenCV's pool kept out of the child
        proc.start()
    task_r.close()
    res_w.close()
    try:
        yield proc, task_w, res_r
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
        task_w.close()
        res_r.close()


def test_a_worker_answers_ready_then_each_chunk_then_stops_on_none(images: Path) -> None:
    ds, light = ImageFolder(images), load_pipeline("light")
    spec = LoaderSpec(batch_size=4, num_workers=1)
    with worker(ds, light, spec) as (proc, tasks, results):
        assert results.poll(30)
        assert results.recv() == (READY, 0, proc.pid)
        indices = np.array([5, 2, 9])
        tasks.send((7, 1, indices[1:].tolist(), None, 1, 3))  # chunk of rows 1-2 of a 3-image batch, no slot: pickled back
        kind, task, (part, t_start, t_done) = results.recv()
        want = make_batch(ds, light, indices[1:], 1, spec)
        assert (kind, task) == (DONE, 7) and isinstance(part, Part) and part.offset == 1 and t_done >= t_start
        assert part.indices.tolist() == [2, 9] and np.array_equal(part.images, want.images)
        tasks.send(None)
        proc.join(10)
        assert proc.exitcode == 0


def test_a_failing_image_comes_back_as_failed_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "bad.jpg").write_bytes(b"not an image")
    with worker(ImageFolder(tmp_path), load_pipeline("light"), LoaderSpec(batch_size=1, num_workers=1)) as (proc, tasks, results):
        assert results.recv()[0] == READY
        tasks.send((1, 0, [0], None, 0, 1))
        kind, task, error = results.recv()
        assert (kind, task) == (FAILED, 1) and isinstance(error, WorkerError)
        assert error.path == str(folder / "bad.jpg") and "bad.jpg: cannot decode" in str(error)
        tasks.send(None)
        proc.join(10)
        assert proc.exitcode == 0
