"""What a judge kind is, as one typed object: ``KindSpec``.

Each kind's package (``judge/kinds/K/__init__.py``) defines its ``Options`` and ``SPEC = KindSpec(...)``
and imports nothing heavy: the registry reads every kind's spec to build flags, allowlists and the
ensemble's schema, and reaches a kind's judge, format or training only through the dotted names its
spec gives (``"package.module:attribute"``), when they are needed. A misspelt field is a TypeError when
the package is imported, and a spec that contradicts itself (a trainable kind with no training, a
directory kind with no format) a ValueError: nothing is read with a default that a typo would hide.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Literal

FORMS = ("directory", "name")
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_DOTTED = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_MODULE = re.compile(r"[A-Za-z_][\w.]*")


@dataclass(frozen=True, kw_only=True)
class KindSpec:
    """One judge kind. ``load``, ``training``, ``precision_directory`` and ``fingerprint`` are dotted
    names (``"judge.kinds.lora.judge:load"``), or callables where the function is as cheap as the spec."""

    name: str  # the registry's key; judge.json's "kind", --kind K, --judge K:ARG, --members K
    title: str  # how messages name it: "the LoRA judge"
    # ARG of --judge K:ARG is a judge directory (and DIR alone finds it), or an optional name
    form: Literal["directory", "name"]
    options: type  # a dataclass: the judge.label settings only this kind takes (field(metadata={"help": ...}))
    load: str | Callable  # (arg, options, taxonomy) -> Judge
    format: str | None = None  # a directory kind's format module: its ``Settings`` (pydantic) is judge.json's schema
    training: str | None = None  # its training.kinds.Trainer ("training.K:TRAINER"): trainable and member kinds
    # (arg) -> Path | None: the LoRA directory whose precision record decides how the judge runs
    precision_directory: str | Callable | None = None
    # (arg) -> dict; by default a directory kind's files by sha256, a named kind's nothing
    fingerprint: str | Callable | None = None
    trainable: bool = False  # judge.train --kind makes it
    member: bool = False  # an ensemble may hold it (a directory kind as a trained folder, a named kind as code)
    default_member: bool = False  # an ensemble holds it when --members is not given
    writes_raw: bool = False  # its rows may carry PREFIX+raw (the generated text, an unscored member's output)
    # it runs a model in an engine (judge.engines): it takes the engine flags; its requests can fail
    runs_engine: bool = False

    def __post_init__(self):
        problems = []
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            problems.append(f"name {self.name!r} is not a lower-case identifier")
        if self.form not in FORMS:
            problems.append(f"form {self.form!r} is not one of {', '.join(FORMS)}")
        if not (isinstance(self.options, type) and dataclasses.is_dataclass(self.options)):
            problems.append("options is not a dataclass")
        for key in ("load", "training", "precision_directory", "fingerprint"):
            value = getattr(self, key)
            if isinstance(value, str) and not _DOTTED.fullmatch(value):
                problems.append(f"{key} {value!r} is not a dotted name 'module:attribute'")
            elif value is not None and not isinstance(value, str) and not callable(value):
                problems.append(f"{key} is neither a dotted name nor a callable")
        if self.load is None:
            problems.append("load is missing")
        if self.format is not None and not (isinstance(self.format, str) and _MODULE.fullmatch(self.format)):
            problems.append(f"format {self.format!r} is not a module name")
        if self.form == "directory" and self.format is None:
            problems.append("a directory kind needs the format module that checks its judge.json")
        if (self.trainable or self.member) and self.training is None:
            problems.append("a trainable or member kind needs its training ('training.K:TRAINER')")
        if self.trainable and self.form != "directory":
            problems.append("a trainable kind writes a judge directory: its form is 'directory'")
        if self.member and self.form == "directory" and not self.trainable:
            problems.append("a directory member is trained with the ensemble: it must be trainable")
        if (
            self.runs_engine
            and dataclasses.is_dataclass(self.options)
            and not {"engine", "engine_options"} <= {f.name for f in dataclasses.fields(self.options)}
        ):
            problems.append(
                "a kind that runs an engine takes the engine and its flags: options needs engine and engine_options"
            )
        if self.default_member and not self.member:
            problems.append("a default member must be a member")
        if problems:
            raise ValueError(f"judge kind spec {getattr(self, 'name', '?')!r}: {'; '.join(problems)}")


def dotted(target: str | Callable | None) -> Any:
    """The object a dotted name ``"module:attribute"`` names (imported now), or ``target`` itself."""
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def one_of(names) -> str:
    """``'a', 'b' or 'c'``: a list of choices as a message says it."""
    quoted = [repr(str(n)) for n in names]
    return " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted) or "none"
