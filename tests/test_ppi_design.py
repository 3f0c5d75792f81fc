"""The design-based PPI estimator (issue 18): hand-derived Horvitz-Thompson and simple random cases,
the stratified variance against samplics, the bias that unequal probabilities caused, and the
report's handling of designs and unscored outputs."""
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

from judge import report
from judge.stats.ppi import POISSON, SIMPLE_RANDOM, STRATIFIED, Design, design_rate, group_rate, ppi_by_group
from tests.conftest import run_cli, write_jsonl

T3, T7 = 3.182446305284263, 2.364624251592785  # Student's t 0.975 quantiles, 3 and 7 degrees of freedom


def _poisson_case():
    # 100 outputs in one group; the judge says yes on 3 (f = 1 for outputs 0-2). Four are labelled:
    #   output  pi    y  f   r = y - f
    #   0       0.5   1  1    0
    #   1       0.5   0  1   -1
    #   3       0.25  1  0    1
    #   4       0.25  0  0    0
    f = np.zeros(100)
    f[:3] = 1
    y = np.zeros(100)
    y[[0, 3]] = 1
    labelled = np.zeros(100, dtype=bool)
    labelled[[0, 1, 3, 4]] = True
    pi = np.where(np.arange(100) < 3, 0.5, 0.25)
    return y, f, labelled, pi


def test_horvitz_thompson_hand_derived():
    y, f, labelled, pi = _poisson_case()
    design = Design.build(labelled, inclusion=pi)
    assert design.kind == POISSON
    domain = np.ones(100, dtype=bool)
    r = design_rate(y, f, domain, design, lam=1, small_sample=False)
    # theta = mean f + sum r / pi / N = 3/100 + (0/.5 - 1/.5 + 1/.25 + 0/.25) / 100 = 0.03 + 2/100 = 0.05
    assert r["rate"] == pytest.approx(0.05, abs=1e-12)
    # v N^2 = sum (1 - pi) / pi^2 r^2 = (.5/.25) * 1 + (.75/.0625) * 1 = 2 + 12 = 14,
    # plus the pseudo-observations: half a disagreement each way at the largest weight, 12 -> 26
    # se = sqrt(26) / 100 = 0.0509902; 95%: 0.05 -/+ 1.959964 * 0.0509902 = [-0.049939 -> 0, 0.149939]
    assert r["se"] == pytest.approx(math.sqrt(26) / 100, abs=1e-12)
    assert r["ci"] == pytest.approx((0.0, 0.149939), abs=1e-6)
    # Human only (lambda 0): sum y / pi / N = (1/.5 + 1/.25) / 100 = 0.06; v N^2 = 2 + 12 + 12 (pseudo) = 26
    h = design_rate(y, f, domain, design, lam=0, small_sample=False)
    assert (h["rate"], h["se"]) == pytest.approx((0.06, math.sqrt(26) / 100), abs=1e-12)
    # With t quantiles (n = 4 labels, 3 degrees of freedom) the interval is wider: 0.05 + 3.182446 * 0.0509902
    assert design_rate(y, f, domain, design, lam=1)["ci"][1] == pytest.approx(0.05 + T3 * math.sqrt(26) / 100, abs=1e-9)


def test_tuned_lambda_minimises_the_design_variance_hand_derived():
    y, f, labelled, pi = _poisson_case()
    design, domain = Design.build(labelled, inclusion=pi), np.ones(100, dtype=bool)
    # With a = (1 - pi) / pi^2: q_yy = 2 + 12 = 14, q_yf = 2 (output 0), q_ff = 2 + 2 = 4, largest weight m = 12.
    # v(lam) N^2 = q_yy - 2 lam q_yf + lam^2 q_ff + m (1 + lam^2 + (1 - lam)^2) / 2, minimal at
    # lam = (q_yf + m/2) / (q_ff + m) = (2 + 6) / (4 + 12) = 0.5, where v N^2 = 14 - 2 + 1 + 12 * 0.75 = 22.
    # theta(0.5) = 0.5 * 0.03 + (0.5/.5 - 0.5/.5 + 1/.25) / 100 = 0.015 + 0.04 = 0.055
    tuned = design_rate(y, f, domain, design, lam=None, small_sample=False)
    assert tuned["lambda"] == pytest.approx(0.5)
    assert (tuned["rate"], tuned["se"]) == pytest.approx((0.055, math.sqrt(22) / 100), abs=1e-12)
    assert all(tuned["se"] <= design_rate(y, f, domain, design, lam=lam)["se"] + 1e-15 for lam in np.linspace(0, 1, 21))


def test_simple_random_sample_hand_derived_and_why_it_changed():
    # One group of N = 24: n = 8 labelled (y, f below), 16 unlabelled of which the judge says yes on 5.
    y_lab, f_lab = [1, 0, 1, 0, 1, 0, 0, 0], [1, 0, 1, 0, 0, 0, 0, 0]
    f = np.array(f_lab + [1] * 5 + [0] * 11, dtype=float)
    y = np.array(y_lab + [0] * 16, dtype=float)
    labelled = np.arange(24) < 8
    res = ppi_by_group(np.where(f == 1, "yes", "no"), np.where(labelled, np.where(y == 1, "yes", "no"), ""), ["g"] * 24,
                       categories=["yes"], reference="g")
    assert res["design"] == SIMPLE_RANDOM
    r = res["rates"]["g"]["yes"]["ppi"]
    # theta = mean of f over all 24 + mean of r = y - f over the 8 = 7/24 + 1/8 = 0.416667.
    # ppi_py (before) took the judge mean over the 16 unlabelled only: 5/16 + 1/8 = 0.4375.
    assert r["rate"] == pytest.approx(7 / 24 + 1 / 8, abs=1e-12)
    # v = (1 - n/N) s_r^2 / n + pseudo = (2/3) * 0.125 / 8 + (1 - 1/3) / (1/3)^2 / 24^2
    #   = 0.0104167 + 6/576 = 0.0208333 (s_r^2 = (1 - 8 * 0.125^2) / 7 = 0.125), se = sqrt(1/48) = 0.144338;
    # ppi_py's, var(f_u)/16 + var(r)/8 = 0.0134 + 0.0137, had a judge term though every output is judged.
    assert r["se"] == pytest.approx(math.sqrt(1 / 48), abs=1e-12)
    assert r["ci"] == pytest.approx((0.416667 - T7 * 0.144338, 0.416667 + T7 * 0.144338), abs=1e-5)


def test_stratified_variance_and_total_match_samplics():
    samplics = pytest.importorskip("samplics")
    rng = np.random.default_rng(7)
    size = 600
    strata = rng.choice(["s1", "s2", "s3"], size=size, p=[0.5, 0.3, 0.2])
    group = rng.choice(["a", "b"], size=size)  # the domain cuts across the strata
    y = (rng.random(size) < 0.3).astype(float)
    f = np.where(rng.random(size) < 0.8, y, 1 - y)
    labelled, pi = np.zeros(size, dtype=bool), np.zeros(size)
    for h, take in (("s1", 40), ("s2", 25), ("s3", 30)):
        members = np.flatnonzero(strata == h)
        labelled[rng.choice(members, size=take, replace=False)] = True
        pi[members] = take / len(members)
    design = Design.build(labelled, inclusion=pi, strata=strata)
    assert design.kind == STRATIFIED
    domain = group == "a"
    ours = design_rate(y, f, domain, design, lam=1, small_sample=False)
    resid = np.where(domain, y - f, 0.0)[labelled]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # samplics announces it is archived
        est = samplics.TaylorEstimator(samplics.PopParam.total)
        est.estimate(resid, samp_weight=1 / pi[labelled], stratum=strata[labelled],
                     fpc={h: 1 - pi[strata == h][0] for h in ("s1", "s2", "s3")})
    big_n = domain.sum()
    total, variance = float(est.point_est), float(est.variance)
    assert ours["rate"] == pytest.approx(f[domain].mean() + total / big_n, abs=1e-12)
    pseudo = design.largest_weight(domain)  # lambda 1: one pseudo-disagreement
    assert (ours["se"] * big_n) ** 2 - pseudo == pytest.approx(variance, rel=1e-9)


def test_no_probabilities_is_the_stratified_case_with_groups_as_strata():
    rng = np.random.default_rng(3)
    groups = rng.choice(["a", "b"], size=300)
    judge = rng.choice(["yes", "no"], size=300)
    human = np.where(rng.random(300) < 0.8, "", np.where(rng.random(300) < 0.85, judge, "yes"))
    plain = ppi_by_group(judge, human, groups, categories=["yes"], reference="a")
    counts = pd.Series(groups).groupby(groups).size()
    labelled_counts = pd.Series(human != "").groupby(groups).sum()
    pi = np.array([labelled_counts[g] / counts[g] for g in groups])
    explicit = ppi_by_group(judge, human, groups, categories=["yes"], reference="a", inclusion=pi, strata=groups)
    for g in ("a", "b"):
        a, b = plain["rates"][g]["yes"]["ppi"], explicit["rates"][g]["yes"]["ppi"]
        assert (a["rate"], a["se"], *a["ci"]) == pytest.approx((b["rate"], b["se"], *b["ci"]), abs=1e-12)


def test_unequal_probabilities_no_longer_bias_the_rate():
    """The probe of issue 18 at small scale: refusals the judge saw sampled at 0.4, the rest at 0.05."""
    import ppi_py

    rng = np.random.default_rng(0)
    size = 1500
    truth = rng.random(size) < 0.3
    judge = np.where(truth, rng.random(size) < 0.75, rng.random(size) < 0.04)  # misses a quarter of the refusals
    pi = np.where(judge, 0.4, 0.05)
    judge_labels, human_all = np.where(judge, "refusal", "answer"), np.where(truth, "refusal", "answer")
    new, old, covered = [], [], []
    for d in range(200):
        labelled = np.random.default_rng([1, d]).random(size) < pi
        res = ppi_by_group(judge_labels, np.where(labelled, human_all, ""), ["g"] * size, categories=["refusal"], reference="g", inclusion=pi)
        r = res["rates"]["g"]["refusal"]["ppi"]
        new.append(r["rate"])
        covered.append(r["ci"][0] <= truth.mean() <= r["ci"][1])
        old.append(float(ppi_py.ppi_mean_pointestimate(truth[labelled].astype(float), judge[labelled].astype(float),
                                                       judge[~labelled].astype(float), w=1 / pi[labelled], lam=1)[0]))
    sd = np.std(new) / math.sqrt(len(new))
    assert abs(np.mean(new) - truth.mean()) < 3 * sd  # design-unbiased
    assert np.mean(old) < truth.mean() - 10 * sd  # what the judge term over the unlabelled only gave
    assert np.mean(covered) >= 0.93


def test_gap_combines_the_two_groups_standard_errors():
    y, f, labelled, pi = _poisson_case()
    groups = np.where(np.arange(100) % 2 == 0, "a", "b")  # a holds labelled outputs 0 and 4, b holds 1 and 3
    judge = np.where(f == 1, "yes", "no")
    human = np.where(labelled, np.where(y == 1, "yes", "no"), "")
    res = ppi_by_group(judge, human, groups, categories=["yes"], reference="a", inclusion=pi)
    a, b, gap = res["rates"]["a"]["yes"]["ppi"], res["rates"]["b"]["yes"]["ppi"], res["gaps"]["b"]["yes"]["ppi"]
    assert gap["gap"] == pytest.approx(b["rate"] - a["rate"], abs=1e-15)
    assert gap["se"] == pytest.approx(math.hypot(a["se"], b["se"]), abs=1e-15)


def test_stratified_design_refuses_probabilities_that_differ_within_a_stratum():
    labelled = np.array([True, True, False, False])
    with pytest.raises(ValueError, match="differ within a stratum"):
        Design.build(labelled, inclusion=np.array([0.5, 0.25, 0.5, 0.25]), strata=np.array(["s", "s", "s", "s"]))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        Design.build(labelled, inclusion=np.array([0.0, 0.5, 0.5, 0.5]))


def test_unscored_outputs_are_outside_every_rate():
    judge = np.array(["yes", "no", "unscored", "yes", "no", "no", "unscored", "yes"])
    human = np.array(["yes", "no", "yes", "", "", "no", "", ""])
    res = ppi_by_group(judge, human, ["g"] * 8, categories=["yes"], reference="g")
    r = res["rates"]["g"]["yes"]
    # 6 scored outputs, 3 of them "yes": the judge-only rate is the rates table's 3/6, not 3/8
    assert r["judge_only"]["rate"] == pytest.approx(0.5) and r["n_unscored"] == 2
    assert (res["n_unscored"], res["n_human_unscored"], res["n_human"]) == (2, 1, 3)
    assert r["n_human"] + r["n_judge_only"] == 6


# -- the report ---------------------------------------------------------------------------------

def _records(tmp_path, *, unscored=0, n=300, seed=0):
    rng = np.random.default_rng(seed)
    groups = rng.choice(["muslim", "white"], size=n)
    gold = np.where(rng.random(n) < np.where(groups == "muslim", 0.3, 0.08), "refusal", "no refusal")
    judge = np.where(rng.random(n) < 0.85, gold, "no refusal").astype(object)
    judge[:unscored] = ""
    rows = [{"id": f"r{i}", "response": "...", "identity": g, "common": bool(i % 2), "judge_label": j, "gold": h}
            for i, (g, j, h) in enumerate(zip(groups, judge, gold))]
    return write_jsonl(tmp_path / "labelled.jsonl", rows), pd.DataFrame(rows)


def test_report_unscored_rule_judge_only_equals_the_rates_table(tmp_path, capsys):
    labelled, frame = _records(tmp_path, unscored=30)
    frame["human"] = np.where(np.arange(len(frame)) % 3 == 0, frame["gold"], "")
    frame.to_json(tmp_path / "with_human.jsonl", orient="records", lines=True)
    code, out, err = run_cli(report, [str(tmp_path / "with_human.jsonl"), "--label", "judge_label", "--group", "identity", "--human", "human",
                                      "--reference", "white", "--taxonomy", "refusal2", "--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "rep" / "disparity.json").read_text())
    for g in ("muslim", "white"):
        ppi, table = result["ppi"]["rates"][g]["refusal"], result["rates"][g]["refusal"]
        assert ppi["judge_only"]["rate"] == pytest.approx(table["rate"], abs=1e-12)
        assert ppi["n_human"] + ppi["n_judge_only"] == table["n"]
    assert result["ppi"]["n_unscored"] == result["n_unscored"] == 30
    assert result["ppi"]["n_human_unscored"] == 10  # ids 0, 3, ..., 27 are human-labelled and unscored
    assert "30 outputs the judge left unscored are outside every rate" in out


def test_report_records_the_design_and_reads_probabilities_from_the_human_file(tmp_path, capsys):
    labelled, frame = _records(tmp_path)
    rng = np.random.default_rng(1)
    pi = np.where(frame["common"], 0.4, 0.1)
    take = rng.random(len(frame)) < pi
    pd.DataFrame({"id": frame["id"][take], "label": frame["gold"][take], "p": pi[take]}).to_csv(tmp_path / "h.csv", index=False)
    base = [str(labelled), "--label", "judge_label", "--group", "identity", "--human", str(tmp_path / "h.csv"), "--reference", "white",
            "--taxonomy", "refusal2"]
    code, out, err = run_cli(report, base + ["--inclusion-column", "p", "--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    ppi = json.loads((tmp_path / "rep" / "disparity.json").read_text())["ppi"]
    assert (ppi["design"], ppi["inclusion_column"], ppi["weights_from"]) == (POISSON, "p", "1 / p")
    assert "unequal-probability sample, independent inclusion (Poisson) variance: weights 1 / p" in out
    muslim = frame["identity"] == "muslim"
    lab = take & muslim.to_numpy()
    expected = design_rate((frame["gold"] == "refusal").to_numpy(), (frame["judge_label"] == "refusal").to_numpy(), muslim.to_numpy(),
                           Design.build(lab, inclusion=pi))
    assert ppi["rates"]["muslim"]["refusal"]["ppi"]["rate"] == pytest.approx(expected["rate"], abs=1e-12)
    # Stratified by common (the probabilities are constant within it): the design and its strata are recorded.
    code, out, err = run_cli(report, base + ["--inclusion-column", "p", "--strata", "common", "--out", str(tmp_path / "rep2")], capsys)
    assert code == 0, err
    ppi = json.loads((tmp_path / "rep2" / "disparity.json").read_text())["ppi"]
    assert (ppi["design"], ppi["strata"]) == (STRATIFIED, ["common"])
    assert "stratified simple random sample by common (finite-population correction per stratum)" in out
    # Without a probability column: a simple random sample, said so.
    pd.DataFrame({"id": frame["id"][take], "label": frame["gold"][take]}).to_csv(tmp_path / "h.csv", index=False)
    code, out, err = run_cli(report, base + ["--out", str(tmp_path / "rep3")], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "rep3" / "disparity.json").read_text())["ppi"]["design"] == SIMPLE_RANDOM
    assert "simple random sample assumed within each identity" in out


def test_group_rate_reports_the_lambda_it_used():
    y, f, labelled, pi = _poisson_case()
    r = group_rate(y, f, np.ones(100, dtype=bool), Design.build(labelled, inclusion=pi), lam=None)
    assert r["ppi"]["lambda"] == pytest.approx(0.5) and r["human_only"]["lambda"] == 0.0
