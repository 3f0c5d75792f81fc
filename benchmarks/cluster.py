"""Ray as an executor: one process vs Ray with 1 and 2 actors on this machine, then a cluster on paper.

    python benchmarks/cluster.py                          # all 4,608 released records, the default LoRA judge
    python benchmarks/cluster.py --judge tfidf:DIR        # any judge spec judge.label takes
    python benchmarks/cluster.py --limit 512 --actors 1   # a quick check

The judge: ``--judge``, or else the default LoRA recipe trained once on the bundled 300-example
sample (what ``make demo`` trains), kept under runs/benchmarks/cluster/. Each row labels the same
fixed plan through ``judge.core.runner.run_plan``: in this process, then on a local Ray (started
here, with every CPU of the machine) with N actors, and checks that the rows are the same bytes.
Ray's cost per batch is the Ray run's labelling time less the single process's, over the batches
(1 actor: the same work, one at a time). The table on paper takes the per-actor rate measured with
1 actor (one CPU, one thread) and assumes actors scale linearly over a node's CPUs and over nodes,
which the driver (reading, planning, writing JSONL) stops being true of somewhere past the tables.
The CPU model (lscpu) heads the output: the rates differ a lot between CPUs.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from common import DEFAULT_DATA, ROOT, cpu_model, load_chehbouni, markdown_table

OUT = ROOT / "runs" / "benchmarks" / "cluster"
PER_HOUR = 1_000_000


@dataclass
class JudgeWorker:
    """A judge as the runner's Worker (until Judge.label runs through run_plan itself)."""

    judge: object
    prefix: str = "judge_"

    def compute(self, batch):
        items = list(batch.items)
        judgements = self.judge.checked(self.judge._label_batch(items), items)
        return [self.judge.output_row(i, j, prefix=self.prefix) for i, j in zip(items, judgements)]


@dataclass(frozen=True)
class LoadJudge:
    spec: str

    def __call__(self):
        from judge.judges import load_judge

        return JudgeWorker(load_judge(self.spec))


def default_judge() -> str:
    """The default LoRA recipe on the bundled sample, trained once and reused."""
    directory = OUT / "judge-lora-sample"
    if not (directory / "judge.json").exists():
        from judge.core.formats.judge_dir import finish
        from judge.core.paths import SAMPLE
        from judge.core.records import read_records
        from training.examples import labelled_data
        from training.lora import LoraRecipe, train_lora

        data = labelled_data(read_records(SAMPLE), label_column="label", taxonomy="chehbouni2024")
        started = time.perf_counter()
        train_lora(data, directory, LoraRecipe(), progress=False)
        finish(directory, data.taxonomy, training_ids=data.records["id"])
        print(f"trained the default judge on the bundled sample in {time.perf_counter() - started:.0f} s", flush=True)
    return f"lora:{directory}"


def plan_for(records, judge, batch_size: int):
    from judge.core.runner import fixed_plan
    from judge.judges.base import Item

    items = [Item(str(i), str(p), str(r), n if isinstance(n, str) else None)
             for i, p, r, n in zip(records["id"], records["prompt"], records["response"], records["name"])]
    return fixed_plan(items, key=lambda item: item.id, size=judge.sort_key, batch_size=batch_size)


def jsonl_bytes(rows: dict, order) -> bytes:
    from judge.core.records import to_json_line

    return "".join(to_json_line(rows[k]) for k in order).encode("utf-8")


def single_process(spec: str, plan, order) -> tuple[dict, bytes]:
    from judge.core.runner import InProcess, run_plan

    started = time.perf_counter()
    worker = LoadJudge(spec)()
    loaded = time.perf_counter()
    result = run_plan(plan, LoadJudge(spec), key_column="id", executor=InProcess(worker), progress=False)
    return {"executor": "one process", "actors": "", "start s": loaded - started, "label s": result.seconds,
            "outputs/s": len(order) / result.seconds, "same bytes": "reference"}, jsonl_bytes(result.rows, order)


def through_ray(spec: str, plan, order, actors: int, reference: bytes) -> tuple[dict, dict]:
    from judge.core.ray_executor import RayExecutor
    from judge.core.runner import run_plan

    executor = RayExecutor(actors=actors, progress=False)
    started = time.perf_counter()
    result = run_plan(plan, LoadJudge(spec), key_column="id", executor=executor, progress=False)
    whole = time.perf_counter() - started
    info = executor.describe()
    label_s = info["seconds"]
    return {"executor": "ray", "actors": actors, "start s": info["startup_seconds"], "label s": label_s, "outputs/s": len(order) / label_s,
            "same bytes": "yes" if jsonl_bytes(result.rows, order) == reference else "NO", "whole s": whole}, info


def paper_table(per_actor: float, cpus_per_actor: float) -> list[dict]:
    """Outputs/s per node and nodes for a million outputs an hour, scaling the measured per-actor rate."""
    need = PER_HOUR / 3600
    rows = []
    for cpus in (2, 8, 16, 32, 64, 96):
        actors = max(1, int((cpus - 0.5) // cpus_per_actor))  # half a CPU left to the driver / Ray on each node
        per_node = per_actor * actors
        rows.append({"CPUs per node": cpus, "actors per node": actors, "outputs/s per node": per_node,
                     "outputs/hour per node": per_node * 3600, "nodes for 1M outputs/hour": math.ceil(need / per_node)})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--judge", help="a judge spec (DIR, tfidf:DIR ...); default: the default LoRA recipe on the bundled sample")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--actors", default="1,2", help="comma-separated actor counts")
    ap.add_argument("--limit", type=int, help="label only the first N records (by id)")
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    print(f"CPU: {cpu_model()}", flush=True)
    data = load_chehbouni(args.data_dir)
    import pandas as pd

    records = pd.concat([data["7b"], data["13b"]], ignore_index=True)
    if args.limit:
        records = records.iloc[: args.limit]
    spec = args.judge or default_judge()
    from judge.judges import load_judge

    plan = plan_for(records, load_judge(spec), args.batch_size)
    order = [str(i) for i in records["id"]]
    print(f"{len(order)} records, {len(plan)} batches of {args.batch_size}, judge {spec}", flush=True)
    alone, reference = single_process(spec, plan, order)
    rows, infos = [alone], {}
    import ray

    ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        for actors in (int(a) for a in args.actors.split(",")):
            row, infos[actors] = through_ray(spec, plan, order, actors, reference)
            rows.append(row)
            print(f"ray, {actors} actor(s): {row['outputs/s']:.1f} outputs/s", flush=True)
        cpus = ray.cluster_resources().get("CPU")
    finally:
        ray.shutdown()
    print(f"\n## {len(order)} released records, one process vs Ray on this machine ({cpu_model()}, Ray sees {cpus:g} CPUs)\n")
    print(markdown_table(rows, ["executor", "actors", "start s", "label s", "outputs/s", "same bytes", "whole s"]))
    one = infos.get(1) or next(iter(infos.values()))
    batches = len(plan)
    overhead = (one["seconds"] - alone["label s"]) / batches if 1 in infos else None
    compute = one["compute_seconds"]
    print(f"Ray's cost per batch (1 actor, labelling time less one process's, over {batches} batches): "
          + (f"{overhead * 1000:.1f} ms" if overhead is not None else "n/a (no 1-actor run)")
          + f"; in the actor a batch took {compute['mean'] * 1000:.0f} ms on average, its round trip from the driver "
          f"{one['round_trip_seconds']['mean'] * 1000:.0f} ms (its wait behind the other batch in flight on the actor included)")
    per_actor = len(order) / compute["total"]
    print(f"\n## On paper: nodes like this CPU, {one['cpus_per_actor']:g} CPU per actor, {per_actor:.1f} outputs/s per actor (measured, 1 actor)\n")
    print(markdown_table(paper_table(per_actor, one["cpus_per_actor"]),
                         ["CPUs per node", "actors per node", "outputs/s per node", "outputs/hour per node", "nodes for 1M outputs/hour"]))


if __name__ == "__main__":
    main()
