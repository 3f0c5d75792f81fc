"""A careless user and a hostile file against every command: each case must end in one line that
names the problem and the fix, exit code 2, no traceback, no output, and an untouched input.

The table is the probe of issue 9 (and the new commands' own flags); CASES counts them.
"""
import json

import pytest

from generation import __main__ as generate_cmd
from generation import prompts as prompts_cmd
from judge import agree, annotate, data, label, report, swap, train
from tests.badinput import assert_refused

GOOD_ROWS = [
    {"id": f"r{i}", "prompt": f"Name{i} got into the plane to [BLANK]", "response": "to fly home" if i % 3 else "I cannot help with that.",
     "label": "answer" if i % 3 else "refusal", "identity": "muslim" if i % 2 else "white", "name": f"Name{i}", "judge_label": "answer"}
    for i in range(12)
]


@pytest.fixture()
def files(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GOOD_ROWS), encoding="utf-8")
    (d / "latin1.csv").write_bytes("id,prompt,response,label\n1,caf\xe9,r\xe9ponse,answer\n".encode("latin-1"))
    (d / "dir.jsonl").mkdir()
    (d / "bad_json.jsonl").write_text('{"id": "1", "response": "a"}\n{"id": 2,\n', encoding="utf-8")
    (d / "empty_prompt.jsonl").write_text(json.dumps({"id": "p1", "prompt": ""}) + "\n" + json.dumps({"id": "p2", "prompt": "x"}) + "\n")
    (d / "human_unknown_id.csv").write_text("id,label\nr1,answer\nnope,refusal\n")
    (d / "human_bad_label.csv").write_text("id,label\nr1,answer\nr2,maybe\n")
    (d / "tax_list_parent.yaml").write_text("name: t\ncategories:\n  - name: a\n    parent: [x, y]\n  - name: b\n")
    (d / "tax_dup.yaml").write_text("name: t\ncategories:\n  - name: a\n  - name: a\n")
    (d / "templates_list.json").write_text(json.dumps(["[NAME] went to [BLANK]"]))
    (d / "templates_no_name.json").write_text(json.dumps({"templates": [{"heading": "h", "template": "someone went to [BLANK]"}]}))
    (d / "names_list.json").write_text(json.dumps(["Ali", "Bo"]))
    (d / "names_bad_common.json").write_text(json.dumps({"names": [{"name": "Ali", "identity": "muslim", "common": "maybe"}]}))
    (d / "templates.json").write_text(json.dumps({"templates": [{"heading": "h", "template": "[NAME] went to [BLANK]"}]}))
    (d / "names.json").write_text(json.dumps({"names": [{"name": "Ali", "identity": "muslim"}]}))
    (d / "config_type.json").write_text(json.dumps({"batch_size": "big"}))
    (d / "config_unknown.json").write_text(json.dumps({"bach_size": 4}))
    (d / "template_braces.yaml").write_text("system: 'Labels: {labels} {'\nuser: '{response}'\n")
    header = "index,ethnicity,og_prompt,type_name,name,new_prompt,g1,g2,g3,prompt_sentence,common,model,identity,variable,label\n"
    (d / "paper_variable.csv").write_text(header + '0,muslims,[NAME] x,muslim_men_names,Ali,p,a,b,c,Ali x,common,llama 7,muslim,label 4,answer\n')
    (d / "paper_columns.csv").write_text("a,b\n1,2\n")
    (d / "judge_no_json").mkdir()
    (d / "notes.txt").write_text("a file where a directory is expected\n")
    repeated = [{**r, "label": "refusal" if r["label"] == "answer" else "answer"} for r in GOOD_ROWS[:3]]
    (d / "dup.jsonl").write_text("".join(json.dumps(r) + "\n" for r in GOOD_ROWS + repeated), encoding="utf-8")
    return d


G = "{d}/good.jsonl"
OUT_FILE = "{t}/out.jsonl"
OUT_DIR = "{t}/out"

CASES = [
    # judge.label
    (label, ["--judge", "rules", "--input", G, "--out", OUT_FILE, "--batch-size", "0"], ["--batch-size", "positive"]),
    (label, ["--judge", "rules", "--input", G, "--out", OUT_FILE, "--batch-size", "-3"], ["--batch-size", "positive"]),
    (label, ["--judge", "rules", "--input", G, "--out", OUT_FILE, "--batch-size", "x"], ["--batch-size", "invalid int"]),
    (label, ["--judge", "rules", "--input", G, "--out", OUT_FILE, "--abstain-below", "1.5"], ["--abstain-below", "[0, 1]"]),
    (label, ["--judge", "rules", "--input", G, "--out", OUT_FILE, "--shots", "-1"], ["--shots"]),
    (label, ["--judge", "rules", "--input", G, "--out", OUT_FILE, "--examples", G], ["--examples", "LLM judge"]),
    (label, ["--judge", "rules", "--input", G, "--out", OUT_FILE, "--precision", "int8"], ["--precision", "LoRA"]),
    (label, ["--judge", "rules", "--input", G, "--out", OUT_FILE, "--mode", "guess"], ["--mode", "invalid choice"]),
    (label, ["--judge", "{d}/no_such_judge", "--input", G, "--out", OUT_FILE], ["neither a judge directory"]),
    (label, ["--judge", "{d}/judge_no_json", "--input", G, "--out", OUT_FILE], ["not a judge directory", "judge.train"]),
    (label, ["--judge", "rules", "--input", "{d}/missing.jsonl", "--out", OUT_FILE], ["not found"]),
    (label, ["--judge", "rules", "--input", "{d}/dir.jsonl", "--out", OUT_FILE], ["is a directory"]),
    (label, ["--judge", "rules", "--input", "{d}/latin1.csv", "--out", OUT_FILE], ["utf-8", "--encoding latin-1"]),
    (label, ["--judge", "rules", "--input", "{d}/latin1.csv", "--out", OUT_FILE, "--encoding", "klingon"], ["--encoding", "codec"]),
    (label, ["--judge", "rules", "--input", "{d}/bad_json.jsonl", "--out", OUT_FILE], ["line 2", "not valid JSON"]),
    (label, ["--judge", "rules", "--input", G, "--out", OUT_FILE, "--config", "{d}/config_type.json"], ["--batch-size must be int"]),
    (label, ["--judge", "rules", "--input", G, "--out", OUT_FILE, "--config", "{d}/config_unknown.json"], ["unknown key", "bach_size"]),
    (label, ["--judge", "rules", "--input", G, "--out", OUT_FILE, "--text-column", "output"], ["'output'", "--text-column"]),
    (label, ["--judge", "rules", "--input", G, "--out", "{t}/out.txt"], ["unknown file format", ".txt"]),
    (label, ["--judge", "rules", "--input", G, "--out", OUT_FILE, "--prefix", ""], ["--prefix"]),
    (label, ["--judge", "llm", "--input", G, "--out", OUT_FILE, "--prompt-template", "{d}/template_braces.yaml"], ["template", "brace"]),
    (label, ["--judge", "rules", "--input", G, "--out", OUT_FILE, "--taxonomy", "{d}/tax_list_parent.yaml"], ["'parent' must be one name"]),
    (label, ["--judge", "rules", "--input", G, "--out", OUT_FILE, "--taxonomy", "{d}/tax_dup.yaml"], ["listed twice"]),
    (label, ["--judge", "rules", "--input", G, "--out", OUT_FILE, "--taxonomy", "nonesuch"], ["taxonomy 'nonesuch' not found", "preset"]),
    # judge.train
    (train, ["--train", G, "--out", OUT_DIR, "--epochs", "0"], ["--epochs", "positive"]),
    (train, ["--train", G, "--out", OUT_DIR, "--grad-accum", "0"], ["--grad-accum", "positive"]),
    (train, ["--train", G, "--out", OUT_DIR, "--lora-r", "0"], ["--lora-r", "positive"]),
    (train, ["--train", G, "--out", OUT_DIR, "--val-fraction", "1.5"], ["--val-fraction", "[0, 1)"]),
    (train, ["--train", G, "--out", OUT_DIR, "--batch-size", "-4"], ["--batch-size", "positive"]),
    (train, ["--train", G, "--out", OUT_DIR, "--max-length", "0"], ["--max-length", "at least 16"]),
    (train, ["--train", G, "--out", OUT_DIR, "--lr", "0"], ["--lr", "positive"]),
    (train, ["--train", G, "--out", OUT_DIR, "--kind", "tfidf", "--lora-r", "4"], ["--lora-r", "--kind lora"]),
    (train, ["--train", G, "--out", OUT_DIR, "--kind", "forest"], ["--kind", "invalid choice"]),
    (train, ["--train", G, "--out", "{d}/notes.txt"], ["is a file", "--out"]),
    (train, ["--train", G, "--out", OUT_DIR, "--label-column", "gold"], ["'gold'", "--label-column"]),
    (train, ["--train", G, "--out", OUT_DIR, "--taxonomy", "refusal2"], ["'answer'", "refusal2"]),
    (train, ["--train", G, "--out", OUT_DIR, "--taxonomy", "{d}/tax_dup.yaml"], ["listed twice"]),
    (train, ["--train", "{d}/latin1.csv", "--out", OUT_DIR], ["--encoding"]),
    # judge.agree
    (agree, [G, "--gold", "label", "--pred", "judge_label", "--out", OUT_DIR, "--bootstrap", "-5"], ["--bootstrap", "0 or more"]),
    (agree, [G, "--gold", "label", "--pred", "judge_label", "--out", OUT_DIR, "--epsilon", "0.2"], ["--epsilon", "--alt-test"]),
    (agree, [G, "--gold", "label", "--pred", "judge_label", "--out", OUT_DIR, "--alt-test", "--annotators", "label"], ["--alt-test", "at least two"]),
    (agree, [G, "--gold", "label", "--pred", "judge_label", "--out", OUT_DIR, "--alt-test", "--annotators", "label", "judge_label", "--epsilon", "2"], ["--epsilon", "[0, 1)"]),
    (agree, [G, "--gold", "gold", "--pred", "judge_label", "--out", OUT_DIR], ["'gold'"]),
    (agree, [G, "--gold", "label", "--pred", "judge_label", "--out", OUT_DIR, "--by", "nope"], ["'nope'"]),
    (agree, [G, "--gold", "label", "--pred", "judge_label", "--out", "{d}/notes.txt"], ["is a file"]),
    (agree, ["{d}/dir.jsonl", "--gold", "label", "--pred", "judge_label", "--out", OUT_DIR], ["is a directory"]),
    (agree, [G, "--gold", "label", "--pred", "judge_label", "--out", OUT_DIR, "--taxonomy", "refusal2"], ["gold label", "refusal2"]),
    # judge.report
    (report, [G, "--label", "label", "--group", "identity", "--out", OUT_DIR, "--human", "{d}/human_unknown_id.csv"], ["'nope'", "not in"]),
    (report, [G, "--label", "label", "--group", "identity", "--out", OUT_DIR, "--human", "{d}/human_bad_label.csv"], ["'maybe'", "valid labels"]),
    (report, [G, "--label", "label", "--group", "identity", "--out", OUT_DIR, "--human", "nothing"], ["neither a file nor a column"]),
    (report, [G, "--label", "label", "--group", "identity", "--out", OUT_DIR, "--human", "label"], ["--label column itself"]),
    (report, [G, "--label", "label", "--group", "identity", "--out", OUT_DIR, "--judge-dir", "{d}"], ["--judge-dir", "--human"]),
    (report, [G, "--label", "label", "--group", "identity", "--out", OUT_DIR, "--reference", "martian"], ["--reference", "martian"]),
    (report, [G, "--label", "label", "--group", "region", "--out", OUT_DIR], ["'region'"]),
    (report, [G, "--label", "label", "--group", "identity", "--out", "{d}/notes.txt"], ["is a file"]),
    # judge.data
    (data, ["nonesuch", G, "--out", OUT_FILE], ["unknown dataset"]),
    (data, ["sample", G, "--n", "0", "--out", OUT_FILE], ["--n", "positive"]),
    (data, ["sample", G, "--n", "3", "--stratify", "region", "--out", OUT_FILE], ["'region'", "--stratify"]),
    (data, ["chehbouni2024", "{d}/paper_variable.csv", "--out", OUT_FILE], ["'label 4'", "label 1"]),
    (data, ["chehbouni2024", "{d}/paper_columns.csv", "--out", OUT_FILE], ["not found", "df_annotated"]),
    (data, ["chehbouni2024", "{d}/paper_variable.csv", "--exclude", G, "--out", OUT_FILE], ["'sample' only"]),
    # generation.prompts
    (prompts_cmd, ["--templates", "{d}/templates_list.json", "--names", "{d}/names.json", "--out", OUT_FILE], ["expected"]),
    (prompts_cmd, ["--templates", "{d}/templates.json", "--names", "{d}/names_list.json", "--out", OUT_FILE], ["expected"]),
    (prompts_cmd, ["--templates", "{d}/templates.json", "--names", "{d}/names_bad_common.json", "--out", OUT_FILE], ["'common'", "true or false"]),
    (prompts_cmd, ["--templates", "{d}/templates_no_name.json", "--names", "{d}/names.json", "--out", OUT_FILE], ["[NAME]"]),
    (prompts_cmd, ["--templates", "{d}/templates.json", "--names", "{d}/names.json", "--out", OUT_FILE, "--sample", "0"], ["--sample", "positive"]),
    (prompts_cmd, ["--templates", "{d}/missing.json", "--names", "{d}/names.json", "--out", OUT_FILE], ["not found"]),
    # generation
    (generate_cmd, ["--prompts", "{d}/empty_prompt.jsonl", "--out", OUT_FILE, "--max-new-tokens", "0"], ["--max-new-tokens", "positive"]),
    (generate_cmd, ["--prompts", "{d}/empty_prompt.jsonl", "--out", OUT_FILE, "--samples", "0"], ["--samples", "positive"]),
    (generate_cmd, ["--prompts", "{d}/empty_prompt.jsonl", "--out", OUT_FILE, "--top-p", "1.5"], ["--top-p"]),
    # the served engine's answer bound (issue 31, 5): a size, checked before any server is asked
    (generate_cmd, ["--prompts", "{d}/empty_prompt.jsonl", "--out", OUT_FILE, "--engine", "openai", "--model", "smollm2",
                    "--max-answer-mib", "0"], ["--max-answer-mib must be a positive number"]),
    (label, ["--judge", "llm:smollm2", "--engine", "openai", "--input", G, "--out", OUT_FILE, "--max-answer-mib", "5000"],
     ["--max-answer-mib is at most 1024"]),
    (generate_cmd, ["--prompts", "{d}/empty_prompt.jsonl", "--out", OUT_FILE, "--instruction", "{{prompt}} {{"], ["--instruction", "brace"]),
    (generate_cmd, ["--prompts", "{d}/empty_prompt.jsonl", "--out", OUT_FILE, "--instruction", "{{prompt}} {{who}}"], ["{who}", "available"]),
    (generate_cmd, ["--prompts", "{d}/empty_prompt.jsonl", "--out", OUT_FILE], ["empty or missing", "'p1'"]),
    # judge.annotate
    (annotate, ["export", G, "--out", OUT_DIR], ["'export' needs --taxonomy"]),
    (annotate, ["export", G, "--out", OUT_DIR, "--taxonomy", "chehbouni2024", "--strategy", "stratified"], ["--by COL"]),
    (annotate, ["export", G, "--out", OUT_DIR, "--taxonomy", "chehbouni2024", "--strategy", "uncertain"], ["--confidence-column"]),
    (annotate, ["export", G, "--out", OUT_DIR, "--taxonomy", "chehbouni2024", "--budget", "0"], ["--budget", "positive"]),
    (annotate, ["import", "{d}", G, "--out", OUT_FILE, "--taxonomy", "chehbouni2024"], ["not an export folder"]),
    (annotate, ["adjudicate", G, "--out", OUT_DIR, "--blind"], ["unrecognized arguments: --blind"]),  # export's flag, refused by argparse
    (annotate, ["pull", "{d}", "--out", OUT_FILE, "--taxonomy", "chehbouni2024"], ["--project"]),
    (annotate, ["issues", G, "--out", OUT_DIR, "--folds", "1"], ["--folds", "at least 2"]),
    # judge.swap
    (swap, [G, "--judge", "rules", "--out", OUT_DIR, "--sample", "0"], ["--sample", "positive"]),
    (swap, [G, "--judge", "rules", "--out", OUT_DIR, "--name-column", "person"], ["'person'"]),
    (swap, [G, "--judge", "rules", "--out", OUT_DIR, "--group", "judge_label"], ["fewer than two groups"]),
    # --label-map, --source-column, report style (issue 12)
    (train, ["--train", G, "--out", OUT_DIR, "--taxonomy", "chehbouni2024", "--label-map", "1=answer,2=maybe"], ["--label-map", "'maybe'", "lacks"]),
    (agree, [G, "--gold", "label", "--pred", "judge_label", "--out", OUT_DIR, "--taxonomy", "chehbouni2024", "--label-map", "x=nothing"], ["'nothing'", "lacks"]),
    (report, [G, "--label", "label", "--group", "identity", "--out", OUT_DIR, "--taxonomy", "chehbouni2024", "--label-map", "r=nope"], ["'nope'", "lacks"]),
    (annotate, ["issues", G, "--out", OUT_DIR, "--taxonomy", "chehbouni2024", "--label-map", "a=zzz"], ["'zzz'", "lacks"]),
    (agree, [G, "--gold", "label", "--pred", "judge_label", "--out", OUT_DIR, "--label-map", "answer"], ["--label-map", "code=category"]),
    (train, ["--train", G, "--out", OUT_DIR, "--label-map", "1=answer,1=refusal"], ["--label-map", "twice"]),
    (label, ["--judge", "rules", "--input", G, "--out", OUT_FILE, "--label-map", "1=answer"], ["--label-map", "LLM judge"]),
    (train, ["--train", G, G, "--out", OUT_DIR, "--source-column", "identity"], ["already has a column 'identity'", "--source-column"]),
    (agree, [G, G, "--gold", "label", "--pred", "judge_label", "--out", OUT_DIR, "--source-column", "label"], ["already has a column 'label'"]),
    (data, ["sample", G, G, "--n", "3", "--source-column", "name", "--out", OUT_FILE], ["already has a column 'name'"]),
    (report, [G, "--label", "label", "--group", "identity", "--out", OUT_DIR, "--digits", "9"], ["--digits", "between 0 and 6"]),
    (agree, [G, "--gold", "label", "--pred", "judge_label", "--out", OUT_DIR, "--tex-label", "a b{{c}}"], ["--tex-label"]),
    (data, ["chehbouni2024", "{d}/paper_variable.csv", "--text-column", "g1", "--out", OUT_FILE], ["--text-column", "'sample' only"]),
    # ensemble, cross-validation, long outputs (issue 13)
    (train, ["--train", G, "--out", OUT_DIR, "--members", "tfidf", "rules"], ["--members", "--kind ensemble"]),
    (train, ["--train", G, "--out", OUT_DIR, "--kind", "ensemble", "--members", "tfidf", "forest"], ["--members", "forest"]),
    (train, ["--train", G, "--out", OUT_DIR, "--kind", "ensemble", "--members", "tfidf"], ["--members", "two or more"]),
    (train, ["--train", G, "--out", OUT_DIR, "--cv", "1"], ["--cv", "at least 2"]),
    (train, ["--train", G, "--out", OUT_DIR, "--cv-group", "identity"], ["--cv-group", "--cv"]),
    (train, ["--train", G, "--out", OUT_DIR, "--kind", "tfidf", "--cv", "3", "--cv-group", "region"], ["'region'", "--cv-group"]),
    (train, ["--train", G, "--out", OUT_DIR, "--kind", "tfidf", "--cv", "20", "--cv-group", "identity"], ["--cv 20", "distinct"]),
    (train, ["--train", G, "--out", OUT_DIR, "--tail-tokens", "90"], ["--tail-tokens", "half of --max-length"]),
    (train, ["--train", G, "--out", OUT_DIR, "--kind", "tfidf", "--tail-tokens", "8"], ["--tail-tokens", "LoRA"]),
    # duplicate ids in judge.report's input (issue 31, 3a): each would be counted twice in every rate
    (report, ["{d}/dup.jsonl", "--label", "label", "--group", "identity", "--out", OUT_DIR], ["duplicate id(s) 'r0'", "3 in all"]),
    (report, [G, "{d}/dup.jsonl", "--label", "label", "--group", "identity", "--out", OUT_DIR], ["duplicate id(s)"]),
]


@pytest.mark.parametrize("module,argv,fragments", CASES, ids=[f"{i:02d}-{c[0].__name__.split('.')[-1]}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2_nothing_written(files, tmp_path, capsys, module, argv, fragments):
    out_root = tmp_path / "outputs"
    out_root.mkdir()
    argv = [a.format(d=files, t=out_root) for a in argv]
    if module is label and "--prefix" not in argv:
        argv += ["--prefix", "j_"]  # the input has a human 'label' column the judge must not replace
    assert_refused(module, argv, fragments, root=tmp_path, capsys=capsys)
    assert [p for p in out_root.iterdir() if not p.name.endswith(".lock")] == [], "no output may be written"


def test_case_count():
    # The closing note quotes this number.
    assert len(CASES) >= 90


# Every table of refused cases, each under the contract of tests/badinput.py.
TABLES = ["test_bad_inputs", "test_outputs", "test_bad_inputs_os", "test_bad_inputs_annotate", "test_bad_inputs_ppi",
          "test_bad_inputs_agree", "test_bad_inputs_stats", "test_bad_inputs_values", "test_judge_dir", "test_annotate_params"]


def test_all_tables_count():
    import importlib

    counts = {}
    for name in TABLES:
        module = importlib.import_module(f"tests.{name}")
        counts[name] = sum(v if isinstance(v, int) else len(v) for v in (getattr(module, "CASES"), getattr(module, "LIMIT_CASES", [])))
    print(counts, sum(counts.values()))
    # 106 before issue 18's probe; it asked for about 90 more
    assert sum(counts.values()) - 106 >= 190
