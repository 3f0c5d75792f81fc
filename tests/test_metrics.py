"""Agreement and disparity metrics against hand-derived values and the reference libraries."""
import math

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from judge.core.taxonomy import UNSCORED, Taxonomy
from judge.stats.disparity import category_rates, disparity, wilson_interval
from judge.stats.metrics import agreement, bootstrap_ci, cohen_kappa, krippendorff_alpha, per_class_scores

GOLD = ["a", "a", "b", "b"]
PRED = ["a", "b", "b", "b"]


def test_kappa_hand_derived():
    # p_o = 3/4. Marginals: gold a=.5 b=.5, pred a=.25 b=.75 -> p_e = .5*.25 + .5*.75 = .5.
    # kappa = (.75 - .5) / (1 - .5) = 0.5
    assert cohen_kappa(GOLD, PRED, labels=["a", "b"]) == pytest.approx(0.5, abs=1e-12)


def test_alpha_hand_derived():
    # Coincidences (2 coders, weight 1/(m-1)=1): units (a,a) o_aa=2; (a,b) o_ab=o_ba=1; (b,b),(b,b) o_bb=4.
    # n_a = 3, n_b = 5, n = 8. D_o = 2/8; D_e = 2*3*5/(8*7) = 30/56.
    # alpha = 1 - (2/8)/(30/56) = 1 - 14/30 = 16/30
    assert krippendorff_alpha([GOLD, PRED], labels=["a", "b"]) == pytest.approx(16 / 30, abs=1e-12)


def test_alpha_missing_values_are_skipped():
    # The third unit has one rating only: not pairable, so alpha equals alpha without it.
    with_missing = krippendorff_alpha([["a", "b", "a", "b"], ["a", "b", None, "a"]], labels=["a", "b"])
    without = krippendorff_alpha([["a", "b", "b"], ["a", "b", "a"]], labels=["a", "b"])
    assert with_missing == pytest.approx(without, abs=1e-12)


def test_matches_reference_libraries_on_random_labels():
    rng = np.random.default_rng(7)
    labels = ["answer", "refusal", "harmful refusal", "failure", "partial answer"]
    gold = list(rng.choice(labels, size=500, p=[0.6, 0.2, 0.1, 0.05, 0.05]))
    pred = [g if rng.random() < 0.75 else rng.choice(labels) for g in gold]
    result = agreement(gold, pred, labels=labels, n_boot=50, seed=1)
    assert result["cohen_kappa"] == pytest.approx(cohen_kappa_score(gold, pred), abs=1e-9)
    codes = {l: i for i, l in enumerate(labels)}
    expected_alpha = krippendorff.alpha(
        reliability_data=[[codes[x] for x in gold], [codes[x] for x in pred]], level_of_measurement="nominal"
    )
    assert result["krippendorff_alpha"] == pytest.approx(expected_alpha, abs=1e-9)
    low, high = result["ci"]["cohen_kappa"]
    assert low < result["cohen_kappa"] < high


def test_absent_class_keeps_its_row_and_column():
    scores = per_class_scores(GOLD, PRED, labels=["a", "b", "c"])
    assert scores["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # a: precision 1/1, recall 1/2 -> f1 = 2*1*.5/1.5 = 2/3; b: precision 2/3, recall 1 -> f1 = .8
    assert scores["a"]["f1"] == pytest.approx(2 / 3)
    assert scores["b"]["f1"] == pytest.approx(0.8)
    result = agreement(GOLD, PRED, labels=["a", "b", "c"], n_boot=0)
    assert result["confusion"]["matrix"] == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 0]]
    # macro-F1 over the classes gold or predictions use (scikit-learn's convention; c is in neither): (2/3 + .8) / 2
    assert result["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert result["macro_f1_labels"] == ["a", "b"]


def test_unscored_excluded_and_counted():
    result = agreement(["a", "a", "b", "b", "b"], ["a", "b", "b", "b", UNSCORED], labels=["a", "b"], n_boot=0)
    assert result["n"] == 5 and result["n_unscored"] == 1 and result["unscored_rate"] == pytest.approx(0.2)
    assert result["cohen_kappa"] == pytest.approx(0.5)  # the four scored items are GOLD/PRED above
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["accuracy_unscored_as_wrong"] == pytest.approx(3 / 5)
    assert result["confusion"]["matrix"][1] == [0, 2, 1]  # the unscored item shows in its own column


def test_all_unscored_reports_instead_of_crashing():
    result = agreement(["a", "b"], [UNSCORED, UNSCORED], labels=["a", "b"], n_boot=10)
    assert result["n_unscored"] == 2 and result["unscored_rate"] == 1.0
    assert math.isnan(result["cohen_kappa"]) and result["per_class"]["a"]["support"] == 0
    assert result["confusion"]["matrix"] == [[0, 0, 1], [0, 0, 1]]


def test_annotator_statistics():
    gold = ["a", "a", "b", "b"]
    result = agreement(gold, PRED, labels=["a", "b"], annotators={"h1": gold, "h2": PRED}, n_boot=0)
    ann = result["annotators"]
    assert ann["kappa_vs_gold"]["h1"] == pytest.approx(1.0)
    assert ann["kappa_vs_gold"]["h2"] == pytest.approx(0.5)
    assert ann["alpha_among_humans"] == pytest.approx(16 / 30)


def test_bootstrap_is_seeded():
    stat = lambda idx: float(np.mean(idx))  # noqa: E731
    assert bootstrap_ci(stat, 50, n_boot=100, seed=3) == bootstrap_ci(stat, 50, n_boot=100, seed=3)


def test_wilson_interval_hand_derived():
    # p = .3, n = 10, z = 1.959964, z^2 = 3.841459: denom = 1 + z^2/n = 1.3841459;
    # centre = (.3 + z^2/20)/denom = 0.49207295/1.3841459 = 0.355507;
    # half = z*sqrt(.3*.7/10 + z^2/400)/denom = 1.959964*0.174939/1.3841459 = 0.247716 -> [0.107791, 0.603223]
    low, high = wilson_interval(3, 10)
    assert low == pytest.approx(0.107791, abs=2e-6) and high == pytest.approx(0.603223, abs=2e-6)


def test_disparity_rates_and_ratios():
    import pandas as pd

    tax = Taxonomy.from_labels(["answer", "refusal"])
    records = pd.DataFrame(
        {"label": ["refusal"] * 3 + ["answer"] * 7 + ["refusal"] * 1 + ["answer"] * 9, "group": ["g1"] * 10 + ["g2"] * 10}
    )
    result = disparity(records, label="label", groups=["group"], taxonomy=tax, reference="g2")
    assert result["rates"]["g1"]["refusal"]["rate"] == pytest.approx(0.3)
    assert result["rates"]["g1"]["refusal"]["n"] == 10
    # rate ratio g1 vs g2 for refusal: 0.3 / 0.1 = 3
    assert result["rate_ratios"]["g1"]["refusal"]["ratio"] == pytest.approx(3.0)
    assert result["chi_square"]["dof"] == 1
    rates = category_rates(["answer", UNSCORED], categories=["answer", "refusal"])
    assert rates["answer"]["n"] == 1 and rates["refusal"]["rate"] == 0.0
    assert math.isnan(category_rates([], categories=["answer"])["answer"]["rate"])
