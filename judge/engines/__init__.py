"""Engines compute a model's outputs: transformers in this process, vLLM, an OpenAI-compatible server.

Generation and the LLM judge ask an engine by name. Each engine is one module defining ``Options``
(a dataclass: its flags, with ``metadata={"help": ...}`` on each field, and its validation in
``__post_init__``) and an ``Engine`` subclass whose ``name`` is its key here, built as
``Cls(model, device=..., options=Options(...))``; adding one is its module plus one line here.
Modules are imported when asked for, and import nothing heavy themselves (torch, vllm, an HTTP
client: inside the engine's methods), so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import types
import typing
from typing import Any

from judge.core.errors import UserError
from judge.engines.base import ChatRequest, Completion, Decoding, Engine

ENGINES = {
    "hf": "judge.engines.transformers",
    "openai": "judge.engines.openai",
    "vllm": "judge.engines.vllm",
}

__all__ = [
    "ENGINES",
    "ChatRequest",
    "Completion",
    "Decoding",
    "Engine",
    "add_engine_arguments",
    "engine_module",
    "engine_options",
    "open_engine",
    "public_options",
]


def engine_module(name: str):
    if name not in ENGINES:
        raise UserError(f"unknown --engine {name!r}; use one of {', '.join(ENGINES)}")
    return importlib.import_module(ENGINES[name])


def engine_class(name: str) -> type[Engine]:
    module = engine_module(name)
    found = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, Engine) and getattr(v, "name", None) == name
    ]
    if len(found) != 1:
        raise RuntimeError(f"{ENGINES[name]} must define one Engine subclass named {name!r}, found {len(found)}")
    return found[0]


def open_engine(name: str, model: str, *, device: str = "auto", options: Any = None) -> Engine:
    """The engine ``name`` with ``model`` loaded (or its server reached)."""
    return engine_class(name)(
        model, device=device, options=options if options is not None else engine_module(name).Options()
    )


# -- engine options as command-line flags ------------------------------------------------------

OPTIONS_DEST = "engine_options"  # the Config field (a dict) the engine flags fill


def option_fields(name: str) -> dict[str, tuple[dataclasses.Field, Any]]:
    """field name -> (field, its resolved type) of engine ``name``'s Options."""
    options = engine_module(name).Options
    hints = typing.get_type_hints(options)
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(options)}


def flag(option: str) -> str:
    return "--" + option.replace("_", "-")


class _EngineOption(argparse.Action):
    """Stores a flag's value under its option name in the namespace's ``engine_options`` dict."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = dict(getattr(namespace, OPTIONS_DEST, None) or {})
        given[self.const] = True if self.nargs == 0 else values
        setattr(namespace, OPTIONS_DEST, given)


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field of every engine's Options (a field two engines share is one flag); the help
    says which engine takes it. Values land in ``config.engine_options``; ``engine_options`` checks them."""
    owners: dict[str, list[str]] = {}
    helps: dict[str, str] = {}
    kinds: dict[str, Any] = {}
    for name in ENGINES:
        for option, (field, kind) in option_fields(name).items():
            owners.setdefault(option, []).append(name)
            helps.setdefault(option, field.metadata.get("help", ""))
            kinds.setdefault(option, kind)
    for option, names in owners.items():
        kind = _scalar(kinds[option])
        parser.add_argument(
            flag(option),
            action=_EngineOption,
            dest=f"_engine_option_{option}",
            default=argparse.SUPPRESS,
            const=option,
            metavar=option.upper(),
            nargs=0 if kind is bool else None,
            type=None if kind is bool else kind,
            help=f"{helps[option]} (--engine {', '.join(names)})".strip(),
        )


def _scalar(kind: Any) -> type:
    """str, int, float or bool: the type a flag's text is read as (an Optional's inner type)."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    inner = args[0] if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(args) == 1 else kind
    return inner if inner in (str, int, float, bool) else str


def engine_options(name: str, given: dict[str, Any] | None) -> Any:
    """Engine ``name``'s Options from the flags given; a flag of another engine is refused in one line."""
    fields = option_fields(name)
    values = {}
    for option, value in (given or {}).items():
        if option not in fields:
            others = [e for e in ENGINES if e != name and option in option_fields(e)]
            if others:
                raise UserError(
                    f"{flag(option)} is an option of --engine {' or '.join(others)}, not {name}; "
                    f"drop it or pass --engine {others[0]}"
                )
            raise UserError(
                f"engine option {option[:40]!r} is unknown; --engine {name} takes "
                f"{', '.join(flag(o) for o in fields) or 'no options'}"
            )
        values[option] = _checked(option, value, fields[option][1])
    return engine_module(name).Options(**values)


def _checked(option: str, value: Any, kind: Any) -> Any:
    """A value from a config file as its field's type (flags arrive typed by argparse already)."""
    want = _scalar(kind)
    if value is None and type(None) in typing.get_args(kind):
        return None
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, want) or (want is int and isinstance(value, bool)):
        # never the value itself in the message: it may be a secret
        raise UserError(
            f"{flag(option)} must be "
            f"{'a number' if want in (int, float) else 'true or false' if want is bool else 'text'}, "
            f"got {type(value).__name__}"
        )
    return value


def public_options(options: Any) -> dict[str, Any]:
    """The options a manifest records: every field but those holding a secret (a key, a token)."""
    from judge.core.manifest import SECRET_SETTINGS

    values = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options or {})
    return {k: v for k, v in values.items() if not any(secret in k for secret in SECRET_SETTINGS)}
