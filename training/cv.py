"""Grouped cross-validation: out-of-fold probabilities for any judge kind.

Folds are grouped (default: by template, else by prompt when prompts repeat), so an output is never
predicted by a model that saw an output of the same template or prompt: the agreement measured this
way is what to expect on unseen prompts, and the stacked ensemble is fitted on predictions no member
made about its own training data. Outputs sampled several times from one prompt are near-copies:
folds of single records would put them on both sides and overstate agreement.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from judge.core.errors import UserError, clip, short_list
from training.examples import LabelledData
from training.rules import rules_probabilities  # noqa: F401 - benchmarks read it here


def grouped_folds(records: pd.DataFrame, *, k: int, group: str | None, seed: int = 0) -> np.ndarray:
    """A fold id (0..k-1) per record: whole groups to a fold, groups shuffled with ``seed`` and dealt
    largest first to the smallest fold (balanced sizes). Without a group column, each record is its
    own group, and so is a record whose group value is blank."""
    if k < 2:
        raise UserError(f"--cv must be at least 2 folds, got {k}")
    check_group_column(records, group)
    keys = group_keys(records, group)
    sizes = pd.Series(keys).value_counts()
    if len(sizes) < k:
        raise UserError(
            f"--cv {k} needs at least {k} distinct values of {group or 'id'}, found {len(sizes)}; lower --cv or pick "
            "another --cv-group"
        )
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


def check_group_column(records: pd.DataFrame, group: str | None) -> None:
    if group is not None and group not in records.columns:
        raise UserError(
            f"--cv-group column {clip(group)} not found; columns present: "
            f"{short_list(records.columns, limit=8, width=30)}"
        )


def group_keys(records: pd.DataFrame, group: str | None) -> np.ndarray:
    """The value that keeps records together in one fold: the group column, or the record's own id
    where there is no group column or its value is blank (an empty prompt is no shared prompt)."""
    ids = "\0id:" + records["id"].astype(str)
    if group is None:
        return ids.to_numpy()
    values = records[group]
    blank = values.isna() | (values.astype(str).str.strip() == "")
    return values.astype(str).where(~blank, ids).to_numpy()


def default_group(records: pd.DataFrame, group: str | None) -> tuple[str | None, str | None]:
    """(fold group, warning): --cv-group; else 'template' when the records have it (prompts from one
    template share wording); else 'prompt' when some prompt has several outputs, with a warning saying
    so; else None (one record per group)."""
    if group is not None:
        check_group_column(records, group)
        return group, None
    if "template" in records.columns:
        return "template", None
    if "prompt" in records.columns:
        prompts = records["prompt"][records["prompt"].astype(str).str.strip() != ""]
        per_prompt = prompts.value_counts()
        if len(per_prompt) and per_prompt.max() > 1:
            return "prompt", (
                f"no 'template' column and prompts repeat ({int((per_prompt > 1).sum())} prompts have several outputs, "
                "up to "
                f"{int(per_prompt.max())}): folds are grouped by prompt, so no prompt is on both sides of a fold; "
                "name another column with --cv-group"
            )
    return None, None


@dataclass
class OutOfFold:
    probabilities: np.ndarray  # (n, n_classes), taxonomy order; row i predicted by a model that never saw fold[i]
    fold: np.ndarray
    trained_on: dict[int, list[str]]  # fold -> ids its model was trained on (for the leak check)
    fold_average: np.ndarray | None = None  # (m, n_classes): the K models' probabilities on ``also``, averaged


def out_of_fold(
    data: LabelledData,
    kind: str,
    folds: np.ndarray,
    *,
    recipe=None,
    seed: int = 0,
    progress: bool = False,
    run=None,
    also: LabelledData | None = None,
) -> OutOfFold:
    """Each fold's records predicted by a ``kind`` model trained on the other folds: the one
    out-of-fold routine (cross-validation, the ensemble's stacker, label issues, cross-fitted PPI).

    ``also`` (records whose labels are not read: the outputs no human labelled) is predicted by every fold's
    model and the K probability vectors averaged (``fold_average``), as cross-prediction labels the unlabelled
    data (Zrnic & Candes 2024, PNAS)."""
    from training.kinds import Run

    run = run or Run(recipe=recipe, seed=seed, progress=progress)
    n_classes = len(data.taxonomy.labels)
    probs = np.zeros((len(data.y), n_classes))
    trained_on: dict[int, list[str]] = {}
    ids = data.records["id"].astype(str).to_numpy()
    fold_values = sorted(np.unique(folds))
    average = None if also is None else np.zeros((len(also.y), n_classes))
    for f in fold_values:
        train_idx, test_idx = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
        check_fold(data, train_idx, fold=int(f), n_folds=len(np.unique(folds)))
        trained_on[int(f)] = ids[train_idx].tolist()
        predict = fit_member(kind, data.subset(train_idx), n_classes, run=run)
        probs[test_idx] = predict(data.subset(test_idx))
        if also is not None:
            average += predict(also) / len(fold_values)
    return OutOfFold(probs, folds, trained_on, average)


def check_folds(data: LabelledData, folds: np.ndarray, *, lora: bool, val_fraction: float, seed: int) -> None:
    """Every fold's training part, checked before the first of the K trainings starts."""
    from training.examples import stratified_split

    n_folds = len(np.unique(folds))
    for f in sorted(np.unique(folds)):
        train_idx = np.flatnonzero(folds != f)
        check_fold(data, train_idx, fold=int(f), n_folds=n_folds)
        if lora:  # each fold's LoRA model holds out its own validation split
            try:
                stratified_split(data.y[train_idx], val_fraction=val_fraction, seed=seed)
            except UserError as exc:
                raise UserError(f"cross-validation, the training part of fold {f + 1} of {n_folds}: {exc}") from None


def check_fold(data: LabelledData, train_idx: np.ndarray, *, fold: int, n_folds: int) -> None:
    """Each fold's model is trained on the other folds: they must hold two categories, or it cannot be fitted."""
    present = sorted({data.taxonomy.labels[i] for i in data.y[train_idx]})
    if len(present) < 2:
        raise UserError(
            f"cross-validation: the records outside fold {fold + 1} of {n_folds} are all "
            f"{clip(', '.join(present) or 'unlabelled')}, "
            "too few categories to train on; lower --cv, pick another --cv-group, or add labels of other categories"
        )


def fit_member(
    kind: str, train: LabelledData, n_classes: int, *, recipe=None, seed: int = 0, progress: bool = False, run=None
) -> Callable[[LabelledData], np.ndarray]:
    """A ``kind`` model trained on ``train``, as a function from records to probabilities (taxonomy order)."""
    from training.kinds import Run, trainer

    return trainer(kind, needs="fit_member").fit_member(
        train, n_classes, run or Run(recipe=recipe, seed=seed, progress=progress)
    )
