"""The baseline: one process, one batch at a time, no prefetching."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from ..data.pipeline import Pipeline
from ..data.protocol import Dataset
from .base import Loader
from .batching import Batch, make_batch
from .spec import LoaderSpec


class SequentialLoader(Loader):
    name = "sequential"

    def __init__(self, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec | None = None, **options: Any) -> None:
        super().__init__(dataset, pipeline, LoaderSpec.of(spec, **options, num_workers=0))

    def _epoch(self, epoch: int) -> Iterator[Batch]:
        for indices in self.plan(epoch):
            t0 = time.perf_counter()
            made = make_batch(self.dataset, self.pipeline, indices, epoch, self.spec)
            self.stats.stages.append(made.times)
            self.stats.wait_s.append(time.perf_counter() - t0)
            yield self._to_batch(made.images, made.indices, made.skipped, made.labels)
