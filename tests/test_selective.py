"""Selective labelling (issue 35): the calibrated threshold's guarantee, judge.calibrate, judge.label --selective,
the cascade, resume, and PPI with the escalated outputs as a census stratum."""

import json

import numpy as np
import pandas as pd
import pytest

from judge import calibrate as calibrate_cmd
from judge import label as label_cmd
from judge import train as train_cmd
from judge.analysis.selective import cascade_labels, escalation_inclusion, read_calibration
from judge.core.errors import UserError
from judge.core.paths import SAMPLE
from judge.core.taxonomy import ESCALATE, UNSCORED, Taxonomy, Category
from judge.stats import selective as sel
from tests.conftest import run_cli

# -- the bound ----------------------------------------------------------------------------------------


def test_fixed_sequence_hand_derived():
    # 30 outputs at confidence 0.95 (all right), 20 at 0.85 (1 wrong), 20 at 0.75 (10 wrong); target risk 0.1,
    # delta 0.1, grid 0.9 > 0.8 > 0.7:
    #   0.9: kept 30, 0 wrong: p = 0.9^30 = 0.0424 <= 0.1, rejected
    #   0.8: kept 50, 1 wrong: p = 0.9^50 + 50 * 0.1 * 0.9^49 = 0.005154 + 0.028630 = 0.033784, rejected
    #   0.7: kept 70, 11 wrong: p = P(Bin(70, 0.1) <= 11) > 0.9 (mean 7): not rejected, the sequence stops
    conf = np.r_[np.full(30, 0.95), np.full(20, 0.85), np.full(20, 0.75)]
    wrong = np.r_[np.zeros(30), [1] + [0] * 19, [1] * 10 + [0] * 10].astype(bool)
    r = sel.fixed_sequence(conf, wrong, target_risk=0.1, delta=0.1, grid=np.array([0.9, 0.8, 0.7]))
    assert r["threshold"] == 0.8 and r["kept"] == 50 and r["errors"] == 1 and r["tested"] == 3
    assert r["p_value"] == pytest.approx(0.9**50 + 5 * 0.9**49, rel=1e-12)
    assert r["coverage"] == pytest.approx(50 / 70)
    # the first threshold failing stops everything: no threshold, every output escalated, the reason said
    worse = wrong.copy()
    worse[:3] = True  # 3 wrong of 30 at 0.9: p = P(Bin(30, 0.1) <= 3) = 0.647
    r = sel.fixed_sequence(conf, worse, target_risk=0.1, delta=0.1, grid=np.array([0.9, 0.8, 0.7]))
    assert r["threshold"] is None and "cannot be shown" in r["reason"]
    # too few outputs to reach delta even with no error: (1 - 0.1)^n <= 0.1 needs n >= 22 (0.9^21 = 0.109)
    assert sel.min_kept(0.1, 0.1) == 22
    r = sel.fixed_sequence(conf[:21], wrong[:21], target_risk=0.1, delta=0.1)
    assert r["threshold"] is None and "at least 22" in r["reason"]


def test_p_values_and_bound_match_scipy_and_statsmodels():
    from scipy.stats import binomtest
    from statsmodels.stats.proportion import proportion_confint

    for e, n in [(0, 30), (1, 50), (7, 120), (40, 40)]:
        assert sel.p_values([e], [n], 0.05)[0] == pytest.approx(binomtest(e, n, 0.05, alternative="less").pvalue)
    # a one-sided 90% Clopper-Pearson upper bound is the upper end of the two-sided 80% interval
    assert sel.upper_bound(1, 50, 0.1) == pytest.approx(proportion_confint(1, 50, alpha=0.2, method="beta")[1])
    assert sel.upper_bound(0, 0, 0.1) is None


def calibrated_judge(rng, n):
    """A judge whose confidence is its probability of being right: c ~ 1 - 0.5 Beta(1, 4), right with prob c."""
    c = 1 - 0.5 * rng.beta(1, 4, n)
    return c, rng.random(n) > c


def test_guarantee_by_simulation():
    """With a judge of known calibrated confidences, the true risk above the chosen threshold
    (E[1 - c | c >= lam], here computed on 200k fresh draws) exceeds the target in at most ~delta of repetitions,
    and the threshold keeps outputs (a rule that escalated everything would pass trivially)."""
    rng = np.random.default_rng(0)
    population, _ = calibrated_judge(rng, 200_000)
    order = np.sort(population)[::-1]
    tail_risk = np.cumsum(1 - order) / np.arange(1, len(order) + 1)  # risk of keeping the top k
    target, delta, reps = 0.05, 0.1, 300
    exceeded, coverage = 0, []
    for _ in range(reps):
        c, wrong = calibrated_judge(rng, 600)
        lam = sel.fixed_sequence(c, wrong, target_risk=target, delta=delta)["threshold"]
        if lam is None:
            coverage.append(0.0)
            continue
        k = int(np.searchsorted(-order, -lam, side="right"))
        exceeded += tail_risk[k - 1] > target
        coverage.append(k / len(order))
    # binomial noise of 300 repetitions around delta: sd 0.017; the procedure is conservative (about 0.03)
    assert exceeded / reps <= delta + 0.03
    assert np.mean(coverage) > 0.15


def test_precision_risk_splits_delta_and_holds_per_category():
    rng = np.random.default_rng(1)
    labels = ["a", "b"]
    exceeded, reps = 0, 200
    for _ in range(reps):
        n = 800
        pred = rng.choice(labels, n, p=[0.7, 0.3])
        c = np.where(pred == "a", 1 - 0.4 * rng.beta(1, 5, n), 1 - 0.5 * rng.beta(1, 2, n))
        gold = np.where(rng.random(n) < c, pred, np.where(pred == "a", "b", "a"))
        r = sel.selective_threshold(c, pred, gold, labels=labels, target_risk=0.1, delta=0.1, risk="precision")
        assert r["delta_per_category"] == 0.05
        # true precision risk above lam for category x: E[1 - c | pred x, c >= lam], on fresh draws of that kind
        bad = False
        for x, (a, b) in {"a": (0.4, 5), "b": (0.5, 2)}.items():
            lam = r["by_category"][x]["threshold"]
            if lam is not None:
                fresh = 1 - a * rng.beta(1, b, 50_000)
                bad |= (1 - fresh[fresh >= lam]).mean() > 0.1
        exceeded += bad
    assert exceeded / reps <= 0.1 + 0.04


def test_kept_mask_per_category_and_missing_thresholds():
    conf = np.array([0.9, 0.5, 0.9, np.nan])
    pred = ["a", "a", "b", "a"]
    assert sel.kept_mask(conf, pred, 0.6).tolist() == [True, False, True, False]
    assert sel.kept_mask(conf, pred, None).tolist() == [False] * 4
    assert sel.kept_mask(conf, pred, {"a": 0.4, "b": None}).tolist() == [True, True, False, False]


def test_escalate_is_reserved_in_taxonomies():
    with pytest.raises(UserError, match="'escalate' is reserved"):
        Taxonomy("mine", (Category("answer"), Category("Escalate")))


# -- the commands -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, sample_records):
    """A TF-IDF judge trained on half the bundled sample with --cv 3, calibrated on its out-of-fold predictions,
    and the other half (never trained on) to label."""
    import contextlib
    import io

    folder = tmp_path_factory.mktemp("selective")
    train = folder / "train.jsonl"
    rest = folder / "rest.jsonl"
    records = sample_records.sample(frac=1.0, random_state=0)
    records.iloc[:200].to_json(train, orient="records", lines=True)
    records.iloc[200:].drop(columns=["label"]).to_json(rest, orient="records", lines=True)
    from tests.conftest import module_run

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        argv = ["--train", str(train), "--label-column", "label", "--taxonomy", "chehbouni2024", "--kind", "tfidf"]
        assert module_run(train_cmd, [*argv, "--cv", "3", "--out", str(folder / "tf")]) == 0
        assert module_run(train_cmd, [*argv, "--seed", "1", "--out", str(folder / "tf2")]) == 0
        cal = ["--judge", str(folder / "tf"), "--target", "0.95", "--delta", "0.2"]
        assert module_run(calibrate_cmd, [*cal, "--out", str(folder / "cal.json")]) == 0
    return folder


def test_calibrate_never_replaces_a_file_without_overwrite(calibrated, tmp_path, capsys):
    # a user's file at --out: refused in one line before any work, its bytes kept (it was silently replaced)
    theirs = tmp_path / "theirs.json"
    theirs.write_text('{"mine": 1}\n')
    code, _, err = run_cli(calibrate_cmd, ["--judge", str(calibrated / "tf"), "--out", str(theirs)], capsys)
    assert code == 2 and "already exists" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert theirs.read_text() == '{"mine": 1}\n'


def test_calibrate_from_out_of_fold_predictions(calibrated):
    cal = read_calibration(str(calibrated / "cal.json"))
    oof = pd.read_json(calibrated / "tf" / "cv" / "oof.jsonl", lines=True)
    conf = oof[[c for c in oof.columns if c.startswith("oof_p_")]].max(axis=1).to_numpy()
    assert cal.n == 200 and cal.risk == "accuracy" and cal.target == 0.95 and cal.delta == 0.2
    assert cal.kept == int((conf >= cal.threshold).sum()) and cal.coverage == cal.kept / 200
    right = (oof["oof_label"] == oof["label"]).to_numpy()
    assert cal.errors == int((~right & (conf >= cal.threshold)).sum())
    # what the bound says holds on the calibration sample itself: the Clopper-Pearson bound is at most the risk
    assert cal.risk_upper <= 0.05
    manifest = json.loads((calibrated / "cal.json.manifest.json").read_text())
    assert manifest["command"] == "judge.calibrate" and manifest["counts"]["kept"] == cal.kept


def test_label_selective_escalates_below_the_threshold(calibrated, tmp_path, capsys):
    out = tmp_path / "l.jsonl"
    argv = ["--judge", str(calibrated / "tf"), "--input", str(calibrated / "rest.jsonl"), "--prefix", "j_"]
    code, stdout, err = run_cli(label_cmd, [*argv, "--selective", str(calibrated / "cal.json"), "--no-progress", "--out", str(out)], capsys)
    assert code == 0, err
    plain = tmp_path / "plain.jsonl"
    assert run_cli(label_cmd, [*argv, "--no-progress", "--out", str(plain)], capsys)[0] == 0
    got, ref = pd.read_json(out, lines=True), pd.read_json(plain, lines=True)
    cal = read_calibration(str(calibrated / "cal.json"))
    below = ref["j_confidence"] < cal.threshold
    assert below.any() and (~below).any()
    assert (got.loc[below, "j_label"] == ESCALATE).all()  # never a label below the threshold
    assert got.loc[below, "j_unscored_reason"].str.startswith("escalated: confidence").all()
    assert (got.loc[~below, "j_label"] == ref.loc[~below, "j_label"]).all()  # the kept labels are the judge's own
    assert (got["j_confidence"] == ref["j_confidence"]).all()
    manifest = json.loads((tmp_path / "l.jsonl.manifest.json").read_text())
    s = manifest["selective"]
    import hashlib

    assert s["target"] == 0.95 and s["delta"] == 0.2 and s["coverage_calibration"] == cal.coverage
    assert s["calibration_sha256"] == hashlib.sha256((calibrated / "cal.json").read_bytes()).hexdigest()
    assert s["escalated_this_file"] == int(below.sum()) == manifest["counts"]["escalated"]
    assert f"escalated {int(below.sum())}" in stdout


def test_label_refuses_another_judges_calibration_and_a_tampered_one(calibrated, tmp_path, capsys):
    base = ["--input", str(calibrated / "rest.jsonl"), "--prefix", "j_", "--no-progress", "--out", str(tmp_path / "o.jsonl")]
    code, _, err = run_cli(label_cmd, ["--judge", str(calibrated / "tf2"), "--selective", str(calibrated / "cal.json"), *base], capsys)
    assert code == 2 and "calibrated on another judge" in err and "judge.calibrate" in err
    data = json.loads((calibrated / "cal.json").read_text())
    for key, value, message in [("threshold", 1.5, "outside [0, 1]"), ("format", "x", "not a selective calibration"),
                                ("risk", "recall", "risk is")]:
        bad = tmp_path / f"bad-{key}.json"
        bad.write_text(json.dumps({**data, key: value}))
        code, _, err = run_cli(label_cmd, ["--judge", str(calibrated / "tf"), "--selective", str(bad), *base], capsys)
        assert code == 2 and message in err and "Traceback" not in err
    code, _, err = run_cli(label_cmd, ["--judge", str(calibrated / "tf"), "--selective", str(calibrated / "cal.json"),
                                       "--abstain-below", "0.5", *base], capsys)
    assert code == 2 and "--selective and --abstain-below" in err


def test_cascade_passes_only_escalated_rows(calibrated, tmp_path, capsys):
    first = tmp_path / "first.jsonl"
    argv = ["--input", str(calibrated / "rest.jsonl"), "--no-progress"]
    assert run_cli(label_cmd, ["--judge", str(calibrated / "tf"), "--selective", str(calibrated / "cal.json"), *argv,
                               "--prefix", "a_", "--out", str(first)], capsys)[0] == 0
    second = tmp_path / "second.jsonl"
    code, _, err = run_cli(label_cmd, ["--judge", "rules", "--taxonomy", "chehbouni2024", "--input", str(first),
                                       "--only-escalated", "a_", "--prefix", "b_", "--no-progress", "--out", str(second)], capsys)
    assert code == 0, err
    one, two = pd.read_json(first, lines=True), pd.read_json(second, lines=True)
    escalated = one.loc[one["a_label"] == ESCALATE, "id"]
    assert len(escalated) and two["id"].tolist() == escalated.tolist()  # exactly the escalated rows, in order
    assert (two["a_label"] == ESCALATE).all() and two["b_label"].notna().all()
    merged = one.merge(two[["id", "b_label"]], on="id", how="left")
    final = cascade_labels(merged, prefixes=["a_", "b_"])
    kept = one["a_label"] != ESCALATE
    assert (final[kept] == one.loc[kept, "a_label"]).all()
    assert (final[~kept].to_numpy() == merged.loc[~kept, "b_label"].to_numpy()).all()
    code, _, err = run_cli(label_cmd, ["--judge", "rules", "--taxonomy", "chehbouni2024", "--input", str(first),
                                       "--only-escalated", "zz_", "--no-progress", "--out", str(tmp_path / "x.jsonl")], capsys)
    assert code == 2 and "zz_label" in err


def test_selective_resume_is_byte_identical(calibrated, tmp_path, capsys, monkeypatch):
    from tests.test_resume import clean_bytes, corrupt_label_row, resumed_bytes

    argv = ["--judge", str(calibrated / "tf"), "--selective", str(calibrated / "cal.json"), "--input",
            str(calibrated / "rest.jsonl"), "--batch-size", "7", "--no-progress", "--prefix", "j_"]
    clean = clean_bytes(label_cmd, argv, tmp_path, capsys)
    assert b'"escalate"' in clean
    got = resumed_bytes(label_cmd, argv, tmp_path / "out.jsonl", tmp_path, capsys, monkeypatch, kill="mid_line",
                        after_appends=3, corrupt=corrupt_label_row(clean))
    assert got == clean


# -- PPI with the escalation stratum ------------------------------------------------------------------


def test_ppi_with_escalated_census_covers_and_plug_in_does_not():
    """Outputs below the threshold are escalated and all labelled by people (pi = 1); the kept ones get a Poisson
    check sample at pi = 0.1. The design estimator (judge.stats.ppi, inclusion probabilities from
    escalation_inclusion) covers the human rate over all outputs about 95% of the time; plugging the human labels
    in where they exist and the judge's elsewhere inherits the kept labels' errors and is biased."""
    from judge.stats.ppi import Design, design_rate

    rng = np.random.default_rng(3)
    n, reps = 2000, 300
    covered, errors_ppi, errors_plug = 0, [], []
    for _ in range(reps):
        truth = rng.random(n) < 0.3  # a human 'refusal'
        conf = 1 - 0.5 * rng.beta(1, 3, n)
        right = rng.random(n) < conf
        judge = np.where(right, truth, ~truth) & (rng.random(n) < 0.9 + 0.1 * truth)  # errs towards 'no refusal'
        labels = np.where(conf >= 0.85, np.where(judge, "refusal", "answer"), ESCALATE)
        pi = escalation_inclusion(labels, 0.1)
        labelled = rng.random(n) < pi
        design = Design.build(labelled, inclusion=pi)
        y, f = truth.astype(float), (labels == "refusal").astype(float)
        r = design_rate(y, f, np.ones(n, bool), design)
        rate = truth.mean()
        covered += r["ci"][0] <= rate <= r["ci"][1]
        errors_ppi.append(r["rate"] - rate)
        plug = np.where(labelled, y, f).mean()
        errors_plug.append(plug - rate)
    assert covered / reps >= 0.92
    assert abs(np.mean(errors_ppi)) < 0.003 < abs(np.mean(errors_plug))


def test_escalation_inclusion_and_the_census_check():
    from judge.analysis.selective import check_escalated_labelled

    pi = escalation_inclusion(["answer", ESCALATE, UNSCORED], [0.2, 0.2, 0.5])
    assert pi.tolist() == [0.2, 1.0, 0.5]
    check_escalated_labelled(["answer", ESCALATE], [None, "refusal"])
    with pytest.raises(UserError, match="1 escalated output"):
        check_escalated_labelled(["answer", ESCALATE], ["answer", ""])


# -- people get the rest: agree and report count escalated outputs apart; export sends them; PPI uses them --


@pytest.fixture(scope="module")
def selective_labelled(calibrated, tmp_path_factory):
    """The held-out half labelled with --selective, with the human labels beside (the bundled sample's)."""
    import contextlib
    import io

    from tests.conftest import module_run

    folder = tmp_path_factory.mktemp("selective-labelled")
    out = folder / "l.jsonl"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert module_run(label_cmd, ["--judge", str(calibrated / "tf"), "--selective", str(calibrated / "cal.json"),
                                      "--input", str(calibrated / "rest.jsonl"), "--prefix", "judge_", "--no-progress",
                                      "--out", str(out)]) == 0
    gold = pd.read_json(SAMPLE, lines=True)[["id", "label"]]
    labelled = pd.read_json(out, lines=True).merge(gold, on="id")
    labelled.to_json(folder / "gold.jsonl", orient="records", lines=True)
    return folder


def test_agree_counts_escalated_apart(selective_labelled, tmp_path, capsys):
    from judge import agree as agree_cmd

    frame = pd.read_json(selective_labelled / "gold.jsonl", lines=True)
    escalated = int((frame["judge_label"] == ESCALATE).sum())
    code, stdout, err = run_cli(agree_cmd, [str(selective_labelled / "gold.jsonl"), "--gold", "label", "--pred", "judge_label",
                                            "--taxonomy", "chehbouni2024", "--bootstrap", "50", "--out", str(tmp_path / "a")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "a" / "agreement.json").read_text())
    kept = frame[frame["judge_label"] != ESCALATE]
    assert escalated and result["n_escalated"] == escalated and result["n"] == len(kept) and result["n_unscored"] == 0
    assert result["accuracy"] == pytest.approx((kept["label"] == kept["judge_label"]).mean())
    assert f"escalated={escalated}" in stdout
    assert "Escalated to people" in (tmp_path / "a" / "agreement.md").read_text()


def test_export_escalated_then_report_ppi_with_the_census_stratum(selective_labelled, tmp_path, capsys):
    from judge import annotate as annotate_cmd
    from judge import report as report_cmd

    frame = pd.read_json(selective_labelled / "gold.jsonl", lines=True)
    escalated = set(frame.loc[frame["judge_label"] == ESCALATE, "id"])
    code, _, err = run_cli(annotate_cmd, ["export", str(selective_labelled / "l.jsonl"), "--strategy", "escalated",
                                          "--escalated-column", "judge_label", "--budget", "20", "--taxonomy", "chehbouni2024",
                                          "--out", str(tmp_path / "x")], capsys)
    assert code == 0, err
    items = pd.read_csv(tmp_path / "x" / "items.csv")
    up = items["id"].isin(escalated)
    assert set(items.loc[up, "id"]) == escalated and (items.loc[up, "inclusion_probability"] == 1).all()
    kept_n = len(frame) - len(escalated)
    assert (~up).sum() == 20 and np.allclose(items.loc[~up, "inclusion_probability"], 20 / kept_n)
    # people's labels for the exported items (the sample's own), then the report with PPI
    human = items[["id", "inclusion_probability"]].merge(frame[["id", "label"]], on="id")
    human.to_csv(tmp_path / "human.csv", index=False)
    argv = [str(selective_labelled / "l.jsonl"), "--label", "judge_label", "--group", "identity", "--taxonomy", "chehbouni2024",
            "--no-cluster", "--out", str(tmp_path / "r")]
    code, _, err = run_cli(report_cmd, [*argv, "--human", str(tmp_path / "human.csv")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "r" / "disparity.json").read_text())
    assert result["n_escalated"] == len(escalated) and result["n_unscored"] == 0
    assert result["ppi"]["n_outputs"] == len(frame)  # escalated outputs are inside PPI's rates
    assert all(r[c]["n"] == len(frame[(frame.identity == g) & (frame.judge_label != ESCALATE)])
               for g, r in result["rates"].items() for c in r)  # and outside the judge's own rates
    # an escalated output without a human label breaks the census: refused
    human[~human["id"].isin(list(escalated)[:1])].to_csv(tmp_path / "short.csv", index=False)
    code, _, err = run_cli(report_cmd, [*argv[:-1], str(tmp_path / "r2"), "--human", str(tmp_path / "short.csv")], capsys)
    assert code == 2 and "1 escalated output(s) have no human label" in err


def test_precision_calibration_cuts_each_category_at_its_own_threshold(calibrated, tmp_path, capsys):
    cal_path = tmp_path / "precision.cal.json"
    code, _, err = run_cli(calibrate_cmd, ["--judge", str(calibrated / "tf"), "--risk", "precision", "--target", "0.9",
                                           "--delta", "0.2", "--out", str(cal_path)], capsys)
    assert code == 0, err
    cal = read_calibration(str(cal_path))
    assert cal.risk == "precision" and set(cal.thresholds) == set(load_taxonomy_labels())
    argv = ["--judge", str(calibrated / "tf"), "--input", str(calibrated / "rest.jsonl"), "--prefix", "j_", "--no-progress"]
    assert run_cli(label_cmd, [*argv, "--selective", str(cal_path), "--out", str(tmp_path / "s.jsonl")], capsys)[0] == 0
    assert run_cli(label_cmd, [*argv, "--out", str(tmp_path / "p.jsonl")], capsys)[0] == 0
    got, ref = pd.read_json(tmp_path / "s.jsonl", lines=True), pd.read_json(tmp_path / "p.jsonl", lines=True)
    cut = ref["j_label"].map(lambda c: cal.thresholds[c] if cal.thresholds[c] is not None else np.inf)
    kept = ref["j_confidence"] >= cut
    assert (got.loc[kept, "j_label"] == ref.loc[kept, "j_label"]).all() and (got.loc[~kept, "j_label"] == ESCALATE).all()
    never = [c for c, t in cal.thresholds.items() if t is None]
    assert not got["j_label"].isin(never).any()


def load_taxonomy_labels():
    from judge.core.taxonomy import load_taxonomy

    return load_taxonomy("chehbouni2024").labels


@pytest.mark.parametrize("argv, words", [
    (["--target", "1.5"], ["--target", "strictly between 0 and 1"]),
    (["--delta", "0"], ["--delta", "strictly between 0 and 1"]),
    (["--out", "{d}/cal.txt"], ["a .json file"]),
    (["--judge", "{d}/tf2"], ["no out-of-fold predictions", "--cv K"]),
    (["--judge", "rules"], ["carries no taxonomy", "--taxonomy"]),
    (["--input", "{d}/rest.jsonl"], ["label", "not found"]),
    (["--input", "{d}/rest.jsonl"], ["another judge", "label the calibration sample"]),
])
def test_calibrate_bad_inputs_one_line(calibrated, tmp_path, capsys, argv, words):
    import shutil

    d = tmp_path / "d"
    shutil.copytree(calibrated, d, ignore=shutil.ignore_patterns("*.lock"))
    base = {"--judge": str(d / "tf"), "--out": str(tmp_path / "c.json")}
    given = [a.replace("{d}", str(d)) for a in argv]
    for flag in ("--judge", "--out"):
        if flag not in given:
            given += [flag, base[flag]]
    if "--input" in given and "another judge" in words:
        # a file labelled by another judge: its manifest names tf2's fingerprint
        code, _, err = run_cli(label_cmd, ["--judge", str(d / "tf2"), "--input", str(d / "rest.jsonl"), "--no-progress",
                                           "--prefix", "j_", "--out", str(d / "by-tf2.jsonl")], capsys)
        assert code == 0, err
        given[given.index("--input") + 1] = str(d / "by-tf2.jsonl")
    code, _, err = run_cli(calibrate_cmd, given, capsys)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, err
