"""The paired statistics of `pdl compare`: exact numbers where a textbook has them, properties where it does not."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import wilcoxon

from pdl.stats.paired import MIN_PAIRS, Change, change, cut, pairs_to_decide, signed_rank_cdf, verdict, walsh_averages


def test_the_interval_and_estimate_are_hollander_and_wolfes() -> None:
    """Hollander & Wolfe's depression data (R's wilcox.test(x, y, paired=TRUE, conf.int=TRUE) example): pseudo-median
    0.46, 95% interval 0.010 … 0.786."""
    x = np.array([1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30])
    y = np.array([0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29])
    walsh = walsh_averages(x - y)
    d = cut(9)
    assert d == 6
    assert walsh[d - 1] == pytest.approx(0.010) and walsh[len(walsh) - d] == pytest.approx(0.786)
    assert float(np.median(walsh)) == pytest.approx(0.46)


@pytest.mark.parametrize("n", [1, 5, 6, 10, 25])
def test_the_null_distribution_is_scipys_exact_one(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(5):
        d = rng.normal(size=n)
        t_plus = sum(rank for rank, v in enumerate(sorted(d, key=abs), start=1) if v > 0)
        expected = wilcoxon(d, alternative="less", method="exact").pvalue
        assert signed_rank_cdf(n)[t_plus] == pytest.approx(expected)


def test_fewer_than_six_pairs_have_no_95_percent_interval() -> None:
    assert MIN_PAIRS == 6
    assert cut(5) is None and cut(6) == 1
    found = change([0.01, -0.02, 0.0, 0.03, 0.01])
    assert found.low is None and found.high is None and verdict(found, 0.05) == "undecided"
    assert pairs_to_decide(found, 0.05) is None


def test_the_three_verdicts_against_the_threshold() -> None:
    same = change([0.001 * k for k in range(-5, 6)])  # centred on 0, within ±0.5%
    assert verdict(same, 0.05) == "no regression"
    slower = change([math.log(0.8) + 0.001 * k for k in range(-5, 6)])  # 20% slower
    assert slower.estimate == pytest.approx(-0.2) and verdict(slower, 0.05) == "regressed"
    faster = change([math.log(1.2) + 0.001 * k for k in range(-5, 6)])
    assert verdict(faster, 0.05) == "improved"
    straddling = change([math.log(0.95) + 0.03 * k for k in range(-5, 6)])  # at -5%, ±15%
    assert verdict(straddling, 0.05) == "undecided"
    assert pairs_to_decide(straddling, 0.05) is None  # at the threshold: no number of pairs decides it


def test_more_pairs_are_asked_for_in_proportion_to_the_squared_width() -> None:
    found = Change(estimate=math.expm1(-0.02), low=math.expm1(-0.06), high=math.expm1(0.02), pairs=10)
    # half-width 0.04 in logs, 0.0313 from -2% to -5%: (0.04 / 0.0313)² × 10 = 16.3
    assert pairs_to_decide(found, 0.05) == 17


logs = st.lists(st.floats(min_value=-1, max_value=1, allow_nan=False), min_size=1, max_size=40)


@given(logs, st.floats(min_value=-0.5, max_value=0.5))
def test_the_interval_holds_the_estimate_and_moves_with_a_shift(values: list[float], shift: float) -> None:
    found = change(values)
    moved = change([v + shift for v in values])
    assert math.log1p(moved.estimate) == pytest.approx(math.log1p(found.estimate) + shift, abs=1e-9)
    if found.low is not None and found.high is not None:
        assert found.low <= found.estimate <= found.high
        assert moved.low is not None and moved.high is not None
        assert math.log1p(moved.low) == pytest.approx(math.log1p(found.low) + shift, abs=1e-9)
    else:
        assert len(values) < MIN_PAIRS


@given(st.lists(st.floats(min_value=-1, max_value=1, allow_nan=False), min_size=6, max_size=30))
def test_a_verdict_never_contradicts_its_interval(values: list[float]) -> None:
    found = change(values)
    status = verdict(found, 0.05)
    assert found.low is not None and found.high is not None
    assert (status == "regressed") == (found.high < -0.05)
    assert (status in ("no regression", "improved")) == (found.low > -0.05)
