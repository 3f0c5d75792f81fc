"""Labelling speed of the default judge in each precision, timed as whole processes (imports and model load included).

    python benchmarks/label_speed.py --judge runs/benchmarks/ppi/judge-lora-7b      # 4,608 records of both models
    python benchmarks/label_speed.py --judge J --limit 512 --skip-batch1             # a quick check on 512 of them
    python benchmarks/label_speed.py --judge J --baseline-tree /tmp/old-checkout     # the same rows with older code, side by side

Each row runs ``python -m judge.label --precision P`` in a fresh process on the released records (7B
and 13B) and times it from start to exit, after one warm-up run that fills the merged-judge cache:
P = fp32, int8, bf16 and auto (what the judge's faithfulness record and this CPU choose), each at
batch 64 and at batch 1, plus ``--help``. For each row: the precision it ran in, outputs/s for the
whole process and in-process (labelling alone, from the output's manifest), and the share of labels
equal to the fp32 batch-64 row. Then where the time of the auto path goes, measured in one fresh
process: imports, loading the judge, tokenizing, the model's forward passes, and the rest of
``Judge.label``. The CPU model and its flags (lscpu) head the tables: the kernels differ a lot between CPUs.
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
    from judge.core.records import read_records
    from judge.kinds import load_judge

    frame = read_records(records)
    marks["read records, import the toolkit"] = clock()
    judge = load_judge(judge_dir)
    marks[f"load the judge (merged, {judge.precision})"] = clock()
    from judge.kinds.base import Item

    items = [Item(str(i), str(p), str(r), n if isinstance(n, str) else None) for i, p, r, n in zip(frame["id"], frame["prompt"], frame["response"].fillna(""), frame["name"])]
    encoded = []
    for batch in judge.plan(items, batch_size):
        prompts, responses = judge.texts(batch.items)
        encoded.append(judge.tokenizer(prompts, responses, truncation="only_second", max_length=judge.max_length, padding=True, return_tensors="pt"))
    marks["mask names and tokenize"] = clock()
    from judge.kinds.lora.precision import context

    with torch.inference_mode(), context(judge.precision, judge.device):
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


PRECISIONS = ("fp32", "int8", "bf16", "auto")


def labelled_row(name: str, out: Path, seconds: float, n: int, reference) -> dict:
    import pandas as pd

    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    labels = pd.read_json(out, lines=True)["j_label"]
    equal = None if reference is None else float((labels.to_numpy() == reference.to_numpy()).mean())
    return {"path": name, "ran in": manifest["judge"].get("precision", "?"), "records": n, "seconds": seconds, "outputs/s": n / seconds,
            "outputs/s in-process": manifest["throughput"]["responses_per_second"], "labels = fp32": equal}


def write_records(data_dir: Path, limit: int | None, work: Path) -> Path:
    import pandas as pd

    data = load_chehbouni(data_dir)
    frame = pd.concat([data["7b"], data["13b"]])
    if limit:
        frame = frame.sample(n=min(limit, len(frame)), random_state=0)  # lengths as in the whole set
    records = work / "records.jsonl"
    frame.to_json(records, orient="records", lines=True)
    return records


def main():
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--judge", required=True, help="a LoRA judge directory (e.g. from benchmarks/ppi_coverage.py or judge.train)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--limit", type=int, help="label a seeded draw of N records instead of all 4,608 (a quick check)")
    ap.add_argument("--precisions", default=",".join(PRECISIONS), help=f"comma-separated subset of {','.join(PRECISIONS)}")
    ap.add_argument("--skip-batch1", action="store_true")
    ap.add_argument("--skip-breakdown", action="store_true")
    ap.add_argument("--no-warmup", action="store_true", help="the merged-judge cache is already filled (a previous run)")
    ap.add_argument("--baseline-tree", type=Path, help="another checkout of the toolkit: its default row is timed too, side by side")
    ap.add_argument("--child-breakdown", nargs=2, metavar=("JUDGE", "RECORDS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_breakdown:
        print(json.dumps(breakdown(*args.child_breakdown)))
        return
    from judge.kinds.lora.precision import cpu_info

    cpu = f"{cpu_model()}; flags: {' '.join(cpu_info()['flags']) or 'none of ' + ', '.join(('avx2', 'avx512f', 'amx_bf16'))}"
    print(f"CPU: {cpu}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-speed-"))
    records = write_records(args.data_dir, args.limit, work)
    n = sum(1 for _ in records.open())
    base = ["-m", "judge.label", "--judge", args.judge, "--input", str(records), "--no-progress", "--prefix", "j_"]
    if not args.no_warmup:
        timed([*base, "--out", str(work / "warm.jsonl"), "--batch-size", "64", "--precision", "fp32"])  # fills the merged-judge cache
    rows = [{"path": "python -m judge.label --help", "records": 0, "seconds": timed(["-m", "judge.label", "--help"])}]
    precisions = [p for p in args.precisions.split(",") if p]
    if "fp32" in precisions:  # the reference of every row's labels comes first
        precisions.remove("fp32")
        precisions.insert(0, "fp32")
    reference = None
    for batch in (64,) if args.skip_batch1 else (64, 1):
        for precision in precisions:
            out = work / f"{precision}-b{batch}.jsonl"
            seconds = timed([*base, "--precision", precision, "--batch-size", str(batch), "--out", str(out)])
            rows.append(labelled_row(f"{precision}, batch {batch}", out, seconds, n, reference))
            if precision == "fp32" and batch == 64:
                reference = pd.read_json(out, lines=True)["j_label"]
                rows[-1]["labels = fp32"] = 1.0
            print(json.dumps(rows[-1]), flush=True)
    if args.baseline_tree:
        if not args.no_warmup:
            timed([*base, "--out", str(work / "warm-baseline.jsonl"), "--batch-size", "64"], root=args.baseline_tree)
        out = work / "baseline.jsonl"
        seconds = timed([*base, "--batch-size", "64", "--out", str(out)], root=args.baseline_tree)
        rows.append(labelled_row(f"default of {args.baseline_tree}, batch 64", out, seconds, n, reference))
    print(f"\n## Labelling throughput, whole process (start to exit); {n} records; CPU {cpu}\n")
    print(markdown_table(rows, ["path", "ran in", "records", "seconds", "outputs/s", "outputs/s in-process", "labels = fp32"]))
    by = {r["path"]: r for r in rows}
    for precision in precisions:
        fast, slow = by.get(f"{precision}, batch 64"), by.get(f"{precision}, batch 1")
        if fast and slow:
            print(f"{precision}: batch 64 vs its batch-1 path: {slow['seconds'] / fast['seconds']:.2f}x whole process")
        if fast and precision != "fp32" and "fp32, batch 64" in by:
            print(f"{precision} vs fp32 at batch 64: {by['fp32, batch 64']['seconds'] / fast['seconds']:.2f}x whole process, "
                  f"{fast['outputs/s in-process'] / by['fp32, batch 64']['outputs/s in-process']:.2f}x in-process")
    if args.skip_breakdown:
        return
    done = subprocess.run([sys.executable, __file__, "--judge", args.judge, "--child-breakdown", args.judge, str(records)], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise SystemExit(f"breakdown failed:\n{done.stderr[-2000:]}")
    stages = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\n## Where the time of the auto path goes (one fresh process, {n} records, batch 64)\n")
    print(markdown_table([{"stage": k, "seconds": v} for k, v in stages.items()], ["stage", "seconds"]))


if __name__ == "__main__":
    main()
