"""The registry of judge kinds: a spec string resolves to a kind module, and the module to a judge.

Specs: ``DIR`` (a trained judge directory; its judge.json says which kind loads it), ``KIND:ARG``
(``lora:DIR``, ``tfidf:DIR``, ``ensemble:DIR``, ``llm:MODEL``) or a bare kind (``rules``, ``llm``).

Each kind is one module of this package that says what it is:

- ``TITLE``: how messages name it ("the LoRA judge");
- ``Options``: a dataclass of the settings only this kind takes (``field(metadata={"help": ...})``);
  an option given for a kind whose ``Options`` lacks it is refused here, in one place;
- ``load(arg, options, taxonomy) -> Judge`` and ``fingerprint(arg) -> dict`` (what a rerun must match);
- ``masks_names(judge) -> bool``: whether the judge sees the names (judge.swap reports it);
- ``precision_directory(arg) -> Path | None`` (optional): the LoRA directory whose precision record
  decides the run's ``--precision auto`` (judge.kinds.lora.precision);
- ``SPEC``: ``"directory"`` (ARG is a judge directory, ``DIR`` alone finds it) or ``"name"`` (ARG is optional);
- ``TRAINABLE`` / ``MEMBER``: whether ``judge.train --kind`` makes it / an ensemble may hold it. Its
  training lives in ``training/<kind>.py`` (the floors: this package never imports training/).

Adding a kind is its module and one line of ``KINDS``. Importing this registry is cheap; a kind's
module is imported when it is looked up.
"""
from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from judge.core.errors import UserError

KINDS = {
    "lora": "judge.kinds.lora.judge",
    "tfidf": "judge.kinds.tfidf.judge",
    "ensemble": "judge.kinds.ensemble.judge",
    "rules": "judge.kinds.rules.judge",
    "llm": "judge.kinds.llm.judge",
}

# Settings of the run rather than of a kind (judge.label --device, --seed, --verbose): a kind whose
# Options lack them has nothing they could change, so they are passed to the kinds that take them.
RUN_SETTINGS = ("device", "seed", "verbose")

__all__ = ["KINDS", "Item", "Judge", "Judgement", "kind_module", "load_judge", "parse_spec", "probability_column", "resolve"]


def __getattr__(name: str):
    # The judge interface, re-exported without importing it (and pandas) with the registry.
    if name in ("Item", "Judge", "Judgement", "probability_column"):
        return getattr(importlib.import_module("judge.kinds.base"), name)
    raise AttributeError(name)


def kind_module(name: str) -> ModuleType:
    if name not in KINDS:
        raise UserError(f"unknown judge kind {name!r}; use one of {', '.join(KINDS)}")
    return importlib.import_module(KINDS[name])


def trainable_kinds() -> list[str]:
    return [k for k in KINDS if getattr(kind_module(k), "TRAINABLE", False)]


def member_kinds() -> list[str]:
    return [k for k in KINDS if getattr(kind_module(k), "MEMBER", False)]


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
        raise UserError(f"judge {spec[:80]!r} is neither a judge directory nor a known spec; use DIR, KIND:DIR or {names}")
    stored = stored_kind(directory)
    if named and stored != kind:
        raise UserError(f"{directory.name} holds {'an' if stored[0] in 'aeiou' else 'a'} {stored} judge, not {kind}; "
                        f"use --judge {directory.name} or {stored}:{directory.name}")
    return stored, str(directory)


def named_kind(spec: str) -> str | None:
    """The kind a spec names by itself (``rules``, ``llm:M``, ``tfidf:DIR``), before any file is read;
    None for a bare directory."""
    kind, sep, _ = spec.partition(":")
    if kind in KINDS and (sep or _by_name(kind)):
        return kind
    return None


def _by_name(kind: str) -> bool:
    return kind_module(kind).SPEC == "name"


def stored_kind(directory: Path) -> str:
    """The kind a judge directory's judge.json names, read as untrusted data (size and depth first)."""
    from judge.core.schema import read_json
    from judge.kinds.judge_dir import JUDGE_JSON, MAX_JUDGE_JSON_BYTES, display_name

    where = f"judge directory {display_name(directory)}"
    if not (directory / JUDGE_JSON).is_file():
        raise UserError(f"{where} is not a judge directory (no {JUDGE_JSON}); train one with python -m judge.train")
    meta = read_json(directory / JUDGE_JSON, max_bytes=MAX_JUDGE_JSON_BYTES, where=where, fix="restore it or retrain the judge")
    kind = meta.get("kind") if isinstance(meta, dict) else None
    trained = [k for k in KINDS if kind_module(k).SPEC == "directory"]
    if kind not in trained:
        from judge.kinds.judge_dir import verify

        verify(directory)  # its own message for whatever is wrong (not an object, no checksums ...)
        raise UserError(f"{where}: {JUDGE_JSON} names kind {str(kind)[:40]!r}, not one of {', '.join(trained)}; retrain the judge")
    return kind


def option_names(kind: str) -> list[str]:
    return [f.name for f in dataclasses.fields(kind_module(kind).Options)]


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
    owners = " and ".join(kind_module(k).TITLE for k in takers) or "no judge"
    raise UserError(f"{flags} {'applies' if one else 'apply'} to {owners} only, not {kind_module(kind).TITLE} (--judge {short_spec(spec)}); "
                    f"drop {'it' if one else 'them'}")


def short_spec(spec: str) -> str:
    kind, sep, arg = spec.partition(":")
    if kind in KINDS and sep:
        return f"{kind}:{Path(arg).name}" if arg else spec
    return Path(spec).name or spec


def options_for(kind: str, values: dict[str, Any]):
    """The kind's Options from ``values``, keeping what it takes (None means 'the kind's default')."""
    options = kind_module(kind).Options
    return options(**{f.name: values[f.name] for f in dataclasses.fields(options) if values.get(f.name) is not None})


def resolve(spec: str):
    """A spec resolved once for a run (``judge.kinds.ref.JudgeRef``): its kind and argument, and for a trained
    judge its directory, checked, each file hashed once, and its fingerprint. The run hands the result to
    ``load_judge``, ``precision_directory`` and its Ray workers, which take the digests found here."""
    from judge.kinds.judge_dir import frozen, known_digests, verify
    from judge.kinds.ref import JudgeRef

    kind, arg = parse_spec(spec)
    module = kind_module(kind)
    directory = Path(arg) if module.SPEC == "directory" else None
    with known_digests() as known:
        if directory is not None:
            verify(directory)  # what loading checks first, before the fingerprint reads a byte
        fingerprint = module.fingerprint(arg)
    return JudgeRef(spec=spec, kind=kind, arg=arg, directory=directory, fingerprint=fingerprint, digests=frozen(known))


def load_judge(spec, *, taxonomy=None, **options: Any):
    """The judge a spec (or a ``JudgeRef``, its files' digests taken from it) names. ``options`` may hold
    settings of any kind: each kind takes its own (commands refuse the others first, with ``refuse_options``)."""
    from judge.core.taxonomy import load_taxonomy
    from judge.kinds.judge_dir import known_digests

    kind, arg = _kind_and_arg(spec)
    tax = load_taxonomy(taxonomy) if isinstance(taxonomy, (str, Path)) else taxonomy
    module = kind_module(kind)
    with known_digests(() if isinstance(spec, str) else spec.digests):
        judge = module.load(arg, options_for(kind, options), tax)
    if module.SPEC == "directory" and tax is not None and tax.labels != judge.taxonomy.labels:
        raise UserError(f"--taxonomy {tax.name} ({', '.join(tax.labels)}) differs from the one {Path(arg).name} was trained on "
                        f"({', '.join(judge.taxonomy.labels)}); a trained judge carries its own taxonomy: drop --taxonomy")
    return judge


def _kind_and_arg(spec) -> tuple[str, str]:
    """A spec parsed, or a JudgeRef's own (resolved already)."""
    return parse_spec(spec) if isinstance(spec, str) else (spec.kind, spec.arg)


def fingerprint(spec: str) -> dict[str, str]:
    """What a rerun with this judge must match (a trained judge's files, by sha256)."""
    kind, arg = parse_spec(spec)
    return kind_module(kind).fingerprint(arg)


def precision_directory(spec) -> Path | None:
    """The LoRA directory whose precision record decides how this judge (a spec or a JudgeRef) runs (a kind
    module's ``precision_directory``; kinds without one have no reduced-precision path)."""
    kind, arg = _kind_and_arg(spec)
    find = getattr(kind_module(kind), "precision_directory", None)
    return find(arg) if find else None


def masks_names(judge) -> bool:
    return bool(kind_module(judge.kind).masks_names(judge))
