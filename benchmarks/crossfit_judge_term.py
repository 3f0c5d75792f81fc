"""What a cross-fitted judge term must average on the labelled outputs, measured on the same draws (issue 32)

    python benchmarks/crossfit_judge_term.py --cells xstest:450 xstest:150 13b:500 13b:150 --draws 400

Cross-fitted PPI for the rate among these outputs (no clusters, a simple random sample within each group, the
gap of benchmarks/label_economy.py's populations, 5 TF-IDF fold judges grouped by prompt as there). Every draw
is scored four ways from the same sample and the same fold judges:

- A, fold average: the judge term averages the K judges on every output, the labelled ones included (K - 1 of
  them were trained on each labelled output); the design variance with the finite-population correction;
- B, fold average, no correction: A's estimate, the variance without the finite-population correction (each
  group's variance divided by 1 - n_g / N_g: the superpopulation variance of the correction term);
- C, out of fold (what judge.analysis.crossfit does): the judge term reads each labelled output's out-of-fold
  prediction, the same the correction subtracts; the design variance with the correction;
- D: C's estimate without the correction.

Per cell: coverage of the 95% interval, mean half-width, the estimates' bias and spread. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from common import DEFAULT_DATA, cpu_model, markdown_table
from label_economy import CAT, XSTEST, cross_fit, draw_design, population_13b, population_xstest

from judge.stats import clustered
from judge.stats.ppi import ppi_by_group

VARIANTS = {
    "A fold average": ("fold average", False),
    "B fold average, no FPC": ("fold average", True),
    "C out of fold (the toolkit)": ("out of fold", False),
    "D out of fold, no FPC": ("out of fold", True),
}


def _gap(res: dict, pop, no_fpc: bool) -> tuple[float, float]:
    """The first - second gap and its 95% half-width, each group's variance without the FPC if ``no_fpc``."""
    rates = [res["rates"][g][CAT] for g in (pop.first, pop.second)]
    variances = []
    for r in rates:
        v = r["ppi"]["se"] ** 2
        if no_fpc:  # a simple random sample within the group: design and pseudo terms both carry 1 - n/N
            v /= 1 - r["n_human"] / (r["n_human"] + r["n_judge_only"])
        variances.append(v)
    df = clustered.satterthwaite(variances, [r["ppi"]["df"] for r in rates])
    gap = rates[0]["ppi"]["rate"] - rates[1]["ppi"]["rate"]
    return gap, clustered.t_quantile(0.05, df) * float(np.sqrt(sum(variances)))


def cell(pop, n: int, draws: int, seed: int) -> list[dict]:
    truth = pop.y[pop.groups == pop.first].mean() - pop.y[pop.groups == pop.second].mean()
    got = {name: [] for name in VARIANTS}
    for i in range(draws):
        rng = np.random.default_rng([seed, n, i])
        labelled, _ = draw_design("random", pop.groups, pop.judge, n, rng)
        human = np.where(labelled, np.where(pop.y == 1, CAT, "other"), None)
        oof, average = cross_fit(pop.features, pop.y, labelled, pop.clusters, rng)
        scores = np.where(labelled, oof, average)[:, None]
        common = dict(categories=[CAT], reference=pop.second, lam=1.0, scores=scores)
        judge = np.where(average > 0.5, CAT, "other")
        res = {
            "fold average": ppi_by_group(judge, human, pop.groups, average=average[:, None], **common),
            "out of fold": ppi_by_group(judge, human, pop.groups, **common),
        }
        for name, (term, no_fpc) in VARIANTS.items():
            gap, half = _gap(res[term], pop, no_fpc)
            got[name].append((gap, half, abs(gap - truth) <= half))
    rows = []
    for name, values in got.items():
        a = np.asarray(values, dtype=float)
        rows.append(
            {
                "data": pop.name,
                "n": n,
                "N": len(pop.y),
                "variant": name,
                "coverage": float(a[:, 2].mean()),
                "mean half-width": float(a[:, 1].mean()),
                "bias": float(a[:, 0].mean() - truth),
                "sd of estimates": float(a[:, 0].std(ddof=1)),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", nargs="+", default=["xstest:450", "xstest:150", "13b:500", "13b:150"])
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    started = time.perf_counter()
    print(
        f"# Cross-fitted judge term: {args.draws} draws per cell; CPU: {cpu_model()}; load {os.getloadavg()[0]:.1f}\n"
    )
    pops, rows = {}, []
    for spec in args.cells:
        name, n = spec.split(":")
        if name not in pops:
            pops[name] = population_13b(DEFAULT_DATA) if name == "13b" else population_xstest(XSTEST)
        rows += cell(pops[name], int(n), args.draws, args.seed)
        print(f"  {spec}: {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)
    cols = ["data", "n", "N", "variant", "coverage", "mean half-width", "bias", "sd of estimates"]
    print(markdown_table(rows, cols))
    print(f"\ndone in {time.perf_counter() - started:.0f}s wall; load at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
