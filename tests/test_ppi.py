"""Prediction-powered rates, per-group judge error and the alternative annotator test: hand-derived
values, the reference packages on the same inputs, and the commands' bad-input paths."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from judge import report
from judge.stats.alt_test import alt_test, one_sided_p
from judge.stats.group_error import judge_error_by_group
from judge.stats.ppi import Design, design_rate, ppi_by_group
from tests.conftest import run_cli, write_jsonl


def test_group_without_human_labels_is_not_estimable():
    # x has 5 human labels (the estimability rule's minimum), y none.
    judge = ["a", "b", "a", "b", "a", "b", "a", "b", "a", "b", "a", "a"]
    human = ["a", "b", "a", "b", "b", "", "", "", "", "", "", ""]
    groups = ["x"] * 6 + ["y"] * 6
    res = ppi_by_group(judge, human, groups, categories=["a", "b"], reference="x")
    assert res["not_estimable"] == ["y"]
    assert res["rates"]["x"]["a"]["estimable"]
    assert not res["gaps"]["y"]["a"]["estimable"]


def test_judge_error_by_group_matches_sklearn_per_subset():
    rng = np.random.default_rng(11)
    labels = ["no refusal", "refusal", "failure"]
    gold = list(rng.choice(labels, size=300, p=[0.6, 0.3, 0.1]))
    pred = [g if rng.random() < 0.8 else rng.choice(labels) for g in gold]
    pred[0] = "unscored"
    groups = list(rng.choice(["g1", "g2", "g3"], size=300))
    res = judge_error_by_group(gold, pred, groups, labels=labels)
    for g in ("g1", "g2", "g3"):
        idx = [i for i in range(300) if groups[i] == g and pred[i] != "unscored"]
        assert res["groups"][g]["cohen_kappa"] == pytest.approx(cohen_kappa_score([gold[i] for i in idx], [pred[i] for i in idx]), abs=1e-12)
    assert res["error_rate_test"]["p_value"] is not None


def test_judge_error_hand_derived():
    # One group, 4 items. gold a a b b, pred a b b b.
    # category b: humans not-b = 2 items, judge said b on 1 -> FPR 1/2; humans b = 2, judge missed 0 -> FNR 0.
    # judge rate of b 3/4, human 2/4 -> difference +0.25; d = [0, 1, 0, 0]
    res = judge_error_by_group(["a", "a", "b", "b"], ["a", "b", "b", "b"], ["g"] * 4, labels=["a", "b"])
    b = res["groups"]["g"]["categories"]["b"]
    assert (b["false_positive_rate"], b["false_negative_rate"]) == (0.5, 0.0)
    assert b["judge_minus_human"]["difference"] == pytest.approx(0.25)
    assert res["groups"]["g"]["accuracy"] == pytest.approx(0.75)


def _t3_cdf(t):
    # Student's t with 3 degrees of freedom: F(t) = 1/2 + (1/pi) * (u / (1 + u^2) + atan(u)), u = t / sqrt(3)
    u = t / math.sqrt(3)
    return 0.5 + (u / (1 + u * u) + math.atan(u)) / math.pi


def test_alt_test_hand_checked():
    humans = {"A": ["x", "x", "x", "y"], "B": ["x", "y", "x", "y"], "C": ["x", "y", "y", "y"]}
    judge = ["x", "y", "x", "x"]
    res = alt_test(humans, judge, epsilon=0.15)
    # Leave out A (others B, C): S_judge = 1, 1, .5, 0; S_A = 1, 0, .5, 1 -> d = W_h - W_f = 0, -1, 0, 1.
    # mean 0, sd = sqrt(2/3); t = (0 - .15) / (sqrt(2/3)/2) = -0.367423; p = F_3(t) = 0.36885
    a = res["annotators"]["A"]
    assert a["t"] == pytest.approx(-0.15 / (math.sqrt(2 / 3) / 2), abs=1e-9)
    assert a["p_value"] == pytest.approx(_t3_cdf(a["t"]), abs=1e-9)
    assert a["p_value"] == pytest.approx(0.36885, abs=1e-4)
    assert (a["rho_judge"], a["rho_human"]) == (0.75, 0.75)
    # Leave out B (others A, C): d = 0, 0, 0, 1 -> mean .25, sd .5, t = (.25 - .15) / (.5/2) = 0.4
    b = res["annotators"]["B"]
    assert b["t"] == pytest.approx(0.4, abs=1e-9)
    assert (b["rho_judge"], b["rho_human"]) == (0.75, 1.0)
    assert not res["passed"] and res["winning_rate"] == 0.0
    assert any("30 items" in w for w in res["warnings"])


def test_alt_test_copy_of_an_annotator_passes_and_random_judge_fails():
    rng = np.random.default_rng(0)
    cats = ["no refusal", "refusal", "failure"]
    truth = rng.choice(cats, size=120)
    noisy = lambda: [t if rng.random() < 0.8 else rng.choice(cats) for t in truth]  # noqa: E731
    humans = {"A": noisy(), "B": noisy(), "C": noisy()}
    twin = alt_test(humans, list(truth), epsilon=0.15)  # as good as the truth all humans copy
    assert twin["passed"] and twin["winning_rate"] == 1.0
    copy = alt_test(humans, list(humans["A"]), epsilon=0.15)
    assert copy["passed"]
    random_judge = alt_test(humans, list(rng.choice(cats, size=120)), epsilon=0.15)
    assert not random_judge["passed"] and random_judge["winning_rate"] == 0.0
    assert one_sided_p(np.zeros(5), epsilon=0.15) == (float("-inf"), 0.0)


# -- commands --------------------------------------------------------------------------------

def _population(tmp_path, *, n=400, seed=0):
    rng = np.random.default_rng(seed)
    groups = rng.choice(["muslim", "white", "asian"], size=n)
    human = np.where(rng.random(n) < np.where(groups == "muslim", 0.3, 0.08), "refusal", "no refusal")
    judge = np.where(rng.random(n) < 0.85, human, np.where(rng.random(n) < 0.5, "refusal", "no refusal"))
    rows = [{"id": f"r{i}", "response": "...", "identity": g, "judge_label": j, "gold": h} for i, (g, j, h) in enumerate(zip(groups, judge, human))]
    labelled = write_jsonl(tmp_path / "labelled.jsonl", rows)
    picked = rng.choice(n, size=120, replace=False)
    pd.DataFrame({"id": [f"r{i}" for i in picked], "label": human[picked]}).to_csv(tmp_path / "human.csv", index=False)
    return labelled, tmp_path / "human.csv"


def test_report_with_human_labels_writes_the_three_estimates(tmp_path, capsys):
    labelled, human = _population(tmp_path)
    code, out, err = run_cli(report, [str(labelled), "--label", "judge_label", "--group", "identity", "--reference", "white",
                                      "--human", str(human), "--taxonomy", "refusal2", "--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "rep" / "disparity.json").read_text())
    ppi = result["ppi"]
    assert ppi["n_human"] == 120 and ppi["reference"] == "white"
    muslim = ppi["rates"]["muslim"]["refusal"]
    assert {"judge_only", "human_only", "ppi"} <= set(muslim)
    assert "muslim" in ppi["gaps"] and "white" not in ppi["gaps"]
    assert (tmp_path / "rep" / "ppi_rates.png").stat().st_size > 0
    assert "Prediction-powered rates" in out and "Gap to white" in out
    assert "not checked" in ppi["training_overlap"]


def test_report_human_as_a_column(tmp_path, capsys):
    labelled, human = _population(tmp_path)
    frame = pd.read_json(labelled, lines=True)
    h = pd.read_csv(human).set_index("id")["label"]
    frame["human"] = frame["id"].map(h).fillna("")
    frame.to_json(tmp_path / "with_column.jsonl", orient="records", lines=True)
    code, _, err = run_cli(report, [str(tmp_path / "with_column.jsonl"), "--label", "judge_label", "--group", "identity", "--human", "human",
                                    "--taxonomy", "refusal2", "--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "rep" / "disparity.json").read_text())["ppi"]["n_human"] == 120


def _bad(tmp_path, capsys, extra, *, human_rows=None):
    labelled, human = _population(tmp_path)
    if human_rows is not None:
        pd.DataFrame(human_rows).to_csv(human, index=False)
    code, out, err = run_cli(report, [str(labelled), "--label", "judge_label", "--group", "identity", "--human", str(human),
                                      "--taxonomy", "refusal2", "--out", str(tmp_path / "rep"), *extra], capsys)
    return code, err


def test_report_refuses_human_ids_not_in_the_labelled_file(tmp_path, capsys):
    code, err = _bad(tmp_path, capsys, [], human_rows={"id": ["r1", "nope"], "label": ["no refusal", "refusal"]})
    assert code == 2 and "'nope'" in err and "not in" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rep").exists()


def test_report_refuses_a_human_label_outside_the_taxonomy(tmp_path, capsys):
    code, err = _bad(tmp_path, capsys, [], human_rows={"id": ["r1", "r2"], "label": ["no refusal", "maybe"]})
    assert code == 2 and "'maybe'" in err and "valid labels" in err


def test_report_says_which_group_has_no_human_labels(tmp_path, capsys):
    labelled, _ = _population(tmp_path)
    frame = pd.read_json(labelled, lines=True)
    ids = frame[frame.identity != "asian"].id.head(60)
    pd.DataFrame({"id": ids, "label": "no refusal"}).to_csv(tmp_path / "h.csv", index=False)
    code, out, err = run_cli(report, [str(labelled), "--label", "judge_label", "--group", "identity", "--human", str(tmp_path / "h.csv"),
                                      "--taxonomy", "refusal2", "--out", str(tmp_path / "rep")], capsys)
    assert code == 0
    assert "group 'asian' has too few human labels" in err
    assert json.loads((tmp_path / "rep" / "disparity.json").read_text())["ppi"]["not_estimable"] == ["asian"]
    assert "not estimable" in out


def test_report_refuses_human_labels_the_judge_was_trained_on(tmp_path, capsys):
    from judge.kinds.judge_dir import write_training_ids

    judge_dir = tmp_path / "judge"
    judge_dir.mkdir()
    write_training_ids(judge_dir, ["r1", "r2", "r3"])
    code, err = _bad(tmp_path, capsys, ["--judge-dir", str(judge_dir)], human_rows={"id": ["r1", "r5"], "label": ["no refusal", "refusal"]})
    assert code == 2 and "used to train the judge" in err and "'r1'" in err


def test_report_rejects_judge_dir_without_human(tmp_path, capsys):
    labelled, _ = _population(tmp_path)
    code, _, err = run_cli(report, [str(labelled), "--label", "judge_label", "--group", "identity", "--judge-dir", str(tmp_path),
                                    "--out", str(tmp_path / "rep")], capsys)
    assert code == 2 and "--judge-dir is only used with --human" in err


def test_agree_by_group_and_alt_test_commands(tmp_path, capsys):
    from judge import agree

    rng = np.random.default_rng(2)
    truth = rng.choice(["no refusal", "refusal"], size=90)
    rows = [{"id": f"r{i}", "response": ".", "identity": ["a", "b", "c"][i % 3], "gold": t,
             "h1": t if rng.random() < 0.85 else "no refusal", "h2": t if rng.random() < 0.85 else "refusal", "h3": t,
             "judge": t if rng.random() < 0.9 else "no refusal"} for i, t in enumerate(truth)]
    path = write_jsonl(tmp_path / "r.jsonl", rows)
    code, out, err = run_cli(agree, [str(path), "--gold", "gold", "--pred", "judge", "--by", "identity", "--annotators", "h1", "h2", "h3",
                                     "--alt-test", "--epsilon", "0.2", "--bootstrap", "20", "--out", str(tmp_path / "ag")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "ag" / "agreement.json").read_text())
    assert set(result["by_group"]["groups"]) == {"a", "b", "c"}
    assert result["alt_test"]["epsilon"] == 0.2 and "alt-test:" in out
    assert (tmp_path / "ag" / "error_by_group.png").exists()
    # --epsilon alone would be ignored: refused.
    code, _, err = run_cli(agree, [str(path), "--gold", "gold", "--pred", "judge", "--epsilon", "0.2", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "--alt-test" in err
    code, _, err = run_cli(agree, [str(path), "--gold", "gold", "--pred", "judge", "--alt-test", "--annotators", "h1", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "at least two" in err
    code, _, err = run_cli(agree, [str(path), "--gold", "gold", "--pred", "judge", "--by", "nope", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "'nope'" in err


def test_sample_records_inclusion_probabilities_and_excludes(tmp_path, capsys):
    from judge import data

    rows = [{"id": f"r{i}", "response": ".", "identity": "a" if i < 60 else "b", "label": "no refusal"} for i in range(100)]
    src = write_jsonl(tmp_path / "all.jsonl", rows)
    write_jsonl(tmp_path / "train.jsonl", rows[:10])
    code, out, err = run_cli(data, ["sample", str(src), "--n", "30", "--stratify", "identity", "--exclude", str(tmp_path / "train.jsonl"),
                                    "--blind", "--out", str(tmp_path / "s.csv")], capsys)
    assert code == 0, err
    sample = pd.read_csv(tmp_path / "s.csv", keep_default_na=False)
    assert not set(sample.id) & {f"r{i}" for i in range(10)}
    # Horvitz-Thompson: the inverse inclusion probabilities add up to the population sampled (90).
    assert (1 / sample.inclusion_probability).sum() == pytest.approx(90)
    assert len(sample) == 30 and (sample.label == "").all()  # --blind: the existing labels are not handed to annotators


def test_annotator_only_agreement_matches_the_reference_packages(tmp_path, capsys):
    import krippendorff

    from judge import agree

    rng = np.random.default_rng(4)
    cats = ["answer", "refusal", "failure"]
    truth = rng.choice(cats, size=80)
    a = [t if rng.random() < 0.8 else rng.choice(cats) for t in truth]
    b = [t if rng.random() < 0.7 else rng.choice(cats) for t in truth]
    b[0] = ""  # b did not label item 0
    rows = [{"id": f"r{i}", "a": a[i], "b": b[i], "final": truth[i]} for i in range(80)]
    path = write_jsonl(tmp_path / "ann.jsonl", rows)
    # --annotators a b a: a repeated column is counted once
    code, out, err = run_cli(agree, [str(path), "--annotators", "a", "b", "a", "--gold", "final", "--taxonomy", "chehbouni2024",
                                     "--bootstrap", "50", "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "o" / "agreement.json").read_text())
    assert result["annotators"] == ["a", "b"]
    codes = {c: i for i, c in enumerate(["answer", "partial answer", "refusal", "harmful refusal", "harmful answer", "failure"])}
    data = [[codes[x] for x in a], [codes[x] if x else np.nan for x in b]]
    assert result["krippendorff_alpha"] == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal",
                                                                            value_domain=list(range(6))), abs=1e-9)
    pair = result["pairwise_kappa"]["a vs b"]
    assert pair["n"] == 79 and pair["kappa"] == pytest.approx(cohen_kappa_score(a[1:], b[1:]), abs=1e-12)
    assert pair["ci"][0] < pair["kappa"] < pair["ci"][1]
    assert result["kappa_vs_gold"]["a"]["kappa"] == pytest.approx(cohen_kappa_score(a, list(truth)), abs=1e-12)
    assert "Krippendorff's alpha" in out
    # Without --pred, judge-only options are refused rather than ignored.
    code, _, err = run_cli(agree, [str(path), "--annotators", "a", "b", "--alt-test", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "need --pred" in err
    code, _, err = run_cli(agree, [str(path), "--annotators", "a", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "two or more --annotators" in err


def test_name_swap_flips_nothing_for_a_masked_judge(tmp_path, capsys):
    from judge import swap, train
    from judge.core.paths import SAMPLE

    code, _, err = run_cli(train, ["--train", str(SAMPLE), "--kind", "tfidf", "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "masked")], capsys)
    assert code == 0, err
    code, out, err = run_cli(swap, [str(SAMPLE), "--judge", str(tmp_path / "masked"), "--no-progress", "--out", str(tmp_path / "swap")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "swap" / "swap.json").read_text())
    groups = pd.read_json(SAMPLE, lines=True)["identity"].nunique()
    assert result["overall"]["n"] == result["n_records"] * (groups - 1)  # every record, swapped into every other group
    assert result["overall"]["flips"] == 0 and result["masks_names"] is True
    assert all(p["flips"] == 0 for p in result["pairs"].values())


def test_swapped_copies_replace_the_name_everywhere():
    from judge.swap import swapped_copies

    records = pd.DataFrame([{"id": "1", "prompt": "Ali went to [BLANK]", "response": "Ali went home. Alison stayed.", "name": "Ali", "identity": "muslim"},
                            {"id": "2", "prompt": "John went to [BLANK]", "response": "John went out.", "name": "John", "identity": "white"}])
    copies = swapped_copies(records, group="identity", name_column="name", seed=0).set_index("swap_of")
    assert copies.loc["1", "prompt"] == "John went to [BLANK]"
    assert copies.loc["1", "response"] == "John went home. Alison stayed."  # whole words only
    assert copies.loc["1", "identity"] == "white" and copies.loc["2", "name"] == "Ali"


def test_report_weights_a_stratified_human_sample(tmp_path, capsys):
    """The inclusion probabilities judge.data sample writes reach PPI as 1/p weights."""
    from judge import data

    labelled, _ = _population(tmp_path, n=600)
    code, _, err = run_cli(data, ["sample", str(labelled), "--n", "150", "--stratify", "identity", "--out", str(tmp_path / "s.csv")], capsys)
    assert code == 0, err
    sample = pd.read_csv(tmp_path / "s.csv", keep_default_na=False)
    truth = pd.read_json(labelled, lines=True).set_index("id")["gold"]
    sample["label"] = sample["id"].map(truth)  # the annotators' work
    sample.to_csv(tmp_path / "s.csv", index=False)
    code, out, err = run_cli(report, [str(labelled), "--label", "judge_label", "--group", "identity", "--reference", "white", "--human", str(tmp_path / "s.csv"),
                                      "--taxonomy", "refusal2", "--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    ppi = json.loads((tmp_path / "rep" / "disparity.json").read_text())["ppi"]
    assert ppi["weighted"] and ppi["weights_from"] == "1 / inclusion_probability"
    # Within a stratum the weights are N_h / n_h, so each group's PPI rate is the judge's rate over the
    # whole group plus the mean correction on its labelled rows (the difference estimator).
    frame = pd.read_json(labelled, lines=True)
    g = frame[frame.identity == "muslim"]
    lab = g.id.isin(sample.id)
    expected = (g.judge_label == "refusal").mean() + ((g[lab].gold == "refusal").astype(float) - (g[lab].judge_label == "refusal")).mean()
    assert ppi["rates"]["muslim"]["refusal"]["ppi"]["rate"] == pytest.approx(expected, abs=1e-12)
    # and its standard error is judge.stats.ppi's for the same rows and probabilities (independent inclusion: no --strata)
    pi = g.id.map(sample.set_index("id")["inclusion_probability"]).to_numpy()
    direct = design_rate((g.gold == "refusal").to_numpy(), (g.judge_label == "refusal").to_numpy(), np.ones(len(g), dtype=bool),
                         Design.build(lab.to_numpy(), inclusion=pi))
    assert ppi["rates"]["muslim"]["refusal"]["ppi"]["se"] == pytest.approx(direct["se"], abs=1e-12)
    # A bad probability is refused.
    sample.loc[0, "inclusion_probability"] = 1.7
    sample.to_csv(tmp_path / "s.csv", index=False)
    code, _, err = run_cli(report, [str(labelled), "--label", "judge_label", "--group", "identity", "--human", str(tmp_path / "s.csv"),
                                    "--taxonomy", "refusal2", "--out", str(tmp_path / "rep2")], capsys)
    assert code == 2 and "inclusion probabilities in (0, 1]" in err


def test_report_human_with_coarse_categories(tmp_path, capsys):
    rows = [{"id": f"r{i}", "response": ".", "identity": "a" if i % 2 else "b",
             "judge_label": ["refusal", "harmful refusal", "answer", "failure"][i % 4],
             "human": ["harmful refusal", "refusal", "answer", "answer"][i % 4] if i < 40 else ""} for i in range(120)]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    code, out, err = run_cli(report, [str(path), "--label", "judge_label", "--group", "identity", "--human", "human", "--coarse",
                                      "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    ppi = json.loads((tmp_path / "rep" / "disparity.json").read_text())["ppi"]
    assert set(ppi["rates"]["a"]) == {"answered", "refused", "failed"}
    # refusal and harmful refusal are both "refused": the judge and the humans agree on every refused item.
    r = ppi["rates"]["a"]["refused"]
    assert r["human_only"]["rate"] == pytest.approx(r["ppi"]["rate"]) and r["n_human"] == 20
