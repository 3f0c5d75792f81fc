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
    # issue 31 (8b): a prediction outside the taxonomy is an error naming it, as the same in gold is
    maybe = [{**r, "judge_label": "maybe" if i == 7 else r["judge_label"]} for i, r in enumerate(ROWS)]
    (d / "pred_maybe.jsonl").write_text("".join(json.dumps(r) + "\n" for r in maybe))
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
    (["{d}/pred_maybe.jsonl", "--gold", "label", "--pred", "judge_label", "--out", "{t}/a"],
     ["predicted label 'maybe'", "column 'judge_label'", "valid labels: answer, refusal", "'unscored' and 'escalate'"]),
    (["{d}/pred_maybe.jsonl", "--gold", "label", "--pred", "judge_label", "--taxonomy", "chehbouni2024", "--out", "{t}/a"],
     ["predicted label 'maybe'", "not in taxonomy 'chehbouni2024'"]),
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


def test_reserved_predictions_are_counted_apart(files, tmp_path, capsys):
    """'unscored', a blank cell and 'escalate' are no error: left out of kappa and counted apart (issue 31, 8b)."""
    rows = [dict(r) for r in ROWS]
    rows[0]["judge_label"], rows[1]["judge_label"], rows[2]["judge_label"] = "unscored", "", "Escalate"
    src = tmp_path / "reserved.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "ok"
    code, stdout, err = run_module(agree, [str(src), "--gold", "label", "--pred", "judge_label", "--out", str(out), "--bootstrap", "0"], capsys)
    assert code == 0, err
    result = json.loads((out / "agreement.json").read_text())
    assert (result["n"], result["n_scored"], result["n_unscored"], result["n_escalated"]) == (24, 21, 2, 1)
    assert result["confusion"]["columns_pred"] == ["answer", "refusal", "unscored", "escalate"]
    assert "escalated=1" in stdout
    from sklearn.metrics import cohen_kappa_score
    assert result["cohen_kappa"] == pytest.approx(cohen_kappa_score([r["label"] for r in rows[3:]], [r["judge_label"] for r in rows[3:]]))


def test_a_judge_predicting_one_class_has_no_zero_width_interval(files, tmp_path, capsys):
    """Issue 31 (8g): a judge that answers 'answer' to everything has kappa 0 in every resample; judge.agree
    printed 'kappa 0.000 [0.000, 0.000]'. Now the interval is none, with its reason, in the line, the JSON,
    the tables and per group."""
    rows = [{**r, "judge_label": "answer"} for r in ROWS]
    src = tmp_path / "one_class.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "ok"
    argv = [str(src), "--gold", "label", "--pred", "judge_label", "--by", "identity", "--bootstrap", "50", "--out", str(out)]
    code, stdout, err = run_module(agree, argv, capsys)
    assert code == 0, err
    assert "kappa=0.000 (judge_label predicts one class (answer): no interval)" in stdout
    assert "[0.000, 0.000]" not in stdout
    result = json.loads((out / "agreement.json").read_text())
    assert result["cohen_kappa"] == 0.0 and result["ci"]["cohen_kappa"] == [None, None]
    assert result["ci"]["reasons"]["cohen_kappa"] == "judge_label predicts one class (answer): no interval"
    for group in result["by_group"]["groups"].values():
        assert group["cohen_kappa_ci"] == [None, None] and "predicts one class" in group["cohen_kappa_ci_reason"]
    table = (out / "agreement.md").read_text()
    assert "predicts one class" in table and "[0.000, 0.000]" not in table
    assert "predicts one class" in (out / "agreement.tex").read_text()


def test_flat_interval_rule():
    from judge.stats.metrics import flat_interval, one_value_reason

    assert flat_interval((0.0, 0.0), "why") == ((None, None), "why")
    assert flat_interval((1.0, 1.0), "why") == ((None, None), "why")  # perfect agreement in every resample
    assert flat_interval((0.2, 0.5), "why") == ((0.2, 0.5), None)
    assert flat_interval((float("nan"), float("nan")), "why")[1] is None  # no interval already: left as it is
    assert one_value_reason(["a", "b"], ["a", "a"], pred_name="j") == "j predicts one class (a): no interval"
    assert one_value_reason(["a", "a"], ["a", "b"]).startswith("the gold labels hold one class (a)")
    assert one_value_reason(["a", "b"], ["a", "b"]) == "perfect agreement on every item: no interval"
