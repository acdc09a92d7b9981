"""What every loader shares: the spec, the batch plan, per-image seeds and the code that makes one batch.

Every loader builds its batches with ``make_batch`` from the same plan and the same per-image seeds, so for
the same arguments all loaders yield bit-identical batches, whatever runs where.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..dataset import ImageFolder, read_image_timed
from ..errors import ConfigError, ImageReadError, WorkerError
from ..pipeline import Pipeline

AugmentIn = Literal["workers", "main"]
OnError = Literal["fail", "skip"]
STAGES = ("read", "decode", "augment", "collate")


@dataclass(frozen=True)
class LoaderSpec:
    """The arguments every loader takes; validated once, here."""

    batch_size: int = 64
    shuffle: bool = False
    seed: int = 0
    drop_last: bool = False
    num_workers: int = 2
    prefetch: int = 2
    augment_in: AugmentIn = "workers"
    on_error: OnError = "fail"
    timeout: float | None = None

    def __post_init__(self) -> None:
        for name, low in (("batch_size", 1), ("num_workers", 0), ("prefetch", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"`{name}` must be a whole number >= {low}. Found: {value!r}")
        if self.augment_in not in ("workers", "main"):
            raise ConfigError(f"`augment_in` must be 'workers' or 'main'. Found: {self.augment_in!r}")
        if self.on_error not in ("fail", "skip"):
            raise ConfigError(f"`on_error` must be 'fail' or 'skip'. Found: {self.on_error!r}")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"`timeout` must be greater than 0 seconds. Found: {self.timeout!r}")


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


@dataclass
class LoaderStats:
    """What a loader observed during its last epoch, for the stage breakdown."""

    stages: list[StageTimes] = field(default_factory=list)
    wait_s: list[float] = field(default_factory=list)  # consumer blocked per batch
    handoff_s: list[float] = field(default_factory=list)  # worker done → data in hand (batches finished while awaited)
    copied_batches: int = 0  # batches that crossed by pickling instead of shared memory
    skipped: list[tuple[str, str]] = field(default_factory=list)


def epoch_plan(n: int, spec: LoaderSpec, epoch: int) -> list[np.ndarray]:
    """The batches of one epoch as index arrays: reshuffled per epoch from (seed, epoch)."""
    order = np.random.default_rng([spec.seed, epoch]).permutation(n) if spec.shuffle else np.arange(n)
    stop = n - n % spec.batch_size if spec.drop_last else n
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


def read_each(
    dataset: ImageFolder,
    indices: np.ndarray,
    on_error: OnError,
    times: StageTimes,
    kept: list[int],
    skipped: list[tuple[str, str]],
) -> Iterator[tuple[int, str, np.ndarray]]:
    """Decode the batch's images one at a time, noting which were kept and which skipped (``on_error="skip"``)."""
    for idx in indices:
        path = dataset.path(idx)
        try:
            image, t_read, t_decode = read_image_timed(path)
        except ImageReadError as exc:
            if on_error == "skip":
                skipped.append((path, exc.reason))
                continue
            raise
        times.read += t_read
        times.decode += t_decode
        kept.append(int(idx))
        yield int(idx), path, image


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
    images: list[np.ndarray],
    kept: list[int] | np.ndarray,
    seed: int,
    epoch: int,
    paths: list[str],
    times: StageTimes,
) -> np.ndarray:
    """Augment images already decoded (``augment_in="main"``) into one new stacked array."""
    items = zip((int(i) for i in kept), paths, images, strict=True)
    return augment_each(pipeline, items, len(images), seed, epoch, times)


def make_batch(
    dataset: ImageFolder,
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
    items = read_each(dataset, indices, spec.on_error, times, kept, skipped)
    if augment:
        images: Any = augment_each(pipeline, items, len(indices), spec.seed, epoch, times, out)
    else:
        images = [image for _, _, image in items]
    return Produced(images, np.asarray(kept, dtype=np.int64), skipped, times)


def worker_error(exc: BaseException, path: str | None, doing: str) -> WorkerError:
    if isinstance(exc, WorkerError):
        return exc
    where = f" while {doing} {path}" if path else ""
    return WorkerError(
        f"{type(exc).__name__}: {exc}{where}",
        exc_type=type(exc).__name__,
        path=path,
        tb="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    )


class Loader:
    """The interface every loader offers: iterate for one epoch, ``close()``, context manager."""

    name = "loader"
    num_workers = 0

    def __init__(self, dataset: ImageFolder, pipeline: Pipeline, spec: LoaderSpec) -> None:
        self.dataset, self.pipeline, self.spec = dataset, pipeline, spec
        self.epoch = 0
        self.stats = LoaderStats()

    def start(self) -> None:
        """Start workers, if any. Iterating starts them too; call it to time start-up on its own."""

    @property
    def worker_pids(self) -> list[int]:
        return []

    def __iter__(self) -> Iterator[Batch]:
        self.start()
        epoch, self.epoch = self.epoch, self.epoch + 1
        self.stats = LoaderStats()
        return self._epoch(epoch)

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        raise NotImplementedError

    def _to_batch(self, images: np.ndarray, indices: np.ndarray, skipped: list[tuple[str, str]]) -> Batch:
        self.stats.skipped.extend(skipped)
        return Batch(images, self.dataset.labels[indices], indices, tuple(skipped))

    def __len__(self) -> int:
        n, b = len(self.dataset), self.spec.batch_size
        return n // b if self.spec.drop_last else -(-n // b)

    def close(self) -> None:
        """Stop workers and release what they held. Safe to call twice."""

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
