"""Grouped cross-validation: out-of-fold probabilities for any judge kind.

Folds are grouped (default: by template), so an output is never predicted by a model that saw an
output of the same template: the agreement measured this way is what to expect on unseen prompts,
and the stacked ensemble is fitted on predictions no member made about its own training data.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import pandas as pd

from judge.errors import UserError
from training.data import LabelledData

MEMBER_KINDS = ("lora", "tfidf", "rules")


def grouped_folds(records: pd.DataFrame, *, k: int, group: str | None, seed: int = 0) -> np.ndarray:
    """A fold id (0..k-1) per record: whole groups to a fold, groups shuffled with ``seed`` and dealt
    largest first to the smallest fold (balanced sizes). Without a group column, each record is its
    own group."""
    if k < 2:
        raise UserError(f"--cv must be at least 2 folds, got {k}")
    if group is not None and group not in records.columns:
        raise UserError(f"--cv-group column {group!r} not found; columns present: {', '.join(map(str, records.columns))}")
    keys = records[group].astype(str).to_numpy() if group else records["id"].astype(str).to_numpy()
    sizes = pd.Series(keys).value_counts()
    if len(sizes) < k:
        raise UserError(f"--cv {k} needs at least {k} distinct values of {group or 'id'}, found {len(sizes)}; lower --cv or pick another --cv-group")
    names = sorted(sizes.index)
    random.Random(seed).shuffle(names)
    names.sort(key=lambda n: -sizes[n])  # stable: ties keep the seeded order
    load = [0] * k
    fold_of = {}
    for name in names:
        target = min(range(k), key=lambda f: (load[f], f))
        fold_of[name] = target
        load[target] += sizes[name]
    return np.array([fold_of[key] for key in keys], dtype=int)


def default_group(records: pd.DataFrame, group: str | None) -> str | None:
    """--cv-group, else 'template' when the records have it (prompts from one template share wording)."""
    if group is not None:
        return group
    return "template" if "template" in records.columns else None


@dataclass
class OutOfFold:
    probabilities: np.ndarray  # (n, n_classes), taxonomy order; row i predicted by a model that never saw fold[i]
    fold: np.ndarray
    trained_on: dict[int, list[str]]  # fold -> ids its model was trained on (for the leak check)


def out_of_fold(data: LabelledData, kind: str, folds: np.ndarray, *, recipe=None, seed: int = 0, progress: bool = False) -> OutOfFold:
    """Each fold's records predicted by a ``kind`` model trained on the other folds."""
    n_classes = len(data.taxonomy.labels)
    probs = np.zeros((len(data.y), n_classes))
    trained_on: dict[int, list[str]] = {}
    ids = data.records["id"].astype(str).to_numpy()
    if kind == "rules":
        probs[:] = rules_probabilities(data)
        return OutOfFold(probs, folds, {int(f): [] for f in np.unique(folds)})
    if kind not in MEMBER_KINDS:
        raise UserError(f"cross-validation knows kinds {', '.join(MEMBER_KINDS)}, not {kind!r}")
    for f in sorted(np.unique(folds)):
        train_idx, test_idx = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        trained_on[int(f)] = ids[train_idx].tolist()
        predict = fit_member(kind, data.subset(train_idx), n_classes, recipe=recipe, seed=seed, progress=progress)
        probs[test_idx] = predict(data.subset(test_idx))
    return OutOfFold(probs, folds, trained_on)


def fit_member(kind: str, train: LabelledData, n_classes: int, *, recipe=None, seed: int = 0,
               progress: bool = False) -> Callable[[LabelledData], np.ndarray]:
    """A ``kind`` model trained on ``train``, as a function from records to probabilities (taxonomy order)."""
    if kind == "rules":
        return rules_probabilities
    if kind == "tfidf":
        from training.tfidf import tfidf_pipeline, tfidf_text

        pipeline = tfidf_pipeline(seed).fit(tfidf_text(train.prompts, train.responses), train.y)

        def predict_tfidf(test: LabelledData) -> np.ndarray:
            out = np.zeros((len(test.y), n_classes))
            out[:, pipeline.classes_] = pipeline.predict_proba(tfidf_text(test.prompts, test.responses))
            return out
        return predict_tfidf
    if kind == "lora":
        # trained with its own validation split and temperature, as the shipped LoRA judge is
        import tempfile

        from training.calibration import softmax
        from judge.models import pick_device
        from training.lora import encode, predict_logits, train_lora

        with tempfile.TemporaryDirectory(prefix="cv-lora-") as tmp:
            trained = train_lora(train, tmp, replace(recipe), progress=progress, check_precision=False)
        device, _ = pick_device(recipe.device)

        def predict_lora(test: LabelledData) -> np.ndarray:
            encoded = encode(trained.tokenizer, test.prompts, test.responses, recipe.max_length, recipe.tail_tokens)
            logits = predict_logits(trained.model, trained.tokenizer, encoded, batch_size=64, device=device)
            return softmax(logits, trained.metrics["temperature"])
        predict_lora.training_metrics = trained.metrics  # best epoch, validation history: why a point is what it is
        return predict_lora
    raise UserError(f"cross-validation knows kinds {', '.join(MEMBER_KINDS)}, not {kind!r}")


def rules_probabilities(data: LabelledData) -> np.ndarray:
    """The keyword rules need no training: their one-hot labels are out-of-fold already."""
    from judge.keyword_rules import KeywordRules

    rules = KeywordRules(data.taxonomy)
    labels = data.taxonomy.labels
    return np.array([[float(c == rules.label(r)) for c in labels] for r in data.responses])
