"""The label planner (judge.plan, judge.stats.planning) and the transport check (judge.transport): hand-derived
sample sizes, a vectorised simulation of the planned n against the target half-width, TOST verdicts on
constructed probes with a known bias, and the commands end to end."""

import json
import math

import numpy as np
import pytest
from scipy.stats import norm, t

from judge import plan as plan_command
from judge import report, transport
from judge.analysis.plan import PlanResult, pilot_from_confusion, pilot_from_records, plan_labels
from judge.analysis.transport import TransportResult, transport_check
from judge.stats.planning import FAIL, INCONCLUSIVE, PASS, paired_bias, probe_size, tost
from judge.stats.ppi import Design, design_rate
from tests.conftest import run_cli, write_jsonl

BIG = 10**5  # outputs per group: the finite-population correction is small (and in the hand loops too)


def _stated(p11, p10, p01, p00, *, outputs=BIG, scale=BIG, **extra):
    """A stated pilot whose counts are so large that half a count per cell changes nothing."""
    counts = {
        "judge_1_human_1": p11 * scale,
        "judge_1_human_0": p10 * scale,
        "judge_0_human_1": p01 * scale,
        "judge_0_human_0": p00 * scale,
    }
    return {"category": "refusal", "groups": {g: {"outputs": outputs, **counts, **extra} for g in ("a", "b")}}


def _by(result, design, method):
    return next(p for p in result.plans if p.design == design and p.method == method)


def _brute_n(s2, h, big=BIG):
    """The smallest n with t_{n-1} sqrt((1/n - 1/N) S^2 + (1 - n/N) / n^2) <= h: judge.stats.ppi's interval, by a
    plain loop (independent of the planner's vectorised bisection)."""
    n = 2
    while t.ppf(0.975, n - 1) * math.sqrt((1 / n - 1 / big) * s2 + (1 - n / big) / n**2) > h:
        n += 1
    return n


def test_human_only_random_n_for_one_rate_is_z2_p_q_over_h2():
    # human rate p = 0.3 in both groups (judge says yes on 0.3 with q1 = 0.9, q0 = 0.3 * 0.1 / 0.7 ... simpler:
    # joint P(f=1,y=1) = 0.27, P(f=1,y=0) = 0.03, P(f=0,y=1) = 0.03, P(f=0,y=0) = 0.67 -> p = 0.30).
    # Leading order n_g = z^2 p (1 - p) / h^2 = 1.95996^2 * 0.21 / 0.05^2 = 322.7; with t on n - 1 df and the
    # estimator's half pseudo-disagreement per cell ((1 - n/N) / n^2 added to the variance) the loop gives 328.
    pilot = pilot_from_confusion(_stated(0.27, 0.03, 0.03, 0.67))
    result = plan_labels(pilot, reference="b", half_width=0.05, gap_half_width=0.9, n_boot=0, methods=["human"])
    leading = norm.ppf(0.975) ** 2 * 0.21 / 0.05**2
    assert leading == pytest.approx(322.7, abs=0.1)
    n_g = _brute_n(0.21, 0.05)
    assert leading < n_g < leading * 1.03
    for design in ("random", "stratified", "neyman"):  # equal groups: Neyman's allocation is proportional too
        plan = _by(result, design, "human")
        assert plan.n == 2 * n_g, design  # two groups of equal size, each needing n_g
        assert plan.allocation == {"a": n_g, "b": n_g}
        assert plan.binding.startswith("rate")


def test_ppi_n_uses_the_variance_of_the_disagreements_and_gaps_add_both_groups():
    # PPI residual z = y - f: P(z = 1) = P(f=0, y=1) = 0.03, P(z = -1) = P(f=1, y=0) = 0.03, so
    # S^2 = 0.06 - 0^2 = 0.06 and n_g ~ 1.96^2 * 0.06 / 0.05^2 = 92.2 (t and pseudo-counts: the loop).
    pilot = pilot_from_confusion(_stated(0.27, 0.03, 0.03, 0.67))
    result = plan_labels(pilot, reference="b", half_width=0.05, gap_half_width=0.9, n_boot=0, methods=["ppi"])
    assert _by(result, "random", "ppi").n == 2 * _brute_n(0.06, 0.05)
    # the gap to +-0.05: both groups' variances add, so each group needs about twice as many (2 * 92.2 = 184.4
    # at leading order); with the pseudo-counts 2 (0.06 / n + 1 / n^2) <= (0.05 / 1.97)^2 gives n_g = 201
    result = plan_labels(pilot, reference="b", half_width=0.5, gap_half_width=0.05, n_boot=0, methods=["ppi"])
    plan = _by(result, "random", "ppi")
    assert plan.binding == "gap a - b"
    n = 2
    while t.ppf(0.975, 2 * (n - 1)) * math.sqrt(2 * ((1 / n - 1 / BIG) * 0.06 + (1 - n / BIG) / n**2)) > 0.05:
        n += 1  # Welch-Satterthwaite df of two equal variances: 2 (n - 1)
    assert n == 201 and plan.n == 2 * n


def test_vectorised_neyman_quotas_are_judge_data_samples():
    from judge.analysis.plan import capped_quotas_all, neyman_weights
    from judge.annotation.human_labels import capped_quotas

    sizes = np.array([50.0, 300.0, 20.0, 400.0])
    weights = neyman_weights(sizes, np.array([0.5, 0.05, 0.4, 0.01]))
    budgets = np.arange(0, 771)
    expected = np.stack([capped_quotas(weights, sizes, int(b)) for b in budgets])
    np.testing.assert_allclose(capped_quotas_all(weights, sizes, budgets), expected)


def test_pilot_uncertainty_widens_the_budget_and_the_conservative_budget_is_above_the_point_plan():
    pilot = pilot_from_confusion(_stated(0.27, 0.03, 0.03, 0.67, scale=100, outputs=5000))  # 100 pilot labels a group
    result = plan_labels(pilot, reference="b", half_width=0.05, n_boot=300, seed=1, methods=["ppi"])
    plan = _by(result, "random", "ppi")
    low, high = plan.n_interval
    assert low < plan.n_conservative <= high
    assert low < high


def test_model_estimand_out_of_reach_names_the_census_half_width():
    # design effect 3 over 1,000 outputs a group: the population term alone, 3 * 0.21 / 1000 = 6.3e-4, gives a
    # census half-width near 1.97 * sqrt(6.3e-4) = 0.049 for a rate, and sqrt(2) times that for a gap (0.07)
    stated = _stated(0.27, 0.03, 0.03, 0.67, outputs=1000, scale=1000, design_effect=3.0, clusters=100)
    pilot = pilot_from_confusion(stated)
    result = plan_labels(pilot, reference="b", half_width=0.06, gap_half_width=0.05, estimand="model", n_boot=0)
    plan = _by(result, "random", "human")
    assert plan.n is None and "out of reach" in plan.reason
    gap = next(tp for tp in plan.targets if tp.target == "gap a - b")
    assert gap.n is None and gap.census_half_width == pytest.approx(
        t.ppf(0.975, 198) * math.sqrt(2 * 3 * 0.21 / 1000), rel=0.01  # Welch df of two groups of 100 clusters
    )
    rate = next(tp for tp in plan.targets if tp.target == "rate a")
    assert rate.n is not None  # +-0.06 is reachable for one rate


def _population(rng, big, p11, p10, p01):
    """One group of ``big`` outputs with exactly these shares of (judge, human) cells."""
    n11, n10, n01 = round(p11 * big), round(p10 * big), round(p01 * big)
    f = np.r_[np.ones(n11 + n10), np.zeros(big - n11 - n10)]
    y = np.r_[np.ones(n11), np.zeros(n10), np.ones(n01), np.zeros(big - n11 - n10 - n01)]
    return f, y


def test_the_planned_n_drawn_and_estimated_gives_the_target_half_width_and_covers():
    rng = np.random.default_rng(7)
    big = 3000
    f, y = _population(rng, big, 0.20, 0.04, 0.05)
    rows = [{"id": i, "g": g, "judge": "refusal" if fi else "answer"} for g in ("a", "b") for i, fi in enumerate(f)]
    for r, yi in zip(rows, np.r_[y, y]):
        r["id"] = f"{r['g']}{r['id']}"
        r["human"] = None
    pilot_idx = rng.choice(len(rows), 300, replace=False)
    both_y = np.r_[y, y]
    for i in pilot_idx:
        rows[i]["human"] = "refusal" if both_y[i] else "answer"
    import pandas as pd

    pilot = pilot_from_records(pd.DataFrame(rows), group="g", judge="judge", human="human", category="refusal")
    result = plan_labels(pilot, reference="b", half_width=0.04, gap_half_width=1.0, n_boot=0, methods=["ppi"])
    n_g = int(round(_by(result, "stratified", "ppi").allocation["a"]))
    planned = next(tp for tp in _by(result, "stratified", "ppi").targets if tp.target == "rate a").planned_half_width
    # draw 4,000 simple random samples of n_g from group a at once, and compute judge.stats.ppi's estimate and
    # half-width for each (vectorised: the same formula as design_rate, checked on the first draw below)
    draws = 4000
    picks = np.argsort(rng.random((draws, big)), axis=1)[:, :n_g]
    r = y[picks] - f[picks]
    estimate = f.mean() + r.mean(axis=1)
    variance = (1 - n_g / big) * r.var(axis=1, ddof=1) / n_g + (1 - n_g / big) / n_g**2
    half = t.ppf(0.975, n_g - 1) * np.sqrt(variance)
    labelled = np.zeros(big, dtype=bool)
    labelled[picks[0]] = True
    one = design_rate(y, f, np.ones(big, dtype=bool), Design.build(labelled, groups=np.zeros(big), scored=np.ones(big, bool)))
    assert one["half_width"] == pytest.approx(half[0]) and one["rate"] == pytest.approx(estimate[0])
    assert half.mean() == pytest.approx(planned, rel=0.05)
    assert half.mean() == pytest.approx(0.04, rel=0.1)
    coverage = np.mean(np.abs(estimate - y.mean()) <= half)
    assert 0.93 <= coverage <= 0.975


# -- the transport check -------------------------------------------------------------------------


def _probe(n, judge_yes_human_no, judge_no_human_yes, both_yes):
    """A probe of n outputs: f and y agree except on the stated disagreements."""
    f = np.zeros(n)
    y = np.zeros(n)
    f[:both_yes] = y[:both_yes] = 1
    k = both_yes
    f[k : k + judge_yes_human_no] = 1
    k += judge_yes_human_no
    y[k : k + judge_no_human_yes] = 1
    return f, y


def test_paired_bias_hand_derived():
    # 100 outputs, 6 judge-yes/human-no, 2 judge-no/human-yes: bias (6 - 2) / 100 = 0.04; Agresti-Min: cells
    # 6.5 and 2.5, n 102: se = sqrt(9 - 4^2 / 102) / 102 = sqrt(8.8431) / 102 = 0.029155
    bias, se, n = paired_bias(*_probe(100, 6, 2, 20))
    assert (bias, n) == (pytest.approx(0.04), 100)
    assert se == pytest.approx(math.sqrt(9 - 16 / 102) / 102)


@pytest.mark.parametrize(
    "n, yes_no, no_yes, verdict",
    [
        (400, 4, 4, PASS),  # bias 0, se ~ 0.007: the 90% interval +-0.012 lies inside +-0.05
        (400, 80, 0, FAIL),  # bias 0.2, se ~ 0.02: wholly beyond 0.05
        (20, 1, 0, INCONCLUSIVE),  # bias 0.05 on 20 outputs: the interval straddles the margin
        (20, 0, 0, INCONCLUSIVE),  # no disagreement, but 20 outputs cannot show |bias| < 0.05 (se = 1 / 22)
    ],
)
def test_tost_verdicts_on_constructed_probes(n, yes_no, no_yes, verdict):
    bias, se, _ = paired_bias(*_probe(n, yes_no, no_yes, n // 4))
    assert tost(bias, se, 0.05)["verdict"] == verdict


def test_probe_size_hand_derived():
    # disagreement 0.1, margin 0.05, alpha 0.05, power 0.8 at bias 0 (both one-sided tests at beta/2):
    # (z_0.95 + z_0.9)^2 * 0.1 / 0.05^2 = (1.6449 + 1.2816)^2 * 40 = 8.5641 * 40 = 342.6 -> 343
    assert probe_size(0.1, 0.05) == 343
    assert np.isinf(probe_size(0.1, 0.05, bias=0.06))


def test_transport_check_per_group_and_the_report_names_a_fail(tmp_path, capsys):
    rows = []
    for g, (yes_no, no_yes) in {"a": (2, 2), "b": (90, 0)}.items():
        f, y = _probe(400, yes_no, no_yes, 100)
        rows += [
            {"id": f"{g}{i}", "g": g, "judge_label": "refusal" if fi else "answer", "label": "refusal" if yi else "answer"}
            for i, (fi, yi) in enumerate(zip(f, y))
        ]
    path = write_jsonl(tmp_path / "probe.jsonl", rows)
    code, out, err = run_cli(
        transport,
        [str(path), "--group", "g", "--human", "label", "--category", "refusal", "--margin", "0.05", "--out",
         str(tmp_path / "tr")],
        capsys,
    )
    assert code == 0, err
    result = TransportResult.from_dict(json.loads((tmp_path / "tr" / "transport.json").read_text()))
    assert (result.groups["a"].verdict, result.groups["b"].verdict, result.verdict) == (PASS, FAIL, FAIL)
    assert result.groups["b"].bias == pytest.approx(90 / 400)
    assert (tmp_path / "tr" / "manifest.json").exists() and "FAIL" in out
    code, out, err = run_cli(
        report,
        [str(path), "--label", "judge_label", "--group", "g", "--reference", "a", "--transport",
         str(tmp_path / "tr" / "transport.json"), "--out", str(tmp_path / "rep")],
        capsys,
    )
    assert code == 0, err
    md = (tmp_path / "rep" / "disparity.md").read_text()
    assert "transport FAIL for b" in md and "transport FAIL for b" in err and "for a (" not in md
    bad = tmp_path / "bad.json"
    bad.write_text('{"x": 1}')
    code, _, err = run_cli(
        report, [str(path), "--label", "judge_label", "--group", "g", "--transport", str(bad), "--out", str(tmp_path / "r2")], capsys
    )
    assert code == 2 and "not a judge.transport result" in err


def test_plan_command_end_to_end_and_its_json_reads_back(tmp_path, capsys):
    rng = np.random.default_rng(3)
    rows = []
    for g, rate in (("a", 0.3), ("b", 0.1)):
        for i in range(400):
            f = rng.random() < rate
            y = f if rng.random() < 0.9 else not f
            rows.append({"id": f"{g}{i}", "prompt": f"p{g}{i // 2}", "g": g, "judge_label": "refusal" if f else "answer",
                         "label": ("refusal" if y else "answer") if i % 8 == 0 else None, "conf": 0.6 + 0.4 * rng.random(),
                         "oof": ("refusal" if (f if rng.random() < 0.85 else not f) else "answer") if i % 8 == 0 else None})
    path = write_jsonl(tmp_path / "pilot.jsonl", rows)
    out_dir = tmp_path / "plan"
    argv = [str(path), "--group", "g", "--human", "label", "--category", "refusal", "--reference", "b",
            "--confidence-column", "conf", "--oof", "oof", "--n-boot", "50", "--margin", "0.05", "--out", str(out_dir)]
    code, out, err = run_cli(plan_command, argv, capsys)
    assert code == 0, err
    data = json.loads((out_dir / "plan.json").read_text())
    result = PlanResult.from_dict(data)
    assert result.to_dict() == data
    assert {(p.design, p.method) for p in result.plans if p.planned} == {
        (d, m) for d in ("random", "stratified", "neyman", "uncertain") for m in ("human", "ppi", "crossfit")
    }
    assert all(p.n is not None and sum(p.allocation.values()) == pytest.approx(p.n, abs=1) for p in result.plans)
    assert result.groups["a"].probe_size > 0 and "Budget per design" in out
    assert json.loads((out_dir / "manifest.json").read_text())["command"] == "judge.plan"
    # the model's rate, clustered by prompt (two outputs a prompt)
    code, out, err = run_cli(plan_command, [*argv[:-2], "--estimand", "model", "--out", str(tmp_path / "m")], capsys)
    assert code == 0, err
    model = PlanResult.from_dict(json.loads((tmp_path / "m" / "plan.json").read_text()))
    assert model.groups["a"].n_clusters == 200
    # the human labels as a file joined on id give the same plan
    write_jsonl(tmp_path / "human.jsonl", [{"id": r["id"], "label": r["label"]} for r in rows if r["label"]])
    no_human = write_jsonl(tmp_path / "judged.jsonl", [{k: v for k, v in r.items() if k != "label"} for r in rows])
    joined = [str(no_human), *argv[1:4], str(tmp_path / "human.jsonl"), *argv[5:-1], str(tmp_path / "j")]
    code, _, err = run_cli(plan_command, joined, capsys)
    assert code == 0, err
    again = json.loads((tmp_path / "j" / "plan.json").read_text())
    assert [p["n"] for p in again["plans"]] == [p["n"] for p in data["plans"]]
    # a rerun into the same folder without --overwrite is refused in one line
    code, _, err = run_cli(plan_command, argv, capsys)
    assert code == 2 and "\n" not in err.strip()


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"groups": {"a": {}}}', "2 or more groups"),
        ('{"category": "refusal", "groups": {"a": {"outputs": 10, "judge_1_human_1": -1}, "b": {}}}', "must be a count"),
        ('{"category": "refusal", "groups": {"a": {"outputs": 1, "judge_1_human_1": 5, "judge_0_human_0": 5}, '
         '"b": {"outputs": 10, "judge_0_human_0": 5}}}', "fewer than the pilot's counts"),
        ("not json", "not valid JSON"),
    ],
)
def test_bad_confusion_files_are_refused_in_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "c.json"
    path.write_text(content)
    code, _, err = run_cli(plan_command, ["--confusion", str(path), "--reference", "a", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_plan_flags_are_checked(tmp_path, capsys):
    code, _, err = run_cli(plan_command, ["--reference", "a", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "either a pilot file" in err
    code, _, err = run_cli(
        plan_command, ["x.jsonl", "--reference", "a", "--half-width", "0", "--out", str(tmp_path / "o")], capsys
    )
    assert code == 2 and "--half-width" in err
