"""Issue 21 item 6: a report's style and interval level are parameters of its renderers, not hidden
state: digits and the LaTeX label prefix are passed in (judge.render.tables.Style), and the interval
results carry one key ("ci") with their "level", which every renderer reads."""
import json
import re

import numpy as np
import pytest

from judge import agree
from judge.render.agreement import render_agreement
from judge.render.tables import Style, level_text
from tests.conftest import run_cli, write_jsonl

CATS = ["answer", "refusal", "partial answer"]


@pytest.fixture()
def judged(tmp_path):
    rng = np.random.default_rng(3)
    rows = []
    for i in range(120):
        gold = CATS[i % 3]
        pred = gold if rng.random() < 0.7 else CATS[(i + 1) % 3]
        rows.append({"id": f"r{i}", "prompt": f"p{i}", "response": "r", "label": gold, "judge_label": pred, "identity": "ab"[i % 2]})
    return write_jsonl(tmp_path / "judged.jsonl", rows)


def _agree(src, out, capsys, *extra):
    code, _, err = run_cli(agree, [str(src), "--gold", "label", "--pred", "judge_label", "--bootstrap", "300", "--out", str(out), *extra], capsys)
    assert code == 0, err
    return json.loads((out / "agreement.json").read_text()), (out / "agreement.md").read_text(), (out / "agreement.tex").read_text()


def test_level_text():
    assert [level_text(x) for x in (0.95, 0.9, 0.975, 0.99)] == ["95%", "90%", "97.5%", "99%"]


def test_a_level_090_report_renders_its_own_intervals(judged, tmp_path, capsys):
    r95, md95, _ = _agree(judged, tmp_path / "a95", capsys, "--by", "identity")
    r90, md90, tex90 = _agree(judged, tmp_path / "a90", capsys, "--by", "identity", "--level", "0.9")
    assert "ci95" not in r95 and r95["ci"]["level"] == 0.95 and r90["ci"]["level"] == 0.9 and r90["by_group"]["level"] == 0.9
    # Same resamples (same seed), percentiles 5/95 instead of 2.5/97.5: the 90% interval lies inside the 95% one.
    (lo90, hi90), (lo95, hi95) = r90["ci"]["cohen_kappa"], r95["ci"]["cohen_kappa"]
    assert lo95 <= lo90 < r90["cohen_kappa"] < hi90 <= hi95 and (hi90 - lo90) < (hi95 - lo95)
    assert "95%" not in md90 and "95%" not in tex90
    assert "| 90% CI" in md90 and "kappa [90% CI]" in md90 and "90% intervals:" in md90
    assert "| 95% CI" in md95 and "kappa [95% CI]" in md95


def test_level_outside_0_1_is_refused(judged, tmp_path, capsys):
    from tests.badinput import assert_refused

    assert_refused(agree, [str(judged), "--gold", "label", "--pred", "judge_label", "--level", "95", "--out", str(tmp_path / "x")],
                   ["--level must be in (0, 1)", "95"], root=tmp_path, capsys=capsys)


def test_digits_and_label_prefix_are_renderer_arguments(judged, tmp_path, capsys):
    result, _, _ = _agree(judged, tmp_path / "a", capsys)
    kappa = result["cohen_kappa"]
    md1, tex1 = render_agreement(result, Style(digits=1, tex_label="first"))
    md4, tex4 = render_agreement(result, Style(digits=4, tex_label="second"))
    assert f"| {kappa:.1f} " in md1 and f"| {kappa:.4f} " in md4  # two styles side by side in one process: nothing global
    assert set(re.findall(r"\\label\{tab:(\w+):", tex1)) == {"first"} and set(re.findall(r"\\label\{tab:(\w+):", tex4)) == {"second"}
    # the command line reaches the same arguments
    _, md, tex = _agree(judged, tmp_path / "b", capsys, "--digits", "2", "--tex-label", "study")
    assert f"| {kappa:.2f} " in md and set(re.findall(r"\\label\{tab:(\w+):", tex)) == {"study"}
