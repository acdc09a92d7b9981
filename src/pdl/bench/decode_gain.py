"""`pdl decode`: what ``reduce_decode`` gains on these images, per pipeline, and what it changes in the output.

For each pipeline, one loader kind over two ``ImageFolder``s of the same files (full decoding, and JPEGs decoded
at 1/2, 1/4 or 1/8 scale where the first resize keeps no more), warmed up and timed in the same interleaved
rounds (``timing.side_by_side``), so the gain is a ratio measured round by round. Then, untimed: how many of the
first epoch's images were decoded reduced and at which scale, and the mean absolute difference between the
pipeline's outputs from full and from reduced decoding, with the same per-image seeds (``make_batch``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ..data.codec import decode_scale, is_jpeg, read_bytes
from ..data.folder import ImageFolder
from ..data.pipeline import Pipeline
from ..errors import ImageReadError
from ..loaders import LoaderSpec
from ..loaders.batching import epoch_plan, make_batch
from .outcomes import Decoded
from .point import Point
from .records import ResultSet
from .runner import Plan, start_results
from .step import Clock
from .timing import Progress, Workload, side_by_side

SCALES = (2, 4, 8)  # the reduced decode factors libjpeg offers through OpenCV


@dataclass(frozen=True)
class Census:
    """How the first epoch's images decode with ``reduce_decode`` on: reduced (by factor) or at full size."""

    need: tuple[int, int] | None
    """(height, width) the pipeline's first transform reduces every image to; None: no reduced decode possible."""
    scales: tuple[tuple[int, int], ...]
    """(factor, images) for each factor in SCALES."""
    full: int
    """Images decoded at full size: not a JPEG (PNG, WebP, ...), or a JPEG too small to halve."""
    jpegs: int

    @property
    def reduced(self) -> int:
        return sum(n for _, n in self.scales)

    def why_none(self) -> str | None:
        """Why no image was decoded reduced, in words; None when some were."""
        if self.reduced:
            return None
        if self.need is None:
            return "its first transform is not a fixed Resize or SmallestMaxSize"
        if not self.jpegs:
            return "no JPEG among the images"
        h, w = self.need
        return f"every JPEG is too small: half its size would be below the first resize, {h}×{w}"


@dataclass(frozen=True)
class Difference:
    """Mean absolute difference between the pipeline's outputs from full and from reduced decoding."""

    mad: float
    """In the output's own units (0–255 for uint8; a normalised float pipeline's units otherwise); 0 if none."""
    images: int
    """Images compared: those decoded reduced."""
    dtype: str


@dataclass(frozen=True)
class DecodeGain:
    """One pipeline: both sides' points (the reduced one's speed-up over full is the gain), census, difference."""

    pipeline: str
    loader: str
    full: Point
    reduced: Point
    census: Census
    difference: Difference

    def summary(self) -> Decoded:
        """What a results file keeps of it (``ResultSet.decoded``); the report reads it back."""
        c, d = self.census, self.difference
        return Decoded(
            pipeline=self.pipeline,
            loader=self.loader,
            need=c.need,
            scales={str(f): n for f, n in c.scales},
            reduced=c.reduced,
            full=c.full,
            jpegs=c.jpegs,
            why_none=c.why_none(),
            mad=d.mad,
            mad_images=d.images,
            output_dtype=d.dtype,
        )


def first_epoch(dataset: ImageFolder, spec: LoaderSpec) -> np.ndarray:
    """The indices the first epoch reads (this rank's share), in order."""
    batches = epoch_plan(len(dataset), spec, 0)
    return np.concatenate(batches) if batches else np.empty(0, dtype=np.int64)


def factors(dataset: ImageFolder, indices: np.ndarray, need: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Per image, from its header (no decoding): the factor ``reduce_decode`` decodes it at (0: unreadable, which
    the loaders fail on or skip), and whether it is a JPEG."""
    scale = np.zeros(len(indices), dtype=np.int64)
    jpeg = np.zeros(len(indices), dtype=bool)
    for k, i in enumerate(indices):
        try:
            data = read_bytes(dataset.path(int(i)))
        except ImageReadError:
            continue
        scale[k], jpeg[k] = decode_scale(data, need), is_jpeg(data)
    return scale, jpeg


def census(need: tuple[int, int] | None, scale: np.ndarray, jpeg: np.ndarray) -> Census:
    return Census(need, tuple((f, int((scale == f).sum())) for f in SCALES), int((scale == 1).sum()), int(jpeg.sum()))


def difference(full: ImageFolder, reduced: ImageFolder, pipeline: Pipeline, indices: np.ndarray, spec: LoaderSpec) -> Difference:
    """MAD over ``indices`` (the reduced images), a batch at a time, each image with its epoch-0 seed on both sides."""
    total, count, dtype = 0.0, 0, pipeline.output_dtype
    for start in range(0, len(indices), spec.batch_size):
        part = indices[start : start + spec.batch_size]
        a, b = (make_batch(ds, pipeline, part, 0, spec) for ds in (full, reduced))
        keep = np.intersect1d(a.indices, b.indices)  # under --on-error skip, only what both sides made
        x, y = (np.asarray(m.images)[np.isin(m.indices, keep)] for m in (a, b))
        total += float(np.abs(x.astype(np.float64) - y.astype(np.float64)).sum())
        count += x.size
        dtype = str(x.dtype)
    return Difference(total / count if count else 0.0, len(indices), dtype)


def measure_gain(
    dataset: ImageFolder,
    pipeline: Pipeline,
    loader: str,
    spec: LoaderSpec,
    repeats: int,
    clock: Clock = time.perf_counter,
    progress: Progress | None = None,
) -> DecodeGain:
    """Time ``loader`` on full and on reduced decoding in the same interleaved rounds; then census and difference."""
    tick = progress or (lambda _msg: None)
    sides = (dataset.read_as(reduce_decode=False), dataset.read_as(reduce_decode=True))
    works = [(Workload(ds, pipeline, spec, (loader,), repeats), loader) for ds in sides]
    full, reduced = side_by_side(works, [f"{pipeline.name} full", f"{pipeline.name} reduced"], clock, tick)
    indices = first_epoch(dataset, spec)
    scale, jpeg = factors(dataset, indices, pipeline.min_input_size)
    diff = difference(sides[0], sides[1], pipeline, indices[scale > 1], spec)
    tick(f"{pipeline.name} difference")
    return DecodeGain(pipeline.name, loader, full, reduced, census(pipeline.min_input_size, scale, jpeg), diff)


def epochs_per_pipeline(repeats: int) -> int:
    """Progress ticks per pipeline: two warm-ups, two epochs a round, the difference."""
    return 2 * repeats + 3


def decode_gains(
    plan: Plan, on_save: Callable[[ResultSet], None], progress: Progress | None = None
) -> tuple[ResultSet, tuple[DecodeGain, ...]]:
    """Every pipeline of ``plan`` with its one loader; saved after each (an interruption keeps what was done)."""
    exp = plan.exp
    [loader] = exp.loaders
    spec = exp.spec(exp.batch_sizes[0], exp.workers[0])
    results = start_results(plan, "decode")
    gains: list[DecodeGain] = []
    for pipeline in plan.pipelines:
        gain = measure_gain(plan.dataset, pipeline, loader, spec, exp.rounds, progress=progress)
        gains.append(gain)
        decoded = tuple(g.summary() for g in gains)
        results = replace(results, points=(*results.points, gain.full, gain.reduced), decoded=decoded)
        on_save(results)
    results = replace(results, complete=True)
    on_save(results)
    return results, tuple(gains)
