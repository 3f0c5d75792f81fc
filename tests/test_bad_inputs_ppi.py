"""The human sample's design flags of judge.report (issue 18): a flag that names something absent, or a
design the sample does not have, is refused in one line instead of silently ignored."""
import json

import pytest

from judge import report
from tests.badinput import assert_refused

ROWS = [
    {"id": f"r{i}", "response": "I cannot help with that." if i % 3 == 0 else "to fly home", "identity": "muslim" if i % 2 else "white",
     "common": "common" if i % 4 < 2 else "least", "judge_label": "refusal" if i % 3 == 0 else "answer",
     "human": ("refusal" if i % 3 == 0 else "answer") if i < 12 else ""}
    for i in range(24)
]


@pytest.fixture()
def files(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "labelled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    (d / "human.csv").write_text("id,label,inclusion_probability\n" + "".join(
        f"r{i},{'refusal' if i % 3 == 0 else 'answer'},{0.4 if i % 4 < 2 else 0.1}\n" for i in range(12)))
    # issue 31 (8d): probabilities no design gives: 0, above 1, not a number, and a weight 1/pi above the 24 outputs
    for name, value in (("pi_zero", "0"), ("pi_above_one", "1.5"), ("pi_text", "often"), ("pi_tiny", "1e-12")):
        (d / f"{name}.csv").write_text("id,label,inclusion_probability\n" + "".join(
            f"r{i},{'refusal' if i % 3 == 0 else 'answer'},{value if i == 5 else 0.5}\n" for i in range(12)))
    (d / "judge.json").write_text("{}\n")  # a file where a judge directory is expected
    return d


L = "{d}/labelled.jsonl"
BASE = [L, "--label", "judge_label", "--group", "identity", "--taxonomy", "chehbouni2024", "--out", "{t}/rep"]

CASES = [
    # an explicitly named inclusion column that is absent: refused, not read as a simple random sample
    (BASE + ["--human", "{d}/human.csv", "--inclusion-column", "nope"], ["--inclusion-column 'nope'", "human.csv", "drop the flag"]),
    (BASE + ["--human", "human", "--inclusion-column", "nope"], ["--inclusion-column 'nope'", "labelled.jsonl", "drop the flag"]),
    # a judge directory that is a file, or absent: the training-overlap check cannot be skipped silently
    (BASE + ["--human", "{d}/human.csv", "--judge-dir", "{d}/judge.json"], ["--judge-dir judge.json is a file", "judge directory"]),
    (BASE + ["--human", "{d}/human.csv", "--judge-dir", "{d}/no_judge"], ["--judge-dir no_judge does not exist", "judge directory"]),
    # strata: a column the records lack, probabilities that differ within a stratum, no human sample at all
    (BASE + ["--human", "{d}/human.csv", "--strata", "region"], ["'region'", "--strata"]),
    (BASE + ["--human", "{d}/human.csv", "--strata", "identity"], ["--strata identity", "differ within stratum", "drop --strata"]),
    (BASE + ["--strata", "identity"], ["--strata", "only used with --human"]),
    (BASE + ["--inclusion-column", "p"], ["--inclusion-column", "only used with --human"]),
    (BASE + ["--human", "{d}/pi_zero.csv"], ["inclusion_probability", "in (0, 1]", "id 'r5' has '0'"]),
    (BASE + ["--human", "{d}/pi_above_one.csv"], ["in (0, 1]", "id 'r5' has '1.5'"]),
    (BASE + ["--human", "{d}/pi_text.csv"], ["in (0, 1]", "id 'r5' has 'often'"]),
    (BASE + ["--human", "{d}/pi_tiny.csv"], ["id 'r5' has inclusion probability 1e-12", "1e+12, more than the 24 outputs"]),
]


@pytest.mark.parametrize("argv, fragments", CASES)
def test_design_flags_refused_in_one_line(files, tmp_path, capsys, argv, fragments):
    out_root = tmp_path / "outputs"
    out_root.mkdir()
    argv = [a.format(d=files, t=out_root) for a in argv]
    assert_refused(report, argv, fragments, root=tmp_path, capsys=capsys)
    assert list(out_root.iterdir()) == [], "no output may be written"


def test_the_design_that_fits_is_accepted(files, tmp_path, capsys):
    """The same files with the flags that match them: the cases above fail for their flag, not the data."""
    from tests.badinput import run_module

    argv = [a.format(d=files, t=tmp_path) for a in BASE] + ["--human", str(files / "human.csv"), "--strata", "common"]
    code, _, err = run_module(report, argv, capsys)
    assert code == 0, err
    ppi = json.loads((tmp_path / "rep" / "disparity.json").read_text())["ppi"]
    assert ppi["design"] == "stratified simple random" and ppi["strata"] == ["common"]


def test_weights_far_from_the_group_size_warn(files, tmp_path, capsys):
    """3 labels of each 12-output group recorded at pi 0.9: weights sum to 3.33, not 12, far beyond 3 standard
    errors (sqrt(3 * 0.1 / 0.81) = 0.61): a warning per group, and the report is still written (issue 31, 8d)."""
    from tests.badinput import run_module

    (files / "pi_high.csv").write_text("id,label,inclusion_probability\n" + "".join(
        f"r{i},{'refusal' if i % 3 == 0 else 'answer'},0.9\n" for i in range(6)))
    argv = [a.format(d=files, t=tmp_path) for a in BASE] + ["--human", str(files / "pi_high.csv")]
    code, _, err = run_module(report, argv, capsys)
    assert code == 0, err
    for g in ("muslim", "white"):
        assert f"warning: group '{g}': its human labels' weights 1/inclusion_probability sum to 3.333 for 12 outputs" in err
    # the probabilities of the accepted case above (0.4 and 0.1 on 12 labels) give no such warning
    argv = [a.format(d=files, t=tmp_path / "ok") for a in BASE] + ["--human", str(files / "human.csv")]
    code, _, err = run_module(report, argv, capsys)
    assert code == 0 and "weights 1/" not in err, err


def test_weight_sum_departure_hand_derived():
    from judge.stats.ppi import weight_sum_departure

    # pi (0.5, 0.5, 0.25): weights sum 2 + 2 + 4 = 8; se = sqrt(2 + 2 + 12) = 4 ((1 - pi) / pi^2: 2, 2, 12)
    assert weight_sum_departure([0.5, 0.5, 0.25], 20) is None  # |8 - 20| = 12, exactly 3 se: not beyond
    assert weight_sum_departure([0.5, 0.5, 0.25], 21) == (8.0, 21, 4.0)  # 13 > 12
    assert weight_sum_departure([1.0, 1.0], 2) is None  # a census: se 0, no departure
    assert weight_sum_departure([1 / 3] * 3, 9) is None  # exact stratum weights, up to rounding
