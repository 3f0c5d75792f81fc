"""Run manifests: every output file says which command, model, data and settings produced it.

``<out>.manifest.json`` beside a file, ``manifest.json`` inside an output directory. A rerun with the
same settings may resume; different settings into the same output stop with a clear error.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from judge.core.errors import UserError
from judge.core.files import file_sha256, json_text, replace_text
from judge.core.paths import ROOT

PACKAGES = (
    "safeguard-audit",
    "torch",
    "transformers",
    "peft",
    "scikit-learn",
    "outlines",
    "krippendorff",
    "pandas",
    "numpy",
)


def fingerprint(paths: list[str | Path]) -> dict[str, str]:
    return {str(p): file_sha256(p) for p in paths if Path(p).is_file()}


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    try:
        res = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return res.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def manifest_path(out: str | Path) -> Path:
    out = Path(out)
    return out / "manifest.json" if out.is_dir() or not out.suffix else out.with_name(out.name + ".manifest.json")


# Settings that hold credentials: never written to a manifest, a saved command line or a message.
SECRET_SETTINGS = ("token", "api_key")


def settings_of(config: Any, *, exclude: tuple[str, ...] = ("overwrite",)) -> dict[str, Any]:
    values = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    return {k: v for k, v in values.items() if k not in exclude and k not in SECRET_SETTINGS}


def scrubbed_argv(argv: list[str]) -> list[str]:
    """The command line with the value of every secret flag replaced by '***'."""
    flags = {"--" + name.replace("_", "-") for name in SECRET_SETTINGS}
    out, hide_next = [], False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
        elif arg in flags:
            out.append(arg)
            hide_next = True
        elif arg.split("=", 1)[0] in flags and "=" in arg:
            out.append(arg.split("=", 1)[0] + "=***")
        else:
            out.append(arg)
    return out


class RunManifest:
    """Collects what a run did, and writes it next to the output."""

    def __init__(self, command: str, config: Any, *, inputs: list[str | Path] = (), **extra: Any):
        self.started = time.time()
        self.data: dict[str, Any] = {
            "command": command,
            "argv": scrubbed_argv(sys.argv),
            "settings": settings_of(config),
            "inputs": fingerprint(list(inputs)),
            "versions": package_versions(),
            "git_commit": git_commit(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **extra,
        }

    def update(self, **values: Any) -> None:
        self.data.update(values)

    def write(self, out: str | Path, **counts: Any) -> Path:
        self.data["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.data["seconds"] = round(time.time() - self.started, 3)
        self.data.setdefault("counts", {}).update(counts)
        path = manifest_path(out)
        if Path(out).is_file():
            # what --overwrite checks before it replaces the file (judge/core/outputs.py)
            self.data[OUTPUT_DIGEST_KEY] = file_sha256(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        return replace_text(path, json_text(self.data, indent=2, default=str) + "\n")  # never through a link


def read_manifest(out: str | Path) -> dict[str, Any] | None:
    path = manifest_path(out)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def check_same_settings(out: str | Path, identity: dict[str, Any], *, overwrite: bool) -> bool:
    """True when ``out`` was produced (or started) with these settings, so the run may resume or reuse it.

    ``identity`` holds what must match (settings, input and model fingerprints). A mismatch stops with
    an error unless ``overwrite``.
    """
    previous = read_manifest(out)
    if previous is None or overwrite:
        return False
    before = previous.get("identity")
    if before == json.loads(json.dumps(identity, default=str)):
        return True
    changed = sorted(
        k
        for k in set(before or {}) | set(identity)
        if (before or {}).get(k) != json.loads(json.dumps(identity.get(k), default=str))
    )
    raise UserError(
        f"{out} was produced with different settings ({', '.join(changed) or 'unknown'} changed); "
        "pass --overwrite to start again or choose another --out"
    )


def judge_of(records_path: str | Path, column: str) -> dict[str, Any] | None:
    """The judge (as its manifest describes it) whose labels fill ``column`` of a judge.label output, or None."""
    manifest = read_manifest(records_path) or {}
    judge = manifest.get("judge") or {}
    prefix = (manifest.get("settings") or {}).get("prefix", "")
    # a joined output (judge.join) of a sharded judge.label run carries that run's judge and settings
    labelled = manifest.get("command") == "judge.label" or (
        manifest.get("command") == "judge.join" and manifest.get("of") == "judge.label"
    )
    if labelled and column == f"{prefix}label" and judge.get("kind"):
        return judge
    return None


def label_source(records_path: str | Path, column: str, *, default: str | None = None) -> str:
    """Who gave the labels in ``column`` of a records file, for titles: the judge named in the file's
    manifest when ``column`` is that judge's label column, else ``default`` or the column's name."""
    judge = judge_of(records_path, column)
    if judge:
        where = judge.get("directory")
        return f"{Path(where).name} ({judge['kind']} judge)" if where else f"{judge['kind']} judge"
    return default or f"column {column}"


MANIFEST = "manifest.json"


OUTPUTS_KEY = "outputs"  # in a directory's manifest: {relative path: sha256} of every file the command wrote


OUTPUT_DIGEST_KEY = "output_sha256"  # in a file's manifest: the sha256 of the file it describes
