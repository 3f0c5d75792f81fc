"""The registry of judge kinds: a spec string resolves to a kind, and the kind to a judge.

Specs: ``DIR`` (a trained judge directory; its judge.json says which kind loads it), ``KIND:ARG``
(``lora:DIR``, ``tfidf:DIR``, ``ensemble:DIR``, ``llm:MODEL``) or a bare kind (``rules``, ``llm``).

A kind is a folder, ``judge/kinds/K/``: its ``__init__.py`` declares ``Options`` (a dataclass of the
settings only this kind takes, ``field(metadata={"help": ...})``; an option given for a kind whose
``Options`` lack it is refused here, in one place) and ``SPEC = KindSpec(...)`` (judge.kinds.spec:
its title, form, loading, format, training, precision, and what it is: trainable, a member, ...);
its judge, format and the like are modules beside it, reached through the spec's dotted names. Its
training is ``training/K.py``, named by the spec (the floors: this package never imports training/).

Adding a kind is its folder, its training module and one line of ``KINDS`` (judge.kinds.registry).
Importing this registry is cheap; a kind's judge is imported when one is loaded.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

from judge.core.errors import UserError
from judge.kinds.registry import (
    KINDS,
    default_members,
    directory_kinds,
    member_kinds,
    register,
    spec_of,
    specs,
    trainable_kinds,
)
from judge.kinds.spec import KindSpec, dotted

# Settings of the run rather than of a kind (judge.label --device, --seed, --verbose): a kind whose
# Options lack them has nothing they could change, so they are passed to the kinds that take them.
RUN_SETTINGS = ("device", "seed", "verbose")

__all__ = [
    "KINDS",
    "Item",
    "Judge",
    "Judgement",
    "KindSpec",
    "default_members",
    "directory_kinds",
    "load_judge",
    "load_kind",
    "member_kinds",
    "parse_spec",
    "probability_column",
    "register",
    "resolve",
    "spec_of",
    "specs",
    "trainable_kinds",
]


def __getattr__(name: str):
    # The judge interface, re-exported without importing it (and pandas) with the registry.
    if name in ("Item", "Judge", "Judgement", "probability_column"):
        return getattr(importlib.import_module("judge.kinds.base"), name)
    raise AttributeError(name)


def parse_spec(spec: str) -> tuple[str, str]:
    """(kind, arg) of a judge spec. A bare directory's kind is read from its judge.json (bounded,
    before anything heavy); the full checks come when the kind loads it."""
    kind, sep, arg = spec.partition(":")
    if kind in KINDS and _by_name(kind):
        return kind, arg
    named = kind in KINDS and sep
    directory = Path(arg if named else spec)
    if not directory.is_dir():
        names = " or ".join(k for k in KINDS if _by_name(k))
        raise UserError(
            f"judge {spec[:80]!r} is neither a judge directory nor a known spec; use DIR, KIND:DIR or {names}"
        )
    stored = stored_kind(directory)
    if named and stored != kind:
        raise UserError(
            f"{directory.name} holds {'an' if stored[0] in 'aeiou' else 'a'} {stored} judge, not {kind}; "
            f"use --judge {directory.name} or {stored}:{directory.name}"
        )
    return stored, str(directory)


def named_kind(spec: str) -> str | None:
    """The kind a spec names by itself (``rules``, ``llm:M``, ``tfidf:DIR``), before any file is read;
    None for a bare directory."""
    kind, sep, _ = spec.partition(":")
    if kind in KINDS and (sep or _by_name(kind)):
        return kind
    return None


def _by_name(kind: str) -> bool:
    return spec_of(kind).form == "name"


def stored_kind(directory: Path) -> str:
    """The kind a judge directory's judge.json names, read as untrusted data (size and depth first)."""
    from judge.core.schema import read_json
    from judge.kinds.judge_dir import JUDGE_JSON, MAX_JUDGE_JSON_BYTES, display_name

    where = f"judge directory {display_name(directory)}"
    if not (directory / JUDGE_JSON).is_file():
        raise UserError(f"{where} is not a judge directory (no {JUDGE_JSON}); train one with python -m judge.train")
    meta = read_json(
        directory / JUDGE_JSON, max_bytes=MAX_JUDGE_JSON_BYTES, where=where, fix="restore it or retrain the judge"
    )
    kind = meta.get("kind") if isinstance(meta, dict) else None
    trained = directory_kinds()
    if kind not in trained:
        from judge.kinds.judge_dir import verify

        verify(directory)  # its own message for whatever is wrong (not an object, no checksums ...)
        raise UserError(
            f"{where}: {JUDGE_JSON} names kind {str(kind)[:40]!r}, not one of {', '.join(trained)}; retrain the judge"
        )
    return kind


def option_names(kind: str) -> list[str]:
    return [f.name for f in dataclasses.fields(spec_of(kind).options)]


def refuse_options(kind: str, given: dict[str, Any], *, spec: str) -> None:
    """Refuse, in one line, every option in ``given`` (name -> value, only those the user set) that
    ``kind`` does not take, naming the kinds that do."""
    taken = set(option_names(kind)) | set(RUN_SETTINGS)
    foreign = [name for name in given if name not in taken]
    if not foreign:
        return
    takers = [k for k in KINDS if set(foreign) & set(option_names(k))]
    flags = ", ".join("--" + n.replace("_", "-") for n in foreign)
    one = len(foreign) == 1
    owners = " and ".join(spec_of(k).title for k in takers) or "no judge"
    raise UserError(
        f"{flags} {'applies' if one else 'apply'} to {owners} only, not {spec_of(kind).title} (--judge "
        f"{short_spec(spec)}); "
        f"drop {'it' if one else 'them'}"
    )


def short_spec(spec: str) -> str:
    kind, sep, arg = spec.partition(":")
    if kind in KINDS and sep:
        return f"{kind}:{Path(arg).name}" if arg else spec
    return Path(spec).name or spec


def options_for(kind: str, values: dict[str, Any]):
    """The kind's Options from ``values``, keeping what it takes (None means 'the kind's default')."""
    options = spec_of(kind).options
    return options(**{f.name: values[f.name] for f in dataclasses.fields(options) if values.get(f.name) is not None})


def resolve(spec: str):
    """A spec resolved once for a run (``judge.kinds.ref.JudgeRef``): its kind and argument, and for a trained
    judge its directory, checked, each file hashed once, and its fingerprint. The run hands the result to
    ``load_judge``, ``precision_directory`` and its Ray workers, which take the digests found here."""
    from judge.kinds.judge_dir import frozen, known_digests, verify
    from judge.kinds.ref import JudgeRef

    kind, arg = parse_spec(spec)
    directory = Path(arg) if spec_of(kind).form == "directory" else None
    with known_digests() as known:
        if directory is not None:
            verify(directory)  # what loading checks first, before the fingerprint reads a byte
        fingerprint = kind_fingerprint(kind, arg)
    return JudgeRef(spec=spec, kind=kind, arg=arg, directory=directory, fingerprint=fingerprint, digests=frozen(known))


def load_judge(spec, *, taxonomy=None, **options: Any):
    """The judge a spec (or a ``JudgeRef``, its files' digests taken from it) names. ``options`` may hold
    settings of any kind: each kind takes its own (commands refuse the others first, with ``refuse_options``)."""
    from judge.core.taxonomy import load_taxonomy
    from judge.kinds.judge_dir import known_digests

    kind, arg = _kind_and_arg(spec)
    tax = load_taxonomy(taxonomy) if isinstance(taxonomy, (str, Path)) else taxonomy
    with known_digests(() if isinstance(spec, str) else spec.digests):
        judge = load_kind(kind, arg, options, tax)
    if spec_of(kind).form == "directory" and tax is not None and tax.labels != judge.taxonomy.labels:
        raise UserError(
            f"--taxonomy {tax.name} ({', '.join(tax.labels)}) differs from the one {Path(arg).name} was trained on "
            f"({', '.join(judge.taxonomy.labels)}); a trained judge carries its own taxonomy: drop --taxonomy"
        )
    return judge


def load_kind(kind: str, arg: str, options: dict[str, Any], taxonomy):
    """A judge of ``kind`` from ``arg``, taking of ``options`` what the kind takes (an ensemble's members too)."""
    return dotted(spec_of(kind).load)(arg, options_for(kind, options), taxonomy)


def _kind_and_arg(spec) -> tuple[str, str]:
    """A spec parsed, or a JudgeRef's own (resolved already)."""
    return parse_spec(spec) if isinstance(spec, str) else (spec.kind, spec.arg)


def fingerprint(spec: str) -> dict[str, str]:
    """What a rerun with this judge must match: a trained judge's files by sha256 (or what its spec's
    ``fingerprint`` says); nothing for a named kind, whose description records what it is."""
    return kind_fingerprint(*parse_spec(spec))


def kind_fingerprint(kind: str, arg: str) -> dict[str, str]:
    kind_spec = spec_of(kind)
    if kind_spec.fingerprint is not None:
        return dotted(kind_spec.fingerprint)(arg)
    if kind_spec.form == "directory":
        from judge.kinds.judge_dir import directory_fingerprint

        return directory_fingerprint(Path(arg))
    return {}


def precision_directory(spec) -> Path | None:
    """The LoRA directory whose precision record decides how this judge (a spec or a JudgeRef) runs (the
    spec's ``precision_directory``; kinds without one have no reduced-precision path)."""
    kind, arg = _kind_and_arg(spec)
    find = dotted(spec_of(kind).precision_directory)
    return find(arg) if find else None


def masks_names(judge) -> bool:
    """Whether the judge sees the names masked: what its text view says (judge.swap reports it)."""
    return bool(judge.text_view.mask_names)
