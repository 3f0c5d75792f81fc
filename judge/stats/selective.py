"""Selective labelling with a guarantee: the confidence threshold above which a judge's labels are kept.

From a calibration sample (the judge's confidence and whether its label matched the human one), choose the
lowest threshold lam such that, with probability at least 1 - delta over the calibration sample, the risk of
the kept outputs (confidence >= lam) is at most ``target_risk`` (Learn then Test: Angelopoulos, Bates, Candes,
Jordan & Lei 2021; the selective-evaluation use: Jung, Brahman & Choi 2025, *Trust or Escalate*, ICLR).

Each threshold of a descending grid is a null hypothesis H_lam: risk(lam) > target_risk, where
risk(lam) = P(judge wrong | confidence >= lam). Given n(lam) kept calibration outputs, their errors are
Binomial(n(lam), risk(lam)), so p(lam) = P(Binomial(n, target_risk) <= errors) (scipy's exact binomial tail:
the Clopper-Pearson test) is a valid p-value. Fixed-sequence testing rejects H_lam from the highest threshold
down, each at level delta, and stops at the first it cannot reject: the family-wise error is at most delta
without any correction for the grid's size, and the chosen threshold is the last one rejected.

The grid is built from the confidences alone, never from the correctness: thresholds at evenly spaced
quantiles of the calibration confidences, starting where at least ``min_kept(target_risk, delta)`` outputs are
kept (fewer could not reach p <= delta even with no error, and would stop the sequence before it began).
Given the confidences, the errors are independent Bernoulli draws, whose count's lower tail lies under the
binomial's of the same mean (Hoeffding 1956), so the p-values stay valid (tests/test_selective.py checks the
guarantee by simulation).

Two risks:

- ``accuracy`` (the default): 1 - agreement with the human label over all kept outputs, one threshold. This is
  the risk *Trust or Escalate* guarantees (human agreement on the non-abstained outputs) and the one the
  agreement reports already state (accuracy on scored outputs), so the guarantee reads as "the kept labels
  agree with people at least 1 - target of the time".
- ``precision``: 1 - precision of each predicted category, one threshold per category, each tested at
  delta / K (K the taxonomy's categories: Bonferroni, fixed before the data), so every category's precision
  holds together. It protects rare categories whose errors an overall accuracy hides, at the cost of coverage.

Every function takes arrays and returns plain dicts; a threshold that no grid point reaches is None with the
reason (then every output is escalated), never a made-up one.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

ACCURACY, PRECISION = "accuracy", "precision"
RISKS = (ACCURACY, PRECISION)
DEFAULT_GRID = 200  # thresholds in the grid (quantiles of the calibration confidences)


def min_kept(target_risk: float, delta: float) -> int:
    """The fewest kept outputs whose p-value can reach delta: (1 - target)^n <= delta with no error."""
    return max(1, math.ceil(math.log(delta) / math.log1p(-target_risk)))


def p_values(errors: np.ndarray, kept: np.ndarray, target_risk: float) -> np.ndarray:
    """P(Binomial(kept, target_risk) <= errors) for each threshold (1 where nothing is kept)."""
    from scipy.stats import binom

    errors, kept = np.asarray(errors), np.asarray(kept)
    return np.where(kept > 0, binom.cdf(errors, np.maximum(kept, 1), target_risk), 1.0)


def upper_bound(errors: int, kept: int, delta: float) -> float | None:
    """The one-sided (1 - delta) Clopper-Pearson upper bound of the risk of ``errors`` in ``kept`` outputs."""
    from scipy.stats import beta

    if kept <= 0:
        return None
    return 1.0 if errors >= kept else float(beta.ppf(1 - delta, errors + 1, kept - errors))


def threshold_grid(confidence: np.ndarray, *, target_risk: float, delta: float, size: int = DEFAULT_GRID) -> np.ndarray:
    """Descending thresholds from the confidences alone: ``size`` evenly spaced quantiles, from the one keeping
    ``min_kept`` outputs down to the lowest confidence (distinct values only)."""
    conf = np.asarray(confidence, dtype=float)
    conf = np.sort(conf[np.isfinite(conf)])[::-1]  # an unscored output (no confidence) is in no grid point
    first = min_kept(target_risk, delta)
    if len(conf) < first:
        return np.array([])
    ranks = np.unique(np.linspace(first - 1, len(conf) - 1, size).round().astype(int))
    return np.unique(conf[ranks])[::-1]


def fixed_sequence(
    confidence: Sequence[float],
    wrong: Sequence[bool],
    *,
    target_risk: float,
    delta: float,
    grid: np.ndarray | None = None,
    grid_size: int = DEFAULT_GRID,
) -> dict:
    """The lowest threshold of the descending ``grid`` that fixed-sequence testing reaches (module docstring).

    Returns the threshold (None: not even the first grid point could be shown to meet the target; escalate
    everything), the calibration outputs kept there, their errors, the calibration coverage and risk, the
    Clopper-Pearson upper bound of the risk at level 1 - delta, the p-value, and how many thresholds were tested.
    """
    conf = np.asarray(confidence, dtype=float)
    wrong = np.asarray(wrong, dtype=bool)
    if conf.shape != wrong.shape:
        raise ValueError(f"confidence and wrong differ in length ({len(conf)} vs {len(wrong)})")
    if not (0 < target_risk < 1) or not (0 < delta < 1):
        raise ValueError("target_risk and delta must lie in (0, 1)")
    n = len(conf)
    if grid is None:
        grid = threshold_grid(conf, target_risk=target_risk, delta=delta, size=grid_size)
    grid = np.asarray(grid, dtype=float)
    base = {"n": n, "target_risk": target_risk, "delta": delta, "grid_size": int(len(grid))}
    if not len(grid):
        need = min_kept(target_risk, delta)
        return {
            **base,
            "threshold": None,
            "tested": 0,
            "reason": f"{n} calibration outputs: at least {need} are needed to show a risk of at most "
            f"{target_risk:g} at delta {delta:g}, even with no error",
        }
    # kept and errors at each threshold, vectorised: confidences sorted once
    order = np.argsort(-conf, kind="stable")
    sorted_conf, sorted_wrong = conf[order], wrong[order]
    kept = np.searchsorted(-sorted_conf, -grid, side="right")  # count of conf >= lam
    errors = np.concatenate([[0], np.cumsum(sorted_wrong)])[kept]
    p = p_values(errors, kept, target_risk)
    failed = np.flatnonzero(p > delta)
    last = (failed[0] if len(failed) else len(grid)) - 1  # the last rejected in the sequence
    tested = int(min(len(grid), last + 2))
    if last < 0:
        return {
            **base,
            "threshold": None,
            "tested": tested,
            "p_value": float(p[0]),
            "reason": f"at the highest threshold tested ({grid[0]:.4g}: {int(kept[0])} kept, {int(errors[0])} wrong) "
            f"the risk cannot be shown to be at most {target_risk:g} (p {p[0]:.3g} > delta {delta:g})",
        }
    k, e = int(kept[last]), int(errors[last])
    return {
        **base,
        "threshold": float(grid[last]),
        "tested": tested,
        "kept": k,
        "errors": e,
        "coverage": k / n if n else None,
        "risk": e / k,
        "risk_upper": upper_bound(e, k, delta),
        "p_value": float(p[last]),
    }


def selective_threshold(
    confidence: Sequence[float],
    predicted: Sequence[str],
    gold: Sequence[str],
    *,
    labels: Sequence[str],
    target_risk: float,
    delta: float,
    risk: str = ACCURACY,
    grid_size: int = DEFAULT_GRID,
) -> dict:
    """The threshold(s) for the judge's ``predicted`` labels against the humans' ``gold`` (both canonical,
    ``labels`` the taxonomy's categories, fixed before the data: the Bonferroni split of ``precision`` counts
    them all). ``accuracy``: one threshold (``fixed_sequence``'s dict). ``precision``: ``by_category`` holds
    one such dict per category (threshold None: every output predicted so is escalated), each at delta / K."""
    if risk not in RISKS:
        raise ValueError(f"risk must be one of {RISKS}, got {risk!r}")
    conf = np.asarray(confidence, dtype=float)
    pred = np.asarray([str(x) for x in predicted], dtype=object)
    wrong = pred != np.asarray([str(x) for x in gold], dtype=object)
    if risk == ACCURACY:
        return {
            "risk": ACCURACY,
            **fixed_sequence(conf, wrong, target_risk=target_risk, delta=delta, grid_size=grid_size),
        }
    per = delta / len(labels)
    by_category = {
        c: fixed_sequence(conf[pred == c], wrong[pred == c], target_risk=target_risk, delta=per, grid_size=grid_size)
        for c in labels
    }
    return {
        "risk": PRECISION,
        "n": len(conf),
        "target_risk": target_risk,
        "delta": delta,
        "delta_per_category": per,
        "by_category": by_category,
    }


def kept_mask(
    confidence: Sequence[float], predicted: Sequence[str], thresholds: dict[str, float | None] | float | None
) -> np.ndarray:
    """Which outputs a threshold keeps: one threshold for all (None: none kept), or one per predicted category
    (a category without one, or None, is escalated). A missing (NaN) confidence is never kept."""
    conf = np.asarray(confidence, dtype=float)
    if not isinstance(thresholds, dict):
        return conf >= thresholds if thresholds is not None else np.zeros(len(conf), dtype=bool)
    pred = np.asarray([str(x) for x in predicted], dtype=object)
    lam = np.array([thresholds.get(p) if thresholds.get(p) is not None else np.inf for p in pred], dtype=float)
    return conf >= lam
