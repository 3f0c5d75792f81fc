"""How a judge's errors fall on each group: the check behind any per-group number a judge produced.

A judge with a good overall kappa can still over-report refusals for one group and under-report
them for another; then a disparity computed from its labels is partly the judge's. For each group:
kappa, accuracy, per-category false-positive and false-negative rates against the human labels,
and the judge's rate minus the humans' rate with a paired interval; across groups, a chi-square
test of whether the judge is wrong more often on some groups than on others.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.stats import chi2_contingency, norm

from judge.metrics import cohen_kappa
from judge.taxonomy import UNSCORED


def paired_rate_difference(pred_in: np.ndarray, gold_in: np.ndarray, *, alpha: float = 0.05) -> dict:
    """Judge rate minus human rate on the same items: the mean of d_i = 1[pred=c] - 1[gold=c], with a
    normal interval on the paired differences (they are not independent samples)."""
    d = pred_in.astype(float) - gold_in.astype(float)
    n = len(d)
    if n == 0:
        return {"difference": None, "ci": (None, None)}
    mean = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    z = float(norm.ppf(1 - alpha / 2))
    ci = (mean - z * se, mean + z * se) if math.isfinite(se) else (None, None)
    return {"difference": mean, "ci": ci}


def judge_error_by_group(
    gold: Sequence[str],
    pred: Sequence[str],
    groups: Sequence[object],
    *,
    labels: Sequence[str],
    alpha: float = 0.05,
) -> dict:
    """Per-group agreement and error of ``pred`` (judge; ``unscored`` allowed) against ``gold`` (human)."""
    labels = list(labels)
    gold = np.asarray(list(gold), dtype=object)
    pred = np.asarray(list(pred), dtype=object)
    groups = np.asarray([str(g) for g in groups], dtype=object)
    per_group = {}
    table = []
    for g in sorted(set(groups)):
        in_g = groups == g
        scored = in_g & (pred != UNSCORED)
        gg, pp = gold[scored], pred[scored]
        n = int(scored.sum())
        correct = int((gg == pp).sum())
        table.append([correct, n - correct])
        categories = {}
        for c in labels:
            is_gold, is_pred = gg == c, pp == c
            negatives, positives = int((~is_gold).sum()), int(is_gold.sum())
            categories[c] = {
                "human_rate": float(is_gold.mean()) if n else None,
                "judge_rate": float(is_pred.mean()) if n else None,
                # P(judge says c | human says not c) and P(judge says not c | human says c)
                "false_positive_rate": float((is_pred & ~is_gold).sum() / negatives) if negatives else None,
                "false_negative_rate": float((~is_pred & is_gold).sum() / positives) if positives else None,
                "judge_minus_human": paired_rate_difference(is_pred, is_gold, alpha=alpha),
            }
        per_group[g] = {
            "n": int(in_g.sum()),
            "n_scored": n,
            "n_unscored": int(in_g.sum()) - n,
            "cohen_kappa": cohen_kappa(gg, pp, labels=labels),
            "accuracy": correct / n if n else float("nan"),
            "categories": categories,
        }
    test = {"statistic": None, "p_value": None, "dof": None}
    counts = np.array(table)
    if len(counts) >= 2 and counts.sum(axis=0).min() > 0:
        res = chi2_contingency(counts)
        test = {"statistic": float(res.statistic), "p_value": float(res.pvalue), "dof": int(res.dof)}
    return {
        "alpha": alpha,
        "groups": per_group,
        "error_rate_test": {
            "method": "chi-square test of independence on (correct, incorrect) x group, scored outputs",
            **test,
        },
    }
