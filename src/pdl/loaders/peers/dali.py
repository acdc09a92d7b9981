"""DaliLoader: NVIDIA DALI's own C++ operators on its CPU backend (``device_id=None``), running a pipeline
*equivalent* to pdl's: ``fn.external_source`` (the files' bytes, in pdl's order) → ``fn.decoders.image(device="cpu")``
→ ``fn.resize`` / ``fn.crop`` / ``fn.flip``. Needs ``pip install 'pdl[dali]'``; no GPU.

As DALI runs it (``nvidia/dali/pipeline.py``): ``Pipeline(batch_size, num_threads, device_id=None, seed,
prefetch_queue_depth)``; the operators run a batch at a time on DALI's own thread pool of ``num_threads`` (here
the worker count), with ``prefetch_queue_depth`` batches made ahead; ``run()`` hands out one batch; the source is
an iterable whose ``StopIteration`` ends the epoch (``cycle="raise"``), and ``reset()`` starts the next. Its
threads end when the pipeline is deleted.

Its batches cannot be pdl's: DALI decodes with its own JPEG decoder, resizes with its own linear filter and draws
its own crop windows and flips (from ``seed``). The tables say "equivalent", never "yes"; how close the pixels
are (the same image resized, then cropped at the same window) is in docs/peers.md. Only transforms with a DALI
operator of the same meaning run: ``Resize`` (linear, no antialiasing, as OpenCV's INTER_LINEAR), ``RandomCrop``,
``CenterCrop``, ``HorizontalFlip``, ``VerticalFlip``; any other is refused in one line naming it, before anything
starts. Each wait for a batch is bounded by the timeout; ``close()`` deletes the pipeline.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
from nvidia.dali import fn, types
from nvidia.dali.pipeline import Pipeline as DaliPipeline

from ...data.pipeline import Pipeline
from ...data.protocol import Dataset, describe
from ...errors import ConfigError, WorkerError
from ..base import Loader
from ..batching import Batch, StageTimes
from ..spec import LoaderSpec
from .common import stop_waiter, version, wait_for

EQUIVALENT = ("Resize", "RandomCrop", "CenterCrop", "HorizontalFlip", "VerticalFlip")
LINEAR = 1  # OpenCV's INTER_LINEAR, albumentations' default interpolation


def dali_steps(pipeline: Pipeline) -> list[tuple[str, dict[str, Any]]]:
    """The pipeline's transforms as (kind, parameters), each with a DALI equivalent; else one ConfigError naming
    the first transform without one."""
    top = pipeline.spec.get("transform", {})
    steps = []
    if str(top.get("__class_fullname__", "")).rsplit(".", 1)[-1] != "Compose" or top.get("p", 1.0) != 1.0:
        _refuse(pipeline, "a pipeline that is not one Compose applied always")
    for t in top.get("transforms") or []:
        kind = str(t.get("__class_fullname__", "?")).rsplit(".", 1)[-1]
        if kind not in EQUIVALENT:
            _refuse(pipeline, kind)
        if kind in ("Resize", "RandomCrop", "CenterCrop") and t.get("p", 1.0) != 1.0:
            _refuse(pipeline, f"{kind} with p={t.get('p')}")
        if kind == "Resize" and (t.get("interpolation", LINEAR) != LINEAR or t.get("area_for_downscale")):
            _refuse(pipeline, f"Resize with interpolation {t.get('interpolation')}")
        if kind.endswith("Crop") and t.get("pad_if_needed"):
            _refuse(pipeline, f"{kind} with pad_if_needed")
        steps.append((kind, t))
    return steps


def _refuse(pipeline: Pipeline, what: str) -> None:
    raise ConfigError(
        f"the dali loader has no DALI equivalent of {what} (pipeline '{pipeline.name}'); it runs "
        f"{', '.join(EQUIVALENT)}: choose a pipeline of those (the shipped 'light' is one)"
    )


class _Files:
    """DALI's source: the epoch's batches as lists of encoded files (read here, in pdl's order)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.plan: list[np.ndarray] = []
        self.next = 0

    def __iter__(self) -> _Files:
        self.next = 0
        return self

    def __next__(self) -> list[np.ndarray]:
        if self.next >= len(self.plan):
            raise StopIteration
        indices, self.next = self.plan[self.next], self.next + 1
        return [np.fromfile(self.dataset.path(int(i)), dtype=np.uint8) for i in indices]  # type: ignore[attr-defined]


class DaliLoader(Loader):
    name = "dali"
    min_workers = 1

    def __init__(self, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec | None = None, **options: Any) -> None:
        super().__init__(dataset, pipeline, spec, **options)
        self.steps = dali_steps(pipeline)
        if not hasattr(dataset, "path"):
            raise ConfigError("the dali loader reads image files: it needs an ImageFolder or a file list, not a dataset class")
        if getattr(dataset, "reduce_decode", False):
            raise ConfigError("the dali loader decodes with DALI's own decoder: reduce_decode does not apply; leave it off")
        if self.spec.on_error == "skip" or self.spec.augment_in == "main":
            raise ConfigError("the dali loader runs DALI's pipeline whole: on_error 'skip' and augment_in 'main' do not apply")
        self.version = version("nvidia-dali-cuda120")
        self._files = _Files(dataset)
        self._pipe: Any = None
        self._current: Any = None  # the pipeline of the epoch being iterated, until it ends or is left
        self._waiter: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._check_open()
        if self._waiter is None:
            self._waiter = ThreadPoolExecutor(1, thread_name_prefix="pdl-dali")

    def _build(self) -> Any:
        spec = self.spec
        pipe = DaliPipeline(
            batch_size=spec.batch_size,
            num_threads=self.num_workers,
            device_id=None,
            seed=spec.seed,
            prefetch_queue_depth=max(1, spec.prefetch),
        )
        with pipe:
            encoded = fn.external_source(source=self._files, batch=True, cycle="raise")
            images = fn.decoders.image(encoded, device="cpu", output_type=types.RGB)
            for kind, t in self.steps:
                if kind == "Resize":
                    images = fn.resize(
                        images, resize_x=t["width"], resize_y=t["height"], interp_type=types.INTERP_LINEAR, antialias=False
                    )
                elif kind == "RandomCrop":
                    x, y = fn.random.uniform(range=(0.0, 1.0)), fn.random.uniform(range=(0.0, 1.0))
                    images = fn.crop(images, crop=(t["height"], t["width"]), crop_pos_x=x, crop_pos_y=y)
                elif kind == "CenterCrop":
                    images = fn.crop(images, crop=(t["height"], t["width"]))
                elif kind == "HorizontalFlip":
                    images = fn.flip(images, horizontal=fn.random.coin_flip(probability=t.get("p", 0.5)), vertical=0)
                else:  # VerticalFlip
                    images = fn.flip(images, horizontal=0, vertical=fn.random.coin_flip(probability=t.get("p", 0.5)))
            pipe.set_outputs(images)
        pipe.build()
        return pipe

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        plan = self.plan(epoch)
        if not plan:
            return
        self.start()
        if self._current is not None:  # an epoch left unfinished, its iterator still held: DALI starts anew
            self._drop()
        self._files.plan = plan  # read when DALI (re)starts its source: after this, at build or reset
        if self._pipe is None:
            self._pipe = self._call(self._build)
        else:
            self._call(self._pipe.reset)
        pipe = self._current = self._pipe
        finished = False
        try:
            for indices in plan:
                t0 = time.perf_counter()
                images = self._call(self._batch)
                times = StageTimes(augment=time.perf_counter() - t0)  # decode and augment together, in DALI
                self.stats.wait_s.append(times.augment)
                self.stats.stages.append(times)
                yield self._to_batch(images, indices, [])
            finished = True
        finally:
            if self._current is pipe:  # not an epoch another one replaced
                self._current = None
                if finished:
                    self._call(self._end_epoch)
                else:  # left early: DALI cannot start an epoch from the middle of another; a new pipeline will
                    self._drop()

    def _batch(self) -> np.ndarray:
        assert self._pipe is not None
        (images,) = self._pipe.run()
        return np.asarray(images.as_array())  # a copy: DALI reuses its output buffers

    def _end_epoch(self) -> None:
        """Take the source's StopIteration (the epoch's end, already met while prefetching)."""
        assert self._pipe is not None
        try:
            self._pipe.run()
        except StopIteration:
            return
        raise WorkerError(f"{self.name}: DALI made more batches than the epoch has", exc_type="RuntimeError")

    def _call(self, fn_: Any) -> Any:
        """``fn_()`` on the loader's one DALI thread, within the timeout; DALI's errors as pdl's, in one line."""
        assert self._waiter is not None
        pending: Future[Any] = self._waiter.submit(fn_)

        def ready(seconds: float) -> bool:
            with contextlib.suppress(TimeoutError):
                pending.exception(seconds)
            return pending.done()

        wait_for(ready, self.name, self.spec, list)
        try:
            return pending.result()
        except StopIteration:
            raise WorkerError(f"{self.name}: the epoch ended early in DALI", exc_type="StopIteration") from None
        except RuntimeError as exc:  # a file DALI could not decode, and the like
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            where: Any = self._files.plan[self._files.next - 1] if self._files.next else []
            paths = ", ".join(describe(self.dataset, int(i)) for i in where[:3])
            raise WorkerError(f"{self.name}: {first} (in a batch of {paths}…)", exc_type="RuntimeError") from None

    def _drop(self) -> None:
        """Delete the pipeline: DALI's threads end with it."""
        pipe, self._pipe, self._current = self._pipe, None, None
        if pipe is not None and self._waiter is not None:
            with contextlib.suppress(BaseException):
                self._waiter.submit(lambda: None).result(timeout=self.spec.timeout or 120)  # no call of it still running
        del pipe
        gc.collect()

    def _shutdown(self) -> None:
        self._drop()
        if self._waiter is not None:
            stop_waiter(self._waiter)
            self._waiter = None
