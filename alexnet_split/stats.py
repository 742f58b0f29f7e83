"""The statistics of the comparisons (mode_rows.py, table_md.py) and of Figure 3 (figure3.py), on scipy.stats.

Over seeds: means with t intervals, paired tests (t and Wilcoxon signed-rank) and the power of a
paired t-test. Over kernels: random-split nulls, permutation p, the rank-sum test, and the
binomial tail over runs.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps


def mean_std_ci(values) -> tuple[float, float, float]:
    """Mean, sample std, and the half-width of the 95% t confidence interval."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()), float("nan"), float("nan")
    std = float(v.std(ddof=1))
    return float(v.mean()), std, float(sps.t.ppf(0.975, len(v) - 1) * std / math.sqrt(len(v)))


def paired(a: dict, b: dict) -> dict:
    """a - b over the seeds both have: mean difference, 95% CI half-width, paired t-test p and the
    Wilcoxon signed-rank p (:func:`signed_rank_p`)."""
    seeds = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in seeds])
    mean, std, ci = mean_std_ci(d) if len(d) else (float("nan"),) * 3
    if len(d) < 2:
        p = float("nan")
    elif std == 0:
        p = 1.0 if mean == 0 else 0.0
    else:
        p = float(sps.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue)
    return {"n": len(seeds), "mean": mean, "std": std, "ci95": ci, "p": p, "p_rank": signed_rank_p(d), "seeds": seeds}


def signed_rank_p(d) -> float:
    """Two-sided Wilcoxon signed-rank p of paired differences `d`, exact (zero differences dropped,
    scipy's "wilcox" rule); nan under 2 pairs, 1.0 when every difference is 0. It does not assume
    normal differences, but it cannot go below 2 / 2^n (0.25 at 3 pairs, 0.0625 at 5)."""
    d = np.asarray(d, dtype=np.float64)
    if len(d) < 2:
        return float("nan")
    if not d.any():
        return 1.0
    return float(sps.wilcoxon(d, method="exact" if len(d) <= 50 else "auto").pvalue)


def paired_power(n: int, std: float, delta: float, alpha: float = 0.05) -> float:
    """Power of a two-sided paired t-test on n pairs whose differences have std `std`, to detect a
    true mean difference `delta` (noncentral t)."""
    if n < 2 or std <= 0:
        return float("nan")
    df, nc = n - 1, delta / (std / math.sqrt(n))
    t = sps.t.ppf(1 - alpha / 2, df)
    return float(sps.nct.sf(t, df, nc) + sps.nct.cdf(-t, df, nc))


def pairs_for_power(std: float, delta: float, power: float = 0.8, alpha: float = 0.05, most: int = 10_000) -> int:
    """The fewest pairs at which :func:`paired_power` reaches `power`."""
    for n in range(2, most + 1):
        if paired_power(n, std, delta, alpha) >= power:
            return n
    raise ValueError(f"more than {most} pairs for power {power} (std {std}, delta {delta})")


def split_differences(scores, n_first: int, n: int, rng) -> np.ndarray:
    """|mean(second part) - mean(first part)| over `n` random splits of `scores` into n_first / rest."""
    scores = np.asarray(scores)
    idx = np.argsort(rng.random((n, scores.size)), axis=1)
    first = scores[idx[:, :n_first]].mean(axis=1)
    rest = scores[idx[:, n_first:]].mean(axis=1)
    return np.abs(rest - first)


def permutation_p(null, observed: float) -> float:
    """Two-sided permutation p of `observed` against a null of absolute differences: the share of
    the null at least as large as |observed|, counting the observed split itself (never 0)."""
    null = np.asarray(null)
    return float((1 + (null >= abs(observed) - 1e-12).sum()) / (null.size + 1))


def rank_sum_p(a, b) -> float:
    """Two-sided Wilcoxon rank-sum (Mann-Whitney U) p of sample `a` against sample `b`."""
    return float(sps.mannwhitneyu(a, b).pvalue)


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): how surprising k successes in n trials are."""
    return float(sps.binom.sf(k - 1, n, p))
