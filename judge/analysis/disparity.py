"""Per-group rates and disparities (the quality-of-service view), as a library.

    from judge.analysis import SamplingDesign, disparity_analysis
    result = disparity_analysis(records, label="judge_label", groups=["identity"], taxonomy="chehbouni2024",
                                reference="white", human="human", design=SamplingDesign(strata=["identity"]))
    result.rates["muslim"]["refusal"].rate, result.ppi.rates["muslim"]["refusal"].ppi.ci

``records`` is a DataFrame of records; the label and group columns, the taxonomy, the clustering, the human
sample and its design are arguments. The result is typed (judge.analysis.results): ``to_dict()`` is the
``disparity.json`` that ``judge.report`` writes, and judge.render.disparity draws its tables and figures
from it. Prediction-powered rates (``human=``) are computed by judge.analysis.ppi.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from judge.analysis.ppi import HumanSample, JudgeTraining, PPIResult, SamplingDesign, human_sample, prediction_powered
from judge.analysis.results import ABSENT, Result
from judge.core.errors import UserError, clip, short_list
from judge.core.records import clean_groups, require_columns
from judge.core.taxonomy import ESCALATE, RESERVED, UNSCORED, Taxonomy, resolve_taxonomy
from judge.stats.disparity import canonical_labels, category_rates, disparity
from judge.stats.estimability import MIN_CLUSTERS, MIN_LABELS

__all__ = [
    "RULE_SHORT",
    "DisparityResult",
    "Rate",
    "clusters_for",
    "disparity_analysis",
    "display_group_names",
    "parse_group_names",
    "prepare",
    "shortened",
    "training_rows",
]

RULE_SHORT = f"rule: at least {MIN_LABELS} labels, from at least {MIN_CLUSTERS} clusters when clustered"


# -- results -----------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Rate(Result):
    """One category's rate among a group's scored outputs, with its 95% interval (Wilson; clustered Wilson with
    ``variance`` and ``n_clusters`` when outputs are clustered); ``reason`` where the group is not estimable."""

    rate: float
    n: int
    count: int
    estimable: bool
    ci_low: float
    ci_high: float
    variance: float = ABSENT
    n_clusters: int = ABSENT
    reason: str = ABSENT


Rates = dict[str, dict[str, Rate]]  # group -> category -> rate


@dataclass(kw_only=True)
class RaoScott(Result):
    pearson: float
    dof: int
    n_clusters: int
    mean_design_effect: float
    statistic: float | None
    df_num: float | None
    df_den: float | None
    p_value: float | None


@dataclass(kw_only=True)
class ChiSquare(Result):
    """Pearson's test of independence of group and category (None where not computed); Rao-Scott's when clustered."""

    statistic: float | None
    p_value: float | None
    dof: int | None
    categories_tested: list[str]
    min_expected: float | None
    groups_without_scored_outputs: list[str]
    rao_scott: RaoScott = ABSENT


@dataclass(kw_only=True)
class RateRatio(Result):
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    estimable: bool
    reason: str = ABSENT  # why the ratio has no interval (a single cluster), where it has none for that


@dataclass(kw_only=True)
class Comparisons(Result):
    """How a table of ``m`` comparisons is adjusted (judge.stats.multiplicity)."""

    m: int
    adjusted: bool
    intervals: str
    interval_alpha: float
    note: str
    p_values: str = ABSENT
    m_by_method: dict[str, int] = ABSENT


@dataclass(kw_only=True)
class Clustering(Result):
    """The column whose values are clusters of correlated outputs (None: every output independent), and the note
    the report prints."""

    column: str | None
    default: bool = ABSENT
    n_clusters: int = ABSENT
    note: str


@dataclass(kw_only=True)
class TrainingRows(Result):
    """Outputs the judge was trained on, and each group's rates on them and on the rest (``rates``: group ->
    'training rows' / 'not trained on' -> category -> rate)."""

    judge_dir: str
    judge_names: str
    n_training_rows: int
    n_outputs: int
    note: str
    rates: dict[str, Rates] = ABSENT


@dataclass(kw_only=True)
class DisparityResult(Result):
    """Per-group category rates, the test of independence, rate ratios against the reference, splits by further
    group columns and, with human labels, prediction-powered rates: the content of ``disparity.json``.

    ``warnings`` (not in the JSON) are the lines judge.report prints on stderr, in order.
    """

    label_column: str
    group_column: str
    taxonomy: str
    categories: list[str]
    n: int
    n_unscored: int
    n_escalated: int = ABSENT  # a selective judge's outputs for people: outside the judge's rates, in PPI's
    reference: str
    reference_note: str
    reference_tie: bool
    estimability: str
    not_estimable: dict[str, str]
    rates: Rates
    chi_square: ChiSquare
    rate_ratios: dict[str, dict[str, RateRatio]]
    rate_ratio_intervals: Comparisons
    splits: dict[str, dict[str, Rates]]  # further group column -> group -> its value -> category -> rate
    by: dict[str, Rates]  # further group column -> its value -> category -> rate
    label_source: str | None = ABSENT
    title: str | None = ABSENT
    clusters: Clustering = ABSENT
    group_names: dict[str, str] = ABSENT
    training_rows: TrainingRows = ABSENT
    ppi: PPIResult = ABSENT
    warnings: list[str] = field(default_factory=list, metadata={"json": False})


# -- the analysis --------------------------------------------------------------------------------------


def prepare(
    records: pd.DataFrame,
    *,
    label: str,
    taxonomy: str | Taxonomy | None,
    coarse: bool,
    label_map: dict[str, str] | None = None,
) -> tuple[pd.DataFrame, Taxonomy]:
    """Resolve the taxonomy (reading ``label_map``'s codes) and, with ``coarse``, map labels to their parents."""
    require_columns(records, [label], source="records", flag_hint="Fix --label.")
    fine = resolve_taxonomy(
        taxonomy, [x for x in records[label] if isinstance(x, str) and x.strip()], label_map=label_map
    )
    if not coarse:
        return records, fine
    records = records.copy()
    records[label] = [
        x if x in RESERVED else fine.parent_of(x) for x in canonical_labels(records[label], fine, column=label)
    ]
    return records, fine.coarse()


def parse_group_names(spec: str) -> dict[str, str] | None:
    """--group-names 'OLD=NEW,...' as a mapping; 'auto' (None) shortens the names instead."""
    if spec.strip() == "auto":
        return None
    pairs = [part.partition("=") for part in spec.split(",") if part.strip()]
    bad = next((old + sep + new for old, sep, new in pairs if not sep or not old.strip() or not new.strip()), None)
    if bad is not None or not pairs:
        raise UserError(
            f"--group-names {clip(bad if bad is not None else spec)} is not OLD=NEW[,OLD=NEW...] or auto; "
            "e.g. --group-names xstest_v2_completions_gpt4=GPT-4,xstest_v2_completions_llama2new=Llama-2"
        )
    return {old.strip(): new.strip() for old, _, new in pairs}


def shortened(values: list[str]) -> dict[str, str]:
    """Each value without the words all of them share at the start and end (xstest_v2_completions_gpt4 and
    xstest_v2_completions_llama2new become gpt4 and llama2new); words split at _, - and ."""
    words = [re.split(r"(?<=[_.\-])", v) for v in values]
    if len(values) < 2:
        return {}
    fewest = min(len(w) for w in words)
    head = min(len(os.path.commonprefix(words)), fewest - 1)  # every name keeps a word of its own
    tail = min(len(os.path.commonprefix([w[::-1] for w in words])), fewest - 1 - head)
    out = {v: "".join(w[head : len(w) - tail]).strip("_-.") or v for v, w in zip(values, words)}
    return out if len(set(out.values())) == len(out) else {}


def display_group_names(
    records: pd.DataFrame, groups: Sequence[str], names: str | Mapping[str, str] | None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The group columns with the names a paper shows, and the mapping used ({} for none). ``names``: None (the
    values as they are), 'auto' (the words every value shares dropped), 'OLD=NEW,...' or a mapping."""
    if names is None:
        return records, {}
    given = parse_group_names(names) if isinstance(names, str) else dict(names)
    records = records.copy()
    used: dict[str, str] = {}
    matched: set[str] = set()
    for column in groups:
        values = sorted({str(v) for v in records[column]})
        renames = {k: v for k, v in (shortened(values) if given is None else given).items() if k in values and k != v}
        renamed = [renames.get(v, v) for v in values]
        if len(set(renamed)) < len(values):
            clash = next(n for n in renamed if renamed.count(n) > 1)
            raise UserError(
                f"--group-names would give two groups of {clip(column, 30)} the name {clip(clash, 30)}; give each "
                "group its own name"
            )
        records[column] = [renames.get(str(v), str(v)) for v in records[column]]
        used.update(renames)
        matched.update(k for k in (given or {}) if k in values)
    unknown = [k for k in (given or {}) if k not in matched]
    if unknown:
        present = sorted({str(v) for c in groups for v in records[c]})
        raise UserError(
            f"--group-names {clip(unknown[0], 40)}=...: no --group column has that value; values: "
            f"{short_list(present, limit=5, width=30)}"
        )
    return records, used


DEFAULT_CLUSTERS = ("prompt_id", "prompt")


def _empty(values: pd.Series) -> pd.Series:
    return values.isna() | (values.astype(str).str.strip() == "")


def clusters_for(
    records: pd.DataFrame, clusters: str | None = "auto", *, group: str | None = None, where: str = "records"
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """Each output's cluster and what the report says about it. ``clusters``: a column; None for none (every
    output independent); 'auto' for the prompt (prompt_id, or the prompt text) when it repeats, i.e. when
    samples share a prompt. ``group`` (the primary group column) cannot be the clusters."""
    if clusters is None:
        return None, {"column": None, "note": "none (--no-cluster): every output taken as an independent draw"}
    if clusters != "auto":
        column = clusters
        require_columns(records, [column], source=where, flag_hint="Fix --cluster.")
        if column == group:
            raise UserError(
                f"--cluster {column} is the --group column: each group would be a single cluster and no interval could "
                "be "
                "estimated; cluster by what outputs share within a group (prompt, template), or pass --no-cluster"
            )
        missing = int(_empty(records[column]).sum())
        if missing:
            raise UserError(
                f"--cluster {column}: {missing} of {len(records)} outputs have no value there; fill them, "
                "or cluster by another column (prompt, template), or pass --no-cluster"
            )
        values = records[column].astype(str)
        return values.to_numpy(dtype=object), {
            "column": column,
            "default": False,
            "n_clusters": int(values.nunique()),
            "note": f"by {column} (--cluster): {values.nunique()} clusters for {len(values)} outputs",
        }
    for column in DEFAULT_CLUSTERS:
        if column not in records.columns or _empty(records[column]).any():
            continue
        values = records[column].astype(str)
        if values.nunique() < len(values):
            note = (
                f"by {column} (the default, because {column} repeats: {values.nunique()} distinct for {len(values)} "
                "outputs, so "
                "outputs of one prompt are correlated draws); --cluster COL for another column (template), "
                "--no-cluster for none"
            )
            return values.to_numpy(dtype=object), {
                "column": column,
                "default": True,
                "n_clusters": int(values.nunique()),
                "note": note,
            }
    return None, {
        "column": None,
        "note": "none (no prompt_id or prompt column repeats, so every output is its own prompt); "
        "--cluster COL if outputs share a template or another unit",
    }


def training_rows(
    records: pd.DataFrame,
    taxonomy: Taxonomy,
    clusters: np.ndarray | None,
    *,
    label: str,
    group: str,
    training: JudgeTraining | None,
) -> dict | None:
    """Outputs the judge was trained on, and the rates split into those and the rest: on its training rows a
    judge's labels are largely the human labels it learned. None where no training ids are known."""
    if training is None or not training.ids:
        return None
    is_training = training.covers(records)
    k, name = int(is_training.sum()), training.names
    out = {
        "judge_dir": ", ".join(map(str, training.directories)),
        "judge_names": name,
        "n_training_rows": k,
        "n_outputs": int(len(records)),
    }
    if not k:
        return {
            **out,
            "note": f"Checked: none of the {len(records)} outputs is among the {len(training.ids)} ids judge directory "
            f"{name} was trained on.",
        }
    labels = np.asarray(canonical_labels(records[label], taxonomy, column=label), dtype=object)
    labels[labels == ESCALATE] = UNSCORED  # outside the judge's rates, as in the rates table
    groups = records[group].astype(str).to_numpy()
    rates = {}
    for g in sorted(set(groups)):
        rates[g] = {}
        for part, mask in (("training rows", is_training), ("not trained on", ~is_training)):
            keep = (groups == g) & mask
            if keep.any():
                rates[g][part] = category_rates(
                    labels[keep], categories=taxonomy.labels, clusters=None if clusters is None else clusters[keep]
                )
    note = (
        f"{k} of the {len(records)} outputs were used to train the judge ({name}/training_ids.json): there its labels "
        "are largely "
        "the human labels it learned, so they look better than the judge is. Rates split into the training rows and "
        "the rest below; "
        "read the rest for what the judge does on outputs it has not seen."
    )
    return {**out, "note": note, "rates": rates}


def disparity_analysis(
    records: pd.DataFrame,
    *,
    label: str,
    groups: str | Sequence[str],
    taxonomy: str | Taxonomy | None = None,
    label_map: dict[str, str] | None = None,
    coarse: bool = False,
    reference: str | None = None,
    group_names: str | Mapping[str, str] | None = None,
    clusters: str | None = "auto",
    human: str | pd.DataFrame | HumanSample | None = None,
    design: SamplingDesign | None = None,
    training: JudgeTraining | None = None,
    ppi_lambda: float | None = 1.0,
    adjust: bool = True,
    label_source: str | None = None,
    title: str | None = None,
    where: str = "records",
    ppi_scores=None,
    ppi_average=None,
    cross_fit=None,
) -> DisparityResult:
    """Per-group rates of the ``label`` column's categories, and how they differ across the first of ``groups``.

    ``groups``: the group column, or several (each further one splits every group). ``taxonomy``: a preset name,
    a YAML path or a Taxonomy (None: the distinct labels), read through ``label_map``; ``coarse`` reports parent
    categories. ``reference``: the group rate ratios and gaps compare with (default: the largest, never the
    '(missing)' group of rows without a group value).
    ``group_names``: names shown for groups (see ``display_group_names``). ``clusters``: 'auto' (the prompt when
    it repeats), a column, or None (independent outputs). ``adjust``: simultaneous intervals and Holm p-values
    in tables of more than 5 comparisons.

    ``human`` adds prediction-powered rates and gaps: a column of ``records`` filled on a sample, a table with
    ``id`` and label columns (judge.analysis.ppi.human_sample), or a HumanSample; ``design`` says how the sample
    was drawn (strata, the inclusion-probability column), ``ppi_lambda`` is PPI's lambda (None: tuned),
    ``training`` the judge's training ids (human labels among them are refused; labelled outputs among them
    are split out). ``label_source`` and ``title`` name the labels and the report; ``where`` names the records
    in messages. ``ppi_scores``, ``ppi_average`` and ``cross_fit``: a cross-fitted judge's probabilities
    (judge.analysis.crossfit).
    """
    groups = [groups] if isinstance(groups, str) else list(groups)
    design = design or SamplingDesign()
    records, used = prepare(records, label=label, taxonomy=taxonomy, coarse=coarse, label_map=label_map)
    require_columns(records, [label, *groups], source="records", flag_hint="Fix --label/--group.")
    # missing group values a group of their own, one spelling each, for a notebook's caller as for the commands
    # (which clean before and print the notes: nothing is left to say here then)
    records = records.copy()
    group_notes = clean_groups(records, groups)
    records, names = display_group_names(records, groups, group_names)
    codes, cluster_info = clusters_for(records, clusters, group=groups[0] if groups else None, where=where)
    result = disparity(
        records,
        label=label,
        groups=groups,
        taxonomy=used,
        reference=names.get(reference, reference),
        clusters=codes,
        adjust=adjust,
    )
    result.update(
        label_source=label_source, title=title, clusters=cluster_info, **({"group_names": names} if names else {})
    )
    warnings = group_notes + [
        f"warning: group {g!r} is not estimable ({why}); shown as not estimable"
        for g, why in result["not_estimable"].items()
    ]
    training_split = training_rows(records, used, codes, label=label, group=groups[0], training=training)
    if training_split:
        result["training_rows"] = training_split
    ppi = None
    if human is not None:
        fine = (
            resolve_taxonomy(
                taxonomy, [x for x in records[label] if isinstance(x, str) and x.strip()], label_map=label_map
            )
            if coarse
            else used
        )
        sample = (
            human
            if isinstance(human, HumanSample)
            else human_sample(records, human, label=label, design=design, where=where)
        )
        if result.get("n_escalated"):  # the escalated outputs are a census stratum: people labelled every one
            from judge.analysis.selective import check_escalated_labelled

            check_escalated_labelled(records[label], sample.labels)
        ppi = prediction_powered(
            records,
            sample,
            fine=fine,
            taxonomy=used,
            label=label,
            group=groups[0],
            reference=result["reference"],
            design=design,
            coarse=coarse,
            training=training,
            clusters=codes,
            cluster_info=cluster_info,
            ppi_lambda=ppi_lambda,
            adjust=adjust,
            scores=ppi_scores,
            average=ppi_average,
            cross_fit=cross_fit,
        )
        warnings += ppi.warnings
    if (
        training_split and training_split["n_training_rows"]
    ):  # after PPI, so refused human labels get their one line alone
        warnings.append(
            f"warning: {training_split['n_training_rows']} of the {training_split['n_outputs']} outputs are the "
            "judge's own "
            f"training rows ({training_split['judge_names']}): its labels there mirror the human labels; the report "
            "splits "
            "the rates into those rows and the rest"
        )
    typed = DisparityResult.from_dict(result)
    if ppi is not None:
        typed.ppi = ppi
    typed.warnings = warnings
    return typed
