"""The frozen-encoder judge kind: a base encoder's mean-pooled embeddings of (prompt, response) and a
logistic-regression head (judge.py), the head stored as plain arrays (format.py); trained by
training/embed.py in seconds, where LoRA takes minutes. The cheap first stage of a cascade."""

from __future__ import annotations

from dataclasses import dataclass, field

from judge.kinds.spec import KindSpec


@dataclass
class Options:
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda ..."})


SPEC = KindSpec(
    name="embed",
    title="the frozen-encoder judge",
    form="directory",
    options=Options,
    load="judge.kinds.embed.judge:load",
    format="judge.kinds.embed.format",
    training="training.embed:TRAINER",
    fingerprint="judge.kinds.embed.format:fingerprint",
    trainable=True,  # not yet an ensemble member: its --cv folds use fit_member
)
