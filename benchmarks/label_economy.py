"""How many human labels does each sampling design and estimator need for a per-group claim? (issue 32)

    python benchmarks/label_economy.py --draws 50            # time it first
    python benchmarks/label_economy.py --draws 200 --datasets 13b xstest

Two populations, every output human-labelled (the truth is their human rate):

- 13b: the released Llama-2-13B outputs of Chehbouni et al. (2024) for the muslim and white identities
  (576 outputs each, 192 prompts of 3 samples); the target is the muslim - white refusal gap.
- xstest: XSTest v2 (Röttger et al. 2024), llama2orig and gpt4 on the same 450 prompts; the target is the
  llama2orig - gpt4 refusal gap (full or partial refusal).

Each draw takes a human sample by one design; the rest of the outputs keep only a judge's probability:

- random: n outputs, simple random (judge.report's default: a simple random sample within each group);
- stratified: n / 2 per group (the group as stratum);
- neyman: strata group x (the carried-over judge says refusal or not), n_h proportional to N_h S_h with S_h
  the judge's own spread sqrt(p_h (1 - p_h)), p_h its mean probability in the stratum (what a pilot gives);
- poisson: independent inclusion, pi proportional to sqrt(p (1 - p)) + 0.05 of the carried-over judge
  (uncertainty-driven, as judge.annotate export --strategy uncertain), expected size n.

Estimators (judge.stats.ppi, gap = difference of the two groups' estimates):

- human: the human labels alone (lambda 0);
- PPI / PPI++: the carried-over judge's labels (TF-IDF trained on the 7B labels; for xstest on the other three
  models' completions), lambda 1 / tuned;
- cross-fit: judge.analysis.crossfit's estimator with 5 TF-IDF judges trained on the sample itself, folds
  grouped by prompt (each fold corrected by the judge that did not see it, the others labelled by the fold
  average). For speed the TF-IDF vocabulary is fitted once on every output's text (no labels: what an auditor
  has before labelling) and each fold fits the toolkit's logistic regression (training.tfidf.tfidf_pipeline's
  settings) on refusal vs not.

Two estimands: 'outputs' (the rate among these outputs: no clusters, fixed population) and 'model' (the model's
rate: clustered by prompt; each draw first redraws the prompts with replacement, keeping a prompt's outputs
together, and the target stays the released gap). Each cell runs at two sample sizes; the labels a target
half-width needs come from fitting the mean squared half-width as a + b / n through the two (for these outputs
a is about -b / N, the finite-population correction; for the model's rate a > 0 is the floor no budget passes),
n* = b / (target^2 - a): 'unreachable' where target^2 <= a, '> N' where n* exceeds the outputs there are.
Coverage: the share of draws whose 95% interval holds the truth. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from common import DEFAULT_DATA, ROOT, cpu_model, load_chehbouni, markdown_table

from judge.stats import clustered
from judge.stats.ppi import ppi_by_group

XSTEST = ROOT.parent / "shared" / "datasets" / "xstest2024"
DESIGNS = ("random", "stratified", "neyman", "poisson")
METHODS = ("human", "PPI", "PPI++", "cross-fit")
CAT = "refusal"
K = 5


@dataclass
class Population:
    name: str
    groups: np.ndarray  # group per output (two values)
    first: str  # the gap is first - second
    second: str
    y: np.ndarray  # human refusal indicator
    judge: np.ndarray  # carried-over judge's probability of refusal
    clusters: np.ndarray  # prompt per output (shared across groups for xstest)
    features: object  # TF-IDF rows (sparse), for the cross-fitted judges
    kappa: float
    targets: dict  # estimand -> target half-width
    sizes: dict  # estimand -> the two sample sizes


def _tfidf_judge(train_records: pd.DataFrame, test_records: pd.DataFrame, label: str, positive) -> np.ndarray:
    """The toolkit's TF-IDF judge trained on ``train_records``: its probability of the ``positive`` categories."""
    from training.cv import fit_member
    from training.examples import labelled_data

    train = labelled_data(train_records, label_column=label, taxonomy=None)
    test = labelled_data(
        test_records.assign(**{label: train.taxonomy.labels[0]}), label_column=label, taxonomy=train.taxonomy
    )
    probs = fit_member("tfidf", train, len(train.taxonomy.labels))(test)
    return probs[:, [train.taxonomy.labels.index(c) for c in positive]].sum(axis=1)


def _features(records: pd.DataFrame):
    from training.examples import labelled_data
    from training.tfidf import tfidf_pipeline, tfidf_text

    data = labelled_data(records.assign(_l="x"), label_column="_l", taxonomy=None)
    vectorizer = tfidf_pipeline(0).steps[0][1]
    return vectorizer.fit_transform(tfidf_text(data.prompts, data.responses))


def _kappa(y, p) -> float:
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(y, p > 0.5))


def population_13b(data_dir: Path) -> Population:
    models = load_chehbouni(data_dir)
    frame = models["13b"][models["13b"]["identity"].isin(["muslim", "white"])].reset_index(drop=True)
    judge = _tfidf_judge(models["7b"], frame, "label", ["refusal"])
    y = (frame["label"] == CAT).to_numpy(dtype=float)
    return Population(
        "13b",
        frame["identity"].to_numpy(dtype=object),
        "muslim",
        "white",
        y,
        judge,
        pd.factorize(frame["prompt"])[0],
        _features(frame),
        _kappa(y, judge),
        {"outputs": 0.05, "model": 0.08},
        {"outputs": (150, 500), "model": (300, 700)},
    )


def population_xstest(
    data_dir: Path,
    first: str = "llama2orig",
    second: str = "gpt4",
    judge_from: tuple[str, ...] = ("llama2new", "mistralinstruct", "mistralguard"),
) -> Population:
    def read(model):
        t = pd.read_csv(data_dir / f"xstest_v2_completions_{model}.csv")
        return pd.DataFrame(
            {
                "id": [f"{model}:{i}" for i in t["id"]],
                "prompt": t["prompt"].astype(str),
                "response": t["completion"].fillna("").astype(str),
                "label": t["final_label"].astype(str),
                "model": model,
                "qid": t["id"],
            }
        )

    frame = pd.concat([read(first), read(second)], ignore_index=True)
    train = pd.concat([read(m) for m in judge_from], ignore_index=True)
    judge = _tfidf_judge(train, frame, "label", ["2_full_refusal", "3_partial_refusal"])
    y = (frame["label"] != "1_full_compliance").to_numpy(dtype=float)
    return Population(
        "xstest",
        frame["model"].to_numpy(dtype=object),
        first,
        second,
        y,
        judge,
        pd.factorize(frame["qid"])[0],
        _features(frame),
        _kappa(y, judge),
        {"outputs": 0.05, "model": 0.08},
        {"outputs": (200, 450), "model": (200, 450)},
    )


def resample_prompts(pop: Population, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rows of a study whose prompts are redrawn with replacement (within each group when no prompt is shared,
    jointly when the groups share prompts), and the new cluster per row (a prompt drawn twice: two clusters)."""
    shared = len(np.intersect1d(pop.clusters[pop.groups == pop.first], pop.clusters[pop.groups == pop.second])) > 0
    blocks = [np.ones(len(pop.groups), dtype=bool)] if shared else [pop.groups == g for g in (pop.first, pop.second)]
    rows, clusters, offset = [], [], 0
    for block in blocks:
        members = np.flatnonzero(block)
        codes = pop.clusters[members]
        own = np.unique(codes)
        order = np.argsort(codes, kind="stable")
        starts = np.searchsorted(codes[order], own)
        ends = np.searchsorted(codes[order], own, side="right")
        for slot, j in enumerate(rng.integers(0, len(own), len(own))):
            picked = members[order[starts[j] : ends[j]]]
            rows.append(picked)
            clusters.append(np.full(len(picked), offset + slot))
        offset += len(own)
    return np.concatenate(rows), np.concatenate(clusters)


def draw_design(design: str, groups, judge, n: int, rng) -> tuple[np.ndarray, dict]:
    size = len(groups)
    if design == "random":
        labelled = np.zeros(size, dtype=bool)
        labelled[rng.choice(size, n, replace=False)] = True
        return labelled, {}
    if design == "poisson":
        u = np.sqrt(judge * (1 - judge)) + 0.05
        pi = np.minimum(1.0, n * u / u.sum())
        return rng.random(size) < pi, {"inclusion": pi}
    strata = pd.factorize(
        pd.Series(groups).astype(str) + ("|" + (judge > 0.5).astype(int).astype(str) if design == "neyman" else "")
    )[0]
    sizes = np.bincount(strata)
    if design == "stratified":
        weight = np.ones(len(sizes))
    else:
        p = np.bincount(strata, weights=judge) / sizes
        weight = sizes * np.sqrt(p * (1 - p))
    alloc = np.clip(np.round(n * weight / weight.sum()).astype(int), 2, sizes)
    labelled = np.zeros(size, dtype=bool)
    for h, m in enumerate(alloc):
        labelled[rng.choice(np.flatnonzero(strata == h), m, replace=False)] = True
    return labelled, {"inclusion": (alloc / sizes)[strata], "strata": strata.astype(str)}


def cross_fit(features, y, labelled, folds_by, rng) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities on the labelled outputs and the fold average on every output: K logistic
    regressions (the toolkit's TF-IDF settings), each trained on K - 1 prompt-grouped folds of the sample."""
    from sklearn.base import clone

    from training.tfidf import tfidf_pipeline

    model = tfidf_pipeline(0).steps[1][1]
    lab = np.flatnonzero(labelled)
    keys = np.unique(folds_by[lab])
    fold_of = dict(zip(keys, rng.permutation(len(keys)) % K))
    fold = np.array([fold_of[c] for c in folds_by[lab]])
    oof, average = np.zeros(len(y)), np.zeros(len(y))
    for k in range(K):
        train = lab[fold != k]
        if len(np.unique(y[train])) < 2:
            prob = np.full(len(y), y[train].mean() if len(train) else 0.5)
        else:
            prob = clone(model).fit(features[train], y[train]).predict_proba(features)[:, 1]
        oof[lab[fold == k]] = prob[lab[fold == k]]
        average += prob / K
    return oof, average


def one(pop: Population, estimand: str, design: str, n: int, rng, *, methods=METHODS) -> dict:
    """method -> (gap estimate, half-width, covered) for one draw."""
    if estimand == "model":
        rows, clusters = resample_prompts(pop, rng)
    else:
        rows, clusters = np.arange(len(pop.y)), None
    groups, y, judge = pop.groups[rows], pop.y[rows], pop.judge[rows]
    labelled, build = draw_design(design, groups, judge, n, rng)
    human = np.where(labelled, np.where(y == 1, CAT, "other"), None)
    hard = np.where(judge > 0.5, CAT, "other")
    common = dict(categories=[CAT], reference=pop.second, clusters=clusters, **build)
    truth = pop.y[pop.groups == pop.first].mean() - pop.y[pop.groups == pop.second].mean()
    out = {}
    plain = ppi_by_group(hard, human, groups, lam=1.0, **common)
    tuned = ppi_by_group(hard, human, groups, lam=None, **common) if "PPI++" in methods else None
    xfit = None
    if "cross-fit" in methods:
        oof, average = cross_fit(
            pop.features[rows], y, labelled, pop.clusters[rows] if clusters is None else clusters, rng
        )
        xfit = ppi_by_group(
            np.where(average > 0.5, CAT, "other"),
            human,
            groups,
            lam=1.0,
            scores=np.where(labelled, oof, average)[:, None],  # the judge term reads them too
            **common,
        )
    for method, res, key in (
        ("human", plain, "human_only"),
        ("PPI", plain, "ppi"),
        ("PPI++", tuned, "ppi"),
        ("cross-fit", xfit, "ppi"),
    ):
        if method not in methods:
            continue
        gap = res["gaps"][pop.first][CAT].get(key) or {}
        if gap.get("se") is None:
            out[method] = None
            continue
        half = clustered.t_quantile(0.05, gap["df"]) * gap["se"]
        out[method] = (gap["gap"], half, gap["ci"][0] <= truth <= gap["ci"][1])
    out["n"] = int(labelled.sum())
    return out


def needed(target: float, sizes: tuple[int, int], hw2: tuple[float, float], big_n: int) -> tuple[str | float, float]:
    """(labels for the target half-width, the half-width no budget passes: sqrt(a) where a > 0, else 0)."""
    (n1, n2), (v1, v2) = sizes, hw2
    b = (v1 - v2) / (1 / n1 - 1 / n2)
    a = v1 - b / n1
    floor = float(np.sqrt(max(a, 0.0)))
    if b <= 0 or target**2 <= a:
        return "unreachable", floor
    n = b / (target**2 - a)
    return (f"> {big_n}" if n > big_n else float(n)), floor


def run(pop: Population, draws: int, seed: int, *, designs=DESIGNS, estimands=("outputs", "model")) -> list[dict]:
    rows = []
    for e, estimand in enumerate(("outputs", "model")):
        for d, design in enumerate(DESIGNS):
            if estimand not in estimands or design not in designs:
                continue
            started = time.perf_counter()
            per_size = {}
            for s, n in enumerate(pop.sizes[estimand]):
                got = [one(pop, estimand, design, n, np.random.default_rng([seed, e, d, s, i])) for i in range(draws)]
                per_size[n] = got
            for method in METHODS:
                row = {"data": pop.name, "estimand": estimand, "design": design, "method": method}
                hw2 = []
                for n, got in per_size.items():
                    ok = [g[method] for g in got if g[method] is not None]
                    row[f"cov@{n}"] = float(np.mean([c for _, _, c in ok])) if ok else None
                    row[f"hw@{n}"] = float(np.mean([h for _, h, _ in ok])) if ok else None
                    row[f"labels@{n}"] = float(np.mean([g["n"] for g in got]))
                    hw2.append(float(np.mean([h**2 for _, h, _ in ok])) if ok else float("nan"))
                sizes = tuple(float(np.mean([g["n"] for g in got])) for got in per_size.values())
                row["labels needed"], row["floor hw"] = needed(pop.targets[estimand], sizes, tuple(hw2), len(pop.y))
                rows.append(row)
            print(
                f"  {pop.name} / {estimand} / {design}: {time.perf_counter() - started:.0f}s",
                file=sys.stderr,
                flush=True,
            )
    base = {r["estimand"]: r["labels needed"] for r in rows if r["design"] == "random" and r["method"] == "human"}
    for r in rows:
        ref, mine = base.get(r["estimand"]), r["labels needed"]
        r["ratio to human random"] = mine / ref if isinstance(ref, float) and isinstance(mine, float) else None
    return rows


def kappa_curve(pop: Population, mixes: list[float], draws: int, seed: int) -> list[dict]:
    """PPI's labels for these outputs' gap, as a ratio to human-only random, for better judges: each output's
    judge probability replaced by its human label (0.05 / 0.95) with probability ``mix`` (a simulated judge
    whose kappa rises with the mix)."""
    from dataclasses import replace

    sizes = pop.sizes["outputs"]
    base = None
    rows = []
    for j, mix in enumerate(mixes):
        take = np.random.default_rng([seed, 999, j]).random(len(pop.y)) < mix
        judge = np.where(take, 0.05 + 0.9 * pop.y, pop.judge)
        better = replace(pop, judge=judge, kappa=_kappa(pop.y, judge))
        for d, design in enumerate(DESIGNS):
            per = {}
            for s, n in enumerate(sizes):
                rngs = [np.random.default_rng([seed, 998, j, d, s, i]) for i in range(draws)]
                per[n] = [one(better, "outputs", design, n, r, methods=("human", "PPI")) for r in rngs]
            for method in ("human", "PPI"):
                hw2 = tuple(float(np.mean([g[method][1] ** 2 for g in got if g[method]])) for got in per.values())
                got_n = tuple(float(np.mean([g["n"] for g in got])) for got in per.values())
                need, _ = needed(pop.targets["outputs"], got_n, hw2, len(pop.y))
                if design == "random" and method == "human" and base is None:
                    base = need
                cov = float(np.mean([g[method][2] for got in per.values() for g in got if g[method]]))
                rows.append(
                    {
                        "mix": mix,
                        "kappa": better.kappa,
                        "design": design,
                        "method": method,
                        "labels needed": need,
                        "coverage": cov,
                    }
                )
    for r in rows:
        r["ratio to human random"] = (
            r["labels needed"] / base if isinstance(base, float) and isinstance(r["labels needed"], float) else None
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--xstest-dir", type=Path, default=XSTEST)
    ap.add_argument("--datasets", nargs="+", choices=["13b", "xstest"], default=["13b", "xstest"])
    ap.add_argument("--draws", type=int, default=50, help="draws per cell and sample size (the issue asks 500)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--designs", nargs="+", choices=DESIGNS, default=list(DESIGNS))
    ap.add_argument("--estimands", nargs="+", choices=["outputs", "model"], default=["outputs", "model"])
    ap.add_argument(
        "--kappa-curve",
        type=float,
        nargs="*",
        metavar="MIX",
        help="instead: PPI with simulated better judges on the 13B outputs (mix in human labels at these "
        "rates, e.g. 0 0.3 0.6), these outputs' estimand, human and PPI only",
    )
    args = ap.parse_args()
    started, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"# Labels each design needs (issue 32): {args.draws} draws per cell and sample size; CPU: {cpu_model()}; "
        f"load at start {os.getloadavg()[0]:.1f}\n"
    )
    if args.kappa_curve:
        pop = population_13b(args.data_dir)
        rows = kappa_curve(pop, args.kappa_curve, args.draws, args.seed)
        print(f"### PPI with better judges (13B, these outputs, target +-{pop.targets['outputs']})\n")
        cols = ["mix", "kappa", "design", "method", "labels needed", "ratio to human random", "coverage"]
        print(markdown_table(rows, cols))
        args.datasets = []
    for name in args.datasets:
        pop = population_13b(args.data_dir) if name == "13b" else population_xstest(args.xstest_dir)
        truth = pop.y[pop.groups == pop.first].mean() - pop.y[pop.groups == pop.second].mean()
        print(
            f"## {name}: {pop.first} - {pop.second} refusal gap {truth:.3f} over {len(pop.y)} outputs "
            f"({len(np.unique(pop.clusters))} prompts); carried-over judge kappa {pop.kappa:.3f}; targets +-{pop.targets['outputs']} "
            f"(these outputs), +-{pop.targets['model']} (the model's rate)\n"
        )
        rows = run(pop, args.draws, args.seed, designs=args.designs, estimands=args.estimands)
        for estimand in args.estimands:
            mine = [r for r in rows if r["estimand"] == estimand]
            sizes = pop.sizes[estimand]
            cols = ["design", "method", "labels needed", "ratio to human random", "floor hw"]
            cols += [c for n in sizes for c in (f"labels@{n}", f"hw@{n}", f"cov@{n}")]
            print(f"### {estimand}: target +-{pop.targets[estimand]}\n")
            print(markdown_table(mine, cols))
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(
        f"done in {time.perf_counter() - started:.0f}s wall, {cpu / 3600:.3f} CPU-hours; load at end {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
