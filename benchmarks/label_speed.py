"""Labelling speed of the default judge, timed as whole processes (imports and model load included).

    python benchmarks/label_speed.py --judge runs/benchmarks/ppi/judge-lora-7b      # 4,608 records of both models

Each row runs ``python -m judge.label`` in a fresh process on the 4,608 released records (7B and 13B)
and times it from start to exit, after one warm-up run that fills the merged-judge cache. Rows: the
default path (int8 on CPU, batch 64), fp32 at batch 64, and the same judge at batch 1 (fp32), plus
``--help``. The CPU model (lscpu) is printed beside the table: int8 kernels differ a lot between CPUs.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DEFAULT_DATA, ROOT, load_chehbouni, markdown_table
from ensemble import cpu_model


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--judge", required=True, help="a LoRA judge directory (e.g. from benchmarks/ppi_coverage.py or judge.train)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--skip-batch1", action="store_true")
    ap.add_argument("--no-warmup", action="store_true", help="the merged-judge cache is already filled (a previous run)")
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-speed-"))
    data = load_chehbouni(args.data_dir)
    records = work / "both.jsonl"
    import pandas as pd

    pd.concat([data["7b"], data["13b"]]).to_json(records, orient="records", lines=True)
    n = sum(1 for _ in records.open())
    base = ["-m", "judge.label", "--judge", args.judge, "--input", str(records), "--no-progress", "--prefix", "j_"]
    if not args.no_warmup:
        timed([*base, "--out", str(work / "warm.jsonl"), "--batch-size", "64"])  # fills the merged-judge cache
    rows = [{"path": "python -m judge.label --help", "records": 0, "seconds": timed(["-m", "judge.label", "--help"]), "outputs/s": None}]
    paths = [("default: int8, batch 64", ["--batch-size", "64"]), ("fp32, batch 64", ["--batch-size", "64", "--no-quantize"])]
    if not args.skip_batch1:
        paths.append(("fp32, batch 1", ["--batch-size", "1", "--no-quantize"]))
    for i, (name, extra) in enumerate(paths):
        seconds = timed([*base, *extra, "--out", str(work / f"out{i}.jsonl")])
        rows.append({"path": name, "records": n, "seconds": seconds, "outputs/s": n / seconds})
    print("\n## Labelling throughput, whole process (start to exit)\n")
    print(markdown_table(rows, list(rows[0].keys())))
    by = {r["path"]: r["seconds"] for r in rows}
    if "fp32, batch 1" in by:
        print(f"default vs its batch-1 path: {by['fp32, batch 1'] / by['default: int8, batch 64']:.2f}x")
    print(f"int8 vs fp32 at batch 64: {by['fp32, batch 64'] / by['default: int8, batch 64']:.2f}x")


if __name__ == "__main__":
    main()
