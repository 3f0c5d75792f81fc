"""Issue 20, part A, refused in one line: JSON list files that are not lists of records (or too large),
split and filter flags that say nothing or too much, budgets below the strata, samples of samples whose
probabilities would not compose exactly, blind flags out of place, --group-names that do not fit."""
import json

import pytest

from judge import annotate, data, report
from judge.core import records
from judge.kinds.judge_dir import write_training_ids
from tests.badinput import assert_refused
from tests.conftest import module_run

ROWS = [{"id": f"r{i}", "prompt": f"prompt {i // 2}", "response": "I cannot." if i % 3 == 0 else "Sure.", "label": "answer",
         "identity": "muslim" if i % 2 else "white", "source_model": "m1" if i < 6 else "m2"} for i in range(12)]


@pytest.fixture()
def files(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    (d / "good.json").write_text(json.dumps(ROWS), encoding="utf-8")
    (d / "object.json").write_text(json.dumps({"records": ROWS}), encoding="utf-8")
    (d / "number.json").write_text("3", encoding="utf-8")
    (d / "mixed.json").write_text(json.dumps([ROWS[0], "not a record"]), encoding="utf-8")
    (d / "broken.json").write_text('[{"id": "a", "response": "x"},', encoding="utf-8")
    (d / "deep.json").write_text('[{"id": "a", "response": ' + "[" * 100 + "]" * 100 + "}]", encoding="utf-8")
    (d / "one_prompt.jsonl").write_text("".join(json.dumps({**r, "prompt": "same"}) + "\n" for r in ROWS), encoding="utf-8")
    (d / "unknown_sample.jsonl").write_text("".join(json.dumps({**r, "inclusion_probability": 0.5}) + "\n" for r in ROWS), encoding="utf-8")
    # a random sample with its manifest, as judge.data sample writes it: a stratified sample of it would not be exact
    random_rows = [{**r, "inclusion_probability": 0.5} for r in ROWS]
    (d / "random_sample.jsonl").write_text("".join(json.dumps(r) + "\n" for r in random_rows), encoding="utf-8")
    (d / "random_sample.jsonl.manifest.json").write_text(json.dumps(
        {"command": "judge.data", "settings": {"dataset": "sample", "stratify": []}, "counts": {"records": 12},
         "sampling_design": "simple random sample without replacement of n of the N outputs; pi_i = n / N"}))
    judge_dir = d / "judge"
    judge_dir.mkdir()
    write_training_ids(judge_dir, ["m1:r1", "r2"])
    for name in ("m1", "m2"):
        (d / f"{name}.jsonl").write_text("".join(json.dumps({**r, "judge_label": "answer"}) + "\n" for r in ROWS), encoding="utf-8")
        (d / f"{name}.jsonl.manifest.json").write_text(json.dumps(
            {"command": "judge.label", "settings": {"prefix": "judge_"}, "judge": {"kind": "tfidf", "directory": str(judge_dir)}}))
    (d / "human.jsonl").write_text("".join(json.dumps({"combined_id": f"m{k}:r{i}", "label": "answer"}) + "\n"
                                           for k in (1, 2) for i in range(6)), encoding="utf-8")
    # issue 31 (8e): the judge's labelled file through judge.data filter, then split; the outputs' manifests carry
    # the judge, so judge.report --human still refuses its training label r2 among the human labels
    assert module_run(data, ["filter", str(d / "m1.jsonl"), "--drop", "id=r1", "--out", str(d / "kept.jsonl")]) == 0
    assert module_run(data, ["split", str(d / "kept.jsonl"), "--keep", "id=r2,r3,r4,r5", "--out", str(d / "side.jsonl"),
                             "--rest", str(d / "rest.jsonl")]) == 0
    return d


G, GJ = "{d}/good.jsonl", "{d}/good.json"
OUT, REST = "{t}/out.jsonl", "{t}/rest.jsonl"
REPORT = ["--label", "label", "--group", "identity", "--out", "{t}/report"]

CASES = [
    # JSON list files: bounded and validated like every user file
    (data, ["filter", "{d}/object.json", "--keep", "identity=white", "--out", OUT], ["object.json holds an object", "[{...}, {...}]"]),
    (data, ["filter", "{d}/number.json", "--keep", "identity=white", "--out", OUT], ["holds a number", "JSON list of records"]),
    (data, ["filter", "{d}/mixed.json", "--keep", "identity=white", "--out", OUT], ["item 2 of the list is not a JSON object", "one record"]),
    (data, ["filter", "{d}/broken.json", "--keep", "identity=white", "--out", OUT], ["broken.json: not valid JSON", "save it as JSONL"]),
    (data, ["filter", "{d}/deep.json", "--keep", "identity=white", "--out", OUT], ["levels deep", "flatten"]),
    (report, ["{d}/good.json", *REPORT, "--max-json"], ["unrecognized arguments"]),
    # split and filter
    (data, ["split", G, "--fraction", "0.5", "--out", OUT], ["add --rest FILE"]),
    (data, ["filter", G, "--out", OUT], ["needs --keep COL=V, --drop COL=V or --fraction P"]),
    (data, ["filter", G, "--keep", "identity", "--out", OUT], ["is not COL=VALUE", "--keep model=gpt4"]),
    (data, ["filter", G, "--keep", "=white", "--out", OUT], ["is not COL=VALUE"]),
    (data, ["filter", G, "--keep", "identity=whyte", "--out", OUT], ["no record has the value 'whyte'", "values present", "white"]),
    (data, ["filter", G, "--keep", "region=eu", "--out", OUT], ["'region'", "not found", "--keep"]),
    (data, ["filter", G, "--keep", "identity=white", "--drop", "identity=white", "--out", OUT], ["no record is kept"]),
    (data, ["split", G, "--keep", "identity=white,muslim", "--out", OUT, "--rest", REST], ["--rest would be empty"]),
    (data, ["filter", G, "--fraction", "1.5", "--out", OUT], ["--fraction must be in (0, 1)"]),
    (data, ["filter", G, "--fraction", "0", "--out", OUT], ["--fraction must be in (0, 1)"]),
    (data, ["filter", "{d}/one_prompt.jsonl", "--fraction", "0.5", "--out", OUT], ["at least two groups", "--group"]),
    (data, ["filter", G, "--fraction", "0.5", "--group", "region", "--out", OUT], ["'region'", "--group"]),
    (data, ["split", G, "--fraction", "0.5", "--out", OUT, "--rest", OUT], ["--rest and --out are the same file"]),
    (data, ["split", G, "--fraction", "0.5", "--out", OUT, "--rest", G], ["input"]),
    (data, ["filter", G, "--keep", "identity=white", "--blind", "--out", OUT], ["--blind", "do(es) not apply to 'filter'"]),
    (data, ["sample", G, "--n", "3", "--rest", REST, "--out", OUT], ["--rest", "do(es) not apply to 'sample'"]),
    (data, ["sample", G, "--n", "3", "--keep", "identity=white", "--out", OUT], ["--keep", "do(es) not apply to 'sample'"]),
    (data, ["filter", "{d}/unknown_sample.jsonl", "--fraction", "0.5", "--out", OUT], ["already have a column 'inclusion_probability'",
                                                                                        "full records"]),
    # sampling: budgets, blind sheets, samples of samples
    (data, ["sample", G, "--n", "1", "--stratify", "identity", "--out", OUT], ["budget of 1 is below the 2 strata", "raise it to 2"]),
    (annotate, ["export", G, "--strategy", "stratified", "--by", "identity", "--budget", "1", "--taxonomy", "refusal2", "--out", "{t}/round"],
     ["budget of 1 is below the 2 strata"]),
    (data, ["sample", G, "--n", "3", "--label-column", "label", "--out", OUT], ["already have a column 'label'", "--label-column NAME", "--blind"]),
    (data, ["sample", G, "--n", "3", "--label-column", " ", "--out", OUT], ["--label-column needs a column name"]),
    (data, ["sample", G, "--n", "3", "--hide", "identity", "--out", OUT], ["--hide (it needs --blind)", "add --blind"]),
    (data, ["sample", "{d}/unknown_sample.jsonl", "--n", "3", "--out", OUT], ["no manifest of the sample", "full records"]),
    (data, ["sample", "{d}/random_sample.jsonl", "--n", "4", "--stratify", "identity", "--out", OUT],
     ["is a random sample", "not exact", "drop --stratify"]),
    (data, ["sample", "{d}/random_sample.jsonl", G, "--n", "4", "--out", OUT], ["one input file and no --exclude"]),
    # judge.report: several inputs, group names
    (report, [G, *REPORT, "--group-names", "white"], ["is not OLD=NEW", "auto"]),
    (report, [G, *REPORT, "--group-names", "white=W,=M"], ["is not OLD=NEW"]),
    (report, [G, *REPORT, "--group-names", "whyte=W"], ["'whyte'", "no --group column has that value", "white"]),
    (report, [G, *REPORT, "--group-names", "white=muslim"], ["two groups", "'muslim'", "its own name"]),
    (report, ["{d}/m1.jsonl", "{d}/m2.jsonl", "--label", "judge_label", "--group", "identity", "--human", "{d}/human.jsonl",
              "--taxonomy", "compliance3", "--label-map", "answer=full compliance", "--out", "{t}/report"],
     ["1 of the 12 human-labelled outputs were used to train the judge", "m1:r1", "label a fresh sample"]),
    (report, ["{d}/kept.jsonl", "--label", "judge_label", "--group", "identity", "--human", "label", "--taxonomy", "compliance3",
              "--label-map", "answer=full compliance", "--out", "{t}/report"],
     ["1 of the 11 human-labelled outputs were used to train the judge in judge", "'r2'"]),
    (report, ["{d}/side.jsonl", "--label", "judge_label", "--group", "identity", "--human", "label", "--taxonomy", "compliance3",
              "--label-map", "answer=full compliance", "--out", "{t}/report"],
     ["1 of the 4 human-labelled outputs were used to train the judge in judge", "'r2'"]),
]


@pytest.mark.parametrize("module,argv,fragments", CASES, ids=[f"{m.__name__.split('.')[-1]}-{i}" for i, (m, _, _) in enumerate(CASES)])
def test_bad_input_is_refused_in_one_line(module, argv, fragments, files, tmp_path, capsys):
    argv = [a.format(d=files, t=tmp_path) for a in argv]
    assert_refused(module, argv, fragments, root=tmp_path, capsys=capsys)


def test_a_json_list_too_large_is_refused_before_it_is_parsed(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(records, "MAX_JSON_LIST_BYTES", 100)  # the real bound is 1 GiB; the file here is ~1.6 kB
    line = assert_refused(data, ["filter", str(files / "good.json"), "--keep", "identity=white", "--out", str(tmp_path / "o.jsonl")],
                          ["good.json is", "MiB a JSON list may hold", "convert it to JSONL"], root=tmp_path, capsys=capsys)
    assert "(it is parsed whole)" in line
