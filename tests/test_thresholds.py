"""Decision offsets tuned on out-of-fold predictions (training.thresholds, judge.train --tune-thresholds) and
applied by the judge base class: label = argmax(log p + offset), probabilities untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score

from judge import label, train
from judge.core.paths import SAMPLE
from judge.core.records import probability_column
from judge.kinds.judge_dir import MAX_DECISION_OFFSET, decision_offsets_of
from tests.badinput import assert_refused
from tests.conftest import module_run
from training.thresholds import GRID, MIN_GAIN, decide, objective_scores, tune_offsets

LABELS3 = ["a", "b", "c"]


# -- the tuning function, by hand ---------------------------------------------------------------


def test_a_rare_class_one_step_below_is_recovered_by_hand():
    """Four records, gold [0, 0, 0, 1]. Rows 1-3 give class 0 p=0.9 (class 1: 0.1); row 4 gives class 0 0.6 and
    class 1 0.4, so plain argmax says 0 everywhere: kappa 0 (observed 3/4, chance 3/4 * 4/4 = 3/4).
    With an offset d on class 1, row 4 flips when log 0.4 + d > log 0.6, i.e. d > log 1.5 = 0.405; rows 1-3 flip
    only when d > log 9 = 2.197. So d in (0.405, 2.197] labels all four right: kappa 1. The grid's smallest such
    value is 0.5 (steps of 0.25, ties broken towards the smallest |d|)."""
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.6, 0.4]])
    y = np.array([0, 0, 0, 1])
    tuned = tune_offsets(p, y, labels=["common", "rare"])
    assert tuned.reference == 0 and tuned.offsets[0] == 0.0
    assert tuned.offsets[1] == pytest.approx(0.5)
    assert tuned.before == pytest.approx(0.0) and tuned.after == pytest.approx(1.0)
    assert (decide(p, tuned.offsets) == y).all()


def test_objective_scores_match_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, size=200)
    predicted = rng.integers(0, 4, size=(5, 200))
    predicted[0] = y  # perfect
    predicted[1] = 0  # constant: kappa 0
    predicted[2, :20] = 3  # a category present
    kappa = objective_scores(y, predicted, n_classes=4, objective="kappa")
    f1 = objective_scores(y, predicted, n_classes=4, objective="macro-f1")
    for g in range(5):
        assert kappa[g] == pytest.approx(cohen_kappa_score(y, predicted[g], labels=range(4)))
        assert f1[g] == pytest.approx(f1_score(y, predicted[g], labels=range(4), average="macro", zero_division=0))
    # a category neither in gold nor predicted scores 0 in macro-F1, as sklearn says with labels=
    assert objective_scores(y % 3, (y % 3)[None], n_classes=4, objective="macro-f1")[0] == pytest.approx(0.75)


def under_predicted(n: int, seed: int):
    """Three classes, 'c' 12%: the model's log-odds for c are shrunk, so c's probability is often second."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.6, 0.28, 0.12])
    logits = rng.normal(0, 1.0, size=(n, 3))
    logits[np.arange(n), y] += 2.0
    logits[:, 2] -= 1.6  # the rare class under-predicted
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return p, y


def test_tuning_raises_the_kappa_of_an_under_predicted_rare_class_and_holds_out_of_sample():
    p, y = under_predicted(600, seed=0)
    tuned = tune_offsets(p, y, labels=LABELS3)
    plain = cohen_kappa_score(y, p.argmax(axis=1))
    tuned_kappa = cohen_kappa_score(y, decide(p, tuned.offsets))
    assert tuned.before == pytest.approx(plain) and tuned.after == pytest.approx(tuned_kappa)
    assert tuned_kappa >= plain + MIN_GAIN
    assert tuned.offsets[2] > 0  # the rare class raised
    assert (decide(p, tuned.offsets) == 2).sum() > (p.argmax(axis=1) == 2).sum()
    # the same offsets on a fresh sample of the same model (a simulation): the gain is not noise
    fresh_p, fresh_y = under_predicted(3000, seed=1)
    assert cohen_kappa_score(fresh_y, decide(fresh_p, tuned.offsets)) > cohen_kappa_score(fresh_y, fresh_p.argmax(1))


def test_macro_f1_objective_and_determinism():
    p, y = under_predicted(400, seed=5)
    first = tune_offsets(p, y, labels=LABELS3, objective="macro-f1")
    again = tune_offsets(p, y, labels=LABELS3, objective="macro-f1")
    assert np.array_equal(first.offsets, again.offsets) and first.after == again.after
    assert first.after == pytest.approx(
        f1_score(y, decide(p, first.offsets), labels=range(3), average="macro", zero_division=0)
    )
    assert first.after >= first.before + MIN_GAIN


def test_calibrated_well_separated_predictions_keep_zero_offsets():
    """Already right on every record: no move can raise kappa (1.0), so nothing is kept."""
    y = np.repeat([0, 1, 2], 30)
    p = np.full((90, 3), 0.1)
    p[np.arange(90), y] = 0.8
    tuned = tune_offsets(p, y, labels=LABELS3)
    assert (tuned.offsets == 0).all() and tuned.before == tuned.after == pytest.approx(1.0)


def test_a_noise_level_gain_below_the_margin_is_not_kept():
    """200 records, one of them a rare-class record at p(c)=0.45 against p(a)=0.55: an offset of 0.25 on c fixes it
    (log 0.55 - log 0.45 = 0.20): kappa goes from (0.995 - 0.6275) / 0.3725 = 0.987 (chance (150*151 + 50*49) / 200^2)
    to 1, a gain of 0.013, below a margin of 0.05; rows elsewhere are near certain."""
    y = np.array([0] * 150 + [2] * 50)
    p = np.zeros((200, 3)) + 0.01
    p[np.arange(200), y] = 0.98
    p[150] = [0.55, 0.0, 0.45]
    p[:50, 2] = 0.3  # 50 class-a records with c at 0.3, a at 0.98-ish: an offset on c above 1.18 would flip them
    tuned = tune_offsets(p, y, labels=LABELS3, min_gain=0.05)
    assert (tuned.offsets == 0).all()
    assert tune_offsets(p, y, labels=LABELS3, min_gain=0.0001).offsets[2] > 0  # the gain exists, below the margin


def test_absent_category_and_reference_keep_zero_and_the_cap_holds():
    p, y = under_predicted(300, seed=2)
    y = np.where(y == 1, 0, y)  # 'b' never in gold
    tuned = tune_offsets(p, y, labels=LABELS3)
    assert tuned.offsets[1] == 0 and tuned.offsets[tuned.reference] == 0 and tuned.reference == 0
    assert np.abs(tuned.offsets).max() <= np.abs(GRID).max() <= MAX_DECISION_OFFSET and 0 in GRID
    one = tune_offsets(p, np.zeros_like(y), labels=LABELS3)
    assert one.reason and (one.offsets == 0).all() and one.before is None


def test_all_zero_offsets_are_no_offsets():
    assert decision_offsets_of({"decision_offsets": {"a": 0.0, "b": 0.0}}) is None
    assert decision_offsets_of({}) is None
    assert decision_offsets_of({"decision_offsets": {"a": 0.0, "b": 0.5}}) == {"a": 0.0, "b": 0.5}


# -- judge.train --tune-thresholds and judge.label ------------------------------------------------

COMMON = ["--train", str(SAMPLE), "--taxonomy", "chehbouni2024", "--no-progress"]


@pytest.fixture(scope="module")
def tuned_judges(tmp_path_factory):
    root = tmp_path_factory.mktemp("tuned")
    assert module_run(train, [*COMMON, "--kind", "tfidf", "--cv", "3", "--tune-thresholds", "kappa",
                              "--out", str(root / "tuned")]) == 0
    assert module_run(train, [*COMMON, "--kind", "tfidf", "--cv", "3", "--out", str(root / "plain")]) == 0
    return root


def labelled(judge_dir: Path, tmp_path: Path, name: str) -> pd.DataFrame:
    """The sample's records cut to their first three words: on its own training texts the judge is near certain, and
    offsets of a quarter move nothing; on cut ones it hesitates, where the offsets decide."""
    src = tmp_path / "cut.jsonl"
    records = pd.read_json(SAMPLE, lines=True, dtype=False)
    records["response"] = records["response"].map(lambda text: " ".join(text.split()[:3]))
    records.to_json(src, orient="records", lines=True)
    out = tmp_path / f"{name}.jsonl"
    assert module_run(label, ["--judge", str(judge_dir), "--input", str(src), "--prefix", "j_", "--no-progress",
                              "--out", str(out)]) == 0
    return pd.read_json(out, lines=True, dtype=False)


def test_train_records_the_offsets_and_label_applies_them(tuned_judges, tmp_path):
    meta = json.loads((tuned_judges / "tuned" / "judge.json").read_text())
    labels = meta["labels"]
    offsets = np.array([meta["decision_offsets"][c] for c in labels])
    notes = meta["training_notes"]["decision_offsets"]
    assert notes["objective"] == "kappa" and notes["offsets"] == meta["decision_offsets"]
    assert notes["after"] >= notes["before"] and notes["reference"] == labels[0]  # 'answer', the most frequent
    assert offsets.any()  # the sample's rare categories move (the run prints them)
    assert "decision_offsets" not in json.loads((tuned_judges / "plain" / "judge.json").read_text())
    manifest = json.loads((tuned_judges / "tuned" / "manifest.json").read_text())
    assert manifest["settings"]["tune_thresholds"] == "kappa"
    assert manifest["metrics"]["decision_offsets"]["after"] == notes["after"]

    tuned, plain = labelled(tuned_judges / "tuned", tmp_path, "tuned"), labelled(tuned_judges / "plain", tmp_path, "plain")
    columns = ["j_" + probability_column(c) for c in labels]
    p = tuned[columns].to_numpy(float)
    # the probabilities written stay the calibrated ones: the same model, offsets or not
    assert np.allclose(p, plain[columns].to_numpy(float))
    expected = [labels[i] for i in (np.log(np.clip(p, 1e-12, None)) + offsets).argmax(axis=1)]
    assert tuned["j_label"].tolist() == expected
    assert plain["j_label"].tolist() == [labels[i] for i in p.argmax(axis=1)]
    assert tuned["j_confidence"].to_numpy(float) == pytest.approx(p[np.arange(len(p)), [labels.index(c) for c in expected]])
    assert (tuned["j_label"] != plain["j_label"]).any()  # the offsets changed some labels


def test_tuning_without_out_of_fold_predictions_is_refused(tmp_path, capsys):
    out = tmp_path / "j"
    assert_refused(train, [*COMMON, "--kind", "tfidf", "--tune-thresholds", "kappa", "--out", str(out)],
                   ["--tune-thresholds", "--cv 5"], root=tmp_path, capsys=capsys)
    assert not out.exists()
    assert_refused(train, [*COMMON, "--kind", "tfidf", "--cv", "3", "--tune-thresholds", "accuracy", "--out", str(out)],
                   ["--tune-thresholds", "accuracy"], root=tmp_path, capsys=capsys)


def test_ensemble_tunes_on_its_stacker_out_of_fold_and_members_offsets_never_reach_the_stacker(tmp_path):
    out = tmp_path / "ens"
    assert module_run(train, [*COMMON, "--kind", "ensemble", "--members", "tfidf", "rules", "--cv", "3",
                              "--tune-thresholds", "macro-f1", "--out", str(out)]) == 0
    meta = json.loads((out / "judge.json").read_text())
    assert set(meta["decision_offsets"]) == set(meta["labels"])
    assert meta["training_notes"]["decision_offsets"]["objective"] == "macro-f1"

    from judge.kinds import load_judge

    judge = load_judge(str(out))
    records = pd.read_json(SAMPLE, lines=True).head(60)
    before = judge.label(records, progress=False)
    member = judge.members["tfidf"]
    member.meta = {**member.meta, "decision_offsets": dict.fromkeys(member.taxonomy.labels, 0.0) | {"failure": 3.0}}
    assert member.decision_offsets  # the member now has offsets of its own
    after = judge.label(records, progress=False)
    p_columns = [probability_column(c) for c in judge.taxonomy.labels]
    assert np.array_equal(before[p_columns].to_numpy(float), after[p_columns].to_numpy(float))
    assert before["label"].tolist() == after["label"].tolist()


def test_calibration_on_out_of_fold_predictions_uses_the_offsets_labelling_applies(tuned_judges, tmp_path):
    # judge.calibrate --judge DIR (no --input) read cv/oof.jsonl's plain argmax and its top probability, while
    # judge.label writes argmax(log p + offset) and that label's probability: the threshold was calibrated for
    # labels the judge never writes. It must equal calibrating an --input holding the labels judge.label's rule gives.
    from judge import calibrate as calibrate_cmd

    directory = tuned_judges / "tuned"
    meta = json.loads((directory / "judge.json").read_text())
    labels = meta["labels"]
    oof = pd.read_json(directory / "cv" / "oof.jsonl", lines=True, dtype=False)
    p = oof[["oof_" + probability_column(c) for c in labels]].to_numpy(float)
    chosen = (np.log(np.clip(p, 1e-12, None)) + np.array([meta["decision_offsets"][c] for c in labels])).argmax(axis=1)
    assert (chosen != p.argmax(axis=1)).any()  # the offsets move some out-of-fold labels
    decided = oof.assign(j_label=[labels[i] for i in chosen], j_confidence=p[np.arange(len(p)), chosen])
    decided.to_json(tmp_path / "decided.jsonl", orient="records", lines=True)
    settings = ["--judge", str(directory), "--target", "0.8", "--delta", "0.2"]
    assert module_run(calibrate_cmd, [*settings, "--out", str(tmp_path / "oof.json")]) == 0
    assert module_run(calibrate_cmd, [*settings, "--input", str(tmp_path / "decided.jsonl"), "--gold", "label",
                                      "--prefix", "j_", "--out", str(tmp_path / "input.json")]) == 0
    from_oof, from_input = (json.loads((tmp_path / n).read_text()) for n in ("oof.json", "input.json"))
    for key in ("threshold", "kept", "errors", "coverage", "n"):
        assert from_oof.get(key) == from_input.get(key), key
