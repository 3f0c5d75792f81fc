"""The frozen-encoder judge kind: a base encoder's mean-pooled embeddings of (prompt, response) and a
logistic-regression head (judge.py), the head stored as plain arrays (format.py); trained by
training/embed.py in seconds, where LoRA takes minutes. The cheap first stage of a cascade, and a member an
ensemble may hold (``--members tfidf embed rules``): the ensemble loads it with its own options (device)."""

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
    trainable=True,
    member=True,  # an ensemble may hold it (members/embed); not a default member: the defaults stay lora, tfidf, rules
)
