"""The agreement bootstrap (issue 30): the loop it was against the vectorised path, side by side.

    python benchmarks/bootstrap.py                            # 300 and 10,000 items; judge.agree on the 13B labels
    python benchmarks/bootstrap.py --sizes 10000 --no-agree   # in-process only
    python benchmarks/bootstrap.py --old-resamples 100        # the loop timed on 100 resamples, scaled to --resamples

The loop (kept here and in tests/test_metrics_bootstrap.py only) is what ``agreement()`` did before:
scikit-learn's cohen_kappa_score and f1_score and krippendorff.alpha called once per resample, for
each of the three intervals. The vectorised path draws the same resamples once and counts one
confusion matrix per resample. In-process: ``agreement()`` on synthetic labels (the 13B label mix,
75% agreement, 1% unscored), items resampled one by one and whole clusters of 3 (the paper's 3
outputs per prompt); each row also gives the largest difference between the two paths' intervals.

Whole process: ``python -m judge.agree`` on the 2,304 released 13B labels against the keyword rules
judge's labels (``judge.label --judge rules``, written once under runs/benchmarks/bootstrap/),
``--by identity``, with ``--bootstrap 0``, with the default 1,000 resamples, and with the loop put back
in the same process (``--loop-agree``, this script running judge.agree). Intervals resample whole
prompts there (judge.agree's default, as each prompt has 3 outputs). Each command runs ``--repeats``
times, in turn; the table gives the median wall time. The CPU model (lscpu) and the load average head
the output: the machine is shared, and others' jobs slow every row.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np

from common import DEFAULT_DATA, ROOT, cpu_model, markdown_table

OUT = ROOT / "runs" / "benchmarks" / "bootstrap"
LABELS = ["answer", "partial answer", "refusal", "harmful refusal", "harmful answer", "failure"]
SHARES = [1699, 121, 343, 30, 5, 106]  # the 13B release's label counts


# -- the loop as it was (the reference; not in product code) ----------------------------------------------------

def loop_intervals(gold, pred, *, labels, f1_labels, n_boot=1000, seed=0, level=0.95, clusters=None):
    """agreement_intervals as agreement() computed them before issue 30: three loops over resamples."""
    import krippendorff
    from sklearn.metrics import cohen_kappa_score, f1_score

    from judge.stats.metrics import cluster_resampler

    g, p = np.asarray(list(gold), dtype=object), np.asarray(list(pred), dtype=object)
    code = {label: i for i, label in enumerate(labels)}

    def kappa(idx):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(cohen_kappa_score(g[idx], p[idx], labels=list(labels)))

    def alpha(idx):
        data = np.array([[code.get(v, np.nan) for v in row] for row in (g[idx], p[idx])], dtype=float)
        if len(labels) < 2 or not ((~np.isnan(data)).sum(axis=0) >= 2).any():
            return float("nan")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal",
                                            value_domain=list(range(len(labels)))))

    def macro_f1(idx):
        return float(f1_score(g[idx], p[idx], labels=f1_labels, average="macro", zero_division=0))

    def interval(statistic):
        n = len(g)
        if n == 0 or n_boot <= 0:
            return (float("nan"), float("nan"))
        rng = np.random.default_rng(seed)
        draw = cluster_resampler(clusters) if clusters is not None else (lambda r: r.integers(0, n, size=n))
        values = np.array([statistic(draw(rng)) for _ in range(n_boot)])
        values = values[~np.isnan(values)]
        if values.size == 0:
            return (float("nan"), float("nan"))
        tail = (1 - level) / 2 * 100
        low, high = np.percentile(values, [tail, 100 - tail])
        return (float(low), float(high))

    return {"cohen_kappa": interval(kappa), "krippendorff_alpha": interval(alpha), "macro_f1": interval(macro_f1)}


class looped:
    """agreement() with the loop put back, for as long as the block runs."""

    def __enter__(self):
        import judge.stats.metrics as metrics

        self.metrics, self.saved = metrics, metrics.agreement_intervals
        metrics.agreement_intervals = loop_intervals

    def __exit__(self, *exc):
        self.metrics.agreement_intervals = self.saved


# -- in-process ------------------------------------------------------------------------------------------------

def synthetic(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    gold = rng.choice(LABELS, size=n, p=np.array(SHARES) / sum(SHARES))
    pred = np.where(rng.random(n) < 0.75, gold, rng.choice(LABELS, size=n))
    pred = np.where(rng.random(n) < 0.01, "unscored", pred)
    return gold.tolist(), pred.tolist(), [f"prompt {i // 3}" for i in range(n)]


def largest_difference(a: dict, b: dict) -> float:
    worst = 0.0
    for key in ("cohen_kappa", "krippendorff_alpha", "macro_f1"):
        for x, y in zip(a[key], b[key]):
            if math.isnan(x) != math.isnan(y):
                return float("inf")
            if not math.isnan(x):
                worst = max(worst, abs(x - y))
    return worst


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def in_process(sizes: list[int], n_boot: int, old_resamples: int | None) -> list[dict]:
    from judge.stats.metrics import agreement

    rows = []
    for n in sizes:
        gold, pred, prompts = synthetic(n)
        for design, clusters in (("items", None), ("clusters of 3", prompts)):
            run = partial(agreement, gold, pred, labels=LABELS, seed=0, clusters=clusters)
            run(n_boot=10)  # imports and first-call costs out of the timings
            load = os.getloadavg()[0]
            new, new_s, new_cpu = timed(partial(run, n_boot=n_boot))
            old_boot = min(old_resamples or n_boot, n_boot)
            with looped():
                old, old_s, old_cpu = timed(partial(run, n_boot=old_boot))
            # the loop timed on fewer resamples is scaled to n_boot (its cost is linear in them) and compared
            # with the vectorised intervals of as many resamples
            scale = n_boot / old_boot
            reference = run(n_boot=old_boot) if scale > 1 else new
            note = f" (scaled from {old_boot})" if scale > 1 else ""
            difference = largest_difference(old["ci"], reference["ci"])
            rows.append({"items": n, "bootstrap": design, "resamples": n_boot,
                         "loop s": f"{old_s * scale:.2f}{note}", "loop CPU s": f"{old_cpu * scale:.2f}",
                         "vectorised s": round(new_s, 3), "vectorised CPU s": round(new_cpu, 3),
                         "speed-up": f"{old_s * scale / new_s:.0f}x", "max abs difference": f"{difference:.1e}",
                         "load": round(load, 2)})
            print(f"{n} items, {design}: loop {rows[-1]['loop s']} s, vectorised {new_s:.3f} s", flush=True)
    return rows


# -- whole process ---------------------------------------------------------------------------------------------

def run_module(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def judged_13b(data_dir: Path) -> Path:
    """The released 13B labels with the keyword rules judge's beside them (made once)."""
    judged = OUT / "13b.rules.jsonl"
    if judged.exists():
        return judged
    csv = data_dir / "df_annotated_llama13.csv"
    if not csv.exists():
        sys.exit(f"benchmark needs the public data: {csv} not found (pass --data-dir, or --no-agree)")
    OUT.mkdir(parents=True, exist_ok=True)
    records = OUT / "13b.jsonl"
    for argv in (["-m", "judge.data", "chehbouni2024", str(csv), "--out", str(records), "--overwrite"],
                 ["-m", "judge.label", "--judge", "rules", "--taxonomy", "chehbouni2024", "--input", str(records),
                  "--prefix", "rules_", "--out", str(judged), "--no-progress"]):
        done = run_module(argv)
        if done.returncode:
            sys.exit(f"{argv[1]} failed:\n{done.stderr}")
    return judged


def agree_argv(judged: Path, out: Path, bootstrap: int | None) -> list[str]:
    return [str(judged), "--gold", "label", "--pred", "rules_label", "--taxonomy", "chehbouni2024", "--by", "identity",
            *([] if bootstrap is None else ["--bootstrap", str(bootstrap)]), "--out", str(out), "--overwrite"]


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def whole_processes(judged: Path, repeats: int) -> tuple[list[dict], str]:
    commands = {
        "judge.agree --bootstrap 0": ["-m", "judge.agree", *agree_argv(judged, OUT / "agree-0", 0)],
        "judge.agree (1,000 resamples, vectorised)": ["-m", "judge.agree",
                                                      *agree_argv(judged, OUT / "agree-1000", None)],
        "judge.agree (1,000 resamples, the loop)": [str(Path(__file__).resolve()), "--loop-agree",
                                                    *agree_argv(judged, OUT / "agree-loop", None)],
    }
    wall = {name: [] for name in commands}
    cpu = {name: [] for name in commands}
    loads = {name: [] for name in commands}
    for _ in range(repeats):
        for name, argv in commands.items():  # in turn, so a burst of load falls on every command alike
            loads[name].append(os.getloadavg()[0])
            started, cpu_before = time.perf_counter(), children_cpu()
            done = run_module(argv)
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(children_cpu() - cpu_before)
            if done.returncode:
                sys.exit(f"{name} failed:\n{done.stderr}")
    base_wall = statistics.median(wall["judge.agree --bootstrap 0"])
    base_cpu = statistics.median(cpu["judge.agree --bootstrap 0"])
    rows = [{"command": name, "median wall s": round(statistics.median(wall[name]), 2),
             "wall runs s": ", ".join(f"{x:.2f}" for x in wall[name]),
             "x --bootstrap 0 (wall)": f"{statistics.median(wall[name]) / base_wall:.2f}",
             "median CPU s": round(statistics.median(cpu[name]), 2),
             "x --bootstrap 0 (CPU)": f"{statistics.median(cpu[name]) / base_cpu:.2f}",
             "load": round(statistics.median(loads[name]), 2)} for name in commands]
    new = json.loads((OUT / "agree-1000" / "agreement.json").read_text())
    old = json.loads((OUT / "agree-loop" / "agreement.json").read_text())
    same = f"Largest difference between the two runs' intervals: {largest_difference(new['ci'], old['ci']):.1e}."
    return rows, same


def loop_agree(argv: list[str]) -> int:
    """judge.agree with the loop put back (a child process of the whole-process comparison)."""
    from judge import agree
    from judge.core.cli import run_command

    with looped():
        return run_command(agree.build_parser, agree.Config, agree.main, argv)


def main():
    if sys.argv[1:2] == ["--loop-agree"]:
        sys.exit(loop_agree(sys.argv[2:]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="300,10000", help="comma-separated item counts (in-process)")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--old-resamples", type=int, help="time the loop on this many resamples and scale (linear in them)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each judge.agree command")
    ap.add_argument("--no-agree", action="store_true", help="skip the judge.agree processes")
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}; load average {load_average()} at the start "
          "(a shared machine: others' jobs slow every row)", flush=True)
    rows = in_process([int(s) for s in args.sizes.split(",")], args.resamples, args.old_resamples)
    processes = None if args.no_agree else whole_processes(judged_13b(args.data_dir), args.repeats)
    print(f"\n## agreement() in-process, seed 0\n\n{cpu_model()}; load average {load_average()} at the end. "
          "`load` is the 1-minute load average as each row started (2.0 = both cores busy before this "
          "benchmark's own work); CPU s is this process's CPU time.\n")
    print(markdown_table(rows, ["items", "bootstrap", "resamples", "loop s", "loop CPU s", "vectorised s",
                                "vectorised CPU s", "speed-up", "max abs difference", "load"]))
    if processes:
        table, same = processes
        columns = ["command", "median wall s", "wall runs s", "x --bootstrap 0 (wall)", "median CPU s",
                   "x --bootstrap 0 (CPU)", "load"]
        print("\n## python -m judge.agree, whole process: 2,304 released 13B labels vs the keyword rules judge, "
              f"--by identity, clusters = prompts, {args.repeats} run(s) each\n")
        print(f"{markdown_table(table, columns)}\n{same}")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
