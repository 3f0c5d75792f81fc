"""Quality-of-service disparities: how each category's rate differs across groups."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import binomtest, chi2_contingency

from judge.core.errors import UserError, clip, short_list
from judge.core.records import MISSING_GROUP, require_columns
from judge.core.taxonomy import ESCALATE, UNSCORED, Taxonomy
from judge.stats import clustered, estimability
from judge.stats.multiplicity import Family


def wilson_interval(count: int, n: int, *, level: float = 0.95) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    ci = binomtest(count, n).proportion_ci(confidence_level=level, method="wilson")
    return (float(ci.low), float(ci.high))


def _finite(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def category_rates(
    labels: Sequence[str], *, categories: Sequence[str], clusters: Sequence | None = None
) -> dict[str, dict[str, float]]:
    """Rate of each category among scored labels, with 95% intervals: Wilson, or with ``clusters`` (a code per
    label) the clustered Wilson interval (judge.stats.clustered). Each entry says whether the group is estimable
    under judge.stats.estimability's rule, from its number of scored outputs (and clusters)."""
    labels = np.asarray(list(labels), dtype=object)
    scored = labels != UNSCORED
    n = int(scored.sum())
    codes = None if clusters is None else clustered.codes(np.asarray(clusters, dtype=object)[scored])
    g = None if codes is None else clustered.n_clusters(codes)
    reason = estimability.check(n, g, what="labelled outputs")
    out = {}
    for cat in categories:
        hit = labels[scored] == cat
        count = int(hit.sum())
        entry = {"rate": count / n if n else float("nan"), "n": n, "count": count, "estimable": reason is None}
        if codes is None:
            entry["ci_low"], entry["ci_high"] = wilson_interval(count, n)
        else:
            r = (
                clustered.proportion(hit, codes)
                if n
                else {"ci": (float("nan"), float("nan")), "variance": float("nan")}
            )
            entry.update(ci_low=r["ci"][0], ci_high=r["ci"][1], variance=r["variance"], n_clusters=g)
        if reason:
            entry["reason"] = reason
        out[cat] = entry
    return out


def canonical_labels(values: pd.Series, taxonomy: Taxonomy, *, column: str) -> list[str]:
    """Labels in canonical form; empty or 'unscored' stay unscored, 'escalate' (a selective judge's: for people)
    stays escalate; anything else unknown is an error."""
    out = []
    for raw in values:
        if raw is None or (isinstance(raw, float) and math.isnan(raw)) or str(raw).strip() in ("", UNSCORED):
            out.append(UNSCORED)
            continue
        if str(raw).strip() == ESCALATE:
            out.append(ESCALATE)
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
    clusters: Sequence | None = None,
    adjust: bool = True,
) -> dict:
    """Per-group category rates, a chi-square test, rate ratios against a reference group, and splits.

    The first of ``groups`` is the primary grouping; each further column splits every primary group.
    ``clusters`` (one value per record) makes every interval and the test cluster-robust; ``adjust``
    makes the rate-ratio intervals simultaneous when there are more than 5 (judge.stats.multiplicity).
    """
    if not groups:
        raise UserError("give at least one --group column")
    require_columns(records, [label, *groups], source="records", flag_hint="Fix --label/--group.")
    frame = records[[label, *groups]].copy()
    frame["_label"] = canonical_labels(frame[label], taxonomy, column=label)
    escalated = frame["_label"] == ESCALATE  # outside the judge's rates like unscored, counted apart
    frame.loc[escalated, "_label"] = UNSCORED
    for col in groups:
        frame[col] = frame[col].astype(str)
    codes = None if clusters is None else clustered.codes(clusters)
    frame["_cluster"] = codes if codes is not None else 0
    cats = taxonomy.labels
    primary = groups[0]
    group_values = sorted(frame[primary].unique())
    reference, reference_note = _reference(frame[primary], reference, group_values, primary)

    def rates_of(sub: pd.DataFrame) -> dict:
        return category_rates(
            sub["_label"].tolist(), categories=cats, clusters=None if codes is None else sub["_cluster"].to_numpy()
        )

    members = {g: frame[frame[primary] == g] for g in group_values}
    rates = {g: rates_of(members[g]) for g in group_values}
    counts = pd.DataFrame({g: {c: rates[g][c]["count"] for c in cats} for g in group_values}).T.loc[group_values, cats]
    chi = chi_square(frame, counts, cats, group_values, primary, clustered_by=codes is not None)
    ratios, family = rate_ratios(rates, members, reference, cats, clustered_by=codes is not None, adjust=adjust)
    splits = {
        col: {g: {v: rates_of(sub) for v, sub in members[g].groupby(col, sort=True)} for g in group_values}
        for col in groups[1:]
    }
    by_other = {col: {v: rates_of(sub) for v, sub in frame.groupby(col, sort=True)} for col in groups[1:]}
    return {
        "label_column": label,
        "group_column": primary,
        "taxonomy": taxonomy.name,
        "categories": cats,
        "n": int(len(frame)),
        "n_unscored": int((frame["_label"] == UNSCORED).sum() - escalated.sum()),
        **({"n_escalated": int(escalated.sum())} if escalated.any() else {}),
        "reference": reference,
        "reference_note": reference_note,
        "reference_tie": reference_note.startswith(f"{reference}: tied"),
        "estimability": estimability.RULE,
        "not_estimable": {g: r[cats[0]]["reason"] for g, r in rates.items() if not r[cats[0]]["estimable"]},
        "rates": rates,
        "chi_square": chi,
        "rate_ratios": ratios,
        "rate_ratio_intervals": family.as_dict(p_values=False),
        "splits": splits,
        "by": by_other,
    }


def _reference(values: pd.Series, reference: str | None, group_values: list[str], primary: str) -> tuple[str, str]:
    if reference is None:
        sizes = values.value_counts()
        if len(sizes) > 1:  # rows without metadata are no group to compare with: never the default reference
            sizes = sizes.drop(MISSING_GROUP, errors="ignore")
        largest = sorted(sizes[sizes == sizes.max()].index)
        note = f"{largest[0]}: the largest group (n = {int(sizes.max())}); pass --reference to choose"
        if len(largest) > 1:
            note = (
                f"{largest[0]}: tied largest with {', '.join(largest[1:])} (n = {int(sizes.max())} each), first by "
                "name; "
                "the choice is arbitrary: pass --reference"
            )
        return largest[0], note
    if str(reference) not in group_values:
        raise UserError(
            f"--reference {clip(reference)} is not a value of {clip(primary)}; values: {short_list(group_values)}"
        )
    return str(reference), f"--reference {reference} (given)"


def chi_square(
    frame: pd.DataFrame,
    counts: pd.DataFrame,
    cats: list[str],
    group_values: list[str],
    primary: str,
    *,
    clustered_by: bool,
) -> dict:
    """Pearson's test of independence of group and category (categories with any count); with clusters,
    also the Rao-Scott second-order design-corrected test, which is then the one to read."""
    tested = [c for c in cats if counts[c].sum() > 0]
    # A group with no scored output (all unscored) is a row of zeros: its expected counts are zero and
    # chi2_contingency refuses the table. It says nothing about independence, so it sits the test out.
    groups = [g for g in group_values if counts.loc[g, tested].sum() > 0]
    chi = {
        "statistic": None,
        "p_value": None,
        "dof": None,
        "categories_tested": tested,
        "min_expected": None,
        "groups_without_scored_outputs": [g for g in group_values if g not in groups],
    }
    if len(tested) < 2 or len(groups) < 2:
        return chi
    res = chi2_contingency(counts.loc[groups, tested].to_numpy())
    chi.update(
        statistic=float(res.statistic),
        p_value=float(res.pvalue),
        dof=int(res.dof),
        min_expected=float(res.expected_freq.min()),
    )
    if clustered_by:
        scored = frame[frame["_label"].isin(tested)]
        rows = pd.Categorical(scored[primary], categories=groups).codes
        cols = pd.Categorical(scored["_label"], categories=tested).codes
        chi["rao_scott"] = clustered.rao_scott(rows, cols, scored["_cluster"].to_numpy())
    return chi


SINGLE_CLUSTER = "a group's outputs lie in a single cluster: the clustered variance cannot be estimated (G - 1 = 0)"


def _log_ratio(a: dict, b: dict, cov: float | None, *, clustered_by: bool) -> tuple[float | None, float | None, float]:
    """The rate ratio a / b, the standard error of its log (Katz; with clusters, the delta method on the
    CR1 (co)variances) and its degrees of freedom. No standard error where a group holds a single cluster
    (``cov`` None or fewer than 2 clusters): its CR1 variance has no degree of freedom."""
    if not a["n"] or not b["n"] or b["count"] == 0:
        return None, None, 1.0
    ratio = a["rate"] / b["rate"]
    if a["count"] == 0:
        return ratio, None, 1.0
    if not clustered_by:
        return ratio, math.sqrt(1 / a["count"] - 1 / a["n"] + 1 / b["count"] - 1 / b["n"]), float("inf")
    if cov is None or a["n_clusters"] < 2 or b["n_clusters"] < 2:
        return ratio, None, 1.0
    va, vb = a["variance"] / a["rate"] ** 2, b["variance"] / b["rate"] ** 2
    se = math.sqrt(max(va + vb - 2 * cov / (a["rate"] * b["rate"]), 0.0))
    return ratio, se, clustered.satterthwaite([va, vb], [a["n_clusters"] - 1, b["n_clusters"] - 1])


def rate_ratios(rates: dict, members: dict, reference: str, cats: list[str], *, clustered_by: bool, adjust: bool):
    """Every group's rate ratio to the reference with its interval; simultaneous over the table when it
    holds more than 5 (judge.stats.multiplicity)."""
    raw = {}
    for g in rates:
        for c in cats:
            cov = 0.0
            if clustered_by and g != reference:
                a, b = members[g], members[reference]
                cov = clustered.cross_cov(
                    (a["_label"] == c).to_numpy(float),
                    a["_cluster"].to_numpy(),
                    (b["_label"] == c).to_numpy(float),
                    b["_cluster"].to_numpy(),
                )
            raw[(g, c)] = _log_ratio(rates[g][c], rates[reference][c], cov, clustered_by=clustered_by)
    compared = [k for k, (ratio, se, _) in raw.items() if k[0] != reference and se is not None]
    family = Family.of(len(compared), enabled=adjust)
    ratios = {g: {} for g in rates}
    for (g, c), (ratio, se, df) in raw.items():
        entry = {"ratio": _finite(ratio) if ratio is not None else None, "ci_low": None, "ci_high": None}
        if se is not None and ratio and g != reference:  # against itself: no interval to report
            half = clustered.t_quantile(family.interval_alpha, df) * se
            entry.update(
                ci_low=_finite(math.exp(math.log(ratio) - half)), ci_high=_finite(math.exp(math.log(ratio) + half))
            )
        entry["estimable"] = rates[g][c]["estimable"] and rates[reference][c]["estimable"]
        if (
            clustered_by
            and g != reference
            and ratio
            and se is None
            and _single_cluster(rates[g][c], rates[reference][c])
        ):
            entry["reason"] = SINGLE_CLUSTER
        ratios[g][c] = entry
    return ratios, family


def _single_cluster(a: dict, b: dict) -> bool:
    return min(a.get("n_clusters", 2), b.get("n_clusters", 2)) < 2


def rate_cell(r: dict, digits: int = 3) -> str:
    if not r["n"]:
        return "n/a"
    if not r.get("estimable", True):
        return "not estimable"
    return f"{r['rate']:.{digits}f} [{r['ci_low']:.{digits}f}, {r['ci_high']:.{digits}f}]"


def rates_table(rates: dict, categories: Sequence[str], *, digits: int = 3) -> pd.DataFrame:
    """Group x category table of 'rate [low, high]' strings ('not estimable' below the estimability rule)."""
    return pd.DataFrame({c: {g: rate_cell(r[c], digits) for g, r in rates.items()} for c in categories}).loc[
        list(rates)
    ]


def rate_matrix(rates: dict, categories: Sequence[str]) -> np.ndarray:
    return np.array([[rates[g][c]["rate"] for c in categories] for g in rates], dtype=float)
