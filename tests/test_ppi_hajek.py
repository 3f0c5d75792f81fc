"""The human-only column is the ratio (Hajek) estimator of each group's mean (issue 31, 8c): a proportion
whatever the design, checked by hand, against samplics' domain mean and a direct formula, and by a
simulation of coverage for samples that are random but not stratified by the group."""
import warnings

import numpy as np
import pytest

from judge.stats.ppi import POISSON, STRATIFIED, Design, group_rate, ppi_by_group


def test_hajek_hand_derived():
    # One group of 6 outputs, 3 of them labelled (independent inclusion):
    #   pi    w = 1/pi  y   (1 - pi) / pi^2
    #   0.5   2         1   2
    #   0.25  4         0   12
    #   0.5   2         1   2
    # Hajek: (2 + 0 + 2) / (2 + 4 + 2) = 0.5 (Horvitz-Thompson would say 4 / 6 = 0.667: sum w = 8, not N = 6).
    # Residuals e = y - 0.5 = (0.5, -0.5, 0.5): linearised variance (2 + 12 + 2) * 0.25 / 8^2 = 4 / 64 = 0.0625.
    # Agresti-Min: the largest weight 12 times half an observation each way at lambda 0 (1), / 8^2 = 0.1875;
    # se = sqrt(0.0625 + 0.1875) = 0.5, df = n - 1 = 2.
    y = np.array([1, 0, 1, 0, 0, 0], dtype=float)
    f = np.array([1, 0, 1, 1, 0, 0], dtype=float)
    labelled = np.array([True, True, True, False, False, False])
    pi = np.array([0.5, 0.25, 0.5, 0.5, 0.5, 0.5])
    design = Design.build(labelled, inclusion=pi)
    assert design.kind == POISSON
    r = group_rate(y, f, np.ones(6, dtype=bool), design)["human_only"]
    assert r["estimator"] == "Hajek" and r["clipped"] is None
    assert r["rate"] == pytest.approx(0.5, abs=1e-12)
    assert r["design_variance"] == pytest.approx(0.0625, abs=1e-12)
    assert r["se"] == pytest.approx(0.5, abs=1e-12) and r["df"] == 2
    assert 0 <= r["ci"][0] < 0.5 < r["ci"][1] <= 1


def test_hajek_matches_samplics_domain_mean_and_the_direct_formula():
    """Stratified sample whose strata cut across the groups: samplics' Taylor-linearised domain mean; independent
    inclusion: the ratio estimator's variance written out, sum (1 - pi) / pi^2 (y - R)^2 / (sum 1/pi)^2."""
    samplics = pytest.importorskip("samplics")
    rng = np.random.default_rng(11)
    size = 500
    strata = rng.choice(["s1", "s2", "s3"], size=size, p=[0.5, 0.3, 0.2])
    group = rng.choice(["a", "b"], size=size)
    y = (rng.random(size) < 0.35).astype(float)
    f = np.where(rng.random(size) < 0.8, y, 1 - y)
    labelled, pi = np.zeros(size, dtype=bool), np.zeros(size)
    for h, take in (("s1", 40), ("s2", 25), ("s3", 30)):
        members = np.flatnonzero(strata == h)
        labelled[rng.choice(members, size=take, replace=False)] = True
        pi[members] = take / len(members)
    design = Design.build(labelled, inclusion=pi, strata=strata)
    assert design.kind == STRATIFIED
    ours = group_rate(y, f, group == "a", design)["human_only"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # samplics announces it is archived
        est = samplics.TaylorEstimator(samplics.PopParam.mean)
        est.estimate(y[labelled], samp_weight=1 / pi[labelled], stratum=strata[labelled], domain=group[labelled],
                     fpc={h: 1 - pi[strata == h][0] for h in ("s1", "s2", "s3")})
    assert ours["rate"] == pytest.approx(float(est.point_est["a"]), abs=1e-12)
    assert ours["design_variance"] == pytest.approx(float(est.variance["a"]), rel=1e-9)

    # independent inclusion, unequal probabilities
    pi = np.where(f == 1, 0.5, 0.2)
    labelled = rng.random(size) < pi
    design = Design.build(labelled, inclusion=pi)
    ours = group_rate(y, f, group == "b", design)["human_only"]
    s = labelled & (group == "b")
    ratio = np.sum(y[s] / pi[s]) / np.sum(1 / pi[s])
    variance = np.sum((1 - pi[s]) / pi[s] ** 2 * (y[s] - ratio) ** 2) / np.sum(1 / pi[s]) ** 2
    assert ours["rate"] == pytest.approx(ratio, abs=1e-12)
    assert ours["design_variance"] == pytest.approx(variance, rel=1e-12)


def test_human_only_rates_are_proportions_in_a_sample_not_stratified_by_group():
    """Issue 31's case: a simple random sample of all outputs (pi = 1/3) gave human-only rates per group summing to
    0.83-1.08 over the categories, and 0.500 for a category 6 of the group's 10 labels hold."""
    rng = np.random.default_rng(5)
    size = 90
    groups = np.array(["asian"] * 30 + ["white"] * 60)
    judge = rng.choice(["answer", "refusal", "failure"], size=size)
    human = np.array([""] * size, dtype=object)
    asian = np.flatnonzero(groups == "asian")
    white = np.flatnonzero(groups == "white")
    human[asian[:10]] = ["answer"] * 6 + ["refusal"] * 4  # 10 asian labels (HT would divide by N = 30: 10 * 3 = 30)
    human[white[:17]] = rng.choice(["answer", "refusal", "failure"], size=17)  # 17 * 3 = 51, not 60
    pi = np.full(size, 1 / 3)
    result = ppi_by_group(judge, human, groups, categories=["answer", "refusal", "failure"], reference="white",
                          inclusion=pi)
    for g in ("asian", "white"):
        rates = [result["rates"][g][c]["human_only"]["rate"] for c in ("answer", "refusal", "failure")]
        assert sum(rates) == pytest.approx(1.0, abs=1e-12)
    assert result["rates"]["asian"]["answer"]["human_only"]["rate"] == pytest.approx(0.6, abs=1e-12)
    assert "Hajek" in result["method"]


def test_coverage_for_random_samples_not_stratified_by_group():
    """A fixed population of 3 groups; 300 independent-inclusion samples (pi 0.5 where the judge says yes, 0.2
    elsewhere: random, and not stratified by the group). Each group's Hajek human-only interval and the
    Horvitz-Thompson PPI interval cover the group's true rate at least 93% of the time (benchmarks/ppi_coverage.py
    measures the real data; this is the estimator's own check)."""
    rng = np.random.default_rng(2024)
    sizes, truth_rates, judge_error = (60, 100, 160), (0.2, 0.35, 0.5), (0.1, 0.2, 0.15)
    groups = np.repeat(np.arange(3), sizes)
    y = np.concatenate([(rng.random(n) < p).astype(float) for n, p in zip(sizes, truth_rates)])
    flip = rng.random(len(y)) < np.asarray(judge_error)[groups]
    f = np.where(flip, 1 - y, y)
    pi = np.where(f == 1, 0.5, 0.2)
    draws = 300
    labelled_draws = rng.random((draws, len(y))) < pi
    covered = {"human_only": np.zeros((draws, 3), bool), "ppi": np.zeros((draws, 3), bool)}
    for b in range(draws):
        design = Design.build(labelled_draws[b], inclusion=pi)
        for g in range(3):
            domain = groups == g
            true = y[domain].mean()
            r = group_rate(y, f, domain, design)
            for method in covered:
                low, high = r[method]["ci"]
                covered[method][b, g] = low <= true <= high
    for method, hits in covered.items():
        per_group = hits.mean(axis=0)
        assert (per_group >= 0.93).all(), (method, per_group)
