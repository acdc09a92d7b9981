"""Work below the batch: a batch is cut into chunks of a few images that any free worker makes, each written
at its own rows of the batch's slot; the batch is whole when its last chunk lands.

Why: with one task per batch, the last batch of an epoch runs on one core while the others idle, uneven images
make uneven batches, a batch as large as the epoch runs on a single core, and the first batch costs a whole
batch-time. One message per chunk, not per image (the seed report's choice): a chunk of a few images is worth
its message.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.pipeline import Pipeline
from .batching import Produced, StageTimes

MAX_AUTO_CHUNK = 8  # images: ~10-50 ms of work per message with the shipped pipelines; the tail is one chunk
EDGE_CHUNKS = 16  # an epoch's first and last batches: at least this many chunks per worker (auto size): ``split``
TARGET_CHUNK_S = 0.005  # less work than this a chunk is mostly its two messages: cheap images go in bigger chunks


def chunk_size(batch_size: int, num_workers: int, requested: int = 0) -> int:
    """``requested``, or (0) at most MAX_AUTO_CHUNK images and at least two chunks of each batch per worker,
    so that even a batch as large as the epoch keeps every worker busy to its end."""
    if requested > 0:
        return requested
    return max(1, min(MAX_AUTO_CHUNK, math.ceil(batch_size / (2 * max(1, num_workers)))))


def chunk_offsets(batch_len: int, size: int) -> list[tuple[int, int]]:
    """(first row, image count) of each chunk of a batch of ``batch_len`` images."""
    return [(lo, min(size, batch_len - lo)) for lo in range(0, batch_len, size)]


def split(
    batch_len: int, num_workers: int, requested: int = 0, edge: bool = False, per_image_s: float | None = None
) -> list[tuple[int, int]]:
    """The chunks of one batch, as ``chunk_offsets`` gives them, at the size ``chunk_size`` picks.

    ``edge``: the epoch's first or last batch. The consumer waits on the first with nothing else in flight, and
    after the last chunk of the epoch the workers idle: there, the finer the chunks, the less one worker's last
    chunk outlasts the others' (a chunk is ~10-50 ms). So, unless a size was requested, they get at least
    EDGE_CHUNKS chunks per worker (batch 64, 2 workers: chunks of 2, not 8); a batch that large already has
    them, and in between the window keeps every worker busy: coarser chunks cost fewer messages."""
    size = chunk_size(batch_len, num_workers, requested)
    if edge and not requested:
        size = max(1, min(size, math.ceil(batch_len / (EDGE_CHUNKS * max(1, num_workers)))))
    if per_image_s and not requested:  # cheap images: enough per chunk to be worth its messages (``WorkRate``)
        enough = math.ceil(TARGET_CHUNK_S / per_image_s)
        size = max(size, min(enough, math.ceil(batch_len / max(1, num_workers))))
    return chunk_offsets(batch_len, size)


@dataclass
class Part:
    """What a chunk made: ``count`` images kept (written at ``offset`` in the slot, or pickled in ``images``)."""

    offset: int
    indices: np.ndarray  # the images it kept (an unreadable one skipped under on_error skip is not among them)
    skipped: list[tuple[str, str]]
    times: StageTimes
    images: Any = None  # pickled instead of written into the slot: an array (or a list of raw images)
    raw_offsets: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)  # augment_in="main", in the slot
    labels: np.ndarray | None = None  # the labels its items gave (a dataset other than a plain ImageFolder)

    @property
    def count(self) -> int:
        return len(self.indices)


def compact(rows: np.ndarray, parts: list[Part]) -> np.ndarray:
    """The kept images of ``rows`` (the slot's batch), in order: each part's rows moved down over the rows its
    skipped images left empty. Nothing moves when nothing was skipped."""
    at = 0
    for part in parts:
        if part.offset != at:
            rows[at : at + part.count] = rows[part.offset : part.offset + part.count]
        at += part.count
    return rows[:at]


def stack(arrays: Sequence[np.ndarray], pipeline: Pipeline) -> np.ndarray:
    """Chunks' own arrays as one batch (no slot to write into); a chunk whose images were all skipped adds none."""
    arrays = [a for a in arrays if len(a)]
    if arrays:
        return np.concatenate(arrays)
    return np.empty((0, *(pipeline.output_shape or (0, 0, 3))), dtype=pipeline.output_dtype)


def merged(parts: Sequence[Part | Produced]) -> tuple[np.ndarray, list[tuple[str, str]], StageTimes]:
    """The batch's kept indices, skipped images and stage times, over its parts (chunks, or a peer's per-image
    results) in order."""
    times = StageTimes()
    for part in parts:
        times.add(part.times)
    kept = np.concatenate([p.indices for p in parts]) if parts else np.empty(0, np.int64)
    return kept.astype(np.int64, copy=False), [s for p in parts for s in p.skipped], times


def merged_labels(parts: Sequence[Part | Produced]) -> np.ndarray | None:
    """The labels the parts' items gave, in order; None when they gave none (the dataset's are looked up)."""
    if not parts or any(p.labels is None for p in parts):
        return None
    return np.concatenate([p.labels for p in parts if p.labels is not None]).astype(np.int64, copy=False)


@dataclass
class WorkRate:
    """The mean work per image of the chunks made so far (the workers' read, decode, augment and collate seconds).

    Each chunk costs the main process a message out and one back, whatever its size. With the shipped pipelines
    a chunk of ``MAX_AUTO_CHUNK`` images is 10-50 ms of work and the messages do not show; with near-free work
    (tiny images, a resize) it is under a millisecond and the messages are most of the main process's work. So
    ``split`` sizes auto chunks to carry at least ``TARGET_CHUNK_S`` once this rate is known (from the first
    chunks: the warm-up epoch), never beyond one chunk per worker per batch. Batches do not depend on it."""

    seconds: float = 0.0
    images: int = 0

    def add(self, part: Part) -> None:
        t = part.times
        self.seconds += t.read + t.decode + t.augment + t.collate
        self.images += part.count + len(part.skipped)

    @property
    def per_image_s(self) -> float | None:
        return self.seconds / self.images if self.images and self.seconds > 0 else None
