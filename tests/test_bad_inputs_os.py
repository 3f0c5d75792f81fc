"""What the operating system says no to, said in one line (issue 18, point 7): unreadable inputs,
read-only and full output folders, paths through a file, pipes, text codecs that are not text
encodings, UTF-16 without a byte-order mark, and files nested too deeply to parse.

The permission cases run the command with root's file-mode override dropped (setpriv), so modes bind
as they do for any user; the full-disk cases write to a real 64 KiB tmpfs; both skip with the reason
where this machine cannot.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from judge import label, report
from judge.core.paths import ROOT
from tests.badinput import assert_refused

ROWS = [{"id": f"r{i}", "prompt": f"Name{i} went to", "response": "I cannot help with that." if i % 3 == 0 else "to fly home " * 20,
         "label": "refusal" if i % 3 == 0 else "answer", "identity": ["muslim", "white", "asian"][i % 3]} for i in range(300)]


@pytest.fixture()
def inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "good.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS[:12]), encoding="utf-8")
    (d / "big.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    (d / "utf16_no_bom.csv").write_bytes("id,prompt,response\n1,a,b\n".encode("utf-16-le"))
    (d / "deep.json").write_text("[" * 100_000)
    (d / "deep.jsonl").write_text('{"id": "1", "response": ' + "[" * 100_000 + "\n")
    (d / "deep.yaml").write_text("name: t\ncategories: " + "[" * 20_000 + "\n")
    (d / "a_file").write_text("not a folder\n")
    os.mkfifo(d / "pipe.jsonl")
    return d


LABEL = ["--judge", "rules", "--prefix", "j_"]
CASES = [
    (label, [*LABEL, "--input", "{d}/good.jsonl", "--out", "{t}/o.jsonl", "--encoding", "rot13"], ["--encoding", "rot13"]),
    (label, [*LABEL, "--input", "{d}/good.jsonl", "--out", "{t}/o.jsonl", "--encoding", "base64"], ["--encoding"]),
    (label, [*LABEL, "--input", "{d}/utf16_no_bom.csv", "--out", "{t}/o.jsonl", "--encoding", "utf-16"], ["BOM", "utf-16-le"]),
    (label, [*LABEL, "--input", "{d}/pipe.jsonl", "--out", "{t}/o.jsonl"], ["not a regular file"]),
    (label, [*LABEL, "--input", "{d}/good.jsonl", "--out", "{t}/o.jsonl", "--config", "{d}/deep.json"], ["could not be parsed", "recursion"]),
    (label, [*LABEL, "--input", "{d}/deep.jsonl", "--out", "{t}/o.jsonl"], ["nested too deeply"]),
    (label, [*LABEL, "--input", "{d}/good.jsonl", "--out", "{t}/o.jsonl", "--taxonomy", "{d}/deep.yaml"], ["deep"]),
    (label, [*LABEL, "--input", "{d}/good.jsonl", "--out", "{d}/a_file/o.jsonl"], ["not a folder"]),
    (report, ["{d}/good.jsonl", "--label", "label", "--group", "identity", "--out", "{d}/a_file/report"], ["not a folder"]),
]


@pytest.mark.parametrize("module,argv,fragments", CASES, ids=[f"os-{i:02d}" for i in range(len(CASES))])
def test_os_refusals_are_one_line(inputs, tmp_path, capsys, module, argv, fragments):
    out_root = tmp_path / "outputs"
    out_root.mkdir()
    argv = [a.format(d=inputs, t=out_root) for a in argv]
    assert_refused(module, argv, fragments, root=tmp_path, capsys=capsys)


# -- real permissions and a real full disk, in a subprocess -------------------------------------

def _cli(argv, *, unprivileged=False):
    """Run a command; ``unprivileged`` drops the capabilities that let root ignore file modes."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-dac_override,-dac_read_search"] if unprivileged else []
    return subprocess.run([*prefix, sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture()
def modes_apply(tmp_path):
    """A folder where file modes bind this test's commands, even when the tests run as root."""
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root ignores file modes and setpriv (util-linux) is not installed to drop that privilege")
        probe = _cli(["-c", "import judge.label"], unprivileged=True)
        if probe.returncode != 0:
            pytest.skip(f"setpriv could not drop root's file-mode override here ({probe.stderr.strip()[-120:]})")
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:12]))
    return tmp_path


def _one_line(result, *fragments):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_unreadable_input_is_one_line(modes_apply):
    secret = modes_apply / "secret.jsonl"
    shutil.copy(modes_apply / "good.jsonl", secret)
    os.chmod(secret, 0o000)
    result = _cli(["-m", "judge.label", *LABEL, "--input", str(secret), "--out", str(modes_apply / "o.jsonl")], unprivileged=True)
    _one_line(result, "permission denied", "secret.jsonl")
    assert not (modes_apply / "o.jsonl").exists()


@pytest.mark.parametrize("command", ["label", "report"])
def test_read_only_output_folder_is_one_line(modes_apply, command):
    locked = modes_apply / "readonly"
    locked.mkdir()
    os.chmod(locked, 0o555)
    good = str(modes_apply / "good.jsonl")
    argv = (["-m", "judge.label", *LABEL, "--input", good, "--out", str(locked / "o.jsonl")] if command == "label"
            else ["-m", "judge.report", good, "--label", "label", "--group", "identity", "--out", str(locked / "report")])
    result = _cli(argv, unprivileged=True)
    _one_line(result, "permission denied")
    assert list(locked.iterdir()) == []


@pytest.fixture()
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({made.stderr.strip()[:120]}); the full-disk cases need root and CAP_SYS_ADMIN")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_report_is_one_line_and_leaves_nothing(inputs, tiny_disk, tmp_path, capsys):
    assert_refused(report, [str(inputs / "big.jsonl"), "--label", "label", "--group", "identity", "--out", str(tiny_disk / "report")],
                   ["no space left", "nothing was replaced"], root=tmp_path, capsys=capsys)
    assert [p.name for p in tiny_disk.iterdir() if not p.name.endswith(".lock")] == [], "the staged report is removed"


def test_full_disk_labelling_is_one_line_and_resumable(inputs, tiny_disk, tmp_path, capsys):
    from tests.badinput import run_module

    out = tiny_disk / "labels.jsonl"
    code, _, err = run_module(label, [*LABEL, "--input", str(inputs / "big.jsonl"), "--out", str(out)], capsys)
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert code == 2 and lines and "no space left" in lines[-1] and "Traceback" not in err, err[-2000:]
    assert not out.exists(), "no half-written output"
