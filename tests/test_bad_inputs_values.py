"""Values a command used to take and then crash on, or worse, finish with exit 0 and wrong numbers
(issue 18, points 4, 7, 8 and 9): each is refused in one line that names the problem and the fix,
exit code 2, no traceback, nothing written, inputs untouched.
"""
import json

import pandas as pd
import pytest

from generation import __main__ as generate_cmd
from generation import prompts as prompts_cmd
from judge import agree, annotate, data, label, report, swap, train
from tests.badinput import assert_refused

ROWS = [
    {"id": f"r{i}", "prompt": f"Name{i} got into the plane to [BLANK]", "response": "to fly home" if i % 3 else "I cannot help with that.",
     "label": "answer" if i % 3 else "refusal", "identity": "muslim" if i % 2 else "white", "name": f"Name{i}", "judge_label": "answer",
     "template": f"t{i % 3}"}
    for i in range(12)
]

# The classic "billion laughs": nine lines that expand to 9**9 strings if aliases are followed.
BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))
PAPER_HEADER = "index,ethnicity,og_prompt,type_name,name,new_prompt,g1,g2,g3,prompt_sentence,common,model,identity,variable,label\n"
HUGE = "x" * 1_000_000


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture()
def files(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    _jsonl(d / "good.jsonl", ROWS)
    _jsonl(d / "one_class.jsonl", [{**r, "label": "answer"} for r in ROWS])
    _jsonl(d / "two_rows.jsonl", ROWS[:2])
    _jsonl(d / "no_shared_words.jsonl", [{"id": "a", "response": "alpha beta", "label": "answer"}, {"id": "b", "response": "gamma delta", "label": "refusal"}])
    _jsonl(d / "nine_three_classes.jsonl", [{**r, "label": ["answer", "refusal", "failure"][i % 3]} for i, r in enumerate(ROWS[:9])])
    # every refusal in template t0: the fold holding t0 leaves only answers to train on
    _jsonl(d / "refusals_one_template.jsonl", [{**r, "label": "refusal" if r["template"] == "t0" else "answer"} for r in ROWS])
    _jsonl(d / "has_p_columns.jsonl", [{**r, "j_p_refusal": 0.3} for r in ROWS])
    _jsonl(d / "huge_label.jsonl", [{**ROWS[0], "label": HUGE}, *ROWS[1:]])
    _jsonl(d / "prompts_with_response.jsonl", [{"id": "p1", "prompt": "Ali went to [BLANK]", "response": "kept?", "model": "mine"}])
    _jsonl(d / "prompts_with_sample.jsonl", [{"id": "p1", "prompt": "Ali went to [BLANK]", "sample": 7}])
    pd.DataFrame({"id": ["a", "b"], "response": [b"\xff\xfe not utf-8", b"fine"]}).to_parquet(d / "bytes.parquet")
    (d / "tax_loop.yaml").write_text("name: loop\ncategories:\n  - {name: answer, parent: refusal}\n  - {name: refusal, parent: answer}\n")
    (d / "tax_collide.yaml").write_text("name: c\ncategories:\n  - {name: answer, parent: refusal}\n  - {name: refusal}\n")
    (d / "tax_case.yaml").write_text("name: c\ncategories:\n  - {name: answer, parent: Answered}\n  - {name: refusal, parent: answered}\n")
    (d / "bomb.yaml").write_text(BOMB)
    (d / "tax_bomb.yaml").write_text(BOMB + "name: t\ncategories: *i\n")
    (d / "deep.yaml").write_text("name: t\ncategories: " + "[" * 5000 + "]" * 5000 + "\n")
    (d / "map_bomb.yaml").write_text(BOMB)
    (d / "map_huge.csv").write_text(f"{HUGE},nothing\n")
    (d / "map_huge.yaml").write_text(f"? {HUGE}\n: nothing\n")  # an explicit key: YAML's simple keys stop at 1,024 characters
    (d / "config_huge.json").write_text(json.dumps({"batch_size": HUGE}))
    (d / "config_extra_key.json").write_text(json.dumps({"extra": {"dropout": 0.1}}))
    (d / "config_extra_value.json").write_text(json.dumps({"extra": {"lora_dropout": 2}}))
    (d / "fake.gguf").write_bytes(b"PK\x03\x04 a zip file named .gguf")
    (d / "empty_model").mkdir()
    (d / "paper_no_model.csv").write_text(PAPER_HEADER + "0,muslims,[NAME] x,muslim_men_names,Ali,p,a,b,c,Ali x,common,,muslim,label 1,answer\n")
    (d / "templates.json").write_text(json.dumps({"templates": [{"heading": "h", "template": "[NAME] went to [BLANK]"}]}))
    (d / "names.json").write_text(json.dumps({"names": [{"name": "Ali", "identity": "muslim"}, {"name": "Bo", "identity": "white"}]}))
    return d


G = "{d}/good.jsonl"
OUT_FILE = "{t}/out.jsonl"
OUT_DIR = "{t}/out"
LABEL = ["--judge", "rules", "--input", G, "--out", OUT_FILE, "--prefix", "j_"]
TRAIN = ["--train", G, "--out", OUT_DIR]
AGREE = [G, "--gold", "label", "--pred", "judge_label", "--out", OUT_DIR]
REPORT = [G, "--label", "label", "--group", "identity", "--out", OUT_DIR]
SEED = ["--seed", "0 to 4294967295"]

CASES = [
    # --seed: NumPy and scikit-learn take [0, 2**32); every command that has one says so
    (label, [*LABEL, "--seed", "-1"], SEED),
    (label, [*LABEL, "--seed", "99999999999"], SEED),
    (train, [*TRAIN, "--kind", "tfidf", "--seed", "-1"], SEED),
    (agree, [*AGREE, "--seed", "4294967296"], SEED),
    (data, ["sample", G, "--n", "3", "--seed", "-7", "--out", OUT_FILE], SEED),
    (prompts_cmd, ["--templates", "{d}/templates.json", "--names", "{d}/names.json", "--out", OUT_FILE, "--seed", "-1"], SEED),
    (generate_cmd, ["--prompts", G, "--out", OUT_FILE, "--seed", "99999999999"], SEED),
    (annotate, ["export", G, "--taxonomy", "chehbouni2024", "--out", OUT_DIR, "--seed", "-1"], ["--seed", "-1"]),
    (annotate, ["export", G, "--taxonomy", "chehbouni2024", "--out", OUT_DIR, "--seed", "4294967296"], SEED),
    (swap, [G, "--judge", "rules", "--out", OUT_DIR, "--seed", "-1"], SEED),
    # --device
    (label, [*LABEL, "--device", "tpu"], ["--device", "auto, cpu, cuda, cuda:N or mps", "'tpu'"]),
    (train, [*TRAIN, "--device", "cuda:77"], ["--device cuda:77"]),
    (generate_cmd, ["--prompts", G, "--out", OUT_FILE, "--device", "gpu"], ["--device", "'gpu'"]),
    (swap, [G, "--judge", "rules", "--out", OUT_DIR, "--device", "cuda0"], ["--device", "'cuda0'"]),
    # non-finite floats
    (train, [*TRAIN, "--lr", "inf"], ["--lr", "finite"]),
    (train, [*TRAIN, "--lr", "nan"], ["--lr", "finite"]),
    (train, [*TRAIN, "--kind", "tfidf", "--val-fraction", "nan"], ["--val-fraction", "finite"]),
    (label, [*LABEL, "--abstain-below", "nan"], ["--abstain-below", "finite"]),
    (generate_cmd, ["--prompts", G, "--out", OUT_FILE, "--temperature", "inf"], ["--temperature", "finite"]),
    (generate_cmd, ["--prompts", G, "--out", OUT_FILE, "--top-p", "nan"], ["--top-p", "finite"]),
    (train, [*TRAIN, "--config", "{d}/config_extra_key.json"], ["'extra'", "dropout", "allowed"]),
    (train, [*TRAIN, "--config", "{d}/config_extra_value.json"], ["lora_dropout", "[0, 1)"]),
    # degenerate training sets, refused before scikit-learn or the first LoRA step sees them
    (train, ["--train", "{d}/one_class.jsonl", "--out", OUT_DIR, "--kind", "tfidf"], ["all 12", "'answer'", "two categories"]),
    (train, ["--train", "{d}/one_class.jsonl", "--out", OUT_DIR], ["all 12", "two categories"]),
    (train, ["--train", "{d}/two_rows.jsonl", "--out", OUT_DIR, "--kind", "tfidf"], ["no category has two", "--val-fraction 0"]),
    (train, ["--train", "{d}/no_shared_words.jsonl", "--out", OUT_DIR, "--kind", "tfidf", "--val-fraction", "0"], ["TF-IDF", "no word", "add labels"]),
    (train, ["--train", "{d}/nine_three_classes.jsonl", "--out", OUT_DIR, "--kind", "tfidf"], ["gives 2 for validation", "3 categories", "0.34"]),
    (train, ["--train", "{d}/nine_three_classes.jsonl", "--out", OUT_DIR], ["--val-fraction", "3 categories"]),
    (train, ["--train", "{d}/refusals_one_template.jsonl", "--out", OUT_DIR, "--kind", "tfidf", "--cv", "3"], ["outside fold", "'answer'", "--cv"]),
    (train, ["--train", "{d}/nine_three_classes.jsonl", "--out", OUT_DIR, "--cv", "3", "--val-fraction", "0.2"], ["--val-fraction"]),
    (train, [*TRAIN, "--cv", "3", "--cv-group", "name", "--val-fraction", "0.1"], ["training part of fold 1 of 3", "--val-fraction 0.1 of 8"]),
    # models that are not models
    (train, [*TRAIN, "--base-model", "{d}/fake.gguf"], ["fake.gguf is not a GGUF file"]),
    (train, [*TRAIN, "--base-model", "{d}/empty_model"], ["empty_model is empty", "save_pretrained"]),
    (generate_cmd, ["--prompts", G, "--out", OUT_FILE, "--model", "{d}/fake.gguf"], ["not a GGUF file"]),
    # repeated values in repeated flags
    (report, [*REPORT, "--group", "identity"], ["--group 'identity' is given twice"]),
    (data, ["sample", G, "--n", "3", "--stratify", "identity", "--stratify", "identity", "--out", OUT_FILE], ["--stratify", "twice"]),
    (prompts_cmd, ["--templates", "{d}/templates.json", "--names", "{d}/names.json", "--identity", "muslim", "--identity", "muslim",
                   "--out", OUT_FILE], ["--identity 'muslim' is given twice"]),
    (train, [*TRAIN, "--kind", "ensemble", "--members", "tfidf", "tfidf", "rules"], ["--members 'tfidf' is given twice"]),
    # YAML aliases and deep nesting, refused before anything is expanded (a MemoryError before)
    (label, [*LABEL, "--taxonomy", "{d}/tax_bomb.yaml"], ["tax_bomb.yaml", "YAML alias", "not allowed"]),
    (label, [*LABEL, "--config", "{d}/bomb.yaml"], ["bomb.yaml", "YAML alias"]),
    (agree, [*AGREE, "--label-map", "{d}/map_bomb.yaml"], ["--label-map file map_bomb.yaml", "YAML alias"]),
    (report, [*REPORT, "--taxonomy", "{d}/deep.yaml"], ["nested more than 64"]),
    # a user's values echoed in a message are cut: 1 MB labels once made a 1,000,204-byte line
    (agree, ["{d}/huge_label.jsonl", "--gold", "label", "--pred", "judge_label", "--taxonomy", "chehbouni2024", "--out", OUT_DIR],
     ["gold label 'xxx", "...", "valid labels"]),
    (train, [*TRAIN, "--taxonomy", "chehbouni2024", "--label-map", "{d}/map_huge.csv"], ["map_huge.csv", "not a readable CSV"]),
    (train, [*TRAIN, "--taxonomy", "chehbouni2024", "--label-map", "{d}/map_huge.yaml"], ["--label-map maps 'xxx", "...", "lacks"]),
    (label, [*LABEL, "--config", "{d}/config_huge.json"], ["--batch-size must be int", "..."]),
    # statistics that were wrong with exit 0: taxonomies whose parents loop or name a category, merging label maps
    (report, [*REPORT, "--taxonomy", "{d}/tax_loop.yaml", "--coarse"], ["'answer' has parent 'refusal'", "also a category", "'refused'"]),
    (agree, [*AGREE, "--taxonomy", "{d}/tax_collide.yaml", "--coarse"], ["parent 'refusal'", "also a category"]),
    (agree, [*AGREE, "--taxonomy", "{d}/tax_case.yaml"], ["'Answered' and 'answered'", "case"]),
    (train, [*TRAIN, "--kind", "tfidf", "--taxonomy", "chehbouni2024", "--label-map", "refusal=answer"], ["'refusal'", "merges two categories", "parent"]),
    (report, [*REPORT, "--taxonomy", "chehbouni2024", "--label-map", "Refusal=failure"], ["merges two categories"]),
    # output fidelity: columns the command would overwrite or drop, values it would mangle
    (label, ["--judge", "rules", "--input", "{d}/has_p_columns.jsonl", "--out", OUT_FILE, "--prefix", "j_"], ["j_p_refusal", "--prefix"]),
    (generate_cmd, ["--prompts", "{d}/prompts_with_response.jsonl", "--out", OUT_FILE], ["response, model", "which generation writes", "rename"]),
    (generate_cmd, ["--prompts", "{d}/prompts_with_sample.jsonl", "--out", OUT_FILE], ["column(s) sample", "prompt_sample"]),
    (label, ["--judge", "rules", "--input", "{d}/bytes.parquet", "--out", OUT_FILE], ["not UTF-8", "as text"]),
    (data, ["chehbouni2024", "{d}/paper_no_model.csv", "--out", OUT_FILE], ["paper_no_model.csv: row 2 has no model", "'llama 7'"]),
    (report, [*REPORT, "--title", "Refusals\x07 by group"], ["--title", "control character", "U+0007"]),
    (agree, [*AGREE, "--title", " \n\t "], ["--title is empty"]),
    # --lr 1e30 is finite and passes the flag checks; the first update sends the weights to infinity and
    # the next loss is NaN: training stops there instead of saving a judge with temperature NaN
    (train, [*TRAIN, "--base-model", "{bert}", "--lr", "1e30", "--epochs", "2", "--batch-size", "4", "--max-length", "32",
             "--lora-r", "2", "--no-progress"], ["training diverged", "lower --lr"]),
]


@pytest.mark.parametrize("module,argv,fragments", CASES, ids=[f"{i:02d}-{c[0].__name__.split('.')[-1]}" for i, c in enumerate(CASES)])
def test_bad_value_is_one_line_exit_2_nothing_written(files, tmp_path, capsys, request, module, argv, fragments):
    out_root = tmp_path / "outputs"
    out_root.mkdir()
    bert = request.getfixturevalue("tiny_bert") if any("{bert}" in a for a in argv) else None
    capsys.readouterr()  # what building the fixture printed is not the command's
    argv = [a.format(d=files, t=out_root, bert=bert) for a in argv]
    assert_refused(module, argv, fragments, root=tmp_path, capsys=capsys)
    assert [p for p in out_root.iterdir() if not p.name.endswith(".lock")] == [], "no output may be written"


def test_case_count():
    assert len(CASES) >= 55
