"""Paired comparison of two sides measured in the same command: the per-pair log ratio head/base, its
Hodges–Lehmann estimate with the Wilcoxon signed-rank confidence interval, and the three answers a gate needs.

Why pairs: a host that drifts moves both sides of a pair alike, so the pair's ratio keeps the change and loses the
drift (Bulej et al., "Duet benchmarking"; Laaber et al., EMSE 2019); Chromium's Pinpoint tests the same statistic.
Why this estimator: it assumes only that the pairs' log ratios are symmetric about their centre, not normal, and
one wild pair moves it little; its interval is exact for any number of pairs (the signed-rank statistic's null
distribution is counted, not approximated).

The verdict is an interval test against a threshold, not a significance test against zero: *regression* when the
whole interval lies below −threshold, *no regression* when it lies above (an equivalence answer: the change is
shown smaller than what counts), else *undecided*: more pairs narrow the interval. A change exactly at the
threshold never decides; a budget ends it (the CLI's *inconclusive*).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

CONFIDENCE = 0.95  # two-sided: each end of the interval is wrong at most 2.5% of the time
MIN_PAIRS = 6  # the fewest pairs whose 95% interval is finite (2 / 2**6 = 3.1% < 5%)
Status = Literal["regressed", "no regression", "improved", "undecided"]


@lru_cache(maxsize=512)
def signed_rank_cdf(n: int) -> tuple[float, ...]:
    """P(T+ <= t) for t = 0 … n(n+1)/2, T+ the Wilcoxon signed-rank statistic of ``n`` pairs under no change:
    each rank's sign a fair coin, so the count of sign patterns with rank sum t is the count of subsets of
    {1 … n} that sum to t (counted by adding one rank at a time)."""
    top = n * (n + 1) // 2
    ways = np.zeros(top + 1)
    ways[0] = 1.0
    for rank in range(1, n + 1):
        ways[rank:] = ways[rank:] + ways[:-rank].copy()
    return tuple(float(x) for x in np.cumsum(ways) / 2.0**n)


def cut(n: int, confidence: float = CONFIDENCE) -> int | None:
    """How many Walsh averages the interval leaves out at each end: the largest d with P(T+ <= d − 1) <= α/2.
    None when even the extreme pairs cannot reach the confidence (too few pairs)."""
    cdf = signed_rank_cdf(n)
    tail = (1 - confidence) / 2
    d = 0
    while d < len(cdf) and cdf[d] <= tail:
        d += 1
    return d or None


def walsh_averages(values: Sequence[float]) -> np.ndarray:
    """Every (x_i + x_j) / 2 for i <= j, sorted: their median is the Hodges–Lehmann estimate."""
    x = np.asarray(values, dtype=float)
    i, j = np.triu_indices(len(x))
    return np.sort((x[i] + x[j]) / 2)


@dataclass(frozen=True)
class Change:
    """A paired change head/base as a ratio minus one (−0.05: head 5% slower), with its interval."""

    estimate: float
    low: float | None  # None: too few pairs for an interval at this confidence
    high: float | None
    pairs: int
    confidence: float = CONFIDENCE

    @property
    def decided_width(self) -> float | None:
        """Half the interval's width in log units (the ± a reader sees), None without an interval."""
        if self.low is None or self.high is None:
            return None
        return (math.log1p(self.high) - math.log1p(self.low)) / 2


def change(log_ratios: Sequence[float], confidence: float = CONFIDENCE) -> Change:
    """The Hodges–Lehmann estimate of the pairs' log ratios and its Wilcoxon interval, as ratios minus one."""
    n = len(log_ratios)
    if n == 0:
        raise ValueError("need at least one pair")
    walsh = walsh_averages(log_ratios)
    estimate = float(np.median(walsh))
    d = cut(n, confidence)
    if d is None:
        return Change(math.expm1(estimate), None, None, n, confidence)
    low, high = float(walsh[d - 1]), float(walsh[len(walsh) - d])
    return Change(math.expm1(estimate), math.expm1(low), math.expm1(high), n, confidence)


def verdict(found: Change, threshold: float) -> Status:
    """Against a slowdown ``threshold`` (0.05: 5%): regressed when the whole interval is below −threshold; no
    regression when it is above (improved when above +threshold too); else undecided."""
    if found.low is None or found.high is None:
        return "undecided"
    if found.high < -threshold:
        return "regressed"
    if found.low > threshold:
        return "improved"
    if found.low > -threshold:
        return "no regression"
    return "undecided"


def pairs_to_decide(found: Change, threshold: float) -> int | None:
    """About how many pairs in all would decide an undecided change, if the pairs keep their spread: the interval
    narrows as 1/√n, and must shrink to the distance between the estimate and −threshold. None when the estimate
    sits at the threshold (no number of pairs decides it) or there is no interval yet."""
    half = found.decided_width
    if half is None:
        return None
    margin = abs(math.log1p(found.estimate) - math.log1p(-threshold))
    if margin < half / 10:
        return None
    return max(found.pairs + 1, math.ceil(found.pairs * (half / margin) ** 2))
