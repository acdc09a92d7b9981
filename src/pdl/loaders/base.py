"""Loader: the interface every loader offers: iterate for one epoch, ``close()``, context manager, and
``state_dict()`` / ``load_state_dict()`` to resume mid-epoch (``resume.py``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..data.pipeline import Pipeline
from ..data.protocol import Dataset, describe, labels_of
from ..errors import ConfigError
from .batching import Batch, LoaderStats, StageTimes, augment_into, epoch_plan, shard_size
from .resume import State, check_state, make_state
from .spec import LoaderSpec


class Loader:
    """The interface every loader offers: iterate for one epoch, ``close()``, context manager.

    Built from a ``LoaderSpec`` whole, or from its fields as keywords (``ParallelLoader(ds, pipe, batch_size=32)``),
    or both (the keywords override the spec's). A subclass implements ``_epoch`` and, if it has workers,
    ``start``, ``close`` and ``worker_pids``.
    """

    name = "loader"
    min_workers = 0  # the fewest workers it can run with (the loaders with a pool need one)
    start_method: str | None = None  # how worker processes start, for loaders that have them
    splits_batches = False  # whether its workers share a batch in chunks (``LoaderSpec.chunk_size``)
    prefetches_epochs = False  # whether it honours ``LoaderSpec.prefetch_epochs``
    _closed = False  # set by ``close()``: a closed loader is not started again

    def __init__(self, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec | None = None, **options: Any) -> None:
        spec = LoaderSpec.of(spec, **options)
        if spec.num_workers < self.min_workers:
            raise ConfigError(
                f"`num_workers` must be at least {self.min_workers} for {type(self).__name__}. Found: {spec.num_workers}"
            )
        self.dataset, self.pipeline, self.spec = dataset, pipeline, spec
        self.num_workers = spec.num_workers
        self.epoch = 0  # the next epoch to iterate
        self.stats = LoaderStats()
        self._skip = 0  # batches of the epoch being started that a resumed state says were handed out already
        self._position: tuple[int, int] | None = None  # (epoch, batches handed out) while an epoch is iterated

    def cluster_info(self) -> dict[str, Any] | None:
        """The cluster the loader ran on (Ray: address, nodes, CPUs); None on one machine."""
        return None

    def start(self) -> None:
        """Start workers, if any. Iterating starts them too; call it to time start-up on its own."""

    def _check_open(self) -> None:
        """Refuse to start a loader that was closed, in one line."""
        if self._closed:
            raise ConfigError("this loader was closed; create a new one")

    @property
    def worker_pids(self) -> list[int]:
        return []

    def stalls(self) -> tuple[str, ...]:
        """The workers that stopped making progress since the last call, one line each (pid, state, how long); a
        loader that tracks its workers' progress says (process); the others never do."""
        return ()

    def __iter__(self) -> Iterator[Batch]:
        self.start()
        epoch, self.epoch = self.epoch, self.epoch + 1
        self.stats = LoaderStats()
        self._position = (epoch, self._skip)
        self._skip = 0
        return self._counted(epoch)

    def _counted(self, epoch: int) -> Iterator[Batch]:
        """The epoch's batches, each counted as handed out when the caller receives it (what ``state_dict`` says)."""
        batches = self._epoch(epoch)
        try:
            for batch in batches:
                self._position = (epoch, (self._position or (epoch, 0))[1] + 1)
                yield batch
                del batch  # not held here while the next is made: a caller that dropped it frees its ring slot
        except GeneratorExit:  # the caller stopped early (break): the loader stays usable
            raise
        except BaseException:
            self.close()  # an error, a worker's death, Ctrl-C: stop the workers, leave nothing behind
            raise
        finally:
            close = getattr(batches, "close", None)  # an early break: the loader's own cleanup runs now
            if close is not None:
                close()

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        raise NotImplementedError

    def settle(self) -> None:
        """Wait until the work this loader started ahead (the next epoch's first batches) is done. A measurement
        calls it inside each epoch's timed window, so that no loader's work runs in another loader's epoch."""

    def following(self, epoch: int) -> list[np.ndarray]:
        """The next epoch's batches, for a loader that starts them while ``epoch`` ends (``prefetch_epochs``);
        else none."""
        if not (self.spec.prefetch_epochs and self.prefetches_epochs):
            return []
        return epoch_plan(len(self.dataset), self.spec, epoch + 1)

    def adoptable(self, made_for: int, epoch: int) -> bool:
        """Whether batches started ahead for epoch ``made_for`` are the ones this iteration of ``epoch`` hands out
        first: the same epoch, from its first batch (not a state loaded meanwhile)."""
        return made_for == epoch and self._position == (epoch, 0)

    def plan(self, epoch: int) -> list[np.ndarray]:
        """The batches of ``epoch`` this iteration hands out: the whole epoch, or after ``load_state_dict`` the
        batches of the resumed epoch that were not handed out yet. Every loader's ``_epoch`` makes these."""
        done = self._position[1] if self._position is not None and self._position[0] == epoch else 0
        return epoch_plan(len(self.dataset), self.spec, epoch)[done:]

    # -- resuming ----------------------------------------------------------------------------------------------
    def state_dict(self) -> State:
        """Where this loader is, small and JSON-serialisable (for a training checkpoint): the epoch, the batches of
        it handed out, and what identifies the work. ``load_state_dict`` on any pdl loader, whatever its kind or
        worker count, carries on from there with the same batches, bit for bit."""
        epoch, handed = self._position if self._position is not None else (self.epoch, self._skip)
        if handed >= len(self):  # the epoch was handed out whole: the next one starts from its first batch
            epoch, handed = epoch + 1, 0
        return make_state(self.dataset, self.spec, epoch, handed)

    def load_state_dict(self, state: State) -> None:
        """Carry on where ``state`` was taken: the next iteration yields the batches the original loader would
        have yielded next. A state of other work (another dataset, seed, batch size, shuffle, drop_last or shard)
        is refused in one line naming what differs."""
        epoch, handed = check_state(state, self.dataset, self.spec, len(self))
        self.epoch, self._skip, self._position = epoch, handed, None

    def _to_batch(
        self, images: np.ndarray, indices: np.ndarray, skipped: list[tuple[str, str]], labels: np.ndarray | None = None
    ) -> Batch:
        """``labels``: those the items gave where they were made; None: the dataset's (``protocol.labels_of``)."""
        self.stats.skipped.extend(skipped)
        if labels is None or len(labels) != len(indices):
            labels = labels_of(self.dataset, indices)
        return Batch(images, labels, indices, tuple(skipped))

    def _augment_here(self, raw: Sequence[np.ndarray], indices: np.ndarray, epoch: int, times: StageTimes) -> np.ndarray:
        """``augment_in="main"``: the pipeline runs here, on the images the workers decoded, with the same
        per-image seeds as anywhere else (an image's error names it)."""
        paths = [describe(self.dataset, i) for i in indices]
        return augment_into(self.pipeline, raw, indices, self.spec.seed, epoch, paths, times)

    def __len__(self) -> int:
        spec = self.spec
        n, b = shard_size(len(self.dataset), spec.world_size, spec.drop_last), spec.batch_size  # this rank's images
        return n // b if spec.drop_last else -(-n // b)

    def close(self) -> None:
        """Stop workers and release what they held. Safe to call twice: the second call does nothing."""
        if self._closed:
            return
        self._closed = True
        self._shutdown()

    def _shutdown(self) -> None:
        """What ``close`` stops and releases, once: workers, pools, shared memory (nothing, for a loader without)."""

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
