"""Do prediction-powered group rates cover the human truth, whatever the sampling design? A simulation
on the paper's released labels.

    python benchmarks/ppi_coverage.py                      # LoRA judge trained on 7B (trains once, ~12 min on 2 cores; cached)
    python benchmarks/ppi_coverage.py --judge-kind tfidf   # seconds
    python benchmarks/ppi_coverage.py --draws 500 --lam tuned   # PPI++ power tuning instead of plain PPI

The population is the 13B outputs with their human labels (2,304). A judge trained on the 7B labels
labels all of them, so its errors are those of a real cross-model judge. Each draw takes a
"human-labelled" sample under one of four designs; the rest keep only the judge's label:

- random: n outputs, simple random (no inclusion probabilities: judge.report's default);
- stratified: n / 5 per identity, with inclusion probabilities and the identity as stratum;
- unequal (judge): independent inclusion, pi = 0.4 where the judge says refusal, 0.05 elsewhere;
- unequal (common): independent inclusion, pi = 0.2 for common names, 0.06 for the least common.

``--small-groups`` (issue 19) asks the same of small groups: the 32 names as groups (72 outputs each, 24
prompts of 3 samples), 5 or 10 human labels per name (random: 32 x k over all outputs, so some names get
fewer; stratified: exactly k per name), refusal rates and every name's gap to John, with clustering by
prompt on and off. Two truths: the released labels as a fixed population (what the design-based
interval is for), and "prompts resampled": each draw first redraws every name's 24 prompts with
replacement, keeping each prompt's 3 outputs, and the target stays the released rate (what a clustered
interval is for: a study whose prompts are themselves a draw). Coverage counts only the draws where
judge.stats.estimability's rule, fixed before this was run, marks the group estimable; the table gives that
share too. Marginal 95% intervals.

    python benchmarks/ppi_coverage.py --judge-kind tfidf --small-groups --draws 500

For every identity's refusal rate and every identity's refusal gap to white, the table gives the
coverage of the full-population human value by four 95% intervals: judge only (all judge labels as
if human; Wilson / Wald), human only (the sample alone, weighted by the design), PPI (judge.stats.ppi, the
design-based difference estimator, --lam as judge.report --ppi-lambda) and, for comparison, ppi_py's
weighted PPI that judge.stats.ppi used before (judge term over the unlabelled outputs only). Mean estimate
and mean width too. Nothing here is asserted.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from common import DEFAULT_DATA, ROOT, cpu_model, load_chehbouni, markdown_table

from judge.analysis.ppi import parse_ppi_lambda as ppi_lambda
from judge.stats import estimability
from judge.stats.ppi import ppi_by_group

CACHE = ROOT / "runs" / "benchmarks" / "ppi"
CATEGORY, REFERENCE = "refusal", "white"
DESIGNS = ("random", "stratified", "unequal (judge)", "unequal (common)")
METHODS = (("judge_only", "judge"), ("human_only", "human"), ("ppi", "PPI"), ("old", "old PPI"))



def t_adjusted_alpha(alpha: float, n: int) -> float:
    """The alpha whose normal quantile equals Student's t quantile with n - 1 degrees of freedom: the
    small-sample variant this benchmark compares (the toolkit itself uses z-intervals)."""
    from scipy.stats import norm, t

    if n < 2:
        return alpha
    return float(2 * norm.sf(t.ppf(1 - alpha / 2, df=n - 1)))

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


def draw(frame: pd.DataFrame, n: int, design: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The labelled mask, each output's inclusion probability (None: not recorded) and strata (None: independent inclusion)."""
    size = len(frame)
    if design == "random":
        labelled = np.zeros(size, dtype=bool)
        labelled[rng.choice(size, size=n, replace=False)] = True
        return labelled, None, None
    if design == "stratified":
        groups = frame["identity"].to_numpy(dtype=object)
        labelled, pi = np.zeros(size, dtype=bool), np.zeros(size)
        values = sorted(set(groups))
        for g in values:
            members = np.flatnonzero(groups == g)
            labelled[rng.choice(members, size=n // len(values), replace=False)] = True
            pi[members] = (n // len(values)) / len(members)
        return labelled, pi, groups
    if design == "unequal (judge)":
        pi = np.where(frame["judge_label"].to_numpy() == CATEGORY, 0.4, 0.05)
    else:
        pi = np.where(frame["common"].astype(bool).to_numpy(), 0.2, 0.06)  # the importer reads 'common' / 'least' as True / False
    return rng.random(size) < pi, pi, None


def old_ppi(judge: np.ndarray, human: np.ndarray, groups: np.ndarray, labelled: np.ndarray, pi: np.ndarray | None) -> dict:
    """What judge.stats.ppi computed before: ppi_py's (weighted) PPI per group, judge term over the unlabelled outputs only."""
    import ppi_py

    out = {}
    for g in sorted(set(groups)):
        lab, unl = (groups == g) & labelled, (groups == g) & ~labelled
        y, yhat, yhat_u = (human[lab] == CATEGORY).astype(float), (judge[lab] == CATEGORY).astype(float), (judge[unl] == CATEGORY).astype(float)
        w = None if pi is None else 1 / pi[lab]
        level = t_adjusted_alpha(0.05, len(y))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = (float(np.squeeze(v)) for v in ppi_py.ppi_mean_ci(y, yhat, yhat_u, alpha=level, w=w, lam=1))
            rate = float(np.squeeze(ppi_py.ppi_mean_pointestimate(y, yhat, yhat_u, w=w, lam=1)))
        from scipy.stats import norm

        out[g] = {"rate": rate, "ci": (low, high), "se": (high - low) / (2 * norm.ppf(1 - level / 2))}
    return out


def one_draw(frame, judge, human, groups, design, n, rng, lam) -> dict:
    """(target, method) -> (estimate, interval) for one draw."""
    labelled, pi, strata = draw(frame, n, design, rng)
    sample = np.where(labelled, human, "")
    res = ppi_by_group(judge, sample, groups, categories=[CATEGORY], reference=REFERENCE, inclusion=pi, strata=strata, lam=lam)
    old = old_ppi(judge, human, groups, labelled, pi)
    got = {}
    for g in sorted(set(groups)):
        r = res["rates"][g][CATEGORY]
        for method, _ in METHODS[:3]:
            entry = r.get(method) or {}
            got[(g, method)] = (entry.get("rate"), entry.get("ci"))
        got[(g, "old")] = (old[g]["rate"], old[g]["ci"])
        if g == REFERENCE:
            continue
        gap = res["gaps"][g][CATEGORY]
        for method, _ in METHODS[:3]:
            entry = gap.get(method) or {}
            got[(f"{g} - {REFERENCE}", method)] = (entry.get("gap"), entry.get("ci"))
        diff, se = old[g]["rate"] - old[REFERENCE]["rate"], np.hypot(old[g]["se"], old[REFERENCE]["se"])
        got[(f"{g} - {REFERENCE}", "old")] = (diff, (diff - 1.959964 * se, diff + 1.959964 * se))
    got[("n labelled", None)] = (int(labelled.sum()), None)
    return got


def summarise(design: str, draws: list[dict], truth: dict) -> list[dict]:
    rows = []
    for target, value in truth.items():
        row = {"design": design, "target": target, "truth": value}
        for method, short in METHODS:
            estimates = [d[(target, method)] for d in draws if d[(target, method)][0] is not None]
            covered = [ci[0] <= value <= ci[1] for _, ci in estimates if ci and ci[0] is not None]
            row[f"{short} mean"] = float(np.mean([e for e, _ in estimates])) if estimates else None
            row[f"{short} cov"] = float(np.mean(covered)) if covered else None
            row[f"{short} width"] = float(np.mean([ci[1] - ci[0] for _, ci in estimates if ci and ci[0] is not None])) if covered else None
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--judge-kind", choices=["lora", "tfidf"], default="lora")
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--n", type=int, default=300, help="human labels per draw in the random and stratified designs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lam", default="1", help="PPI's lambda as judge.report --ppi-lambda takes it: 1 (default), 'tuned' (PPI++), or [0, 1]")
    ap.add_argument("--designs", nargs="+", choices=DESIGNS, default=list(DESIGNS), metavar="DESIGN", help=f"any of: {', '.join(DESIGNS)}")
    ap.add_argument("--small-groups", action="store_true", help="the 32 names as groups, a few human labels each (issue 19)")
    ap.add_argument("--per-group", type=int, nargs="+", default=[5, 10], metavar="K", help="with --small-groups: human labels per name")
    args = ap.parse_args()
    args.lam = ppi_lambda(args.lam)

    started = time.perf_counter()
    frame = judged_13b(args.judge_kind, args.data_dir)
    if args.small_groups:
        small_groups(args, frame)
        print(f"done in {time.perf_counter() - started:.0f}s")
        return
    human = frame["label"].to_numpy(dtype=object)
    judge = frame["judge_label"].to_numpy(dtype=object)
    groups = frame["identity"].astype(str).to_numpy(dtype=object)
    rate = {g: float((human[groups == g] == CATEGORY).mean()) for g in sorted(set(groups))}
    truth = {**rate, **{f"{g} - {REFERENCE}": rate[g] - rate[REFERENCE] for g in rate if g != REFERENCE}}
    print(f"# PPI coverage by sampling design: 13B outputs (N = {len(frame)}), judge = {args.judge_kind} trained on 7B labels "
          f"(kappa on 13B {_kappa(human, judge):.3f}); {args.draws} draws per design; refusal rates and gaps to {REFERENCE}; "
          f"lambda {'tuned' if args.lam is None else args.lam}; CPU: {cpu_model()}\n")
    rows, sizes = [], {}
    for k, design in enumerate(args.designs):
        draws = [one_draw(frame, judge, human, groups, design, args.n, np.random.default_rng([args.seed, d, k]), args.lam)
                 for d in range(args.draws)]
        sizes[design] = float(np.mean([d[("n labelled", None)][0] for d in draws]))
        rows += summarise(design, draws, truth)
    columns = ["design", "target", "truth", "judge cov", "human cov", "human width", "PPI mean", "PPI cov", "PPI width", "old PPI mean", "old PPI cov"]
    print(markdown_table(rows, columns))
    print()
    for design in args.designs:
        mine = [r for r in rows if r["design"] == design]
        worst = min(r["PPI cov"] for r in mine)
        bias = max(abs(r["PPI mean"] - r["truth"]) for r in mine)
        old_bias = max(abs(r["old PPI mean"] - r["truth"]) for r in mine)
        print(f"{design}: {sizes[design]:.0f} human labels on average; worst PPI coverage {worst:.3f} (target >= 0.93); "
              f"largest |mean - truth| {bias:.4f} (old PPI {old_bias:.4f})")
    print(f"done in {time.perf_counter() - started:.0f}s")


SMALL_REFERENCE = "John"


def small_draw(names: np.ndarray, k: int, design: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """k human labels per name: stratified (exactly k, with probabilities and strata) or random (32 k over all)."""
    size = len(names)
    labelled = np.zeros(size, dtype=bool)
    values = sorted(set(names))
    if design == "random":
        labelled[rng.choice(size, size=k * len(values), replace=False)] = True
        return labelled, None, None
    pi = np.zeros(size)
    for g in values:
        members = np.flatnonzero(names == g)
        labelled[rng.choice(members, size=k, replace=False)] = True
        pi[members] = k / len(members)
    return labelled, pi, names


def resample_prompts(names: np.ndarray, prompts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of a study whose prompts are redrawn with replacement within each name, and cluster ids
    (a prompt drawn twice is two clusters: two independent draws of it)."""
    rows, clusters = [], []
    for g in sorted(set(names)):
        members = np.flatnonzero(names == g)
        own = sorted(set(prompts[members]))
        for slot, p in enumerate(rng.choice(len(own), size=len(own), replace=True)):
            picked = members[prompts[members] == own[p]]
            rows.append(picked)
            clusters += [f"{g}#{slot}"] * len(picked)
    return np.concatenate(rows), np.asarray(clusters, dtype=object)


def small_one(judge, human, names, clusters, k, design, rng, lam, *, cluster: bool) -> dict:
    labelled, pi, strata = small_draw(names, k, design, rng)
    sample = np.where(labelled, human, "")
    out = {}
    for mode in (False, True) if cluster is None else (cluster,):
        res = ppi_by_group(judge, sample, names, categories=[CATEGORY], reference=SMALL_REFERENCE, inclusion=pi, strata=strata,
                           clusters=clusters if mode else None, lam=lam)
        rates = {g: res["rates"][g][CATEGORY] for g in res["rates"]}
        gaps = {g: res["gaps"][g][CATEGORY] for g in res["gaps"]}
        out[mode] = {"n": {g: r["n_human"] for g, r in rates.items()},
                     "rate": {g: (r["estimable"], r.get("ppi", {}).get("ci"), r.get("ppi", {}).get("rate")) for g, r in rates.items()},
                     "human": {g: (r["estimable"], r.get("human_only", {}).get("ci")) for g, r in rates.items()},
                     "gap": {g: (r["estimable"], r.get("ppi", {}).get("ci")) for g, r in gaps.items()}}
    return out


def _coverage(results: list[dict], key: str, truth: dict) -> tuple[float | None, float | None, str | None, float]:
    """Worst and mean per-group coverage over the draws where the group is estimable, the worst group, and
    the share of (draw, group) pairs not estimable."""
    per, missing, total = {}, 0, 0
    for r in results:
        for g, (ok, ci, *_) in r[key].items():
            total += 1
            if not ok:
                missing += 1
                continue
            per.setdefault(g, []).append(ci[0] <= truth[g] <= ci[1])
    if not per:
        return None, None, None, 1.0
    cover = {g: float(np.mean(v)) for g, v in per.items()}
    worst = min(cover, key=cover.get)
    return cover[worst], float(np.mean(list(cover.values()))), worst, missing / total


def small_groups(args, frame: pd.DataFrame) -> None:
    human = frame["label"].to_numpy(dtype=object)
    judge = frame["judge_label"].to_numpy(dtype=object)
    names = frame["name"].astype(str).to_numpy(dtype=object)
    prompts = frame["prompt"].astype(str).to_numpy(dtype=object)
    rate = {g: float((human[names == g] == CATEGORY).mean()) for g in sorted(set(names))}
    gap_truth = {g: rate[g] - rate[SMALL_REFERENCE] for g in rate if g != SMALL_REFERENCE}
    print(f"# Small groups: {len(rate)} names x 72 outputs (13B, judge = {args.judge_kind} trained on 7B, kappa {_kappa(human, judge):.3f}); "
          f"{args.draws} draws per row; refusal rates and gaps to {SMALL_REFERENCE}; marginal 95% intervals; estimability: {estimability.RULE}; "
          f"CPU: {cpu_model()}\n")
    rows = []
    for j, (truth_kind, design, k) in enumerate([("fixed", d, k) for d in ("random", "stratified") for k in args.per_group]
                                               + [("prompts resampled", "stratified", k) for k in args.per_group]):
        started = time.perf_counter()
        draws = []
        for d in range(args.draws):
            rng = np.random.default_rng([args.seed, d, 100 + j])
            if truth_kind == "fixed":
                draws.append(small_one(judge, human, names, prompts, k, design, rng, args.lam, cluster=None))
            else:
                idx, clusters = resample_prompts(names, prompts, rng)
                draws.append(small_one(judge[idx], human[idx], names[idx], clusters, k, design, rng, args.lam, cluster=None))
        for mode in (False, True):
            results = [d[mode] for d in draws]
            worst_rate, mean_rate, worst_group, share = _coverage(results, "rate", rate)
            worst_gap, mean_gap, worst_gap_group, _ = _coverage(results, "gap", gap_truth)
            worst_human, *_ = _coverage(results, "human", rate)
            widths = [ci[1] - ci[0] for r in results for ok, ci, _ in r["rate"].values() if ok]
            below = np.mean([np.mean([n < 5 for n in r["n"].values()]) for r in results])
            rows.append({"truth": truth_kind, "design": design, "labels / name": k, "clustered by prompt": "on" if mode else "off",
                         "not estimable": share, "< 5 labels": float(below), "rate cov worst": worst_rate, "(name)": worst_group,
                         "rate cov mean": mean_rate, "gap cov worst": worst_gap, "(gap name)": worst_gap_group, "gap cov mean": mean_gap,
                         "human-only cov worst": worst_human, "PPI width": float(np.mean(widths)) if widths else None})
        print(f"  {truth_kind} / {design} / {k} per name: {time.perf_counter() - started:.0f}s", file=sys.stderr)
    columns = ["truth", "design", "labels / name", "clustered by prompt", "not estimable", "< 5 labels", "rate cov worst", "(name)", "rate cov mean",
               "gap cov worst", "(gap name)", "gap cov mean", "human-only cov worst", "PPI width"]
    print(markdown_table(rows, columns))


def _kappa(human, judge) -> float:
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(human, judge))


if __name__ == "__main__":
    main()
