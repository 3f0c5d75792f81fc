"""python -m judge.join: the parts of one sharded run, refused in one line when they are not that.

The parts are real: the keyword-rules judge labels 20 records in batches of 4 (5 batches), as shares
1/2 and 2/2, 1/3 and 3/3, a share of another run (another prefix), a share killed after its first
batch, and one whole (unsharded) output.
"""
import json
import os
import shutil

import pytest

from judge import join as join_cmd
from judge import label as label_cmd
from judge.kinds.rules.judge import RulesJudge
from tests.badinput import assert_refused, tree_digest
from tests.conftest import module_run, run_cli

RULES = ["--judge", "rules", "--taxonomy", "chehbouni2024", "--batch-size", "4", "--no-progress"]


@pytest.fixture(scope="module")
def parts(sample_records, tmp_path_factory):
    folder = tmp_path_factory.mktemp("parts")
    sample_records.head(20).drop(columns=["label"]).to_json(folder / "in.jsonl", orient="records", lines=True)
    # relative paths, as the settings record them: a copy of the folder is then the same run
    back = os.getcwd()
    os.chdir(folder)
    try:
        make_parts()
    finally:
        os.chdir(back)
    return folder


def make_parts():
    def label(out, *extra):
        assert module_run(label_cmd, [*RULES, "--input", "in.jsonl", "--prefix", "j_", *extra, "--out", out]) == 0

    label("whole.jsonl")
    for share in ("1/2", "2/2", "1/3", "3/3"):
        label(f"part{share.replace('/', 'of')}.jsonl", "--shard", share)
    assert module_run(label_cmd, [*RULES, "--input", "in.jsonl", "--prefix", "k_", "--shard", "2/2", "--out", "other2of2.jsonl"]) == 0
    real, calls = RulesJudge._label_batch, []

    def dies_in_second_batch(self, batch):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, batch)

    RulesJudge._label_batch = dies_in_second_batch
    try:
        assert module_run(label_cmd, [*RULES, "--input", "in.jsonl", "--prefix", "j_", "--shard", "2/2", "--out", "cut2of2.jsonl"]) == 130
    finally:
        RulesJudge._label_batch = real


@pytest.fixture()
def here(parts, tmp_path, monkeypatch):
    """A copy of the parts in this test's folder, the working directory: the contract checks that nothing in it changes."""
    monkeypatch.chdir(tmp_path)
    for path in parts.iterdir():
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "twin1of2.jsonl").write_bytes((tmp_path / "part1of2.jsonl").read_bytes())
    shutil.copy(tmp_path / "part1of2.jsonl.manifest.json", tmp_path / "twin1of2.jsonl.manifest.json")
    (tmp_path / "edited2of2.jsonl").write_bytes((tmp_path / "part2of2.jsonl").read_bytes().replace(b'"j_label": "', b'"j_label": "x', 1))
    shutil.copy(tmp_path / "part2of2.jsonl.manifest.json", tmp_path / "edited2of2.jsonl.manifest.json")
    forged = json.loads((tmp_path / "part2of2.jsonl.manifest.json").read_text())
    forged["part"]["positions"][1] = forged["part"]["positions"][0]
    shutil.copy(tmp_path / "part2of2.jsonl", tmp_path / "forged2of2.jsonl")
    (tmp_path / "forged2of2.jsonl.manifest.json").write_text(json.dumps(forged))
    (tmp_path / "mine.jsonl").write_text('{"id": "a user\'s own file"}\n')
    return tmp_path


def test_the_parts_join_to_the_whole_output(here, capsys):
    code, out, err = run_cli(join_cmd, [str(here / "part2of2.jsonl"), str(here / "part1of2.jsonl"), "--out", str(here / "joined.jsonl")], capsys)
    assert code == 0, err
    assert (here / "joined.jsonl").read_bytes() == (here / "whole.jsonl").read_bytes()
    manifest = json.loads((here / "joined.jsonl.manifest.json").read_text())
    assert manifest["command"] == "judge.join" and manifest["of"] == "judge.label" and manifest["settings"]["prefix"] == "j_"
    assert [(p["file"], p["shard"]) for p in manifest["parts"]] == [("part2of2.jsonl", "2/2"), ("part1of2.jsonl", "1/2")]
    from judge.core.files import file_sha256
    from judge.core.manifest import judge_of

    assert manifest["parts"][0]["sha256"] == file_sha256(here / "part2of2.jsonl")
    assert judge_of(here / "joined.jsonl", "j_label")["kind"] == "rules"  # reports read the judge of a joined file as of a whole one
    # --overwrite replaces the join's own output, and nothing else
    code, _, err = run_cli(join_cmd, [str(here / "part1of2.jsonl"), str(here / "part2of2.jsonl"), "--out", str(here / "joined.jsonl"), "--overwrite"], capsys)
    assert code == 0, err


def parts_of(*names):
    return lambda d: list(names)


CASES = [
    # (case, module, argv given the folder, fragments of the one line)
    ("missing share", join_cmd, lambda d: [*parts_of("part1of3.jsonl", "part3of3.jsonl")(d), "--out", "j.jsonl"],
     ["share(s) 2/3 missing", "add the part written with --shard 2/3"]),
    ("share twice", join_cmd, lambda d: [*parts_of("part1of2.jsonl", "twin1of2.jsonl", "part2of2.jsonl")(d), "--out", "j.jsonl"],
     ["share 1/2 is given twice", "part1of2.jsonl, twin1of2.jsonl", "give each share once"]),
    ("the same file twice", join_cmd, lambda d: [*parts_of("part1of2.jsonl", "part1of2.jsonl", "part2of2.jsonl")(d), "--out", "j.jsonl"],
     ["part1of2.jsonl is given twice", "give each part file once"]),
    ("parts of two runs", join_cmd, lambda d: [*parts_of("part1of2.jsonl", "other2of2.jsonl")(d), "--out", "j.jsonl"],
     ["parts of two runs", "join the parts of one run"]),
    ("two splits", join_cmd, lambda d: [*parts_of("part1of2.jsonl", "part3of3.jsonl")(d), "--out", "j.jsonl"],
     ["share 1/2", "share 3/3", "one --shard I/N split"]),
    ("a part still partial", join_cmd, lambda d: [*parts_of("part1of2.jsonl", "cut2of2.jsonl")(d), "--out", "j.jsonl"],
     ["cut2of2.jsonl is not finished", "cut2of2.jsonl.partial.jsonl holds its rows so far", "rerun its command"]),
    ("a whole output", join_cmd, lambda d: [*parts_of("whole.jsonl", "part2of2.jsonl")(d), "--out", "j.jsonl"],
     ["whole.jsonl was written without --shard", "join only the parts"]),
    ("an edited part", join_cmd, lambda d: [*parts_of("part1of2.jsonl", "edited2of2.jsonl")(d), "--out", "j.jsonl"],
     ["edited2of2.jsonl was changed after its run wrote it", "rerun that share"]),
    ("a forged position", join_cmd, lambda d: [*parts_of("part1of2.jsonl", "forged2of2.jsonl")(d), "--out", "j.jsonl"],
     ["forged2of2.jsonl", "holds a position twice"]),
    ("a user's own file", join_cmd, lambda d: [*parts_of("part1of2.jsonl", "mine.jsonl")(d), "--out", "j.jsonl"],
     ["mine.jsonl has no mine.jsonl.manifest.json", "--shard I/N"]),
    ("a part not there", join_cmd, lambda d: [*parts_of("part1of2.jsonl", "gone.jsonl")(d), "--out", "j.jsonl"],
     ["part gone.jsonl not found", "check the path"]),
    ("out is a part", join_cmd, lambda d: [*parts_of("part1of2.jsonl", "part2of2.jsonl")(d), "--out", "part1of2.jsonl"],
     ["is also an input", "write to another path"]),
    ("out exists", join_cmd, lambda d: [*parts_of("part1of2.jsonl", "part2of2.jsonl")(d), "--out", "mine.jsonl"],
     ["already exists", "--overwrite"]),
    ("overwrite a user's file", join_cmd, lambda d: [*parts_of("part1of2.jsonl", "part2of2.jsonl")(d), "--out", "mine.jsonl", "--overwrite"],
     ["--overwrite replaces only what judge.join wrote", "choose another --out"]),
    ("unknown out format", join_cmd, lambda d: [*parts_of("part1of2.jsonl", "part2of2.jsonl")(d), "--out", "j.txt"],
     ["unknown file format", ".jsonl"]),
    ("shard 0/2", label_cmd, lambda d: [*RULES, "--input", "in.jsonl", "--shard", "0/2", "--out", "s.jsonl"],
     ["--shard 0/2 is out of range", "I must be from 1 to 2"]),
    ("shard 3/2", label_cmd, lambda d: [*RULES, "--input", "in.jsonl", "--shard", "3/2", "--out", "s.jsonl"],
     ["--shard 3/2 is out of range", "e.g. --shard 1/2"]),
    ("shard a/b", label_cmd, lambda d: [*RULES, "--input", "in.jsonl", "--shard", "a/b", "--out", "s.jsonl"],
     ["--shard 'a/b' is not I/N", "two whole numbers"]),
    ("shard 1/0", label_cmd, lambda d: [*RULES, "--input", "in.jsonl", "--shard", "1/0", "--out", "s.jsonl"],
     ["N must be 1 or more"]),
    ("another share into a part", label_cmd, lambda d: [*RULES, "--input", "in.jsonl", "--prefix", "j_", "--shard", "2/2",
                                                         "--out", "part1of2.jsonl"],
     ["part1of2.jsonl was produced with different settings (shard changed)", "--overwrite"]),
]


@pytest.mark.parametrize("case,module,argv,fragments", CASES, ids=[c[0] for c in CASES])
def test_refused(here, capsys, case, module, argv, fragments):
    assert_refused(module, argv(here), fragments, root=here, capsys=capsys)


def test_a_cut_share_finishes_and_then_joins(here, capsys):
    before = tree_digest(here)
    argv = [*RULES, "--input", "in.jsonl", "--prefix", "j_", "--shard", "2/2", "--out", "cut2of2.jsonl"]
    code, stdout, err = run_cli(label_cmd, argv, capsys)
    assert code == 0 and "resumed" in stdout, err
    assert before != tree_digest(here)
    code, _, err = run_cli(join_cmd, [*parts_of("part1of2.jsonl", "cut2of2.jsonl")(here), "--out", str(here / "j.jsonl")], capsys)
    assert code == 0, err
    assert (here / "j.jsonl").read_bytes() == (here / "whole.jsonl").read_bytes()
