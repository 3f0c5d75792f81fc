"""Output fidelity and numbers that must be right (issue 18, points 4, 7, 8, 9): the files a command
writes keep the user's own values and types, every JSON the toolkit writes is strict JSON, titles give
LaTeX that compiles, and the statistics that were wrong with exit 0 are right."""
import json
import math
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2, chi2_contingency

import generation.__main__ as generate_cmd
from judge import agree, annotate, data, label, report
from judge.core.errors import UserError, clip
from judge.core.files import json_text
from judge.core.records import SHADOW, judged_text, read_records, user_columns
from judge.core.taxonomy import Taxonomy, load_taxonomy
from judge.core.yaml_data import load_yaml
from judge.kinds.base import Judge, Judgement
from tests.conftest import run_cli, write_jsonl


def strict_json(text: str):
    """json.loads that refuses NaN/Infinity, as every JSON reader other than Python's does."""
    def refuse(token):
        raise ValueError(f"{token} is not JSON")
    return json.loads(text, parse_constant=refuse)


TYPED = [
    {"id": "a", "prompt": None, "response": 123, "label": "answer"},
    {"id": "b", "prompt": "P", "response": {"a": 1, "b": [2, "ü"]}, "label": "refusal"},
    {"id": "c", "prompt": 7, "response": [1, "x"], "label": "answer"},
    {"id": "d", "prompt": "P", "response": True, "label": "answer"},
    {"id": "e", "prompt": "P", "response": "I cannot help with that.", "label": "refusal"},
    {"id": "f", "prompt": "P", "response": None, "label": "answer"},
]


class Recorder(Judge):
    """A judge that answers 'answer' and remembers the texts it was given."""

    kind = "recorder"

    def __init__(self, taxonomy):
        super().__init__(taxonomy)
        self.seen = {}

    def _label_batch(self, batch):
        self.seen.update({item.id: (item.prompt, item.response) for item in batch})
        return [Judgement.from_probabilities({"answer": 1.0, "refusal": 0.0}) for _ in batch]


# -- A. output fidelity ---------------------------------------------------------------------------

def test_judges_read_json_text_not_python_reprs(tmp_path):
    records = read_records(write_jsonl(tmp_path / "in.jsonl", TYPED))
    judge = Recorder(Taxonomy.from_labels(["answer", "refusal"]))
    judge.label(records, progress=False)
    assert judge.seen["a"] == ("", "123")  # a null prompt reads as "", a number as JSON writes it
    assert judge.seen["b"] == ("P", '{"a": 1, "b": [2, "ü"]}')  # JSON text, not the repr "{'a': 1, ...}"
    assert judge.seen["c"] == ("7", '[1, "x"]')
    assert judge.seen["d"] == ("P", "true")
    assert "f" not in judge.seen  # a missing response is never sent to a judge


def test_label_writes_back_the_users_own_values_and_types(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", TYPED)
    code, _, err = run_cli(label, ["--judge", "rules", "--taxonomy", "chehbouni2024", "--input", str(src), "--prefix", "judge_",
                                   "--no-progress", "--out", str(tmp_path / "out.jsonl")], capsys)
    assert code == 0, err
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    for row, original in zip(out, TYPED):
        for key, value in original.items():
            assert row[key] == value and type(row[key]) is type(value), (key, row[key], value)
    assert list(out[0])[:4] == ["id", "prompt", "response", "label"]  # in their places, no stand-in column left
    assert not any(k.startswith(SHADOW) for row in out for k in row)
    assert out[4]["judge_label"] == "refusal" and out[5]["judge_label"] == "unscored"


def test_parquet_bytes_are_judged_decoded_and_written_as_bytes(tmp_path, capsys):
    src = tmp_path / "in.parquet"
    pd.DataFrame({"id": ["a", "b"], "response": [b"I cannot help with that.", "caf\u00e9 to fly".encode()],
                  "score": np.array([3, 4], dtype="int64")}).to_parquet(src)
    records = read_records(src)
    assert records["response"].tolist() == ["I cannot help with that.", "café to fly"]  # not "b'I cannot...'"
    code, _, err = run_cli(label, ["--judge", "rules", "--input", str(src), "--no-progress", "--out", str(tmp_path / "out.parquet")], capsys)
    assert code == 0, err
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["response"].tolist() == [b"I cannot help with that.", "café to fly".encode()]
    assert out["score"].dtype == np.int64 and out["label"].tolist() == ["refusal", "answer"]


def test_integer_parquet_responses_keep_their_dtype(tmp_path, capsys):
    src = tmp_path / "in.parquet"
    pd.DataFrame({"id": ["a", "b"], "response": np.array([1, 2], dtype="int64")}).to_parquet(src)
    code, _, err = run_cli(label, ["--judge", "rules", "--input", str(src), "--no-progress", "--out", str(tmp_path / "out.parquet")], capsys)
    assert code == 0, err
    assert pd.read_parquet(tmp_path / "out.parquet")["response"].dtype == np.int64


def test_text_columns_need_no_stand_in(tmp_path):
    # plain text, and a missing response, round-trip as they are: nothing is kept aside
    records = read_records(write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "prompt": "P", "response": "R"}, {"id": "b", "prompt": "P", "response": None}]))
    assert [c for c in records.columns if c.startswith(SHADOW)] == [] and records.attrs["column_map"] == {}


def test_sample_keeps_typed_responses(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "response": i, "identity": "x"} for i in range(6)])
    code, _, err = run_cli(data, ["sample", str(src), "--n", "3", "--out", str(tmp_path / "s.jsonl")], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert all(isinstance(r["response"], int) and r["id"] == f"r{r['response']}" for r in rows) and len(rows) == 3


def test_annotation_export_shows_text_and_leaks_no_stand_in_column(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "prompt": "P", "response": {"turn": i}} for i in range(4)])
    code, _, err = run_cli(annotate, ["export", str(src), "--taxonomy", "chehbouni2024", "--budget", "4", "--out", str(tmp_path / "x")], capsys)
    assert code == 0, err
    items = pd.read_csv(tmp_path / "x" / "items.csv")
    assert not any(c.startswith(SHADOW) for c in items.columns)
    assert sorted(items["response"]) == [f'{{"turn": {i}}}' for i in range(4)]


def test_generation_keeps_a_typed_prompt(tmp_path, capsys, tiny_llama):
    src = write_jsonl(tmp_path / "p.jsonl", [{"id": "p1", "prompt": 12345, "identity": "x"}])
    code, _, err = run_cli(generate_cmd, ["--model", tiny_llama, "--prompts", str(src), "--samples", "1", "--max-new-tokens", "2",
                                          "--device", "cpu", "--no-progress", "--out", str(tmp_path / "o.jsonl")], capsys)
    assert code == 0, err
    row = json.loads((tmp_path / "o.jsonl").read_text().splitlines()[0])
    assert row["prompt"] == 12345 and row["id"] == "p1-s1" and row["identity"] == "x" and isinstance(row["response"], str)


def test_judged_text_refuses_bytes_that_are_not_utf8():
    assert judged_text(b"ok") == "ok" and judged_text(np.int64(5)) == "5" and judged_text(float("nan")) is None
    with pytest.raises(UserError, match="not UTF-8"):
        judged_text(b"\xff")


# -- every JSON the toolkit writes is valid JSON --------------------------------------------------

def test_json_text_writes_null_for_nan_and_infinity():
    value = {"a": [np.float64("nan"), math.inf, {"b": np.float32("-inf")}], np.int64(3): np.int64(1), "c": np.array([0.5, np.nan])}
    assert json_text(value) == '{"a": [null, null, {"b": null}], "3": 1, "c": [0.5, null]}'
    with pytest.raises(ValueError):  # allow_nan=False: a value that escapes the cleaning fails loudly
        json_text({"x": object()}, default=lambda _: float("nan"))


def test_agreement_json_is_strict_json(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "label": "answer" if i % 2 else "refusal", "pred": "answer"} for i in range(6)])
    # --bootstrap 0: no intervals (NaN inside); judge predicting one class: kappa 0, alpha NaN
    code, _, err = run_cli(agree, [str(src), "--gold", "label", "--pred", "pred", "--bootstrap", "0", "--out", str(tmp_path / "a")], capsys)
    assert code == 0, err
    result = strict_json((tmp_path / "a" / "agreement.json").read_text())
    assert result["ci"]["cohen_kappa"] == [None, None]
    strict_json((tmp_path / "a" / "manifest.json").read_text())


def test_disparity_with_an_all_unscored_group(tmp_path, capsys):
    # a: 3 refusals, 1 answer; b: 1 refusal, 3 answers; c: every label unscored (a row of zeros that
    # chi2_contingency refuses). The test runs on a and b only. By hand: expected counts are all 2,
    # Yates' correction for one degree of freedom gives (|3-2| - 0.5)^2 / 2 = 0.125 per cell, chi2 = 0.5.
    labels = {"a": ["refusal"] * 3 + ["answer"], "b": ["refusal"] + ["answer"] * 3, "c": ["unscored"] * 4}
    rows = [{"id": f"{g}{i}", "group": g, "label": lab} for g, labs in labels.items() for i, lab in enumerate(labs)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    code, out, err = run_cli(report, [str(src), "--label", "label", "--group", "group", "--out", str(tmp_path / "r")], capsys)
    assert code == 0, err
    result = strict_json((tmp_path / "r" / "disparity.json").read_text())
    chi = result["chi_square"]
    assert chi["statistic"] == pytest.approx(0.5) and chi["dof"] == 1
    assert chi["p_value"] == pytest.approx(chi2.sf(0.5, 1))
    reference = chi2_contingency([[3, 1], [1, 3]])
    assert chi["statistic"] == pytest.approx(reference.statistic) and chi["p_value"] == pytest.approx(reference.pvalue)
    assert chi["groups_without_scored_outputs"] == ["c"]
    assert result["rates"]["c"]["refusal"]["rate"] is None and result["rates"]["c"]["refusal"]["n"] == 0
    assert "Left out of the test (no scored output): c." in out


# -- titles ---------------------------------------------------------------------------------------

def test_a_title_with_blank_lines_becomes_one_line(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "group": "ab"[i % 2], "label": "answer" if i % 3 else "refusal"} for i in range(8)])
    code, _, err = run_cli(report, [str(src), "--label", "label", "--group", "group", "--title", "Refusals by group\n\n  (judge\tlabels)",
                                    "--out", str(tmp_path / "r")], capsys)
    assert code == 0, err
    tex = (tmp_path / "r" / "disparity.tex").read_text()
    assert "\\caption{Refusals by group (judge labels). Rate" in tex and "\n\n" not in tex.split("\\caption{")[1].split("}")[0]
    assert (tmp_path / "r" / "disparity.md").read_text().startswith("# Refusals by group (judge labels)\n")
    if shutil.which("pdflatex"):
        doc = tmp_path / "doc.tex"
        doc.write_text("\\documentclass{article}\\usepackage[T1]{fontenc}\\usepackage{booktabs,longtable,graphicx}"
                       f"\\begin{{document}}\\input{{{(tmp_path / 'r' / 'disparity.tex').as_posix()}}}\\end{{document}}\n")
        done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:]


# -- B. taxonomies and label maps -----------------------------------------------------------------

def _asian_records(tmp_path):
    # 46 asian outputs: 9 refusals and 37 answers; 40 white outputs: 4 refusals, 36 answers
    rows = [{"id": f"a{i}", "identity": "asian", "label": "refusal" if i < 9 else "answer"} for i in range(46)]
    rows += [{"id": f"w{i}", "identity": "white", "label": "refusal" if i < 4 else "answer"} for i in range(40)]
    return write_jsonl(tmp_path / "in.jsonl", rows)


def test_coarse_rates_follow_the_parents(tmp_path, capsys):
    tax = tmp_path / "tax.yaml"
    tax.write_text("name: t\ncategories:\n  - {name: answer, parent: answered}\n  - {name: refusal, parent: refused}\n"
                   "  - {name: failure, parent: failure}\n")  # a category may name itself as parent: its own coarse group
    code, _, err = run_cli(report, [str(_asian_records(tmp_path)), "--label", "label", "--group", "identity", "--taxonomy", str(tax),
                                    "--coarse", "--out", str(tmp_path / "r")], capsys)
    assert code == 0, err
    rates = strict_json((tmp_path / "r" / "disparity.json").read_text())["rates"]
    assert rates["asian"]["refused"]["count"] == 9 and rates["asian"]["refused"]["rate"] == pytest.approx(9 / 46)
    assert rates["white"]["answered"]["count"] == 36
    assert list(rates["asian"]) == ["answered", "refused", "failure"]


def test_label_map_of_codes_still_reads_codes(tmp_path, capsys):
    # codes that are not category names map as before, an alias may be read as another category
    # (a map wins over aliases), and a category mapped onto itself is no merge
    tax = load_taxonomy("chehbouni2024").with_label_map({"2": "refusal", "refused": "harmful refusal", "answer": "answer"})
    assert tax.canonical(2) == "refusal" and tax.canonical("refused") == "harmful refusal" and tax.canonical("Answer") == "answer"


# -- C. values ------------------------------------------------------------------------------------

def test_seed_range_ends_are_accepted(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "response": "I cannot help."}])
    for seed in ("0", "4294967295"):
        code, _, err = run_cli(label, ["--judge", "rules", "--input", str(src), "--seed", seed, "--device", "cpu", "--no-progress",
                                       "--out", str(tmp_path / f"o{seed}.jsonl")], capsys)
        assert code == 0, err


def test_cuda_devices_are_checked_against_the_machine():
    import torch

    from judge.core.devices import check_device_available

    check_device_available("cpu")
    if torch.cuda.is_available():
        check_device_available(f"cuda:{torch.cuda.device_count() - 1}")
        with pytest.raises(UserError, match="GPU\\(s\\) are visible"):
            check_device_available(f"cuda:{torch.cuda.device_count()}")
    else:
        with pytest.raises(UserError, match="no GPU is visible"):
            check_device_available("cuda:0")


def test_non_finite_validation_scores_stop_calibration():
    from training.calibration import fit_temperature

    assert fit_temperature(np.array([[2.0, 0.0], [0.0, 2.0]]), np.array([0, 1])) > 0
    with pytest.raises(UserError, match="not finite"):
        fit_temperature(np.array([[np.nan, 0.0], [0.0, 1.0]]), np.array([0, 1]))


def test_yaml_without_aliases_loads_and_anchors_alone_are_harmless():
    assert load_yaml("a: &x 1\nb: [2, 3]\n", source="t") == {"a": 1, "b": [2, 3]}
    with pytest.raises(UserError, match=r"YAML alias \(\*x\).*line 2"):
        load_yaml("a: &x [1, 2]\nb: *x\n", source="t")
    assert load_yaml("[" * 60 + "]" * 60, source="t") is not None


def test_the_bundled_gguf_passes_the_magic_check():
    from judge.engines.models import check_gguf, smollm2_gguf

    check_gguf(smollm2_gguf())


def test_clip_keeps_messages_short_and_on_one_line():
    assert clip("x" * 1_000_000) == "'" + "x" * 56 + "..."
    assert clip("two\nlines") == "'two\\nlines'"
