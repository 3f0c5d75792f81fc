"""The keyword rules kind: refusal phrases and the blank (keywords.py), as a judge (judge.py) and as an
ensemble member (training/rules.py gives its out-of-fold probabilities: nothing to train)."""

from __future__ import annotations

from dataclasses import dataclass

from judge.kinds.spec import KindSpec


@dataclass
class Options:
    """It takes no option: the rules are fixed."""


SPEC = KindSpec(
    name="rules",
    title="the keyword rules judge",
    form="name",  # --judge rules
    options=Options,
    load="judge.kinds.rules.judge:load",
    training="training.rules:TRAINER",
    member=True,
    default_member=True,
)
