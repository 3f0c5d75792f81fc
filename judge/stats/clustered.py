"""Intervals and tests for outputs that come in clusters (issue 19).

The paper's design samples 3 outputs per prompt and fills each template with many names: outputs of
one prompt (or template) are correlated draws, so treating them as independent understates every
variance. Everything here takes a cluster code per output and uses the cluster-robust (sandwich)
variance with the CR1 small-sample factor G / (G - 1) (Cameron & Miller 2015, *J. Human Resources*
50:317), and Student-t quantiles with G - 1 degrees of freedom (G: the number of clusters):

- ``cr1_cov``: the covariance of means of scores, summed within clusters first;
- ``wilson``: Wilson's score interval on the design's effective sample size n* = n / deff
  (capped at n, so clustering never narrows it) with the t quantile (Dean & Pagano 2015, *J. Survey
  Stat. Methodol.* 3:484, found Wilson with the design effect the most reliable for clustered surveys);
- ``korn_graubard``: Clopper-Pearson on the effective sample size, scaled by (t_{n-1} / t_df)^2 (Korn &
  Graubard 1998, *Survey Methodology* 24:193; the NCHS standard for proportions), for small samples;
- ``rao_scott``: the Rao-Scott second-order corrected Pearson test of independence (Rao & Scott 1984,
  *Ann. Stat.* 12:46), as R's ``survey::svychisq(statistic = "F")`` computes it: X^2 / tr(Delta)
  referred to F(d, d (G - 1)), d = tr(Delta)^2 / tr(Delta^2), Delta the generalised design effects.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def codes(values) -> np.ndarray:
    """Integer codes 0..G-1 for any cluster values."""
    return pd.factorize(pd.Series(list(values), dtype=object).astype(str))[0]


def n_clusters(clusters: np.ndarray, mask: np.ndarray | None = None) -> int:
    return int(len(np.unique(clusters if mask is None else clusters[mask])))


def cluster_sums(scores: np.ndarray, clusters: np.ndarray, size: int | None = None) -> np.ndarray:
    """Per-cluster sums of ``scores`` (n, or n x k), one row per cluster code."""
    scores = np.asarray(scores, dtype=float)
    size = int(clusters.max()) + 1 if size is None else size
    if scores.ndim == 1:
        return np.bincount(clusters, weights=scores, minlength=size)
    out = np.zeros((size, scores.shape[1]))
    np.add.at(out, clusters, scores)
    return out


def cr1_cov(scores: np.ndarray, clusters: np.ndarray) -> np.ndarray | float:
    """G / (G - 1) * sum_c u_c u_c' / n^2, u_c the cluster sums of the centred scores: the CR1 variance
    (covariance matrix for n x k scores) of their mean(s). 0 with a single cluster: nothing to say."""
    scores = np.asarray(scores, dtype=float)
    n = scores.shape[0]
    used = np.unique(clusters)
    g = len(used)
    centred = scores - scores.mean(axis=0)
    u = cluster_sums(centred, clusters)[used]
    factor = g / (g - 1) if g > 1 else 0.0
    if u.ndim == 1:
        return float(factor * np.sum(u**2) / n**2)
    return factor * (u.T @ u) / n**2


def cross_cov(a: np.ndarray, codes_a: np.ndarray, b: np.ndarray, codes_b: np.ndarray) -> float | None:
    """CR1 covariance of the means of ``a`` and ``b``, scores of two disjoint sets of outputs whose
    clusters may be shared (a template filled with names of both groups); 0 when none is shared. None when
    both sets lie in one and the same cluster: G - 1 = 0 degrees of freedom, the covariance cannot be estimated."""
    if not len(np.intersect1d(codes_a, codes_b)):
        return 0.0
    g = len(np.union1d(codes_a, codes_b))
    if g < 2:
        return None
    size = int(max(codes_a.max(), codes_b.max())) + 1
    ua = cluster_sums(np.asarray(a, dtype=float) - np.mean(a), codes_a, size)
    ub = cluster_sums(np.asarray(b, dtype=float) - np.mean(b), codes_b, size)
    return float(g / (g - 1) * np.sum(ua * ub) / (len(a) * len(b)))


def score_cov(a: np.ndarray, b: np.ndarray, clusters: np.ndarray, involved: np.ndarray) -> float:
    """G / (G - 1) sum_c A_c B_c, A_c and B_c the cluster sums of two score vectors (already centred),
    G the clusters of the ``involved`` outputs."""
    g = n_clusters(clusters, involved)
    if g < 2:
        return 0.0
    size = int(clusters.max()) + 1
    return float(g / (g - 1) * np.sum(cluster_sums(a, clusters, size) * cluster_sums(b, clusters, size)))


def t_alpha(alpha: float, df: int) -> float:
    """The alpha whose normal quantile is Student's t quantile with ``df`` degrees of freedom."""
    from scipy.special import ndtr

    if df < 1:
        return alpha
    return float(2 * ndtr(-t_quantile(alpha, df)))


def effective_size(p: float, variance: float, n: int) -> float:
    """n / deff, the design effect deff = v / v_srs with v_srs = p (1 - p) / (n - 1), the unbiased variance of a
    simple random sample's mean (so independent outputs give exactly n); capped at n (a design never earns a
    narrower interval than its labels give) and n itself where v or p (1 - p) is 0."""
    spread = p * (1 - p)
    if variance <= 0 or spread <= 0 or n < 2:
        return float(n)
    return float(min(n, n * spread / ((n - 1) * variance)))


def wilson(p: float, variance: float, n: int, *, df: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson's interval on the effective sample size with the t quantile (df degrees of freedom)."""
    from statsmodels.stats.proportion import proportion_confint

    size = effective_size(p, variance, n)
    low, high = proportion_confint(p * size, size, alpha=t_alpha(alpha, df), method="wilson")
    return float(low), float(high)


def korn_graubard(p: float, variance: float, n: int, *, df: int, alpha: float = 0.05) -> tuple[float, float]:
    """Clopper-Pearson on the effective sample size, scaled by (t_{n-1} / t_df)^2: exact for a simple
    random sample (df = n - 1), wider when the variance has fewer degrees of freedom than labels."""
    from scipy.special import betaincinv

    size = effective_size(p, variance, n)
    if 1 <= df < n - 1:
        size *= (t_quantile(alpha, n - 1) / t_quantile(alpha, df)) ** 2
    # Clopper-Pearson's beta quantiles, as statsmodels' proportion_confint(method="beta") takes them
    x = p * size
    low = float(betaincinv(x, size - x + 1, alpha / 2)) if x > 0 else 0.0
    high = float(betaincinv(x + 1, size - x, 1 - alpha / 2)) if x < size else 1.0
    return low, high


def proportion(y: np.ndarray, clusters: np.ndarray, *, alpha: float = 0.05) -> dict:
    """A proportion from outputs in clusters: the mean, its CR1 variance, G, and the clustered Wilson interval."""
    y = np.asarray(y, dtype=float)
    n, g = len(y), n_clusters(clusters)
    p = float(y.mean()) if n else float("nan")
    if n == 0:
        return {"rate": p, "variance": float("nan"), "n_clusters": 0, "ci": (float("nan"), float("nan"))}
    variance = cr1_cov(y, clusters)
    return {"rate": p, "variance": variance, "n_clusters": g, "ci": wilson(p, variance, n, df=g - 1, alpha=alpha)}


def _interaction_contrasts(n_rows: int, n_cols: int) -> np.ndarray:
    """The row x column interaction columns, residualised on the main effects (cells row-major)."""
    rows, cols = np.divmod(np.arange(n_rows * n_cols), n_cols)
    main = np.column_stack(
        [np.ones(n_rows * n_cols)] + [rows == r for r in range(1, n_rows)] + [cols == c for c in range(1, n_cols)]
    )
    inter = np.column_stack([(rows == r) & (cols == c) for r in range(1, n_rows) for c in range(1, n_cols)]).astype(
        float
    )
    coef, *_ = np.linalg.lstsq(main.astype(float), inter, rcond=None)
    return inter - main @ coef


def rao_scott(row: np.ndarray, col: np.ndarray, clusters: np.ndarray) -> dict:
    """The design-corrected Pearson test of independence between ``row`` and ``col`` codes.

    Returns the uncorrected Pearson X^2 (no continuity correction), the mean generalised design effect,
    the F statistic X^2 / tr(Delta) with its degrees of freedom and p-value, and G.
    """
    from scipy.stats import chi2_contingency
    from scipy.stats import f as f_dist

    row, col = np.asarray(row, dtype=np.int64), np.asarray(col, dtype=np.int64)  # category codes may be int8
    n_rows, n_cols = int(row.max()) + 1, int(col.max()) + 1
    n, g = len(row), n_clusters(clusters)
    cell = row * n_cols + col
    onehot = np.zeros((n, n_rows * n_cols))
    onehot[np.arange(n), cell] = 1.0
    p = onehot.mean(axis=0)
    v = cr1_cov(onehot, clusters)
    contrasts = _interaction_contrasts(n_rows, n_cols)
    inv_p = np.where(p > 0, 1 / np.where(p > 0, p, 1), 0.0)
    denom = contrasts.T @ (inv_p[:, None] * contrasts) / n
    numer = contrasts.T @ (inv_p[:, None] * v * inv_p[None, :]) @ contrasts
    delta = np.linalg.lstsq(denom, numer, rcond=None)[0]
    trace, trace_sq = float(np.trace(delta)), float(np.trace(delta @ delta))
    table = np.bincount(cell, minlength=n_rows * n_cols).reshape(n_rows, n_cols)
    pearson = float(chi2_contingency(table, correction=False).statistic)
    out = {
        "pearson": pearson,
        "dof": (n_rows - 1) * (n_cols - 1),
        "n_clusters": g,
        "mean_design_effect": trace / contrasts.shape[1],
    }
    if g < 2 or trace <= 0:
        return {**out, "statistic": None, "df_num": None, "df_den": None, "p_value": None}
    df_num = trace**2 / trace_sq
    df_den = df_num * (g - 1)
    stat = pearson / trace
    return {
        **out,
        "statistic": stat,
        "df_num": df_num,
        "df_den": df_den,
        "p_value": float(f_dist.sf(stat, df_num, df_den)),
    }


def satterthwaite(variances: list[float], dfs: list[int]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of independent variance estimates."""
    num = sum(variances) ** 2
    den = sum(v**2 / d for v, d in zip(variances, dfs) if d > 0)
    return float(num / den) if den > 0 else float(max(min(dfs), 1))


def t_quantile(alpha: float, df: float | None) -> float:
    """Student's t quantile for a two-sided 1 - alpha interval; normal for infinite (None) df, and 1 df below 1.
    (scipy.special's functions: the same numbers as scipy.stats' t.ppf, without its per-call overhead.)"""
    from scipy.special import ndtri, stdtrit

    if df is None or not math.isfinite(df):
        return float(ndtri(1 - alpha / 2))
    return float(stdtrit(max(df, 1.0), 1 - alpha / 2))
