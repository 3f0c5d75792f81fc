"""Cross-fitted PPI (issue 32): every human label trains the judge and corrects it. A hand-derived small case,
ppi_py's crossppi_mean where the designs coincide, coverage by simulation under each design (synthetic fold
judges, no training), the fold machinery with a real TF-IDF judge, and judge.report --cross-fit / --estimand."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from judge import report
from judge.analysis.crossfit import cross_fitted_scores, fold_average_labels
from judge.stats.ppi import ESTIMAND_MODEL, ESTIMAND_OUTPUTS, Design, design_rate, ppi_by_group
from tests.conftest import run_cli, write_jsonl

T2 = 4.302652729911275  # Student's t 0.975 quantile, 2 degrees of freedom


def _two_columns(p):
    return np.stack([1 - np.asarray(p), np.asarray(p)], axis=1)  # categories ("no", "yes")


def test_cross_fitted_rate_hand_derived():
    # One group of 6 outputs; outputs 0-2 human-labelled (a simple random sample: pi = 3/6 = 0.5).
    #   output  fold average a  out-of-fold f  human y   r = y - f
    #   0       0.7             0.8            1          0.2
    #   1       0.3             0.2            0         -0.2
    #   2       0.4             0.6            0         -0.6
    #   3-5     0.9, 0.1, 0.5   (unlabelled)
    # The judge term reads the out-of-fold prediction where a human label is (s = 0.8, 0.2, 0.6, 0.9, 0.1, 0.5):
    # theta = mean s + sum r / pi / N = 3.1 / 6 + (-0.6 / 0.5) / 6 = 0.516667 - 0.2 = 0.316667
    # = (n/N) mean y_S + (1 - n/N) (mean of the unlabelled fold average + mean residual)
    # = 0.5 * 1/3 + 0.5 * (1.5 / 3 - 0.2) = 0.166667 + 0.15 (ppi_py's crossppi on the unlabelled outputs)
    # variance (a simple random sample of the group, judge term fixed): N^2 (1 - n/N) s^2 / n with
    # s^2 = (0.4^2 + 0 + 0.4^2) / 2 = 0.16: 36 * 0.5 * 0.16 / 3 = 0.96, plus the pseudo-disagreements at the
    # largest weight (1 - 0.5) / 0.5^2 = 2 times (1 + 1 + 0) / 2 = 2: se = sqrt(2.96) / 6 = 0.286744
    avg = pd.DataFrame(_two_columns([0.7, 0.3, 0.4, 0.9, 0.1, 0.5]), index=[f"o{i}" for i in range(6)], columns=["no", "yes"])
    oof = pd.DataFrame(_two_columns([0.8, 0.2, 0.6]), index=["o0", "o1", "o2"], columns=["no", "yes"])
    scores = cross_fitted_scores(oof, avg)
    assert scores["yes"].tolist() == pytest.approx([0.8, 0.2, 0.6, 0.9, 0.1, 0.5])
    judge = fold_average_labels(avg)
    assert judge.tolist() == ["yes", "no", "no", "yes", "no", "no"]
    res = ppi_by_group(judge.to_numpy(), ["yes", "no", "no", None, None, None], ["g"] * 6, categories=["no", "yes"], reference="g",
                       scores=scores.to_numpy())
    r = res["rates"]["g"]["yes"]
    assert r["ppi"]["rate"] == pytest.approx(0.316666667, abs=1e-8)
    assert r["ppi"]["se"] == pytest.approx(math.sqrt(2.96) / 6, abs=1e-12)
    assert r["ppi"]["half_width"] == pytest.approx(T2 * math.sqrt(2.96) / 6, abs=1e-9)  # t, n - 1 = 2 df (clipped at 1)
    assert r["judge_only"]["rate"] == pytest.approx(2 / 6)  # the fold-average judge's labels, counted
    assert res["estimand"] == ESTIMAND_OUTPUTS


def _srs_case(seed=1, big_n=3000, n=400, k=5):
    rng = np.random.default_rng(seed)
    y = (rng.random(big_n) < 0.3).astype(float)
    base = np.clip(0.15 + 0.6 * y + rng.normal(0, 0.15, big_n), 0.01, 0.99)
    per_fold = np.clip(base[:, None] + rng.normal(0, 0.05, (big_n, k)), 0, 1)  # each fold judge's probability
    labelled = np.zeros(big_n, dtype=bool)
    labelled[rng.choice(big_n, n, replace=False)] = True
    fold = rng.integers(0, k, big_n)
    return y, per_fold, labelled, per_fold[np.arange(big_n), fold], per_fold.mean(axis=1)


def test_agrees_with_ppi_py_crossppi_under_a_simple_random_sample():
    import ppi_py
    from scipy.stats import norm

    y, per_fold, labelled, oof, avg = _srs_case()
    big_n, n = len(y), int(labelled.sum())
    human = np.where(labelled, np.where(y == 1, "yes", "no"), None)
    judge = np.where(avg > 0.5, "yes", "no")
    scores = _two_columns(np.where(labelled, oof, avg))
    # The labelled outputs count by their human labels, the unlabelled ones by ppi_py's crossppi with them as its
    # unlabelled data (their K fold predictions): (n/N) mean y_S + (1 - n/N) crossppi(unlabelled)
    unlabelled = per_fold[~labelled]
    on_rest = float(np.squeeze(ppi_py.crossppi_mean_pointestimate(y[labelled], oof[labelled], unlabelled)))
    point = n / big_n * y[labelled].mean() + (1 - n / big_n) * on_rest
    # ppi_py's superpopulation interval with every output as unlabelled data, for the model's rate
    low, high = ppi_py.crossppi_mean_ci(y[labelled], oof[labelled], per_fold, alpha=0.05)
    se_ppi_py = float(np.squeeze(high - low)) / 2 / norm.ppf(0.975)
    outputs = ppi_by_group(judge, human, ["g"] * big_n, categories=["no", "yes"], reference="g",
                           scores=scores)["rates"]["g"]["yes"]["ppi"]
    model = ppi_by_group(judge, human, ["g"] * big_n, categories=["no", "yes"], reference="g", scores=scores,
                         clusters=np.arange(big_n))["rates"]["g"]["yes"]["ppi"]
    assert outputs["rate"] == pytest.approx(point, abs=1e-12) and model["rate"] == pytest.approx(point, abs=1e-12)
    # These outputs: ppi_py's rectifier variance var(f - y) / n (ddof 0) with the sample variance's n / (n - 1),
    # the finite-population correction 1 - n / N, no judge term (fixed for a finite population), plus the
    # pseudo-disagreements m / N^2 at m = (1 - pi) / pi^2
    pi = n / big_n
    rect = np.var(oof[labelled] - y[labelled]) / n
    expected = rect * n / (n - 1) * (1 - pi) + (1 - pi) / pi**2 / big_n**2
    assert outputs["se"] ** 2 == pytest.approx(expected, rel=1e-9)
    # The model's rate (every output an independent draw): ppi_py's superpopulation interval, to within the
    # pseudo-disagreements and the labelled outputs' own judge-term covariance (a few per cent here)
    assert model["se"] == pytest.approx(se_ppi_py, rel=0.1)
    assert outputs["se"] < se_ppi_py < model["se"] * 1.1


def _fold_judges(base, k, rng, sd=0.05):
    per_fold = np.clip(base[:, None] + rng.normal(0, sd, (len(base), k)), 0, 1)
    return per_fold, per_fold.mean(axis=1)


def _draw(design, a_pilot, stratum, n, rng):
    """labelled mask and Design.build arguments for one draw of ``n`` (expected) labels."""
    size = len(a_pilot)
    if design == "random":
        labelled = np.zeros(size, dtype=bool)
        labelled[rng.choice(size, n, replace=False)] = True
        return labelled, {"groups": np.zeros(size), "scored": np.ones(size, dtype=bool)}
    if design in ("stratified", "neyman"):
        strata = stratum if design == "stratified" else (a_pilot > 0.5).astype(int)
        sizes = np.bincount(strata)
        if design == "stratified":
            alloc = np.round(n * sizes / sizes.sum()).astype(int)
        else:  # Neyman: n_h proportional to N_h S_h, S_h the judge's own spread sqrt(p (1 - p)) in the stratum
            p = np.array([a_pilot[strata == h].mean() for h in range(len(sizes))])
            weight = sizes * np.sqrt(p * (1 - p))
            alloc = np.maximum(2, np.round(n * weight / weight.sum()).astype(int))
        labelled = np.zeros(size, dtype=bool)
        for h, m in enumerate(alloc):
            labelled[rng.choice(np.flatnonzero(strata == h), m, replace=False)] = True
        return labelled, {"inclusion": (alloc / sizes)[strata], "strata": strata}
    # uncertainty-driven Poisson: pi proportional to min(a, 1 - a), floored, expected size n
    u = np.minimum(a_pilot, 1 - a_pilot) + 0.05
    pi = np.minimum(1.0, n * u / u.sum())
    return rng.random(size) < pi, {"inclusion": pi}


@pytest.mark.parametrize("design", ["random", "stratified", "neyman", "poisson"])
def test_cross_fitted_intervals_cover_these_outputs_under_each_design(design):
    # A fixed population (the rate among these outputs); each draw takes a sample by the design, deals it into
    # 5 folds, and 5 synthetic fold judges (the same noisy probability, each with its own noise) predict: the
    # labelled outputs by their fold's judge, every output by the average.
    rng = np.random.default_rng(7)
    big_n, n, k, draws = 1500, 150, 5, 300
    stratum = (rng.random(big_n) < 0.4).astype(int)
    y = (rng.random(big_n) < np.where(stratum == 1, 0.35, 0.1)).astype(float)
    base = np.clip(0.1 + 0.6 * y + rng.normal(0, 0.2, big_n), 0.01, 0.99)
    truth, covered, widths = y.mean(), 0, []
    domain = np.ones(big_n, dtype=bool)
    for _ in range(draws):
        per_fold, avg = _fold_judges(base, k, rng)
        labelled, build = _draw(design, base, stratum, n, rng)
        fold = rng.integers(0, k, big_n)
        f = np.where(labelled, per_fold[np.arange(big_n), fold], avg)
        r = design_rate(y, f, domain, Design.build(labelled, **build))  # the judge term reads f too (crossfit)
        covered += r["ci"][0] <= truth <= r["ci"][1]
        widths.append(r["ci"][1] - r["ci"][0])
    assert covered / draws >= 0.9, (design, covered / draws)
    assert 0 < np.mean(widths) < 0.2


def test_fold_judges_that_learn_their_labels_bias_a_fold_average_judge_term():
    # Fold judges whose training depends on the sample: each moves halfway towards the human label of every
    # output it was trained on (K - 1 of the K judges for a labelled output). A fold average on the labelled
    # outputs then leans towards their labels, and the judge term carries (n/N) mean_S (a - f): at n = N/2,
    # 0.5 * 0.8 * 0.5 * mean(y - base) = 0.2 * (0.3 * 0.3 - 0.7 * 0.2) = -0.01, about 0.9 standard errors.
    # The estimator judge.analysis.crossfit uses (the out-of-fold prediction in the judge term too) is
    # unbiased here and covers; the variance, and so the width, is the same for both.
    rng = np.random.default_rng(5)
    big_n, n, k, draws = 600, 300, 5, 300
    y = (rng.random(big_n) < 0.3).astype(float)
    base = np.clip(0.2 + 0.5 * y + rng.normal(0, 0.15, big_n), 0.01, 0.99)
    truth, domain = y.mean(), np.ones(big_n, dtype=bool)
    est = {"fold average": [], "out of fold": []}
    for _ in range(draws):
        labelled = np.zeros(big_n, dtype=bool)
        labelled[rng.choice(big_n, n, replace=False)] = True
        fold = np.where(labelled, rng.integers(0, k, big_n), 0)
        per_fold, _ = _fold_judges(base, k, rng)
        trained = labelled[:, None] & (fold[:, None] != np.arange(k))  # judge j was trained on output i
        per_fold = np.where(trained, per_fold + 0.5 * (y[:, None] - per_fold), per_fold)
        avg = per_fold.mean(axis=1)
        f = np.where(labelled, per_fold[np.arange(big_n), fold], avg)
        design = Design.build(labelled, groups=np.zeros(big_n), scored=domain)
        old, new = design_rate(y, f, domain, design, average=avg), design_rate(y, f, domain, design)
        assert old["half_width"] == pytest.approx(new["half_width"], rel=1e-12)
        for key, r in (("fold average", old), ("out of fold", new)):
            est[key].append((r["rate"], r["ci"][0] <= truth <= r["ci"][1]))
    old, new = np.array(est["fold average"]), np.array(est["out of fold"])
    assert old[:, 0].mean() - truth < -0.007 and abs(new[:, 0].mean() - truth) < 0.003
    assert old[:, 1].mean() < 0.87 and new[:, 1].mean() >= 0.92, (old[:, 1].mean(), new[:, 1].mean())


def test_cross_fitted_clustered_intervals_cover_the_models_rate():
    # Prompts drawn anew each draw (the model's rate): 120 prompts of 6 outputs each, a prompt's refusal
    # probability Beta(1, 3) (mean 0.25, the truth); a random sample of 150 outputs, folds grouped by prompt.
    rng = np.random.default_rng(11)
    prompts, per, n, k, draws = 120, 6, 150, 5, 300
    clusters = np.repeat(np.arange(prompts), per)
    covered = 0
    for _ in range(draws):
        p = rng.beta(1, 3, prompts)[clusters]
        y = (rng.random(len(p)) < p).astype(float)
        base = np.clip(0.1 + 0.6 * y + rng.normal(0, 0.2, len(y)), 0.01, 0.99)
        per_fold, avg = _fold_judges(base, k, rng)
        labelled = np.zeros(len(y), dtype=bool)
        labelled[rng.choice(len(y), n, replace=False)] = True
        fold = rng.permutation(prompts)[clusters] % k  # whole prompts to a fold
        f = np.where(labelled, per_fold[np.arange(len(y)), fold], avg)
        design = Design.build(labelled, groups=np.zeros(len(y)), scored=np.ones(len(y), dtype=bool))
        r = design_rate(y, f, np.ones(len(y), dtype=bool), design, clusters=clusters)
        covered += r["ci"][0] <= 0.25 <= r["ci"][1]
    assert covered / draws >= 0.9, covered / draws


# -- the fold judges, trained (TF-IDF) -----------------------------------------------------------------

def _outputs(n_prompts=30, per=3, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_prompts):
        group = "muslim" if p % 2 else "white"
        for s in range(per):
            refuse = rng.random() < (0.4 if group == "muslim" else 0.15)
            text = ("I cannot help with that request, sorry." if refuse else "Sure, here is how you do it step by step.")
            if rng.random() < 0.1:
                text = "Well. " + text[::-1]
            rows.append({"id": f"p{p}s{s}", "prompt": f"prompt number {p} about {group} people", "response": text,
                         "identity": group, "gold": "refusal" if refuse else "no refusal"})
    return pd.DataFrame(rows)


def test_fold_judges_never_see_the_prompt_they_predict_and_average_on_every_output():
    from training.crossfit import cross_fit
    from training.cv import fit_member
    from training.examples import labelled_data

    frame = _outputs()
    human = frame["gold"].where(np.arange(len(frame)) % 2 == 0, "")
    fitted = cross_fit(frame, human, kind="tfidf", k=3, taxonomy="refusal2")
    assert fitted.group == "prompt"  # prompts repeat: folds grouped by prompt (with default_group's warning)
    prompts = frame.set_index("id").loc[fitted.folds.index, "prompt"]
    assert prompts.groupby(fitted.folds.to_numpy()).apply(set).pipe(lambda s: [a & b for a in s for b in s if a is not b]) == [set()] * 6
    assert list(fitted.out_of_fold.index) == list(frame["id"][human != ""])
    assert fitted.fold_average.shape == (len(frame), 2)
    # Recompute the three judges: out of fold is the other folds' judge; the fold average is the mean of all three.
    data = labelled_data(frame.assign(h=human)[human != ""], label_column="h", taxonomy="refusal2")
    everyone = labelled_data(frame.assign(h=human.where(human != "", "refusal")), label_column="h", taxonomy="refusal2")
    folds = fitted.folds.to_numpy()
    total = np.zeros((len(frame), 2))
    for f in range(3):
        predict = fit_member("tfidf", data.subset(np.flatnonzero(folds != f)), 2)
        np.testing.assert_allclose(fitted.out_of_fold.to_numpy()[folds == f], predict(data.subset(np.flatnonzero(folds == f))))
        total += predict(everyone) / 3
    np.testing.assert_allclose(fitted.fold_average.to_numpy(), total)


def test_report_cross_fit_and_the_estimand(tmp_path, capsys):
    frame = _outputs(n_prompts=40)
    frame["human"] = frame["gold"].where(np.arange(len(frame)) % 2 == 0, "")
    path = write_jsonl(tmp_path / "outputs.jsonl", frame.drop(columns="gold").to_dict("records"))
    base = [str(path), "--label", "crossfit_label", "--group", "identity", "--reference", "white", "--human", "human",
            "--taxonomy", "refusal2", "--cross-fit", "4", "--kind", "tfidf"]
    code, out, err = run_cli(report, base + ["--out", str(tmp_path / "model")], capsys)
    assert code == 0, err
    ppi = json.loads((tmp_path / "model" / "disparity.json").read_text())["ppi"]
    assert ppi["cross_fit"]["k"] == 4 and ppi["cross_fit"]["folds_by"] == "prompt"
    assert ppi["estimand"] == ESTIMAND_MODEL and ppi["clustered"] is True  # the default: prompts drawn anew
    assert "each labelled output corrected by the judge that did not see its fold" in ppi["cross_fit"]["note"]
    assert ppi["training_overlap"].startswith("cross-fitted")
    assert "Estimand: the model's rate" in out and "Judge: cross-fitted, 4 tfidf judges" in out
    code, out, err = run_cli(report, base + ["--estimand", "outputs", "--out", str(tmp_path / "outputs")], capsys)
    assert code == 0, err
    other = json.loads((tmp_path / "outputs" / "disparity.json").read_text())["ppi"]
    assert other["estimand"] == ESTIMAND_OUTPUTS and other["clustered"] is False
    m, o = ppi["rates"]["muslim"]["refusal"]["ppi"], other["rates"]["muslim"]["refusal"]["ppi"]
    assert m["rate"] == pytest.approx(o["rate"]) and o["se"] < m["se"]  # same estimate, a narrower claim
    # --label names the new column: an existing one is refused in one line
    code, out, err = run_cli(report, [*base[:2], "prompt", *base[3:], "--out", str(tmp_path / "bad")], capsys)
    assert code == 2 and "pick a name the input lacks" in err and "Traceback" not in err
    code, out, err = run_cli(report, [*base[:5], "--cross-fit", "3", "--out", str(tmp_path / "bad2")], capsys)
    assert code == 2 and "add --human" in err


def test_strata_by_the_judges_label_cover_the_models_rate():
    # Strata by the judge's label (its refusals oversampled) and the model's rate (prompts drawn anew each draw):
    # a stratum's size varies with the prompts. The judge's label is constant within a stratum, so PPI (lambda 1)
    # is the human-only (lambda 0) estimator, and so must be its interval. Before every stratum member carried
    # its stratum's mean correction in the cluster scores, the human-only one was too narrow here (mean
    # half-width 0.058 against PPI's 0.075) and on the 13B outputs covered 0.72-0.78
    # (benchmarks/label_economy.py, Neyman, the model's rate).
    rng = np.random.default_rng(5)
    prompts, per, n, draws = 120, 6, 150, 200
    clusters = np.repeat(np.arange(prompts), per)
    covered = 0
    for _ in range(draws):
        p = rng.beta(1, 3, prompts)[clusters]
        y = (rng.random(len(p)) < p).astype(float)
        judge = np.clip(0.1 + 0.6 * y + rng.normal(0, 0.2, len(y)), 0.01, 0.99)
        strata = (judge > 0.5).astype(int)
        sizes = np.bincount(strata, minlength=2)
        alloc = np.minimum(sizes, np.array([n // 3, n - n // 3]))
        labelled = np.zeros(len(y), dtype=bool)
        for h in (0, 1):
            labelled[rng.choice(np.flatnonzero(strata == h), alloc[h], replace=False)] = True
        design = Design.build(labelled, inclusion=(alloc / sizes)[strata], strata=strata)
        f, domain = (judge > 0.5).astype(float), np.ones(len(y), dtype=bool)
        human = design_rate(y, f, domain, design, lam=0.0, clusters=clusters)
        ppi = design_rate(y, f, domain, design, lam=1.0, clusters=clusters)
        assert (human["rate"], human["half_width"]) == pytest.approx((ppi["rate"], ppi["half_width"]), rel=1e-9)
        covered += human["ci"][0] <= 0.25 <= human["ci"][1]
    assert covered / draws >= 0.9, covered / draws


def test_library_function_takes_the_arrays_and_returns_a_typed_result():
    # judge.analysis.crossfit.cross_fitted with the training floor's arrays (here made by hand): the PPI rate is
    # design_rate's on the out-of-fold / fold-average probabilities, and the result says how it was made.
    from judge.analysis.crossfit import cross_fitted
    from judge.analysis.ppi import PPIResult, human_sample
    from judge.core.taxonomy import resolve_taxonomy

    frame = _outputs(n_prompts=40)
    rng = np.random.default_rng(3)
    frame["human"] = frame["gold"].where(np.arange(len(frame)) % 2 == 0, "")
    ids = frame["id"].to_numpy()
    p = np.clip(np.where(frame["gold"] == "refusal", 0.8, 0.1) + rng.normal(0, 0.1, len(frame)), 0, 1)
    avg = pd.DataFrame({"no refusal": 1 - p, "refusal": p}, index=ids)
    lab = (frame["human"] != "").to_numpy()
    q = np.clip(p[lab] + rng.normal(0, 0.05, lab.sum()), 0, 1)
    oof = pd.DataFrame({"no refusal": 1 - q, "refusal": q}, index=ids[lab])
    records = frame.assign(crossfit_label=fold_average_labels(avg).to_numpy())
    tax = resolve_taxonomy("refusal2", [])
    res = cross_fitted(records, human_sample(records, "human", label="crossfit_label"), out_of_fold=oof, fold_average=avg,
                       k=5, kind="tfidf", folds_by="prompt", taxonomy=tax, label="crossfit_label", group="identity",
                       reference="white")
    assert isinstance(res, PPIResult) and res.cross_fit.k == 5 and res.estimand == ESTIMAND_OUTPUTS
    muslim = (frame["identity"] == "muslim").to_numpy()
    f = avg["refusal"].to_numpy().copy()
    f[lab] = q
    expected = design_rate((frame["gold"] == "refusal").to_numpy(float), f, muslim,
                           Design.build(lab, groups=frame["identity"], scored=np.ones(len(frame), bool)))
    assert res.rates["muslim"]["refusal"].ppi.rate == pytest.approx(expected["rate"], abs=1e-12)
    assert res.rates["muslim"]["refusal"].ppi.se == pytest.approx(expected["se"], abs=1e-12)
