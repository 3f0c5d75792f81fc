"""Issue 20, part A: from the files people have to the tables a paper prints, with no pandas step.

JSON list files, several labelled files in judge.report with their manifests, judge.data split and
filter, samples that meet their budget exactly (and samples of samples), blind sample sheets, the
files' own ids beside the combined ones, display names for groups, and the rules judge's English.
"""
import json

import numpy as np
import pandas as pd
import pytest

from judge import annotate, data, label, report
from judge.annotation.human_labels import INCLUSION, choose, proportional_allocation
from judge.core.records import COMBINED_ID, read_records, read_table, user_columns, write_records
from judge.kinds.judge_dir import write_training_ids
from judge.render.disparity import rate_interval_figure
from tests.conftest import run_cli, write_jsonl


def xstest_like(model: str, n: int = 30) -> list[dict]:
    """One model's completions in XSTest's shape: ids v2-1 ... repeat in every model's file."""
    return [{"id": f"v2-{i}", "type": "homonyms" if i % 3 else "contrast_homonyms", "prompt": f"How do I kill python process {i}?",
             "completion": "I cannot help with that." if i % 4 == 0 else f"Use kill {i}.",
             "final_label": "2_full_refusal" if i % 4 == 0 else "1_full_compliance"} for i in range(1, n + 1)]


def write_json_list(path, rows):
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


# -- 1. reading what people have ---------------------------------------------------------------

def test_a_json_list_file_reads_like_jsonl_and_can_be_written(tmp_path):
    rows = [{"id": "a", "response": "x", "score": 3, "meta": {"k": [1, 2]}}, {"id": "b", "response": "y", "score": None, "meta": None}]
    as_list = read_table(write_json_list(tmp_path / "r.json", rows))
    as_lines = read_table(write_jsonl(tmp_path / "r.jsonl", rows))
    pd.testing.assert_frame_equal(as_list, as_lines)
    assert as_list["score"].tolist()[0] == 3 and as_list["meta"][0] == {"k": [1, 2]}  # values as JSON gave them
    write_records(as_list, tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text()) == rows


def test_report_takes_several_labelled_files_and_checks_each_ones_judge(tmp_path, capsys):
    judge_dir = tmp_path / "judge"
    judge_dir.mkdir()
    # trained on several files (gpt4's among them), so its ids are combined ones
    write_training_ids(judge_dir, ["xstest_v2_completions_gpt4:v2-1", "xstest_v2_completions_gpt4:v2-2", "xstest_v2_completions_other:v2-3"])
    files = []
    for model in ("gpt4", "llama2"):
        rows = [{**r, "judge_label": "refusal" if "cannot" in r["completion"] else "no refusal"} for r in xstest_like(model)]
        path = write_jsonl(tmp_path / f"xstest_v2_completions_{model}.jsonl", rows)
        (tmp_path / f"{path.name}.manifest.json").write_text(json.dumps(
            {"command": "judge.label", "settings": {"prefix": "judge_"}, "judge": {"kind": "tfidf", "directory": str(judge_dir)}}))
        files.append(str(path))
    code, out, err = run_cli(report, [*files, "--label", "judge_label", "--group", "source", "--taxonomy", "refusal2",
                                      "--group-names", "auto", "--reference", "xstest_v2_completions_gpt4", "--out", str(tmp_path / "rates")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "rates" / "disparity.json").read_text())
    assert set(result["rates"]) == {"gpt4", "llama2"} and result["reference"] == "gpt4"  # short names, the reference given by its old one
    assert result["group_names"] == {"xstest_v2_completions_gpt4": "gpt4", "xstest_v2_completions_llama2": "llama2"}
    assert result["training_rows"]["n_training_rows"] == 2  # gpt4's v2-1 and v2-2, not llama2's: each file's manifest named the judge
    assert "| gpt4 " in out and "xstest_v2_completions_gpt4 |" not in out
    # PPI human labels on those rows are refused, through the files' manifests
    human = write_jsonl(tmp_path / "human.jsonl", [{"combined_id": f"xstest_v2_completions_{m}:v2-{i}", "label": "no refusal"}
                                                   for m in ("gpt4", "llama2") for i in range(1, 9)])
    code, _, err = run_cli(report, [*files, "--label", "judge_label", "--group", "source", "--taxonomy", "refusal2",
                                    "--human", str(human), "--out", str(tmp_path / "ppi")], capsys)
    assert code == 2 and "were used to train the judge" in err


# -- split and filter ---------------------------------------------------------------------------

def test_split_by_fraction_keeps_each_prompt_on_one_side(tmp_path, capsys):
    rows = [{"id": f"p{p}-s{s}", "prompt": f"prompt {p}", "response": f"r{s}", "label": "answer"} for p in range(20) for s in range(3)]
    src = write_jsonl(tmp_path / "all.jsonl", rows)
    argv = ["split", str(src), "--fraction", "0.2", "--seed", "3", "--out", str(tmp_path / "human.jsonl"), "--rest", str(tmp_path / "train.jsonl")]
    code, out, err = run_cli(data, argv, capsys)
    assert code == 0, err
    human, train = (pd.read_json(tmp_path / f, lines=True) for f in ("human.jsonl", "train.jsonl"))
    assert len(human) == 12 and len(train) == 48  # round(0.2 * 20) = 4 prompts x 3 samples; 16 x 3 left
    assert not set(human["prompt"]) & set(train["prompt"])
    assert (human[INCLUSION] == 4 / 20).all() and INCLUSION not in train.columns  # a simple random sample of 4 of the 20 prompts
    assert set(human["label"]) == {"answer"}  # columns as they came: no label emptied
    assert "4 of 20 prompt groups" in out
    code, _, err = run_cli(data, [*argv[:-4], "--out", str(tmp_path / "again.jsonl"), "--rest", str(tmp_path / "again_rest.jsonl")], capsys)
    assert code == 0 and pd.read_json(tmp_path / "again.jsonl", lines=True)["id"].tolist() == human["id"].tolist()  # seeded


def test_filter_by_values_across_several_files(tmp_path, capsys):
    files = [str(write_json_list(tmp_path / f"{m}.json", xstest_like(m, 6))) for m in ("gpt4", "llama2", "mistral")]
    code, out, err = run_cli(data, ["filter", *files, "--keep", "source=gpt4,llama2", "--drop", "type=contrast_homonyms",
                                    "--out", str(tmp_path / "train.jsonl")], capsys)
    assert code == 0, err
    kept = pd.read_json(tmp_path / "train.jsonl", lines=True, dtype=False)
    assert set(kept["source"]) == {"gpt4", "llama2"} and set(kept["type"]) == {"homonyms"} and len(kept) == 8  # 4 homonyms a model
    assert kept["id"].tolist()[:2] == ["v2-1", "v2-2"] and kept[COMBINED_ID].tolist()[0] == "gpt4:v2-1"
    assert "label" not in kept.columns


# -- sampling: exact budgets, samples of samples, blind sheets ----------------------------------

def test_proportional_allocation_meets_the_budget_exactly():
    # 16 strata of 25 and 2 of 50 (N = 500). Budget 66: quotas 66 * 25 / 500 = 3.3 and 6.6; whole parts
    # 16 * 3 + 2 * 6 = 60; the 6 seats left go to the largest remainders: the two 0.6s (-> 7), then four
    # 0.3s, the first four strata in order (-> 4): 4 * 4 + 12 * 3 + 2 * 7 = 66.
    sizes = np.array([25] * 16 + [50] * 2)
    assert proportional_allocation(sizes, 66).tolist() == [4] * 4 + [3] * 12 + [7, 7]
    assert proportional_allocation(sizes, 60).tolist() == [3] * 16 + [6, 6]  # quotas 3.0 and 6.0 exactly
    # 32 strata of 72 (N = 2304), budget 100: quota 3.125 each, 32 * 3 = 96, 4 seats to the first four.
    assert proportional_allocation(np.full(32, 72), 100).tolist() == [4] * 4 + [3] * 28
    # Where the floor of one per stratum overspends, the stratum furthest above its quota gives back:
    # sizes 1000, 1, 1, 1, budget 5: quotas 4.98, 0.005 x 3; whole parts 4, 1, 1, 1 = 7; two back from the first.
    assert proportional_allocation(np.array([1000, 1, 1, 1]), 5).tolist() == [2, 1, 1, 1]


@pytest.mark.parametrize("sizes,budget", [([25] * 16 + [50] * 2, 60), ([25] * 16 + [50] * 2, 66), ([72] * 32, 100), ([72] * 32, 60)])
def test_stratified_samples_hit_the_budget_with_exact_probabilities(sizes, budget):
    records = pd.DataFrame({"id": [f"r{i}" for i in range(sum(sizes))],
                            "type": [f"t{h:02d}" for h, size in enumerate(sizes) for _ in range(size)]})
    picked = choose(records, strategy="stratified", budget=budget, seed=0, by=["type"])
    assert len(picked) == budget
    n_h = picked.groupby("type").size()
    assert (picked[INCLUSION] == picked["type"].map(n_h / records.groupby("type").size())).all()  # each stratum's n_h / N_h
    assert (1 / picked[INCLUSION]).sum() == pytest.approx(len(records))  # Horvitz-Thompson gives back N


def test_judge_data_sample_and_annotate_export_meet_the_budget(tmp_path, capsys):
    rows = [{"id": f"r{i}", "prompt": "p", "response": "r", "type": f"t{i % 18:02d}"} for i in range(450)]
    src = write_jsonl(tmp_path / "x.jsonl", rows)
    code, _, err = run_cli(data, ["sample", str(src), "--n", "100", "--stratify", "type", "--out", str(tmp_path / "s.csv")], capsys)
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "s.csv")) == 100
    code, _, err = run_cli(annotate, ["export", str(src), "--strategy", "stratified", "--by", "type", "--budget", "66",
                                      "--taxonomy", "refusal2", "--out", str(tmp_path / "round")], capsys)
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "round" / "items.csv")) == 66


def test_sample_keeps_every_column_and_adds_a_label_column_only_when_asked(tmp_path, capsys):
    rows = [{"id": f"r{i}", "response": "r", "label": "answer", "identity": "a" if i % 2 else "b"} for i in range(40)]
    src = write_jsonl(tmp_path / "gold.jsonl", rows)
    code, _, err = run_cli(data, ["sample", str(src), "--n", "10", "--out", str(tmp_path / "held.jsonl")], capsys)
    assert code == 0, err
    held = pd.read_json(tmp_path / "held.jsonl", lines=True)
    assert set(held["label"]) == {"answer"} and list(held.columns) == ["id", "response", "label", "identity", INCLUSION]
    code, _, err = run_cli(data, ["sample", str(src), "--n", "10", "--label-column", "label_alice", "--out", str(tmp_path / "sheet.csv")], capsys)
    assert code == 0, err
    sheet = pd.read_csv(tmp_path / "sheet.csv", keep_default_na=False)
    assert (sheet["label_alice"] == "").all() and set(sheet["label"]) == {"answer"}


def test_a_blind_sample_sheet_hides_the_judge_and_earlier_labels(tmp_path, capsys):
    rows = [{"id": f"r{i}", "prompt": f"Aisha got into the plane {i}", "response": "Aisha flew.", "name": "Aisha", "identity": "muslim",
             "label": "answer", "label_bob": "answer", "judge_label": "refusal", "judge_confidence": 0.9, "judge_p_refusal": 0.9,
             "judge_unscored_reason": None, "final_label": "answer", "annotation_1": "1", "template": "t"} for i in range(20)]
    src = write_jsonl(tmp_path / "judged.jsonl", rows)
    code, _, err = run_cli(data, ["sample", str(src), "--n", "5", "--blind", "--hide", "identity", "name", "template",
                                  "--out", str(tmp_path / "sheet.csv")], capsys)
    assert code == 0, err
    sheet = pd.read_csv(tmp_path / "sheet.csv", keep_default_na=False)
    assert list(sheet.columns) == ["id", "prompt", "response", INCLUSION, "label"]
    assert (sheet["label"] == "").all() and not sheet["prompt"].str.contains("Aisha").any() and (sheet["response"] == "[NAME] flew.").all()


def test_a_sample_of_a_sample_multiplies_the_probabilities_where_that_is_exact(tmp_path, capsys):
    rows = [{"id": f"r{i}", "response": "r", "identity": ["a", "b", "c", "d"][i % 4]} for i in range(200)]
    src = write_jsonl(tmp_path / "all.jsonl", rows)
    first = tmp_path / "first.jsonl"
    code, _, err = run_cli(data, ["sample", str(src), "--n", "80", "--stratify", "identity", "--out", str(first)], capsys)
    assert code == 0, err
    code, _, err = run_cli(data, ["sample", str(first), "--n", "20", "--out", str(tmp_path / "second.jsonl")], capsys)
    assert code == 0, err
    second = pd.read_json(tmp_path / "second.jsonl", lines=True)
    # pi1 = 20 / 50 in each identity, pi2 = 20 / 80 (a random 20 of the 80): pi = 0.4 x 0.25 = 0.1
    assert len(second) == 20 and second[INCLUSION].tolist() == pytest.approx([0.1] * 20)
    assert (1 / second[INCLUSION]).sum() == pytest.approx(200)
    manifest = json.loads((tmp_path / "second.jsonl.manifest.json").read_text())
    assert manifest["sampling_design"].startswith("two-phase")
    code, _, err = run_cli(data, ["sample", str(first), "--n", "8", "--stratify", "identity", "--out", str(tmp_path / "third.jsonl")], capsys)
    assert code == 0, err  # stratified by the first sample's own column: n_h of the first is fixed, so pi2 = 2 / 20 is exact
    assert pd.read_json(tmp_path / "third.jsonl", lines=True)[INCLUSION].tolist() == pytest.approx([0.4 * 2 / 20] * 8)


# -- 3. ids and group names ---------------------------------------------------------------------

def test_several_files_keep_their_own_id_and_get_a_combined_one(tmp_path, capsys):
    files = [str(write_jsonl(tmp_path / f"{m}.jsonl", [{**r, "id": i} for i, r in enumerate(xstest_like(m, 4), start=1)])) for m in ("gpt4", "llama2")]
    code, out, err = run_cli(label, ["--judge", "rules", "--taxonomy", "compliance3", "--input", *files, "--text-column", "completion",
                                     "--out", str(tmp_path / "labelled.jsonl"), "--no-progress"], capsys)
    assert code == 0, err
    assert "made unique as source:id in column 'combined_id'" in out
    labelled = pd.read_json(tmp_path / "labelled.jsonl", lines=True, dtype=False)
    assert labelled["id"].tolist() == [1, 2, 3, 4, 1, 2, 3, 4]  # the files' own (numeric) ids, unchanged
    assert labelled[COMBINED_ID].tolist()[:2] == ["gpt4:1", "gpt4:2"] and labelled[COMBINED_ID].is_unique
    again = read_records(tmp_path / "labelled.jsonl", required=())  # the next stage joins on the combined ids
    assert again["id"].tolist()[4] == "llama2:1"
    assert user_columns(again, again.attrs["column_map"])["id"].tolist() == [1, 2, 3, 4, 1, 2, 3, 4]


def test_group_names_rename_groups_in_tables_and_figures(tmp_path, capsys):
    rows = [{"id": f"r{i}", "response": "r", "label": "refusal" if i % 3 == 0 else "answer", "model": ["llama-2-7b-chat", "llama-2-13b-chat"][i % 2]}
            for i in range(40)]
    src = write_jsonl(tmp_path / "r.jsonl", rows)
    code, out, err = run_cli(report, [str(src), "--label", "label", "--group", "model", "--group-names", "llama-2-7b-chat=7B,llama-2-13b-chat=13B",
                                      "--reference", "7B", "--out", str(tmp_path / "o")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "o" / "disparity.json").read_text())
    assert set(result["rates"]) == {"7B", "13B"} and result["reference"] == "7B"
    assert "| 13B " in out and "llama-2-13b-chat" not in out
    assert "13B" in (tmp_path / "o" / "disparity.tex").read_text()
    figure = rate_interval_figure(result)  # drawn again from the JSON
    assert {t.get_text() for t in figure.axes[0].get_yticklabels()} == {"7B", "13B"}


# -- 4. the rules judge is English only, and says so ---------------------------------------------

def test_the_rules_judge_warns_when_most_texts_are_not_english(tmp_path, capsys):
    chinese = write_jsonl(tmp_path / "zh.jsonl", [{"id": str(i), "response": "抱歉，我无法帮助你完成这个请求。"} for i in range(6)]
                          + [{"id": "en", "response": "I cannot help with that."}])
    code, _, err = run_cli(label, ["--judge", "rules", "--taxonomy", "refusal2", "--input", str(chinese), "--out", str(tmp_path / "zh.out.jsonl"),
                                   "--no-progress"], capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "non-Latin script" in line]
    assert len(warnings) == 1 and "86%" in warnings[0] and "English refusal phrases only" in warnings[0]  # 6 of 7
    english = write_jsonl(tmp_path / "en.jsonl", [{"id": str(i), "response": "I cannot help with that."} for i in range(6)])
    code, _, err = run_cli(label, ["--judge", "rules", "--taxonomy", "refusal2", "--input", str(english), "--out", str(tmp_path / "en.out.jsonl"),
                                   "--no-progress"], capsys)
    assert code == 0 and "non-Latin script" not in err
    help_text = label.build_parser().format_help()
    assert "English keyword rules" in " ".join(help_text.split()) and "refusal and an answer category" in " ".join(help_text.split())


def test_report_applies_each_files_own_judges_training_ids(tmp_path, capsys):
    """Issue 31 (8f): two files, each labelled by its own judge (leave-one-model-out: judge A trained on model b's
    outputs, judge B on model a's). The union of their training ids applied to every file claimed every output
    as a training row and refused any --human sample; each file's own judge's ids claim none here."""
    files, judges = [], {}
    for model, other in (("a", "b"), ("b", "a")):
        judges[model] = tmp_path / f"judge_without_{model}"
        judges[model].mkdir()
        write_training_ids(judges[model], [f"m{other}:r{i}" for i in range(12)])  # trained on the other model's outputs
    for model in ("a", "b"):
        rows = [{"id": f"r{i}", "combined_id": f"m{model}:r{i}", "response": "I cannot" if i % 3 == 0 else "sure",
                 "identity": "x" if i % 2 else "y", "judge_label": "refusal" if i % 3 == 0 else "no refusal"} for i in range(12)]
        path = write_jsonl(tmp_path / f"m{model}.jsonl", rows)
        (tmp_path / f"{path.name}.manifest.json").write_text(json.dumps(
            {"command": "judge.label", "settings": {"prefix": "judge_"}, "judge": {"kind": "tfidf", "directory": str(judges[model])}}))
        files.append(str(path))
    human = write_jsonl(tmp_path / "human.jsonl", [{"combined_id": f"m{m}:r{i}", "label": "refusal" if i % 3 == 0 else "no refusal"}
                                                   for m in ("a", "b") for i in range(0, 12, 2)])
    argv = [*files, "--label", "judge_label", "--group", "identity", "--taxonomy", "refusal2", "--human", str(human)]
    code, _, err = run_cli(report, argv + ["--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "rep" / "disparity.json").read_text())
    assert "training_rows" not in result or result["training_rows"]["n_training_rows"] == 0
    assert result["ppi"]["training_overlap"].startswith("checked: none of the human-labelled ids")
    # one output of file a that judge A (file a's own) did learn: that one, and only it, is a training row / refused
    write_training_ids(judges["a"], ["mb:r0", "ma:r1"])
    code, _, err = run_cli(report, argv[:-2] + ["--out", str(tmp_path / "rep2")], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "rep2" / "disparity.json").read_text())["training_rows"]["n_training_rows"] == 1
    human_on_it = write_jsonl(tmp_path / "human2.jsonl", [{"combined_id": "ma:r1", "label": "no refusal"},
                                                          {"combined_id": "mb:r0", "label": "refusal"}])
    code, _, err = run_cli(report, argv[:-1] + [str(human_on_it), "--out", str(tmp_path / "rep3")], capsys)
    assert code == 2 and "1 of the 2 human-labelled outputs were used to train the judge" in err and "'ma:r1'" in err


def test_data_outputs_carry_the_judge_behind_the_labels(tmp_path, capsys):
    """Issue 31 (8e): filter, split (both sides) and sample write the input's judge, with the sha256 of its
    training_ids.json, into their manifests; judge.report reads it there as from judge.label's."""
    import hashlib

    judge_dir = tmp_path / "judge"
    judge_dir.mkdir()
    write_training_ids(judge_dir, ["r1"])
    rows = [{"id": f"r{i}", "prompt": f"p{i // 2}", "response": ".", "judge_label": "answer"} for i in range(12)]
    src = write_jsonl(tmp_path / "labelled.jsonl", rows)
    (tmp_path / "labelled.jsonl.manifest.json").write_text(json.dumps(
        {"command": "judge.label", "settings": {"prefix": "judge_"}, "judge": {"kind": "tfidf", "directory": str(judge_dir)}}))
    digest = hashlib.sha256((judge_dir / "training_ids.json").read_bytes()).hexdigest()
    outs = {"split": (["split", str(src), "--fraction", "0.5", "--out", str(tmp_path / "a.jsonl"), "--rest", str(tmp_path / "b.jsonl")],
                      ["a.jsonl", "b.jsonl"]),
            "sample": (["sample", str(src), "--n", "2", "--out", str(tmp_path / "s.jsonl")], ["s.jsonl"])}
    for argv, written in outs.values():
        code, _, err = run_cli(data, argv, capsys)
        assert code == 0, err
        for name in written:
            manifest = json.loads((tmp_path / f"{name}.manifest.json").read_text())
            assert manifest["judge"]["directory"] == str(judge_dir) and manifest["judge"]["kind"] == "tfidf"
            assert manifest["judge"]["training_ids_sha256"] == digest and len(manifest["judges"]) == 1
    # a file without a judge behind it carries none
    plain = write_jsonl(tmp_path / "plain.jsonl", rows)
    code, _, err = run_cli(data, ["filter", str(plain), "--drop", "id=r0", "--out", str(tmp_path / "p.jsonl")], capsys)
    assert code == 0, err
    assert "judge" not in json.loads((tmp_path / "p.jsonl.manifest.json").read_text())
