"""Human labels that are probably wrong: out-of-fold judge probabilities, ranked by cleanlab.

Each record's probabilities come from a TF-IDF judge (training.tfidf's recipe) trained on the other
folds, so no label judges itself; folds keep each template (or --cv-group value; without either, each
prompt that has several outputs) together, so a template's wording cannot vouch for its own labels.
cleanlab's ``find_label_issues`` then flags the labels that disagree with what the rest of the data
implies, most suspicious first.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from judge.core.errors import UserError, clip
from training.cv import default_group, group_keys, out_of_fold
from training.examples import labelled_data


def stratified_folds(y: np.ndarray, *, folds: int, groups=None, seed: int = 0) -> np.ndarray:
    """A fold per record, each category spread over the folds (and each group kept in one, with ``groups``)."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    index = np.zeros(len(y))
    if groups is not None:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(index, y, groups)
    else:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(index, y)
    fold_of = np.full(len(y), -1)
    for fold, (_, test_idx) in enumerate(splitter):
        fold_of[test_idx] = fold
    return fold_of


def tfidf_out_of_fold(data, *, folds: int, groups=None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, fold of each record) from training.cv's out-of-fold routine, on stratified folds."""
    fold_of = stratified_folds(data.y, folds=folds, groups=groups, seed=seed)
    return out_of_fold(data, "tfidf", fold_of, seed=seed).probabilities, fold_of


def fold_groups(records: pd.DataFrame, group: str | None, *, folds: int) -> tuple[str | None, np.ndarray | None]:
    """The column folds keep together (training.cv's default, warned on stderr when it falls back to
    the prompt; a --cv-group that is no column refused) and each record's key in it; (None, None)
    for plain stratified folds."""
    group, warning = default_group(records, group)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    keys = group_keys(records, group) if group else None
    if keys is not None and len(set(keys)) < folds:
        raise UserError(
            f"--cv-group {clip(group)} has {len(set(keys))} values, fewer than --folds {folds}; lower --folds"
        )
    return group, keys


ADJUDICATED = "adjudicated_label"  # the column the adjudicator fills in
ISSUE_COLUMNS = (
    "annotator",
    "given_label",
    "suggested_label",
    "p_given",
    "p_suggested",
    "label_quality",
    "consensus_quality",
    "fold",
    ADJUDICATED,
)


def refuse_issue_clashes(records: pd.DataFrame) -> None:
    """label_issues.csv keeps every input column beside its own; an input column of one of its names would be lost."""
    clash = [c for c in ISSUE_COLUMNS if c in records.columns]
    if clash:
        raise UserError(
            f"the records have column(s) {', '.join(map(repr, clash))}, which label_issues.csv adds; rename them"
        )


def with_record_columns(rows: pd.DataFrame, added: dict) -> pd.DataFrame:
    """The flagged records with every column they came with (id, prompt and response first), then the
    issue's columns."""
    first = [c for c in ("id", "prompt", "response") if c in rows.columns]
    out = rows[first + [c for c in rows.columns if c not in first]].reset_index(drop=True).copy()
    for column, values in added.items():
        out[column] = values
    return out


def find_label_errors(
    records: pd.DataFrame,
    *,
    label: str,
    taxonomy=None,
    folds: int = 5,
    group: str | None = None,
    seed: int = 0,
    label_map: dict[str, str] | None = None,
) -> dict:
    from cleanlab.filter import find_label_issues

    refuse_issue_clashes(records)
    data = labelled_data(records, label_column=label, taxonomy=taxonomy, label_map=label_map)
    group, groups = fold_groups(data.records, group, folds=folds)
    labels = data.taxonomy.labels
    probs, fold_of = tfidf_out_of_fold(data, folds=folds, groups=groups, seed=seed)
    ranked = find_label_issues(labels=data.y, pred_probs=probs, return_indices_ranked_by="self_confidence")
    flagged = with_record_columns(
        data.records.iloc[ranked],
        {
            "given_label": [labels[data.y[i]] for i in ranked],
            "suggested_label": [labels[int(np.argmax(probs[i]))] for i in ranked],
            "p_given": [float(probs[i, data.y[i]]) for i in ranked],
            "p_suggested": [float(probs[i].max()) for i in ranked],
            "fold": fold_of[ranked],
            ADJUDICATED: "",
        },
    )
    method = (
        f"cleanlab.filter.find_label_issues on out-of-fold TF-IDF probabilities, {folds} folds"
        + (f" grouped by {group}" if group else "")
        + ", ranked by self-confidence"
    )
    return {"flagged": flagged, "method": method, "probabilities": probs, "folds": fold_of}


def find_label_errors_multi(
    records: pd.DataFrame,
    *,
    annotators: list[str],
    taxonomy=None,
    folds: int = 5,
    group: str | None = None,
    seed: int = 0,
    label_map: dict[str, str] | None = None,
) -> dict:
    """Several annotators per item: cleanlab's CROWDLAB (``get_label_quality_multiannotator``) scores every
    annotator's label with out-of-fold judge probabilities (trained on the majority vote); flagged are the
    labels that differ from the consensus, least trustworthy first."""
    from cleanlab.multiannotator import get_label_quality_multiannotator, get_majority_vote_label

    from judge.core.taxonomy import resolve_taxonomy

    refuse_issue_clashes(records)
    missing = [c for c in annotators if c not in records.columns]
    if missing:
        raise UserError(
            f"annotator column(s) {', '.join(map(repr, missing))} not found; columns present: "
            f"{', '.join(records.columns)}"
        )
    given = records[annotators].map(lambda v: v.strip() if isinstance(v, str) and v.strip() else None)
    has_any = given.notna().any(axis=1)
    records, given = records[has_any].reset_index(drop=True), given[has_any].reset_index(drop=True)
    tax = resolve_taxonomy(taxonomy, [v for c in annotators for v in given[c].dropna()], label_map=label_map)
    index = {label: i for i, label in enumerate(tax.labels)}
    matrix = pd.DataFrame(
        {c: [np.nan if v is None else float(index[tax.gold([v], column=c)[0]]) for v in given[c]] for c in annotators}
    )
    majority = get_majority_vote_label(matrix, verbose=False)
    voted = records.assign(_majority=[tax.labels[int(k)] for k in majority])
    data = labelled_data(voted, label_column="_majority", taxonomy=tax)
    group, groups = fold_groups(data.records, group, folds=folds)
    probs, fold_of = tfidf_out_of_fold(data, folds=folds, groups=groups, seed=seed)
    quality = get_label_quality_multiannotator(matrix, probs, verbose=False)
    consensus = quality["label_quality"]["consensus_label"].to_numpy()
    detailed = quality["detailed_label_quality"]
    picked, added = (
        [],
        {c: [] for c in ("annotator", "given_label", "suggested_label", "label_quality", "consensus_quality", "fold")},
    )
    for k, col in enumerate(annotators):
        scores = detailed.iloc[:, k].to_numpy()
        for i in range(len(records)):
            label = matrix[col].iloc[i]
            if np.isnan(label) or int(label) == int(consensus[i]):
                continue
            picked.append(i)
            for key, value in (
                ("annotator", col),
                ("given_label", tax.labels[int(label)]),
                ("suggested_label", tax.labels[int(consensus[i])]),
                ("label_quality", float(scores[i])),
                ("fold", int(fold_of[i])),
                ("consensus_quality", float(quality["label_quality"]["consensus_quality_score"].iloc[i])),
            ):
                added[key].append(value)
    flagged = with_record_columns(records.iloc[picked], {**added, ADJUDICATED: ""})
    flagged = flagged.sort_values("label_quality", kind="stable").reset_index(drop=True)
    method = (
        "cleanlab.multiannotator.get_label_quality_multiannotator (CROWDLAB) on out-of-fold TF-IDF probabilities, "
        f"{folds} folds"
        + (f" grouped by {group}" if group else "")
        + "; labels that differ from the consensus, lowest quality first"
    )
    return {"flagged": flagged, "method": method, "annotator_stats": quality.get("annotator_stats")}
