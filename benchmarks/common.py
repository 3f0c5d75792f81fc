"""Shared helpers for the benchmark scripts (they print tables; nothing here is asserted)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "chehbouni2024"
MODELS = {"7b": "llama-2-7b-chat", "13b": "llama-2-13b-chat"}


def load_chehbouni(data_dir: Path):
    from judge.data import import_chehbouni2024

    csvs = [data_dir / "df_annotated_llama7.csv", data_dir / "df_annotated_llama13.csv"]
    missing = [str(p) for p in csvs if not p.exists()]
    if missing:
        sys.exit(f"benchmark needs the public data: {', '.join(missing)} not found (pass --data-dir)")
    records = import_chehbouni2024(csvs)
    return {short: records[records.model == full].reset_index(drop=True) for short, full in MODELS.items()}


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "|".join("---" for _ in columns) + "|\n"
    body = "".join("| " + " | ".join(_cell(r.get(c)) for c in columns) + " |\n" for r in rows)
    return head + body


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        name = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), platform.processor())
        cores = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("CPU(s)")), "?")
        return f"{name}, {cores} CPUs"
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown CPU"
