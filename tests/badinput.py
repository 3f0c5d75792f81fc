"""The bad-input contract, shared by every table of refused cases.

A refused case ends in exit code 2 and one stderr line under 300 characters with no traceback; it
writes nothing, changes no input, and (for ``--overwrite`` cases) deletes no file it did not write.
Lock files (``*.lock``) are not outputs: a refused run may leave one behind, released.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from judge.core.config import run_command


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (lock files aside) with its sha256: what a refused run must not change."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def run_module(module, argv, capsys):
    try:
        code = run_command(module.build_parser, module.Config, module.main, argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(module, argv, fragments, *, root: Path, capsys) -> str:
    """Run ``module`` with ``argv`` and check the contract over the whole ``root`` tree; return the line."""
    before = tree_digest(root)
    code, _, err = run_module(module, argv, capsys)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, (code, err[-3000:])
    assert "Traceback" not in err and len(lines) == 1, err[-3000:]
    assert len(lines[0]) < 300, lines[0][:400]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    after = tree_digest(root)
    assert after == before, f"files changed: {sorted(set(after.items()) ^ set(before.items()))[:6]}"
    return lines[0]
