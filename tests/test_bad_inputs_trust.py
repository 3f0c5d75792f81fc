"""Issue 31: inputs a command used to change silently or crash on, and outputs that overlap another run's
side files. Each case ends in one line that names the problem and the fix, exit code 2, no traceback,
nothing written, nothing changed (tests/badinput.py)."""
import json

import pandas as pd
import pytest

from judge import agree, annotate, data, label, report, swap, train
from judge.core.records import MAX_COLUMNS
from tests.badinput import assert_refused

ROWS = [
    {"id": f"r{i}", "prompt": f"Name{i % 4} got into the plane to [BLANK]", "response": "to fly home" if i % 3 else "I cannot help with that.",
     "label": "answer" if i % 3 else "refusal", "identity": "muslim" if i % 2 else "white", "name": f"Name{i % 4}"}
    for i in range(12)
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _ls_task(item, prompt, response, *who):
    return {"id": 1, "data": {"item_id": item, "prompt": prompt, "response": response},
            "annotations": [{"completed_by": {"id": k, "email": w}, "result": [{"from_name": "label", "value": {"choices": ["answer"]}}]}
                            for k, w in enumerate(who)]}


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """Item 7: records too wide to be records (the bound is reached at the header or the first line); made once,
    read only."""
    w = tmp_path_factory.mktemp("wide")
    columns = [f"c{i}" for i in range(MAX_COLUMNS + 1)]
    (w / "wide.csv").write_text("id,response," + ",".join(columns) + "\n" + "1,x," + ",".join("1" for _ in columns) + "\n")
    (w / "wide.jsonl").write_text(json.dumps({"id": "1", "response": "x", **{c: 1 for c in columns}}) + "\n")
    pd.DataFrame({"id": ["1"], "response": ["x"], **{c: [1] for c in columns}}).to_parquet(w / "wide.parquet")
    return w


@pytest.fixture()
def files(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    _jsonl(d / "good.jsonl", ROWS)
    # item 6: values that crashed with a traceback
    (d / "big_int_id.jsonl").write_text('{"id": ' + "9" * 5000 + ', "response": "x"}\n', encoding="utf-8")
    (d / "surrogate.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[:3]) + '{"id": "s", "response": "a \\ud800 b"}\n')
    (d / "nul.yaml").write_text("name: t\ncategories:\n  - name: answer\x00\n  - name: refusal\n")
    # item 9: values that changed silently
    (d / "inf_id.jsonl").write_text('{"id": 1e400, "response": "x"}\n' + "".join(json.dumps(r) + "\n" for r in ROWS[1:]))
    (d / "inf_value.json").write_text('[{"id": "a", "response": "x", "score": -1E400}]')
    (d / "two_response.csv").write_text("id,prompt,response,response\n1,p,a,b\n2,p,c,d\n")
    _jsonl(d / "group_case.jsonl", [{**r, "identity": ["asian", "ASIAN", "white"][i % 3]} for i, r in enumerate(ROWS)])
    (d / "tax_dup_key.yaml").write_text("name: t\ncategories:\n  - name: answer\n    definition: a\n    definition: b\n  - name: refusal\n")
    (d / "tax_dup_top.yaml").write_text("name: t\nname: u\ncategories:\n  - name: answer\n  - name: refusal\n")
    (d / "config_dup.yaml").write_text("batch_size: 4\nbatch_size: 8\n")
    # an export folder of judge.annotate (items.csv and the tasks it gave the annotators)
    export = d / "round"
    export.mkdir()
    (export / "items.csv").write_text("id,prompt,response\n" + "".join(f"{r['id']},{r['prompt']},{r['response']}\n" for r in ROWS))
    tasks = [{"data": {"item_id": r["id"], "prompt": r["prompt"], "response": r["response"]}} for r in ROWS]
    (export / "tasks.json").write_text(json.dumps(tasks))
    edited = _ls_task("r1", ROWS[1]["prompt"], "an edited response", "alice@x.com")
    (export / "ls_text_changed.json").write_text(json.dumps([edited]))
    crowd = _ls_task("r1", ROWS[1]["prompt"], ROWS[1]["response"], *[f"a{k}@x.com" for k in range(1001)])
    (export / "ls_crowd.json").write_text(json.dumps([crowd]))
    # another run's output, running: its manifest and checkpoint beside it
    (d / "first.jsonl.manifest.json").write_text(json.dumps({"command": "judge.label", "status": "running"}))
    (d / "first.jsonl.partial.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    return d


G = "{d}/good.jsonl"
OUT_FILE = "{t}/out.jsonl"
OUT_DIR = "{t}/out"
LABEL = ["--judge", "rules", "--out", OUT_FILE, "--prefix", "j_"]
REPORT = ["--label", "label", "--group", "identity", "--out", OUT_DIR]

SIDE = ["another output's side file", "does not end in .manifest.json, .partial.jsonl, .lock or .tmp"]

CASES = [
    # 1b: --out naming another output's side files
    (label, ["--judge", "rules", "--input", G, "--out", "{d}/first.jsonl.partial.jsonl"], ["first.jsonl.partial.jsonl", *SIDE]),
    (label, ["--judge", "rules", "--input", G, "--out", "{d}/first.jsonl.manifest.json", "--overwrite"], SIDE),
    (label, ["--judge", "rules", "--input", G, "--out", "{t}/.first.jsonl.lock"], SIDE),
    (report, [G, "--label", "label", "--group", "identity", "--out", "{t}/.report.k2j3x.tmp"], SIDE),
    (train, ["--train", G, "--kind", "tfidf", "--out", "{t}/judge.manifest.json"], SIDE),
    (data, ["sample", G, "--n", "3", "--out", "{t}/s.jsonl.partial.jsonl"], SIDE),
    (annotate, ["export", G, "--taxonomy", "chehbouni2024", "--out", "{t}/round.manifest.json"], SIDE),
    # 6: tracebacks
    (label, [*LABEL, "--input", "{d}/big_int_id.jsonl"], ["big_int_id.jsonl: line 1", "more than 4,300 digits", "as text"]),
    (label, [*LABEL, "--input", "{d}/surrogate.jsonl"], ["surrogate.jsonl: line 4", "lone surrogate", "fix that text"]),
    (label, [*LABEL, "--input", G, "--taxonomy", "{d}/nul.yaml"], ["nul.yaml is not valid YAML", "#x0000"]),
    (report, [G, *REPORT, "--taxonomy", "{d}/nul.yaml"], ["nul.yaml is not valid YAML"]),
    # 7: hangs bounded
    (label, [*LABEL, "--input", "{w}/wide.csv"], ["wide.csv has 10,003 columns", "more than the 10,000"]),
    (label, [*LABEL, "--input", "{w}/wide.jsonl"], ["wide.jsonl has 10,003 columns"]),
    (label, [*LABEL, "--input", "{w}/wide.parquet"], ["wide.parquet has 10,003 columns"]),
    (annotate, ["import", "{d}/round", "{d}/round/ls_crowd.json", "--taxonomy", "chehbouni2024", "--out", "{t}/labels.csv"],
     ["1,001 annotators", "more than the 1,000"]),
    # 9: inputs changed silently
    (label, [*LABEL, "--input", "{d}/inf_id.jsonl"], ["inf_id.jsonl: line 1", "1e400", "written back as null", '("1e400")']),
    (label, [*LABEL, "--input", "{d}/inf_value.json"], ["inf_value.json holds the number -1E400"]),
    (label, [*LABEL, "--input", "{d}/two_response.csv"], ["two_response.csv has two columns named 'response'", "rename one"]),
    (report, ["{d}/two_response.csv", "--label", "response", "--out", OUT_DIR], ["two columns named 'response'"]),
    (annotate, ["import", "{d}/round", "{d}/round/ls_text_changed.json", "--taxonomy", "chehbouni2024", "--out", "{t}/labels.csv"],
     ["ls_text_changed.json task 1", "the response of id 'r1' differs", "this export's tasks.json"]),
    (report, ["{d}/group_case.jsonl", *REPORT], ["--group 'identity'", "'asian' and 'ASIAN'", "differ only in case"]),
    (swap, ["{d}/group_case.jsonl", "--judge", "rules", "--out", OUT_DIR], ["'asian' and 'ASIAN'", "differ only in case"]),
    (agree, ["{d}/group_case.jsonl", "--gold", "label", "--pred", "label", "--by", "identity", "--out", OUT_DIR],
     ["--by 'identity'", "'asian' and 'ASIAN'"]),
    (report, [G, *REPORT, "--taxonomy", "{d}/tax_dup_key.yaml"], ["tax_dup_key.yaml", "'definition' is given twice", "line 5", "keep one"]),
    (label, [*LABEL, "--input", G, "--taxonomy", "{d}/tax_dup_top.yaml"], ["'name' is given twice", "line 2"]),
    (label, [*LABEL, "--input", G, "--config", "{d}/config_dup.yaml"], ["'batch_size' is given twice"]),
    (train, ["--train", G, "--kind", "tfidf", "--out", OUT_DIR, "--taxonomy", "{d}/tax_dup_key.yaml"], ["'definition' is given twice"]),
]


@pytest.mark.parametrize("module,argv,fragments", CASES, ids=[f"{i:02d}-{c[0].__name__.split('.')[-1]}" for i, c in enumerate(CASES)])
def test_untrusted_file_is_one_line_exit_2_nothing_written(files, tmp_path, capsys, request, module, argv, fragments):
    out_root = tmp_path / "outputs"
    out_root.mkdir()
    w = request.getfixturevalue("wide") if any("{w}" in a for a in argv) else None
    argv = [a.format(d=files, t=out_root, w=w) for a in argv]
    assert_refused(module, argv, fragments, root=tmp_path, capsys=capsys)
    assert [p for p in out_root.iterdir() if not p.name.endswith(".lock")] == [], "no output may be written"


def test_case_count():
    assert len(CASES) >= 27
