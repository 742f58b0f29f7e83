"""The statistics (alexnet_split.stats) against scipy's tests, simulations and hand counts."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from alexnet_split import stats


def test_mean_std_and_t_interval():
    mean, std, ci = stats.mean_std_ci([0.5, 0.6, 0.7])
    assert mean == pytest.approx(0.6) and std == pytest.approx(0.1)
    assert ci == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-6)
    mean, std, ci = stats.mean_std_ci([0.5])
    assert mean == 0.5 and np.isnan(std) and np.isnan(ci)


def test_paired_uses_the_common_seeds():
    a, b = {0: 0.5, 1: 0.62, 2: 0.71, 3: 0.9}, {0: 0.48, 1: 0.57, 2: 0.70}
    d = stats.paired(a, b)
    assert d["seeds"] == [0, 1, 2] and d["n"] == 3
    assert d["mean"] == pytest.approx(np.mean([0.02, 0.05, 0.01]))
    assert d["p"] == pytest.approx(sps.ttest_rel([0.5, 0.62, 0.71], [0.48, 0.57, 0.70]).pvalue)
    assert d["p_rank"] == pytest.approx(0.25)
    assert stats.paired({0: 0.5, 1: 0.6}, {0: 0.4, 1: 0.5})["p"] == 0.0  # the same difference twice
    assert np.isnan(stats.paired({0: 0.5}, {0: 0.4})["p"])


def test_signed_rank_p():
    assert np.isnan(stats.signed_rank_p([0.1]))
    assert stats.signed_rank_p([0.0, 0.0]) == 1.0
    assert stats.signed_rank_p([0.1, 0.2, 0.3]) == pytest.approx(0.25)  # exact: 2 / 2^3, its floor at 3 pairs
    assert stats.signed_rank_p([0.1, -0.2, 0.3, 0.05, 0.4]) == pytest.approx(sps.wilcoxon(
        [0.1, -0.2, 0.3, 0.05, 0.4], method="exact").pvalue)


def test_paired_power_against_a_simulation():
    rng = np.random.default_rng(0)
    n, std, delta = 8, 0.03, 0.03
    hits = sum(sps.ttest_1samp(rng.normal(delta, std, n), 0).pvalue < 0.05 for _ in range(4000))
    assert stats.paired_power(n, std, delta) == pytest.approx(hits / 4000, abs=0.03)
    n80 = stats.pairs_for_power(std, delta)
    assert stats.paired_power(n80, std, delta) >= 0.8 > stats.paired_power(n80 - 1, std, delta)
    assert n80 == 10  # the normal approximation (1.96 + 0.84)^2 = 7.8 pairs, plus the t's fatter tails


def test_split_differences_and_permutation_p():
    rng = np.random.default_rng(0)
    scores = np.r_[np.zeros(4), np.ones(4)]
    null = stats.split_differences(scores, 4, 5000, rng)
    assert set(np.round(null, 6)) <= {0.0, 0.5, 1.0}
    # only the 2 of the 70 splits that separate the zeros from the ones reach |d| = 1
    assert np.mean(null == 1.0) == pytest.approx(2 / 70, abs=0.01)
    assert stats.permutation_p(null, -1.0) == pytest.approx((1 + (null == 1.0).sum()) / 5001)
    assert stats.permutation_p([0.1, 0.2, 0.3], 0.25) == 2 / 4  # the observed split counts itself
    assert stats.permutation_p([0.1, 0.2, 0.3], 5.0) == 1 / 4  # never 0


def test_rank_sum_p_and_binomial_tail_by_hand():
    # two samples of 3 fully separated: 2 of the C(6, 3) = 20 orderings are as extreme
    assert stats.rank_sum_p([1, 2, 3], [4, 5, 6]) == pytest.approx(2 / 20)
    assert stats.binomial_tail(1, 2, 0.05) == pytest.approx(1 - 0.95 ** 2)
    assert stats.binomial_tail(0, 5, 0.05) == 1.0
    n, p = 6, 0.05
    by_hand = sum(math.comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(2, n + 1))
    assert stats.binomial_tail(2, n, p) == pytest.approx(by_hand)


def test_both_paired_tests_pair_by_seed_not_by_dict_order():
    """Seed by seed every difference is +0.01..+0.06 (signed-rank p = 2/2^6); read in the dicts'
    insertion order, which differs, the pairs would be mixed."""
    a = {s: 0.5 + 0.1 * s + 0.01 * (s + 1) for s in range(6)}
    b = {s: 0.5 + 0.1 * s for s in (5, 3, 1, 0, 2, 4)}
    d = stats.paired(a, b)
    by_seed = [a[s] - b[s] for s in range(6)]
    assert d["seeds"] == list(range(6)) and d["mean"] == pytest.approx(np.mean(by_seed))
    assert d["p_rank"] == pytest.approx(2 / 2**6)
    assert d["p"] == pytest.approx(sps.ttest_rel([a[s] for s in range(6)], [b[s] for s in range(6)]).pvalue)
