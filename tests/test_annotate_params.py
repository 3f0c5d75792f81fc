"""Issue 21 (items 4, 6): judge.annotate as real subcommands, each with its own Config, help and
flags; the input encoding a setting of each command's Config rather than a process-wide global."""
import dataclasses
import json

import pandas as pd
import pytest

from judge import annotate
from judge.core.errors import UserError
from judge.core.records import read_records
from tests.badinput import assert_refused, run_module

SECRET = "tok-5ecret-never-shown"
ROWS = [{"id": f"r{i}", "prompt": f"Name{i} went to the café", "response": "réponse" if i % 2 else "I cannot help.",
         "identity": "a" if i % 2 else "b"} for i in range(6)]


@pytest.fixture()
def files(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    pd.DataFrame(ROWS).to_csv(d / "latin1.csv", index=False, encoding="latin-1")
    (d / "round").mkdir()
    (d / "round" / "items.csv").write_text("id,prompt,response\nr1,p,r\n", encoding="utf-8")
    (d / "other_action.json").write_text(json.dumps({"blind": True}), encoding="utf-8")
    return d


G, R, TAX = "{d}/good.jsonl", "{d}/round", ["--taxonomy", "chehbouni2024"]

CASES = [
    # another action's flag: refused by argparse itself, naming the flag (each action parses only its own)
    (["import", R, f"{R}/alice.csv", "--strategy", "stratified", "--out", "{t}/l.csv", *TAX], ["unrecognized arguments: --strategy"]),
    (["push", R, "--out", "{t}/x"], ["unrecognized arguments: --out"]),
    (["pull", R, "--project", "1", "--blind", "--out", "{t}/l.csv", *TAX], ["unrecognized arguments: --blind"]),
    (["adjudicate", G, "--budget", "5", "--out", "{t}/adj"], ["unrecognized arguments: --budget"]),
    (["issues", G, "--url", "http://127.0.0.1:9", "--out", "{t}/iss"], ["unrecognized arguments: --url"]),
    (["resolve", G, G, "--folds", "3", "--out", "{t}/f.csv"], ["unrecognized arguments: --folds"]),
    (["export", G, G, "--out", "{t}/e", *TAX], ["unrecognized arguments:", "good.jsonl"]),
    # ... and from a --config file: a key of another action is unknown to this one
    (["import", R, f"{R}/items.csv", "--config", "{d}/other_action.json", "--out", "{t}/l.csv", *TAX], ["unknown key(s) blind"]),
    # the encoding: checked up front, and used where it is given
    (["import", R, f"{R}/items.csv", "--encoding", "rot13", "--out", "{t}/l.csv", *TAX], ["unknown --encoding 'rot13'", "utf-8, latin-1"]),
    (["export", "{d}/latin1.csv", "--out", "{t}/e", *TAX], ["latin1.csv is not valid utf-8 text", "--encoding latin-1"]),
    # the token: from the flag or LABEL_STUDIO_API_KEY, and a failed call never shows it
    (["pull", R, "--url", "http://127.0.0.1:9", "--project", "1", "--out", "{t}/l.csv", *TAX], ["LABEL_STUDIO_API_KEY", "--token"]),
    (["pull", R, "--url", "http://127.0.0.1:9", "--token", SECRET, "--project", "1", "--out", "{t}/l.csv", *TAX],
     ["could not read project 1 from http://127.0.0.1:9", "check --project, --url and the token"]),
    # the transport's bounds (issue 31): checked before Label Studio is asked
    (["pull", R, "--url", "http://127.0.0.1:9", "--token", SECRET, "--project", "1", "--timeout", "0", "--out", "{t}/l.csv", *TAX],
     ["--timeout must be a number above 0 and at most 3600"]),
    (["pull", R, "--url", "http://127.0.0.1:9", "--token", SECRET, "--project", "1", "--max-answer-mib", "-1", "--out", "{t}/l.csv", *TAX],
     ["--max-answer-mib must be a number above 0"]),
    (["pull", R, "--url", "ftp://127.0.0.1:9", "--token", SECRET, "--project", "1", "--out", "{t}/l.csv", *TAX],
     ["--url must be Label Studio's http(s) address"]),
]


@pytest.mark.parametrize("argv,fragments", CASES, ids=[f"{i:02d}-{c[0][0]}" for i, c in enumerate(CASES)])
def test_annotate_refuses_in_one_line(files, tmp_path, capsys, monkeypatch, argv, fragments):
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    out_root = tmp_path / "outputs"
    out_root.mkdir()
    line = assert_refused(annotate, [a.format(d=files, t=out_root) for a in argv], fragments, root=tmp_path, capsys=capsys)
    assert SECRET not in line
    assert [p for p in out_root.iterdir() if not p.name.endswith(".lock")] == []


def test_each_action_has_its_own_help_with_examples(capsys):
    helps = {}
    for action in annotate.ACTIONS:
        with pytest.raises(SystemExit) as done:
            annotate.build_parser().parse_args([action, "--help"])
        assert done.value.code == 0
        helps[action] = capsys.readouterr().out
    assert len(set(helps.values())) == len(annotate.ACTIONS)  # seven helps, not one printed seven times
    for action, text in helps.items():
        assert f"usage: python -m judge.annotate {action}" in text and f"python -m judge.annotate {action} " in text.split("Examples:")[1]
    assert "--strategy" in helps["export"] and "--strategy" not in helps["import"]
    assert "--token" in helps["pull"] and "--token" not in helps["export"] and "--folds" in helps["issues"]


def test_each_action_builds_its_own_config(files):
    parser = annotate.build_parser()
    args = vars(parser.parse_args(["resolve", "a.csv", "b.csv", "--label", "final", "--out", "o.csv"]))
    assert args.pop("_action_config") is annotate.ResolveConfig and args == {"inputs": ["a.csv", "b.csv"], "label": "final", "out": "o.csv"}
    assert {f.name for f in dataclasses.fields(annotate.PushConfig)} == {"encoding", "inputs", "url", "token", "timeout", "max_answer_mib", "title"}
    with pytest.raises(UserError, match="give an action first"):
        annotate.main(annotate.Config(inputs=["x"]))
    assert "tok" not in repr(annotate.PullConfig(inputs=["r"], token="tok"))  # a credential never reaches a repr


def test_main_from_python_honours_the_configs_encoding(files, tmp_path, capsys):
    """main(config) called from Python reads with config.encoding: nothing process-wide to set first."""
    source = str(files / "latin1.csv")
    with pytest.raises(UserError, match="not valid utf-8"):
        annotate.main(annotate.ExportConfig(inputs=[source], taxonomy="chehbouni2024", budget=6, out=str(tmp_path / "utf8")))
    annotate.main(annotate.ExportConfig(inputs=[source], taxonomy="chehbouni2024", budget=6, out=str(tmp_path / "e"), encoding="latin-1"))
    items = read_records(tmp_path / "e" / "items.csv", required=())  # written as UTF-8, whatever the input was
    assert sorted(items["prompt"]) == sorted(r["prompt"] for r in ROWS) and "réponse" in set(items["response"])
    settings = json.loads((tmp_path / "e" / "manifest.json").read_text(encoding="utf-8"))["settings"]
    assert settings["encoding"] == "latin-1" and "token" not in settings
    # the same reader called afterwards is back to its default: nothing leaked from the run above
    with pytest.raises(UserError, match="not valid utf-8"):
        read_records(source)
    assert read_records(source, encoding="latin-1")["response"].tolist() == [r["response"] for r in ROWS]


def test_command_line_encoding_reaches_the_sheets_but_not_export_files(files, tmp_path, capsys):
    """import decodes the annotators' sheets with --encoding and its own items.csv (UTF-8) as written."""
    code, _, err = run_module(annotate, ["export", str(files / "good.jsonl"), "--budget", "6", "--annotators", "alice", "bob",
                                         "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "round")], capsys)
    assert code == 0, err
    sheet = pd.read_csv(tmp_path / "round" / "alice.csv", keep_default_na=False).assign(label="refusal")
    sheet.to_csv(tmp_path / "alice.csv", index=False, encoding="utf-16")
    code, _, err = run_module(annotate, ["import", str(tmp_path / "round"), str(tmp_path / "alice.csv"), "--encoding", "utf-16",
                                         "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "labels.csv")], capsys)
    assert code == 0, err
    labels = pd.read_csv(tmp_path / "labels.csv", keep_default_na=False)
    assert set(labels["label_alice"]) == {"refusal"} and "réponse" in set(labels["response"])
