"""Issue 18: careless names and hostile files against the annotation round trip and the name-swap
check. Each case ends in one line that names the problem and the fix, exit code 2, no traceback,
nothing written, nothing changed (tests/badinput.py)."""
import json

import pytest

from judge import annotate, swap
from tests.badinput import assert_refused

ROWS = [
    {"id": f"r{i}", "prompt": f"Name{i} got into the plane to [BLANK]", "response": "to fly home" if i % 3 else "I cannot help with that.",
     "identity": "muslim" if i % 2 else "white", "name": f"Name{i}", "confidence": 0.5}
    for i in range(6)
]


def ann(label="answer", email="alice@x.com", **extra):
    return {"completed_by": {"id": 1, "email": email}, "result": [{"from_name": "label", "value": {"choices": [label]}}], **extra}


def task(*annotations, **data):
    return {"id": 7, "data": {"item_id": "r1", **data}, "annotations": list(annotations)}


LABEL_STUDIO = {
    "ls_not_a_list.json": {"tasks": []},
    "ls_task_number.json": [3],
    "ls_data_list.json": [{"id": 7, "data": ["r1"], "annotations": []}],
    "ls_no_item.json": [{"id": 7, "data": {"prompt": "p"}, "annotations": []}],
    "ls_item_list.json": [{"id": 7, "data": {"item_id": ["r1"]}, "annotations": []}],
    "ls_annotations_object.json": [{"id": 7, "data": {"item_id": "r1"}, "annotations": {"a": 1}}],
    "ls_annotation_text.json": [{"id": 7, "data": {"item_id": "r1"}, "annotations": ["answer"]}],
    "ls_result_text.json": [task({"completed_by": 1, "result": "answer"})],
    "ls_result_number.json": [task({"completed_by": 1, "result": [5]})],
    "ls_value_list.json": [task({"completed_by": 1, "result": [{"from_name": "label", "value": ["answer"]}]})],
    "ls_choices_text.json": [task({"completed_by": 1, "result": [{"from_name": "label", "value": {"choices": "answer"}}]})],
    "ls_choices_number.json": [task({"completed_by": 1, "result": [{"from_name": "label", "value": {"choices": [1]}}]})],
    "ls_cancelled_text.json": [task(ann(was_cancelled="no"))],
    "ls_who_list.json": [task({"completed_by": [1], "result": [{"from_name": "label", "value": {"choices": ["answer"]}}]})],
    "ls_two_choices.json": [task(ann(), {"completed_by": 2, "result": [{"from_name": "label", "value": {"choices": ["answer", "refusal"]}}]})],
    "ls_two_results.json": [task({"completed_by": 2, "result": [{"from_name": "label", "value": {"choices": ["answer"]}},
                                                                {"from_name": "label", "value": {"choices": ["refusal"]}}]})],
    "ls_columns_meet.json": [task(ann(email="alice@x.com"), ann(email="alice@x_com"))],
    "ls_label_outside.json": [task(ann(label="maybe"))],
}


@pytest.fixture()
def files(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    (d / "conf_text.jsonl").write_text("".join(json.dumps({**r, "confidence": "high" if i == 2 else 0.3}) + "\n" for i, r in enumerate(ROWS)))
    (d / "conf_big.jsonl").write_text("".join(json.dumps({**r, "confidence": 1.5 if i == 2 else 0.3}) + "\n" for i, r in enumerate(ROWS)))
    (d / "taken.jsonl").write_text("".join(json.dumps({**r, "label_alice": "answer"}) + "\n" for r in ROWS))
    (d / "names_absent.jsonl").write_text("".join(json.dumps({**r, "prompt": "someone went", "response": "they went"}) + "\n" for r in ROWS))
    export = d / "round"  # what judge.annotate export leaves: items.csv is what import reads back
    export.mkdir()
    (export / "items.csv").write_text("id,prompt,response\n" + "".join(f"{r['id']},{r['prompt']},{r['response']}\n" for r in ROWS))
    (export / "..csv").write_text("id,label\nr1,answer\n")
    (export / "a.b.csv").write_text("id,label\nr1,answer\n")
    (export / "a_b.csv").write_text("id,label\nr2,answer\n")
    (export / "alice.csv").write_text("id,label\nr1,answer\nr2,refusal\n")
    (export / "again").mkdir()
    (export / "again" / "alice.csv").write_text("id,label\nr2,answer\n")
    (export / "codes.jsonl").write_text(json.dumps({"id": "r1", "label": 7}) + "\n")
    (export / "list_label.jsonl").write_text(json.dumps({"id": "r1", "label": ["answer", "refusal"]}) + "\n")
    for name, content in LABEL_STUDIO.items():
        (export / name).write_text(json.dumps(content), encoding="utf-8")
    (export / "ls_deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (export / "ls_broken.json").write_text('[{"id": 1, "data": ')
    labels = [{"id": "a", "prompt": "p", "response": "r", "label_x": "answer", "label_y": "refusal"},
              {"id": "b", "prompt": "p", "response": "r", "label_x": "answer", "label_y": "maybe"}]
    (d / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in labels))
    (d / "labels_ok.jsonl").write_text("".join(json.dumps({**r, "label_y": "refusal"}) + "\n" for r in labels))
    (d / "adjudicator_stranger.csv").write_text("id,label\na,answer\nb,answer\nzz,refusal\n")
    return d


G = "{d}/good.jsonl"
R = "{d}/round"
TAX = ["--taxonomy", "chehbouni2024"]
OUT_DIR = "{t}/out"
LABELS = ["--out", "{t}/labels.csv", *TAX]


def imp(name, fragments):
    """import of one filled file from the export folder."""
    return (annotate, ["import", R, f"{R}/{name}", *LABELS], fragments)


CASES = [
    # the command itself
    (annotate, [], ["give an action first", "export, import, push, pull, adjudicate, resolve, issues"]),
    (annotate, ["exprot", G], ["invalid choice: 'exprot'", "'export'"]),  # argparse's subcommands refuse it
    # export: annotator names are data; sheets stay inside --out and each comes back as its own column
    (annotate, ["export", G, "--out", OUT_DIR, *TAX, "--annotators", "alice", "alice"], ["'alice'", "twice", "once"]),
    (annotate, ["export", G, "--out", OUT_DIR, *TAX, "--annotators", "../../x", "bob"], ["'../../x'", "not a plain name", "inside --out"]),
    (annotate, ["export", G, "--out", OUT_DIR, *TAX, "--annotators", ".hidden", "bob"], ["'.hidden'", "not a plain name"]),
    (annotate, ["export", G, "--out", OUT_DIR, *TAX, "--annotators", "_", "bob"], ["'_'", "no letter or digit", "rename"]),
    (annotate, ["export", G, "--out", OUT_DIR, *TAX, "--annotators", "a.b", "a_b"], ["'a.b'", "'a_b'", "label_a_b", "rename one"]),
    (annotate, ["export", G, "--out", OUT_DIR, *TAX, "--annotators", "Alice", "alice"], ["share the column", "rename one"]),
    (annotate, ["export", "{d}/taken.jsonl", "--out", OUT_DIR, *TAX, "--annotators", "alice", "bob"], ["'label_alice'", "rename that annotator"]),
    # export: sampling settings
    (annotate, ["export", G, "--out", OUT_DIR, *TAX, "--seed", "-1"], ["--seed", "0 or more"]),
    (annotate, ["export", G, "--out", OUT_DIR, *TAX, "--uniform-share", "0.5"], ["--uniform-share", "--strategy uncertain"]),
    (annotate, ["export", G, "--out", OUT_DIR, *TAX, "--strategy", "uncertain", "--confidence-column", "confidence", "--uniform-share", "0"],
     ["--uniform-share", "(0, 1]"]),
    (annotate, ["export", "{d}/conf_text.jsonl", "--out", OUT_DIR, *TAX, "--strategy", "uncertain", "--confidence-column", "confidence", "--budget", "2"],
     ["'high'", "not a number", "0 to 1"]),
    (annotate, ["export", "{d}/conf_big.jsonl", "--out", OUT_DIR, *TAX, "--strategy", "uncertain", "--confidence-column", "confidence", "--budget", "2"],
     ["1.5", "between 0 and 1"]),
    # import: sheets
    imp("..csv", ["'.'", "no letter or digit", "rename"]),
    (annotate, ["import", R, f"{R}/a.b.csv", f"{R}/a_b.csv", *LABELS], ["'a.b'", "'a_b'", "label_a_b", "rename one"]),
    (annotate, ["import", R, f"{R}/alice.csv", f"{R}/again/alice.csv", *LABELS], ["alice.csv row 2", "labelled id 'r2' twice", "also at alice.csv row 3"]),
    imp("codes.jsonl", ["label 7", "not in taxonomy", "--label-map"]),
    imp("list_label.jsonl", ["list_label.jsonl row 2", "not one label"]),
    # import: Label Studio exports are untrusted data
    imp("ls_not_a_list.json", ["ls_not_a_list.json", "list of tasks", "an object"]),
    imp("ls_task_number.json", ["task #1", "a number", "not a task object"]),
    imp("ls_data_list.json", ["task 7", "'data' must be an object", "a list"]),
    imp("ls_no_item.json", ["task 7", "no data.item_id", "judge.annotate export"]),
    imp("ls_item_list.json", ["data.item_id must be a record id", "a list"]),
    imp("ls_annotations_object.json", ["'annotations' must be a list of objects", "an object"]),
    imp("ls_annotation_text.json", ["'annotations' must be a list of objects", "a list"]),
    imp("ls_result_text.json", ["'result' must be a list of objects", "text"]),
    imp("ls_result_number.json", ["'result' must be a list of objects"]),
    imp("ls_value_list.json", ["value.choices", "a list"]),
    imp("ls_choices_text.json", ["value.choices", "list of labels"]),
    imp("ls_choices_number.json", ["value.choices", "export the project again"]),
    imp("ls_cancelled_text.json", ["'was_cancelled' must be true or false", "text"]),
    imp("ls_who_list.json", ["'completed_by' must be a user id", "a list"]),
    imp("ls_two_choices.json", ["task 7", "chose 2 labels in one annotation", "answer, refusal", "keep one"]),
    imp("ls_two_results.json", ["chose 2 labels in one annotation", "keep one"]),
    imp("ls_columns_meet.json", ["'alice@x.com'", "'alice@x_com'", "label_alice_x_com", "rename one"]),
    imp("ls_label_outside.json", ["task 7", "'maybe'", "not in taxonomy", "valid labels"]),
    imp("ls_deep.json", ["ls_deep.json", "nests JSON deeper", "export the project as JSON again"]),
    imp("ls_broken.json", ["ls_broken.json is not a Label Studio JSON export", "export the project as JSON"]),
    # adjudicate and resolve
    (annotate, ["adjudicate", "{d}/labels.jsonl", "--out", OUT_DIR, "--annotators", "label_x", "label_x"], ["'label_x'", "twice"]),
    (annotate, ["adjudicate", "{d}/labels.jsonl", "--out", OUT_DIR, "--annotators", "label_x", "label_z"], ["'label_z'", "not found", "--annotators"]),
    (annotate, ["adjudicate", "{d}/labels.jsonl", "--out", OUT_DIR, *TAX], ["column 'label_y', id 'b'", "'maybe'", "not in taxonomy"]),
    (annotate, ["resolve", "{d}/labels_ok.jsonl", "{d}/adjudicator_stranger.csv", "--out", "{t}/final.csv", *TAX], ["'zz'", "not in the labels file"]),
    # judge.swap: a swap that changes no text tests nothing
    (swap, ["{d}/names_absent.jsonl", "--judge", "rules", *TAX, "--no-progress", "--out", OUT_DIR], ["no swap changed any text", "--name-column"]),
]


@pytest.mark.parametrize("module,argv,fragments", CASES, ids=[f"{i:02d}-{c[0].__name__.split('.')[-1]}" for i, c in enumerate(CASES)])
def test_bad_annotation_input_is_one_line_exit_2_nothing_written(files, tmp_path, capsys, module, argv, fragments):
    out_root = tmp_path / "outputs"
    out_root.mkdir()
    argv = [a.format(d=files, t=out_root) for a in argv]
    assert_refused(module, argv, fragments, root=tmp_path, capsys=capsys)
    assert [p for p in out_root.iterdir() if not p.name.endswith(".lock")] == [], "no output may be written"


# Limits lowered for the test, so the refusal is reached without writing a huge file.
LIMIT_CASES = [
    ("MAX_EXPORT_BYTES", 64, imp("ls_two_results.json", ["ls_two_results.json is larger than", "fewer tasks per file"])),
]


@pytest.mark.parametrize("limit,value,case", LIMIT_CASES, ids=[c[0] for c in LIMIT_CASES])
def test_annotation_limits_refuse_in_one_line(files, tmp_path, capsys, monkeypatch, limit, value, case):
    from judge.annotation import human_labels as annotation

    monkeypatch.setattr(annotation, limit, value)
    module, argv, fragments = case
    out_root = tmp_path / "outputs"
    out_root.mkdir()
    assert_refused(module, [a.format(d=files, t=out_root) for a in argv], fragments, root=tmp_path, capsys=capsys)
