"""Per-group numbers a reviewer can trust when groups are small or outputs are clustered (issue 19, the
report side): one test group per numbered point, each with the arithmetic by hand in a comment and,
where it has the function, the reference package on the same numbers."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import t as student_t

from judge import label, report, train
from judge.render.disparity import ppi_figure
from judge.stats import clustered
from judge.stats.multiplicity import Family
from judge.stats.ppi import Design, design_rate, group_rate, ppi_by_group
from tests.conftest import run_cli, write_jsonl


def _report(tmp_path, capsys, rows, *extra, out="rep"):
    (tmp_path / "in").mkdir(exist_ok=True)
    src = write_jsonl(tmp_path / "in" / "labelled.jsonl", rows)
    code, stdout, err = run_cli(report, [str(src), "--label", "judge_label", "--group", "identity", "--taxonomy", "refusal2",
                                         "--out", str(tmp_path / out), *extra], capsys)
    assert code == 0, err
    return json.loads((tmp_path / out / "disparity.json").read_text()), stdout, err


# -- 1. degenerate intervals reported as estimates ---------------------------------------------------

def test_human_only_interval_is_exact_and_cannot_collapse():
    # 6 labels of 60, none positive: the old human-only interval was a Wald interval around 0. Now
    # Clopper-Pearson on 6 (independent outputs, so the effective size is 6): upper = 1 - 0.025^(1/6) = 0.459258.
    # 6 of 6 positive: [0.025^(1/6), 1] = [0.540742, 1].
    labelled = np.arange(60) < 6
    design = Design.build(labelled, groups=np.zeros(60), scored=np.ones(60, dtype=bool))
    f, domain = np.zeros(60), np.ones(60, dtype=bool)
    none = group_rate(np.zeros(60), f, domain, design)["human_only"]
    assert none["rate"] == 0 and none["ci"] == pytest.approx((0.0, 1 - 0.025 ** (1 / 6)), abs=1e-6)
    every = group_rate(labelled.astype(float), f, domain, design)["human_only"]
    assert every["ci"] == pytest.approx((0.025 ** (1 / 6), 1.0), abs=1e-6)
    from statsmodels.stats.proportion import proportion_confint

    assert none["ci"] == pytest.approx(proportion_confint(0, 6, method="beta"), abs=1e-9)


def test_the_rule_counts_labels_and_clusters():
    # 6 labels in 4 prompts (two prompts twice): 6 >= 5 labels but 4 < 5 clusters -> not estimable when clustered.
    labelled = np.zeros(60, dtype=bool)
    labelled[[0, 1, 3, 4, 6, 9]] = True  # prompts of 3 outputs: 0, 0, 1, 1, 2, 3
    clusters = np.arange(60) // 3
    design = Design.build(labelled, groups=np.zeros(60), scored=np.ones(60, dtype=bool))
    y, f, domain = labelled.astype(float), labelled.astype(float), np.ones(60, dtype=bool)
    assert group_rate(y, f, domain, design)["estimable"]
    clustered_rate = group_rate(y, f, domain, design, clusters=clusters)
    assert not clustered_rate["estimable"] and clustered_rate["n_clusters_human"] == 4
    assert "only 4 clusters" in clustered_rate["reason"]


def _population(n_small: int, *, seed: int = 0) -> list[dict]:
    """Two identities: white with 20 human labels, asian with ``n_small``; 40 outputs each."""
    rng = np.random.default_rng(seed)
    rows = []
    for g, n_human in (("white", 20), ("asian", n_small)):
        for i in range(40):
            truth = "refusal" if rng.random() < 0.3 else "no refusal"
            rows.append({"id": f"{g}{i}", "response": ".", "identity": g, "judge_label": truth if rng.random() < 0.85 else "refusal",
                         "human": truth if i < n_human else ""})
    return rows


def test_a_group_below_the_rule_is_marked_everywhere_never_dropped(tmp_path, capsys):
    # 3 human labels: the old report called it estimable (n >= 2) and printed its PPI rate as an estimate.
    result, out, err = _report(tmp_path, capsys, _population(3), "--human", "human")
    asian = result["ppi"]["rates"]["asian"]
    assert all(not r["estimable"] for r in asian.values()) and "3 human labels (the rule needs 5)" in asian["refusal"]["reason"]
    assert result["ppi"]["not_estimable"] == ["asian"] and result["ppi"]["rates"]["white"]["refusal"]["estimable"]
    assert "warning: group 'asian' has too few human labels" in err
    md = (tmp_path / "rep" / "disparity.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| asian ") and "refusal " in line and "not estimable" in line)
    assert row.count("not estimable") == 2  # human only and PPI; the judge-only rate stays
    assert "at least 5 labels" in md and "not estimable" in (tmp_path / "rep" / "disparity.tex").read_text()
    # what is printed agrees with the JSON: every estimable group's row has numbers, every other says so
    for g, by_cat in result["ppi"]["rates"].items():
        line = next(x for x in md.splitlines() if x.startswith(f"| {g} ") and "| refusal " in x)
        assert ("not estimable" in line) == (not by_cat["refusal"]["estimable"])


def test_ppi_figure_keeps_groups_without_an_estimate():
    # A group with one human label has no human-only or PPI entry at all; it used to vanish from ppi_rates.png.
    judge = ["refusal", "no refusal"] * 10
    human = ["refusal", "no refusal"] * 4 + [""] * 2 + ["refusal"] + [""] * 9
    groups = ["white"] * 10 + ["asian"] * 10
    ppi = ppi_by_group(judge, human, groups, categories=["refusal", "no refusal"], reference="white")
    assert ppi["not_estimable"] == ["asian"] and "human_only" not in ppi["rates"]["asian"]["refusal"]
    fig = ppi_figure(ppi, ["refusal"], group_column="identity")
    ax = fig.axes[0]
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks == ["asian\n(not estimable)", "white"]
    texts = [t.get_text() for t in ax.texts]
    assert "PPI: not estimable" in texts and "human only: not estimable" in texts


def test_main_rates_table_marks_tiny_groups(tmp_path, capsys):
    rows = [{"id": f"w{i}", "response": ".", "identity": "white", "judge_label": "refusal" if i % 3 else "no refusal"} for i in range(12)]
    rows += [{"id": f"a{i}", "response": ".", "identity": "asian", "judge_label": "refusal"} for i in range(3)]
    result, out, err = _report(tmp_path, capsys, rows)
    assert not result["rates"]["asian"]["refusal"]["estimable"] and result["not_estimable"] == {"asian": "3 labelled outputs (the rule needs 5)"}
    assert "warning: group 'asian' is not estimable" in err
    row = next(line for line in out.splitlines() if line.startswith("| asian "))
    assert "not estimable" in row and "1.000 [" not in row


# -- 2. estimates outside [0, 1] and outside their own interval --------------------------------------

def test_a_negative_ppi_estimate_is_clipped_into_its_interval_and_said():
    # One group of N = 10, a simple random sample of n = 5 (pi = 0.5). The judge says yes on outputs 0-2,
    # the humans say no everywhere; labelled: 0-4, so r = y - f = -1, -1, -1, 0, 0.
    # theta = mean f + sum(r / pi) / N = 0.3 + (-3 / 0.5) / 10 = -0.3: below 0.
    # v = (1 - n/N) s_r^2 / n + pseudo = 0.5 * 0.3 / 5 + 2 / 100 = 0.05 (s_r^2 = (3 - 9/5) / 4 = 0.3; the largest
    # weight (1 - pi) / pi^2 = 2, one pseudo-disagreement at lambda 1), se = 0.223607; t(4) = 2.776445:
    # raw interval -0.3 -/+ 0.620831 = [-0.920831, 0.320831] -> [0, 0.320831], estimate 0, inside it.
    f = np.zeros(10)
    f[:3] = 1
    labelled = np.arange(10) < 5
    design = Design.build(labelled, groups=np.zeros(10), scored=np.ones(10, dtype=bool))
    r = group_rate(np.zeros(10), f, np.ones(10, dtype=bool), design)["ppi"]
    assert r["rate_unclipped"] == pytest.approx(-0.3) and r["rate"] == 0.0
    assert r["se"] == pytest.approx(math.sqrt(0.05), abs=1e-12)
    assert r["ci"] == pytest.approx((0.0, -0.3 + student_t.ppf(0.975, 4) * math.sqrt(0.05)), abs=1e-9)
    assert r["ci"][0] <= r["rate"] <= r["ci"][1] and r["clipped"] == "estimate -0.300 clipped to 0"


def test_a_gap_interval_stays_in_minus_one_to_one():
    # g: 10 outputs, the judge says yes on all, 5 labelled yes; reference: no everywhere, 5 labelled no.
    # Each PPI rate has residuals 0, so only the pseudo term: se^2 = 2 / 10^2 = 0.02 (weight (1 - 0.5) / 0.5^2 = 2).
    # gap = 1 - 0 = 1, se = sqrt(0.04) = 0.2, Welch-Satterthwaite df = 0.04^2 / (2 * 0.02^2 / 4) = 8, t(8) = 2.306004:
    # 1 -/+ 0.461201 = [0.538799, 1.461201] -> [0.538799, 1] with the clipping in the note. The old gap used z
    # and no clipping: [0.608, 1.392].
    judge = ["yes"] * 10 + ["no"] * 10
    human = ["yes"] * 5 + [""] * 5 + ["no"] * 5 + [""] * 5
    res = ppi_by_group(judge, human, ["g"] * 10 + ["ref"] * 10, categories=["yes"], reference="ref")
    gap = res["gaps"]["g"]["yes"]["ppi"]
    assert gap["gap"] == pytest.approx(1.0) and gap["se"] == pytest.approx(0.2) and gap["df"] == pytest.approx(8.0)
    assert gap["ci"] == pytest.approx((1 - student_t.ppf(0.975, 8) * 0.2, 1.0), abs=1e-9)
    assert gap["clipped"] == "interval clipped at 1"


# -- 3. many comparisons, no correction --------------------------------------------------------------

def test_holm_by_hand_and_statsmodels():
    # p = 0.01, 0.04, 0.03, 0.005. Holm: sorted 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06,
    # 0.04 * 1 = 0.04 -> max(0.06, 0.04) = 0.06 (monotone). In the original order: 0.03, 0.06, 0.06, 0.02.
    p = [0.01, 0.04, 0.03, 0.005]
    forced = Family(m=4, adjusted=True)
    assert forced.adjust_p(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    from statsmodels.stats.multitest import multipletests

    assert forced.adjust_p(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
    # the default: on above 5 comparisons, off at 5 or fewer and with --no-adjust
    assert not Family.of(5).adjusted and Family.of(6).adjusted and not Family.of(54, enabled=False).adjusted
    assert Family.of(54).interval_alpha == pytest.approx(0.05 / 54)


def _seven_groups(seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for g in ["a", "b", "c", "d", "e", "f", "white"]:
        for i in range(60):
            truth = "refusal" if rng.random() < (0.5 if g == "a" else 0.2) else "no refusal"
            rows.append({"id": f"{g}{i}", "response": ".", "identity": g, "judge_label": truth if rng.random() < 0.9 else "no refusal",
                         "human": truth if i < 30 else ""})
    return rows


def test_gap_table_of_more_than_five_comparisons_is_adjusted_by_default(tmp_path, capsys):
    result, out, _ = _report(tmp_path, capsys, _seven_groups(), "--human", "human", "--reference", "white")
    ppi = result["ppi"]
    # 6 groups x 2 categories = 12 gaps: Bonferroni at alpha / 12, Holm p-values
    assert ppi["gap_intervals"]["adjusted"] and ppi["gap_intervals"]["m"] == 12
    a = ppi["gaps"]["a"]["refusal"]["ppi"]
    t_adj = student_t.ppf(1 - 0.05 / 12 / 2, a["df"])
    assert a["ci_adjusted"] == pytest.approx((max(-1, a["gap"] - t_adj * a["se"]), min(1, a["gap"] + t_adj * a["se"])), abs=1e-12)
    assert a["ci_adjusted"][1] - a["ci_adjusted"][0] > a["ci"][1] - a["ci"][0]
    from statsmodels.stats.multitest import multipletests

    raw = [ppi["gaps"][g][c]["ppi"]["p_value"] for g in ppi["gaps"] for c in ("no refusal", "refusal")]
    holm = [ppi["gaps"][g][c]["ppi"]["p_adjusted"] for g in ppi["gaps"] for c in ("no refusal", "refusal")]
    assert holm == pytest.approx(list(multipletests(raw, method="holm")[1]))
    assert "simultaneous intervals over the table's m = 12 comparisons" in out and "p (PPI, Holm)" in out
    shown = next(line for line in out.split("## Gap to white")[1].splitlines() if line.startswith("| a ") and "| refusal " in line)
    assert f"[{a['ci_adjusted'][0]:.3f}, {a['ci_adjusted'][1]:.3f}]" in shown
    # rate ratios: 6 groups x 2 categories = 12, Bonferroni intervals on the log scale (Katz), as scipy gives them at 1 - 0.05/12
    from scipy.stats.contingency import relative_risk

    assert result["rate_ratio_intervals"]["adjusted"] and result["rate_ratio_intervals"]["m"] == 12
    ra, rw = result["rates"]["a"]["refusal"], result["rates"]["white"]["refusal"]
    ref = relative_risk(ra["count"], ra["n"], rw["count"], rw["n"]).confidence_interval(1 - 0.05 / 12)
    ratio = result["rate_ratios"]["a"]["refusal"]
    assert (ratio["ci_low"], ratio["ci_high"]) == pytest.approx((ref.low, ref.high), rel=1e-9)


def test_no_adjust_gives_marginal_intervals(tmp_path, capsys):
    result, out, _ = _report(tmp_path, capsys, _seven_groups(), "--human", "human", "--reference", "white", "--no-adjust")
    a = result["ppi"]["gaps"]["a"]["refusal"]["ppi"]
    assert not result["ppi"]["gap_intervals"]["adjusted"] and a["ci_adjusted"] == pytest.approx(a["ci"])
    assert "95% marginal intervals and unadjusted p-values (--no-adjust)" in out


# -- 4. outputs treated as independent when they are not ---------------------------------------------

def test_cr1_variance_on_three_clusters_by_hand_and_statsmodels():
    # y = 1, 1 | 0, 0, 1 | 0 in clusters A, B, C: mean 0.5; centred cluster sums A: 0.5 + 0.5 = 1,
    # B: -0.5 - 0.5 + 0.5 = -0.5, C: -0.5. CR1 = G / (G - 1) * sum u^2 / n^2 = 1.5 * 1.5 / 36 = 0.0625.
    y = np.array([1, 1, 0, 0, 1, 0], dtype=float)
    c = np.array([0, 0, 1, 1, 1, 2])
    assert clustered.cr1_cov(y, c) == pytest.approx(0.0625, abs=1e-15)
    import statsmodels.api as sm

    fit = sm.OLS(y, np.ones((6, 1))).fit(cov_type="cluster", cov_kwds={"groups": c})
    assert float(fit.bse[0]) ** 2 == pytest.approx(0.0625, abs=1e-12)  # its correction (G/(G-1)) (N-1)/(N-K) is G/(G-1) here
    # The clustered Wilson interval: deff = 0.0625 / (0.25 / 5) = 1.25, effective n = 6 / 1.25 = 4.8, and the t quantile
    # with G - 1 = 2 df (4.302653) in place of z: Wilson(2.4 of 4.8, z = 4.302653).
    from statsmodels.stats.proportion import proportion_confint

    z = student_t.ppf(0.975, 2)
    centre, half = (0.5 + z**2 / 9.6) / (1 + z**2 / 4.8), z / (1 + z**2 / 4.8) * math.sqrt(0.25 / 4.8 + z**2 / (4 * 4.8**2))
    assert clustered.proportion(y, c)["ci"] == pytest.approx((centre - half, centre + half), abs=1e-9)
    from scipy.stats import norm

    assert clustered.proportion(y, c)["ci"] == pytest.approx(proportion_confint(2.4, 4.8, alpha=2 * norm.sf(z), method="wilson"), abs=1e-9)


def test_clustered_ppi_variance_by_hand():
    # Six outputs in three prompts (0, 0 | 1, 1 | 2, 2), one group, labelled 0, 2, 4 (simple random, pi = 0.5).
    # f = 1 1 0 0 1 0; y on the labelled: 1, 1, 0, so r = y - f = 0, 1, -1 (mean 0).
    # theta = mean f + sum(r / pi) / N = 0.5 + 0 = 0.5.
    # Scores: f - mean f = .5 .5 -.5 -.5 .5 -.5; labelled (r - rbar) / pi = 0, 2, -2 (3 labelled clusters of 3: scale 1).
    # Cluster sums: 1, -1 + 2 = 1, 0 - 2 = -2 -> sum of squares 6; CR1 = 3/2 * 6 / 36 = 0.25.
    # Plus one pseudo-disagreement at weight (1 - .5) / .5^2 = 2: 2 / 36. se = sqrt(0.25 + 0.055556) = 0.552771, t(2).
    f = np.array([1, 1, 0, 0, 1, 0], dtype=float)
    y = np.array([1, 0, 1, 0, 0, 0], dtype=float)
    labelled = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
    design = Design.build(labelled, groups=np.zeros(6), scored=np.ones(6, dtype=bool))
    r = design_rate(y, f, np.ones(6, dtype=bool), design, lam=1.0, clusters=np.array([0, 0, 1, 1, 2, 2]))
    assert r["rate"] == pytest.approx(0.5) and r["design_variance"] == pytest.approx(0.25)
    assert r["se"] == pytest.approx(math.sqrt(0.25 + 2 / 36), abs=1e-12) and r["df"] == 2
    assert r["half_width"] == pytest.approx(student_t.ppf(0.975, 2) * math.sqrt(0.25 + 2 / 36), abs=1e-12)


def test_rao_scott_sees_through_duplicated_outputs():
    # Each output copied 3 times into one cluster: Pearson's X^2 triples (the same proportions, 3 x n), while the
    # design-corrected F is the one of the original (singleton) data: X^2 / tr(Delta), tr(Delta) = q n / (n - 1).
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 3, 60), rng.integers(0, 3, 60)
    once = clustered.rao_scott(rows, cols, np.arange(60))
    thrice = clustered.rao_scott(np.repeat(rows, 3), np.repeat(cols, 3), np.repeat(np.arange(60), 3))
    assert thrice["pearson"] == pytest.approx(3 * once["pearson"])
    assert once["statistic"] == pytest.approx(once["pearson"] * 59 / 60 / 4) and once["df_num"] == pytest.approx(4)
    assert thrice["statistic"] == pytest.approx(once["statistic"]) and thrice["p_value"] == pytest.approx(once["p_value"])
    assert thrice["mean_design_effect"] == pytest.approx(3 * 60 / 59)
    from scipy.stats import chi2_contingency

    table = np.zeros((3, 3))
    np.add.at(table, (rows, cols), 1)
    assert once["pearson"] == pytest.approx(chi2_contingency(table, correction=False).statistic)


def _repeated_prompts() -> list[dict]:
    """3 samples per prompt, and the samples of a prompt agree: the paper's design at its most correlated."""
    rng = np.random.default_rng(3)
    rows = []
    for g in ("white", "muslim"):
        for p in range(20):
            lab = "refusal" if rng.random() < (0.4 if g == "muslim" else 0.2) else "no refusal"
            rows += [{"id": f"{g}{p}s{s}", "prompt": f"{g} prompt {p}", "template": f"t{p % 5}", "response": ".", "identity": g,
                      "judge_label": lab, "human": lab if p < 8 else ""} for s in range(3)]
    return rows


def test_report_clusters_by_the_prompt_when_it_repeats(tmp_path, capsys):
    rows = _repeated_prompts()
    result, out, err = _report(tmp_path, capsys, rows, "--human", "human")
    assert result["clusters"]["column"] == "prompt" and result["clusters"]["default"]
    assert "by prompt (the default, because prompt repeats: 40 distinct for 120 outputs" in out
    rs = result["chi_square"]["rao_scott"]
    assert rs["n_clusters"] == 40 and rs["mean_design_effect"] > 2 and "Rao-Scott design-corrected test" in out
    independent, *_ = _report(tmp_path, capsys, rows, "--human", "human", "--no-cluster", out="independent")
    r, r0 = result["rates"]["muslim"]["refusal"], independent["rates"]["muslim"]["refusal"]
    # the whole sample of a prompt agrees: 60 outputs are worth 20, and the interval widens accordingly
    assert (r["ci_high"] - r["ci_low"]) > 1.5 * (r0["ci_high"] - r0["ci_low"])
    p, p0 = result["ppi"]["rates"]["muslim"]["refusal"]["ppi"], independent["ppi"]["rates"]["muslim"]["refusal"]["ppi"]
    assert p["df"] == 7 and p0["df"] == 23  # 8 labelled prompts vs 24 labelled outputs
    assert p["half_width"] > p0["half_width"] and result["ppi"]["clustered"] and not independent["ppi"]["clustered"]
    assert independent["chi_square"].get("rao_scott") is None


def test_cluster_by_a_template_shared_across_groups_pairs_the_gap(tmp_path, capsys):
    rows = _repeated_prompts()
    result, out, _ = _report(tmp_path, capsys, rows, "--cluster", "template", "--reference", "white")
    assert result["clusters"]["column"] == "template" and "by template (--cluster)" in out
    # The judge-only gap's variance by hand: v_g + v_r - 2 cov, cov from the clusters both groups share.
    frame = pd.DataFrame(rows)
    a, b = frame[frame.identity == "muslim"], frame[frame.identity == "white"]
    ya, yb = (a.judge_label == "refusal").to_numpy(float), (b.judge_label == "refusal").to_numpy(float)
    codes = clustered.codes(frame.template)
    ca, cb = codes[a.index], codes[b.index]
    va, vb, cov = clustered.cr1_cov(ya, ca), clustered.cr1_cov(yb, cb), clustered.cross_cov(ya, ca, yb, cb)
    ua = np.bincount(ca, weights=ya - ya.mean(), minlength=5)
    ub = np.bincount(cb, weights=yb - yb.mean(), minlength=5)
    assert cov == pytest.approx(5 / 4 * np.sum(ua * ub) / 60**2)
    ra, rb = result["rates"]["muslim"]["refusal"], result["rates"]["white"]["refusal"]
    assert ra["variance"] == pytest.approx(va) and rb["variance"] == pytest.approx(vb)
    # the rate ratio's log variance by the delta method, with the shared templates' covariance
    se = math.sqrt(va / ra["rate"] ** 2 + vb / rb["rate"] ** 2 - 2 * cov / (ra["rate"] * rb["rate"]))
    ratio = result["rate_ratios"]["muslim"]["refusal"]
    df = clustered.satterthwaite([va / ra["rate"] ** 2, vb / rb["rate"] ** 2], [4, 4])
    assert math.log(ratio["ci_high"]) - math.log(ratio["ratio"]) == pytest.approx(student_t.ppf(0.975, df) * se, rel=1e-9)


# -- 6. a report on the judge's own training rows ----------------------------------------------------

def test_report_splits_out_the_judges_training_rows(tmp_path, capsys):
    rng = np.random.default_rng(4)
    rows = []
    for i in range(60):
        refuses = rng.random() < 0.4
        rows.append({"id": f"r{i}", "prompt": f"p{i}", "identity": ["white", "muslim"][i % 2], "label": "refusal" if refuses else "no refusal",
                     "response": "I cannot help with that request." if refuses else f"Sure, here is plan {i}."})
    (tmp_path / "in").mkdir()
    write_jsonl(tmp_path / "in" / "train.jsonl", rows[:30])
    everything = write_jsonl(tmp_path / "in" / "all.jsonl", rows)
    code, _, err = run_cli(train, ["--train", str(tmp_path / "in" / "train.jsonl"), "--kind", "tfidf", "--taxonomy", "refusal2",
                                   "--out", str(tmp_path / "judge")], capsys)
    assert code == 0, err
    code, _, err = run_cli(label, ["--judge", str(tmp_path / "judge"), "--input", str(everything), "--prefix", "judge_", "--no-progress",
                                   "--out", str(tmp_path / "labelled.jsonl")], capsys)
    assert code == 0, err
    code, out, err = run_cli(report, [str(tmp_path / "labelled.jsonl"), "--label", "judge_label", "--group", "identity", "--taxonomy", "refusal2",
                                      "--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    assert "warning: 30 of the 60 outputs are the judge's own training rows (judge)" in err
    split = json.loads((tmp_path / "rep" / "disparity.json").read_text())["training_rows"]
    assert split["n_training_rows"] == 30 and split["n_outputs"] == 60
    white = split["rates"]["white"]
    assert white["training rows"]["refusal"]["n"] == 15 and white["not trained on"]["refusal"]["n"] == 15
    labelled = pd.read_json(tmp_path / "labelled.jsonl", lines=True)
    held = labelled[(labelled.identity == "white") & ~labelled.id.isin([r["id"] for r in rows[:30]])]
    assert white["not trained on"]["refusal"]["rate"] == pytest.approx((held.judge_label == "refusal").mean())
    assert "## The judge's own training rows vs the rest" in out and "white / training rows" in out
