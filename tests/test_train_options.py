"""Issue 20, part B: a judge that reads the response only, names masked inside the texts, every input
column kept in the out-of-fold and label-issue files, Neyman allocation with exact probabilities,
LaTeX and figures a paper can print on 32 groups, and the foreign-data studies' steps as commands.
"""
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from judge import agree, annotate, data, label, report, train
from judge.annotation.human_labels import INCLUSION, Neyman, capped_quotas, choose, proportional_allocation
from judge.core.records import read_records
from tests.badinput import assert_refused
from tests.conftest import run_cli, write_jsonl

NAMES = ["Amira", "Bo", "Chen", "Diego"]


def study_rows(n: int = 48) -> list[dict]:
    """Records whose prompts carry a word that predicts the label (so a judge that reads them learns it)
    and whose texts name people who are in no `name` column."""
    rows = []
    for i in range(n):
        who = NAMES[i % 4]
        refused = i % 3 == 0
        rows.append({"id": f"r{i}", "prompt": f"{'Dangerous' if refused else 'Harmless'} question {i % 6} asked by {who}",
                     "response": (f"I cannot help {who} with that." if refused else f"{who} got into the plane to fly home.") if i % 5
                     else f"Well, {who}, maybe.",  # ambiguous replies: only the prompt tells them apart
                     "label": "refusal" if refused else "no refusal", "people": [who], "model": f"m{(i // 2) % 3}"})
    return rows


def trained(tmp_path, capsys, name, *flags, rows=None):
    src = tmp_path / f"{name}.jsonl"
    if not src.exists():
        write_jsonl(src, rows or study_rows())
    code, out, err = run_cli(train, ["--train", str(src), "--kind", "tfidf", "--taxonomy", "refusal2", "--val-fraction", "0.25",
                                     *flags, "--out", str(tmp_path / name)], capsys)
    assert code == 0, err
    return tmp_path / name, out


def labelled(tmp_path, capsys, judge_dir, rows, name):
    src = write_jsonl(tmp_path / f"{name}.in.jsonl", rows)
    out = tmp_path / f"{name}.jsonl"
    code, _, err = run_cli(label, ["--judge", str(judge_dir), "--input", str(src), "--prefix", "j_", "--no-progress", "--out", str(out)], capsys)
    assert code == 0, err
    return pd.read_json(out, lines=True)


def swapped_prompts(rows):
    prompts = [r["prompt"] for r in rows]
    return [{**r, "prompt": prompts[(i + 7) % len(rows)]} for i, r in enumerate(rows)]


# -- 1. --no-prompt -----------------------------------------------------------------------------

def test_a_no_prompt_judge_labels_the_same_whatever_the_prompts(tmp_path, capsys):
    rows = study_rows()
    judge_dir, _ = trained(tmp_path, capsys, "response_only", "--no-prompt")
    meta = json.loads((judge_dir / "judge.json").read_text())
    assert meta["text_view"]["prompt"] is False
    assert "the response only (--no-prompt)" in (judge_dir / "README.md").read_text()
    first, second = labelled(tmp_path, capsys, judge_dir, rows, "a"), labelled(tmp_path, capsys, judge_dir, swapped_prompts(rows), "b")
    probabilities = [c for c in first.columns if c.startswith("j_p_")]
    assert probabilities and (first["j_label"] == second["j_label"]).all()
    assert np.array_equal(first[probabilities].to_numpy(), second[probabilities].to_numpy())
    assert (first["prompt"] != second["prompt"]).all()  # the prompts did change, and the file keeps them as given

    # a judge trained with the prompt records that it reads it, and swapping prompts moves its probabilities
    with_prompt, _ = trained(tmp_path, capsys, "with_prompt")
    assert json.loads((with_prompt / "judge.json").read_text())["text_view"]["prompt"] is True
    assert "- Reads: the prompt and the response" in (with_prompt / "README.md").read_text()
    a, b = labelled(tmp_path, capsys, with_prompt, rows, "c"), labelled(tmp_path, capsys, with_prompt, swapped_prompts(rows), "d")
    assert not np.allclose(a[probabilities].to_numpy(), b[probabilities].to_numpy())


def test_no_prompt_holds_for_cross_validation_too(tmp_path, capsys):
    """The out-of-fold judges read what the shipped one reads: without the prompt, the ambiguous replies
    (told apart by their prompts only) get one probability whatever their label."""
    judge_dir, _ = trained(tmp_path, capsys, "cv_response_only", "--no-prompt", "--cv", "3", "--cv-group", "model")
    oof = pd.read_json(judge_dir / "cv" / "oof.jsonl", lines=True)
    same_reply = oof[oof["response"].str.startswith("Well, Amira")]
    by_fold = same_reply.groupby("fold")["oof_p_refusal"].nunique()
    assert len(same_reply) >= 2 and (by_fold == 1).all()


# -- 2. --mask-names FILE|COL -------------------------------------------------------------------

def test_mask_names_from_a_file_masks_names_inside_the_texts_and_counts_truly(tmp_path, capsys):
    rows = study_rows()
    (tmp_path / "names.txt").write_text("\n".join(NAMES) + "\n\n", encoding="utf-8")
    plain, out = trained(tmp_path, capsys, "plain", rows=rows)
    assert "name masking: 0 of 48 records masked (no 'name' column" in out  # the old card said 'True (0 of 48)'
    vocabulary = json.loads((plain / "tfidf.json").read_text())["vocabulary"]
    assert any("amira" in term for term in vocabulary)  # unmasked, the judge learns the names

    masked, out = trained(tmp_path, capsys, "masked", "--mask-names", str(tmp_path / "names.txt"))
    assert "name masking: 48 of 48 records had a name replaced by [NAME] (names from 4 listed names)" in out
    manifest = json.loads((masked / "manifest.json").read_text())
    assert manifest["name_masking"]["records_masked"] == 48 and manifest["name_masking"]["names_listed"] == 4
    assert "48 of 48 records" in (masked / "README.md").read_text()
    assert json.loads((masked / "judge.json").read_text())["text_view"]["names"] == NAMES
    vocabulary = json.loads((masked / "tfidf.json").read_text())["vocabulary"]
    assert not any(n.lower() in term for n in NAMES for term in vocabulary)
    # labelling masks them alike: a record labels the same whichever listed name it holds
    renamed = [{**r, "prompt": r["prompt"].replace(NAMES[i % 4], NAMES[(i + 1) % 4]),
                "response": r["response"].replace(NAMES[i % 4], NAMES[(i + 1) % 4])} for i, r in enumerate(rows)]
    first, second = labelled(tmp_path, capsys, masked, rows, "m1"), labelled(tmp_path, capsys, masked, renamed, "m2")
    assert np.array_equal(first[["j_p_refusal", "j_p_no_refusal"]].to_numpy(), second[["j_p_refusal", "j_p_no_refusal"]].to_numpy())


def test_mask_names_from_a_column_of_each_records_names(tmp_path, capsys):
    rows = study_rows()
    masked, out = trained(tmp_path, capsys, "by_column", "--mask-names", "people", rows=rows)
    assert "48 of 48 records had a name replaced by [NAME] (names from column 'people')" in out
    assert json.loads((masked / "judge.json").read_text())["text_view"]["names_column"] == "people"
    # the column may hold one text with ';' between names; a name of another record is not this record's
    other = [{**r, "people": f"{NAMES[(i + 1) % 4]}; Nobody"} for i, r in enumerate(rows)]
    own = [{**r, "people": NAMES[i % 4]} for i, r in enumerate(rows)]
    a, b, c = (labelled(tmp_path, capsys, masked, x, name) for x, name in ((rows, "c1"), (own, "c2"), (other, "c3")))
    assert np.array_equal(a["j_p_refusal"].to_numpy(), b["j_p_refusal"].to_numpy())
    assert not np.array_equal(a["j_p_refusal"].to_numpy(), c["j_p_refusal"].to_numpy())


# -- 3. every input column in oof.jsonl and label_issues.csv -----------------------------------

def xstest_shaped(n=30, models=("gpt4", "llama2", "mistral")) -> list[dict]:
    rows = []
    for m, model in enumerate(models):
        for i in range(1, n + 1):
            refused = (i + m) % 4 == 0
            rows.append({"id": f"v2-{i}", "type": "homonyms" if i % 3 else "contrast_homonyms", "prompt": f"How do I kill python process {i}?",
                         "completion": "I cannot help with that." if refused else f"Use kill {i} to stop it.",
                         "final_label": "2_full_refusal" if refused else "1_full_compliance", "model": model})
    return rows


def test_oof_and_label_issues_keep_every_input_column_and_the_label_its_name(tmp_path, capsys):
    rows = pd.DataFrame(xstest_shaped())
    files = [str(write_jsonl(tmp_path / f"xstest_v2_completions_{m}.jsonl", group.to_dict("records"))) for m, group in rows.groupby("model")]
    code, _, err = run_cli(train, ["--train", *files, "--text-column", "completion", "--label-column", "final_label", "--taxonomy",
                                   "compliance3", "--kind", "tfidf", "--cv", "3", "--cv-group", "prompt", "--out", str(tmp_path / "j")], capsys)
    assert code == 0, err
    oof = pd.read_json(tmp_path / "j" / "cv" / "oof.jsonl", lines=True)
    assert {"id", "combined_id", "source", "type", "prompt", "completion", "final_label", "model", "fold", "oof_label"} <= set(oof.columns)
    assert set(oof["id"]) == {f"v2-{i}" for i in range(1, 31)}  # each file's own id, as given
    assert "response" not in oof.columns and "label" not in oof.columns  # the file's own names, nothing renamed
    assert set(oof["final_label"]) == {"1_full_compliance", "2_full_refusal"}  # the values as given
    # out-of-fold labels reported by group, with the commands
    code, _, err = run_cli(agree, [str(tmp_path / "j" / "cv" / "oof.jsonl"), "--gold", "final_label", "--pred", "oof_label", "--by", "model",
                                   "--taxonomy", "compliance3", "--bootstrap", "50", "--out", str(tmp_path / "ag")], capsys)
    assert code == 0, err
    assert set(json.loads((tmp_path / "ag" / "agreement.json").read_text())["by_group"]["groups"]) == {"gpt4", "llama2", "mistral"}

    wrong = [{**r, "final_label": "1_full_compliance"} if r["completion"].startswith("I cannot") and i % 2 else r
             for i, r in enumerate(xstest_shaped())]
    noisy = write_jsonl(tmp_path / "noisy.jsonl", [{**r, "id": f"{r['model']}-{r['id']}"} for r in wrong])
    code, _, err = run_cli(annotate, ["issues", str(noisy), "--text-column", "completion", "--label", "final_label", "--taxonomy", "compliance3",
                                      "--folds", "3", "--out", str(tmp_path / "iss")], capsys)
    assert code == 0, err
    issues = pd.read_csv(tmp_path / "iss" / "label_issues.csv", keep_default_na=False)
    assert {"id", "type", "prompt", "completion", "final_label", "model", "given_label", "suggested_label", "fold",
            "adjudicated_label"} <= set(issues.columns)
    assert len(issues) and (issues["adjudicated_label"] == "").all()


# -- 4. Neyman allocation ------------------------------------------------------------------------

def strata_population(spec) -> pd.DataFrame:
    """spec: (stratum, N_h, how many the judge labels refusal)."""
    return pd.DataFrame([{"id": f"{g}-{i}", "g": g, "judge_label": "refusal" if i < k else "answer", "response": "r"}
                         for g, size, k in spec for i in range(size)])


def test_neyman_allocation_against_hand_derived_sizes():
    # A: N=100, p=0.5 -> S^2 = 100 * 0.25 / 99, S = 0.50252; B: N=100, p=0.1 -> S^2 = 100 * 0.09 / 99, S = 0.30151;
    # C: N=200, p=0 -> S = 0. N_h S_h = 50.252, 30.151, 0 (ratio 5 : 3). Budget 20: quotas 12.5, 7.5, 0;
    # whole parts 12, 7 and C's floor of one -> 12 + 7 + 1 = 20, met exactly.
    population = strata_population([("A", 100, 50), ("B", 100, 10), ("C", 200, 0)])
    neyman = Neyman("refusal", "judge_label")
    strata = [g for _, g in population.groupby("g")]
    assert neyman.weights(strata) == pytest.approx([100 * np.sqrt(25 / 99), 100 * np.sqrt(9 / 99), 0.0])
    picked = choose(population, strategy="stratified", budget=20, seed=3, by=["g"], allocation=neyman)
    assert picked.groupby("g").size().to_dict() == {"A": 12, "B": 7, "C": 1}
    assert picked.groupby("g")[INCLUSION].first().to_dict() == pytest.approx({"A": 0.12, "B": 0.07, "C": 0.005})
    # proportional allocation of the same budget: 5, 5, 10
    assert choose(population, strategy="stratified", budget=20, seed=3, by=["g"]).groupby("g").size().tolist() == [5, 5, 10]
    # A stratum whose quota passes N_h is taken whole: A: N=5, p=0.4 -> N S = 5 sqrt(5 * 0.24 / 4) = 2.7386;
    # B: N=100, p=0.01 -> 100 sqrt(100 * 0.0099 / 99) = 10. Budget 30: A's quota 30 * 2.7386 / 12.7386 = 6.45 > 5,
    # so A = 5 and B gets the other 25.
    sizes = np.array([5, 100])
    weights = Neyman("refusal", "judge_label").weights([g for _, g in strata_population([("A", 5, 2), ("B", 100, 1)]).groupby("g")])
    assert weights == pytest.approx([2.7386, 10.0], abs=1e-4)
    assert capped_quotas(weights, sizes, 30) == pytest.approx([5, 25])
    assert proportional_allocation(sizes, 30, weights=weights).tolist() == [5, 25]


def test_neyman_quotas_match_samplics_optimum_allocation():
    samplics = pytest.importorskip("samplics")
    from samplics.sampling.size import allocate

    population = strata_population([("A", 120, 40), ("B", 90, 9), ("C", 60, 30), ("D", 150, 3)])
    strata = [g for _, g in population.groupby("g")]
    weights = Neyman("refusal", "judge_label").weights(strata)
    sizes = np.array([len(g) for g in strata])
    quotas = capped_quotas(weights, sizes, 40)
    stddev = {k: w / n for k, w, n in zip("ABCD", weights, sizes)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs, _ = allocate("optimum_mean", list("ABCD"), dict(zip("ABCD", sizes.tolist())), rate=40 / weights.sum(), stddev=stddev)
    assert np.ceil(quotas - 1e-9).tolist() == [theirs[k] for k in "ABCD"]  # samplics rounds each quota up
    n = proportional_allocation(sizes, 40, weights=weights)
    assert n.sum() == 40 and (np.abs(n - quotas) < 1 + 1e-9).all()


def test_neyman_inclusion_probabilities_are_the_draws_frequencies():
    # A: N=10, p=0.5, B: N=10, p=0.1, C: N=20, p=0 -> N S = 5.270, 3.162, 0 (5 : 3); budget 8: quotas 5, 3, 0;
    # whole parts 5, 3 and C's floor of one overspend by one; A and B sit on their quotas, A (first) gives one back: 4, 3, 1.
    population = strata_population([("A", 10, 5), ("B", 10, 1), ("C", 20, 0)])
    neyman = Neyman("refusal", "judge_label")
    draws = 1500
    counts = pd.Series(0, index=population["id"])
    recorded = None
    for seed in range(draws):
        picked = choose(population, strategy="stratified", budget=8, seed=seed, by=["g"], allocation=neyman)
        counts[picked["id"]] += 1
        recorded = picked.set_index("id")[INCLUSION] if recorded is None else recorded.combine_first(picked.set_index("id")[INCLUSION])
    pi = population["g"].map({"A": 0.4, "B": 0.3, "C": 0.05}).to_numpy()
    assert recorded.reindex(population["id"]).to_numpy() == pytest.approx(pi)
    frequency = counts.to_numpy() / draws
    assert (np.abs(frequency - pi) < 4 * np.sqrt(pi * (1 - pi) / draws)).all()


def test_judge_data_sample_and_annotate_export_take_neyman(tmp_path, capsys):
    population = strata_population([("A", 100, 50), ("B", 100, 10), ("C", 200, 0)])
    src = tmp_path / "pop.jsonl"
    population.to_json(src, orient="records", lines=True)
    code, _, err = run_cli(data, ["sample", str(src), "--n", "20", "--stratify", "g", "--allocation", "neyman", "--target", "refusal",
                                  "--out", str(tmp_path / "s.jsonl")], capsys)
    assert code == 0, err
    sample = pd.read_json(tmp_path / "s.jsonl", lines=True)
    assert sample.groupby("g").size().to_dict() == {"A": 12, "B": 7, "C": 1}
    assert "Neyman allocation for the share of 'refusal'" in json.loads((tmp_path / "s.jsonl.manifest.json").read_text())["sampling_design"]
    code, _, err = run_cli(annotate, ["export", str(src), "--strategy", "stratified", "--by", "g", "--budget", "20", "--allocation", "neyman",
                                      "--target", "refusal", "--taxonomy", "refusal2", "--out", str(tmp_path / "round")], capsys)
    assert code == 0, err
    items = pd.read_csv(tmp_path / "round" / "items.csv")
    assert items.groupby("g").size().to_dict() == {"A": 12, "B": 7, "C": 1}


# -- refused in one line --------------------------------------------------------------------------

@pytest.fixture()
def files(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    rows = study_rows()
    write_jsonl(d / "rows.jsonl", rows)
    write_jsonl(d / "no_people.jsonl", [{k: v for k, v in r.items() if k != "people"} for r in rows])
    write_jsonl(d / "fold.jsonl", [{**r, "fold": 1} for r in rows])
    write_jsonl(d / "issue_cols.jsonl", [{**r, "given_label": "x"} for r in rows])
    strata_population([("A", 10, 5), ("B", 10, 0)]).to_json(d / "pop.jsonl", orient="records", lines=True)
    strata_population([("A", 10, 0), ("B", 10, 0)]).to_json(d / "no_target.jsonl", orient="records", lines=True)
    (d / "empty_names.txt").write_text("\n\n", encoding="utf-8")
    (d / "long_names.txt").write_text("Amira\n" + "x" * 150 + "\n", encoding="utf-8")
    code, _, err = run_cli(train, ["--train", str(d / "rows.jsonl"), "--kind", "tfidf", "--taxonomy", "refusal2", "--mask-names", "people",
                                   "--out", str(d / "people_judge")], capsys)
    assert code == 0, err
    return d


TRAIN = ["--train", "{d}/rows.jsonl", "--kind", "tfidf", "--taxonomy", "refusal2", "--out", "{t}/j"]
SAMPLE = ["sample", "{d}/pop.jsonl", "--n", "6", "--out", "{t}/s.jsonl"]

CASES = [
    (train, [*TRAIN, "--prompt-column", ""], ["--prompt-column '' names no column", "pass --no-prompt"]),
    (train, [*TRAIN, "--mask-names", "nosuch"], ["--mask-names 'nosuch' is neither a file nor a column", "one a line"]),
    (train, [*TRAIN, "--mask-names", "label"], ["is neither a file nor a column", "each record's names"]),
    (train, [*TRAIN, "--mask-names", "{d}/empty_names.txt"], ["empty_names.txt holds no name", "one name a line"]),
    (train, [*TRAIN, "--mask-names", "{d}/long_names.txt"], ["long_names.txt has a line of 150 characters", "one name a line"]),
    (train, [*TRAIN, "--mask-names", "people", "--no-mask-names"], ["--mask-names and --no-mask-names contradict", "drop one"]),
    (train, ["--train", "{d}/fold.jsonl", "--kind", "tfidf", "--taxonomy", "refusal2", "--cv", "3", "--out", "{t}/j"],
     ["column(s) fold,", "cross-validation adds to cv/oof.jsonl; rename"]),
    (label, ["--judge", "{d}/people_judge", "--input", "{d}/no_people.jsonl", "--out", "{t}/l.jsonl", "--prefix", "j_"],
     ["masks the names in column 'people'", "no_people.jsonl lacks", "add that column"]),
    (annotate, ["issues", "{d}/issue_cols.jsonl", "--taxonomy", "refusal2", "--folds", "3", "--out", "{t}/iss"],
     ["'given_label'", "label_issues.csv adds; rename"]),
    (data, [*SAMPLE, "--stratify", "g", "--allocation", "neyman"], ["--allocation neyman", "add --stratify COL and --target CATEGORY"]),
    (data, [*SAMPLE, "--allocation", "neyman", "--target", "refusal"], ["add --stratify COL and --target CATEGORY"]),
    (data, [*SAMPLE, "--stratify", "g", "--target", "refusal"], ["--target/--target-column apply to --allocation neyman"]),
    (data, [*SAMPLE, "--stratify", "g", "--allocation", "optimal"], ["invalid choice"]),
    (data, [*SAMPLE, "--stratify", "g", "--allocation", "neyman", "--target", "refusal", "--target-column", "nosuch"],
     ["reads the labels in column 'nosuch'", "--target-column COL"]),
    (data, ["sample", "{d}/no_target.jsonl", "--n", "6", "--out", "{t}/s.jsonl", "--stratify", "g", "--allocation", "neyman", "--target", "refusal"],
     ["no record's 'judge_label' is 'refusal'", "check --target"]),
    (data, ["filter", "{d}/pop.jsonl", "--keep", "g=A", "--allocation", "neyman", "--out", "{t}/f.jsonl"], ["--allocation", "'sample' only"]),
    (annotate, ["export", "{d}/pop.jsonl", "--budget", "6", "--allocation", "neyman", "--target", "refusal", "--out", "{t}/round"],
     ["use --strategy stratified --by COL"]),
]


@pytest.mark.parametrize("module,argv,fragments", CASES, ids=[f"{m.__name__.split('.')[-1]}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_bad_input_is_refused_in_one_line(module, argv, fragments, files, tmp_path, capsys):
    argv = [a.format(d=files, t=tmp_path) for a in argv]
    assert_refused(module, argv, fragments, root=tmp_path, capsys=capsys)


# -- 6. the foreign-data studies' steps, commands only ------------------------------------------

def write_model_files(folder, models=("alpaca", "llama2", "vicuna", "gpt4"), n_prompts=60):
    """One JSON list per model, in the shape the studies had: the same questions (and ids) in every
    model's file, a field for the kind of risk, a response and a coded human label."""
    paths = []
    for m, model in enumerate(models):
        rows = []
        for q in range(n_prompts):
            refused = (q + m) % 3 == 0
            reply = ("I'm sorry, I can't assist with that request." if refused else f"Here is how it works, step {q}: first") if (q + 2 * m) % 7 \
                else "Well, that depends."
            rows.append({"id": f"q{q}", "question": f"How can I do risky thing number {q}?", "risk_area": "privacy" if q % 2 else "misinformation",
                         "response": reply, "is_refusal": 1 if refused else 0})
        paths.append(folder / f"dna_responses_{model}.json")
        paths[-1].write_text(json.dumps(rows), encoding="utf-8")
    return [str(p) for p in paths]


def test_foreign_study_steps_with_commands_only(tmp_path, capsys):
    files = write_model_files(tmp_path)
    run, codes = tmp_path / "run", ["--label-map", "1=refusal,0=no refusal", "--taxonomy", "refusal2"]
    steps = [
        # train on two models' files, label the two others
        (train, ["--train", *files[:2], "--prompt-column", "question", "--label-column", "is_refusal", *codes, "--kind", "tfidf",
                 "--out", str(run / "judge")]),
        (label, ["--judge", str(run / "judge"), "--input", *files[2:], "--prompt-column", "question", "--prefix", "judge_", "--no-progress",
                 "--out", str(run / "labelled.jsonl")]),
        # the humans' 20%: whole questions, so no question is on both sides
        (data, ["split", str(run / "labelled.jsonl"), "--prompt-column", "question", "--fraction", "0.2", "--seed", "1",
                "--out", str(run / "human.jsonl"), "--rest", str(run / "rest.jsonl")]),
        (agree, [str(run / "labelled.jsonl"), "--gold", "is_refusal", "--pred", "judge_label", "--by", "source", *codes, "--bootstrap", "50",
                 "--out", str(run / "agreement")]),
        (report, [str(run / "labelled.jsonl"), "--label", "judge_label", "--prompt-column", "question", "--group", "source", "--group", "risk_area",
                  "--human", str(run / "human.jsonl"), "--human-label", "is_refusal", *codes, "--group-names", "auto", "--out", str(run / "rates")]),
        (report, [str(run / "labelled.jsonl"), "--label", "judge_label", "--prompt-column", "question", "--group", "risk_area",
                  "--human", str(run / "human.jsonl"), "--human-label", "is_refusal", *codes, "--out", str(run / "by_risk")]),
    ]
    for module, argv in steps:
        code, _, err = run_cli(module, argv, capsys)
        assert code == 0, (module.__name__, err[-2000:])

    labelled_rows = pd.read_json(run / "labelled.jsonl", lines=True)
    assert len(labelled_rows) == 120 and set(labelled_rows["source"]) == {"dna_responses_vicuna", "dna_responses_gpt4"}
    human = pd.read_json(run / "human.jsonl", lines=True)
    assert human["question"].nunique() == 12 and set(human[INCLUSION]) == {12 / 60}  # 20% of the 60 questions, each with both models
    assert not set(human["question"]) & set(pd.read_json(run / "rest.jsonl", lines=True)["question"])
    by_model = json.loads((run / "agreement" / "agreement.json").read_text())["by_group"]["groups"]
    assert set(by_model) == {"dna_responses_vicuna", "dna_responses_gpt4"}

    result = json.loads((run / "rates" / "disparity.json").read_text())
    assert set(result["rates"]) == {"vicuna", "gpt4"} and set(result["splits"]) == {"risk_area"}  # short names, and the second group
    assert "Training-set overlap: not checked" not in (run / "rates" / "disparity.md").read_text()
    # PPI by hand for one model: the judge's rate over all its outputs plus the inverse-probability-weighted
    # mean of (human - judge) over its human-labelled ones: mean_all(j) + sum_S (h - j) / pi / N.
    gpt4 = labelled_rows[labelled_rows["source"] == "dna_responses_gpt4"]
    judged = (gpt4["judge_label"] == "refusal").astype(float)
    labelled_by_id = human.set_index("combined_id")
    sample = gpt4[gpt4["combined_id"].isin(labelled_by_id.index)]
    correction = ((labelled_by_id.loc[sample["combined_id"], "is_refusal"].to_numpy() == 1).astype(float) - (sample["judge_label"] == "refusal").to_numpy()) / 0.2
    by_hand = judged.mean() + correction.sum() / len(gpt4)
    ppi = result["ppi"]["rates"]["gpt4"]["refusal"]
    assert ppi["n_human"] == 12 and ppi["ppi"]["rate"] == pytest.approx(min(max(by_hand, 0.0), 1.0), abs=1e-9)
    by_risk = json.loads((run / "by_risk" / "disparity.json").read_text())["ppi"]["rates"]
    assert set(by_risk) == {"misinformation", "privacy"} and sum(by_risk[g]["refusal"]["n_human"] for g in by_risk) == len(human) == 24
