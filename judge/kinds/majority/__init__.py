"""The majority-class judge kind: every output gets the most frequent training label, with the training
shares as its probabilities (judge.py, format.py); trained by training/majority.py. The floor any judge
must clear: its kappa is 0, and its accuracy is what always saying the commonest category gets."""

from __future__ import annotations

from dataclasses import dataclass

from judge.kinds.spec import KindSpec


@dataclass
class Options:
    """It takes no option: its directory holds everything it does."""


SPEC = KindSpec(
    name="majority",
    title="the majority-class judge",
    form="directory",
    options=Options,
    load="judge.kinds.majority.judge:load",
    format="judge.kinds.majority.format",
    training="training.majority:TRAINER",
    trainable=True,
    member=True,
)
