"""A kind added as its folder, its training module and one registry line (issue 28): the majority-class
judge trains with judge.train, labels with judge.label, cross-validates, joins an ensemble whose schema
comes from the registry, and a directory naming a kind the registry does not list is refused."""
import json
from collections import Counter

import pytest

from judge import label, train
from judge.core.paths import SAMPLE
from judge.kinds import KINDS, directory_kinds, register, spec_of
from judge.kinds.spec import one_of
from tests.badinput import assert_refused
from tests.conftest import run_cli
from tests.test_judge_dir import reseal

COMMON = ["--train", str(SAMPLE), "--taxonomy", "chehbouni2024", "--no-progress"]


@pytest.fixture(autouse=True)
def kinds_in_their_order():
    """Tests here take 'majority' out of the registry and put it back (monkeypatch): back, it would come last,
    and every message listing the kinds (one_of(directory_kinds())) would change order for the tests after
    these. Set up first, torn down last: the registry is left as it was, order included."""
    before = dict(KINDS)
    yield
    KINDS.clear()
    KINDS.update(before)


@pytest.fixture(scope="module")
def majority(tmp_path_factory):
    out = tmp_path_factory.mktemp("majority") / "judge"
    code = train.main(train.Config(train=[str(SAMPLE)], out=str(out), kind="majority", taxonomy="chehbouni2024", progress=False))
    assert code["majority"]
    return out


def sample_labels() -> Counter:
    return Counter(json.loads(line)["label"] for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip())


def test_the_registry_lists_it_from_its_spec_alone():
    spec = spec_of("majority")
    assert KINDS["majority"] == "judge.kinds.majority" and spec.trainable and spec.member and not spec.default_member
    assert "majority" in directory_kinds() and "majority" in train.build_parser().parse_args(["--kind", "majority"]).kind


def test_it_trains_and_labels_through_the_commands(majority, tmp_path, capsys):
    meta = json.loads((majority / "judge.json").read_text())
    counts = sample_labels()
    top = counts.most_common(1)[0][0]
    assert meta["kind"] == "majority" and meta["shares"][top] == pytest.approx(counts[top] / sum(counts.values()))
    assert "- Kind: majority (the most frequent training label" in (majority / "README.md").read_text()
    out = tmp_path / "labelled.jsonl"
    code, stdout, err = run_cli(label, ["--judge", str(majority), "--input", str(SAMPLE), "--prefix", "m_", "--no-progress", "--out", str(out)],
                                capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["m_label"] for r in rows} == {top} and rows[0]["m_confidence"] == pytest.approx(meta["shares"][top])
    identity = json.loads(out.with_name(out.name + ".manifest.json").read_text())["identity"]
    assert set(identity["judge"]) >= {"judge.json", "taxonomy.yaml"}  # a directory kind's files, by the registry's default


def test_it_cross_validates_and_stacks_as_a_member(tmp_path, capsys):
    code, _, err = run_cli(train, [*COMMON, "--kind", "majority", "--cv", "3", "--out", str(tmp_path / "cv")], capsys)
    assert code == 0, err
    assert (tmp_path / "cv" / "cv" / "oof.jsonl").is_file()
    code, _, err = run_cli(train, [*COMMON, "--kind", "ensemble", "--members", "tfidf", "majority", "--cv", "3", "--out", str(tmp_path / "ens")],
                           capsys)
    assert code == 0, err
    meta = json.loads((tmp_path / "ens" / "judge.json").read_text())
    assert meta["member_dirs"] == {"tfidf": "members/tfidf", "majority": "members/majority"}
    code, _, err = run_cli(label, ["--judge", str(tmp_path / "ens"), "--input", str(SAMPLE), "--prefix", "e_", "--no-progress",
                                   "--out", str(tmp_path / "e.jsonl")],
                           capsys)
    assert code == 0, err


@pytest.mark.parametrize("argv,fragments", [
    (["--kind", "majority", "--lora-r", "4"], ["--lora-r only applies to a LoRA judge", "--kind majority"]),
    (["--kind", "ensemble", "--members", "majority", "llm"], ["--members", "invalid choice", "'llm'"]),
])
def test_settings_it_does_not_take_are_refused(argv, fragments, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    assert_refused(train, [*COMMON, *argv, "--out", str(tmp_path / "out")], fragments, root=tmp_path / "in", capsys=capsys)


def forge(majority, tmp_path, edit):
    import shutil

    directory = tmp_path / "forged"
    shutil.copytree(majority, directory)
    reseal(directory, edit)
    return directory


def label_argv(directory, tmp_path):
    return ["--judge", str(directory), "--input", str(SAMPLE), "--prefix", "j_", "--no-progress", "--out", str(tmp_path / "out.jsonl")]


@pytest.mark.parametrize("edit,fragments", [
    (lambda m: m.update(kind="centroid"), ["kind must be", "got 'centroid'", "retrain"]),  # a kind nobody registered
    (lambda m: m["shares"].update(answer=2.0), ["shares.answer", "less than or equal to 1"]),
    (lambda m: m.update(shares={"answer": 0.5, "maybe": 0.5}), ["shares name 'maybe'", "not a label of the judge"]),
    (lambda m: m.update(shares={"answer": 0.5}), ["shares must add up to 1"]),
], ids=["unregistered-kind", "share-above-one", "share-of-no-label", "shares-not-one"])
def test_a_forged_majority_judge_is_refused(majority, tmp_path, capsys, edit, fragments):
    directory = forge(majority, tmp_path, edit)
    assert_refused(label, label_argv(directory, tmp_path), fragments, root=tmp_path, capsys=capsys)


def test_without_its_registry_line_its_directories_are_refused(majority, tmp_path, capsys, monkeypatch):
    """The registry is the allowlist: a directory of a kind that is not registered loads nowhere."""
    monkeypatch.delitem(KINDS, "majority")
    assert_refused(label, label_argv(majority, tmp_path), ["judge.json kind must be", one_of(directory_kinds()), "got 'majority'"],
                   root=tmp_path, capsys=capsys)


def test_registering_is_what_its_line_does(monkeypatch):
    monkeypatch.delitem(KINDS, "majority")
    assert register("judge.kinds.majority").name == "majority" and KINDS["majority"] == "judge.kinds.majority"
    assert register("judge.kinds.majority") is spec_of("majority")  # again: the same line
    with pytest.raises(ValueError, match="registered already"):
        monkeypatch.setitem(KINDS, "majority", "elsewhere.majority")
        register("judge.kinds.majority")
