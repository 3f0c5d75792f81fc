"""The vectorised bootstrap of the agreement statistics (issue 30) against the reference libraries on
single resamples, and against the loop it replaced (one library call per resample and statistic) for
fixed seeds, item and cluster bootstrap, degenerate resamples included."""
import math
import warnings

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score

from judge.core.taxonomy import UNSCORED
from judge.stats.metrics import (
    agreement, agreement_intervals, alpha_from_parts, alpha_parts, alpha_parts_from_confusion, annotator_agreement,
    bootstrap_ci, bootstrap_counts, bootstrap_totals, kappa_from_confusion,
    macro_f1_from_confusion, pair_kappa_interval, present_labels, resample_draws,
)

LABELS = ["answer", "refusal", "harmful refusal", "failure", "partial answer"]
TOL = 1e-12


# -- the reference: the loop as it was before issue 30, kept here only --------------------------------------

def cluster_resampler(clusters):
    """The loop's cluster draw: clusters numbered in sorted order of their string codes, whole clusters drawn."""
    _, inverse = np.unique(np.asarray([str(c) for c in clusters], dtype=object), return_inverse=True)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1])
    return lambda rng: np.concatenate([members[j] for j in rng.integers(0, len(members), size=len(members))])


def loop_interval(statistic, n, *, n_boot, seed, level=0.95, clusters=None):
    """bootstrap_ci as it was: one statistic call per resample, nan resamples dropped."""
    if n == 0 or n_boot <= 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    draw = cluster_resampler(clusters) if clusters is not None else (lambda r: r.integers(0, n, size=n))
    values = np.array([statistic(draw(rng)) for _ in range(n_boot)])
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))


def ref_kappa(a, b, labels):
    if len(a) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(a, b, labels=list(labels)))


def ref_alpha(rows, labels):
    code = {label: i for i, label in enumerate(labels)}
    data = np.array([[code.get(v, np.nan) if v is not None else np.nan for v in row] for row in rows], dtype=float)
    if data.size == 0 or len(labels) < 2 or not ((~np.isnan(data)).sum(axis=0) >= 2).any():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal",
                                        value_domain=list(range(len(labels)))))


def ref_agreement_ci(gold, pred, *, labels, n_boot, seed, level=0.95, clusters=None):
    """agreement()'s three intervals as they were computed: scikit-learn and krippendorff per resample."""
    gold, pred = np.asarray(gold, dtype=object), np.asarray(pred, dtype=object)
    scored = pred != UNSCORED
    g, p = gold[scored], pred[scored]
    f1_labels = present_labels(g, p, labels=labels)
    cl = None if clusters is None else np.asarray(clusters, dtype=object)[scored]
    stats = {
        "cohen_kappa": lambda idx: ref_kappa(g[idx], p[idx], labels),
        "krippendorff_alpha": lambda idx: ref_alpha([list(g[idx]), list(p[idx])], labels),
        "macro_f1": lambda idx: float(f1_score(g[idx], p[idx], labels=f1_labels, average="macro", zero_division=0)),
    }
    return {k: loop_interval(s, len(g), n_boot=n_boot, seed=seed, level=level, clusters=cl) for k, s in stats.items()}


def same(a, b):
    """Two intervals equal within TOL, nan matching nan."""
    return all((math.isnan(x) and math.isnan(y)) or abs(x - y) <= TOL for x, y in zip(a, b))


def judged(n, *, seed, accuracy=0.75, unscored=0.0, labels=LABELS, p=(0.6, 0.2, 0.1, 0.05, 0.05)):
    rng = np.random.default_rng(seed)
    gold = list(rng.choice(labels, size=n, p=p))
    pred = [g if rng.random() < accuracy else str(rng.choice(labels)) for g in gold]
    pred = [UNSCORED if rng.random() < unscored else x for x in pred]
    return gold, pred


# -- the resamples --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("clustered", [False, True])
def test_resamples_are_the_loops_draws(clustered):
    n = 37
    clusters = [f"c{i % 9}" if i % 5 else i for i in range(n)] if clustered else None
    rng = np.random.default_rng(11)
    draw = cluster_resampler(clusters) if clustered else (lambda r: r.integers(0, n, size=n))
    expected = np.stack([np.bincount(draw(rng), minlength=n) for _ in range(250)])
    # totals of the identity: how many times each item is in each resample
    assert np.array_equal(bootstrap_totals(np.eye(n), n_boot=250, seed=11, clusters=clusters), expected)
    codes = np.arange(n)
    assert np.array_equal(bootstrap_counts(codes, n_codes=n, n_boot=250, seed=11, clusters=clusters), expected)


def test_draws_are_successive_integers_calls():
    rng = np.random.default_rng(2)
    expected = [rng.integers(0, 50, size=50) for _ in range(30)]
    assert np.array_equal(np.stack(list(resample_draws(50, n_boot=30, seed=2))), np.stack(expected))
    codes = np.random.default_rng(0).integers(0, 4, size=50)
    assert np.array_equal(bootstrap_counts(codes, n_codes=4, n_boot=30, seed=2),
                          np.stack([np.bincount(codes[d], minlength=4) for d in expected]))


def test_counts_and_totals_sum_what_each_resample_holds():
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 6, size=40)
    clusters = list(rng.integers(0, 12, size=40))
    draw = cluster_resampler(clusters)
    r = np.random.default_rng(8)
    expected = np.stack([np.bincount(codes[draw(r)], minlength=6) for _ in range(20)])
    assert np.array_equal(bootstrap_counts(codes, n_codes=6, n_boot=20, seed=8, clusters=clusters), expected)
    table = rng.random((40, 3))
    r = np.random.default_rng(8)
    expected = np.stack([table[draw(r)].sum(axis=0) for _ in range(20)])
    assert np.allclose(bootstrap_totals(table, n_boot=20, seed=8, clusters=clusters), expected, rtol=0, atol=1e-12)


# -- each statistic against its reference library, on resamples -----------------------------------------------

def resampled(n=120, n_boot=60, seed=3):
    gold, pred = judged(n, seed=seed, accuracy=0.6)
    gold[:3] = ["harmful refusal", "failure", "answer"]  # every category somewhere
    index = {c: i for i, c in enumerate(LABELS)}
    codes = np.array([index[g] * 5 + index[p] for g, p in zip(gold, pred)])
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, n, size=n) for _ in range(n_boot)]
    counts = np.stack([np.bincount(codes[d], minlength=25).reshape(5, 5) for d in draws])
    return np.asarray(gold, dtype=object), np.asarray(pred, dtype=object), draws, counts


def test_kappa_f1_alpha_from_confusion_match_the_libraries():
    gold, pred, draws, counts = resampled()
    kappa = kappa_from_confusion(counts)
    alpha = alpha_from_parts(alpha_parts_from_confusion(counts))
    f1_columns = [0, 1, 3]  # a subset of the categories, as macro_f1_labels may be
    f1 = macro_f1_from_confusion(counts, columns=f1_columns)
    for b, d in enumerate(draws):
        g, p = gold[d], pred[d]
        assert kappa[b] == pytest.approx(cohen_kappa_score(g, p, labels=LABELS), abs=TOL)
        assert f1[b] == pytest.approx(f1_score(g, p, labels=[LABELS[i] for i in f1_columns], average="macro",
                                               zero_division=0), abs=TOL)
        assert alpha[b] == pytest.approx(ref_alpha([list(g), list(p)], LABELS), abs=TOL)


def test_undefined_kappa_and_alpha_are_nan_as_in_the_libraries():
    one = np.zeros((2, 2))
    one[0, 0] = 7  # both raters used one and the same category
    same_a = (["a"] * 7, ["a"] * 7)
    assert math.isnan(ref_kappa(*same_a, ["a", "b"])) and math.isnan(kappa_from_confusion(one))
    assert math.isnan(ref_alpha(same_a, ["a", "b"])) and math.isnan(alpha_from_parts(alpha_parts_from_confusion(one)))
    apart = np.array([[0, 7], [0, 0]])  # gold all a, pred all b: kappa 0, alpha -1 (the libraries agree)
    a_b = (["a"] * 7, ["b"] * 7)
    assert kappa_from_confusion(apart) == pytest.approx(ref_kappa(*a_b, ["a", "b"]), abs=TOL)
    assert alpha_from_parts(alpha_parts_from_confusion(apart)) == pytest.approx(ref_alpha(a_b, ["a", "b"]), abs=TOL)
    assert math.isnan(kappa_from_confusion(np.zeros((3, 3))))
    # a category nobody used scores 0 in the macro average (zero_division=0)
    expected = f1_score(*same_a, labels=["a", "b"], average="macro", zero_division=0)
    assert macro_f1_from_confusion(one, columns=[0, 1]) == pytest.approx(expected, abs=TOL)


def many_coders(n_items, *, n_coders=4, missing=0.35, seed=0, labels=LABELS):
    rng = np.random.default_rng(seed)
    truth = rng.choice(labels, size=n_items, p=[0.5, 0.2, 0.1, 0.1, 0.1] if len(labels) == 5 else None)
    rows = []
    for _ in range(n_coders):
        row = [t if rng.random() < 0.7 else str(rng.choice(labels)) for t in truth]
        rows.append([None if rng.random() < missing else v for v in row])
    return rows


def test_alpha_over_many_coders_with_missing_labels_matches_krippendorff_on_resamples():
    rows = many_coders(60, n_coders=5, missing=0.5, seed=5)
    rows[0][0] = "not a label"  # outside the labels: missing, as krippendorff_alpha treats it
    code = {c: i for i, c in enumerate(LABELS)}
    codes = np.array([[code.get(v, -1) if v is not None else -1 for v in row] for row in rows])
    parts = alpha_parts(codes, n_labels=5)
    rng = np.random.default_rng(9)
    for _ in range(40):
        d = rng.integers(0, 60, size=60)
        expected = ref_alpha([[row[i] for i in d] for row in rows], LABELS)
        assert alpha_from_parts(parts[d].sum(axis=0)) == pytest.approx(expected, abs=TOL, nan_ok=True)
    # no pairable unit, and a single value among the pairable ones: undefined, as krippendorff_alpha says
    lonely = alpha_parts(np.array([[0, -1, 2], [-1, 1, -1]]), n_labels=3)
    assert math.isnan(alpha_from_parts(lonely.sum(axis=0)))
    single = alpha_parts(np.array([[1, 1, -1], [1, 1, 2]]), n_labels=3)
    assert math.isnan(alpha_from_parts(single.sum(axis=0)))
    assert math.isnan(ref_alpha([["b", "b", None], ["b", "b", "c"]], ["a", "b", "c"]))


# -- whole intervals against the loop, fixed seeds ----------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("clustered", [False, True])
def test_agreement_intervals_equal_the_loop(seed, clustered):
    gold, pred = judged(300, seed=seed, unscored=0.05)
    clusters = [f"prompt {i // 3}" for i in range(300)] if clustered else None
    result = agreement(gold, pred, labels=LABELS, n_boot=200, seed=seed, clusters=clusters, level=0.9)
    expected = ref_agreement_ci(gold, pred, labels=LABELS, n_boot=200, seed=seed, level=0.9, clusters=clusters)
    for key, interval in expected.items():
        assert same(result["ci"][key], interval), (key, result["ci"][key], interval)


def test_clusters_of_unequal_sizes_and_mixed_codes_equal_the_loop():
    gold, pred = judged(200, seed=3)
    rng = np.random.default_rng(1)
    # uneven clusters, numbers and strings mixed (their string codes order them), a blank's own cluster
    clusters = [int(c) if c % 2 else f"t{c}" for c in rng.integers(0, 25, size=200)]
    clusters[5] = "\0row5"
    result = agreement(gold, pred, labels=LABELS, n_boot=150, seed=4, clusters=clusters)
    expected = ref_agreement_ci(gold, pred, labels=LABELS, n_boot=150, seed=4, clusters=clusters)
    for key, interval in expected.items():
        assert same(result["ci"][key], interval), key


def test_degenerate_resamples_are_dropped_as_before():
    # Six items, one refusal: many resamples hold no refusal, so kappa and alpha are undefined there (nan)
    # and dropped; macro-F1 is defined on every one.
    # (The judge errs once, on item 5: perfect agreement would make every defined resample 1, a zero-width
    # interval, which is now none; see below.)
    gold = ["answer"] * 5 + ["refusal"]
    pred = ["answer"] * 4 + ["refusal"] * 2
    result = agreement(gold, pred, labels=["answer", "refusal"], n_boot=300, seed=1)
    expected = ref_agreement_ci(gold, pred, labels=["answer", "refusal"], n_boot=300, seed=1)
    for key, interval in expected.items():
        assert same(result["ci"][key], interval), key
    # Every resample undefined: (nan, nan), as before; F1 is 1 in every resample, a zero-width interval: none,
    # with the reason (issue 31, 8g), as for perfect agreement.
    result = agreement(["a"] * 4, ["a"] * 4, labels=["a", "b"], n_boot=50, seed=0)
    assert all(math.isnan(v) for v in result["ci"]["cohen_kappa"] + result["ci"]["krippendorff_alpha"])
    assert result["ci"]["macro_f1"] == (None, None) and "one class" in result["ci"]["reasons"]["macro_f1"]
    result = agreement(["answer"] * 5 + ["refusal"], ["answer"] * 5 + ["refusal"], labels=["answer", "refusal"],
                       n_boot=300, seed=1)
    assert result["ci"]["cohen_kappa"] == (None, None)
    assert result["ci"]["reasons"]["cohen_kappa"] == "perfect agreement on every item: no interval"
    # One label only: alpha nan whatever the data (krippendorff_alpha's rule), kappa nan too
    one = agreement(["a"] * 4, ["a"] * 4, labels=["a"], n_boot=20, seed=0)["ci"]
    assert all(math.isnan(v) for v in one["cohen_kappa"] + one["krippendorff_alpha"])


def test_no_resample_or_nothing_scored_gives_nan_intervals():
    gold, pred = judged(30, seed=2)
    for result in (agreement(gold, pred, labels=LABELS, n_boot=0),
                   agreement(gold, [UNSCORED] * 30, labels=LABELS, n_boot=20)):
        assert all(math.isnan(v) for key in ("cohen_kappa", "krippendorff_alpha", "macro_f1")
                   for v in result["ci"][key])


def test_values_outside_the_labels_count_as_the_libraries_count_them():
    # Not produced by the commands (labels are canonical there), but the intervals must not change meaning:
    # kappa and alpha leave such items out, F1 counts them in its row and column sums.
    gold, pred = judged(120, seed=6, labels=["a", "b", "c"], p=(0.5, 0.3, 0.2))
    gold[4], pred[9], pred[10] = "zzz", "yyy", "a2"
    got = agreement_intervals(gold, pred, labels=["a", "b", "c"], f1_labels=["a", "b", "c"], n_boot=100, seed=3)
    g, p = np.asarray(gold, dtype=object), np.asarray(pred, dtype=object)
    stats = {
        "cohen_kappa": lambda idx: ref_kappa(g[idx], p[idx], ["a", "b", "c"]),
        "krippendorff_alpha": lambda idx: ref_alpha([list(g[idx]), list(p[idx])], ["a", "b", "c"]),
        "macro_f1": lambda idx: float(f1_score(g[idx], p[idx], labels=["a", "b", "c"], average="macro",
                                               zero_division=0)),
    }
    for key, stat in stats.items():
        assert same(got[key], loop_interval(stat, 120, n_boot=100, seed=3)), key


@pytest.mark.parametrize("clustered", [False, True])
def test_annotator_intervals_equal_the_loop(clustered):
    rows = many_coders(90, n_coders=4, missing=0.3, seed=2)
    names = ["h1", "h2", "h3", "h4"]
    gold = [r if r is not None else "answer" for r in rows[0]]
    clusters = [f"p{i // 3}" for i in range(90)] if clustered else None
    result = annotator_agreement(dict(zip(names, rows)), labels=LABELS, gold=gold, n_boot=120, seed=5,
                                 clusters=clusters)
    expected = loop_interval(lambda idx: ref_alpha([[row[i] for i in idx] for row in rows], LABELS), 90, n_boot=120,
                             seed=5, clusters=clusters)
    assert same(result["krippendorff_alpha_ci"], expected)
    for i, a in enumerate(names):
        for j in range(i + 1, 4):
            b = names[j]
            both = [k for k in range(90) if rows[i][k] is not None and rows[j][k] is not None]
            x = np.asarray([rows[i][k] for k in both], dtype=object)
            y = np.asarray([rows[j][k] for k in both], dtype=object)
            ref = loop_interval(lambda idx, x=x, y=y: ref_kappa(x[idx], y[idx], LABELS), len(both), n_boot=120, seed=5,
                                clusters=None if clusters is None else [clusters[k] for k in both])
            assert same(result["pairwise_kappa"][f"{a} vs {b}"]["ci"], ref), (a, b)
    assert set(result["kappa_vs_gold"]) == set(names)


def test_alpha_of_two_annotators_with_a_single_shared_item_or_none():
    # Resamples without a pairable unit are undefined; none pairable at all gives (nan, nan).
    rows = [["a", None, "b", None], [None, "b", "b", None]]
    result = annotator_agreement({"x": rows[0], "y": rows[1]}, labels=["a", "b"], n_boot=80, seed=0)
    expected = loop_interval(lambda idx: ref_alpha([[r[i] for i in idx] for r in rows], ["a", "b"]), 4, n_boot=80,
                             seed=0)
    assert same(result["krippendorff_alpha_ci"], expected)
    none = annotator_agreement({"x": ["a", None], "y": [None, "b"]}, labels=["a", "b"], n_boot=10, seed=0)
    assert all(math.isnan(v) for v in none["krippendorff_alpha_ci"] + none["pairwise_kappa"]["x vs y"]["ci"])


def test_pair_kappa_interval_leaves_out_values_outside_the_labels():
    a = ["a", "b", "a", "zzz", "b", "a", "b", "a"] * 5
    b = ["a", "b", "b", "a", "b", "a", "qq", "a"] * 5
    x, y = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    expected = loop_interval(lambda idx: ref_kappa(x[idx], y[idx], ["a", "b"]), 40, n_boot=60, seed=2)
    assert same(pair_kappa_interval(a, b, labels=["a", "b"], n_boot=60, seed=2), expected)


def test_bootstrap_ci_keeps_its_loop_for_any_statistic():
    # the generic path: a statistic that is no sum over items, e.g. a median
    data = np.random.default_rng(0).random(40)
    got = bootstrap_ci(lambda idx: float(np.median(data[idx])), 40, n_boot=100, seed=3)
    assert same(got, loop_interval(lambda idx: float(np.median(data[idx])), 40, n_boot=100, seed=3))
