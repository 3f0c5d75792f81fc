"""The alternative annotator test (Calderon, Reichart & Dror, ACL 2025): may the judge stand in for a human?

Written from the paper's procedure. With m human annotators, each one is left out in turn. On every
item the left-out annotator j labelled (and at least one other human did), the judge's alignment
with the remaining humans is compared with j's own alignment with them (alignment: the share of the
remaining humans who gave the same label). W_f = 1 when the judge aligns at least as well, W_h = 1
when j does. With d_i = W_h - W_f, a one-sided paired t-test of

    H0: mean(d) >= epsilon   against   H1: mean(d) < epsilon

asks whether the judge's advantage probability rho_f = mean(W_f) beats j's rho_h = mean(W_h) up to
the cost-benefit margin epsilon (0.2 for crowd workers, 0.1 for skilled annotators, in the paper).
The m p-values are corrected with Benjamini-Yekutieli (dependence between the tests is arbitrary);
the winning rate is the share of annotators whose H0 is rejected at q, and the judge passes when it
is at least 0.5. The average advantage probability (mean rho_f) compares judges.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from scipy.stats import false_discovery_control, ttest_1samp

from judge.core.taxonomy import UNSCORED

MIN_ANNOTATORS = 3
MIN_ITEMS = 30


def _present(value: object) -> bool:
    return value is not None and value == value and str(value) != ""


def one_sided_p(d: np.ndarray, *, epsilon: float) -> tuple[float, float]:
    """(t, p) for H0: mean(d) >= epsilon vs H1: mean(d) < epsilon. With no variance in d the test
    is decided by the mean alone (p = 0 when it is below epsilon, 1 otherwise)."""
    if len(d) < 2:
        return float("nan"), 1.0
    if np.all(d == d[0]):
        return (float("-inf"), 0.0) if d[0] < epsilon else (float("inf"), 1.0)
    res = ttest_1samp(d, popmean=epsilon, alternative="less")
    return float(res.statistic), float(res.pvalue)


def alt_test(
    annotators: Mapping[str, Sequence[object]],
    judge: Sequence[object],
    *,
    epsilon: float = 0.15,
    q: float = 0.05,
) -> dict:
    """Run the test. ``annotators`` maps each human to one label per item (None/'' where they gave
    none); ``judge`` holds the judge's label per item (``unscored`` counts as agreeing with nobody)."""
    names = list(annotators)
    if len(names) < 2:
        raise ValueError("the alternative annotator test needs at least two human annotators")
    humans = {k: list(v) for k, v in annotators.items()}
    judge = list(judge)
    n_items = len(judge)
    per_annotator = {}
    for j in names:
        w_f, w_h = [], []
        for i in range(n_items):
            own = humans[j][i]
            if not _present(own):
                continue
            others = [humans[k][i] for k in names if k != j and _present(humans[k][i])]
            if not others:
                continue
            guess = judge[i] if _present(judge[i]) and judge[i] != UNSCORED else None
            s_f = sum(guess is not None and guess == o for o in others) / len(others)
            s_h = sum(own == o for o in others) / len(others)
            w_f.append(1.0 if s_f >= s_h else 0.0)
            w_h.append(1.0 if s_h >= s_f else 0.0)
        w_f, w_h = np.array(w_f), np.array(w_h)
        t, p = one_sided_p(w_h - w_f, epsilon=epsilon)
        per_annotator[j] = {
            "n_items": int(len(w_f)),
            "rho_judge": float(w_f.mean()) if len(w_f) else float("nan"),
            "rho_human": float(w_h.mean()) if len(w_h) else float("nan"),
            "t": t,
            "p_value": p,
        }
    p_values = np.array([per_annotator[j]["p_value"] for j in names])
    adjusted = false_discovery_control(p_values, method="by")
    for j, p_adj in zip(names, adjusted):
        per_annotator[j]["p_adjusted_by"] = float(p_adj)
        per_annotator[j]["judge_wins"] = bool(p_adj <= q)
    winning_rate = float(np.mean([per_annotator[j]["judge_wins"] for j in names]))
    rhos = [per_annotator[j]["rho_judge"] for j in names if not math.isnan(per_annotator[j]["rho_judge"])]
    warnings = []
    if len(names) < MIN_ANNOTATORS:
        warnings.append(f"only {len(names)} annotators; the test is designed for at least {MIN_ANNOTATORS}")
    few = [j for j in names if per_annotator[j]["n_items"] < MIN_ITEMS]
    if few:
        warnings.append(
            f"fewer than {MIN_ITEMS} items shared with another annotator for: {', '.join(few)}; the t-test is "
            "unreliable"
        )
    passed = winning_rate >= 0.5
    wins = sum(per_annotator[j]["judge_wins"] for j in names)
    reason = (
        f"the judge beats {wins} of {len(names)} annotators (winning rate {winning_rate:.2f} "
        f"{'>=' if passed else '<'} 0.5) at epsilon {epsilon}, BY-corrected q {q}"
    )
    return {
        "epsilon": epsilon,
        "q": q,
        "annotators": per_annotator,
        "winning_rate": winning_rate,
        "average_advantage_probability": float(np.mean(rhos)) if rhos else float("nan"),
        "passed": passed,
        "reason": reason,
        "warnings": warnings,
    }
