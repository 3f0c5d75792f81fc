"""Do prediction-powered group rates cover the human truth? A simulation on the paper's released labels.

    python benchmarks/ppi_coverage.py                      # LoRA judge trained on 7B (trains once, ~12 min on 2 cores; cached)
    python benchmarks/ppi_coverage.py --judge-kind tfidf   # seconds
    python benchmarks/ppi_coverage.py --draws 500 --n 300 --lam tuned   # PPI++ power tuning instead of plain PPI

The population is the 13B outputs with their human labels (2,304). A judge trained on the 7B labels
labels all of them, so its errors are those of a real cross-model judge. Each draw takes n outputs
as the "human-labelled" subset (simple random, or stratified by identity with equal allocation and
inverse-probability weights); the rest keep only the judge's label. For every identity's refusal
and harmful-refusal rate, and the muslim-minus-white refusal gap, three 95% intervals are built:
judge only (all judge labels as if human; Wilson / Wald), human only (the n labels; CLT) and PPI
(judge.ppi on ppi_py; --lam as judge.report --ppi-lambda). The table gives each method's coverage of the full-population human value
and its mean width. Nothing here is asserted.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import DEFAULT_DATA, ROOT, cpu_model, load_chehbouni, markdown_table

from judge.ppi import ppi_by_group
from judge.report import ppi_lambda

CACHE = ROOT / "runs" / "benchmarks" / "ppi"
TARGETS = [("refusal", None), ("harmful refusal", None)]


def judged_13b(kind: str, data_dir: Path) -> pd.DataFrame:
    """The 13B records with the labels of a judge trained on 7B (cached under runs/benchmarks/ppi)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    labelled = CACHE / f"13b.judged-by-{kind}-7b.jsonl"
    if not labelled.exists():
        models = load_chehbouni(data_dir)
        train, test = CACHE / "7b.jsonl", CACHE / "13b.jsonl"
        models["7b"].to_json(train, orient="records", lines=True)
        models["13b"].to_json(test, orient="records", lines=True)
        judge_dir = CACHE / f"judge-{kind}-7b"
        run = [sys.executable, "-m"]
        if not judge_dir.exists():
            subprocess.run(run + ["judge.train", "--train", str(train), "--kind", kind, "--taxonomy", "chehbouni2024", "--out", str(judge_dir)],
                           check=True, cwd=ROOT)
        subprocess.run(run + ["judge.label", "--judge", str(judge_dir), "--input", str(test), "--prefix", "judge_",
                              "--no-progress", "--out", str(labelled)], check=True, cwd=ROOT)
    return pd.read_json(labelled, lines=True)


def draw(frame: pd.DataFrame, n: int, design: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """Indices of the human-labelled subset, and their weights (None for a simple random sample)."""
    if design == "random":
        return rng.choice(len(frame), size=n, replace=False), None
    groups = frame["identity"].to_numpy()
    values = sorted(set(groups))
    per = n // len(values)
    picked, weights = [], []
    for g in values:
        members = np.flatnonzero(groups == g)
        take = rng.choice(members, size=per, replace=False)
        picked.append(take)
        weights.append(np.full(per, len(members) / per))  # 1 / inclusion probability
    return np.concatenate(picked), np.concatenate(weights)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--judge-kind", choices=["lora", "tfidf"], default="lora")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lam", default="1", help="PPI's lambda as judge.report --ppi-lambda takes it: 1 (default), 'tuned' (PPI++), or [0, 1]")
    args = ap.parse_args()
    args.lam = ppi_lambda(args.lam)

    started = time.perf_counter()
    frame = judged_13b(args.judge_kind, args.data_dir)
    human = frame["label"].to_numpy(dtype=object)
    judge = frame["judge_label"].to_numpy(dtype=object)
    groups = frame["identity"].astype(str).to_numpy(dtype=object)
    cats = ["refusal", "harmful refusal"]
    truth = {(g, c): float((human[groups == g] == c).mean()) for g in sorted(set(groups)) for c in cats}
    truth_gap = truth[("muslim", "refusal")] - truth[("white", "refusal")]
    kappa = _kappa(human, judge)
    print(f"# PPI coverage: 13B outputs (N = {len(frame)}), judge = {args.judge_kind} trained on 7B labels (kappa on 13B {kappa:.3f}); "
          f"{args.draws} draws of n = {args.n}; lambda {'tuned' if args.lam is None else args.lam}; CPU: {cpu_model()}\n")

    rows = []
    for design in ("random", "stratified"):
        hits: dict[tuple, list] = {}
        for d in range(args.draws):
            rng = np.random.default_rng([args.seed, d, design == "stratified"])
            idx, w = draw(frame, args.n, design, rng)
            labels = np.full(len(frame), "", dtype=object)
            labels[idx] = human[idx]
            weights = None
            if w is not None:
                weights = np.zeros(len(frame))
                weights[idx] = w
            res = ppi_by_group(judge, labels, groups, categories=cats, reference="white", weights=weights, lam=args.lam)
            for (g, c), value in truth.items():
                r = res["rates"][g][c]
                for method in ("judge_only", "human_only", "ppi"):
                    entry = r.get(method) or {}
                    hits.setdefault((f"{g} {c}", method), []).append(_hit(entry.get("ci"), value))
            gap = res["gaps"]["muslim"]["refusal"]
            for method in ("judge_only", "human_only", "ppi"):
                hits.setdefault(("muslim - white refusal gap", method), []).append(_hit((gap.get(method) or {}).get("ci"), truth_gap))
        targets = list(dict.fromkeys(k for k, _ in hits))
        for target in targets:
            row = {"design": design, "target": target,
                   "truth": truth_gap if "gap" in target else truth[tuple(target.split(" ", 1))]}
            for method, short in (("judge_only", "judge"), ("human_only", "human"), ("ppi", "PPI")):
                got = hits[(target, method)]
                covered = [h for h, _ in got if h is not None]
                widths = [wd for _, wd in got if wd is not None]
                row[f"{short} cov"] = float(np.mean(covered)) if covered else None
                row[f"{short} width"] = float(np.mean(widths)) if widths else None
            rows.append(row)
    columns = ["design", "target", "truth", "judge cov", "judge width", "human cov", "human width", "PPI cov", "PPI width"]
    print(markdown_table(rows, columns))
    refusal_rows = [r for r in rows if r["target"].endswith(" refusal") and "harmful" not in r["target"] or "gap" in r["target"]]
    worst = min(r["PPI cov"] for r in refusal_rows)
    narrower = sum(r["PPI width"] < r["human width"] for r in rows)
    print(f"\nPPI coverage, refusal rates and the gap, worst over groups and designs: {worst:.3f} (target >= 0.93)")
    print(f"PPI narrower than human-only in {narrower} of {len(rows)} rows; done in {time.perf_counter() - started:.0f}s")


def _hit(ci, value) -> tuple[bool | None, float | None]:
    if not ci or ci[0] is None or ci[1] is None:
        return None, None
    return bool(ci[0] <= value <= ci[1]), float(ci[1] - ci[0])


def _kappa(human, judge) -> float:
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(human, judge))


if __name__ == "__main__":
    main()
