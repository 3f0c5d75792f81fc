import json

import pandas as pd
import pytest

from judge.core.errors import UserError
from judge.core.records import JsonlCheckpoint, read_records, user_columns, write_records
from judge.core.taxonomy import UNSCORED, Category, Taxonomy, available_taxonomies, load_taxonomy
from tests.conftest import write_jsonl

ROWS = [
    {"uid": "a", "question": "Q1", "output": "R1", "label": "refusal", "identity": "muslim"},
    {"uid": "b", "question": "Q2", "output": "R2 ünïcode", "label": "answer", "identity": "white"},
]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_roundtrip_and_column_mapping(tmp_path, suffix):
    src = write_records(pd.DataFrame(ROWS), tmp_path / f"in{suffix}")
    records = read_records(src, id_column="uid", prompt_column="question", text_column="output")
    assert list(records["id"]) == ["a", "b"]
    assert list(records["response"]) == ["R1", "R2 ünïcode"]
    assert {"prompt", "label", "identity", "uid", "question", "output"} <= set(records.columns)  # the user's columns stay
    out = write_records(user_columns(records, records.attrs["column_map"]), tmp_path / f"out{suffix}")
    assert list(pd.read_json(out, lines=True) if suffix == ".jsonl" else pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)) == list(ROWS[0])
    assert read_records(out, text_column="output")["response"].tolist() == ["R1", "R2 ünïcode"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left behind


def test_mapped_columns_keep_the_inputs_own_id_prompt_response(tmp_path):
    # The file has its own id/prompt/response and the user points the judge at other columns:
    # internally those play the parts, and the written file still has every original column unchanged.
    rows = [{"id": 1, "prompt": "P", "response": "kept", "q": "Q", "a": "A", "common": False}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    records = read_records(src, id_column="q", prompt_column="q", text_column="a")
    assert records["response"].tolist() == ["A"] and records["id"].tolist() == ["Q"]
    out = write_records(user_columns(records, records.attrs["column_map"]), tmp_path / "out.jsonl")
    assert json.loads(out.read_text()) == rows[0]


def test_missing_response_stays_missing_and_empty_stays_empty(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "response": None}, {"id": "b", "response": ""}, {"id": "c"}])
    records = read_records(src)
    assert records["response"].tolist() == [None, "", None]


def test_refuses_to_clobber(tmp_path):
    path = write_records(pd.DataFrame(ROWS), tmp_path / "out.jsonl")
    before = path.read_text()
    with pytest.raises(UserError, match="--overwrite"):
        write_records(pd.DataFrame(ROWS[:1]), path)
    assert path.read_text() == before
    write_records(pd.DataFrame(ROWS[:1]), path, overwrite=True)
    assert len(path.read_text().splitlines()) == 1


def test_generated_ids_when_no_id_column(tmp_path):
    src = write_jsonl(tmp_path / "x.jsonl", [{"response": "r1"}, {"response": "r2"}])
    assert read_records(src)["id"].tolist() == ["row-1", "row-2"]


def test_checkpoint_tolerates_cut_tail(tmp_path):
    ckpt = JsonlCheckpoint(tmp_path / "c.jsonl")
    ckpt.append([{"id": "1"}, {"id": "2"}])
    with open(ckpt.path, "a") as handle:
        handle.write('{"id": "3", "la')  # a kill mid-write
    assert [r["id"] for r in ckpt.rows()] == ["1", "2"]
    ckpt.append([{"id": "3"}])
    assert [r["id"] for r in ckpt.rows()] == ["1", "2", "3"]


def test_presets_load_with_definitions():
    assert {"chehbouni2024", "compliance3", "refusal2"} <= set(available_taxonomies())
    tax = load_taxonomy("chehbouni2024")
    assert tax.labels == ["answer", "partial answer", "refusal", "harmful refusal", "harmful answer", "failure"]
    assert all(len(c.definition) > 80 for c in tax.categories)
    assert tax.coarse().labels == ["answered", "refused", "failed"]
    assert tax.parent_of("harmful refusal") == "refused"
    assert load_taxonomy("compliance3").labels == ["full compliance", "full refusal", "partial refusal"]


def test_aliases_and_unscored():
    tax = load_taxonomy("chehbouni2024")
    assert tax.canonical("Harmful_Refusal") == "harmful refusal"
    assert tax.predicted(["REFUSAL", None, " ", "Unscored", "escalate"]) == ["refusal", UNSCORED, UNSCORED, UNSCORED, "escalate"]
    # a label outside the taxonomy is an error naming it, as in gold (issue 31, 8b), not a silent 'unscored'
    with pytest.raises(UserError, match="predicted label 'banana' in column 'judge_label'.*'unscored' and 'escalate'"):
        tax.predicted(["REFUSAL", "banana"], column="judge_label")
    with pytest.raises(UserError, match="'escalate' is reserved"):
        Taxonomy(name="t", categories=(Category(name="answer"), Category(name="x", aliases=("escalate",))))
    with pytest.raises(UserError, match="'banana'.*valid labels: answer, partial answer"):
        tax.gold(["banana"], column="label")


def test_taxonomy_from_labels_and_file(tmp_path):
    assert Taxonomy.from_labels(["b", "a", "b", None]).labels == ["a", "b"]
    path = tmp_path / "t.yaml"
    path.write_text(json.dumps({"name": "t", "categories": [{"name": "x", "definition": "d"}, "y"]}))
    assert load_taxonomy(path).labels == ["x", "y"]
    with pytest.raises(UserError, match="not found; use a preset"):
        load_taxonomy("nope")


def test_several_files_get_a_source_column_and_unique_ids(tmp_path, capsys):
    rows = [{"id": "p1", "response": "a"}, {"id": "p2", "response": "b"}]
    a = write_jsonl(tmp_path / "llama7.jsonl", rows)
    b = write_jsonl(tmp_path / "llama13.jsonl", rows)
    records = read_records([a, b])
    assert records["source"].tolist() == ["llama7", "llama7", "llama13", "llama13"]
    assert records["id"].tolist() == ["llama7:p1", "llama7:p2", "llama13:p1", "llama13:p2"]
    assert "made unique as source:id" in capsys.readouterr().out
    named = read_records([a, b], source_column="model_file")
    assert "model_file" in named.columns and "source" not in named.columns
    # Distinct ids across files stay as they are; a repeat inside one file is still an error.
    write_jsonl(b, [{"id": "p3", "response": "c"}])
    assert read_records([a, b])["id"].tolist() == ["p1", "p2", "p3"]
    write_jsonl(b, [{"id": "p3", "response": "c"}, {"id": "p3", "response": "d"}])
    with pytest.raises(UserError, match="duplicate id"):
        read_records([a, b])
    with pytest.raises(UserError, match="--source-column"):
        read_records([write_jsonl(tmp_path / "x.jsonl", [{"id": "1", "response": "r", "source": "mine"}]), a])
    # Readers that never join on ids accept repeats.
    assert len(read_records(write_jsonl(tmp_path / "rep.jsonl", rows + rows), unique_ids=False)) == 4
