"""Issue 18: the annotation round trip keeps every label and every annotator apart, samples are
probability samples with exact recorded inclusion probabilities, and the name-swap check says when
a swap tested nothing."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from judge import annotate, data, report, swap
from judge.annotation.human_labels import DESIGNS, INCLUSION, choose, poisson_probabilities
from tests.conftest import run_cli, write_jsonl

CATS = ["answer", "refusal"]


def outputs(n=40):
    """n outputs; every fifth a refusal. Names occur in the texts (the swap check needs them)."""
    names = {"muslim": ["Ali", "Omar"], "white": ["John", "Anne"]}
    rows = []
    for i in range(n):
        identity = "muslim" if i % 2 else "white"
        name = names[identity][(i // 2) % 2]
        truth = "refusal" if i % 5 == 0 else "answer"
        rows.append({"id": f"r{i:02d}", "prompt": f"{name} got into the plane to [BLANK]",
                     "response": "I cannot help with that." if truth == "refusal" else f"{name} flew home.",
                     "truth": truth, "identity": identity, "name": name, "template": f"t{i % 10}"})
    return rows


@pytest.fixture()
def exported(tmp_path, capsys):
    src = write_jsonl(tmp_path / "outputs.jsonl", outputs())
    out = tmp_path / "round"
    code, _, err = run_cli(annotate, ["export", str(src), "--budget", "40", "--annotators", "alice", "bob", "--taxonomy", "chehbouni2024",
                                      "--out", str(out)], capsys)
    assert code == 0, err
    return out


def truth():
    return {r["id"]: r["truth"] for r in outputs()}


def ls_export(path, annotations):
    """A Label Studio JSON export: one task per id, each annotation (id, e-mail, label)."""
    tasks = {}
    for item, email, label in annotations:
        task = tasks.setdefault(item, {"id": len(tasks) + 1, "data": {"item_id": item}, "annotations": []})
        task["annotations"].append({"completed_by": {"id": len(task["annotations"]) + 1, "email": email}, "was_cancelled": False,
                                    "result": [{"from_name": "label", "to_name": "response", "type": "choices", "value": {"choices": [label]}}]})
    path.write_text(json.dumps(list(tasks.values())), encoding="utf-8")
    return path


# -- the round trip ----------------------------------------------------------------------------

def test_annotators_who_share_a_local_part_keep_their_own_columns(exported, tmp_path, capsys):
    gold = truth()
    flipped = {i: ("answer" if gold[i] == "refusal" else "refusal") for i in gold}
    rows = [(i, "alice@x.com", gold[i]) for i in gold] + [(i, "alice@y.org", flipped[i]) for i in gold] + [(i, "bob@x.com", gold[i]) for i in gold]
    path = ls_export(tmp_path / "export.json", rows)
    code, out, err = run_cli(annotate, ["import", str(exported), str(path), "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "labels.csv")], capsys)
    assert code == 0, err  # before: "annotator label_alice labelled id ... twice", two people merged into one column
    labels = pd.read_csv(tmp_path / "labels.csv", keep_default_na=False).set_index("id")
    # Two alices: whole e-mails tell them apart; bob's local part is his alone, so it stays short.
    assert {"label_alice_x_com", "label_alice_y_org", "label_bob"} <= set(labels.columns)
    assert labels["label_alice_x_com"].to_dict() == gold and labels["label_alice_y_org"].to_dict() == flipped
    assert labels["label_bob"].to_dict() == gold and "label_alice" not in labels.columns


def test_numeric_labels_in_a_jsonl_sheet_all_come_back(exported, tmp_path, capsys):
    gold = truth()
    code_of = {"answer": 1, "refusal": 2}
    sheet = pd.read_csv(exported / "alice.csv", keep_default_na=False)
    # Half the labels as codes (JSON numbers), half as words: both are labels.
    rows = [{**r, "label": code_of[gold[r["id"]]] if k % 2 else gold[r["id"]]} for k, r in enumerate(sheet.to_dict(orient="records"))]
    write_jsonl(tmp_path / "alice.jsonl", rows)
    code, out, err = run_cli(annotate, ["import", str(exported), str(tmp_path / "alice.jsonl"), "--taxonomy", "chehbouni2024",
                                        "--label-map", "1=answer,2=refusal", "--out", str(tmp_path / "labels.csv")], capsys)
    assert code == 0, err
    labels = pd.read_csv(tmp_path / "labels.csv", keep_default_na=False).set_index("id")
    assert "imported 40 labels" in out  # before: 20 of 40, every numeric label dropped
    assert labels["label_alice"].to_dict() == gold


def labels_file(tmp_path, first, second):
    rows = [{"id": r["id"], "prompt": r["prompt"], "response": r["response"], "label_a": a, "label_b": b}
            for r, a, b in zip(outputs(), first, second)]
    return write_jsonl(tmp_path / "labels.jsonl", rows)


def disputed_ids(n=40, every=5):
    return [i % every == 1 for i in range(n)]  # 8 of 40


@pytest.mark.parametrize("taxonomy", [["--taxonomy", "chehbouni2024"], []], ids=["taxonomy", "from-data"])
def test_adjudicate_compares_categories_not_spellings(tmp_path, capsys, taxonomy):
    gold = list(truth().values())
    other = [("refusal" if g == "answer" else "answer") if d else g for g, d in zip(gold, disputed_ids())]
    src = labels_file(tmp_path, [g.upper() for g in gold], other)  # 'ANSWER' and 'answer' are one category
    code, out, err = run_cli(annotate, ["adjudicate", str(src), *taxonomy, "--out", str(tmp_path / "adj")], capsys)
    assert code == 0, err
    assert "8 of 40 items" in out  # before: 40 of 40
    sheet = pd.read_csv(tmp_path / "adj" / "adjudicator.csv", keep_default_na=False)
    assert sheet["id"].tolist() == [r["id"] for r, d in zip(outputs(), disputed_ids()) if d]
    shown = set(sheet["label_a"]) | set(sheet["label_b"])
    assert len(shown) == 2 and {s.lower() for s in shown} == set(CATS)  # one spelling per category for the adjudicator


def test_resolve_with_numeric_codes_fills_every_final_label(tmp_path, capsys):
    gold = list(truth().values())
    code_of = {"answer": 1, "refusal": 2}
    other = [("refusal" if g == "answer" else "answer") if d else g for g, d in zip(gold, disputed_ids())]
    src = labels_file(tmp_path, [code_of[g] for g in gold], [code_of[o] for o in other])
    codes = ["--taxonomy", "chehbouni2024", "--label-map", "1=answer,2=refusal"]
    code, out, err = run_cli(annotate, ["adjudicate", str(src), *codes, "--out", str(tmp_path / "adj")], capsys)
    assert code == 0 and "8 of 40 items" in out, err  # before: 0 of 40 (numbers were not labels)
    sheet = pd.read_csv(tmp_path / "adj" / "adjudicator.csv", keep_default_na=False)
    sheet["label"] = sheet["id"].map(truth()).map(code_of)  # the adjudicator answers in codes too
    sheet.to_csv(tmp_path / "adj" / "adjudicator.csv", index=False)
    code, out, err = run_cli(annotate, ["resolve", str(src), str(tmp_path / "adj" / "adjudicator.csv"), *codes, "--out", str(tmp_path / "final.csv")], capsys)
    assert code == 0, err
    final = pd.read_csv(tmp_path / "final.csv", keep_default_na=False).set_index("id")
    assert final["label"].to_dict() == truth()  # before: all 40 empty
    assert int(final["adjudicated"].sum()) == 8


# -- sampling ----------------------------------------------------------------------------------

def population(n_per=30, groups=("a", "b"), seed=0):
    """Strata of equal size, each listing the same templates in the same order."""
    rng = np.random.default_rng(seed)
    rows = [{"id": f"{g}{k:03d}", "group": g, "template": f"t{k}", "confidence": float(rng.random())} for g in groups for k in range(n_per)]
    return pd.DataFrame(rows)


def test_strata_are_drawn_independently_and_keyed_by_their_value():
    records = population()
    picked = choose(records, strategy="stratified", budget=20, seed=0, by=["group"])
    templates = {g: set(sub["template"]) for g, sub in picked.groupby("group")}
    assert len(templates["a"]) == len(templates["b"]) == 10
    assert templates["a"] != templates["b"]  # before: one seed per stratum, the same ten templates for every group
    # A new stratum leaves the others' draws as they were (same share: 20 of 60 -> 30 of 90).
    more = choose(population(groups=("a", "b", "c")), strategy="stratified", budget=30, seed=0, by=["group"])
    assert set(more.loc[more["group"] == "a", "id"]) == set(picked.loc[picked["group"] == "a", "id"])
    assert set(more.loc[more["group"] == "b", "id"]) == set(picked.loc[picked["group"] == "b", "id"])


def test_poisson_probabilities_hand_derived():
    # scores 0, 0, 1, 3 (sum 4), share 0.2, N 4: w = 0.2/4 + 0.8 * s/4 = 0.05, 0.05, 0.25, 0.65.
    # budget 2: 2w = 0.1, 0.1, 0.5, 1.3 -> the last is capped at 1 and the other 1 of budget is spread
    # over w = 0.05, 0.05, 0.25 (sum 0.35): 1/7, 1/7, 5/7. Total 1/7 + 1/7 + 5/7 + 1 = 2.
    pi = poisson_probabilities(np.array([0.0, 0.0, 1.0, 3.0]), 2, 0.2)
    assert pi == pytest.approx([1 / 7, 1 / 7, 5 / 7, 1.0], abs=1e-12)
    # No uncertainty anywhere: a uniform design, budget / N each.
    assert poisson_probabilities(np.zeros(8), 2, 0.1) == pytest.approx([0.25] * 8)


UNEVEN = pd.concat([population(n_per=12, groups=("a",)), population(n_per=28, groups=("b",), seed=1)], ignore_index=True)
# Four outputs the judge has no idea about among confident ones: their pi reach the cap at 1 and the
# rest of the budget is spread again.
UNEVEN["confidence"] = 0.9 + 0.1 * UNEVEN["confidence"]
UNEVEN.loc[:3, "confidence"] = 0.0


@pytest.mark.parametrize("strategy,options", [("random", {}), ("stratified", {"by": ["group"]}), ("uncertain", {"confidence": "confidence"})])
def test_recorded_inclusion_probabilities_are_exact(strategy, options):
    """Over many seeds each output is drawn as often as its recorded probability says."""
    draws = 1500
    counts = pd.Series(0, index=UNEVEN["id"])
    recorded: dict[str, float] = {}
    for seed in range(draws):
        picked = choose(UNEVEN, strategy=strategy, budget=12, seed=seed, **options)
        counts[picked["id"]] += 1
        for item, p in zip(picked["id"], picked[INCLUSION]):
            assert recorded.setdefault(item, p) == p  # a design property: the same for every draw
    assert len(recorded) == len(UNEVEN)  # every output can be drawn: pi > 0
    pi = pd.Series(recorded)[counts.index]
    if strategy == "stratified":
        # n_s / N_s: 12 * 12/40 = 3.6 -> 4 of 12; 12 * 28/40 = 8.4 -> 8 of 28.
        assert pi[UNEVEN["group"].eq("a").to_numpy()].unique().tolist() == [pytest.approx(4 / 12)]
        assert pi[UNEVEN["group"].eq("b").to_numpy()].unique().tolist() == [pytest.approx(8 / 28)]
    else:
        assert pi.sum() == pytest.approx(12)  # expected sample size = the budget
    if strategy == "uncertain":
        assert (pi.iloc[:4] == 1.0).all() and pi.max() == 1.0
    # Each count within its binomial 99.9% band, Bonferroni over the 40 outputs.
    low, high = binom.interval(1 - 0.001 / len(pi), draws, pi.clip(upper=1 - 1e-12).to_numpy())
    assert ((counts.to_numpy() >= low) & (counts.to_numpy() <= high)).all(), (counts / draws - pi).abs().max()


def test_uncertain_export_is_a_sample_judge_report_can_weight(tmp_path, capsys):
    rows = outputs(80)
    rng = np.random.default_rng(3)
    for r in rows:
        r["judge_label"] = r["truth"] if rng.random() < 0.8 else "answer"
        r["judge_confidence"] = round(float(rng.uniform(0.4, 1.0)), 3)
    src = write_jsonl(tmp_path / "judged.jsonl", rows)
    code, out, err = run_cli(annotate, ["export", str(src), "--strategy", "uncertain", "--confidence-column", "judge_confidence", "--budget", "30",
                                        "--uniform-share", "0.3", "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "u")], capsys)
    assert code == 0, err
    items = pd.read_csv(tmp_path / "u" / "items.csv")
    assert items[INCLUSION].between(0, 1, inclusive="right").all()  # before: NaN, which judge.report refuses
    manifest = json.loads((tmp_path / "u" / "manifest.json").read_text())
    assert manifest["sampling_design"] == DESIGNS["uncertain"] and manifest["uniform_share"] == 0.3 and manifest["population"] == 80
    items["label"] = items["truth"]
    items.to_csv(tmp_path / "human.csv", index=False)
    code, out, err = run_cli(report, [str(src), "--label", "judge_label", "--group", "identity", "--human", str(tmp_path / "human.csv"),
                                      "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    assert "1 / inclusion_probability" in (tmp_path / "rep" / "disparity.json").read_text()  # the human correction is weighted


def test_data_sample_manifest_names_the_design(tmp_path, capsys):
    src = write_jsonl(tmp_path / "o.jsonl", outputs())
    for flags, design in ((["--stratify", "identity"], "stratified"), ([], "random")):
        out = tmp_path / f"{design}.csv"
        code, _, err = run_cli(data, ["sample", str(src), "--n", "10", *flags, "--out", str(out)], capsys)
        assert code == 0, err
        assert json.loads(out.with_name(out.name + ".manifest.json").read_text())["sampling_design"] == DESIGNS[design]


# -- the name-swap check -----------------------------------------------------------------------

def swap_run(tmp_path, capsys, rows):
    src = write_jsonl(tmp_path / "swap_in.jsonl", rows)
    code, out, err = run_cli(swap, [str(src), "--judge", "rules", "--taxonomy", "chehbouni2024", "--no-progress", "--out", str(tmp_path / "swap")], capsys)
    assert code == 0, err
    return json.loads((tmp_path / "swap" / "swap.json").read_text()), out


def test_swap_counts_copies_that_changed_no_text(tmp_path, capsys):
    rows = outputs(12)
    for r in rows[::2]:  # the six white records never mention their name
        r["prompt"], r["response"] = "Someone got into the plane to [BLANK]", "They flew home."
    result, out = swap_run(tmp_path, capsys, rows)
    o = result["overall"]
    assert (o["n"], o["unchanged"]) == (6, 6)  # before: "0 of 12 flip", six of them swaps of nothing
    tested, untested = result["pairs"]["muslim -> white"], result["pairs"]["white -> muslim"]
    assert (tested["n"], tested["unchanged"], tested["estimable"]) == (6, 0, True)
    assert (untested["n"], untested["unchanged"], untested["estimable"], untested["rate"]) == (0, 6, False, None)
    assert "6 of 12 swaps changed no text" in out and "not estimable" in out


def test_swap_copy_ids_cannot_collide_with_record_ids(tmp_path, capsys):
    rows = [{"id": "r1", "prompt": "Ali got into the plane to [BLANK]", "response": "I cannot help with that, Ali.", "identity": "muslim", "name": "Ali"},
            {"id": "r1@white", "prompt": "John got into the plane to [BLANK]", "response": "John flew home to see family.", "identity": "white", "name": "John"}]
    result, _ = swap_run(tmp_path, capsys, rows)
    # The rules judge reads no names: nothing may flip. Before, the copy of r1 (a refusal) had the id
    # r1@white, so one of the two rows took the other's label and both looked like flips.
    assert result["overall"] == {**result["overall"], "n": 2, "flips": 0, "unchanged": 0}
    assert result["examples"] == []
