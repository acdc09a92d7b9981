"""The baseline: one process, one batch at a time, no prefetching."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from ..dataset import ImageFolder
from ..pipeline import Pipeline
from .base import Batch, Loader, LoaderSpec, make_batch


class SequentialLoader(Loader):
    name = "sequential"

    def __init__(
        self,
        dataset: ImageFolder,
        pipeline: Pipeline,
        batch_size: int = 64,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        **options: Any,
    ) -> None:
        spec = LoaderSpec(batch_size, shuffle, seed, drop_last, num_workers=0, **options)
        super().__init__(dataset, pipeline, spec)

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        from .base import epoch_plan

        for indices in epoch_plan(len(self.dataset), self.spec, epoch):
            t0 = time.perf_counter()
            made = make_batch(self.dataset, self.pipeline, indices, epoch, self.spec)
            self.stats.stages.append(made.times)
            self.stats.wait_s.append(time.perf_counter() - t0)
            yield self._to_batch(made.images, made.indices, made.skipped)
