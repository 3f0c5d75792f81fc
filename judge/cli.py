"""Shared plumbing for the commands: config dataclasses from flags or a file, one-line errors.

Every command module defines a ``Config`` dataclass, ``build_parser()`` and ``main(config)``;
``run_command`` glues them together so ``main`` stays callable from Python and notebooks.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

from judge.errors import UserError

C = TypeVar("C")


def new_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A parser whose flags only appear in the namespace when given (defaults live in the dataclass)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="JSON or YAML file of settings (keys are the long flag names with '_' for '-'); "
        "flags given on the command line win; an unknown key is an error",
    )
    return parser


def load_config_file(path: str | Path, config_cls: type) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} not found; check the --config path")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        else:
            values = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's to fix
        raise UserError(f"config file {path} could not be parsed ({exc}); fix its syntax") from None
    if not isinstance(values, dict):
        raise UserError(f"config file {path} must hold a mapping of setting -> value")
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(
            f"config file {path} has unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}"
        )
    return values


def config_from_args(config_cls: type[C], namespace: argparse.Namespace) -> C:
    values = vars(namespace).copy()
    config_path = values.pop("config", None)
    merged = load_config_file(config_path, config_cls) if config_path else {}
    merged.update(values)
    missing = [
        f.name
        for f in dataclasses.fields(config_cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in merged
    ]
    if missing:
        flags = ", ".join("--" + m.replace("_", "-") for m in missing)
        raise UserError(f"missing required setting(s) {flags}; see --help")
    return config_cls(**merged)


def run_command(
    build_parser: Callable[[], argparse.ArgumentParser],
    config_cls: type[C],
    main: Callable[[C], Any],
    argv: list[str] | None = None,
) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        main(config_from_args(config_cls, args))
    except UserError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0
