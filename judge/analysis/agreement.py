"""Agreement of a judge (or a second annotator) with human labels, and among human annotators, as a library.

    from judge.analysis import agreement_analysis
    result = agreement_analysis(records, gold="label", pred="judge_label", taxonomy="chehbouni2024", by="identity")
    result.cohen_kappa, result.ci.cohen_kappa, result.by_group.groups["muslim"].cohen_kappa

``records`` is a DataFrame of records (judge.core.records.read_records reads one); every other input is
an argument. The results are typed (judge.analysis.results): ``to_dict()`` is the ``agreement.json``
that ``judge.agree`` writes, and judge.render.agreement draws its tables and figures from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from judge.analysis.results import ABSENT, Result
from judge.core.errors import UserError, clip
from judge.core.records import require_columns
from judge.core.taxonomy import ESCALATE, RESERVED, UNSCORED, Taxonomy, resolve_taxonomy
from judge.stats.group_error import MIN_UNITS_FOR_TEST
from judge.stats.metrics import agreement

__all__ = [
    "MIN_UNITS_FOR_TEST",
    "AgreementResult",
    "AnnotatorAgreementResult",
    "agreement_analysis",
    "annotator_agreement_analysis",
    "blank",
    "by_columns",
    "cluster_codes",
    "default_cluster",
]

Interval = Sequence[Any]  # (low, high); (None, None) where no interval exists


# -- results -----------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class BootstrapClusters(Result):
    """Which column's values the bootstrap resampled whole (None: items), and why (``how``, set by judge.agree)."""

    column: str | None
    n_clusters: int | None
    how: str = ABSENT


@dataclass(kw_only=True)
class PerClass(Result):
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(kw_only=True)
class Confusion(Result):
    """Counts, rows gold and columns predicted (the last column ``unscored``)."""

    rows_gold: list[str]
    columns_pred: list[str]
    matrix: list[list[int]]


@dataclass(kw_only=True)
class Intervals(Result):
    """The bootstrap intervals of the headline figures, at ``level``."""

    level: float
    method: str
    cohen_kappa: Interval
    krippendorff_alpha: Interval
    macro_f1: Interval
    reasons: dict[str, str] = ABSENT  # why a figure has no interval ((None, None)): e.g. the judge predicts one class


@dataclass(kw_only=True)
class JudgeAmongAnnotators(Result):
    """The judge beside human annotator columns: alpha without and with it, kappas between the humans and
    of each with the gold labels."""

    alpha_among_humans: float
    alpha_with_judge: float
    pairwise_kappa: dict[str, float]
    kappa_vs_gold: dict[str, float]


@dataclass(kw_only=True)
class Difference(Result):
    difference: float | None
    ci: Interval


@dataclass(kw_only=True)
class CategoryError(Result):
    """One category within one group: the humans' and the judge's rate, false-positive and false-negative
    rates (Wilson) and the judge's rate minus the humans' (paired)."""

    human_rate: float | None
    judge_rate: float | None
    false_positive_rate: float | None
    false_positive_ci: Interval
    false_negative_rate: float | None
    false_negative_ci: Interval
    judge_minus_human: Difference


@dataclass(kw_only=True)
class GroupAgreement(Result):
    n: int
    n_scored: int
    n_unscored: int
    n_units: int
    cohen_kappa: float
    cohen_kappa_ci: Interval
    cohen_kappa_ci_reason: str = ABSENT  # why the interval is (None, None): it would have zero width
    cohen_kappa_se: float | None
    accuracy: float
    categories: dict[str, CategoryError]


@dataclass(kw_only=True)
class KappaTest(Result):
    """Fleiss' chi-square test of equal kappas across groups (None where not computed)."""

    method: str
    statistic: float | None
    dof: int | None
    p_value: float | None
    pooled_kappa: float | None
    groups_tested: list[str]
    groups_left_out: dict[str, str]


@dataclass(kw_only=True)
class AccuracyTest(Result):
    method: str
    statistic: float | None
    p_value: float | None
    dof: int | None


@dataclass(kw_only=True)
class ErrorIntervals(Result):
    """How each interval of the per-group table was computed."""

    kappa: str
    false_positive_negative_rates: str
    judge_minus_human: str


@dataclass(kw_only=True)
class AgreementByGroup(Result):
    """The judge's agreement and errors within each value of ``column``, and the tests across them."""

    column: str
    level: float
    alpha: float
    intervals: ErrorIntervals
    groups: dict[str, GroupAgreement]
    kappa_test: KappaTest
    error_rate_test: AccuracyTest


@dataclass(kw_only=True)
class AltTestAnnotator(Result):
    n_items: int
    rho_judge: float
    rho_human: float
    t: float | None
    p_value: float
    p_adjusted_by: float
    judge_wins: bool


@dataclass(kw_only=True)
class AltTest(Result):
    """The alternative annotator test (Calderon et al. 2025)."""

    epsilon: float
    q: float
    annotators: dict[str, AltTestAnnotator]
    winning_rate: float
    average_advantage_probability: float
    passed: bool
    reason: str
    warnings: list[str]


@dataclass(kw_only=True)
class AgreementResult(Result):
    """A judge's (or second annotator's) agreement with gold labels: the content of ``agreement.json``.

    ``by_group`` is ``by_groups[0]`` (reports before several ``--by`` kept the first there); ``title``,
    ``pred_name``, ``gold_name`` and ``pred_precision`` name things for the renderers (judge.agree sets them).
    """

    taxonomy: str
    gold_column: str
    pred_column: str
    n_without_gold: int
    cluster: BootstrapClusters
    n: int
    n_scored: int
    n_unscored: int
    unscored_rate: float
    # outputs a selective judge escalated to people (judge.label --selective): counted apart, outside every metric
    n_escalated: int = ABSENT
    labels: list[str]
    cohen_kappa: float
    krippendorff_alpha: float
    accuracy: float
    accuracy_unscored_as_wrong: float
    macro_f1: float
    macro_f1_labels: list[str]
    per_class: dict[str, PerClass]
    confusion: Confusion
    ci: Intervals
    annotators: JudgeAmongAnnotators = ABSENT
    warnings: list[str]
    by_groups: list[AgreementByGroup] = ABSENT
    by_group: AgreementByGroup = ABSENT
    alt_test: AltTest = ABSENT
    title: str | None = ABSENT
    pred_name: str | None = ABSENT
    gold_name: str | None = ABSENT
    pred_precision: str | None = ABSENT


@dataclass(kw_only=True)
class PairKappa(Result):
    n: int
    kappa: float
    ci: Interval
    ci_reason: str = ABSENT  # why the interval is (None, None): it would have zero width


@dataclass(kw_only=True)
class AnnotatorAgreement(Result):
    """Agreement among annotator columns over a set of items."""

    annotators: list[str]
    n_items: int
    labels_per_annotator: dict[str, int]
    krippendorff_alpha: float
    krippendorff_alpha_ci: Interval
    pairwise_kappa: dict[str, PairKappa]
    bootstrap: str
    kappa_vs_gold: dict[str, PairKappa] = ABSENT


@dataclass(kw_only=True)
class AnnotatorsByGroup(Result):
    column: str
    groups: dict[str, AnnotatorAgreement]


@dataclass(kw_only=True)
class AnnotatorAgreementResult(Result):
    """Agreement among human annotators, no judge involved: the content of ``agreement.json`` of ``judge.agree
    --annotators`` without ``--pred``."""

    taxonomy: str
    gold_column: str | None
    level: float
    cluster: BootstrapClusters
    annotators: list[str]
    n_items: int
    labels_per_annotator: dict[str, int]
    krippendorff_alpha: float
    krippendorff_alpha_ci: Interval
    pairwise_kappa: dict[str, PairKappa]
    bootstrap: str
    kappa_vs_gold: dict[str, PairKappa] = ABSENT
    by_groups: list[AnnotatorsByGroup] = ABSENT
    by_group: AnnotatorsByGroup = ABSENT


# -- the analysis --------------------------------------------------------------------------------------


def by_columns(by: str | Sequence[str] | None) -> list[str]:
    """--by as given once or several times (a config file may hold one name or a list), each column once."""
    return list(dict.fromkeys([by] if isinstance(by, str) else (by or [])))


def blank(values: pd.Series) -> pd.Series:
    """Where a column holds no label (missing, or only spaces)."""
    return values.isna() | (values.astype(str).str.strip() == "")


def cluster_codes(records: pd.DataFrame, column: str | None) -> list[str] | None:
    """Each record's cluster (the value of ``column``); a blank value is a cluster of its own."""
    if column is None:
        return None
    values, empty = records[column], blank(records[column])
    return [f"\0row{i}" if b else str(v) for i, (v, b) in enumerate(zip(values, empty))]


def default_cluster(
    records: pd.DataFrame, *, cluster: str | None = None, no_cluster: bool = False
) -> tuple[str | None, str]:
    """The column whose values the bootstrap resamples whole, and why: ``cluster``; else the prompt when some
    prompt was sampled more than once (its outputs are correlated, so resampling them one by one would make
    the intervals too narrow); ``no_cluster``: none."""
    if no_cluster:
        return None, "--no-cluster"
    if cluster:
        return cluster, "--cluster"
    if "prompt" in records.columns:
        prompts = records["prompt"][~blank(records["prompt"])]
        repeated = int(prompts.duplicated(keep=False).sum())
        if repeated:
            return (
                "prompt",
                f"the default, as {repeated} of {len(records)} outputs share a prompt with another; --no-cluster "
                "resamples outputs one by one",
            )
    return None, "no prompt has several outputs"


def annotator_labels(values: pd.Series, taxonomy: Taxonomy, *, column: str) -> list[str | None]:
    """Canonical labels of one annotator column; None where the annotator gave none. A label outside
    the taxonomy is an error naming it."""
    empty = blank(values)
    it = iter(taxonomy.gold(values[~empty], column=column))
    return [None if b else next(it) for b in empty]


def class_warnings(gold_labels, pred_labels, *, pred: str) -> list[str]:
    """A judge that predicts one class, or fewer classes than the humans used, can look fine on kappa's
    neighbours (accuracy) while saying nothing about the missing classes: say so beside the numbers."""
    predicted = {p for p in pred_labels if p not in RESERVED}
    used = set(gold_labels)
    warnings = []
    if len(predicted) <= 1:
        warnings.append(
            f"{pred} predicts a single class ({', '.join(sorted(predicted)) or 'none scored'}): its kappa says nothing "
            "about the others"
        )
    missing = sorted(used - predicted)
    if missing and len(predicted) > 1:
        warnings.append(
            f"{pred} never predicts {', '.join(missing)}, which the gold labels use ({len(predicted)} of {len(used)} "
            "gold classes predicted)"
        )
    return warnings


def agreement_analysis(
    records: pd.DataFrame,
    *,
    gold: str,
    pred: str,
    taxonomy: str | Taxonomy | None = None,
    coarse: bool = False,
    annotators: Sequence[str] = (),
    n_boot: int = 1000,
    seed: int = 0,
    by: str | Sequence[str] | None = None,
    alt_test_epsilon: float | None = None,
    label_map: dict[str, str] | None = None,
    emittable: Sequence[str] | None = None,
    cluster: str | None = None,
    level: float = 0.95,
) -> AgreementResult:
    """Agreement of the ``pred`` column with the ``gold`` column (rows without a gold label left out).

    ``taxonomy``: a preset name, a YAML path or a Taxonomy (None: the distinct gold labels), read through
    ``label_map``; ``coarse`` compares parent categories. ``annotators`` are further human columns (alpha with
    and without the judge). ``by`` (a column or several) adds the judge's error within each value of each
    column (``by_groups``; ``by_group`` the first). ``alt_test_epsilon`` runs the alternative annotator test of
    ``pred`` against the ``annotators``. ``emittable``: the categories the judge can emit (a warning names the
    others). ``cluster`` names a column whose values the bootstrap resamples whole (outputs of one prompt,
    say; ``default_cluster`` picks it as judge.agree does). Intervals at ``level``, ``n_boot`` resamples.
    """
    by = by_columns(by)
    annotators = list(annotators)
    require_columns(
        records,
        [gold, pred, *annotators, *by, *([cluster] if cluster else [])],
        source="records",
        flag_hint="Fix --gold/--pred/--annotators/--by/--cluster.",
    )
    has_gold = ~blank(records[gold])
    n_without_gold = int((~has_gold).sum())
    records = records[has_gold]
    if records.empty:
        raise UserError(f"no row has a gold label in column {clip(gold)}; check --gold")
    escalated = (records[pred].astype(str) == ESCALATE).to_numpy()
    records = records[~escalated]  # agreement where the judge answered; the escalated outputs are people's
    if records.empty:
        raise UserError(f"{clip(pred)} escalated every output with a gold label: no kept label to compare")
    fine = resolve_taxonomy(taxonomy, records[gold].tolist(), label_map=label_map)
    gold_labels = fine.gold(records[gold], column=gold)
    pred_labels = fine.predicted(records[pred], column=pred)  # a label outside the taxonomy: an error naming it
    human = {col: annotator_labels(records[col], fine, column=col) for col in annotators}
    used = fine
    if coarse:
        used = fine.coarse()
        up = lambda labs: [fine.parent_of(x) if x not in (None, *RESERVED) else x for x in labs]  # noqa: E731
        gold_labels, pred_labels = up(gold_labels), up(pred_labels)
        human = {k: up(v) for k, v in human.items()}
    clusters = cluster_codes(records, cluster)
    result = agreement(
        gold_labels,
        pred_labels,
        labels=used.labels,
        annotators=human or None,
        n_boot=n_boot,
        seed=seed,
        pred_name=pred,
        clusters=clusters,
        level=level,
    )
    result = {
        "taxonomy": used.name,
        "gold_column": gold,
        "pred_column": pred,
        "n_without_gold": n_without_gold,
        **({"n_escalated": int(escalated.sum())} if escalated.any() else {}),
        "cluster": {"column": cluster, "n_clusters": len(set(clusters)) if clusters else None},
        **result,
    }
    result["warnings"] = class_warnings(gold_labels, pred_labels, pred=pred)
    if emittable is not None:
        never = sorted(
            {
                g
                for g in gold_labels
                if g not in set(emittable) and not (coarse and g in {fine.parent_of(e) for e in emittable})
            }
        )
        if never:
            result["warnings"].append(
                f"{pred} can never predict {', '.join(never)} (its judge emits only {', '.join(emittable)}); "
                "every gold label in those categories counts as an error"
            )
    if by:
        from judge.stats.group_error import judge_error_by_group

        result["by_groups"] = [
            {
                "column": col,
                "level": level,
                **judge_error_by_group(
                    gold_labels,
                    pred_labels,
                    records[col].astype(str).tolist(),
                    labels=used.labels,
                    alpha=1 - level,
                    clusters=clusters,
                    n_boot=n_boot,
                    seed=seed,
                ),
            }
            for col in by
        ]
        result["by_group"] = result["by_groups"][0]  # the first --by, where reports before several --by kept it
    if alt_test_epsilon is not None:
        from judge.stats.alt_test import alt_test

        # an escalated output is one the judge did not label, as an unscored one
        judged = [UNSCORED if p == ESCALATE else p for p in pred_labels]
        result["alt_test"] = alt_test(human, judged, epsilon=alt_test_epsilon)
    typed = AgreementResult.from_dict(result)
    if by:
        typed.by_group = typed.by_groups[0]
    return typed


def annotator_agreement_analysis(
    records: pd.DataFrame,
    *,
    annotators: Sequence[str],
    gold: str | None = None,
    taxonomy: str | Taxonomy | None = None,
    coarse: bool = False,
    n_boot: int = 1000,
    seed: int = 0,
    label_map: dict[str, str] | None = None,
    by: str | Sequence[str] | None = None,
    cluster: str | None = None,
    level: float = 0.95,
) -> AnnotatorAgreementResult:
    """Agreement among human annotator columns (and each against ``gold``), no judge involved; ``by``
    repeats it within each value of each column (``by_groups``, one table per column; ``by_group`` the
    first), and ``cluster`` names a column whose values the bootstrap resamples whole."""
    from judge.stats.metrics import annotator_agreement

    columns = list(dict.fromkeys(annotators))  # one column counted once, whatever the command line repeats
    by = by_columns(by)
    require_columns(
        records,
        [*columns, *([gold] if gold else []), *by, *([cluster] if cluster else [])],
        source="records",
        flag_hint="Fix --annotators/--gold/--by/--cluster.",
    )

    fine = resolve_taxonomy(taxonomy, [x for c in columns for x in records[c][~blank(records[c])]], label_map=label_map)

    def canon(values, column):
        labels = annotator_labels(values, fine, column=column)
        return [fine.parent_of(x) if coarse and x is not None else x for x in labels]

    used = fine.coarse() if coarse else fine
    humans = {c: canon(records[c], c) for c in columns}
    gold_labels = canon(records[gold], gold) if gold else None
    clusters = cluster_codes(records, cluster)

    def within(rows: np.ndarray) -> dict:
        pick = lambda values: None if values is None else [values[i] for i in rows]  # noqa: E731
        return annotator_agreement(
            {c: pick(v) for c, v in humans.items()},
            labels=used.labels,
            gold=pick(gold_labels),
            n_boot=n_boot,
            seed=seed,
            clusters=pick(clusters),
            level=level,
        )

    result = {
        "taxonomy": used.name,
        "gold_column": gold,
        "level": level,
        "cluster": {"column": cluster, "n_clusters": len(set(clusters)) if clusters else None},
        **within(np.arange(len(records))),
    }
    if by:
        result["by_groups"] = [
            {
                "column": col,
                "groups": {
                    g: within(np.flatnonzero(records[col].astype(str).to_numpy() == g))
                    for g in sorted(set(records[col].astype(str)))
                },
            }
            for col in by
        ]
        result["by_group"] = result["by_groups"][0]
    typed = AnnotatorAgreementResult.from_dict(result)
    if by:
        typed.by_group = typed.by_groups[0]
    return typed
