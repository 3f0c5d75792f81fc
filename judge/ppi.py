"""Prediction-powered group rates: a judge's labels on every output, corrected by a human-labelled subset.

A rate computed from judge labels inherits the judge's errors, and a judge can err more on one group
than another. PPI++ (Angelopoulos, Duchi & Zrnic 2023) keeps the judge's labels for what they are
worth and uses the humans' labels on a random subset to remove their bias: the estimate is unbiased
for the human rate whatever the judge, and its interval is narrower than the humans' alone when the
judge is good. The estimators are ``ppi_py``'s; this module shapes group x category data for them.

Every function here takes indicator arrays (1 when the output is in the category) and returns plain
dicts with 95% intervals unless ``alpha`` says otherwise.
"""
from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np

from judge.disparity import wilson_interval


def t_adjusted_alpha(alpha: float, n: int) -> float:
    """The alpha whose normal quantile equals Student's t quantile with n - 1 degrees of freedom.

    ppi_py's intervals are z-intervals. With the few dozen human labels a group often has, the
    estimated variance makes them too narrow (benchmarks/ppi_coverage.py: 0.89 coverage at 38
    labels); passing this alpha widens them to the t-interval, the usual small-sample correction,
    and changes nothing as n grows.
    """
    from scipy.stats import norm, t

    if n < 2:
        return alpha
    return float(2 * norm.sf(t.ppf(1 - alpha / 2, df=n - 1)))


def _ppi():
    # ppi_py pulls in numba and statsmodels: import it only when a report asks for PPI.
    import ppi_py

    return ppi_py


def _interval(low: float, high: float) -> tuple[float | None, float | None]:
    low, high = float(np.squeeze(low)), float(np.squeeze(high))
    return (low if math.isfinite(low) else None, high if math.isfinite(high) else None)


def _rate_entry(rate: float, low: float, high: float, *, z: float) -> dict:
    """A rate with its CLT interval clipped to [0, 1] (the truth lies there, so coverage is kept) and
    the standard error of the unclipped interval, which gaps combine."""
    low, high = _interval(low, high)
    if low is None or high is None:
        return {"rate": rate, "ci": (None, None), "se": None}
    return {"rate": rate, "ci": (max(0.0, low), min(1.0, high)), "se": (high - low) / (2 * z)}


def _width(ci: tuple[float | None, float | None]) -> float | None:
    return None if ci[0] is None or ci[1] is None else ci[1] - ci[0]


def _weights(w: Sequence[float] | None, n: int) -> np.ndarray | None:
    if w is None:
        return None
    w = np.asarray(w, dtype=float)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError("weights must be one positive finite number per labelled item")
    return w


def effective_n(n: int, classical_ci, ppi_ci) -> float | None:
    """How many human labels a classical interval would need to be as narrow as the PPI one.

    Interval width scales as 1/sqrt(n), so n_eff = n * (classical width / PPI width)^2.
    """
    wc, wp = _width(classical_ci), _width(ppi_ci)
    if wc is None or wp is None or wp <= 0:
        return None
    return float(n * (wc / wp) ** 2)


def ppi_rate(
    y_human: Sequence[float],
    y_judge: Sequence[float],
    y_judge_unlabelled: Sequence[float],
    *,
    weights: Sequence[float] | None = None,
    alpha: float = 0.05,
    small_sample: bool = True,
    lam: float | None = None,
) -> dict:
    """Rate of one category in one group: PPI++, human-only and judge-only, side by side.

    ``y_human``/``y_judge`` are the human's and the judge's indicators on the human-labelled items;
    ``y_judge_unlabelled`` the judge's on the rest of the group. ``weights`` (1 / inclusion
    probability) make a stratified human sample represent the group. ``small_sample`` uses
    t quantiles with n - 1 degrees of freedom for the human-only and PPI intervals (see
    ``t_adjusted_alpha``); ``False`` gives ppi_py's z-intervals unchanged. ``lam`` fixes PPI++'s
    power-tuning parameter (1: plain PPI, 0: human only); None tunes it from the data.
    """
    ppi = _ppi()
    y = np.asarray(y_human, dtype=float)
    yhat = np.asarray(y_judge, dtype=float)
    yhat_u = np.asarray(y_judge_unlabelled, dtype=float)
    n, big_n = len(y), len(yhat_u)
    w = _weights(weights, n)
    judge_all = np.concatenate([yhat, yhat_u])
    count = int(judge_all.sum())
    judge_only = {"rate": count / len(judge_all) if len(judge_all) else None,
                  "ci": _interval(*wilson_interval(count, len(judge_all), level=1 - alpha)) if len(judge_all) else (None, None)}
    out = {"n_human": n, "n_judge_only": big_n, "judge_only": judge_only}
    if n < 2:
        return {**out, "estimable": False, "reason": f"{n} human label(s) in this group; PPI needs at least 2"}
    weighted_mean = float(np.average(y, weights=w)) if w is not None else float(y.mean())
    level_alpha = t_adjusted_alpha(alpha, n) if small_sample else alpha
    z = _z(level_alpha)
    out["human_only"] = _rate_entry(weighted_mean, *ppi.classical_mean_ci(y, w=w, alpha=level_alpha), z=z)
    if big_n == 0:
        return {**out, "estimable": False, "reason": "every output of this group is human-labelled: use the human rate"}
    note = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a constant judge makes lambda 0/0; handled below
        low, high = ppi.ppi_mean_ci(y, yhat, yhat_u, alpha=level_alpha, w=w, lam=lam)
        estimate = float(np.squeeze(ppi.ppi_mean_pointestimate(y, yhat, yhat_u, w=w, lam=lam)))
    if not (math.isfinite(float(np.squeeze(low))) and math.isfinite(estimate)):
        # The judge gives one value to every output of the group: it carries no information, and
        # lambda = 0 (the classical estimate) is what PPI++ tends to anyway.
        low, high = ppi.ppi_mean_ci(y, yhat, yhat_u, alpha=level_alpha, w=w, lam=0)
        estimate = float(np.squeeze(ppi.ppi_mean_pointestimate(y, yhat, yhat_u, w=w, lam=0)))
        note = "judge constant in this group: lambda = 0 (human-only estimate)"
    out["ppi"] = _rate_entry(estimate, low, high, z=z)
    if out["ppi"]["se"] == 0:
        note = "no variation in the human labels or the judge's: the interval has zero width (too few labels to say more)"
    out["effective_n"] = effective_n(n, _se_ci(out["human_only"]), _se_ci(out["ppi"]))
    out["estimable"] = True
    out["note"] = note
    return out


def ppi_gap(group: dict, reference: dict, *, alpha: float = 0.05) -> dict:
    """Rate in a group minus the rate in the reference group, from the two groups' ``ppi_rate`` results.

    The groups are disjoint, so their human-labelled and judge-only outputs are too, and the two
    estimates are independent: the gap's standard error is the root of the sum of their squared
    standard errors (read back from each symmetric CLT interval). This is what ``ppi_ols_ci`` on
    [1, group indicator] estimates, with the power-tuning lambda chosen per group rather than once
    for both (``tests/test_ppi.py`` checks the two agree), and it avoids the numba compilation that
    ``ppi_ols_ci`` costs on every run.
    """
    z = _z(alpha)
    out = {"n_human": group["n_human"] + reference["n_human"], "n_judge_only": group["n_judge_only"] + reference["n_judge_only"]}
    out["judge_only"] = _difference(group["judge_only"], reference["judge_only"], z=z, se=_wald_se(group, reference))
    if not (group["estimable"] and reference["estimable"]):
        missing = [name for name, r in (("the group", group), ("the reference", reference)) if not r["estimable"]]
        return {**out, "estimable": False, "reason": f"no PPI rate for {' and '.join(missing)}"}
    out["human_only"] = _difference(group["human_only"], reference["human_only"], z=z)
    out["ppi"] = _difference(group["ppi"], reference["ppi"], z=z)
    out["effective_n"] = effective_n(out["n_human"], out["human_only"]["ci"], out["ppi"]["ci"])
    out["estimable"] = True
    out["note"] = group.get("note") or reference.get("note")
    return out


def _z(alpha: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1 - alpha / 2))


def _se_ci(entry: dict) -> tuple[float | None, float | None]:
    """The unclipped interval, for comparing widths."""
    if entry.get("se") is None:
        return (None, None)
    return (entry["rate"] - entry["se"], entry["rate"] + entry["se"])


def _wald_se(group: dict, reference: dict) -> float | None:
    ng, nr = group["n_human"] + group["n_judge_only"], reference["n_human"] + reference["n_judge_only"]
    pg, pr = group["judge_only"]["rate"], reference["judge_only"]["rate"]
    if not ng or not nr or pg is None or pr is None:
        return None
    return math.sqrt(pg * (1 - pg) / ng + pr * (1 - pr) / nr)


def _difference(a: dict, b: dict, *, z: float, se: float | None = None) -> dict:
    if a.get("rate") is None or b.get("rate") is None:
        return {"gap": None, "ci": (None, None)}
    if se is None:
        if a.get("se") is None or b.get("se") is None:
            return {"gap": a["rate"] - b["rate"], "ci": (None, None)}
        se = math.sqrt(a["se"] ** 2 + b["se"] ** 2)
    gap = a["rate"] - b["rate"]
    return {"gap": gap, "ci": (gap - z * se, gap + z * se), "se": se}


def ppi_by_group(
    judge_labels: Sequence[str],
    human_labels: Sequence[str | None],
    groups: Sequence[str],
    *,
    categories: Sequence[str],
    reference: str,
    weights: Sequence[float] | None = None,
    alpha: float = 0.05,
    lam: float | None = 1.0,
) -> dict:
    """PPI rates for every group x category, and every group's gap to ``reference``.

    ``lam`` defaults to 1 (plain PPI): with the few dozen human labels a group usually has, the
    power-tuning lambda estimated from them is itself noisy and the intervals undercover
    (benchmarks/ppi_coverage.py, 500 draws of 300 labels: worst refusal coverage 0.916 tuned vs
    0.970 at lambda = 1, for two different judges). ``None`` tunes it (PPI++), for large samples.

    One entry per output: the judge's label (a category or ``unscored``, which counts as in no
    category, so PPI's correction absorbs it), the human label or None where no human labelled it,
    its group, and (for human-labelled outputs) its sampling weight.
    """
    judge_labels = np.asarray(list(judge_labels), dtype=object)
    human = np.asarray([h if h is not None else "" for h in human_labels], dtype=object)
    groups = np.asarray([str(g) for g in groups], dtype=object)
    labelled = human != ""
    w_all = None if weights is None else np.asarray(weights, dtype=float)
    group_values = sorted(set(groups))
    rates, gaps, not_estimable = {}, {}, []
    for g in group_values:
        in_g = groups == g
        lab, unl = in_g & labelled, in_g & ~labelled
        w = None if w_all is None else w_all[lab]
        rates[g] = {
            c: ppi_rate(human[lab] == c, judge_labels[lab] == c, judge_labels[unl] == c, weights=w, alpha=alpha, lam=lam)
            for c in categories
        }
        if not rates[g][categories[0]]["estimable"]:
            not_estimable.append(g)
    if reference in rates:
        gaps = {g: {c: ppi_gap(rates[g][c], rates[reference][c], alpha=alpha) for c in categories} for g in group_values if g != reference}
    return {
        "lambda": "tuned per group (PPI++)" if lam is None else lam,
        "method": "PPI (ppi_py.ppi_mean_ci, lambda as given) per group; gaps: difference of the two independent group estimates; "
        "human-only: ppi_py.classical_mean_ci on the human subset; judge-only: Wilson (rates) / Wald (gaps) on judge labels",
        "alpha": alpha,
        "reference": reference,
        "n_human": int(labelled.sum()),
        "n_outputs": int(len(judge_labels)),
        "weighted": weights is not None,
        "rates": rates,
        "gaps": gaps,
        "not_estimable": not_estimable,
    }
