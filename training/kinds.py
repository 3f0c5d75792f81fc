"""Training a judge kind: ``training/<kind>.py`` is the kind's training module, found by its name.

A kind's module (``judge.kinds.<kind>``) says what the kind is; this package cannot import it (the
floors), so it finds the training by the same name, as ``judge.kinds.judge_dir`` finds a
kind's format. A training module defines:

- ``fit_member(train, n_classes, run) -> predict``: a model fitted on ``train``, as a function from
  records to probabilities in taxonomy order (cross-validation and the ensemble call it);
- ``train(data, out_dir, run) -> Trained`` (kinds judge.train makes): the judge's files in ``out_dir``;
- ``TAKES``: the judge.train settings only it takes (an ensemble: ``members``, and its members' own);
  ``TITLE``: how a message names it; judge.train refuses any other kind's settings;
- ``card_line(config)``: what the model card says of it; ``VALIDATION_SPLIT``: it holds out --val-fraction;
- ``DEFAULT_FOLDS`` (optional): the folds it trains on itself, without --cv (the ensemble's stacker).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from types import ModuleType

import numpy as np

from judge.core.errors import UserError
from judge.core.text import TextView


@dataclass
class Run:
    """What a kind's ``train`` and ``fit_member`` get: the LoRA recipe and the run's settings."""

    recipe: object = None  # training.lora.LoraRecipe, for kinds with a LoRA part
    seed: int = 0
    val_fraction: float = 0.15
    mask_names: bool = True
    view: TextView | None = None  # what the judge reads (judge.core.text), recorded in every directory it writes
    progress: bool = False
    verbose: bool = False
    members: list[str] = field(default_factory=list)
    folds: np.ndarray | None = None

    def for_member(self) -> "Run":
        """An ensemble's shipped member sees every label; its validation share is the recipe's (LoRA's early stopping)."""
        return replace(self, val_fraction=0.0, members=[], folds=None)


@dataclass
class Trained:
    metrics: dict
    oof: np.ndarray | None = None  # the kind's own out-of-fold probabilities, when it trains on folds (the ensemble)


def training_module(kind: str, *, needs: str = "fit_member") -> ModuleType:
    try:
        module = importlib.import_module(f"training.{kind}")
    except ModuleNotFoundError:
        module = None
    if module is None or not hasattr(module, needs):
        what = "trained by judge.train" if needs == "train" else "cross-validated or stacked"
        raise UserError(f"judge kind {str(kind)[:40]!r} cannot be {what}")
    return module
