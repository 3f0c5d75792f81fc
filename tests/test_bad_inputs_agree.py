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
