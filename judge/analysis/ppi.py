"""Judge rates corrected by a sample of human labels (prediction-powered inference), as a library.

The human sample (``human_sample``: a column of the records filled on a sample, or a table of labels joined
on id), how it was drawn (``SamplingDesign``: strata, inclusion probabilities), the judge's training ids
(``JudgeTraining``: human labels the judge learned are refused) and the clusters are arguments;
``prediction_powered`` returns the typed ``PPIResult`` that ``disparity.json`` holds under ``ppi``. The
estimators are judge.stats.ppi's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from judge.analysis.results import ABSENT, Result, key
from judge.core.errors import UserError, clip, short_list
from judge.core.records import require_columns
from judge.core.taxonomy import UNSCORED, Taxonomy
from judge.stats.disparity import canonical_labels

__all__ = [
    "DEFAULT_INCLUSION",
    "HumanSample",
    "JudgeTraining",
    "PPIResult",
    "SamplingDesign",
    "human_sample",
    "parse_ppi_lambda",
    "prediction_powered",
]

Interval = Sequence[Any]  # (low, high); (None, None) where none exists
DEFAULT_INCLUSION = "inclusion_probability"


# -- results -----------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Estimate(Result):
    """One group's rate of one category by one method (judge only, human only, PPI), clipped to [0, 1] with
    its interval (``clipped`` says where; ``rate_unclipped`` keeps the raw estimate)."""

    rate: float | None
    ci: Interval
    variance: float | None = ABSENT
    se: float = ABSENT
    lam: float = key("lambda")
    df: float = ABSENT
    half_width: float = ABSENT
    design_variance: float = ABSENT
    clipped: str | None = ABSENT
    rate_unclipped: float = ABSENT
    outside: bool = ABSENT
    estimator: str = ABSENT  # the human-only column's: "Hajek" (ratio estimator of the group's mean)
    interval: str = ABSENT


@dataclass(kw_only=True)
class GapEstimate(Result):
    """A group's rate minus the reference's by one method; ``ci_adjusted`` and ``p_adjusted`` where the table's
    comparisons are adjusted together."""

    gap: float | None
    se: float = ABSENT
    df: float = ABSENT
    ci: Interval
    p_value: float = ABSENT
    from_clipped_rate: bool = ABSENT
    clipped: str | None = ABSENT
    ci_adjusted: Interval = ABSENT
    p_adjusted: float = ABSENT
    reason: str = ABSENT  # why the gap has no interval (a single cluster), where it has none for that
    clipped_adjusted: str | None = ABSENT


@dataclass(kw_only=True)
class PPIRate(Result):
    """One group and category: the three estimates side by side, the human labels they rest on, and whether the
    group's rate is estimable (``reason`` where not; human-only and PPI are then absent below 2 labels)."""

    n_human: int
    n_judge_only: int
    judge_only: Estimate
    n_clusters_human: int = ABSENT
    human_only: Estimate = ABSENT
    ppi: Estimate = ABSENT
    note: str = ABSENT
    effective_n: float | None = ABSENT
    estimable: bool
    reason: str = ABSENT
    n_unscored: int = ABSENT


@dataclass(kw_only=True)
class PPIGap(Result):
    n_human: int
    n_judge_only: int
    judge_only: GapEstimate
    human_only: GapEstimate = ABSENT
    ppi: GapEstimate = ABSENT
    effective_n: float | None = ABSENT
    estimable: bool
    reason: str = ABSENT


@dataclass(kw_only=True)
class GapComparisons(Result):
    """How the gap table's comparisons are adjusted (one family per method column)."""

    m: int
    adjusted: bool
    intervals: str
    interval_alpha: float
    note: str
    p_values: str = ABSENT
    m_by_method: dict[str, int] = ABSENT


@dataclass(kw_only=True)
class CrossFitInfo(Result):
    """How a cross-fitted judge was made (judge.analysis.crossfit): K judges of ``kind``, each trained on K - 1
    folds of the human sample grouped by ``folds_by``."""

    k: int
    kind: str
    folds_by: str | None
    n_labelled: int
    note: str


@dataclass(kw_only=True)
class PPIResult(Result):
    """Prediction-powered rates (group -> category) and gaps to the reference, with the sample and design they
    rest on. ``warnings`` (not in the JSON): the lines judge.report prints on stderr."""

    lam: float | str = key("lambda")
    design: str
    clustered: bool
    estimand: str = ABSENT
    method: str
    estimability: str
    alpha: float
    reference: str
    n_human: int
    n_human_unscored: int
    n_unscored: int
    n_outputs: int
    weighted: bool
    rates: dict[str, dict[str, PPIRate]]
    gaps: dict[str, dict[str, PPIGap]]
    not_estimable: list[str]
    not_estimable_reasons: dict[str, str]
    human_source: str = ABSENT
    training_overlap: str = ABSENT
    inclusion_column: str | None = ABSENT
    strata: list[str] = ABSENT
    weights_from: str = ABSENT
    design_note: str = ABSENT
    cluster_note: str = ABSENT
    gap_intervals: GapComparisons = ABSENT
    cross_fit: CrossFitInfo = ABSENT
    warnings: list[str] = field(default_factory=list, metadata={"json": False})

    def categories_seen(self, categories: Sequence[str]) -> list[str]:
        """Categories that occur in the human or the judge labels (the others are zero by all three methods)."""

        def seen(c):
            return any(
                (r[c].human_only.rate if r[c].human_only else None) or r[c].judge_only.rate for r in self.rates.values()
            )

        return [c for c in categories if seen(c)]


# -- the human sample and its design -------------------------------------------------------------------


@dataclass(frozen=True)
class SamplingDesign:
    """How the human sample was drawn. ``strata``: the columns it was stratified by (stratified variance with a
    finite-population correction); ``inclusion_column``: the column of each sampled output's inclusion
    probability (None: ``inclusion_probability`` where there is one, else a simple random sample per group)."""

    strata: Sequence[str] = ()
    inclusion_column: str | None = None


@dataclass(frozen=True)
class HumanSample:
    """Each record's human label ('' where none), its inclusion probability where recorded, where the labels come
    from, the probabilities' column, and the label column's name for messages."""

    labels: pd.Series
    inclusion: pd.Series | None
    source: str
    inclusion_column: str | None
    label_column: str


@dataclass(frozen=True)
class JudgeTraining:
    """The judge directories behind the labels and the union of their training ids (None: none recorded).

    ``by_source``: where several files were labelled each by its own judge, each file's ``source`` value (the
    records' ``source_column``) with its own judge's training ids (None: its judge records none), so that each
    judge's ids apply to its own file's outputs only: three leave-one-model-out judges would otherwise claim
    every output of the three files as training rows (issue 31, 8f)."""

    directories: Sequence[str] = ()
    ids: frozenset[str] | None = None
    by_source: tuple[tuple[str, frozenset[str] | None], ...] = ()
    source_column: str = "source"

    @property
    def names(self) -> str:
        return ", ".join(Path(d).name for d in self.directories)

    def covers(self, records: pd.DataFrame) -> np.ndarray:
        """The records whose id (the combined SOURCE:ID where several files repeat ids, as training records them)
        their judge was trained on: each file's own judge where ``by_source`` says which, else any of them."""
        ids = records["id"].astype(str)
        if not self.by_source:
            return ids.isin(self.ids or ()).to_numpy()
        if self.source_column not in records.columns:
            raise ValueError(f"records lack the {self.source_column!r} column that says each one's file")
        source = records[self.source_column].astype(str)
        hit = np.zeros(len(records), dtype=bool)
        for name, own in self.by_source:
            if own:
                hit |= ((source == name) & ids.isin(own)).to_numpy()
        return hit


def parse_ppi_lambda(value: str | float | None) -> float | None:
    """'tuned' (PPI++ power tuning, None) or a fixed lambda in [0, 1]."""
    if str(value).strip().lower() == "tuned":
        return None
    try:
        lam = float(value)
    except (TypeError, ValueError):
        lam = float("nan")
    if not 0 <= lam <= 1:
        raise UserError(
            f"--ppi-lambda must be 'tuned' or a number in [0, 1] (1: plain PPI, 0: human labels only), got {value!r}"
        )
    return lam


def inclusion_probabilities(
    table: pd.DataFrame, column: str | None, *, where: str
) -> tuple[pd.Series | None, str | None]:
    """The sample's inclusion probabilities and the column they come from; None where none is recorded.

    The default column may be absent (a simple random sample); a column named explicitly must not be.
    """
    name = column or DEFAULT_INCLUSION
    if name in table.columns:
        return table[name], name
    if column is not None:
        raise UserError(
            f"--inclusion-column {name!r} is not a column of {where}; name the column of inclusion probabilities "
            f"(columns: {short_list(map(str, table.columns), limit=6)}), or drop the flag for a simple random sample"
        )
    return None, None


def human_sample(
    records: pd.DataFrame,
    human: str | pd.DataFrame,
    *,
    label: str | None = None,
    label_column: str = "label",
    design: SamplingDesign | None = None,
    file: str | Path | None = None,
    where: str = "records",
) -> HumanSample:
    """The human label of each record and its inclusion probability.

    ``human`` is a column of ``records`` filled on a sample (whose own inclusion column then carries the
    probabilities), or a table with ``id`` and ``label_column`` (the sample's file, read from ``file``, which
    carries its probabilities), joined on id. ``label`` (the judge's column) cannot be the human column.
    """
    design = design or SamplingDesign()
    if isinstance(human, pd.DataFrame):
        name = Path(file).name if file is not None else "table"
        unknown = sorted(set(human["id"]) - set(records["id"]))
        if unknown:
            raise UserError(
                f"{len(unknown)} id(s) in --human {name} are not in {where} (e.g. "
                f"{short_list(map(repr, unknown), limit=3)}); "
                "the human labels must be for outputs of the labelled file: check both files' id columns"
            )
        by_id = human.set_index("id")
        labels = records["id"].map(by_id[label_column])
        inclusion, column = inclusion_probabilities(by_id, design.inclusion_column, where=f"--human {name}")
        inclusion = None if inclusion is None else records["id"].map(inclusion)
        source = f"file {file if file is not None else 'table'} (column {label_column})"
    elif human in records.columns:
        if human == label:
            raise UserError(
                f"--human {clip(human)} is the --label column itself; name the column (or file) of human labels"
            )
        labels = records[human]
        inclusion, column = inclusion_probabilities(records, design.inclusion_column, where=where)
        source = f"column {human}"
        label_column = human
    else:
        raise UserError(
            f"--human {clip(human)} is neither a file nor a column of {where}; columns present: "
            f"{short_list(records.columns, limit=8, width=30)}"
        )
    empty = labels.isna() | (labels.astype(str).str.strip() == "")
    if empty.all():
        raise UserError(f"--human {source} holds no labels for the outputs of {where}")
    labels = labels.where(~empty, "")
    if inclusion is not None:
        check_inclusion(inclusion[~empty], records["id"][~empty], column=column, n_outputs=len(records), where=where)
        inclusion = pd.to_numeric(inclusion.where(~empty), errors="coerce")
    return HumanSample(
        labels=labels, inclusion=inclusion, source=source, inclusion_column=column, label_column=label_column
    )


def check_inclusion(inclusion: pd.Series, ids: pd.Series, *, column: str, n_outputs: int, where: str) -> None:
    """Each human-labelled output's inclusion probability must be a number in (0, 1] whose weight 1/pi is at most
    the number of outputs: a weight above it claims the output stands for more outputs than exist (1e-12 gave a
    human-only rate of 1.19e10 and PPI rates of 0 and 1, issue 31)."""
    probs = pd.to_numeric(inclusion, errors="coerce")
    with np.errstate(divide="ignore"):
        weights = 1 / probs.to_numpy(dtype=float)
    bad = probs.isna().to_numpy() | (probs <= 0).to_numpy() | (probs > 1).to_numpy()
    heavy = ~bad & (weights > n_outputs * (1 + 1e-9))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UserError(
            f"column {clip(column)} must hold inclusion probabilities in (0, 1] for every human-labelled output; "
            f"id {clip(ids.iloc[i])} has {clip(inclusion.iloc[i])} ({int(bad.sum())} such)"
        )
    if heavy.any():
        i = int(np.flatnonzero(heavy)[0])
        raise UserError(
            f"column {clip(column)}: id {clip(ids.iloc[i])} has inclusion probability {probs.iloc[i]:.3g}, a weight "
            f"1/pi of {weights[i]:.3g}, more than the {n_outputs} outputs of {where} ({int(heavy.sum())} such); "
            "a probability is at least 1/N: check the column (a percentage? another file's?)"
        )


def weight_warnings(
    groups: pd.Series, scored: np.ndarray, labelled: np.ndarray, inclusion: pd.Series, column: str
) -> list[str]:
    """A warning for each group whose human sample's weights 1/pi, summed, depart from its number of (scored)
    outputs by more than three standard errors (``judge.stats.ppi.weight_sum_departure``): the probabilities are
    probably not those the sample was drawn with, and the estimates lean on them."""
    from judge.stats.ppi import weight_sum_departure

    pi = inclusion.to_numpy(dtype=float)
    out = []
    for g in sorted(set(groups)):
        domain = (groups == g).to_numpy() & scored
        departure = weight_sum_departure(pi[domain & labelled], int(domain.sum()))
        if departure:
            total, size, se = departure
            out.append(
                f"warning: group {g!r}: its human labels' weights 1/{column} sum to {total:.4g} for {size} outputs, "
                f"more than 3 standard errors ({se:.3g}) apart: the inclusion probabilities may not be this "
                "sample's (PPI divides by the group's N); check them"
            )
    return out


def strata_for(
    records: pd.DataFrame,
    inclusion: pd.Series | None,
    labelled: pd.Series,
    strata: Sequence[str],
    *,
    where: str = "records",
) -> pd.Series | None:
    """Each output's stratum (the ``strata`` columns joined), checked against the recorded probabilities."""
    if not strata:
        return None
    strata = list(strata)
    require_columns(records, strata, source=where, flag_hint="Fix --strata.")
    joined = records[strata].astype(str).agg(" / ".join, axis=1)
    if inclusion is not None:
        spread = inclusion[labelled].groupby(joined[labelled]).agg(lambda p: p.max() - p.min())
        mixed = spread[spread > 1e-9]
        if len(mixed):
            raise UserError(
                f"--strata {' '.join(strata)}: inclusion probabilities differ within stratum {clip(mixed.index[0])}, "
                "so the sample "
                "is not stratified by it; name the columns it was stratified by, or drop --strata (independent "
                "inclusion)"
            )
    return joined


def check_not_trained_on(human: pd.DataFrame, training: JudgeTraining | None) -> str:
    """Refuse human labels the judge was trained on: PPI's correction assumes the judge never saw them."""
    if training is None or not training.directories:
        return "not checked: no judge directory found in the labelled file's manifest (pass --judge-dir to check)"
    names = training.names
    if training.ids is None:
        return f"not checked: {names} records no training ids (trained before they were recorded)"
    overlap = set(human["id"].astype(str)[training.covers(human)])
    if overlap:
        raise UserError(
            f"{len(overlap)} of the {len(human)} human-labelled outputs were used to train the judge in {names} "
            f"(e.g. {clip(sorted(overlap)[0])}); PPI needs human labels the judge has not seen, or its intervals are "
            "too narrow: "
            "label a fresh sample (judge.data sample --exclude the training file) and pass that as --human"
        )
    return f"checked: none of the human-labelled ids is among the {len(training.ids)} ids {names} was trained on"


def design_note(kind: str, column: str | None, *, group: str, strata: Sequence[str]) -> str:
    """The sampling design and where its weights come from, as the report states it."""
    from judge.stats.ppi import POISSON, SIMPLE_RANDOM

    if kind == SIMPLE_RANDOM:
        return (
            f"simple random sample assumed within each {group} (no {DEFAULT_INCLUSION} column; "
            "name one with --inclusion-column): weights N / n per group"
        )
    weights = f"1 / {column}" if column else "N_h / n_h per stratum (no inclusion probabilities recorded)"
    if kind == POISSON:
        return f"unequal-probability sample, independent inclusion (Poisson) variance: weights {weights}"
    return (
        f"stratified simple random sample by {', '.join(strata)} (finite-population correction per stratum): "
        f"weights {weights}"
    )


def _cluster_note(clusters: dict) -> str:
    if not clusters.get("column"):
        return clusters["note"] + "; PPI variance: the sampling design's, for the human rate over these outputs"
    return (
        clusters["note"]
        + "; PPI variance: cluster-robust (CR1) over the clusters, for the rate over outputs like these "
        "(prompts drawn anew), t with G - 1 df, G the clusters holding a human label"
    )


def adjust_gaps(ppi: PPIResult, categories: Sequence[str], *, enabled: bool) -> None:
    """Simultaneous intervals and Holm p-values for the gap table's comparisons (one family per method column)."""
    from judge.stats.multiplicity import Family
    from judge.stats.ppi import gap_interval, gap_note

    families = {}
    for method in ("judge_only", "human_only", "ppi"):
        # the judge-only gaps are all shown; the others only where the gap is estimable
        estimable = [
            e
            for g in ppi.gaps
            for c in categories
            for e in [getattr(ppi.gaps[g][c], method)]
            if e and e.se is not ABSENT and e.se is not None and (method == "judge_only" or ppi.gaps[g][c].estimable)
        ]
        family = Family.of(len(estimable), enabled=enabled, alpha=ppi.alpha)
        adjusted = family.adjust_p([e.p_value for e in estimable])
        for e, p in zip(estimable, adjusted):
            e.ci_adjusted = gap_interval(e.gap, e.se, e.df, family.interval_alpha)
            e.p_adjusted = p
            e.clipped_adjusted = gap_note(e.to_dict(), family.interval_alpha)
        families[method] = family
    ppi.gap_intervals = GapComparisons.from_dict(
        {**families["ppi"].as_dict(), "m_by_method": {k: f.m for k, f in families.items()}}
    )


def judge_scores(scores: pd.DataFrame, records: pd.DataFrame, categories: Sequence[str]) -> np.ndarray:
    """The judge's probabilities in the records' order and the categories' (a category it has no column for: 0)."""
    ids = records["id"].astype(str)
    table = scores.set_axis(scores.index.astype(str)).reindex(index=ids, columns=list(categories), fill_value=0.0)
    if table.isna().any().any() or not ids.isin(scores.index.astype(str)).all():
        raise UserError(f"the judge's probabilities do not cover every one of the {len(records)} outputs")
    return table.to_numpy(dtype=float)


def prediction_powered(
    records: pd.DataFrame,
    human: HumanSample,
    *,
    fine: Taxonomy,
    taxonomy: Taxonomy,
    label: str,
    group: str,
    reference: str,
    design: SamplingDesign | None = None,
    coarse: bool = False,
    training: JudgeTraining | None = None,
    clusters: np.ndarray | None = None,
    cluster_info: dict | None = None,
    ppi_lambda: float | None = 1.0,
    adjust: bool = True,
    where: str = "records",
    scores: pd.DataFrame | None = None,
    average: pd.DataFrame | None = None,
    cross_fit: CrossFitInfo | None = None,
) -> PPIResult:
    """PPI rates and gaps of the ``label`` column's categories by ``group``; ``fine`` checks the human labels,
    ``taxonomy`` (coarse with ``coarse``) reports them. ``cluster_info`` is clusters_for's note on ``clusters``.

    ``scores`` (a table indexed by record id, one column of probabilities per category) are what PPI
    corrects instead of the label column's indicators, ``average`` (same form; default ``scores``) what the
    judge term averages; with ``cross_fit`` they are cross-fitted
    (judge.analysis.crossfit), the judge trained on the human labels by design, so the training-overlap
    check gives way to the cross-fit's note."""
    from judge.stats.ppi import ppi_by_group

    design = design or SamplingDesign()
    cluster_info = cluster_info or {"column": None, "note": "none"}
    labels, inclusion = human.labels, human.inclusion
    has_human = labels != ""
    gold = fine.gold(labels[has_human], column=human.label_column)
    human_labels = pd.Series("", index=records.index, dtype=object)
    human_labels[has_human] = [fine.parent_of(x) for x in gold] if coarse else gold
    strata = strata_for(records, inclusion, has_human, design.strata, where=where)
    overlap_note = (
        "cross-fitted: each human label corrects a fold judge that was not trained on it"
        if cross_fit
        else check_not_trained_on(records[has_human], training)
    )
    judge_labels = canonical_labels(records[label], taxonomy, column=label)
    ppi = ppi_by_group(
        judge_labels,
        human_labels.tolist(),
        records[group].astype(str).tolist(),
        categories=taxonomy.labels,
        reference=reference,
        inclusion=None if inclusion is None else inclusion.to_numpy(dtype=float),
        strata=None if strata is None else strata.to_numpy(dtype=object),
        clusters=clusters,
        lam=ppi_lambda,
        scores=None if scores is None else judge_scores(scores, records, taxonomy.labels),
        average=None if average is None else judge_scores(average, records, taxonomy.labels),
    )
    column = human.inclusion_column
    ppi.update(
        human_source=human.source,
        training_overlap=overlap_note,
        inclusion_column=column,
        strata=list(design.strata),
        weights_from=f"1 / {column}"
        if column
        else ("N_h / n_h per stratum" if strata is not None else "N / n per group (simple random sample assumed)"),
        design_note=design_note(ppi["design"], column, group=group, strata=design.strata),
        cluster_note=_cluster_note(cluster_info),
    )
    result = PPIResult.from_dict(ppi)
    if cross_fit:
        result.cross_fit = cross_fit
    if inclusion is not None:
        scored = np.asarray(judge_labels, dtype=object) != UNSCORED
        result.warnings += weight_warnings(
            records[group].astype(str), scored, has_human.to_numpy(), inclusion, column or DEFAULT_INCLUSION
        )
    adjust_gaps(result, result.categories_seen(taxonomy.labels), enabled=adjust)
    for g, why in result.not_estimable_reasons.items():
        result.warnings.append(
            f"warning: group {g!r} has too few human labels to estimate its rates ({why}); shown as not estimable"
        )
    for g, by_cat in result.rates.items():
        for c, r in by_cat.items():
            if g not in result.not_estimable_reasons and not r.estimable:
                result.warnings.append(f"warning: {g!r} / {c!r} not estimable: {r.reason}")
    return result
