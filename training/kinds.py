"""Training a judge kind: ``training/<kind>.py`` declares ``TRAINER = Trainer(...)``, and the kind's
spec (``KindSpec.training``, ``"training.K:TRAINER"``) names it.

This package reads the specs (``judge.kinds.registry``: names and dotted names) to find a kind's
training; it never loads a judge (the floors). A ``Trainer`` holds:

- ``fit_member(train, n_classes, run) -> predict``: a model fitted on ``train``, as a function from
  records to probabilities in taxonomy order (cross-validation and the ensemble call it);
- ``train(data, out_dir, run) -> Trained`` (kinds judge.train makes): the judge's files in ``out_dir``;
- ``options``: a dataclass of the judge.train settings only it takes (field metadata: ``help``, and
  ``choices`` or ``metavar``; its ``__post_init__`` checks them): they become judge.train's flags and
  TrainConfig's fields, as an engine's Options become judge.label's flags;
- ``takes``: other settings only it takes (an ensemble: ``members``, and then its members' own);
  ``title``: how a message names it; judge.train refuses any other kind's settings;
- ``card_line(config)``: what the model card says of it; ``validation_split``: it holds out --val-fraction;
- ``default_folds``: the folds it trains on itself, without --cv (the ensemble's stacker).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any, Callable

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
    options: dict = field(default_factory=dict)  # the kinds' training options (Trainer.options' fields) by name
    # What the trainings of one run share and may reuse (the embed kind's loaded encoder and its embeddings, by
    # training.embed.encoder_for): one dict for the run, its folds and its shipped members (for_member keeps it),
    # gone with the run. None: nothing is shared, every training loads and computes its own.
    cache: dict | None = field(default_factory=dict, repr=False, compare=False)

    def option(self, name: str, default=None):
        return self.options.get(name, default)

    def for_member(self) -> "Run":
        """An ensemble's shipped member sees every label; its validation share is the recipe's
        (LoRA's early stopping)."""
        return replace(self, val_fraction=0.0, members=[], folds=None)


@dataclass
class Trained:
    metrics: dict
    oof: np.ndarray | None = None  # the kind's own out-of-fold probabilities, when it trains on folds (the ensemble)


def no_card_line(config) -> str:
    return ""


@dataclass(frozen=True, kw_only=True)
class Trainer:
    """How a kind is trained: what ``training/<kind>.py`` declares as ``TRAINER`` (a misspelt field is a TypeError)."""

    title: str  # how judge.train's messages name the kind's settings' owner: "the TF-IDF judge (--kind tfidf)"
    fit_member: Callable[..., Callable] | None = (
        None  # (train, n_classes, run) -> predict: member and cross-validation kinds
    )
    train: Callable[..., Trained] | None = None  # (data, out_dir, run) -> Trained: kinds judge.train makes
    options: type | None = (
        None  # a dataclass of the judge.train settings only it takes: flags, TrainConfig fields, checks
    )
    takes: tuple[str, ...] = ()  # other judge.train settings only it takes ("members": its members' too)
    card_line: Callable[[Any], str] = no_card_line  # the model card's words after "- Kind: K"
    validation_split: bool = False  # it holds out --val-fraction (checked before any training)
    default_folds: int = 0  # folds it trains on without --cv (the ensemble's stacker)

    def __post_init__(self):
        if self.train is None and self.fit_member is None:
            raise ValueError(f"trainer {self.title!r} neither trains a judge nor fits a member")
        if not isinstance(self.takes, tuple) or not all(isinstance(t, str) for t in self.takes):
            raise TypeError(f"trainer {self.title!r}: takes must be a tuple of setting names")
        if self.options is not None and not (isinstance(self.options, type) and dataclasses.is_dataclass(self.options)):
            raise TypeError(f"trainer {self.title!r}: options must be a dataclass")

    @property
    def settings(self) -> tuple[str, ...]:
        """Every judge.train setting only this kind takes: its options' fields and ``takes``."""
        return tuple(f.name for f in dataclasses.fields(self.options or _NoOptions)) + self.takes


@dataclass
class _NoOptions:
    pass


def trainer(kind: str, *, needs: str | None = None) -> Trainer:
    """The training of ``kind``, as its spec names it; one that lacks ``needs`` ("train", "fit_member") is refused."""
    from judge.kinds.registry import KINDS, spec_of
    from judge.kinds.spec import dotted

    spec = spec_of(kind) if isinstance(kind, str) and kind in KINDS else None
    found = dotted(spec.training) if spec is not None and spec.training else None
    if found is not None and not isinstance(found, Trainer):
        raise TypeError(f"{spec.training} must be a training.kinds.Trainer, found {type(found).__name__}")
    if found is None or (needs is not None and getattr(found, needs) is None):
        what = "trained by judge.train" if needs == "train" else "cross-validated or stacked"
        raise UserError(f"judge kind {str(kind)[:40]!r} cannot be {what}")
    return found


def trained_kinds() -> list[str]:
    """Every kind judge.train trains or stacks (its trainable and member kinds), in registry order."""
    from judge.kinds.registry import member_kinds, trainable_kinds

    return list(dict.fromkeys(trainable_kinds() + member_kinds()))


def option_fields() -> list[dataclasses.Field]:
    """The fields of every kind's training options, each name once: judge.train's kind flags and TrainConfig's
    kind fields. Two kinds that name the same setting must give it the same type and default."""
    out: dict[str, dataclasses.Field] = {}
    for kind in trained_kinds():
        options = trainer(kind).options
        for f in dataclasses.fields(options) if options else ():
            seen = out.setdefault(f.name, f)
            if (seen.type, seen.default) != (f.type, f.default):
                raise TypeError(
                    f"training option {f.name!r} of kind {kind!r} differs from another kind's ({seen.type} = "
                    f"{seen.default!r})"
                )
    return list(out.values())
