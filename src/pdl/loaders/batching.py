"""Making batches: the epoch's plan, per-image seeds, and the one function every loader makes a batch with.

Every loader builds its batches with ``make_batch`` from the same plan and the same per-image seeds, so for
the same arguments all loaders yield bit-identical batches, whatever runs where.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.pipeline import Pipeline
from ..data.protocol import Dataset, describe, get_item, label_of, uses_timed_path
from ..errors import ImageReadError, WorkerError, worker_error
from .spec import LoaderSpec, OnError

STAGES = ("read", "decode", "augment", "collate")


@dataclass
class Batch:
    """One batch: ``images`` [B,H,W,C], ``labels`` [B], ``indices`` [B] into the dataset.

    ``skipped`` lists (path, reason) of images dropped from this batch under ``on_error="skip"``.
    """

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    skipped: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class StageTimes:
    """Seconds spent per stage in one batch, where it was made."""

    read: float = 0.0
    decode: float = 0.0
    augment: float = 0.0
    collate: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {s: getattr(self, s) for s in STAGES}

    def add(self, other: StageTimes) -> None:
        """Add ``other``'s seconds, stage by stage (the parts of one batch made apart)."""
        for stage in STAGES:
            setattr(self, stage, getattr(self, stage) + getattr(other, stage))


@dataclass
class LoaderStats:
    """What a loader observed during its last epoch, for the stage breakdown."""

    stages: list[StageTimes] = field(default_factory=list)
    wait_s: list[float] = field(default_factory=list)  # consumer blocked per batch
    handoff_s: list[float] = field(default_factory=list)  # worker done → data in hand (batches finished while awaited)
    copied_batches: int = 0  # batches that crossed by pickling instead of shared memory
    skipped: list[tuple[str, str]] = field(default_factory=list)
    worker_busy_s: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))  # per worker
    worker_last_s: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))  # its last task's end
    worker_tasks: defaultdict[int, int] = field(default_factory=lambda: defaultdict(int))  # tasks each worker made

    def worker_did(self, wid: int, t_start: float, t_done: float) -> None:
        """Worker ``wid`` made one task (a chunk or a batch) from ``t_start`` to ``t_done`` (perf_counter)."""
        self.worker_busy_s[wid] += t_done - t_start
        self.worker_tasks[wid] += 1
        self.worker_last_s[wid] = max(self.worker_last_s[wid], t_done)

    def tail_idle_s(self) -> float:
        """Worker-seconds idle at the end of the epoch: each worker from its last task's end to the last one's."""
        if not self.worker_last_s:
            return 0.0
        end = max(self.worker_last_s.values())
        return sum(end - last for last in self.worker_last_s.values())


def shard_size(n: int, world_size: int, drop_last: bool) -> int:
    """Images per rank in an epoch of ``n``: as torch's DistributedSampler, every rank gets as many; the
    remainder is dropped (``drop_last``) or made up by repeating the epoch's first images."""
    return n // world_size if drop_last else -(-n // world_size)


def shard(order: np.ndarray, rank: int, world_size: int, drop_last: bool) -> np.ndarray:
    """This rank's share of the epoch's global ``order``, as torch's DistributedSampler takes it: the order padded
    from its start (or cut) to a multiple of ``world_size``, then every ``world_size``-th index from ``rank``."""
    if world_size == 1 or len(order) == 0:
        return order
    total = shard_size(len(order), world_size, drop_last) * world_size
    padded = order[:total] if drop_last else np.resize(order, total)  # resize repeats from the start
    return padded[rank:total:world_size]


def epoch_plan(n: int, spec: LoaderSpec, epoch: int) -> list[np.ndarray]:
    """The batches of one epoch as index arrays, for this rank: the global order (the same on every rank,
    reshuffled per epoch from (seed, epoch)), this rank's shard of it, cut into batches."""
    order = np.random.default_rng([spec.seed, epoch]).permutation(n) if spec.shuffle else np.arange(n)
    order = shard(order, spec.rank, spec.world_size, spec.drop_last)
    m = len(order)
    stop = m - m % spec.batch_size if spec.drop_last else m
    return [order[i : i + spec.batch_size] for i in range(0, stop, spec.batch_size)]


def image_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one image's augmentation: depends on nothing but (seed, epoch, index)."""
    return int(np.random.SeedSequence([seed, epoch, int(index)]).generate_state(1)[0])


@dataclass
class Produced:
    """A batch as made by ``make_batch``: images stacked (or a list when ``augment`` was off)."""

    images: Any
    indices: np.ndarray
    skipped: list[tuple[str, str]]
    times: StageTimes
    labels: np.ndarray | None = None  # the kept items' labels; None: the dataset's own, looked up where needed


def read_each(
    dataset: Dataset,
    indices: np.ndarray,
    on_error: OnError,
    times: StageTimes,
    kept: list[int],
    skipped: list[tuple[str, str]],
    need: tuple[int, int] | None = None,
    labels: list[int] | None = None,
) -> Iterator[tuple[int, str, np.ndarray]]:
    """Decode the batch's images one at a time, noting which were kept and which skipped (``on_error="skip"``).

    An ``ImageFolder`` that keeps its own ``__getitem__`` is read through its timed path (read and decode apart);
    any other dataset (``protocol.Dataset``) through ``dataset[i]``, timed as the read stage, with the label the
    item gave (or ``label(i)``) appended to ``labels`` when given.

    ``need``: the size the pipeline's first resize asks for; a dataset with ``reduce_decode`` decodes JPEGs at the
    smallest scale still at least that large (the same in every loader, so batches still match)."""
    timed = uses_timed_path(dataset)
    for idx in indices:
        i = int(idx)
        path = dataset.path(i) if timed else describe(dataset, i)  # type: ignore[attr-defined]
        label: int | None = None
        try:
            if timed:
                image, t_read, t_decode = dataset.read(i, need)  # type: ignore[attr-defined]
            else:
                image, label, t_read = get_item(dataset, i)
                t_decode = 0.0
        except ImageReadError as exc:
            if on_error == "skip":
                skipped.append((path, exc.reason))
                continue
            raise
        times.read += t_read
        times.decode += t_decode
        kept.append(i)
        if labels is not None and not timed:
            labels.append(label_of(dataset, i) if label is None else label)
        yield i, path, image


def augment_each(
    pipeline: Pipeline,
    items: Iterable[tuple[int, str, np.ndarray]],
    n: int,
    seed: int,
    epoch: int,
    times: StageTimes,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Augment each (index, path, image) with its own seed and write it into ``out`` (or a new array of ``n``).

    Items are consumed one by one, so a decoded full-size image lives only until its augmented copy is written:
    a batch costs its output, not its decoded inputs (those are several times larger).
    """
    result = out
    count = 0
    for idx, path, image in items:
        t0 = time.perf_counter()
        try:
            aug = pipeline(image, image_seed(seed, epoch, idx))
        except Exception as exc:
            raise worker_error(exc, path, "augmenting") from None
        t1 = time.perf_counter()
        if result is None:
            result = np.empty((n, *aug.shape), dtype=aug.dtype)
        if aug.shape != result.shape[1:]:
            raise WorkerError(
                f"pipeline '{pipeline.name}' made a {aug.shape} image from {path} but the batch holds "
                f"{result.shape[1:]}; its output size varies: end it with a fixed-size crop or Resize",
                exc_type="ValueError",
                path=path,
            )
        result[count] = aug
        count += 1
        times.augment += t1 - t0
        times.collate += time.perf_counter() - t1
    if result is None:  # every image of the batch was skipped
        shape = pipeline.output_shape or (0, 0, 3)
        return np.empty((0, *shape), dtype=pipeline.output_dtype)
    return result if count == len(result) else result[:count]


def augment_into(
    pipeline: Pipeline,
    images: Sequence[np.ndarray],
    kept: Sequence[int] | np.ndarray,
    seed: int,
    epoch: int,
    paths: Sequence[str],
    times: StageTimes,
) -> np.ndarray:
    """Augment images already decoded (``augment_in="main"``) into one new stacked array."""
    items = zip((int(i) for i in kept), paths, images, strict=True)
    return augment_each(pipeline, items, len(images), seed, epoch, times)


def make_batch(
    dataset: Dataset,
    pipeline: Pipeline,
    indices: np.ndarray,
    epoch: int,
    spec: LoaderSpec,
    out: np.ndarray | None = None,
    augment: bool = True,
) -> Produced:
    """Read, decode and (unless ``augment`` is off) augment one batch; into ``out`` when given."""
    times = StageTimes()
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    labels: list[int] | None = None if uses_timed_path(dataset) else []
    items = read_each(dataset, indices, spec.on_error, times, kept, skipped, pipeline.min_input_size, labels)
    if augment:
        images: Any = augment_each(pipeline, items, len(indices), spec.seed, epoch, times, out)
    else:
        images = [image for _, _, image in items]
    made_labels = None if labels is None else np.asarray(labels, dtype=np.int64)
    return Produced(images, np.asarray(kept, dtype=np.int64), skipped, times, made_labels)
