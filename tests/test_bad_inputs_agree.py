"""judge.agree's grouping and clustering flags (issue 19): a flag naming something absent, or two that
contradict each other, is refused in one line instead of silently ignored."""
import json

import pytest

from judge import agree
from tests.badinput import assert_refused, run_module

ROWS = [
    {"id": f"r{i}", "prompt": f"p{i // 3}", "response": "r", "label": "refusal" if i % 3 == 0 else "answer",
     "judge_label": "refusal" if i % 4 == 0 else "answer", "a2": "answer", "identity": "muslim" if i % 2 else "white"}
    for i in range(24)
]


@pytest.fixture()
def files(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    (d / "by_number.json").write_text(json.dumps({"by": 3}))
    # issue 31 (3a): ids repeated with other predictions would be counted twice (n and kappa inflated)
    repeated = [{**r, "judge_label": "answer" if r["judge_label"] == "refusal" else "refusal"} for r in ROWS[:5]]
    (d / "dup.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS + repeated), encoding="utf-8")
    (d / "pred_dup.jsonl").write_text("".join(json.dumps({"id": r["id"], "p": r["judge_label"]}) + "\n" for r in ROWS + repeated))
    (d / "gold.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "judge_label"}) + "\n" for r in ROWS))
    return d


R = "{d}/rows.jsonl"
JUDGE = [R, "--gold", "label", "--pred", "judge_label", "--out", "{t}/a"]
HUMANS = [R, "--annotators", "label", "a2", "--out", "{t}/a"]

CASES = [
    (JUDGE + ["--cluster", "template"], ["'template'", "not found", "--cluster"]),
    (JUDGE + ["--cluster", "prompt", "--no-cluster"], ["--cluster prompt and --no-cluster", "keep one"]),
    (JUDGE + ["--by", "identity", "--by", "model"], ["'model'", "not found", "--by"]),  # every --by is checked, not only the last
    (JUDGE + ["--config", "{d}/by_number.json"], ["--by must be", "list of strings", "got 3"]),
    (HUMANS + ["--by", "region"], ["'region'", "not found", "--by"]),
    (HUMANS + ["--cluster", "template"], ["'template'", "--cluster"]),
    (HUMANS + ["--alt-test"], ["--alt-test", "need --pred"]),
    (HUMANS + ["--pred-file", R], ["--pred-file", "need --pred"]),
    # duplicate ids (issue 31, 3a): refused as judge.label and --human refuse them, in every file read
    (["{d}/dup.jsonl", "--gold", "label", "--pred", "judge_label", "--out", "{t}/a"], ["duplicate id(s) 'r0'", "5 in all"]),
    (["{d}/dup.jsonl", "--annotators", "label", "a2", "--out", "{t}/a"], ["duplicate id(s)", "ids must be unique"]),
    (["{d}/gold.jsonl", "--gold", "label", "--pred", "p", "--pred-file", "{d}/pred_dup.jsonl", "--out", "{t}/a"],
     ["duplicate id(s) 'r0'"]),
    (["{d}/dup.jsonl", "--gold", "label", "--pred", "p", "--pred-file", "{d}/pred_dup.jsonl", "--out", "{t}/a"],
     ["duplicate id(s)"]),
]


@pytest.mark.parametrize("argv, fragments", CASES)
def test_grouping_flags_refused_in_one_line(files, tmp_path, capsys, argv, fragments):
    out_root = tmp_path / "outputs"
    out_root.mkdir()
    argv = [a.format(d=files, t=out_root) for a in argv]
    assert_refused(agree, argv, fragments, root=tmp_path, capsys=capsys)
    assert list(out_root.iterdir()) == [], "no output may be written"


def test_the_flags_that_fit_are_accepted(files, tmp_path, capsys):
    """The same files with flags that match them: the cases above fail for their flag, not the data."""
    for i, argv in enumerate((JUDGE + ["--by", "identity", "--cluster", "prompt"], HUMANS + ["--by", "identity", "--no-cluster"])):
        out = tmp_path / f"ok{i}"
        code, _, err = run_module(agree, [a.format(d=files, t=out) for a in argv] + ["--bootstrap", "20"], capsys)
        assert code == 0, err
        assert json.loads((out / "a" / "agreement.json").read_text())["by_group"]["column"] == "identity"


def test_ids_repeated_across_files_are_not_duplicates(files, tmp_path, capsys):
    """Two files that repeat each other's ids get a combined id (file:id): only a repeat within the id used is refused."""
    (files / "other.jsonl").write_text((files / "rows.jsonl").read_text())
    out = tmp_path / "ok"
    argv = [str(files / "rows.jsonl"), str(files / "other.jsonl"), "--gold", "label", "--pred", "judge_label", "--out", str(out),
            "--bootstrap", "20"]
    code, stdout, err = run_module(agree, argv, capsys)
    assert code == 0, err
    assert "ids repeat across the 2 input files" in stdout
    assert json.loads((out / "agreement.json").read_text())["n"] == 2 * len(ROWS)
