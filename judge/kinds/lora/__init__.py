"""The LoRA judge kind: a peft LoRA sequence classifier (judge.py), its files (format.py), the precision
it runs in (precision.py, forward.py); trained by training/lora.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from judge.kinds.spec import KindSpec


@dataclass
class Options:
    precision: str = field(
        default="auto",
        metadata={"help": "auto, fp32, bf16 or int8 (auto: the fastest the judge's training check passed)"},
    )
    max_length: int | None = field(
        default=None, metadata={"help": "tokens of prompt + response (default: the judge's own)"}
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda ..."})
    verbose: bool = field(default=False, metadata={"help": "show transformers' load report and warnings"})


def own_directory(arg: str) -> Path:
    return Path(arg)  # its own judge.json holds the precision record


SPEC = KindSpec(
    name="lora",
    title="the LoRA judge",
    form="directory",
    options=Options,
    load="judge.kinds.lora.judge:load",
    format="judge.kinds.lora.format",
    training="training.lora:TRAINER",
    precision_directory=own_directory,
    trainable=True,
    member=True,
    default_member=True,
)
