"""Every command's parser is generated from its Config's fields (judge.core.config.parser_for), so
a flag and its setting cannot drift apart: each field has one flag (or says it has none), each flag
is a field, no flag's argparse default can override a field's, and the default a help text shows is
the field's own, never written into the help text by hand."""
from __future__ import annotations

import argparse
import dataclasses
import importlib
from collections import defaultdict

import pytest

from judge.core.config import (
    ACTION_CONFIG,
    COMMON_FIELDS,
    InputEncoding,
    add_fields,
    default_text,
    field_default,
    new_parser,
    parser_for,
    shows_default,
)

COMMANDS = ["judge.join", "judge.swap", "judge.demo", "judge.data", "judge.annotate", "generation.__main__", "generation.prompts",
            "judge.train", "judge.label", "judge.agree", "judge.report", "judge.plan", "judge.transport",
            "judge.calibrate"]


def parsers_of(name: str) -> list[tuple[argparse.ArgumentParser, type]]:
    """(parser, the Config it fills) for a command, or for each action of a command with actions."""
    module = importlib.import_module(name)
    parser = module.build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        return [(parser, module.Config)]
    return [(sub, sub._defaults[ACTION_CONFIG]) for a in actions for sub in a.choices.values()]


def hook_dests(f: dataclasses.Field) -> tuple[set[str], set[str]]:
    """The dests and option strings a field's own ``flags`` hook adds (the engines' options)."""
    bare = argparse.ArgumentParser(add_help=False)
    f.metadata["flags"](bare)
    return {a.dest for a in bare._actions}, {s for a in bare._actions for s in a.option_strings}


@pytest.mark.parametrize("name", COMMANDS)
def test_every_field_has_one_flag_and_every_flag_is_a_field(name):
    for parser, config_cls in parsers_of(name):
        by_dest = defaultdict(list)
        for action in parser._actions:
            by_dest[action.dest].append(action)
        options = {s for a in parser._actions for s in a.option_strings}
        known = {"help", "config", *COMMON_FIELDS}  # every parser's own flags (--encoding: refused where no field takes it)
        for f in dataclasses.fields(config_cls):
            where = f"{parser.prog} {f.name}"
            known.add(f.name)
            if f.metadata.get("internal"):
                assert f.name not in by_dest, f"{where} is internal and has a flag"
            elif "flags" in f.metadata:
                dests, strings = hook_dests(f)
                assert strings and strings <= options, where
                known |= dests
            elif f.name in COMMON_FIELDS:
                assert len(by_dest[f.name]) == 1, where
            else:
                flags = by_dest[f.name]
                if field_default(f) is None and [a.nargs for a in flags] == [0, 0]:  # a tri-state bool: --NAME and --no-NAME
                    assert [type(a) for a in flags] == [argparse._StoreTrueAction, argparse._StoreFalseAction], where
                else:
                    assert len(flags) == 1, f"{where} has {len(flags)} flags"
        strays = [a.dest for a in parser._actions if a.dest not in known and not isinstance(a, argparse._SubParsersAction)]
        assert not strays, f"{parser.prog}: flags without a Config field: {strays}"


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_the_fields_default_and_no_flag_overrides_it(name):
    for parser, config_cls in parsers_of(name):
        fields = {f.name: f for f in dataclasses.fields(config_cls)}
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.dest == "help" or isinstance(action, argparse._SubParsersAction):
                continue
            where = f"{parser.prog} {'/'.join(action.option_strings) or action.dest}"
            # a flag not given is not in the namespace: the config file's value or the field's default stands
            assert action.default is argparse.SUPPRESS, where
            f = fields.get(action.dest)
            if f is None or not shows_default(field_default(f)) or not f.metadata.get("show_default", True):
                continue
            shown = f"default: {default_text(field_default(f))}"
            assert shown in formatter._expand_help(action), f"{where}: help does not show its field's {shown}"
            assert shown not in f.metadata.get("help", ""), f"{where}: the help text restates the default; write %(default)s or leave it out"


def test_parsing_no_flag_gives_the_configs_defaults():
    from judge import demo

    args = demo.build_parser().parse_args([])
    assert vars(args) == {}
    assert demo.Config(**vars(args)) == demo.Config()


def test_a_switch_not_given_leaves_the_config_files_value(tmp_path):
    """A switch defaulting to its value in the namespace would silently drop a config file's value
    (judge.label's old --quantize did); a generated flag not given is not in the namespace at all."""
    from judge import label
    from judge.core.config import config_from_args
    from judge.core.errors import UserError

    settings = tmp_path / "settings.json"
    settings.write_text('{"rationale": true}', encoding="utf-8")
    args = label.build_parser().parse_args(["--judge", "rules", "--input", "x.jsonl", "--out", "o.jsonl", "--config", str(settings)])
    assert "rationale" not in vars(args)
    with pytest.raises(UserError, match="--rationale applies to .* not the keyword rules"):
        config_from_args(label.Config, args)


# -- the generator itself --------------------------------------------------------------------------

@dataclasses.dataclass(kw_only=True)
class Toy(InputEncoding):
    paths: list[str] = dataclasses.field(metadata={"positional": True, "nargs": "*", "metavar": "FILE", "help": "inputs"})
    count: int = dataclasses.field(default=3, metadata={"help": "how many"})
    rate: float | None = dataclasses.field(default=None, metadata={"help": "a rate (default: the best one)", "metavar": "P"})
    name: str = dataclasses.field(default="x", metadata={"help": "a name, %(default)s unless given; 5%% more"})
    mode: str = dataclasses.field(default="a", metadata={"help": "a mode", "choices": lambda: ("a", "b")})
    tags: list[str] = dataclasses.field(default_factory=lambda: ["p", "q"], metadata={"help": "tags", "action": "append"})
    cols: list[str] = dataclasses.field(default_factory=list, metadata={"help": "columns"})
    fast: bool = dataclasses.field(default=False, metadata={"help": "go fast"})
    progress: bool = dataclasses.field(default=True, metadata={"help": "no progress bar"})
    eager: bool | None = dataclasses.field(default=None, metadata={"help": "eager", "no_help": "compiled"})
    source: str | None = dataclasses.field(default=None, metadata={"flag": ("--from", "-f"), "help": "where from"})
    extra: dict = dataclasses.field(default_factory=dict, metadata={"internal": True})
    seed: int = 0


def test_the_generator_reads_names_types_defaults_and_metadata():
    parser = parser_for(Toy, "toy", "Toy.", order=("paths", "seed", ..., "fast"))
    actions = {a.dest: a for a in parser._actions if a.dest not in ("eager",)}
    assert [a.dest for a in parser._actions][:5] == ["help", "config", "encoding", "paths", "seed"]
    assert [a.dest for a in parser._actions][-1] == "fast"
    assert "extra" not in actions
    assert actions["count"].type is int and actions["rate"].type is float and actions["name"].type is None
    assert actions["mode"].choices == ("a", "b") and actions["tags"].nargs is None and actions["cols"].nargs == "+"
    assert actions["progress"].option_strings == ["--no-progress"] and actions["source"].option_strings == ["--from", "-f"]
    args = vars(parser.parse_args(["a", "b", "--count", "4", "--tags", "t", "--tags", "u", "--no-progress", "--eager", "-f", "s"]))
    assert args == {"paths": ["a", "b"], "count": 4, "tags": ["t", "u"], "progress": False, "eager": True, "source": "s"}
    assert vars(parser.parse_args(["--no-eager"])) == {"eager": False} and vars(parser.parse_args([])) == {}
    helps = {"/".join(a.option_strings) or a.dest: parser._get_formatter()._expand_help(a) for a in parser._actions if a.help}
    assert helps["--count"] == "how many (default: 3)" and helps["--rate"] == "a rate (default: the best one)"
    assert helps["--name"] == "a name, x unless given; 5% more" and helps["--tags"] == "tags (default: p q)"
    assert helps["--cols"] == "columns" and helps["--fast"] == "go fast" and helps["--no-progress"] == "no progress bar"
    assert helps["--eager"] == "eager" and helps["--no-eager"] == "compiled" and helps["--seed"] == "(default: 0)"
    assert helps["--encoding"].startswith("text encoding of the input files (default: utf-8;")


def test_an_order_naming_no_field_is_a_programming_error():
    with pytest.raises(TypeError, match="no field"):
        add_fields(new_parser("toy", None), Toy, order=("nope",))
