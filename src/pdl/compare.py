"""Pure maths of comparison: per-round ratios, medians, spread, the noise flag. No I/O, no clock."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

NOISE_THRESHOLD = 0.10  # rounds disagreeing by more than 10% of their median: flag, as pyperf/hyperfine do


@dataclass(frozen=True)
class Speedup:
    """Median of per-round ratios (baseline / candidate, both measured in the same round) with its range."""

    median: float
    low: float
    high: float
    rounds: tuple[float, ...]

    @property
    def spread(self) -> float:
        """(max − min) / median of the rounds: 0 when all rounds agree."""
        return (self.high - self.low) / self.median if self.median > 0 else float("inf")

    def noisy(self, threshold: float = NOISE_THRESHOLD) -> bool:
        return self.spread > threshold


def speedup(baseline_s: Sequence[float], candidate_s: Sequence[float]) -> Speedup:
    """Ratios are taken round by round, so drift of a shared machine hits both sides of each ratio."""
    if len(baseline_s) != len(candidate_s) or not baseline_s:
        raise ValueError(f"need the same number (>0) of rounds on both sides, got {len(baseline_s)} and {len(candidate_s)}")
    ratios = tuple(b / c for b, c in zip(baseline_s, candidate_s, strict=True))
    return Speedup(statistics.median(ratios), min(ratios), max(ratios), ratios)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ideal_speedup(workers: int, usable_cores: int) -> float:
    """What perfect scaling would give: one core per worker, never more cores than the machine has."""
    return float(max(1, min(workers, usable_cores)))
