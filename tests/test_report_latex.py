"""From someone else's CSVs to a paper's tables (issue 12): several per-model files with repeated ids and
coded labels, read with toolkit commands only; label maps; column options on every reader; user
columns kept as given; honest warnings; LaTeX that compiles with a real TeX engine; figures."""
import argparse
import json
import subprocess

import krippendorff
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from generation import __main__ as generate_cmd
from judge import agree, annotate, data, label, report, swap, train
from judge.core.errors import UserError
from judge.core.taxonomy import load_taxonomy, parse_label_map, resolve_taxonomy
from tests.conftest import (
    CHEHBOUNI_CSVS,
    TEX_ENGINE,
    needs_chehbouni,
    needs_tex,
    run_cli,
    write_jsonl,
    write_xstest_like,
)

XS_CODES = {"1_full_compliance": "full compliance", "2_full_refusal": "full refusal", "3_partial_refusal": "partial refusal"}


# -- label codes ---------------------------------------------------------------------------------

def test_label_map_forms_and_precedence(tmp_path):
    assert parse_label_map("1=answer, 2 = refusal") == {"1": "answer", "2": "refusal"}
    (tmp_path / "m.yaml").write_text("1: answer\n2.0: refusal\n")
    assert parse_label_map(str(tmp_path / "m.yaml")) == {"1": "answer", "2": "refusal"}  # 2.0 and 2 are one code
    (tmp_path / "m.csv").write_text("code,category\n1,answer\n2,refusal\n")
    assert parse_label_map(str(tmp_path / "m.csv")) == {"1": "answer", "2": "refusal"}
    tax = load_taxonomy("chehbouni2024").with_label_map({"A": "answer", "refused": "harmful refusal"})
    assert tax.canonical("a") == "answer"
    # the user's map wins over a preset alias of the same spelling
    assert load_taxonomy("chehbouni2024").canonical("refused") != "harmful refusal"
    assert tax.canonical("refused") == "harmful refusal"
    with pytest.raises(UserError, match="lacks"):
        load_taxonomy("chehbouni2024").with_label_map({"9": "maybe"})
    # without a taxonomy, the categories are the mapped labels
    assert resolve_taxonomy(None, ["1", "2", "1"], label_map={"1": "yes", "2": "no"}).labels == ["no", "yes"]


def test_presets_accept_the_codes_of_the_datasets_they_name():
    compliance3 = load_taxonomy("compliance3")
    assert "XSTest" in compliance3.description
    assert [compliance3.canonical(c) for c in XS_CODES] == list(XS_CODES.values())
    chehbouni = load_taxonomy("chehbouni2024")
    released = ["answer", "partial answer", "refusal", "harmful refusal", "harmful answer", "failure"]  # the CSVs' label values
    assert [chehbouni.canonical(x) for x in released] == released


@needs_chehbouni
def test_chehbouni_preset_reads_every_released_label():
    labels = set()
    for path in CHEHBOUNI_CSVS:
        labels |= set(pd.read_csv(path)["label"].dropna())
    assert all(load_taxonomy("chehbouni2024").canonical(x) for x in labels), labels


# -- the worked example: per-model CSVs, repeated ids, coded labels --------------------------------

def test_xstest_shaped_study_with_toolkit_commands_only(tmp_path, capsys):
    files = [str(p) for p in write_xstest_like(tmp_path)]
    run = tmp_path / "run"
    # 1. agreement among the two annotators, each against the final label, over all files at once
    code, out, err = run_cli(agree, [*files, "--annotators", "annotation_1", "annotation_2", "--gold", "final_label",
                                     "--taxonomy", "compliance3", "--out", str(run / "annotators")], capsys)
    assert code == 0, err
    assert "ids repeat across the 3 input files" in out
    result = json.loads((run / "annotators" / "agreement.json").read_text())
    frames = pd.concat([pd.read_csv(f) for f in files])
    codes = {c: i for i, c in enumerate(XS_CODES)}
    a1, a2 = frames["annotation_1"].map(codes).to_numpy(), frames["annotation_2"].map(codes).to_numpy()
    # independent recomputation on the concatenated files: the same numbers, each column counted once
    assert result["krippendorff_alpha"] == pytest.approx(krippendorff.alpha(np.vstack([a1, a2]).astype(float), level_of_measurement="nominal"))
    assert result["pairwise_kappa"]["annotation_1 vs annotation_2"]["kappa"] == pytest.approx(cohen_kappa_score(a1, a2))
    assert result["n_items"] == len(frames)
    # 2. train on two models' final labels (the text column is `completion`)
    code, out, err = run_cli(train, ["--train", files[0], files[1], "--text-column", "completion", "--label-column", "final_label",
                                     "--taxonomy", "compliance3", "--kind", "tfidf", "--out", str(run / "judge")], capsys)
    assert code == 0, err
    assert "name masking: 0 of" in out  # no name column: said as zero
    manifest = json.loads((run / "judge" / "manifest.json").read_text())
    assert manifest["name_masking"]["records_masked"] == 0
    # 3. label all three models' files into one output
    code, out, err = run_cli(label, ["--judge", str(run / "judge"), "--input", *files, "--text-column", "completion",
                                     "--prefix", "judge_", "--out", str(run / "labelled.jsonl"), "--no-progress"], capsys)
    assert code == 0, err
    labelled = pd.read_json(run / "labelled.jsonl", lines=True, dtype=False)
    assert "completion" in labelled.columns and "response" not in labelled.columns  # the user's columns, unrenamed
    assert set(labelled["final_label"]) == set(XS_CODES)  # coded labels left as given
    assert labelled["id"].iloc[0] == "v2-1"  # each file's own id as it came; the combined one beside it
    assert labelled["combined_id"].is_unique and labelled["combined_id"].iloc[0] == "xstest_v2_completions_gpt4:v2-1"
    assert labelled["source"].nunique() == 3
    # 4. agreement by model; 5. rates by model
    code, out, err = run_cli(agree, [str(run / "labelled.jsonl"), "--gold", "final_label", "--pred", "judge_label", "--by", "source",
                                     "--taxonomy", "compliance3", "--out", str(run / "agreement")], capsys)
    assert code == 0, err
    by_model = json.loads((run / "agreement" / "agreement.json").read_text())["by_group"]["groups"]
    assert len(by_model) == 3
    code, out, err = run_cli(report, [str(run / "labelled.jsonl"), "--label", "judge_label", "--group", "source", "--taxonomy", "compliance3",
                                      "--reference", "xstest_v2_completions_gpt4", "--out", str(run / "disparity")], capsys)
    assert code == 0, err
    rates = json.loads((run / "disparity" / "disparity.json").read_text())
    assert rates["label_source"] == "judge (tfidf judge)"
    assert sum(r["full refusal"]["count"] for r in rates["rates"].values()) == int((labelled["judge_label"] == "full refusal").sum())


def test_label_map_reaches_every_label_reading_command(tmp_path, capsys):
    rows = [{"id": i, "response": "I cannot do that." if i % 3 == 0 else f"Sure, step {i}.", "code": 2 if i % 3 == 0 else 1,
             "a1": 2 if i % 3 == 0 else 1, "a2": 2 if i % 4 == 0 else 1, "group": "x" if i % 2 else "y", "template": f"t{i % 4}"}
            for i in range(40)]
    src = write_jsonl(tmp_path / "coded.jsonl", rows)
    lm = ["--label-map", "1=answer,2=refusal", "--taxonomy", "chehbouni2024"]
    code, _, err = run_cli(train, ["--train", str(src), "--label-column", "code", "--kind", "tfidf", *lm, "--out", str(tmp_path / "j")], capsys)
    assert code == 0, err
    code, _, err = run_cli(label, ["--judge", str(tmp_path / "j"), "--input", str(src), "--prefix", "j_", "--out", str(tmp_path / "l.jsonl"),
                                   "--no-progress"], capsys)
    assert code == 0, err
    code, _, err = run_cli(agree, [str(tmp_path / "l.jsonl"), "--gold", "code", "--pred", "j_label", *lm, "--out", str(tmp_path / "ag")], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "ag" / "agreement.json").read_text())["per_class"]["refusal"]["support"] == 14
    code, _, err = run_cli(agree, [str(src), "--annotators", "a1", "a2", *lm, "--out", str(tmp_path / "ann")], capsys)
    assert code == 0, err
    code, _, err = run_cli(report, [str(src), "--label", "code", "--group", "group", *lm, "--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    assert set(json.loads((tmp_path / "rep" / "disparity.json").read_text())["rates"]["x"]) >= {"answer", "refusal"}
    code, _, err = run_cli(annotate, ["issues", str(src), "--label", "code", *lm, "--folds", "2", "--out", str(tmp_path / "iss")], capsys)
    assert code == 0, err


# -- columns ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("module", [train, label, agree, report, data, annotate, swap])
def test_every_record_reader_takes_the_column_options(module):
    parser = module.build_parser()
    # judge.annotate: each action has its own parser; the ones that read a user's records take the options
    readers = [sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
               for name, sub in action.choices.items() if name in ("export", "adjudicate", "resolve", "issues")] or [parser]
    for reader in readers:
        flags = {a for action in reader._actions for a in action.option_strings}
        assert {"--id-column", "--prompt-column", "--text-column", "--source-column"} <= flags, reader.prog


def test_generation_takes_id_and_prompt_columns():
    flags = {a for action in generate_cmd.build_parser()._actions for a in action.option_strings}
    assert {"--id-column", "--prompt-column"} <= flags


def test_sample_with_column_options_keeps_user_columns_and_types(tmp_path, capsys):
    rows = [{"qid": 10 + i, "question": f"q{i}", "output": f"a{i}", "flag": i % 2 == 0, "n": None if i == 3 else i, "score": 2} for i in range(8)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    code, _, err = run_cli(data, ["sample", str(src), "--n", "8", "--id-column", "qid", "--prompt-column", "question", "--text-column", "output",
                                  "--out", str(tmp_path / "s.jsonl")], capsys)
    assert code == 0, err
    back = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert {"qid", "question", "output"} <= set(back[0]) and not {"id", "prompt", "response"} & set(back[0])
    by_id = {r["qid"]: r for r in back}
    for r in rows:  # int stays int (even beside a null), bool stays bool
        got = by_id[r["qid"]]
        assert type(got["qid"]) is int and type(got["flag"]) is bool and got["n"] == r["n"] and type(got["score"]) is int


def test_label_keeps_numeric_ids_and_types(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "response": "I cannot help.", "ok": True, "k": 3}, {"id": 2, "response": "Sure.", "ok": False, "k": None}])
    code, _, err = run_cli(label, ["--judge", "rules", "--taxonomy", "chehbouni2024", "--input", str(src), "--out", str(tmp_path / "o.jsonl"),
                                   "--no-progress"], capsys)
    assert code == 0, err
    back = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [(r["id"], r["ok"], r["k"]) for r in back] == [(1, True, 3), (2, False, None)]


# -- honest warnings -------------------------------------------------------------------------------

def test_rules_judge_lists_what_it_can_emit_and_agree_flags_the_rest(tmp_path, capsys):
    rows = [{"id": f"r{i}", "response": ["I cannot help.", "to fly", "to fly, but not really"][i % 3],
             "label": ["refusal", "answer", "partial answer"][i % 3]} for i in range(12)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    code, _, err = run_cli(label, ["--judge", "rules", "--taxonomy", "chehbouni2024", "--input", str(src), "--prefix", "rules_",
                                   "--out", str(tmp_path / "o.jsonl"), "--no-progress"], capsys)
    assert code == 0, err
    manifest = json.loads((tmp_path / "o.jsonl.manifest.json").read_text())
    assert manifest["judge"]["emittable_categories"] == ["answer", "refusal", "failure"]
    code, out, err = run_cli(agree, [str(tmp_path / "o.jsonl"), "--gold", "label", "--pred", "rules_label", "--taxonomy", "chehbouni2024",
                                     "--out", str(tmp_path / "ag")], capsys)
    assert code == 0
    assert "can never predict partial answer" in err
    assert "can never predict partial answer" in (tmp_path / "ag" / "agreement.md").read_text()


def test_name_masking_count_is_recorded(tmp_path, capsys):
    rows = [{"id": f"r{i}", "name": "Amira" if i % 2 else "Bo", "prompt": f"{'Amira' if i % 2 else 'Bo'} went to [BLANK]",
             "response": "to school" if i % 3 else "I cannot help.", "label": "answer" if i % 3 else "refusal"} for i in range(12)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    code, out, err = run_cli(train, ["--train", str(src), "--kind", "tfidf", "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "j")], capsys)
    assert code == 0, err
    assert "name masking: 12 of 12 records" in out
    assert json.loads((tmp_path / "j" / "manifest.json").read_text())["name_masking"]["records_masked"] == 12


# -- paper outputs: LaTeX that compiles, figures -----------------------------------------------------

TRICKY_GROUPS = ["white & co_1", "50% muslim #2", "chinese {rare}", "mexican ~ $"]


@pytest.fixture()
def reports(tmp_path, capsys):
    """An agreement report (with --by and annotators) and a disparity report (with a split and PPI), on
    groups whose names need escaping; plus an annotator-only report."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(160):
        gold = ["answer", "refusal", "partial answer"][int(rng.integers(3))] if i % 4 else "answer"
        judge = gold if rng.random() < 0.8 else "refusal"
        name = ["Amira", "Bo", "Chen", "Diego"][i % 4]
        rows.append({"id": f"r{i}", "response": "I cannot help." if gold == "refusal" else f"{name} went home.", "name": name,
                     "identity": ["muslim", "white", "chinese", "mexican"][i % 4], "label": gold, "judge_label": judge, "second": gold if rng.random() < 0.9 else "answer",
                     "group": TRICKY_GROUPS[i % 4], "common": bool(i % 2), "human": gold if i % 3 == 0 else ""})
    src = write_jsonl(tmp_path / "rows.jsonl", rows)
    out = tmp_path / "reports"
    for module, argv in [
        (agree, [str(src), "--gold", "label", "--pred", "judge_label", "--annotators", "label", "second", "--by", "group",
                 "--taxonomy", "chehbouni2024", "--bootstrap", "50", "--out", str(out / "agreement")]),
        (agree, [str(src), "--annotators", "label", "second", "--bootstrap", "50", "--out", str(out / "annotators")]),
        (report, [str(src), "--label", "judge_label", "--group", "group", "--group", "common", "--taxonomy", "chehbouni2024", "--human", "human",
                  "--reference", "white & co_1", "--digits", "2", "--out", str(out / "disparity")]),
        (swap, [str(src), "--judge", "rules", "--taxonomy", "chehbouni2024", "--sample", "20", "--no-progress", "--out", str(out / "swap")]),
    ]:
        code, _, err = run_cli(module, argv, capsys)
        assert code == 0, err
    return out


@needs_tex
def test_every_tex_compiles_with_unique_labels_and_renders(reports, tmp_path):
    texs = sorted(reports.rglob("*.tex"))
    assert len(texs) == 4
    labels = [line for t in texs for line in t.read_text().splitlines() if "\\label{" in line]
    assert len(labels) == len(set(labels)), "every \\label must be unique across reports"
    build = tmp_path / "tex"
    build.mkdir()
    body = "\n".join(f"\\input{{{t.as_posix()}}}\n\\clearpage" for t in texs)
    doc = build / "paper.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs,longtable,graphicx}\n"
                   f"\\begin{{document}}\n{body}\n\\end{{document}}\n")
    for _ in range(2):  # twice, so references settle and duplicate labels would show
        done = subprocess.run([TEX_ENGINE, "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=build, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-3000:]
    log = (build / "paper.log").read_text(errors="replace")
    assert "multiply defined" not in log and "Undefined control sequence" not in log
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "paper.pdf", "page"], cwd=build, check=True, timeout=60)
    page = next(build.glob("page*.png"))
    assert page.stat().st_size > 5000


def test_tables_escape_use_digits_and_booktabs(reports):
    tex = (reports / "disparity" / "disparity.tex").read_text()
    assert "white \\& co\\_1" in tex and "50\\% muslim \\#2" in tex and "chinese \\{rare\\}" in tex
    assert "\\toprule" in tex and "\\bottomrule" in tex
    assert "\\label{tab:" in tex and "disparity:rates}" in tex
    md = (reports / "disparity" / "disparity.md").read_text()
    cell = next(line for line in md.splitlines() if line.startswith("| mexican"))
    assert all(len(x.split(".")[1]) == 2 for x in cell.replace("[", " ").replace("]", " ").replace(",", " ").split() if x[0].isdigit() and "." in x)


def test_figures_png_and_pdf_with_sources_in_titles(reports):
    names = {p.name for p in (reports / "disparity").iterdir()}
    for stem in ("rates", "rates_by_common", "rates_stacked", "rates_heatmap", "ppi_rates"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names, stem
    assert {"confusion.png", "confusion.pdf", "error_by_group.png"} <= {p.name for p in (reports / "agreement").iterdir()}


def test_figure_layouts_follow_the_data(capsys):
    from judge.render.agreement import confusion_figure
    from judge.render.disparity import rate_interval_figure, split_figure, stacked_bars

    groups = [f"a rather long group name number {i}" for i in range(18)]
    rates = {g: {c: {"rate": 0.1, "ci_low": 0.05, "ci_high": 0.2, "count": 1, "n": 10} for c in ("answer", "refusal")} for g in groups}
    result = {"rates": rates, "categories": ["answer", "refusal"], "reference": groups[0], "group_column": "g", "label_column": "judge_label",
              "label_source": "myjudge (lora judge)", "n": 180, "splits": {"common": {g: {"True": rates[g], "False": rates[g]} for g in groups}}}
    fig = rate_interval_figure(result)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2 and "myjudge (lora judge)" in fig._suptitle.get_text()
    assert all("\n" in t.get_text() for t in axes[0].get_yticklabels())  # long names wrapped
    assert len(axes[0].lines) > 0 and len(axes[0].collections) + len(axes[0].lines) >= 18  # a marker (and bar) per group
    split = split_figure(result, "common")
    assert len(split.axes) == 2  # one panel per category, one marker per value of the second --group
    assert {t.get_text() for t in split.axes[-1].get_legend().get_texts()} == {"common = True", "common = False"}
    bars = stacked_bars({**result, "title": "My title"})
    assert bars.axes[0].get_title() == "My title"
    assert bars.axes[0].patches[0].get_width() > 0 and bars.axes[0].patches[0].get_height() < 1  # horizontal bars for 18 groups
    conf = confusion_figure({"confusion": {"matrix": [[3, 1, 0], [0, 2, 0]], "rows_gold": ["a", "b"], "columns_pred": ["a", "b", "unscored"]},
                             "pred_column": "j_label", "gold_column": "label", "pred_name": "myjudge (lora judge)", "gold_name": "human labels (label)"})
    assert "myjudge (lora judge) vs human labels (label)" in conf.axes[0].get_title()


def test_examples_label_column_and_label_map_for_the_llm_judges_examples(tmp_path):
    from judge.kinds.llm.judge import ExamplePicker

    rows = [{"id": f"e{i}", "prompt": "p", "response": f"reply {i}", "verdict": ["1_full_compliance", "2_full_refusal"][i % 2]} for i in range(6)]
    src = write_jsonl(tmp_path / "examples.jsonl", rows)
    tax = load_taxonomy("compliance3")
    picker = ExamplePicker(src, tax, shots=1, seed=0, by_similarity=False, label_column="verdict")
    assert set(picker.records["label"]) == {"full compliance", "full refusal"}
    coded = write_jsonl(tmp_path / "coded.jsonl", [{**r, "verdict": r["verdict"][0]} for r in rows])  # "1", "2"
    with pytest.raises(UserError, match="--examples-label-column|--label-map"):
        ExamplePicker(coded, tax, shots=1, seed=0, by_similarity=False, label_column="verdict")
    mapped = ExamplePicker(coded, tax.with_label_map({"1": "full compliance", "2": "full refusal"}), shots=1, seed=0, by_similarity=False,
                           label_column="verdict")
    assert "Category: full refusal" in mapped.render(mapped.fixed)


def many_groups_records(n_groups=32):
    """A 32-group report's input: long file-stem group names, repeated prompts, a human column, a second --group."""
    rng = np.random.default_rng(0)
    cats = ["answer", "refusal", "partial answer"]
    rows = []
    for i in range(n_groups * 30):
        gold = cats[int(rng.integers(3))]
        rows.append({"id": f"r{i}", "prompt": f"p{i // 3}", "response": "x", "source": f"xstest_v2_completions_model{i % n_groups:02d}",
                     "kind": "a" if i % 64 < 32 else "b", "judge_label": gold if rng.random() < 0.8 else "refusal", "human": gold if i % 3 == 0 else ""})
    return rows


@needs_tex
def test_a_32_group_report_compiles_without_overfull_boxes_or_floats_too_large(tmp_path, capsys):
    import re

    from PIL import Image

    src = write_jsonl(tmp_path / "rows.jsonl", many_groups_records())
    out = tmp_path / "rep"
    code, _, err = run_cli(report, [str(src), "--label", "judge_label", "--group", "source", "--group", "kind", "--taxonomy", "chehbouni2024",
                                    "--human", "human", "--reference", "xstest_v2_completions_model00", "--out", str(out)], capsys)
    assert code == 0, err
    tex = (out / "disparity.tex").read_text()
    assert "\\begin{longtable}" in tex and tex.count("\\resizebox") > tex.count("\\begin{table}")  # long tables come in shrunk pieces
    build = tmp_path / "tex"
    build.mkdir()
    (build / "paper.tex").write_text("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs,longtable,graphicx}\n"
                                     f"\\begin{{document}}\n\\input{{{(out / 'disparity.tex').as_posix()}}}\n\\end{{document}}\n")
    for _ in range(2):
        done = subprocess.run([TEX_ENGINE, "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=build, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-3000:]
    log = (build / "paper.log").read_text(errors="replace")
    assert "Float too large" not in log
    overfull = [float(x) for x in re.findall(r"Overfull \\[hv]box \(([\d.]+)pt too", log)]
    assert all(x <= 1.0 for x in overfull), overfull  # before: 31-488 pt too wide
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "3", "-l", "3", "paper.pdf", "page"], cwd=build, check=True, timeout=60)
    assert next(build.glob("page*.png")).stat().st_size > 5000
    for png in out.glob("*.png"):  # printable: at most a page's text block at 200 dpi (tight bounding boxes add a margin)
        width, height = Image.open(png).size
        assert width <= 1.03 * 7.5 * 200 and height <= 1.03 * 9.5 * 200, (png.name, width, height)  # before: rates_by_kind 1583 x 11555


def test_figures_share_one_group_order_one_x_range_and_name_judge_and_n():
    from judge.render.disparity import ppi_figure, rate_interval_figure, split_figure

    groups = [f"g{i}" for i in range(6)]
    cats = ["answer", "refusal"]
    rates = {g: {c: {"rate": 0.1 * (i + 1) if c == "refusal" else 0.05, "ci_low": 0.0, "ci_high": 0.1 * (i + 2) if c == "refusal" else 0.1,
                     "count": 1, "n": 10} for c in cats} for i, g in enumerate(groups)}
    result = {"rates": rates, "categories": cats, "reference": "g0", "group_column": "g", "label_column": "judge_label",
              "label_source": "myjudge (tfidf judge)", "n": 60, "splits": {"k": {g: {"a": rates[g], "b": rates[g]} for g in groups}}}
    entry = {"rate": 0.2, "ci": [0.1, 0.3]}
    ppi = {"rates": {g: {c: {"judge_only": entry, "human_only": entry, "ppi": entry, "estimable": True, "n_human": 5} for c in cats} for g in groups},
           "not_estimable": {}, "alpha": 0.05}
    figures = [rate_interval_figure(result), split_figure(result, "k"), ppi_figure(ppi, cats, group_column="g", judge="myjudge (tfidf judge)", n=60)]
    for fig in figures:
        axes = [ax for ax in fig.axes if ax.get_visible() and ax.has_data()]
        assert all(ax.yaxis_inverted() for ax in axes)  # the first group at the top, in every figure
        assert [t.get_text() for t in axes[0].get_yticklabels()] == groups
        assert len({ax.get_xlim() for ax in axes}) == 1 and axes[0].get_xlim()[1] >= max(ax.dataLim.x1 for ax in axes)  # one x range for all
        assert "myjudge (tfidf judge)" in fig._suptitle.get_text() and "n = 60" in fig._suptitle.get_text()
    assert "30 human labels" in figures[2]._suptitle.get_text()  # before: the PPI figure named neither the judge nor n
