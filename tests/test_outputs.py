"""Files are the user's: an output never is, contains or lies inside an input; --overwrite replaces only
what the command wrote before; one run at a time writes an output (issue 18, points 1 and 2).

Each refused case keeps the bad-input contract (tests/badinput.py) over the whole temporary tree, so a
case passes only if every file the command did not write is still there, byte for byte.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from generation import __main__ as generate_cmd
from judge import agree, annotate, data, demo, label, report, swap, train
from judge.core.outputs import lock_path, output_lock
from judge.core.paths import ROOT
from tests.badinput import assert_refused, run_module

ROWS = [
    {"id": f"r{i}", "prompt": f"Name{i} got into the plane to [BLANK]", "response": "to fly home" if i % 3 else "I cannot help with that.",
     "label": "answer" if i % 3 else "refusal", "identity": "muslim" if i % 2 else "white", "name": f"Name{i}", "judge_label": "answer" if i % 4 else "refusal"}
    for i in range(24)
]


def write_rows(path: Path, rows=ROWS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def study(tmp_path):
    """A study folder as a researcher keeps it: the data, notes, and a judge trained on it."""
    d = tmp_path / "d"
    write_rows(d / "data.jsonl")
    (d / "notes.txt").write_text("my notes, not an output\n")
    return d


@pytest.fixture(scope="module")
def tfidf_judge(tmp_path_factory):
    folder = tmp_path_factory.mktemp("judge")
    train_file = write_rows(folder / "train.jsonl")
    code = run_module(train, ["--train", str(train_file), "--kind", "tfidf", "--out", str(folder / "tfidf")], _NoCapture())[0]
    assert code == 0
    return folder / "tfidf"


class _NoCapture:
    def readouterr(self):
        return type("Captured", (), {"out": "", "err": ""})()


def _cases(d, judge_dir):
    G = f"{d}/data.jsonl"
    return [
        # --out is the folder that holds the input (and unrelated notes): --overwrite must not empty it
        (report, [G, "--label", "label", "--group", "identity", "--out", str(d), "--overwrite"], ["contains the input", "data.jsonl"]),
        (agree, [G, "--gold", "label", "--pred", "judge_label", "--out", str(d), "--overwrite"], ["contains the input"]),
        (swap, [G, "--judge", "rules", "--out", str(d), "--overwrite"], ["contains the input"]),
        (train, ["--train", G, "--kind", "tfidf", "--out", str(d), "--overwrite"], ["contains the input"]),
        (annotate, ["export", G, "--budget", "4", "--out", str(d), "--overwrite"], ["contains the input"]),
        # the output is the input itself
        (label, ["--judge", "rules", "--input", G, "--out", G, "--prefix", "j_", "--overwrite"], ["also an input"]),
        (data, ["sample", G, "--n", "4", "--out", G, "--overwrite"], ["also an input"]),
        (annotate, ["import", G, "--out", G, "--overwrite"], ["also an input"]),
        (annotate, ["resolve", G, "--out", G, "--overwrite"], ["also an input"]),
        # an output inside an input folder (the judge directory), or the input as an output's sidecar
        (label, ["--judge", str(judge_dir), "--input", G, "--out", f"{judge_dir}/labels.jsonl", "--prefix", "j_"], ["lies inside the input folder"]),
        (label, ["--judge", "rules", "--input", G, "--out", f"{d}/data", "--prefix", "j_"], ["unknown file format"]),
        # --overwrite of a folder holding only a user's file, and of a user's file
        (report, [G, "--label", "label", "--group", "identity", "--out", f"{d}/mine", "--overwrite"], ["not written by judge.report", "notes.md"]),
        (label, ["--judge", "rules", "--input", G, "--out", f"{d}/theirs.jsonl", "--prefix", "j_", "--overwrite"], ["replaces only what judge.label wrote"]),
        (data, ["sample", G, "--n", "4", "--out", f"{d}/theirs.jsonl", "--overwrite"], ["replaces only what judge.data wrote"]),
        # the demo asks like every command: a folder with someone else's prompts.jsonl, and a bad value before any file
        (demo, ["--out", f"{d}/demo_taken"], ["did not write"]),
        (demo, ["--out", f"{d}/demo_new", "--samples", "0"], ["--samples", "positive"]),
        # pull's raw-export sidecar: a user's file of that name is never replaced
        (annotate, ["pull", f"{d}/mine", "--project", "1", "--taxonomy", "chehbouni2024", "--out", f"{d}/pulled.csv", "--overwrite"],
         ["pulled.label-studio.json", "already exists"]),
    ]


def _prepare(d):
    (d / "mine").mkdir()
    (d / "mine" / "notes.md").write_text("kept\n")
    write_rows(d / "theirs.jsonl")
    (d / "demo_taken").mkdir()
    write_rows(d / "demo_taken" / "prompts.jsonl")
    (d / "pulled.label-studio.json").write_text("[]\n")


CASE_IDS = ["report-dir-holds-input", "agree-dir-holds-input", "swap-dir-holds-input", "train-dir-holds-input", "export-dir-holds-input",
            "label-out-is-input", "sample-out-is-input", "import-out-is-input", "resolve-out-is-input", "label-out-in-judge-dir",
            "label-out-no-suffix", "report-overwrite-user-dir", "label-overwrite-user-file", "sample-overwrite-user-file",
            "demo-foreign-folder", "demo-bad-value-first", "pull-sidecar-is-users"]


@pytest.mark.parametrize("index", range(len(CASE_IDS)), ids=CASE_IDS)
def test_overwrite_never_touches_what_the_command_did_not_write(study, tfidf_judge, tmp_path, capsys, index):
    _prepare(study)
    module, argv, fragments = _cases(study, tfidf_judge)[index]
    assert_refused(module, argv, fragments, root=tmp_path, capsys=capsys)
    assert (study / "notes.txt").exists() and (study / "data.jsonl").exists()


def test_overwrite_in_the_working_directory_is_refused(study, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(study)
    assert_refused(train, ["--train", "data.jsonl", "--kind", "tfidf", "--out", ".", "--overwrite"], ["contains the input"], root=tmp_path, capsys=capsys)


CASES = len(CASE_IDS) + 1  # the working-directory case; quoted by test_bad_inputs' count


def test_overwrite_replaces_its_own_report_and_nothing_else(study, tmp_path, capsys):
    out = tmp_path / "reports" / "disparity"
    argv = [str(study / "data.jsonl"), "--label", "label", "--group", "identity", "--out", str(out)]
    assert run_module(report, argv, capsys)[0] == 0
    listed = json.loads((out / "manifest.json").read_text())["outputs"]
    assert "disparity.json" in listed and "manifest.json" not in listed
    assert run_module(report, [*argv, "--overwrite"], capsys)[0] == 0  # its own files: replaced
    (out / "rates.png").write_bytes(b"edited by hand")
    assert_refused(report, [*argv, "--overwrite"], ["rates.png", "was changed after judge.report"], root=tmp_path, capsys=capsys)


def test_overwrite_replaces_its_own_file_until_the_user_edits_it(study, tmp_path, capsys):
    out = tmp_path / "labels.jsonl"
    argv = ["--judge", "rules", "--input", str(study / "data.jsonl"), "--out", str(out), "--prefix", "j_"]
    assert run_module(label, argv, capsys)[0] == 0
    assert run_module(label, [*argv, "--overwrite"], capsys)[0] == 0
    out.write_text(out.read_text() + "\n")
    assert_refused(label, [*argv, "--overwrite"], ["changed after judge.label wrote it"], root=tmp_path, capsys=capsys)


def test_retraining_replaces_the_judge_directory_whole(study, tmp_path, capsys):
    out = tmp_path / "judge"
    argv = ["--train", str(study / "data.jsonl"), "--kind", "tfidf", "--out", str(out)]
    assert run_module(train, argv, capsys)[0] == 0
    first = sorted(p.name for p in out.iterdir())
    assert run_module(train, [*argv, "--overwrite", "--seed", "3"], capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == first
    assert json.loads((out / "manifest.json").read_text())["settings"]["seed"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".judge")], "no staging folder or lock left behind"


def test_a_held_output_is_refused_naming_the_holder(study, tmp_path, capsys):
    out = tmp_path / "labels.jsonl"
    with output_lock(out):
        assert lock_path(out).read_text().strip() == str(os.getpid())
        line = assert_refused(label, ["--judge", "rules", "--input", str(study / "data.jsonl"), "--out", str(out), "--prefix", "j_"],
                              ["another run", f"pid {os.getpid()}"], root=tmp_path, capsys=capsys)
    assert not lock_path(out).exists(), "the lock file goes with the run"
    assert "--out" in line
    # released: the same command now runs
    assert run_module(label, ["--judge", "rules", "--input", str(study / "data.jsonl"), "--out", str(out), "--prefix", "j_"], capsys)[0] == 0


def _lock_cases(study, tmp_path):
    data_file = str(study / "data.jsonl")
    return {
        "label": (label, lambda out: ["--judge", "rules", "--input", data_file, "--out", str(out), "--prefix", "j_"], "lk.jsonl"),
        "report": (report, lambda out: [data_file, "--label", "label", "--group", "identity", "--out", str(out)], "rep"),
        "train": (train, lambda out: ["--train", data_file, "--kind", "tfidf", "--out", str(out)], "tf"),
    }


@pytest.mark.parametrize("command", ["label", "report", "train"])
def test_a_lock_file_that_is_a_link_is_refused_and_its_target_untouched(study, tmp_path, capsys, command):
    """Issue 31 (1a): a planted ``.OUT.lock -> victim`` never gets the run's pid written into the victim."""
    module, argv, name = _lock_cases(study, tmp_path)[command]
    folder = tmp_path / "o"
    folder.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("the user's own words\n")
    out = folder / name
    lock_path(out).symlink_to(victim)
    line = assert_refused(module, argv(out), [str(lock_path(out)), "symbolic link"], root=tmp_path, capsys=capsys)
    assert "remove it" in line
    assert victim.read_text() == "the user's own words\n"
    assert lock_path(out).is_symlink() and not out.exists()
    # a link to a missing file: refused too, and no file created at its target
    lock_path(out).unlink()
    lock_path(out).symlink_to(tmp_path / "absent.txt")
    assert_refused(module, argv(out), ["symbolic link"], root=tmp_path, capsys=capsys)
    assert not (tmp_path / "absent.txt").exists()


def test_a_lock_path_that_is_not_a_regular_file_is_refused(study, tmp_path, capsys):
    out = tmp_path / "o" / "lk.jsonl"
    lock_path(out).mkdir(parents=True)
    argv = ["--judge", "rules", "--input", str(study / "data.jsonl"), "--out", str(out), "--prefix", "j_"]
    assert_refused(label, argv, [str(lock_path(out)), "not a regular file"], root=tmp_path, capsys=capsys)
    os.mkfifo(lock_path(out).with_name(".fifo.jsonl.lock"))
    fifo_out = out.with_name("fifo.jsonl")
    argv = ["--judge", "rules", "--input", str(study / "data.jsonl"), "--out", str(fifo_out), "--prefix", "j_"]
    assert_refused(label, argv, ["not a regular file"], root=tmp_path, capsys=capsys)


def test_a_killed_holder_releases_the_lock(tmp_path):
    out = tmp_path / "out.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from judge.core.outputs import output_lock\n"
                               f"with output_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(60)"],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # kill -9: no cleanup runs, the lock file stays, the kernel drops the lock
    holder.wait()
    assert lock_path(out).exists()
    with output_lock(out):
        pass


def _start(argv, tmp_path, name):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), tmp_path / f"{name}.log"


def _race(argv, tmp_path):
    """Start the same command twice at once; return [(exit code, log)] for both."""
    runs = [_start(argv, tmp_path, f"run{i}") for i in range(2)]
    return [(proc.wait(timeout=600), log.read_text()) for proc, log in runs]


@pytest.mark.slow
def test_two_generation_runs_on_one_output(tiny_llama, tmp_path):
    prompts = write_rows(tmp_path / "prompts.jsonl", [{"id": f"p{i}", "prompt": f"Name{i} got into the plane to"} for i in range(40)])
    out = tmp_path / "outputs.jsonl"
    results = _race(["-m", "generation", "--model", tiny_llama, "--prompts", str(prompts), "--out", str(out), "--samples", "2",
                     "--max-new-tokens", "16", "--batch-size", "1", "--no-progress"], tmp_path)
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(log for code, log in results if code == 2)
    assert "another run (pid" in refused and "Traceback" not in refused
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 80 and len({r["id"] for r in rows}) == 80
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["outputs"] == 80


@pytest.mark.slow
def test_two_labelling_runs_on_one_output(tiny_llama, tmp_path):
    records = write_rows(tmp_path / "outputs.jsonl", ROWS * 1)
    out = tmp_path / "labels.jsonl"
    results = _race(["-m", "judge.label", "--judge", f"llm:{tiny_llama}", "--input", str(records), "--out", str(out),
                     "--prefix", "llm_", "--batch-size", "1", "--no-progress"], tmp_path)
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    assert "another run (pid" in next(log for code, log in results if code == 2)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in ROWS]
    assert all(r["llm_label"] for r in rows)


def test_export_overwrite_keeps_filled_annotator_sheets(study, tmp_path, capsys):
    round1 = tmp_path / "round1"
    argv = ["export", str(study / "data.jsonl"), "--budget", "6", "--annotators", "alice", "bob", "--taxonomy", "chehbouni2024", "--out", str(round1)]
    assert run_module(annotate, argv, capsys)[0] == 0
    sheets = sorted(p for p in round1.rglob("*.csv") if "alice" in p.name)
    assert sheets, sorted(p.name for p in round1.rglob("*"))
    sheets[0].write_text(sheets[0].read_text().replace(",\n", ",answer\n"))  # alice filled in her sheet
    assert_refused(annotate, [*argv, "--overwrite"], ["alice", "was changed after judge.annotate export"], root=tmp_path, capsys=capsys)
