"""judge.report's clustering flags (issue 19): a cluster column that is absent, empty in places, the group
itself, or contradicted by --no-cluster is refused in one line instead of quietly giving independent-output
intervals."""
import json

import pytest

from judge import report
from tests.badinput import assert_refused, run_module

ROWS = [
    {"id": f"r{i}", "response": ".", "prompt": f"prompt {i // 3}", "template": f"t{i % 4}" if i != 5 else "",
     "identity": "muslim" if i % 2 else "white", "judge_label": "refusal" if i % 3 == 0 else "no refusal"}
    for i in range(24)
]
BASE = ["{d}/labelled.jsonl", "--label", "judge_label", "--group", "identity", "--taxonomy", "refusal2", "--out", "{t}/rep"]

CASES = [
    (BASE + ["--cluster", "region"], ["'region'", "--cluster"]),
    (BASE + ["--cluster", "identity"], ["--cluster identity is the --group column", "--no-cluster"]),
    (BASE + ["--cluster", "template"], ["--cluster template: 1 of 24 outputs have no value", "fill them"]),
    (BASE + ["--cluster", "prompt", "--no-cluster"], ["--cluster prompt and --no-cluster contradict", "keep one"]),
]


@pytest.fixture()
def files(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "labelled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return d


@pytest.mark.parametrize("argv, fragments", CASES)
def test_cluster_flags_refused_in_one_line(files, tmp_path, capsys, argv, fragments):
    out_root = tmp_path / "outputs"
    out_root.mkdir()
    assert_refused(report, [a.format(d=files, t=out_root) for a in argv], fragments, root=tmp_path, capsys=capsys)
    assert list(out_root.iterdir()) == []


def test_the_cluster_flags_that_fit_are_accepted(files, tmp_path, capsys):
    """The same file with a cluster column that is whole: the cases above fail for their flag, not the data."""
    code, _, err = run_module(report, [a.format(d=files, t=tmp_path) for a in BASE] + ["--cluster", "prompt"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "rep" / "disparity.json").read_text())["clusters"]["n_clusters"] == 8
