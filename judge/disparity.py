"""Quality-of-service disparities: how each category's rate differs across groups."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import binomtest, chi2_contingency
from scipy.stats.contingency import relative_risk

from judge.errors import UserError
from judge.records import require_columns
from judge.taxonomy import UNSCORED, Taxonomy


def wilson_interval(count: int, n: int, *, level: float = 0.95) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    ci = binomtest(count, n).proportion_ci(confidence_level=level, method="wilson")
    return (float(ci.low), float(ci.high))


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def category_rates(labels: Sequence[str], *, categories: Sequence[str]) -> dict[str, dict[str, float]]:
    """Rate of each category among scored labels, with Wilson 95% intervals."""
    scored = [x for x in labels if x != UNSCORED]
    n = len(scored)
    out = {}
    for cat in categories:
        count = sum(1 for x in scored if x == cat)
        low, high = wilson_interval(count, n)
        out[cat] = {"rate": count / n if n else float("nan"), "ci_low": low, "ci_high": high, "n": n, "count": count}
    return out


def canonical_labels(values: pd.Series, taxonomy: Taxonomy, *, column: str) -> list[str]:
    """Labels in canonical form; empty or 'unscored' stay unscored; anything else unknown is an error."""
    out = []
    for raw in values:
        if raw is None or (isinstance(raw, float) and math.isnan(raw)) or str(raw).strip() in ("", UNSCORED):
            out.append(UNSCORED)
            continue
        out.extend(taxonomy.gold([raw], column=column))
    return out


def disparity(
    records: pd.DataFrame,
    *,
    label: str,
    groups: Sequence[str],
    taxonomy: Taxonomy,
    reference: str | None = None,
) -> dict:
    """Per-group category rates, a chi-square test, rate ratios against a reference group, and splits.

    The first of ``groups`` is the primary grouping; each further column splits every primary group.
    """
    if not groups:
        raise UserError("give at least one --group column")
    require_columns(records, [label, *groups], source="records", flag_hint="Fix --label/--group.")
    frame = records[[label, *groups]].copy()
    frame["_label"] = canonical_labels(frame[label], taxonomy, column=label)
    for col in groups:
        frame[col] = frame[col].astype(str)
    cats = taxonomy.labels
    primary = groups[0]
    group_values = sorted(frame[primary].unique())
    reference_note = f"--reference {reference} (given)"
    if reference is None:
        sizes = frame[primary].value_counts()
        largest = sorted(sizes[sizes == sizes.max()].index)
        reference = largest[0]
        reference_note = f"{reference}: the largest group (n = {int(sizes.max())}); pass --reference to choose"
        if len(largest) > 1:
            reference_note = (f"{reference}: tied largest with {', '.join(largest[1:])} (n = {int(sizes.max())} each), first by name; "
                              "the choice is arbitrary: pass --reference")
    elif str(reference) not in group_values:
        raise UserError(f"--reference {reference!r} is not a value of {primary!r}; values: {', '.join(group_values)}")
    reference = str(reference)

    rates = {g: category_rates(frame.loc[frame[primary] == g, "_label"].tolist(), categories=cats) for g in group_values}
    counts = pd.DataFrame({g: {c: rates[g][c]["count"] for c in cats} for g in group_values}).T.loc[group_values, cats]

    tested = [c for c in cats if counts[c].sum() > 0]
    chi = {"statistic": None, "p_value": None, "dof": None, "categories_tested": tested, "min_expected": None}
    if len(tested) >= 2 and len(group_values) >= 2:
        res = chi2_contingency(counts[tested].to_numpy())
        chi.update(statistic=float(res.statistic), p_value=float(res.pvalue), dof=int(res.dof), min_expected=float(res.expected_freq.min()))

    ratios = {}
    ref = rates[reference]
    for g in group_values:
        ratios[g] = {}
        for c in cats:
            a, n1, b, n2 = rates[g][c]["count"], rates[g][c]["n"], ref[c]["count"], ref[c]["n"]
            if n1 == 0 or n2 == 0:
                ratios[g][c] = {"ratio": None, "ci_low": None, "ci_high": None}
                continue
            rr = relative_risk(a, n1, b, n2)
            ci = rr.confidence_interval(0.95)
            ratios[g][c] = {"ratio": _finite(rr.relative_risk), "ci_low": _finite(ci.low), "ci_high": _finite(ci.high)}

    splits = {}
    for col in groups[1:]:
        splits[col] = {
            g: {
                v: category_rates(sub["_label"].tolist(), categories=cats)
                for v, sub in frame[frame[primary] == g].groupby(col, sort=True)
            }
            for g in group_values
        }
    by_other = {col: {v: category_rates(sub["_label"].tolist(), categories=cats) for v, sub in frame.groupby(col, sort=True)} for col in groups[1:]}
    return {
        "label_column": label,
        "group_column": primary,
        "taxonomy": taxonomy.name,
        "categories": cats,
        "n": int(len(frame)),
        "n_unscored": int((frame["_label"] == UNSCORED).sum()),
        "reference": reference,
        "reference_note": reference_note,
        "reference_tie": reference_note.startswith(f"{reference}: tied"),
        "rates": rates,
        "chi_square": chi,
        "rate_ratios": ratios,
        "splits": splits,
        "by": by_other,
    }


def rates_table(rates: dict, categories: Sequence[str], *, digits: int = 3) -> pd.DataFrame:
    """Group x category table of 'rate [low, high]' strings."""
    return pd.DataFrame(
        {c: {g: f"{r[c]['rate']:.{digits}f} [{r[c]['ci_low']:.{digits}f}, {r[c]['ci_high']:.{digits}f}]" if r[c]["n"] else "n/a"
             for g, r in rates.items()} for c in categories}
    ).loc[list(rates)]


def rate_matrix(rates: dict, categories: Sequence[str]) -> np.ndarray:
    return np.array([[rates[g][c]["rate"] for c in categories] for g in rates], dtype=float)
