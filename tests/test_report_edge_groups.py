"""judge.report on groups at the edges: every output in one cluster (a clustered variance with G - 1 = 0
degrees of freedom is said to be not estimable, never a ZeroDivisionError or a zero-width interval), and a
'(missing)' group that is the largest (never the default reference)."""
import json

import numpy as np
import pytest

from judge import report
from judge.stats import clustered
from tests.conftest import run_cli, write_jsonl


def _rows(*, human: bool = False) -> list[dict]:
    # group a: 4 of 10 refusals, group b: 6 of 10; every output from the one template 't1'
    rows = []
    for g, refusals in (("a", 4), ("b", 6)):
        for i in range(10):
            row = {"id": f"{g}{i}", "prompt": f"{g} prompt {i}", "response": "r", "identity": g, "template": "t1"}
            row["judge_label"] = "refusal" if i < refusals else "no refusal"
            if human:
                row["human"] = row["judge_label"] if i < 6 else None
            rows.append(row)
    return rows


def _run(tmp_path, capsys, rows, *extra, out="rep"):
    (tmp_path / "in").mkdir(exist_ok=True)
    src = write_jsonl(tmp_path / "in" / "labelled.jsonl", rows)
    code, stdout, err = run_cli(
        report,
        [str(src), "--label", "judge_label", "--group", "identity", "--taxonomy", "refusal2", "--out",
         str(tmp_path / out), *extra],
        capsys,
    )
    assert code == 0, err
    return json.loads((tmp_path / out / "disparity.json").read_text()), stdout, err


def test_cross_cov_of_a_single_shared_cluster_is_not_estimable():
    a, b = np.array([1.0, 0.0, 1.0]), np.array([0.0, 1.0])
    assert clustered.cross_cov(a, np.zeros(3, dtype=int), b, np.zeros(2, dtype=int)) is None
    # two clusters: G / (G - 1) sum_c ua_c ub_c / (na nb). a = 1, 0 | 1 (mean 2/3): cluster sums of the centred
    # scores (-1/3, 1/3); b = 0 | 1 (mean 1/2): (-1/2, 1/2). 2 * (1/6 + 1/6) / (3 * 2) = 1/9
    assert clustered.cross_cov(a, np.array([0, 0, 1]), b, np.array([0, 1])) == pytest.approx(1 / 9)


def test_report_with_one_cluster_says_the_ratio_has_no_interval(tmp_path, capsys):
    result, out, _ = _run(tmp_path, capsys, _rows(), "--cluster", "template", "--reference", "a")
    ratio = result["rate_ratios"]["b"]["refusal"]
    assert ratio["ratio"] == pytest.approx(0.6 / 0.4)  # 6/10 over 4/10
    assert ratio["ci_low"] is None and ratio["ci_high"] is None and not ratio["estimable"]
    assert "single cluster" in ratio["reason"]
    assert "1 clusters for 20 outputs" in out


def test_report_with_one_cluster_and_human_labels_gives_gaps_without_intervals(tmp_path, capsys):
    result, _, _ = _run(tmp_path, capsys, _rows(human=True), "--cluster", "template", "--reference", "a",
                        "--human", "human")
    gap = result["ppi"]["gaps"]["b"]["refusal"]
    # the judge-only gap: 6/10 - 4/10; no interval (the one cluster leaves the variance no degree of freedom)
    assert gap["judge_only"]["gap"] == pytest.approx(0.2)
    for method in ("judge_only", "human_only", "ppi"):
        assert gap[method]["ci"] == [None, None] and "single cluster" in gap[method]["reason"]


def test_the_missing_group_is_never_the_default_reference(tmp_path, capsys):
    rows = _rows()
    for row in rows[:6]:  # a0-a5 and b0-b5 lose their group (None, ''): (missing) 12, a 4, b 4 + 2 below
        row["identity"] = None
    for row in rows[10:16]:
        row["identity"] = ""
    for i in range(2):
        rows.append({"id": f"c{i}", "prompt": f"c prompt {i}", "response": "r", "identity": "b",
                     "template": "t2", "judge_label": "refusal"})
    # groups: (missing) 12, b 4 + 2 = 6, a 4: the largest named group, b, is the reference
    result, out, err = _run(tmp_path, capsys, rows, "--no-cluster")
    assert result["rates"]["(missing)"]["refusal"]["n"] == 12
    assert result["reference"] == "b" and "the largest group (n = 6)" in result["reference_note"]
    assert "reported as the group '(missing)'" in err
    # chosen by name, it is still allowed
    chosen, _, _ = _run(tmp_path, capsys, rows, "--no-cluster", "--reference", "(missing)", out="chosen")
    assert chosen["reference"] == "(missing)"


def test_the_library_reports_missing_group_values_as_the_commands_do():
    """disparity_analysis called from a notebook: None and '' are the group '(missing)' (not 'None' and 'nan'
    groups), with the note in the result's warnings, as judge.report says on stderr."""
    import pandas as pd

    from judge.analysis import disparity_analysis

    rows = _rows()
    rows[0]["identity"], rows[1]["identity"], rows[10]["identity"] = None, float("nan"), "  "
    result = disparity_analysis(pd.DataFrame(rows), label="judge_label", groups="identity", taxonomy="refusal2")
    # a: 10 - 2 = 8 rows, b: 10 - 1 = 9, (missing): 3 (None, NaN and spaces only)
    counts = {g: result.rates[g]["refusal"].n for g in result.rates}
    assert counts == {"(missing)": 3, "a": 8, "b": 9}
    assert any("3 row(s) have no 'identity' value" in w for w in result.warnings)
