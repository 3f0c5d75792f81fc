"""How many human labels does a judge need? Kappa against the number of training labels.

    python benchmarks/learning_curve.py                                  # TF-IDF, rules, TF-IDF+rules ensemble; seconds
    python benchmarks/learning_curve.py --kinds lora --sizes 100,400,1600 --repeats 1   # LoRA: minutes per point

For each judge kind and each size k: in-distribution (train on k labels of one model, test on that
model's labels from templates never trained on: grouped by template) and cross-model (train on k
labels of one model, test on all of the other's). Seeded repeats give a mean and a 95% interval
(t over repeats); the plot is written to runs/benchmarks/learning_curve.png (and .pdf).
It tells a researcher how many outputs to send to annotators before trusting a judge.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from common import DEFAULT_DATA, ROOT, cpu_model, load_chehbouni, markdown_table
from sklearn.metrics import cohen_kappa_score

from judge.core.taxonomy import load_taxonomy
from training.cv import fit_member, grouped_folds, rules_probabilities
from training.ensemble import fit_stacker, stacker_features, stacker_probabilities, weights_of
from training.examples import labelled_data
from training.lora import LoraRecipe

SIZES = (50, 100, 200, 400, 800, 1600)


def draw(train, k: int, seed: int) -> np.ndarray:
    """k training records, stratified by label so rare classes appear when they can."""
    rng = np.random.default_rng(seed)
    if k >= len(train.y):
        return np.arange(len(train.y))
    picked = []
    for c in np.unique(train.y):
        idx = np.flatnonzero(train.y == c)
        picked += list(rng.choice(idx, size=max(1, round(k * len(idx) / len(train.y))), replace=False))
    return np.sort(np.array(picked[:k] if len(picked) > k else picked))


def fit(kind: str, train, n_classes: int, *, seed: int, recipe):
    """Train one judge of ``kind`` on ``train``; return a function from test data to probabilities."""
    if kind in ("rules", "tfidf", "lora"):
        return fit_member(kind, train, n_classes, recipe=recipe, seed=seed)
    if kind == "ensemble":  # TF-IDF + rules; the stacker fitted on 3 grouped folds of the k labels
        tfidf = fit("tfidf", train, n_classes, seed=seed, recipe=recipe)
        if train.records["template"].nunique() < 3:
            return tfidf
        folds = grouped_folds(train.records, k=3, group="template", seed=seed)
        oof = np.zeros((len(train.y), n_classes))
        for f in range(3):
            idx_tr, idx_te = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
            oof[idx_te] = fit_member("tfidf", train.subset(idx_tr), n_classes, seed=seed)(train.subset(idx_te))
        stacker = weights_of(fit_stacker(stacker_features([oof, rules_probabilities(train)]), train.y, seed=seed))
        return lambda test: stacker_probabilities(stacker, stacker_features([tfidf(test), rules_probabilities(test)]), n_classes)
    raise SystemExit(f"unknown kind {kind}")


def mean_ci(values: list[float]) -> tuple[float, float, float]:
    from scipy import stats

    m = float(np.mean(values))
    if len(values) < 2:
        return m, float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
    return m, m - half, m + half


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--kinds", default="tfidf,rules,ensemble")
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--source", default="7b", help="the model whose labels train the judge (the other one is the cross-model test)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "benchmarks" / "learning_curve")
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}", flush=True)
    data = load_chehbouni(args.data_dir)
    tax = load_taxonomy("chehbouni2024")
    n_classes = len(tax.labels)
    other = "13b" if args.source == "7b" else "7b"
    source = labelled_data(data[args.source], label_column="label", taxonomy=tax)
    target = labelled_data(data[other], label_column="label", taxonomy=tax)
    # in-distribution: a fixed quarter of the templates is the test set; training draws come from the rest
    folds = grouped_folds(source.records, k=4, group="template", seed=0)
    pool, heldout = source.subset(np.flatnonzero(folds != 0)), source.subset(np.flatnonzero(folds == 0))
    recipe = LoraRecipe()
    args.out.mkdir(parents=True, exist_ok=True)
    cache_path = args.out / f"points-{args.source}.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    for kind in args.kinds.split(","):
        for k in map(int, args.sizes.split(",")):
            k = min(k, len(pool.y))
            for r in range(args.repeats if kind != "rules" else 1):
                key = f"{kind}|{k}|{r}"
                if key not in cache:
                    started = time.perf_counter()
                    train = pool.subset(draw(pool, k, seed=r))
                    predict = fit(kind, train, n_classes, seed=r, recipe=recipe)
                    point = {}
                    for setting, test in (("in-distribution", heldout), ("cross-model", target)):
                        point[setting] = float(cohen_kappa_score(test.y, predict(test).argmax(1), labels=range(n_classes)))
                    point["seconds"] = round(time.perf_counter() - started, 1)
                    metrics = getattr(predict, "training_metrics", None)
                    if metrics:  # LoRA: its own validation split says whether the training itself went wrong
                        point["training"] = {k: metrics.get(k) for k in ("best_epoch", "val_kappa", "val_macro_f1")}
                        point["training"]["val_kappa_by_epoch"] = [round(e.get("val_kappa", float("nan")), 3) for e in metrics["history"]]
                    cache[key] = point
                    cache_path.write_text(json.dumps(cache, indent=1))
                    print(json.dumps({"key": key, **point}), flush=True)
    # every cached point is reported, so kinds run at different times (LoRA takes minutes a point) share one table and plot
    rows = summarize(cache)
    print(f"\n## Kappa against the number of human labels (train: {args.source}; in-distribution: held-out templates of {args.source}, "
          f"{len(heldout.y)} labels; cross-model: all {len(target.y)} labels of {other})\n")
    print(markdown_table(rows, list(rows[0].keys())))
    plot(rows, args.out / f"learning_curve-{args.source}")


def summarize(cache: dict) -> list[dict]:
    """One row per (kind, size, setting): the mean over the cached seeded repeats and its 95% interval."""
    points: dict[tuple[str, int], list[dict]] = {}
    for key, point in cache.items():
        kind, k, _ = key.split("|")
        points.setdefault((kind, int(k)), []).append(point)
    order = {kind: i for i, kind in enumerate(("rules", "tfidf", "ensemble", "lora"))}
    rows = []
    for (kind, k), repeats in sorted(points.items(), key=lambda item: (order.get(item[0][0], 9), item[0][1])):
        for setting in ("in-distribution", "cross-model"):
            m, lo, hi = mean_ci([p[setting] for p in repeats])
            rows.append({"judge": kind, "labels": k, "test": setting, "repeats": len(repeats), "kappa": m,
                         "95% CI": "" if math.isnan(lo) else f"[{lo:.3f}, {hi:.3f}]",
                         "train+predict s": round(float(np.mean([p["seconds"] for p in repeats])), 1)})
    return rows


def plot(rows: list[dict], stem: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True, layout="constrained")
    for ax, setting in zip(axes, ("in-distribution", "cross-model")):
        for kind in dict.fromkeys(r["judge"] for r in rows):
            pts = [r for r in rows if r["judge"] == kind and r["test"] == setting]
            xs = [p["labels"] for p in pts]
            ys = [p["kappa"] for p in pts]
            (line,) = ax.plot(xs, ys, marker="o", label="ensemble (tfidf+rules)" if kind == "ensemble" else kind)
            bands = [(p["labels"], *map(float, p["95% CI"].strip("[]").split(", "))) for p in pts if p["95% CI"]]
            if bands:
                ax.fill_between([b[0] for b in bands], [b[1] for b in bands], [b[2] for b in bands], alpha=0.2, color=line.get_color())
        ax.set_xscale("log")
        ax.set_xlabel("human labels used for training")
        ax.set_title(setting)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Cohen's kappa with the human labels")
    axes[1].legend()
    fig.suptitle("How many human labels a judge needs (Chehbouni et al. 2024 labels)")
    for suffix in (".png", ".pdf"):
        fig.savefig(stem.with_suffix(suffix), dpi=150)
    print(f"plot: {stem.with_suffix('.png')}")


if __name__ == "__main__":
    main()
