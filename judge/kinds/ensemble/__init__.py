"""The stacked ensemble kind: its members' probabilities -> a logistic-regression stacker (judge.py),
its directory with one folder per trained member (format.py); trained by training/ensemble.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from judge.kinds.spec import KindSpec


@dataclass
class Options:
    """What its members take (the LoRA member's precision, the LoRA and embed members' device)."""

    precision: str = field(default="auto", metadata={"help": "its LoRA member's precision: auto, fp32, bf16 or int8"})
    max_length: int | None = field(
        default=None, metadata={"help": "its LoRA member's window (default: the member's own)"}
    )
    device: str = field(default="auto", metadata={"help": "its LoRA and embed members' device: auto, cpu, cuda ..."})
    verbose: bool = field(default=False, metadata={"help": "show transformers' load report and warnings"})


SPEC = KindSpec(
    name="ensemble",
    title="the stacked ensemble",
    form="directory",
    options=Options,
    load="judge.kinds.ensemble.judge:load",
    format="judge.kinds.ensemble.format",
    training="training.ensemble:TRAINER",
    precision_directory="judge.kinds.ensemble.format:precision_directory",  # its LoRA member's
    trainable=True,
    member=False,  # never another ensemble's member: loading one cannot recurse
    writes_raw=True,  # judge.label adds a PREFIX+raw column: an unscored member's raw output
)
