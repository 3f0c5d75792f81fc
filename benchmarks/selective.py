"""Selective labelling: does the calibrated threshold keep its promise, and how much does the judge then answer?

    python benchmarks/selective.py                     # XSTest and the paper's 7B -> 13B, 13B -> 7B (~10 CPU-minutes)
    python benchmarks/selective.py --splits 50 --datasets xstest

For each direction (train on one set of human labels, label another model's outputs): TF-IDF, the keyword rules
and the stacked ensemble (TF-IDF + rules) are trained with judge.train and label the test outputs with
judge.label (whole processes). Then, 200 times, the test outputs are split at random in half: a calibration half,
whose human labels set each judge's threshold (judge.stats.selective: Learn then Test, target accuracy 0.95,
delta 0.1), and a test half, on which the kept outputs' accuracy, Cohen's kappa and the coverage are measured.
The guarantee holds if the kept accuracy reaches the target in at least 1 - delta = 90% of the splits.

The cascade TF-IDF -> ensemble sends each judge only what the earlier ones escalated; each stage is
calibrated on the calibration outputs that reach it, at delta / 2 (so the kept outputs' accuracy, a mixture of
the stages', meets the target with probability about 1 - delta; stage 2's calibration rows are chosen by stage
1's threshold, which the bound does not model: the splits measure what it costs).

One more row per direction: the TF-IDF judge calibrated on its own cross-fitted out-of-fold predictions on the
training labels (python -m judge.calibrate, no --input), applied to the test model: a calibration from another
model's outputs, which is what the guarantee does not cover.

Writes runs/benchmarks/selective/{results-deltaD.json, DIRECTION.png} (coverage-accuracy curves: each judge's accuracy
on the outputs it is most confident about, by coverage, over all the test outputs; the calibrated points at
targets 0.90-0.99, mean over the splits, for the judges and the cascade).
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
import pandas as pd
from common import DEFAULT_DATA, ROOT, cpu_model, load_chehbouni, markdown_table

from judge.core.taxonomy import load_taxonomy
from judge.stats.selective import fixed_sequence

XSTEST = ROOT.parent / "shared" / "datasets" / "xstest2024"
OUT = ROOT / "runs" / "benchmarks" / "selective"
JUDGES = ("rules", "tfidf", "ensemble")
CASCADE = ("tfidf", "ensemble")  # the rules never reach 0.95 at any confidence: a stage that only costs delta
TARGETS = (0.90, 0.95, 0.97, 0.99)


def run(module: str, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{module} {' '.join(args)} failed:\n{done.stderr[-2000:]}")


def directions(names: list[str], cache: Path) -> dict[str, dict]:
    """Each direction's train and test files, the columns and the taxonomy."""
    out = {}
    if "xstest" in names:

        def files(models):
            return [str(XSTEST / f"xstest_v2_completions_{m}.csv") for m in models]

        out["xstest"] = {
            "train": files(["gpt4", "llama2orig", "mistralguard"]),
            "test": files(["llama2new", "mistralinstruct"]),
            "columns": ["--text-column", "completion"],
            "gold": "final_label",
            "taxonomy": "compliance3",
        }
    if "chehbouni" in names:
        by_model = load_chehbouni(DEFAULT_DATA)
        for short, frame in by_model.items():
            path = cache / f"chehbouni-{short}.jsonl"
            if not path.exists():
                frame.to_json(path, orient="records", lines=True)
        for src, dst in (("7b", "13b"), ("13b", "7b")):
            out[f"chehbouni {src}->{dst}"] = {
                "train": [str(cache / f"chehbouni-{src}.jsonl")],
                "test": [str(cache / f"chehbouni-{dst}.jsonl")],
                "columns": [],
                "gold": "label",
                "taxonomy": "chehbouni2024",
            }
    return out


def labelled(name: str, d: dict, cache: Path) -> dict[str, pd.DataFrame]:
    """Each judge's labels and confidences on the test outputs (trained and labelled once, then cached)."""
    folder = cache / name.replace(" ", "-").replace(">", "")
    folder.mkdir(parents=True, exist_ok=True)
    common = [*d["columns"], "--no-progress"]
    train = ["--train", *d["train"], "--label-column", d["gold"], "--taxonomy", d["taxonomy"], *common]
    out = {}
    for kind in JUDGES:
        spec = ["--judge", "rules", "--taxonomy", d["taxonomy"]] if kind == "rules" else ["--judge", str(folder / kind)]
        if kind != "rules" and not (folder / kind / "judge.json").exists():
            extra = ["--cv", "5"] if kind == "tfidf" else ["--members", "tfidf", "rules"]
            run("judge.train", *train, "--kind", kind, *extra, "--out", str(folder / kind))
        path = folder / f"{kind}.jsonl"
        if not path.exists():
            run("judge.label", *spec, "--input", *d["test"], *common, "--prefix", "j_", "--out", str(path))
        out[kind] = pd.read_json(path, lines=True, dtype={"id": str})
    cal = folder / "tfidf-oof.cal.json"
    if not cal.exists():
        run(
            "judge.calibrate", "--judge", str(folder / "tfidf"), "--target", "0.95", "--delta", "0.1", "--out", str(cal)
        )
    out["oof"] = json.loads(cal.read_text())
    return out


def arrays(frames: dict[str, pd.DataFrame], gold: str, taxonomy) -> tuple[np.ndarray, dict[str, tuple]]:
    base = frames[JUDGES[0]]
    y = np.array(taxonomy.gold(base[gold], column=gold), dtype=object)
    judges = {}
    for kind in JUDGES:
        f = frames[kind]
        assert (f["id"].to_numpy() == base["id"].to_numpy()).all()
        pred = np.array([taxonomy.canonical(x) or "unscored" for x in f["j_label"]], dtype=object)
        conf = pd.to_numeric(f["j_confidence"], errors="coerce").fillna(-np.inf).to_numpy()
        judges[kind] = (pred, conf)
    return y, judges


def kappa(y, p, labels) -> float | None:
    from sklearn.metrics import cohen_kappa_score

    if len(y) < 2:
        return None
    return float(cohen_kappa_score(y, p, labels=labels)) if len(set(y) | set(p)) > 1 else None


def cascade_kept(order, judges, y, cal, test, target, delta):
    """Each stage calibrated on the calibration rows reaching it (delta / stages); which test rows each keeps."""
    open_cal, open_test = cal.copy(), test.copy()
    final = np.full(len(y), None, dtype=object)
    for kind in order:
        pred, conf = judges[kind]
        idx = np.flatnonzero(open_cal)
        lam = fixed_sequence(conf[idx], pred[idx] != y[idx], target_risk=1 - target, delta=delta / len(order))[
            "threshold"
        ]
        if lam is None:
            continue
        keep_cal, keep_test = open_cal & (conf >= lam), open_test & (conf >= lam)
        final[keep_test] = pred[keep_test]
        open_cal &= ~keep_cal
        open_test &= ~keep_test
    return final


def resplits(y, judges, labels, *, splits: int, target: float, delta: float, seed: int = 0) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    n = len(y)
    rows = {k: [] for k in (*JUDGES, "cascade")}
    for _ in range(splits):
        cal = np.zeros(n, dtype=bool)
        cal[rng.permutation(n)[: n // 2]] = True
        test = ~cal
        for kind in JUDGES:
            pred, conf = judges[kind]
            lam = fixed_sequence(conf[cal], pred[cal] != y[cal], target_risk=1 - target, delta=delta)["threshold"]
            kept = test & (conf >= lam) if lam is not None else np.zeros(n, dtype=bool)
            rows[kind].append(scores(y[kept], pred[kept], test.sum(), labels))
        final = cascade_kept(CASCADE, judges, y, cal, test, target, delta)
        kept = test & (final != None)  # noqa: E711 - an object array
        rows["cascade"].append(scores(y[kept], final[kept], test.sum(), labels))
    return {k: summary(v, target) for k, v in rows.items()}


def scores(y, p, n_test, labels) -> dict:
    return {
        "coverage": len(y) / n_test,
        "accuracy": float((y == p).mean()) if len(y) else None,
        "kappa": kappa(list(y), list(p), labels),
    }


def summary(rows: list[dict], target: float) -> dict:
    acc = [r["accuracy"] for r in rows]
    met = [a is None or a >= target for a in acc]  # nothing kept: no kept label is wrong
    kappas = [r["kappa"] for r in rows if r["kappa"] is not None]
    return {
        "splits": len(rows),
        "target_met": float(np.mean(met)),
        "coverage_mean": float(np.mean([r["coverage"] for r in rows])),
        "coverage_min": float(np.min([r["coverage"] for r in rows])),
        "accuracy_mean": float(np.mean([a for a in acc if a is not None])) if any(a is not None for a in acc) else None,
        "kappa_mean": float(np.mean(kappas)) if kappas else None,
        "nothing_kept": int(sum(a is None for a in acc)),
    }


def curve(y, pred, conf) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-conf, kind="stable")
    right = (pred[order] == y[order]).astype(float)
    k = np.arange(1, len(y) + 1)
    return k / len(y), np.cumsum(right) / k


def plot(name: str, y, judges, points: dict, path: Path, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    colors = {"rules": "tab:gray", "tfidf": "tab:blue", "ensemble": "tab:green", "cascade": "tab:red"}
    for kind in JUDGES:
        cov, acc = curve(y, *judges[kind])
        ax.plot(cov, acc, color=colors[kind], lw=1.2, label=f"{kind} (all outputs, by confidence)")
    for kind, by_target in points.items():
        xs = [by_target[t]["coverage_mean"] for t in TARGETS]
        ys = [by_target[t]["accuracy_mean"] or np.nan for t in TARGETS]
        ax.plot(
            xs,
            ys,
            "o--" if kind == "cascade" else "o",
            color=colors[kind],
            ms=4,
            lw=0.8,
            label=f"{kind}, calibrated (targets {TARGETS[0]}-{TARGETS[-1]})",
        )
    ax.axhline(target, color="black", lw=0.6, ls=":")
    ax.set_xlabel("coverage (share of outputs the judge labels)")
    ax.set_ylabel("accuracy on the kept outputs")
    ax.set_xlim(0, 1)
    ax.set_ylim(max(0.5, ax.get_ylim()[0]), 1.005)
    ax.set_title(f"{name}: coverage and agreement with people")
    ax.legend(fontsize=6.5, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["xstest", "chehbouni"], choices=["xstest", "chehbouni"])
    parser.add_argument("--splits", type=int, default=200)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--delta", type=float, default=0.1)
    args = parser.parse_args()
    started = time.perf_counter()
    cache = OUT / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_model()}; load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    results, table, oof_rows = {}, [], []
    for name, d in directions(args.datasets, cache).items():
        t0 = time.perf_counter()
        frames = labelled(name, d, cache)
        taxonomy = load_taxonomy(d["taxonomy"])
        y, judges = arrays(frames, d["gold"], taxonomy)
        trained = time.perf_counter() - t0
        by_target = {
            t: resplits(
                y, judges, taxonomy.labels, splits=args.splits if t == args.target else 50, target=t, delta=args.delta
            )
            for t in sorted({*TARGETS, args.target})
        }
        main_rows = by_target[args.target]
        results[name] = {"n_test": len(y), "by_target": {str(t): v for t, v in by_target.items()}}
        for kind, r in main_rows.items():
            table.append(
                {
                    "direction": name,
                    "judge": kind,
                    "n test": len(y) // 2,
                    **{
                        "target met": r["target_met"],
                        "coverage": r["coverage_mean"],
                        "min coverage": r["coverage_min"],
                        "accuracy kept": r["accuracy_mean"],
                        "kappa kept": r["kappa_mean"],
                        "none kept": r["nothing_kept"],
                    },
                }
            )
        for kind in JUDGES:
            pred, conf = judges[kind]
            table.append(
                {
                    "direction": name,
                    "judge": f"{kind}: all outputs",
                    "n test": len(y),
                    "coverage": 1.0,
                    "accuracy kept": float((pred == y).mean()),
                    "kappa kept": kappa(list(y), list(pred), taxonomy.labels),
                }
            )
        # the out-of-fold calibration of the training labels, applied to the other model's outputs
        cal = frames["oof"]
        pred, conf = judges["tfidf"]
        kept = conf >= cal["threshold"] if cal["threshold"] is not None else np.zeros(len(y), dtype=bool)
        oof_rows.append(
            {
                "direction": name,
                "threshold": cal["threshold"],
                "coverage (train, oof)": cal["coverage"],
                "coverage (test)": float(kept.mean()),
                "accuracy kept (test)": float((pred[kept] == y[kept]).mean()) if kept.any() else None,
                "kappa kept (test)": kappa(list(y[kept]), list(pred[kept]), taxonomy.labels),
            }
        )
        results[name]["oof_calibration_on_test"] = oof_rows[-1]
        points = {k: {t: by_target[t][k] for t in TARGETS} for k in (*JUDGES, "cascade")}
        png = OUT / f"{name.replace(' ', '-').replace('>', '')}{'' if args.delta == 0.1 else f'-delta{args.delta}'}.png"
        plot(name, y, judges, points, png, args.target)
        print(
            f"{name}: judges trained and labelled in {trained:.0f}s (cached after the first run); "
            f"{len(y)} test outputs -> {png.relative_to(ROOT)}",
            flush=True,
        )
    print(f"\n## Target accuracy {args.target}, delta {args.delta}: {args.splits} random calibration/test halves\n")
    print(
        markdown_table(
            table,
            [
                "direction",
                "judge",
                "n test",
                "target met",
                "coverage",
                "min coverage",
                "accuracy kept",
                "kappa kept",
                "none kept",
            ],
        )
    )
    print("\n## TF-IDF calibrated on its out-of-fold predictions of the training labels, applied to the test model\n")
    print(
        markdown_table(
            oof_rows,
            [
                "direction",
                "threshold",
                "coverage (train, oof)",
                "coverage (test)",
                "accuracy kept (test)",
                "kappa kept (test)",
            ],
        )
    )
    seconds = time.perf_counter() - started
    results["meta"] = {
        "cpu": cpu_model(),
        "load_after": os.getloadavg(),
        "seconds": round(seconds, 1),
        "splits": args.splits,
        "target": args.target,
        "delta": args.delta,
    }
    (OUT / f"results-delta{args.delta}.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"\n{seconds / 60:.1f} min wall; load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
