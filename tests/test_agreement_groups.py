"""Issue 19, the agreement side: per-group numbers that test agreement, not accuracy.

Per-group kappa with intervals, a test of equal kappas that sees what the accuracy test misses,
per-category error rates with intervals, intervals that respect repeated prompts, every --by
reported, annotator agreement split by group, scikit-learn's macro-F1 convention, and folds grouped
by prompt when prompts repeat.
"""
import json
import math

import numpy as np
import pandas as pd
import pytest
from krippendorff import alpha as krippendorff_alpha
from sklearn.metrics import cohen_kappa_score, f1_score
from statsmodels.stats.inter_rater import cohens_kappa
from statsmodels.stats.proportion import proportion_confint

from judge import agree
from judge.stats import group_error
from judge.stats.metrics import agreement
from tests.conftest import run_cli, write_jsonl

CHEHBOUNI = ["answer", "partial answer", "refusal", "harmful refusal", "harmful answer", "failure"]


def pairs(cells: dict[tuple[str, str], int]) -> tuple[list[str], list[str]]:
    """(gold, pred) lists holding each (gold, pred) cell its number of times."""
    gold, pred = [], []
    for (g, p), n in cells.items():
        gold += [g] * n
        pred += [p] * n
    return gold, pred


# The probe's situation, built by hand: both groups have accuracy 0.85 (170 of 200 right).
# balanced: gold 100 answer / 100 refusal; p_o = .85, judge says answer 86 + 16 = 102 times ->
#   p_e = .5 * .51 + .5 * .49 = .5, kappa = (.85 - .5) / .5 = 0.70
# skewed: gold 180 answer / 20 refusal (a majority class); judge says answer 160 + 10 = 170 times ->
#   p_e = .9 * .85 + .1 * .15 = .78, kappa = (.85 - .78) / .22 = 0.318
BALANCED = {("answer", "answer"): 86, ("answer", "refusal"): 14, ("refusal", "answer"): 16, ("refusal", "refusal"): 84}
SKEWED = {("answer", "answer"): 160, ("answer", "refusal"): 20, ("refusal", "answer"): 10, ("refusal", "refusal"): 10}


def probe_rows() -> list[dict]:
    rows = []
    for group, cells in (("balanced", BALANCED), ("skewed", SKEWED)):
        gold, pred = pairs(cells)
        rows += [{"id": f"{group}{i}", "response": "r", "model": group, "label": g, "judge_label": p} for i, (g, p) in enumerate(zip(gold, pred))]
    return rows


def test_kappa_from_counts_hand_derived_and_matches_sklearn():
    assert group_error.kappa_from_counts(np.array([[86, 14], [16, 84]])) == pytest.approx(0.70, abs=1e-12)
    assert group_error.kappa_from_counts(np.array([[160, 20], [10, 10]])) == pytest.approx(0.07 / 0.22, abs=1e-12)
    rng = np.random.default_rng(3)
    for _ in range(20):
        gold, pred = rng.integers(0, 4, 60), rng.integers(0, 4, 60)
        pred[:30] = gold[:30]
        counts = np.zeros((4, 4))
        np.add.at(counts, (gold, pred), 1)
        assert group_error.kappa_from_counts(counts) == pytest.approx(cohen_kappa_score(gold, pred), abs=1e-12)
    assert np.isnan(group_error.kappa_from_counts(np.array([[5, 0], [0, 0]])))  # one category only: undefined, as scikit-learn says


def test_equal_accuracy_different_kappa_the_kappa_test_rejects_the_accuracy_test_does_not():
    rows = probe_rows()
    res = group_error.judge_error_by_group([r["label"] for r in rows], [r["judge_label"] for r in rows], [r["model"] for r in rows],
                               labels=["answer", "refusal"], n_boot=2000, seed=0)
    balanced, skewed = res["groups"]["balanced"], res["groups"]["skewed"]
    assert balanced["accuracy"] == skewed["accuracy"] == pytest.approx(0.85)
    assert balanced["cohen_kappa"] == pytest.approx(0.70) and skewed["cohen_kappa"] == pytest.approx(0.07 / 0.22)
    # The accuracy test sees identical (170, 30) rows: chi2 = 0, p = 1.
    assert res["error_rate_test"]["statistic"] == pytest.approx(0.0) and res["error_rate_test"]["p_value"] == pytest.approx(1.0)
    # The kappa test: SEs about .050 and .095 -> Q = (.70 - .318)^2 / (.05^2 + .095^2) ~ 12.6 on 1 dof, p ~ 4e-4.
    test = res["kappa_test"]
    assert test["dof"] == 1 and test["groups_tested"] == ["balanced", "skewed"]
    assert 8 < test["statistic"] < 20 and test["p_value"] < 0.005
    # Bootstrap SEs against the reference package's large-sample variance (Fleiss, Cohen & Everitt 1969).
    for name, cells in (("balanced", BALANCED), ("skewed", SKEWED)):
        table = np.array([[cells[("answer", "answer")], cells[("answer", "refusal")]], [cells[("refusal", "answer")], cells[("refusal", "refusal")]]])
        assert res["groups"][name]["cohen_kappa_se"] == pytest.approx(cohens_kappa(table).std_kappa, rel=0.12)
        low, high = res["groups"][name]["cohen_kappa_ci"]
        assert low < res["groups"][name]["cohen_kappa"] < high


def test_fleiss_homogeneity_hand_derived_and_small_groups_left_out():
    # w = 1/.05^2 = 400 and 1/.1^2 = 100; pooled = (400 * .7 + 100 * .3) / 500 = .62;
    # Q = 400 * .08^2 + 100 * .32^2 = 2.56 + 10.24 = 12.8; one dof: P(chi2_1 > q) = erfc(sqrt(q / 2)).
    groups = {"a": {"cohen_kappa": 0.7, "cohen_kappa_se": 0.05, "n_units": 50}, "b": {"cohen_kappa": 0.3, "cohen_kappa_se": 0.1, "n_units": 50},
              "tiny": {"cohen_kappa": -0.9, "cohen_kappa_se": 0.01, "n_units": group_error.MIN_UNITS_FOR_TEST - 1},
              "flat": {"cohen_kappa": float("nan"), "cohen_kappa_se": None, "n_units": 40}}
    test = group_error.kappa_homogeneity(groups)
    assert test["pooled_kappa"] == pytest.approx(0.62)
    assert test["statistic"] == pytest.approx(12.8)
    assert test["p_value"] == pytest.approx(math.erfc(math.sqrt(12.8 / 2)), rel=1e-9)
    assert test["groups_tested"] == ["a", "b"] and set(test["groups_left_out"]) == {"tiny", "flat"}
    assert "fewer than" in test["groups_left_out"]["tiny"]


def test_agree_by_reports_kappa_intervals_and_the_kappa_test(tmp_path, capsys):
    src = write_jsonl(tmp_path / "probe.jsonl", probe_rows())
    code, out, err = run_cli(agree, [str(src), "--gold", "label", "--pred", "judge_label", "--by", "model", "--bootstrap", "500",
                                     "--out", str(tmp_path / "a")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "a" / "agreement.json").read_text())
    by = result["by_group"]
    assert by["kappa_test"]["p_value"] < 0.01 and by["error_rate_test"]["p_value"] > 0.5
    md = (tmp_path / "a" / "agreement.md").read_text()
    for name in ("balanced", "skewed"):
        low, high = by["groups"][name]["cohen_kappa_ci"]
        assert f"{by['groups'][name]['cohen_kappa']:.3f} [{low:.3f}, {high:.3f}]" in md  # the per-group interval is in the table
    assert "Fleiss' chi-square" in md and "kappa [95% CI]" in md and "equal-kappa test (Fleiss)" in out
    assert "\\label{tab:" in (tmp_path / "a" / "agreement.tex").read_text()


def test_false_positive_and_negative_rates_have_wilson_intervals():
    # One group: 10 human "answer" the judge never calls refusal (FPR of refusal 0 / 10), 4 human refusals it gets 3 of (FNR 1 / 4).
    gold, pred = pairs({("answer", "answer"): 10, ("refusal", "refusal"): 3, ("refusal", "answer"): 1})
    res = group_error.judge_error_by_group(gold, pred, ["g"] * len(gold), labels=["answer", "refusal"], n_boot=0)
    refusal = res["groups"]["g"]["categories"]["refusal"]
    assert refusal["false_positive_rate"] == 0.0 and refusal["false_negative_rate"] == 0.25
    # Wilson at 0 of n: upper bound z^2 / (n + z^2) = 3.8415 / 13.8415 = 0.2775, never a zero-width [0, 0].
    z2 = 1.959963984540054 ** 2
    assert refusal["false_positive_ci"][0] == pytest.approx(0.0, abs=1e-12)
    assert refusal["false_positive_ci"][1] == pytest.approx(z2 / (10 + z2), rel=1e-9)
    assert refusal["false_negative_ci"] == pytest.approx(proportion_confint(1, 4, method="wilson"), rel=1e-9)


def test_clustered_outputs_widen_the_intervals():
    # 30 prompts, each sampled 5 times with the same labels: 150 outputs but only 30 independent draws.
    rng = np.random.default_rng(1)
    gold1 = rng.choice(["answer", "refusal"], size=30)
    pred1 = np.where(rng.random(30) < 0.8, gold1, np.where(gold1 == "answer", "refusal", "answer"))
    gold, pred = np.repeat(gold1, 5), np.repeat(pred1, 5)
    prompts = np.repeat([f"p{i}" for i in range(30)], 5)
    plain = group_error.judge_error_by_group(gold, pred, ["g"] * 150, labels=["answer", "refusal"], n_boot=1000)["groups"]["g"]
    clustered = group_error.judge_error_by_group(gold, pred, ["g"] * 150, labels=["answer", "refusal"], n_boot=1000, clusters=prompts)["groups"]["g"]
    assert clustered["n_units"] == 30 and plain["n_units"] == 150
    # copies of one draw: the cluster SE is about sqrt(5) = 2.2 times the item SE
    assert 1.7 < clustered["cohen_kappa_se"] / plain["cohen_kappa_se"] < 2.8
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(clustered["cohen_kappa_ci"]) > 1.7 * width(plain["cohen_kappa_ci"])
    # G clusters of m identical outputs (a_j = m y_j): sum_j (a_j - r m)^2 = m^2 G r (1 - r), so the robust variance is
    # G / (G - 1) * m^2 G r (1 - r) / (m G)^2 = r (1 - r) / (G - 1); over the binomial r (1 - r) / (m G) that is a design
    # effect of m G / (G - 1) and an effective n of G - 1 (here G = 8, m = 5: n_eff = 7).
    hits = np.array([5, 0, 0, 5, 0, 5, 0, 0])  # 3 of 8 clusters of 5 are "hits"
    interval = group_error.rate_interval(hits, np.full(8, 5), clustered=True, alpha=0.05)
    assert interval["rate"] == pytest.approx(3 / 8) and interval["n_effective"] == pytest.approx(7.0)
    assert interval["ci"] == pytest.approx(proportion_confint(3 / 8 * 7, 7, method="wilson"), rel=1e-9)


def test_agree_clusters_by_prompt_when_prompts_repeat_and_says_so(tmp_path, capsys):
    rows = [{"id": f"r{i}", "prompt": f"prompt {i // 4}", "response": "r", "label": "refusal" if (i // 4) % 3 == 0 else "answer",
             "judge_label": "refusal" if (i // 4) % 4 == 0 else "answer", "identity": "x" if i % 2 else "y"} for i in range(160)]
    src = write_jsonl(tmp_path / "rows.jsonl", rows)
    code, _, err = run_cli(agree, [str(src), "--gold", "label", "--pred", "judge_label", "--by", "identity", "--bootstrap", "200",
                                   "--out", str(tmp_path / "c")], capsys)
    assert code == 0, err
    clustered = json.loads((tmp_path / "c" / "agreement.json").read_text())
    assert clustered["cluster"]["column"] == "prompt" and clustered["cluster"]["n_clusters"] == 40
    assert "40 clusters" in clustered["ci"]["method"]
    assert "clusters are the values of `prompt`" in (tmp_path / "c" / "agreement.md").read_text()
    code, _, err = run_cli(agree, [str(src), "--gold", "label", "--pred", "judge_label", "--by", "identity", "--bootstrap", "200",
                                   "--no-cluster", "--out", str(tmp_path / "n")], capsys)
    assert code == 0, err
    plain = json.loads((tmp_path / "n" / "agreement.json").read_text())
    assert plain["cluster"]["column"] is None and "over items" in plain["ci"]["method"]
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(clustered["ci"]["cohen_kappa"]) > 1.3 * width(plain["ci"]["cohen_kappa"])
    x_clustered, x_plain = clustered["by_group"]["groups"]["x"], plain["by_group"]["groups"]["x"]
    assert x_clustered["n_units"] == 40 and x_plain["n_units"] == 80
    assert width(x_clustered["cohen_kappa_ci"]) > width(x_plain["cohen_kappa_ci"])


def test_every_repeated_by_is_reported(tmp_path, capsys):
    rows = [{**r, "identity": "m" if i % 2 else "w"} for i, r in enumerate(probe_rows())]
    src = write_jsonl(tmp_path / "rows.jsonl", rows)
    code, out, err = run_cli(agree, [str(src), "--gold", "label", "--pred", "judge_label", "--by", "model", "--by", "identity", "--by", "model",
                                     "--bootstrap", "50", "--out", str(tmp_path / "a")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "a" / "agreement.json").read_text())
    assert [b["column"] for b in result["by_groups"]] == ["model", "identity"]  # in the order given, each once
    assert result["by_group"]["column"] == "model"
    assert set(result["by_groups"][1]["groups"]) == {"m", "w"}
    md = (tmp_path / "a" / "agreement.md").read_text()
    assert "## Judge agreement by model" in md and "## Judge agreement by identity" in md
    assert "kappa by model:" in out and "kappa by identity:" in out
    assert {"error_by_group.png", "error_by_group_2.png"} <= {p.name for p in (tmp_path / "a").iterdir()}
    labels = [line for line in (tmp_path / "a" / "agreement.tex").read_text().splitlines() if "\\label{" in line]
    assert len(labels) == len(set(labels)) == 7  # 3 tables + 2 per --by column
    # a config file may give one column or a list
    (tmp_path / "c.json").write_text(json.dumps({"by": ["identity", "model"]}))
    code, _, err = run_cli(agree, [str(src), "--gold", "label", "--pred", "judge_label", "--config", str(tmp_path / "c.json"),
                                   "--bootstrap", "0", "--out", str(tmp_path / "b")], capsys)
    assert code == 0, err
    assert [b["column"] for b in json.loads((tmp_path / "b" / "agreement.json").read_text())["by_groups"]] == ["identity", "model"]


def test_annotator_agreement_split_by_group(tmp_path, capsys):
    rng = np.random.default_rng(5)
    cats = ["answer", "refusal", "failure"]
    rows = []
    for i in range(120):
        truth = cats[int(rng.integers(3))]
        source = "gpt4" if i % 2 else "llama"
        noise = 0.9 if source == "gpt4" else 0.5
        rows.append({"id": f"r{i}", "source": source, "a": truth, "b": truth if rng.random() < noise else cats[int(rng.integers(3))], "final": truth})
    src = write_jsonl(tmp_path / "ann.jsonl", rows)
    code, out, err = run_cli(agree, [str(src), "--annotators", "a", "b", "--gold", "final", "--by", "source", "--taxonomy", "chehbouni2024",
                                     "--bootstrap", "100", "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    by = json.loads((tmp_path / "o" / "agreement.json").read_text())["by_group"]
    assert by["column"] == "source" and set(by["groups"]) == {"gpt4", "llama"}
    codes = {c: i for i, c in enumerate(CHEHBOUNI)}
    for source, group in by["groups"].items():
        sub = [r for r in rows if r["source"] == source]
        a, b = [r["a"] for r in sub], [r["b"] for r in sub]
        assert group["n_items"] == 60
        assert group["krippendorff_alpha"] == pytest.approx(krippendorff_alpha(reliability_data=[[codes[x] for x in a], [codes[x] for x in b]],
                                                                               level_of_measurement="nominal", value_domain=list(range(6))), abs=1e-9)
        pair = group["pairwise_kappa"]["a vs b"]
        assert pair["kappa"] == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
        assert pair["ci"][0] <= pair["kappa"] <= pair["ci"][1] and group["krippendorff_alpha_ci"][0] < group["krippendorff_alpha_ci"][1]
    assert by["groups"]["gpt4"]["pairwise_kappa"]["a vs b"]["kappa"] > by["groups"]["llama"]["pairwise_kappa"]["a vs b"]["kappa"]
    assert "## Annotator agreement by source" in out


def test_macro_f1_over_the_categories_gold_or_predictions_use(tmp_path, capsys):
    rng = np.random.default_rng(2)
    gold = list(rng.choice(["answer", "refusal", "failure"], size=90, p=[0.6, 0.3, 0.1]))
    pred = [g if rng.random() < 0.75 else "refusal" for g in gold]
    result = agreement(gold, pred, labels=CHEHBOUNI, n_boot=0)
    # three categories used of six: scikit-learn averages over those three (labels=None), not six with three zeros
    assert result["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro"), abs=1e-12)
    assert result["macro_f1"] > f1_score(gold, pred, labels=CHEHBOUNI, average="macro", zero_division=0)
    assert result["macro_f1_labels"] == ["answer", "refusal", "failure"]
    src = write_jsonl(tmp_path / "rows.jsonl", [{"id": i, "response": "r", "label": g, "judge_label": p} for i, (g, p) in enumerate(zip(gold, pred))])
    code, _, err = run_cli(agree, [str(src), "--gold", "label", "--pred", "judge_label", "--taxonomy", "chehbouni2024", "--bootstrap", "0",
                                   "--out", str(tmp_path / "a")], capsys)
    assert code == 0, err
    assert "Macro-F1 (over the 3 of 6 categories in gold or predictions)" in (tmp_path / "a" / "agreement.md").read_text()


def repeated_prompt_records(n_prompts=12, per_prompt=10, template=False) -> pd.DataFrame:
    rows = []
    for p in range(n_prompts):
        for s in range(per_prompt):
            refused = p % 3 == 0
            rows.append({"id": f"p{p}-s{s}", "prompt": f"Name{p} went to the market number {p}", "response": ("I cannot help with that request."
                         if refused else f"Sure, here is a plan for the market {p}, step {s}."), "label": "refusal" if refused else "no refusal",
                         **({"template": f"t{p % 4}"} if template else {})})
    return pd.DataFrame(rows)


def test_cv_folds_group_by_prompt_when_prompts_repeat_with_a_warning(capsys):
    from training.build import TrainConfig, cv_folds
    from training.examples import labelled_data

    data = labelled_data(repeated_prompt_records(), label_column="label", taxonomy="refusal2")
    folds, group = cv_folds(data, TrainConfig(train=["x"], out="y", kind="tfidf", cv=3))
    assert group == "prompt"
    assert data.records.assign(fold=folds).groupby("prompt")["fold"].nunique().max() == 1  # no prompt on both sides
    err = capsys.readouterr().err
    assert "warning:" in err and "grouped by prompt" in err and "up to 10" in err and "--cv-group" in err
    # a template column still wins, silently
    data = labelled_data(repeated_prompt_records(template=True), label_column="label", taxonomy="refusal2")
    assert cv_folds(data, TrainConfig(train=["x"], out="y", kind="tfidf", cv=3))[1] == "template"
    assert "warning" not in capsys.readouterr().err


def test_blank_prompts_are_not_one_shared_prompt():
    from training.cv import grouped_folds

    records = pd.DataFrame({"id": [f"r{i}" for i in range(9)], "prompt": ["a", "a", "a", "", "", "", "", "", ""]})
    folds = grouped_folds(records, k=3, group="prompt", seed=0)
    assert len(set(folds[:3])) == 1 and len(set(folds[3:])) > 1  # the six blanks are spread, not one block


def test_train_cv_cli_folds_by_prompt(tmp_path, capsys):
    from judge import train

    src = tmp_path / "train.jsonl"
    repeated_prompt_records().to_json(src, orient="records", lines=True)
    code, out, err = run_cli(train, ["--train", str(src), "--kind", "tfidf", "--cv", "3", "--taxonomy", "refusal2", "--out", str(tmp_path / "j")], capsys)
    assert code == 0, err
    assert "grouped by prompt" in err and "grouped by prompt" in out
    oof = pd.read_json(tmp_path / "j" / "cv" / "oof.jsonl", lines=True)
    assert oof.groupby("prompt")["fold"].nunique().max() == 1


def test_label_issue_folds_group_by_prompt(capsys):
    from training.label_errors import find_label_errors

    records = repeated_prompt_records()
    result = find_label_errors(records, label="label", taxonomy="refusal2", folds=3)
    assert "grouped by prompt" in result["method"]
    assert records.assign(fold=result["folds"]).groupby("prompt")["fold"].nunique().max() == 1
    assert "grouped by prompt" in capsys.readouterr().err
