"""Shared plumbing for the commands: config dataclasses from flags or a file, one-line errors.

Every command module defines a ``Config`` dataclass, ``build_parser()`` and ``main(config)``;
``run_command`` glues them together so ``main`` stays callable from Python and notebooks.
``build_parser`` is generated from the Config (``parser_for``): each field is one flag, its help
in ``field(metadata={"help": ...})`` and the default the help shows read from the field itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import os
import re
import string
import sys
import types
import typing
import unicodedata
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from judge.core.devices import check_device_available
from judge.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED_ROWS,
    UserError,
    clip,
    failed_rows_noted,
    os_error_message,
    reset_failed_rows,
    short_list,
    wrapped_os_error,
)
from judge.core.files import check_encoding, read_text
from judge.core.taxonomy import parse_label_map
from judge.core.yaml_data import load_yaml

C = TypeVar("C")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``prog: error: ...; see --help``) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see --help\n")


def new_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A parser whose flags only appear in the namespace when given (defaults live in the dataclass)."""
    parser = OneLineParser(
        prog=prog,
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    _add_common_options(parser)
    return parser


def parser_for(config_cls: type, prog: str, doc: str | None, *, order: Sequence[Any] = ()) -> argparse.ArgumentParser:
    """A command's parser: the common flags, then one flag per field of ``config_cls`` (``add_fields``).
    The examples stay in ``doc``, the help's description."""
    parser = new_parser(prog, doc)
    add_fields(parser, config_cls, order=order)
    return parser


ACTION_CONFIG = "_action_config"  # where a subcommand's parser leaves its Config class for run_command


def add_action(
    subparsers, name: str, doc: str, config_cls: type, *, order: Sequence[Any] = ()
) -> argparse.ArgumentParser:
    """One subcommand (``python -m judge.X ACTION``) with its own help and the flags of ``config_cls``'s
    fields (``add_fields``); run_command builds ``config_cls`` from what it parsed, so another action's
    flag is refused by argparse itself."""
    parser = subparsers.add_parser(
        name,
        help=doc.strip().splitlines()[0],
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    _add_common_options(parser)
    parser.set_defaults(**{ACTION_CONFIG: config_cls})
    add_fields(parser, config_cls, order=order)
    return parser


CONFIG_HELP = (
    "JSON or YAML file of settings (keys are the long flag names with '_' for '-'); "
    "flags given on the command line win; an unknown key is an error"
)


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    """--config (no field: the file the fields' values may come from) and --encoding (every parser has
    it; config_from_args refuses it for a command whose Config has no encoding field)."""
    parser.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    _add_field(parser, _fields_of(InputEncoding)["encoding"], str)


# -- flags generated from a Config's fields -------------------------------------------------------
#
# ``field(metadata={...})`` says what argparse cannot read from the field's name, type and default:
#   help          the help text; the field's default is appended as "(default: X)" when it is a value
#                 (not None, a bool, or empty), or put where the text writes %(default)s
#   positional    True: an argument without a flag (its nargs and metavar in the metadata)
#   flag          the option string(s) when not --field-name (a str, or a tuple of aliases)
#   no_help       a bool field defaulting to None (a tri-state): the help of its --no-NAME flag
#   show_default  False: never append the default
#   internal      True: no flag (a setting for config files and Python callers only)
#   flags         a callable(parser) that adds this field's flags itself (the engines' options)
#   anything else goes to ``add_argument`` as it is: metavar, nargs, action, choices (or a callable
#   returning them, called when the parser is built), const, required
# The type comes from the annotation: int and float are parsed as such, str as text, a list takes
# nargs="+" unless the metadata says otherwise; a bool is store_true (default False), --no-NAME
# (default True) or the pair --NAME/--no-NAME (default None). Every flag's argparse default is
# SUPPRESS (new_parser): a flag not given never overrides the config file or the field's default.

COMMON_FIELDS = ("encoding",)  # fields whose flag every parser has already (_add_common_options)
_OWN_KEYS = ("help", "positional", "flag", "aliases", "no_help", "show_default", "internal", "flags")


def _fields_of(config_cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(config_cls)}


def add_fields(parser: argparse.ArgumentParser, config_cls: type, *, order: Sequence[Any] = ()) -> None:
    """One flag per field of ``config_cls`` (its field groups, such as RecordColumns, included once).
    ``order`` is the help's layout: field names (or field-group classes, for their fields) whose flags
    come first, in that order, and after an ``...`` those that come last; the other fields' flags go
    between, in their declaration order (or last, without an ``...``)."""
    fields = _fields_of(config_cls)
    order = list(order)
    cut = order.index(Ellipsis) if Ellipsis in order else len(order)
    head, tail = _field_names(config_cls, order[:cut]), _field_names(config_cls, order[cut + 1 :])
    middle = [name for name in fields if name not in head and name not in tail]
    hints = typing.get_type_hints(config_cls)
    for name in dict.fromkeys(head + middle + tail):
        if name not in COMMON_FIELDS:
            _add_field(parser, fields[name], hints[name])


def _field_names(config_cls: type, items: Sequence[str | type]) -> list[str]:
    fields = _fields_of(config_cls)
    names = [
        name
        for item in items
        for name in ([f.name for f in dataclasses.fields(item)] if isinstance(item, type) else [item])
    ]
    unknown = [name for name in names if name not in fields]
    if unknown:
        raise TypeError(f"{config_cls.__name__} has no field(s) {', '.join(unknown)} (the order of its flags)")
    return names


def field_like(config_cls: type, name: str, **metadata: Any) -> Any:
    """Field ``name`` of ``config_cls`` again, for a subclass to redeclare with ``metadata`` added (what
    only the subclass knows, such as the registry's choices); its default and help stay the base's."""
    base = _fields_of(config_cls)[name]
    return dataclasses.field(
        default=base.default,
        default_factory=base.default_factory,
        repr=base.repr,
        metadata={**base.metadata, **metadata},
    )


def field_default(f: dataclasses.Field) -> Any:
    """The field's default value (a default_factory called); dataclasses.MISSING for a required field."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def shows_default(value: Any) -> bool:
    """Whether a help text states this default: a value, not None, a switch or nothing."""
    return not (
        value is dataclasses.MISSING
        or value is None
        or isinstance(value, bool)
        or value == ""
        or (isinstance(value, (list, tuple, dict)) and not value)
    )


def default_text(value: Any) -> str:
    """A default as its help text writes it: a list as its items separated by spaces (as they are typed)."""
    if value is None or value == "" or (isinstance(value, (list, tuple)) and not value):
        return "none"
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return str(value)


def field_help(f: dataclasses.Field, text: str | None = None) -> str:
    """The field's help with its default (from the field, never written in the text) put in."""
    text = f.metadata.get("help", "") if text is None else text
    default = field_default(f)
    shown = default_text(default).replace("%", "%%")  # argparse %-formats help texts
    if "%(default)s" in text:
        return text.replace("%(default)s", shown)
    if shows_default(default) and f.metadata.get("show_default", True):
        return f"{text} (default: {shown})".strip()
    return text


def _scalar_of(kind: Any) -> tuple[Any, bool]:
    """(the flag's value type, whether it is a list) of a field's annotation: Optional and unions
    with a list (``str | list[str]``) read as the list; anything but int/float/bool is text."""
    args = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
    args = [a for a in args if a is not type(None)]
    lists = [a for a in args if typing.get_origin(a) in (list, tuple)]
    if lists:
        inner = (typing.get_args(lists[0]) or (str,))[0]
        return (inner if inner in (int, float) else None), True
    scalar = args[0] if len(args) == 1 else str
    return (scalar if scalar in (int, float, bool) else None), False


def _add_field(parser: argparse.ArgumentParser, f: dataclasses.Field, kind: Any) -> None:
    meta = f.metadata
    if meta.get("internal"):
        return
    if "flags" in meta:
        meta["flags"](parser)
        return
    kwargs = {k: v for k, v in meta.items() if k not in _OWN_KEYS}
    if callable(kwargs.get("choices")):
        kwargs["choices"] = kwargs["choices"]()
    kwargs["help"] = field_help(f)
    scalar, is_list = _scalar_of(kind)
    if is_list and "action" not in kwargs:
        kwargs.setdefault("nargs", "+")
    if scalar in (int, float) and kwargs.get("action") in (None, "append"):
        kwargs.setdefault("type", scalar)
    if meta.get("positional"):
        parser.add_argument(f.name, **kwargs)
        return
    switch = scalar is bool and not is_list
    default = field_default(f)
    name = f.name.replace("_", "-")
    flag = meta.get("flag", f"--no-{name}" if switch and default is True else f"--{name}")
    names = [flag] if isinstance(flag, str) else list(flag)
    names += list(meta.get("aliases", ()))
    if not switch:
        parser.add_argument(*names, dest=f.name, **kwargs)
        return
    parser.add_argument(*names, dest=f.name, action="store_false" if default is True else "store_true", **kwargs)
    if default is None:  # a tri-state: --NAME sets True, --no-NAME False, neither leaves the field's None
        parser.add_argument(
            f"--no-{name}", dest=f.name, action="store_false", help=field_help(f, meta.get("no_help", ""))
        )


# -- options shared by the commands that read records and labels -------------------------------

TAXONOMY_HELP = (
    "preset (chehbouni2024, compliance3, refusal2) or a YAML file of ordered categories, e.g. "
    "\"{name: mine, categories: [{name: answer, aliases: ['1']}, {name: refusal, parent: refused, definition: ...}]}\" "
    "(keys per category: name, definition, aliases, parent; README 'Taxonomies' has a longer example); default: the "
    "distinct labels"
)
LABEL_MAP_HELP = (
    "read coded labels as categories: 'CODE=CATEGORY,...' (e.g. '1_full_compliance=full compliance,2_full_refusal=full "
    "refusal') "
    "or a YAML/JSON mapping or two-column CSV file; every category must be in the taxonomy"
)


LABEL_MAP = {"help": LABEL_MAP_HELP, "metavar": "MAP"}  # the metadata of a Config's label_map field


@dataclasses.dataclass(kw_only=True)
class InputEncoding:
    """--encoding (every parser has the flag): how the command decodes its input text files. A field,
    not a process-wide setting, so ``main(config)`` called from Python reads what its config says."""

    encoding: str = dataclasses.field(
        default="utf-8",
        metadata={
            "help": "text encoding of the input files (default: %(default)s; e.g. latin-1, cp1252, utf-16)",
            "metavar": "NAME",
        },
    )


@dataclasses.dataclass(kw_only=True)
class RecordColumns(InputEncoding):
    """Which columns play id, prompt and response, and the file-of-origin column for several inputs:
    the flags of a command that reads records. A command's Config inherits them."""

    id_column: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "column of unique ids (default: combined_id where a file has one, else id, else row numbers)",
            "metavar": "COL",
        },
    )
    prompt_column: str | None = dataclasses.field(
        default=None, metadata={"help": "column holding the prompt (default: prompt)", "metavar": "COL"}
    )
    text_column: str | None = dataclasses.field(
        default=None, metadata={"help": "column holding the model output (default: response)", "metavar": "COL"}
    )
    source_column: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "with several input files: the column naming each record's file (default: source); ids repeated "
            "across files "
            "are made SOURCE:ID, written in a combined_id column (each file's id column kept as it is)",
            "metavar": "NAME",
        },
    )


@dataclasses.dataclass(kw_only=True)
class ReportStyle:
    """The titles, LaTeX label keys and decimals of a report command's tables and figures."""

    title: str | None = dataclasses.field(
        default=None, metadata={"help": "title of the figures and tables (default: says whose labels they are and n)"}
    )
    tex_label: str | None = dataclasses.field(
        default=None,
        metadata={
            "help": "prefix of the LaTeX \\label{tab:PREFIX:...} keys, unique per report "
            "(default: from --out, e.g. runs/study/disparity -> runs-study-disparity)",
            "metavar": "PREFIX",
        },
    )
    digits: int = dataclasses.field(default=3, metadata={"help": "decimals in the tables, 0-6"})

    def check_style(self) -> None:
        check_digits(self)
        check_tex_label(self)
        self.title = clean_title(self.title)


def add_column_options(parser: argparse.ArgumentParser) -> None:
    """--id-column/--prompt-column/--text-column/--source-column: RecordColumns' flags, for a parser not
    generated from a Config (a generated one has them from its fields)."""
    add_fields(parser, RecordColumns)


def add_label_map_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label-map", metavar="MAP", help=LABEL_MAP_HELP)


def check_label_map(config: Any) -> None:
    """Parse --label-map early, so a malformed map fails before any work."""

    parse_label_map(getattr(config, "label_map", None))


def add_report_style_options(parser: argparse.ArgumentParser) -> None:
    """ReportStyle's flags, for a parser not generated from a Config."""
    add_fields(parser, ReportStyle)


def check_digits(config: Any) -> None:
    if not 0 <= config.digits <= 6:
        raise UserError(f"--digits must be between 0 and 6, got {config.digits}")


def check_tex_label(config: Any) -> None:
    if config.tex_label is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9:._-]*", config.tex_label):
        raise UserError(
            f"--tex-label {clip(config.tex_label)} must be letters, digits, ':', '.', '_' or '-' (it goes into "
            f"\\label{{}})"
        )


def clean_title(title: str | None) -> str | None:
    """A --title on one line: LaTeX ends a paragraph at a blank line (a caption cannot hold one), so
    whitespace runs collapse to one space; other control characters have no printable meaning (format
    characters such as the zero-width non-joiner belong to some scripts' spelling and stay)."""
    if title is None:
        return None
    text = " ".join(title.split())
    control = sorted({f"U+{ord(ch):04X}" for ch in text if unicodedata.category(ch) == "Cc"})
    if control:
        raise UserError(f"--title holds control character(s) {short_list(control, limit=3)}; write it as plain text")
    if not text:
        raise UserError("--title is empty; give a title or drop the flag for the default one")
    return text


# -- value checks shared by the commands' Config.__post_init__ -----------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_finite(config: Any, *names: str) -> None:
    """inf and nan parse as floats (argparse's float() takes 'inf', 'nan'), and nan passes every comparison's
    negation: a training with --lr inf "succeeds" with a NaN temperature. Refuse them by name."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{_flag(name)} must be a finite number, got {value}")


def check_positive(config: Any, *names: str) -> None:
    check_finite(config, *names)
    for name in names:
        value = getattr(config, name)
        if value is not None and value <= 0:
            raise UserError(f"{_flag(name)} must be a positive number, got {value}")


def check_non_negative(config: Any, *names: str) -> None:
    check_finite(config, *names)
    for name in names:
        value = getattr(config, name)
        if value is not None and value < 0:
            raise UserError(f"{_flag(name)} must be 0 or more, got {value}")


def check_fraction(config: Any, name: str, *, low_open: bool = False, high_open: bool = False) -> None:
    value = getattr(config, name)
    if value is None:
        return
    check_finite(config, name)
    ok = (value > 0 if low_open else value >= 0) and (value < 1 if high_open else value <= 1)
    if not ok:
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise UserError(f"{_flag(name)} must be in {interval}, got {value}")


def check_choice(config: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, name)
    if value is not None and value not in choices:
        raise UserError(f"{_flag(name)} must be one of {', '.join(choices)}, got {clip(value)}")


SEED_LIMIT = 2**32  # numpy's RandomState and scikit-learn take seeds in [0, 2**32)


def check_seed(config: Any, name: str = "seed") -> None:
    """NumPy and torch seeds are integers in [0, 2**32)."""
    value = getattr(config, name, None)
    if value is not None and not (isinstance(value, int) and 0 <= value < SEED_LIMIT):
        raise UserError(
            f"{_flag(name)} must be a whole number from 0 to {SEED_LIMIT - 1} (NumPy's seed range), got {clip(value)}"
        )


DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"


def check_device(config: Any, name: str = "device") -> None:
    """--device names a torch device this machine has: refused here, before any file is read."""
    value = getattr(config, name, None)
    if value is None or value in ("auto", "cpu"):
        return

    if not isinstance(value, str) or not re.fullmatch(r"cuda(:\d{1,3})?|mps", value):
        raise UserError(f"{_flag(name)} must be one of {DEVICE_FORMS}, got {clip(value)}")

    check_device_available(value)


def check_unique(config: Any, *names: str) -> None:
    """A repeated flag whose values must differ (--group identity --group identity means nothing)."""
    for name in names:
        values = getattr(config, name, None) or []
        repeated = [v for i, v in enumerate(values) if v in values[:i]]
        if repeated:
            raise UserError(f"{_flag(name)} {clip(repeated[0])} is given twice; give each value once")


def check_format_template(template: str, fields: set[str], *, what: str) -> None:
    """A str.format template may use only ``fields``; stray braces get a one-line fix."""

    try:
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise UserError(f"{what} is not a valid template ({exc}); write a literal brace as {{{{ or }}}}") from None
    unknown = sorted(used - fields)
    if unknown:
        raise UserError(
            f"{what} uses unknown field(s) {short_list(['{' + u + '}' for u in unknown], limit=3)}; "
            f"available: {', '.join('{' + f + '}' for f in sorted(fields))} (a literal brace is {{{{ or }}}})"
        )


_SCALARS = {"int": int, "float": float, "str": str, "bool": bool}


def _is(value: Any, expected: type) -> bool:
    if expected is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if expected is float:
        return isinstance(value, (int, float)) and math.isfinite(value)
    return isinstance(value, expected)


def _coerce(name: str, annotation: str, value: Any, source: str) -> Any:
    """Check a value from a config file (or a library call) against the field's annotation."""
    kinds = [k.strip() for k in str(annotation).split("|")]
    if value is None:
        if "None" in kinds:
            return None
        raise UserError(f"{source}: {_flag(name)} needs a value, got null")
    for kind in kinds:
        if kind.startswith("list["):
            inner = _SCALARS.get(kind[5:-1], str)
            if isinstance(value, list) and all(_is(v, inner) for v in value):
                return list(value)
            continue
        if kind == "dict" or kind.startswith("dict["):
            if isinstance(value, dict):
                return value
            continue
        expected = _SCALARS.get(kind)
        if expected is not None and _is(value, expected):
            return float(value) if expected is float else value
    wanted = " or ".join(k.replace("list[str]", "a list of strings") for k in kinds if k != "None")
    raise UserError(f"{source}: {_flag(name)} must be {wanted}, got {clip(value)} ({type(value).__name__})")


def load_config_file(path: str | Path, config_cls: type, *, encoding: str = "utf-8") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} not found; check the --config path")

    text = read_text(path, what="config file", encoding=encoding)
    if path.suffix in (".yaml", ".yml"):
        values = load_yaml(text, source=f"config file {path.name}") or {}
    else:
        try:
            values = json.loads(text)
        except (ValueError, RecursionError) as exc:  # RecursionError: brackets nested past Python's stack
            raise UserError(
                f"config file {path.name} could not be parsed ({clip(str(exc), 120)}); fix its syntax"
            ) from None
    if not isinstance(values, dict):
        raise UserError(f"config file {path} must hold a mapping of setting -> value")
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        close = [m for key in unknown for m in difflib.get_close_matches(key, known, n=1)]
        hint = (
            f"did you mean {', '.join(close)}?"
            if close
            else "the keys are the long flag names with '_' for '-' (see --help)"
        )
        raise UserError(f"config file {path.name} has unknown key(s) {short_list(unknown)}; {hint}")
    return values


def config_from_args(config_cls: type[C], namespace: argparse.Namespace) -> C:
    values = vars(namespace).copy()
    config_path = values.pop("config", None)
    types = {f.name: f.type for f in dataclasses.fields(config_cls)}
    if "encoding" in values and "encoding" not in types:
        raise UserError("--encoding does not apply here: this command reads no input text files; drop the flag")
    encoding = values.get("encoding", "utf-8")
    if config_path:
        check_encoding(encoding)  # the config file itself is read in it
    merged = load_config_file(config_path, config_cls, encoding=encoding) if config_path else {}
    for key, value in merged.items():
        merged[key] = _coerce(key, types[key], value, f"config file {config_path}")
    merged.update(values)
    missing = [
        f.name
        for f in dataclasses.fields(config_cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.name not in merged
    ]
    if missing:
        flags = ", ".join("--" + m.replace("_", "-") for m in missing)
        raise UserError(f"missing required setting(s) {flags}; see --help")
    config = config_cls(**merged)
    check_shared_settings(config)
    return config


def check_shared_settings(config: Any) -> None:
    """Settings several commands share, checked the same way for all: --seed, --device and --encoding."""
    check_seed(config)
    check_device(config)
    if getattr(config, "encoding", None) is not None:
        check_encoding(config.encoding)


def run_command(
    build_parser: Callable[[], argparse.ArgumentParser],
    config_cls: type[C],
    main: Callable[[C], Any],
    argv: list[str] | None = None,
) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config_cls = vars(args).pop(ACTION_CONFIG, config_cls)  # a command with subcommands: the chosen action's Config
    reset_failed_rows()
    try:
        config = config_from_args(config_cls, args)
        main(config)
    except UserError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        # unreadable inputs, read-only or full output folders: the user's to fix, said in one line
        print(f"{parser.prog}: error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except RecursionError:
        print(
            f"{parser.prog}: error: an input file is nested too deeply to read (JSON or YAML); check the files given",
            file=sys.stderr,
        )
        return 2
    except MemoryError:
        print(
            f"{parser.prog}: error: out of memory; an input is too large for this machine (or a YAML file expands "
            "itself)",
            file=sys.stderr,
        )
        return 2
    except Exception as exc:  # noqa: BLE001 - only a library's wrapped OS error is said here; the rest goes on up
        code = wrapped_os_error(exc)
        if code is None:
            raise
        print(f"{parser.prog}: error: {os_error_message(OSError(code, os.strerror(code)))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    if failed_rows_noted() and not getattr(config, "allow_failed", False):
        return EXIT_FAILED_ROWS  # complete, with rows a rerun asks again for: said on stdout already
    return 0
