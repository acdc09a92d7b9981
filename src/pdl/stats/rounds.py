"""Pure maths of comparison: per-round ratios, medians, spread, the noise flag, and the evidence that two sets
of rounds differ (a one-sided Mann–Whitney U test, as asv's ``continuous`` uses). No I/O, no clock.

Also the stall's maths (the share of an epoch spent waiting, its percentiles) and reading a share (``5%``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigError

NOISE_THRESHOLD = 0.10  # rounds disagreeing by more than 10% of their median: flag, as pyperf/hyperfine do
GATE_ALPHA = 0.01  # the gate's "regressed": p < 1% that the rounds are one population (5 rounds a side can show it)
CLAIM_ALPHA = 0.05  # a table's sentence ("slows it down"): p ≤ 5% (3 rounds a side, none overlapping, can show it)
Direction = Literal["lower", "higher"]


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


CONFIDENCE = 0.95  # of every interval a table shows
PRECISION = 0.03  # --repeats auto: rounds until a speedup's 95% interval is within ±3%


def interval(ratios: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """The confidence interval of per-round ratios' centre: Student's t on their logs (a ratio's noise is a share
    of it), so it exists from two rounds on, where a rank-based interval needs six; None with fewer than two."""
    if len(ratios) < 2:
        return None
    from scipy.stats import t

    logs = [math.log(r) for r in ratios]
    centre, spread = statistics.fmean(logs), statistics.stdev(logs)
    half = float(t.ppf((1 + confidence) / 2, len(logs) - 1)) * spread / math.sqrt(len(logs))
    return math.exp(centre - half), math.exp(centre + half)


def half_width(ratios: Sequence[float], confidence: float = CONFIDENCE) -> float | None:
    """The interval's ± as a share of its centre (0.03: ±3%); None with fewer than two rounds."""
    found = interval(ratios, confidence)
    return None if found is None else math.sqrt(found[1] / found[0]) - 1


def within(ratios: Sequence[float], precision: float, confidence: float = CONFIDENCE) -> bool:
    """Whether the ratios' interval is within ±``precision``."""
    half = half_width(ratios, confidence)
    return half is not None and half <= precision


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ideal_speedup(workers: int, usable_cores: int) -> float:
    """What perfect scaling would give: one core per worker, never more cores than the machine has."""
    return float(max(1, min(workers, usable_cores)))


def one_sided_p(base: Sequence[float], current: Sequence[float], direction: Direction) -> float:
    """p-value that ``current``'s rounds are no ``direction`` than ``base``'s, by the Mann–Whitney U rank test (exact
    for small samples without ties). It assumes nothing about the distribution: a single wild round moves it little."""
    from scipy.stats import mannwhitneyu

    alternative = "less" if direction == "lower" else "greater"
    return float(mannwhitneyu(list(current), list(base), alternative=alternative).pvalue)


def rounds_needed(alpha: float) -> int:
    """The fewest rounds a side with which complete separation reaches p ≤ alpha (one-sided: 1 / C(2n, n))."""
    n = 1
    while 1 / math.comb(2 * n, n) > alpha:
        n += 1
    return n


@dataclass(frozen=True)
class Evidence:
    """Whether ``current``'s rounds differ from ``base``'s in the direction of their medians, and how strongly."""

    change: float  # median(current) / median(base) - 1
    p: float | None  # None: too few rounds to test
    alpha: float
    rounds: tuple[int, int]

    @property
    def significant(self) -> bool:
        return self.p is not None and self.p <= self.alpha

    def describe(self) -> str:
        """'p = 0.004 (Mann–Whitney U, 5 + 5 rounds)', or why it cannot say."""
        if self.p is None:
            return f"too few rounds to tell (need {rounds_needed(self.alpha)} on each side for p ≤ {self.alpha:g}; got {self.rounds[0]} and {self.rounds[1]})"
        return f"p = {self.p:.3g} (Mann–Whitney U, {self.rounds[0]} + {self.rounds[1]} rounds)"


def evidence(base: Sequence[float], current: Sequence[float], alpha: float) -> Evidence:
    b, c = median(base), median(current)
    change = c / b - 1 if b else 0.0
    rounds = (len(base), len(current))
    if min(rounds) < rounds_needed(alpha):
        return Evidence(change, None, alpha, rounds)
    return Evidence(change, one_sided_p(base, current, "lower" if change < 0 else "higher"), alpha, rounds)


def impossible(speedup: float, workers: int, usable_cores: int) -> bool:
    """A speedup above what the cores allow by more than the noise: the baseline was disturbed, not the loader fast."""
    return speedup > ideal_speedup(workers, usable_cores) * (1 + NOISE_THRESHOLD)


TARGET_STALL = 0.05  # a stall of 5% or less: the loader keeps up


def stall_share(wall_s: float, step_s: float) -> float:
    """The share of an epoch's wall time the consumer spent outside its training step: waiting for batches, and at
    the epoch's end for the work the loader had started ahead (``Loader.settle``). Not the waits alone: a loader
    whose prefetch window holds a whole epoch makes every batch of the next one while this one settles, so its
    consumer never waited (0.5%) while the loader fed 46% of the step's images/s."""
    return max(0.0, wall_s - step_s) / wall_s if wall_s > 0 else 0.0


def wait_share(waits_s: Sequence[float], wall_s: float) -> float:
    """The share of an epoch's wall time the consumer spent waiting for these batches."""
    return sum(waits_s) / wall_s if wall_s > 0 else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between ranks, as numpy's default does."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def parse_share(option: str, text: str, hint: str) -> float:
    """A share given as ``5%`` or ``0.05``, strictly between 0 and 1; else one line: ``option 'text': hint``."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise ConfigError(f"{option} '{text}': {hint}")
    return value
