"""Long outputs: does reading the end of a long response (``--tail-tokens``) recover agreement past the window?

    python benchmarks/long_outputs.py                         # both directions, tail 32 (about 30 min on 2 CPU cores)
    python benchmarks/long_outputs.py --directions 13b:7b --tail-tokens 48

For each direction (train on one model's human labels, test on the other's): the default LoRA judge
(the first 96 tokens of prompt + response) against the same recipe with ``tail_tokens=T`` (the same
96-token window, filled with the head and the last T tokens of a long response, so the cost per
output is unchanged). Prints Cohen's kappa with a bootstrap interval and per-class F1, overall and
split by response length (within / beyond the window), and the labelling time of each judge.
Judges are cached in runs/benchmarks/long_outputs/ (the default one is reused from the other
benchmarks' caches when present), so a rerun resumes.
"""
from __future__ import annotations

import argparse
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

CACHES = ROOT / "runs" / "benchmarks"


def default_judge_dir(src: str, out: Path) -> Path:
    """The default-recipe LoRA judge of ``src``, trained once by whichever benchmark ran first."""
    for candidate in (CACHES / "ppi" / f"judge-lora-{src}", CACHES / "ensemble" / f"{src}-folds3" / "judge-lora", out / f"judge-lora-{src}"):
        if (candidate / "judge.json").exists():
            return candidate
    return out / f"judge-lora-{src}"


def trained(directory: Path, train, tax, recipe) -> Path:
    if not (directory / "judge.json").exists():
        started = time.perf_counter()
        train_lora(train, directory, recipe, progress=False)
        finish(directory, tax, training_ids=train.records["id"])
        print(f"trained {directory.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return directory


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--directions", default="7b:13b,13b:7b")
    ap.add_argument("--tail-tokens", type=int, default=32)
    ap.add_argument("--bootstrap", type=int, default=500)
    ap.add_argument("--out", type=Path, default=CACHES / "long_outputs")
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}", flush=True)
    data = load_chehbouni(args.data_dir)
    tax = load_taxonomy("chehbouni2024")
    rows, timing = [], []
    for direction in args.directions.split(","):
        src, dst = direction.split(":")
        arrow = f"{src} -> {dst}"
        train = labelled_data(data[src], label_column="label", taxonomy=tax)
        target = data[dst]
        gold = np.array(target["label"].tolist(), dtype=object)
        judges = {
            "LoRA, head 96": trained(default_judge_dir(src, args.out), train, tax, LoraRecipe()),
            f"LoRA, head + last {args.tail_tokens}": trained(args.out / f"judge-lora-tail{args.tail_tokens}-{src}", train, tax,
                                                             LoraRecipe(tail_tokens=args.tail_tokens)),
        }
        lengths = None
        for name, directory in judges.items():
            judge = load_judge(str(directory))
            if lengths is None:  # the same tokenizer for both: prompt + response tokens, as the judge would read them untruncated
                lengths = np.array([len(judge.tokenizer(p, r)["input_ids"]) for p, r in zip(target["prompt"], target["response"].fillna(""))])
            started = time.perf_counter()
            out = judge.label(target, batch_size=64, progress=False)
            seconds = time.perf_counter() - started
            timing.append({"judge": name, "train -> test": arrow, "records": len(target), "label s (in-process)": round(seconds, 1),
                           "outputs/s": round(len(target) / seconds, 1)})
            pred = np.array(out["label"].tolist(), dtype=object)
            rows.append({"responses": "all", **row(name, arrow, gold, pred, tax, args.bootstrap)})
            for part, mask in (("<= 96 tokens", lengths <= 96), ("> 96 tokens", lengths > 96)):
                rows.append({"responses": part, **row(name, arrow, gold[mask], pred[mask], tax, args.bootstrap)})
        print(markdown_table([r for r in rows if r["train -> test"] == arrow], list(rows[0].keys())), flush=True)

    columns = ["judge", "train -> test", "responses", "n", "kappa", "kappa 95% CI", "macro-F1", *[f"F1 {s}" for s in SHORT.values()]]
    print(f"\n## Reading long outputs: head only vs head + last {args.tail_tokens} tokens (same 96-token window)\n")
    print(markdown_table(rows, columns))
    print("\n## Labelling time (in-process, batch 64)\n")
    print(markdown_table(timing, list(timing[0].keys())))


if __name__ == "__main__":
    main()
