"""The null distributions against scipy: the Kolmogorov and Smirnov tails, the exact two-sample
KS distribution and the chi-square tail, over every region their algorithms switch on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
from scipy import stats
from scipy.stats._stats_py import (
    _attempt_exact_2kssamp,  # the exact branch of ks_2samp, by (n1, n2, d)
    _compute_outer_prob_inside_method,  # its unequal-size recursion
)

from governance.monitoring.distributions import (
    DistributionError,
    _prob_outside_band,
    _prob_outside_band_diagonals,
    chi2_sf,
    kolmogorov_sf,
    ks_2samp_exact_sf,
    smirnov_sf,
)

# n crosses each switch of the algorithm: 140 (Durbin/Pomeranz vs large-n), 100,000 (Durbin vs Pelz-Good)
SIZES = [1, 2, 7, 60, 140, 141, 900, 5_000, 99_999, 100_001, 1_000_000]


@pytest.mark.parametrize("n", SIZES)
def test_kolmogorov_sf_equals_scipy_kstwo_in_every_region(n: int) -> None:
    rng = np.random.default_rng(n)
    few = n > 50_000  # scipy itself takes seconds per value there
    # d over the whole range and concentrated where n*d^2 is between 0 and 5 (every branch)
    ds = np.concatenate([rng.uniform(0, 1, 3 if few else 15), rng.uniform(0, 2.5, 6 if few else 25) / math.sqrt(n),
                         [0.6 / n, 1.0 / n, 1 - 0.5 / n]])
    for d in ds[(ds > 0) & (ds < 1)]:
        assert abs(kolmogorov_sf(n, float(d)) - float(stats.kstwo.sf(d, n))) <= 1e-12, (n, d)


@pytest.mark.parametrize("n", [1, 3, 80, 1012, 1013, 20_000, 1_000_000])
def test_smirnov_sf_equals_scipy_special_smirnov(n: int) -> None:
    rng = np.random.default_rng(n + 1)
    count = 3 if n > 50_000 else 10
    for d in np.concatenate([rng.uniform(0, 1, count), rng.uniform(0, 3, count) / math.sqrt(n)]):
        if d < 1:
            assert abs(smirnov_sf(n, float(d)) - scipy.special.smirnov(n, d)) <= 1e-12, (n, d)


def test_tails_at_the_ends_of_the_range() -> None:
    assert kolmogorov_sf(50, 0.0) == 1.0
    assert kolmogorov_sf(50, 1.0) == 0.0
    assert smirnov_sf(50, 0.0) == 1.0
    assert smirnov_sf(50, 1.0) == 0.0
    with pytest.raises(DistributionError):
        kolmogorov_sf(0, 0.5)


@pytest.mark.parametrize(("n1", "n2"), [(5, 5), (40, 40), (7, 13), (60, 250), (300, 120), (400, 399)])
def test_exact_two_sample_distribution_equals_scipy(n1: int, n2: int) -> None:
    lcm = n1 * n2 // math.gcd(n1, n2)
    rng = np.random.default_rng(n1 * n2)
    for h in sorted({int(x) for x in rng.integers(1, lcm, 12)} | {1, lcm // 3}):
        d = h / lcm
        ok, _, want = _attempt_exact_2kssamp(n1, n2, math.gcd(n1, n2), d, "two-sided")
        if ok:
            assert abs(ks_2samp_exact_sf(n1, n2, h) - want) <= 1e-12, (n1, n2, h)


def test_the_vectorised_sweep_is_bit_for_bit_scipys_recursion() -> None:
    """The anti-diagonal sweep does scipy's float operations in scipy's order: the same bits
    (not just within 1e-12), for sizes, gcds and statistics all over the range."""
    rng = np.random.default_rng(16)
    for _ in range(150):
        m = int(rng.integers(2, 300))
        n = int(rng.integers(1, m))
        g = math.gcd(m, n)
        for h in {1, int(rng.integers(1, m // g * n + 1)), m // g * n // 7 + 1}:
            with np.errstate(invalid="ignore", over="ignore"):
                want = _compute_outer_prob_inside_method(m, n, g, h)
            got = _prob_outside_band_diagonals(m, n, g, h)
            assert got == want or (math.isnan(got) and math.isnan(want)), (m, n, h)
            assert _prob_outside_band(m, n, g, h) == got or math.isnan(got), (m, n, h)


def test_large_exact_p_value_is_fast_and_equals_scipy() -> None:
    """10,000 against 9,999 values (the largest 'auto' exact case), D = 0.02: scipy's loop takes
    seconds; the sweep gives its bits. (No timing is asserted.)"""
    n1, n2 = 10_000, 9_999
    lcm = n1 * n2 // math.gcd(n1, n2)
    h = round(0.02 * lcm)
    ok, _, want = _attempt_exact_2kssamp(n1, n2, math.gcd(n1, n2), h / lcm, "two-sided")
    assert ok and ks_2samp_exact_sf(n1, n2, h) == want


@pytest.mark.parametrize("dof", [1, 2, 3, 9, 40, 500])
def test_chi2_sf_equals_scipy(dof: int) -> None:
    rng = np.random.default_rng(dof)
    for statistic in np.concatenate([rng.uniform(0, 3 * dof + 20, 40), [1e-6, 0.5, float(dof), 2_000.0]]):
        assert abs(chi2_sf(float(statistic), dof) - stats.chi2.sf(statistic, dof)) <= 1e-12, (dof, statistic)
    assert chi2_sf(0.0, dof) == 1.0
