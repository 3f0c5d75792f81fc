"""The registered judge kinds: one line per kind, its name and the package whose ``SPEC`` says what it is.

Reading it is cheap (a kind's package holds its spec and options only, never its judge), so every
list of kinds comes from here: judge.train's ``--kind`` and ``--members`` choices, the kinds a judge
directory may name (``judge_dir``), the members an ensemble may hold and the folders it ships
(``judge.kinds.ensemble.format``), the default members. ``training/`` reads specs here to find a
kind's training by its dotted name; it never loads a judge.
"""

from __future__ import annotations

import importlib

from judge.core.errors import UserError
from judge.kinds.spec import KindSpec, one_of

KINDS = {
    "lora": "judge.kinds.lora",
    "tfidf": "judge.kinds.tfidf",
    "ensemble": "judge.kinds.ensemble",
    "rules": "judge.kinds.rules",
    "llm": "judge.kinds.llm",
    "majority": "judge.kinds.majority",
    "embed": "judge.kinds.embed",
}


def spec_of(name: str) -> KindSpec:
    """The spec of kind ``name``; an unregistered name is refused in one line."""
    if not isinstance(name, str) or name not in KINDS:
        raise UserError(f"unknown judge kind {str(name)[:40]!r}; use one of {', '.join(KINDS)}")
    return _read_spec(KINDS[name], name)


def _read_spec(package: str, name: str | None = None) -> KindSpec:
    spec = getattr(importlib.import_module(package), "SPEC", None)
    if not isinstance(spec, KindSpec):
        raise TypeError(f"{package} must define SPEC = KindSpec(...), found {type(spec).__name__}")
    if name is not None and spec.name != name:
        raise ValueError(f"{package} declares kind {spec.name!r}, registered as {name!r}")
    return spec


def specs() -> list[KindSpec]:
    return [spec_of(name) for name in KINDS]


def register(package: str) -> KindSpec:
    """Add the kind whose package is ``package`` (its ``SPEC`` names it): what its line in ``KINDS`` does."""
    spec = _read_spec(package)
    if KINDS.get(spec.name, package) != package:
        raise ValueError(f"judge kind {spec.name!r} is registered already, by {KINDS[spec.name]}")
    KINDS[spec.name] = package
    return spec


def trainable_kinds() -> list[str]:
    return [s.name for s in specs() if s.trainable]


def member_kinds() -> list[str]:
    return [s.name for s in specs() if s.member]


def default_members() -> list[str]:
    return [s.name for s in specs() if s.default_member]


def directory_kinds() -> list[str]:
    """The kinds a judge directory's judge.json may name."""
    return [s.name for s in specs() if s.form == "directory"]


def trained_members() -> list[str]:
    """The members an ensemble ships as judge directories of their own (members/K); the others are code."""
    return [s.name for s in specs() if s.member and s.form == "directory"]


def registered(names: list[str], value: str, *, what: str) -> str:
    """A pydantic check that ``value`` is one of ``names`` (read from the registry when a file is checked)."""
    if value not in names:
        raise ValueError(f"must be {one_of(names)} ({what}), got {str(value)[:40]!r}")
    return value
