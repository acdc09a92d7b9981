"""`pdl profile --decoders`: each JPEG decoder on the same files, in the same interleaved rounds, and what it
changes in the pixels; with ``--loader``, that loader's epochs with each decoder, interleaved too.

Decoding alone: the files' bytes are read once, then every round decodes all of them with each decoder in turn
(the order flipping each round, so drift hits every decoder alike), at full scale and at the scale
``--reduce-decode`` would use. The mean absolute difference is taken against OpenCV's output at the same scale.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ..data.codec import decode_scale, is_jpeg, read_bytes
from ..data.decoders import DEFAULT, decode_with, missing
from ..data.folder import ImageFolder
from ..data.pipeline import Pipeline
from ..errors import ImageReadError
from ..loaders import LoaderSpec
from ..stats.rounds import median
from .outcomes import DecoderSpeed
from .point import Point
from .step import Clock
from .timing import Progress, Workload, side_by_side

Jpeg = tuple[str, np.ndarray]  # (path, bytes)


def jpegs(dataset: ImageFolder) -> list[Jpeg]:
    """The dataset's readable JPEGs, their bytes read (the other formats decode through OpenCV whatever is chosen)."""
    found = []
    for i in range(len(dataset)):
        path = dataset.path(i)
        try:
            data = read_bytes(path)
        except ImageReadError:
            continue
        if is_jpeg(data):
            found.append((path, data))
    return found


def _decode_all(name: str, files: Sequence[Jpeg], need: tuple[int, int] | None, clock: Clock) -> float:
    t0 = clock()
    for path, data in files:
        decode_with(name, path, data, need)
    return clock() - t0


def _mad(name: str, files: Sequence[Jpeg], need: tuple[int, int] | None) -> float:
    """Mean absolute difference from OpenCV's output at the same scale, over every pixel of ``files``."""
    total, count = 0.0, 0
    for path, data in files:
        a, b = decode_with(DEFAULT, path, data, need), decode_with(name, path, data, need)
        if a.shape != b.shape:  # never seen; counted as wholly different rather than hidden
            total, count = total + 255.0 * a.size, count + a.size
            continue
        total += float(np.abs(a.astype(np.int16) - b.astype(np.int16)).sum())
        count += a.size
    return total / count if count else 0.0


def decoder_speeds(
    files: Sequence[Jpeg],
    names: Sequence[str],
    need: tuple[int, int] | None,
    repeats: int,
    clock: Clock = time.perf_counter,
    progress: Progress | None = None,
) -> tuple[DecoderSpeed, ...]:
    """One row per name, in order; a decoder not installed is a row that says how to install it."""
    tick = progress or (lambda _msg: None)
    ready = [n for n in names if missing(n) is None]
    reducible = [f for f in files if need is not None and decode_scale(f[1], need) > 1]
    scales = [(None, files), *([(need, files)] if reducible else [])]
    seconds: dict[tuple[str, bool], list[float]] = {(n, bool(s)): [] for n in ready for s, _ in scales}
    for name in ready:  # warm-up: each library loaded, its first-call costs paid
        _decode_all(name, files[:2], None, clock)
    for r in range(repeats):
        for name in ready if r % 2 == 0 else reversed(ready):
            for scale, part in scales:
                seconds[(name, scale is not None)].append(_decode_all(name, part, scale, clock))
        tick(f"decoders round {r + 1}")
    rows = []
    for name in names:
        if name not in ready:
            rows.append(DecoderSpeed(name, len(files), None, missing=missing(name)))
            continue
        full, reduced = median(seconds[(name, False)]), median(seconds[(name, True)]) if reducible else None
        rows.append(
            DecoderSpeed(
                decoder=name,
                jpegs=len(files),
                images_per_s=len(files) / full if full > 0 else 0.0,
                reduced_per_s=len(files) / reduced if reduced else None,
                reduced=len(reducible),
                mad=_mad(name, files, None),
                mad_reduced=_mad(name, reducible, need) if reducible else None,
                rates=tuple(len(files) / s if s > 0 else 0.0 for s in seconds[(name, False)]),
            )
        )
    return tuple(rows)


def loader_per_decoder(
    dataset: ImageFolder,
    pipeline: Pipeline,
    loader: str,
    spec: LoaderSpec,
    names: Sequence[str],
    repeats: int,
    clock: Clock = time.perf_counter,
    progress: Progress | None = None,
) -> list[Point]:
    """``loader`` over the same files with each installed decoder, OpenCV first (the baseline of every ratio),
    all in the same interleaved rounds (``timing.interleaved``): one point per decoder."""
    tick = progress or (lambda _msg: None)
    order = [DEFAULT, *[n for n in names if n != DEFAULT and missing(n) is None]]
    sides = [(Workload(dataset.read_as(decoder=n), pipeline, spec, (loader,), repeats), loader) for n in order]
    return side_by_side(sides, [f"{loader} {n}" for n in order], clock, tick)
