"""How a judge's errors fall on each group: the check behind any per-group number a judge produced.

A judge with a good overall kappa can still over-report refusals for one group and under-report
them for another; then a disparity computed from its labels is partly the judge's. For each group:
Cohen's kappa with a bootstrap interval, accuracy, per-category false-positive and false-negative
rates against the human labels with Wilson intervals, and the judge's rate minus the humans' rate
with a paired interval. Across groups, the test is on agreement: Fleiss' chi-square for equal
kappas (Fleiss 1981, *Statistical Methods for Rates and Proportions*, 2nd ed., 13.4), each group's
kappa weighted by its inverse bootstrap variance. Accuracy is tested too, but a majority class
inflates it (two groups with accuracy 0.85 can have kappas 0.70 and 0.32), so it is not the headline.

With ``clusters`` (e.g. the prompt, when each prompt was sampled several times), outputs of one
cluster are resampled together, the paired interval is cluster-robust (CR1, Student t with G - 1
degrees of freedom) and the Wilson intervals use the design effect's effective sample size.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.stats import chi2, chi2_contingency, norm
from scipy.stats import t as student_t
from statsmodels.stats.proportion import proportion_confint

from judge.stats.metrics import cohen_kappa, flat_interval, one_value_reason

# A group enters the test of equal kappas with at least this many independent units (clusters, or
# items when outputs are independent): below it a bootstrap variance of kappa is noise.
MIN_UNITS_FOR_TEST = 10


def kappa_from_counts(counts: np.ndarray) -> np.ndarray:
    """Cohen's kappa of confusion matrices shaped (..., K, K): (p_o - p_e) / (1 - p_e), nan where
    both raters used one category only (p_e = 1), as scikit-learn returns."""
    counts = np.asarray(counts, dtype=float)
    n = counts.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        p_o = np.trace(counts, axis1=-2, axis2=-1) / n
        p_e = (counts.sum(axis=-1) * counts.sum(axis=-2)).sum(axis=-1) / n**2
        kappa = (p_o - p_e) / (1 - p_e)
    return np.where((n > 0) & (1 - p_e > 1e-12), kappa, np.nan)


def cluster_confusions(gold: np.ndarray, pred: np.ndarray, clusters: np.ndarray, k: int) -> np.ndarray:
    """One K x K confusion matrix (rows gold, columns pred; category indices) per cluster: (G, K, K)."""
    _, inverse = np.unique(clusters, return_inverse=True)
    out = np.zeros((int(inverse.max()) + 1 if len(inverse) else 0, k * k))
    np.add.at(out, (inverse, gold * k + pred), 1)
    return out.reshape(-1, k, k)


def bootstrap_confusions(per_cluster: np.ndarray, *, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Confusion matrices of ``n_boot`` cluster-bootstrap resamples: multinomial cluster weights times
    each cluster's counts, so a resample costs a matrix product instead of a loop over items."""
    g = len(per_cluster)
    weights = rng.multinomial(g, np.full(g, 1 / g), size=n_boot)
    return (weights @ per_cluster.reshape(g, -1)).reshape(n_boot, *per_cluster.shape[1:])


def kappa_interval(per_cluster: np.ndarray, *, n_boot: int, rng: np.random.Generator, alpha: float) -> dict:
    """Percentile interval and standard error of kappa over cluster-bootstrap resamples."""
    if n_boot <= 0 or len(per_cluster) == 0:
        return {"ci": (None, None), "se": None}
    kappas = kappa_from_counts(bootstrap_confusions(per_cluster, n_boot=n_boot, rng=rng))
    kappas = kappas[np.isfinite(kappas)]
    if kappas.size < 2:
        return {"ci": (None, None), "se": None}
    low, high = np.percentile(kappas, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"ci": (float(low), float(high)), "se": float(kappas.std(ddof=1))}


def rate_interval(hits: np.ndarray, totals: np.ndarray, *, clustered: bool, alpha: float) -> dict:
    """A share sum(hits) / sum(totals) with a Wilson interval (never zero width at 0 or n events).

    Clustered: the Wilson interval on the effective sample size n / deff, the design effect being the
    cluster-robust variance of the ratio over the binomial one (at least 1). At a share of 0 or 1 the
    design effect cannot be estimated and each cluster counts as one observation."""
    keep = totals > 0
    hits, totals = hits[keep], totals[keep]
    n = float(totals.sum())
    if n == 0:
        return {"rate": None, "ci": (None, None), "n_effective": 0.0}
    rate = float(hits.sum() / n)
    n_eff = n
    if clustered and len(totals) >= 2:
        if 0 < rate < 1:
            g = len(totals)
            robust = g / (g - 1) * float(((hits - rate * totals) ** 2).sum()) / n**2
            n_eff = n / max(1.0, robust / (rate * (1 - rate) / n))
        else:
            n_eff = float(len(totals))
    low, high = proportion_confint(rate * n_eff, n_eff, alpha=alpha, method="wilson")
    return {"rate": rate, "ci": (float(low), float(high)), "n_effective": n_eff}


def paired_rate_difference(
    pred_in: np.ndarray, gold_in: np.ndarray, *, alpha: float = 0.05, clusters: np.ndarray | None = None
) -> dict:
    """Judge rate minus human rate on the same items: the mean of d_i = 1[pred=c] - 1[gold=c], with a
    normal interval on the paired differences (they are not independent samples); with clusters, a
    cluster-robust (CR1) standard error and t with G - 1 degrees of freedom."""
    d = pred_in.astype(float) - gold_in.astype(float)
    n = len(d)
    if n == 0:
        return {"difference": None, "ci": (None, None)}
    mean = float(d.mean())
    if clusters is not None and len(set(clusters)) < n:
        _, inverse = np.unique(clusters, return_inverse=True)
        g = int(inverse.max()) + 1
        sums = np.bincount(inverse, weights=d - mean, minlength=g)
        se = math.sqrt(g / (g - 1) * float((sums**2).sum())) / n if g > 1 else float("nan")
        q = float(student_t.ppf(1 - alpha / 2, g - 1)) if g > 1 else float("nan")
    else:
        se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
        q = float(norm.ppf(1 - alpha / 2))
    ci = (mean - q * se, mean + q * se) if math.isfinite(se) else (None, None)
    return {"difference": mean, "ci": ci}


def kappa_homogeneity(groups: dict[str, dict]) -> dict:
    """Fleiss' chi-square for equal kappas: Q = sum_g w_g (kappa_g - kappa_bar)^2 with w_g = 1 / SE_g^2
    and kappa_bar the w-weighted mean; Q ~ chi-square with (groups - 1) degrees of freedom.

    ``groups`` maps a group to its ``cohen_kappa``, ``cohen_kappa_se`` and ``n_units``; groups without a
    kappa, an SE above zero, or MIN_UNITS_FOR_TEST units are left out and named."""
    used, left_out = {}, {}
    for g, r in groups.items():
        kappa, se = r.get("cohen_kappa"), r.get("cohen_kappa_se")
        if kappa is None or not math.isfinite(kappa):
            left_out[g] = "kappa undefined (one category only)"
        elif r["n_units"] < MIN_UNITS_FOR_TEST:
            left_out[g] = f"{r['n_units']} independent units, fewer than {MIN_UNITS_FOR_TEST}"
        elif se is None or not se > 0:
            left_out[g] = "no bootstrap standard error (--bootstrap 0, or no variation)"
        else:
            used[g] = (kappa, se)
    test = {
        "method": "Fleiss' chi-square for equal kappas across groups, inverse-variance weights from the bootstrap SEs",
        "statistic": None,
        "dof": None,
        "p_value": None,
        "pooled_kappa": None,
        "groups_tested": sorted(used),
        "groups_left_out": left_out,
    }
    if len(used) < 2:
        return test
    kappa = np.array([v[0] for v in used.values()])
    weight = 1 / np.array([v[1] for v in used.values()]) ** 2
    pooled = float((weight * kappa).sum() / weight.sum())
    q = float((weight * (kappa - pooled) ** 2).sum())
    return {
        **test,
        "statistic": q,
        "dof": len(used) - 1,
        "p_value": float(chi2.sf(q, len(used) - 1)),
        "pooled_kappa": pooled,
    }


def accuracy_test(table: list[list[int]]) -> dict:
    """Chi-square of independence on (correct, incorrect) x group: does the judge err more often on some groups?"""
    test = {
        "method": "chi-square test of independence on (correct, incorrect) x group, scored outputs; compares accuracy, "
        "which a majority class inflates (see kappa_test for agreement)",
        "statistic": None,
        "p_value": None,
        "dof": None,
    }
    counts = np.array(table)
    if len(counts) >= 2 and counts.sum(axis=0).min() > 0:
        res = chi2_contingency(counts)
        test.update(statistic=float(res.statistic), p_value=float(res.pvalue), dof=int(res.dof))
    return test


def category_errors(
    per_cluster: np.ndarray,
    gold_in: np.ndarray,
    pred_in: np.ndarray,
    c: int,
    *,
    clustered: bool,
    clusters: np.ndarray | None,
    alpha: float,
) -> dict:
    """One category within one group: rates, FPR/FNR with intervals, judge minus human."""
    n = len(gold_in)
    in_gold = per_cluster[:, c, :].sum(axis=1)
    in_pred = per_cluster[:, :, c].sum(axis=1)
    both = per_cluster[:, c, c]
    size = per_cluster.sum(axis=(1, 2))
    # P(judge says c | human says not c) and P(judge says not c | human says c)
    fpr = rate_interval(in_pred - both, size - in_gold, clustered=clustered, alpha=alpha)
    fnr = rate_interval(in_gold - both, in_gold, clustered=clustered, alpha=alpha)
    return {
        "human_rate": float(gold_in.mean()) if n else None,
        "judge_rate": float(pred_in.mean()) if n else None,
        "false_positive_rate": fpr["rate"],
        "false_positive_ci": fpr["ci"],
        "false_negative_rate": fnr["rate"],
        "false_negative_ci": fnr["ci"],
        "judge_minus_human": paired_rate_difference(
            pred_in, gold_in, alpha=alpha, clusters=clusters if clustered else None
        ),
    }


def judge_error_by_group(
    gold: Sequence[str],
    pred: Sequence[str],
    groups: Sequence[object],
    *,
    labels: Sequence[str],
    alpha: float = 0.05,
    clusters: Sequence[object] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Per-group agreement and error of ``pred`` (judge; ``unscored`` allowed) against ``gold`` (human).

    ``clusters`` (one code per item; None: every item its own) are resampled whole by the bootstrap.
    """
    labels = list(labels)
    index = {c: i for i, c in enumerate(labels)}
    gold = np.asarray(list(gold), dtype=object)
    pred = np.asarray(list(pred), dtype=object)
    groups = np.asarray([str(g) for g in groups], dtype=object)
    units = (
        np.asarray([str(c) for c in clusters], dtype=object)
        if clusters is not None
        else np.arange(len(gold)).astype(str)
    )
    rng = np.random.default_rng(seed)
    per_group, table = {}, []
    for g in sorted(set(groups)):
        in_g = groups == g
        scored = in_g & np.isin(pred, labels)
        gi = np.array([index[x] for x in gold[scored]], dtype=int)
        pi = np.array([index[x] for x in pred[scored]], dtype=int)
        n = int(scored.sum())
        correct = int((gi == pi).sum())
        table.append([correct, n - correct])
        per_cluster = cluster_confusions(gi, pi, units[scored], len(labels))
        clustered = clusters is not None and len(per_cluster) < n
        interval = kappa_interval(per_cluster, n_boot=n_boot, rng=rng, alpha=alpha)
        # a judge predicting one class within the group: kappa 0 in every resample, a zero-width interval
        kappa_ci, kappa_ci_reason = flat_interval(interval["ci"], one_value_reason(gold[scored], pred[scored]))
        per_group[g] = {
            "n": int(in_g.sum()),
            "n_scored": n,
            "n_unscored": int(in_g.sum()) - n,
            "n_units": len(per_cluster),
            "cohen_kappa": cohen_kappa(gold[scored], pred[scored], labels=labels),
            "cohen_kappa_ci": kappa_ci,
            **({"cohen_kappa_ci_reason": kappa_ci_reason} if kappa_ci_reason else {}),
            "cohen_kappa_se": interval["se"],
            "accuracy": correct / n if n else float("nan"),
            "categories": {
                c: category_errors(
                    per_cluster, gi == j, pi == j, j, clustered=clustered, clusters=units[scored], alpha=alpha
                )
                for j, c in enumerate(labels)
            },
        }
    unit = "clusters (whole clusters resampled)" if clusters is not None else "items"
    return {
        "alpha": alpha,
        "intervals": {
            "kappa": f"percentile bootstrap over {unit}, {n_boot} resamples, seed {seed}",
            "false_positive_negative_rates": "Wilson score"
            + (" on the effective n (n / design effect)" if clusters is not None else ""),
            "judge_minus_human": "paired, "
            + ("cluster-robust (CR1) SE, t with clusters - 1 dof" if clusters is not None else "normal"),
        },
        "groups": per_group,
        "kappa_test": kappa_homogeneity(per_group),
        "error_rate_test": accuracy_test(table),
    }
