"""Human labels that are probably wrong: out-of-fold judge probabilities, ranked by cleanlab.

Each record's probabilities come from a TF-IDF judge (training.tfidf's recipe) trained on the other
folds, so no label judges itself; folds keep each template (or --cv-group value) together, so a
template's wording cannot vouch for its own labels. cleanlab's ``find_label_issues`` then flags the
labels that disagree with what the rest of the data implies, most suspicious first.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from judge.errors import UserError
from training.data import labelled_data
from training.tfidf import tfidf_pipeline, tfidf_text


def out_of_fold_probabilities(texts: list[str], y: np.ndarray, n_classes: int, *, folds: int, groups=None, seed: int = 0):
    """(probabilities, fold of each record): each row predicted by a model that never saw it."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if groups is not None:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(texts, y, groups)
    else:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(texts, y)
    probs = np.zeros((len(y), n_classes))
    fold_of = np.full(len(y), -1)
    for fold, (train_idx, test_idx) in enumerate(splitter):
        model = tfidf_pipeline(seed).fit([texts[i] for i in train_idx], y[train_idx])
        probs[np.ix_(test_idx, model.classes_)] = model.predict_proba([texts[i] for i in test_idx])
        fold_of[test_idx] = fold
    return probs, fold_of


def find_label_errors(records: pd.DataFrame, *, label: str, taxonomy=None, folds: int = 5, group: str | None = None, seed: int = 0) -> dict:
    from cleanlab.filter import find_label_issues

    data = labelled_data(records, label_column=label, taxonomy=taxonomy)
    if group is None and "template" in data.records.columns:
        group = "template"
    if group is not None and group not in data.records.columns:
        raise UserError(f"--cv-group {group!r} is not a column; columns present: {', '.join(data.records.columns)}")
    groups = data.records[group].astype(str).to_numpy() if group else None
    if groups is not None and len(set(groups)) < folds:
        raise UserError(f"--cv-group {group!r} has {len(set(groups))} values, fewer than --folds {folds}; lower --folds")
    labels = data.taxonomy.labels
    probs, fold_of = out_of_fold_probabilities(tfidf_text(data.prompts, data.responses), data.y, len(labels), folds=folds, groups=groups, seed=seed)
    ranked = find_label_issues(labels=data.y, pred_probs=probs, return_indices_ranked_by="self_confidence")
    rows = data.records.iloc[ranked]
    flagged = pd.DataFrame({
        "id": rows["id"].to_numpy(),
        "prompt": rows["prompt"].to_numpy() if "prompt" in rows.columns else "",
        "response": rows["response"].to_numpy(),
        "given_label": [labels[data.y[i]] for i in ranked],
        "suggested_label": [labels[int(np.argmax(probs[i]))] for i in ranked],
        "p_given": [float(probs[i, data.y[i]]) for i in ranked],
        "p_suggested": [float(probs[i].max()) for i in ranked],
        "fold": fold_of[ranked],
        "label": "",  # for the adjudicator
    })
    method = (f"cleanlab.filter.find_label_issues on out-of-fold TF-IDF probabilities, {folds} folds"
              + (f" grouped by {group}" if group else "") + ", ranked by self-confidence")
    return {"flagged": flagged, "method": method, "probabilities": probs, "folds": fold_of}
