"""Labelling speed of the default judge, timed as whole processes (imports and model load included).

    python benchmarks/label_speed.py --judge runs/benchmarks/ppi/judge-lora-7b      # 4,608 records of both models
    python benchmarks/label_speed.py --judge J --baseline-tree /tmp/old-checkout     # the same rows with older code, side by side

Each row runs ``python -m judge.label`` in a fresh process on the 4,608 released records (7B and 13B)
and times it from start to exit, after one warm-up run that fills the merged-judge cache. Rows: the
default path (int8 on CPU, batch 64), the same at batch 1, fp32 at batch 64 and at batch 1, plus
``--help``. Then where the time of the default path goes, measured in one fresh process: imports,
loading the judge, tokenizing, the model's forward passes, and the rest of ``Judge.label``.
The CPU model (lscpu) is printed beside the tables: int8 kernels differ a lot between CPUs.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DEFAULT_DATA, ROOT, cpu_model, load_chehbouni, markdown_table


def timed(argv: list[str], root: Path = ROOT) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=root, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return seconds


def breakdown(judge_dir: str, records: str, batch_size: int = 64) -> dict[str, float]:
    """Seconds per stage of labelling with the default judge, in this (fresh) process."""
    clock = time.perf_counter
    marks = {"start": clock()}
    import torch  # noqa: F401

    marks["import torch"] = clock()
    import transformers  # noqa: F401
    from transformers import AutoModelForSequenceClassification  # noqa: F401  (the lazy module's real import)

    marks["import transformers"] = clock()
    from judge.judges import load_judge
    from judge.records import read_records

    frame = read_records(records)
    marks["read records, import the toolkit"] = clock()
    judge = load_judge(judge_dir)
    marks["load the judge (merged, int8)"] = clock()
    from judge.judges.base import Item
    from judge.text import judge_inputs

    items = [Item(str(i), str(p), str(r), n if isinstance(n, str) else None) for i, p, r, n in zip(frame["id"], frame["prompt"], frame["response"].fillna(""), frame["name"])]
    plan = judge.batch_plan(items, batch_size)
    encoded = []
    for batch in plan:
        prompts, responses = judge_inputs([b.prompt for b in batch], [b.response for b in batch], [b.name for b in batch], mask_names=judge.mask_names)
        encoded.append(judge.tokenizer(prompts, responses, truncation="only_second", max_length=judge.max_length, padding=True, return_tensors="pt"))
    marks["mask names and tokenize"] = clock()
    with torch.inference_mode():
        for inputs in encoded:
            judge.model(**inputs)
    marks["forward passes"] = clock()
    judge.label(frame, batch_size=batch_size, progress=False)
    whole = clock() - marks["forward passes"]
    names = list(marks)
    stages = {b: marks[b] - marks[a] for a, b in zip(names, names[1:])}
    stages["Judge.label (tokenize + forward + the rest), timed again"] = whole
    stages["tokens per output (mean, padded)"] = float(sum(int(e["input_ids"].numel()) for e in encoded) / len(items))
    return stages


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--judge", required=True, help="a LoRA judge directory (e.g. from benchmarks/ppi_coverage.py or judge.train)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--skip-batch1", action="store_true")
    ap.add_argument("--no-warmup", action="store_true", help="the merged-judge cache is already filled (a previous run)")
    ap.add_argument("--baseline-tree", type=Path, help="another checkout of the toolkit: its default row is timed too, side by side")
    ap.add_argument("--child-breakdown", nargs=2, metavar=("JUDGE", "RECORDS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_breakdown:
        print(json.dumps(breakdown(*args.child_breakdown)))
        return
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
    paths = [("default: int8, batch 64", ["--batch-size", "64"], ROOT), ("fp32, batch 64", ["--batch-size", "64", "--no-quantize"], ROOT)]
    if args.baseline_tree:
        if not args.no_warmup:
            timed([*base, "--out", str(work / "warm-baseline.jsonl"), "--batch-size", "64"], root=args.baseline_tree)
        paths.insert(1, (f"default: int8, batch 64 (code of {args.baseline_tree})", ["--batch-size", "64"], args.baseline_tree))
    if not args.skip_batch1:
        paths += [("int8, batch 1", ["--batch-size", "1"], ROOT), ("fp32, batch 1", ["--batch-size", "1", "--no-quantize"], ROOT)]
    for i, (name, extra, root) in enumerate(paths):
        seconds = timed([*base, *extra, "--out", str(work / f"out{i}.jsonl")], root=root)
        rows.append({"path": name, "records": n, "seconds": seconds, "outputs/s": n / seconds})
        print(json.dumps(rows[-1]), flush=True)
    print("\n## Labelling throughput, whole process (start to exit)\n")
    print(markdown_table(rows, list(rows[0].keys())))
    by = {r["path"]: r["seconds"] for r in rows}
    for slow in ("int8, batch 1", "fp32, batch 1"):
        if slow in by:
            print(f"default vs {slow}: {by[slow] / by['default: int8, batch 64']:.2f}x")
    print(f"int8 vs fp32 at batch 64: {by['fp32, batch 64'] / by['default: int8, batch 64']:.2f}x")
    if args.baseline_tree:
        old = by[paths[1][0]]
        print(f"this code vs {args.baseline_tree}: {old / by['default: int8, batch 64']:.2f}x")
    done = subprocess.run([sys.executable, __file__, "--judge", args.judge, "--child-breakdown", args.judge, str(records)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(f"breakdown failed:\n{done.stderr[-2000:]}")
    stages = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\n## Where the time of the default path goes (one fresh process, {n} records, batch 64)\n")
    print(markdown_table([{"stage": k, "seconds": v} for k, v in stages.items()], ["stage", "seconds"]))


if __name__ == "__main__":
    main()
