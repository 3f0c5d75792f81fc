"""What the run-wide embedding cache saves when the frozen-encoder judge is an ensemble member.

    python benchmarks/embed_member.py                 # 600 records of the paper's 7B labels, 5 folds (~minutes)
    python benchmarks/embed_member.py --n 300 --folds 3

The ensemble tfidf + embed + rules is trained three times on the same records, each in a process of its own:
with nothing shared between its trainings (``train_ensemble(share=False)``: each of the K folds and the shipped
member loads the encoder and embeds its records, as before the cache), with the run's cache (``share=True``: the
encoder loaded once, each (prompt, response) embedded once), and through the command itself
(``python -m judge.train --kind ensemble --members tfidf embed rules``, which shares). Prints the wall times,
the pairs embedded, and the largest difference between the two library runs' out-of-fold probabilities (the
cache changes what is computed, not what comes out: only the float rounding of the batches a vector was in).

Writes runs/benchmarks/embed_member/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import DEFAULT_DATA, ROOT, cpu_model, load_chehbouni, markdown_table

OUT = ROOT / "runs" / "benchmarks" / "embed_member"
MEMBERS = ("tfidf", "embed", "rules")


def child(args) -> None:
    """One library training in this process: prints a JSON line (seconds, pairs embedded, oof probabilities)."""
    import pandas as pd

    from training.cv import grouped_folds
    from training.ensemble import train_ensemble
    from training.examples import labelled_data
    from training.lora import LoraRecipe

    records = pd.read_json(args.records, lines=True)
    data = labelled_data(records, label_column="label", taxonomy="chehbouni2024")
    folds = grouped_folds(data.records, k=args.folds, group="template", seed=0)
    cache: dict = {}
    started = time.perf_counter()
    trained = train_ensemble(
        data,
        Path(args.out),
        folds=folds,
        recipe=LoraRecipe(base_model=args.base_model, max_length=96),
        members=list(MEMBERS),
        progress=False,
        options={"device": "cpu", "base_model": args.base_model, "max_length": 96},
        cache=cache,
        share=args.child == "share",
    )
    seconds = time.perf_counter() - started
    computed = sum(getattr(v, "computed", 0) for v in cache.values())
    np.save(Path(args.out) / "oof.npy", trained["oof_probabilities"])
    print(json.dumps({"seconds": seconds, "embedded": computed or None, "kappa": trained["metrics"]["val_kappa"]}))


def run_child(mode: str, records: Path, args) -> dict:
    out = OUT / f"ens-{mode}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
    argv = [sys.executable, __file__, "--child", mode, "--records", str(records), "--out", str(out)]
    argv += ["--folds", str(args.folds), "--base-model", args.base_model]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{mode} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "process_seconds": time.perf_counter() - started, "oof": np.load(out / "oof.npy")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=600, help="records of the 7B labels (a seeded sample)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--base-model", default="bundled:minilm")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run")
    parser.add_argument("--child", choices=("share", "no-share"), help=argparse.SUPPRESS)
    parser.add_argument("--records", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    OUT.mkdir(parents=True, exist_ok=True)
    records = load_chehbouni(args.data_dir)["7b"].sample(n=args.n, random_state=0).reset_index(drop=True)
    path = OUT / "train.jsonl"
    records.to_json(path, orient="records", lines=True)
    load = os.getloadavg()
    rows = {}
    for mode in ("no-share", "share"):
        rows[mode] = run_child(mode, path, args)
        print(f"{mode}: {rows[mode]['process_seconds']:.1f} s", flush=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
    command = [sys.executable, "-m", "judge.train", "--train", str(path), "--label-column", "label"]
    command += ["--taxonomy", "chehbouni2024", "--kind", "ensemble", "--members", *MEMBERS, "--cv", str(args.folds)]
    command += ["--base-model", args.base_model, "--device", "cpu", "--no-progress", "--overwrite"]
    command += ["--out", str(OUT / "ens-cli")]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"judge.train failed:\n{done.stderr[-2000:]}")
    cli_seconds = time.perf_counter() - started
    difference = float(np.abs(rows["share"]["oof"] - rows["no-share"]["oof"]).max())
    same_labels = bool((rows["share"]["oof"].argmax(1) == rows["no-share"]["oof"].argmax(1)).all())
    table = [
        {"run": f"library, {m}", "seconds": rows[m]["process_seconds"], "kappa (oof)": rows[m]["kappa"]} for m in rows
    ] + [{"run": "python -m judge.train (shares)", "seconds": cli_seconds}]
    results = {
        "cpu": cpu_model(),
        "load_before": load,
        "load_after": os.getloadavg(),
        "n": args.n,
        "folds": args.folds,
        "members": MEMBERS,
        "seconds": {r["run"]: round(r["seconds"], 2) for r in table},
        "pairs_embedded_with_cache": rows["share"]["embedded"],
        "max_oof_probability_difference": difference,
        "same_oof_labels": same_labels,
        "command": " ".join(command[1:]),
    }
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    print(markdown_table(table, ["run", "seconds", "kappa (oof)"]))
    print(json.dumps({k: v for k, v in results.items() if k != "seconds"}, indent=2))


if __name__ == "__main__":
    main()
