"""Ray as an executor: one process vs Ray with 1 and 2 actors on this machine, then a cluster on paper.

    python benchmarks/cluster.py                          # all 4,608 released records, the default LoRA judge
    python benchmarks/cluster.py --judge tfidf:DIR        # any judge spec judge.label takes
    python benchmarks/cluster.py --limit 512 --actors 1   # a quick check

The judge: ``--judge``, or else the default LoRA recipe trained once on the bundled 300-example
sample (what ``make demo`` trains), kept under runs/benchmarks/cluster/, labelling in the precision
judge.label picks by default. Each row labels the same fixed plan through
``judge.run.runner.run_plan`` with the worker factory judge.label --ray uses
(``judge.kinds.base.JudgeWorker``): in this process with torch's default threads and with one
thread (what one actor gets), then on a local Ray (started here, with every CPU of the machine) with
N actors, and checks that the rows are the same bytes. Ray's cost per batch is the 1-actor run's
labelling time less the one-thread process's, over the batches. The table on paper takes the
per-actor rate measured with 1 actor (one CPU, one thread) and assumes actors scale linearly over a
node's CPUs and over nodes, which stops being true where the driver (reading, planning, writing
JSONL) becomes the bottleneck. The CPU model (lscpu) and the load average head the output: the
rates differ a lot between CPUs, and on a shared machine with the other jobs running.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import time
from pathlib import Path

from common import DEFAULT_DATA, ROOT, cpu_model, load_chehbouni, markdown_table

OUT = ROOT / "runs" / "benchmarks" / "cluster"
PER_HOUR = 1_000_000


def worker_for(spec: str):
    """The picklable factory judge.label --ray hands its executor (each actor loads the judge itself),
    with the precision judge.label picks by default."""
    from judge.kinds import precision_directory, resolve
    from judge.kinds.base import JudgeWorker, RowOptions
    from judge.kinds.lora.precision import choose_for

    ref = resolve(spec)  # as judge.label: the judge's files hashed once, the actors check them against these digests
    with ref.known():
        choice = choose_for(precision_directory(ref), "auto", "cpu", spec=spec)
    options = {"device": "cpu", "precision": choice or "auto"}
    return JudgeWorker(ref, options=tuple(options.items()), row_options=RowOptions(prefix="judge_"))


def default_judge() -> str:
    """The default LoRA recipe on the bundled sample, trained once and reused."""
    directory = OUT / "judge-lora-sample"
    if not (directory / "judge.json").exists():
        from judge.core.paths import SAMPLE
        from judge.core.records import read_records
        from judge.kinds.judge_dir import finish
        from training.examples import labelled_data
        from training.lora import LoraRecipe, train_lora

        data = labelled_data(read_records(SAMPLE), label_column="label", taxonomy="chehbouni2024")
        started = time.perf_counter()
        train_lora(data, directory, LoraRecipe(), progress=False)
        finish(directory, data.taxonomy, training_ids=data.records["id"])
        print(f"trained the default judge on the bundled sample in {time.perf_counter() - started:.0f} s", flush=True)
    return f"lora:{directory}"


def plan_for(records, judge, batch_size: int):
    """The plan judge.label makes: the judge's own, over the records with a response."""
    from judge.kinds.base import labelling_items

    items, missing = labelling_items(records)
    assert not missing, f"{len(missing)} released records have no response"
    return judge.plan(items, batch_size)


def jsonl_bytes(rows: dict, order) -> bytes:
    from judge.core.files import to_json_line

    return "".join(to_json_line(rows[k]) for k in order).encode("utf-8")


def single_process(spec: str, plan, order, threads: int | None) -> tuple[dict, bytes]:
    """In this process with torch's default threads (every core), or with ``threads``, as one actor has."""
    import torch

    from judge.run.runner import InProcess, run_plan

    default = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        started = time.perf_counter()
        worker = worker_for(spec)()
        loaded = time.perf_counter()
        worker.compute(plan[0])  # untimed: torch's first call in a process sets up its kernels (an actor's is in its rows)
        load = os.getloadavg()[0]
        result = run_plan(plan, worker_for(spec), key_column="id", executor=InProcess(worker), progress=False)
    finally:
        torch.set_num_threads(default)
    return {"executor": "one process", "threads": threads or default, "start s": loaded - started, "label s": result.seconds,
            "outputs/s": len(order) / result.seconds, "same bytes": "reference" if threads is None else None, "load": load}, jsonl_bytes(result.rows, order)


def through_ray(spec: str, plan, order, actors: int, threads: int, reference: bytes) -> tuple[dict, dict]:
    from judge.run.ray_executor import RayExecutor
    from judge.run.runner import run_plan

    executor = RayExecutor(actors=actors, threads=threads, progress=False)
    started, load = time.perf_counter(), os.getloadavg()[0]
    result = run_plan(plan, worker_for(spec), key_column="id", executor=executor, progress=False)
    whole = time.perf_counter() - started
    info = executor.describe()
    label_s = info["seconds"]
    return {"executor": "ray", "actors": actors, "threads": f"{threads} ({info['cpus_per_actor']:g} CPU) each", "start s": info["startup_seconds"],
            "label s": label_s, "outputs/s": len(order) / label_s, "same bytes": "yes" if jsonl_bytes(result.rows, order) == reference else "NO",
            "whole s": whole, "load": load}, info


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
    print(f"CPU: {cpu_model()}; load average {load_average()} at the start (a shared machine: others' jobs slow every row)", flush=True)
    records = released_records(args.data_dir, args.limit)
    spec = args.judge or default_judge()
    factory = worker_for(spec)
    plan = plan_for(records, factory(), args.batch_size)
    order = [str(i) for i in records["id"]]
    print(f"{len(order)} records, {len(plan)} batches of {args.batch_size}, judge {spec} ({dict(factory.options)['precision']})", flush=True)
    rows, references, infos = [], {}, {}
    for threads in (None, 1):  # torch's default (every core) first: the bytes judge.label writes here
        row, written = single_process(spec, plan, order, threads=threads)
        references[row["threads"]] = written
        if threads:
            row["same bytes"] = "yes" if references[threads] == references[rows[0]["threads"]] else "NO (other threads)"
        rows.append(row)
        print(f"one process, {row['threads']} thread(s): {row['outputs/s']:.1f} outputs/s", flush=True)
    import ray

    ray.init(address="local", include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        for threads in references:
            for actors in (int(a) for a in args.actors.split(",")):
                row, infos[actors, threads] = through_ray(spec, plan, order, actors, threads, references[threads])
                rows.append(row)
                print(f"ray, {actors} actor(s) of {threads} thread(s): {row['outputs/s']:.1f} outputs/s", flush=True)
        cpus = ray.cluster_resources().get("CPU")
    finally:
        ray.shutdown()
    one_thread = rows[1]
    print(f"\n## {len(order)} released records, one process vs Ray on this machine\n\n{cpu_model()}, Ray sees {cpus:g} CPUs; "
          f"load average {load_average()} at the end. The machine is shared with 3 other engineers' jobs: "
          "`load` is the 1-minute load average as each row started (2.0 = both cores busy before this benchmark's own work).\n")
    print(markdown_table(rows, ["executor", "actors", "threads", "start s", "label s", "outputs/s", "same bytes", "whole s", "load"]))
    print("`same bytes`: against the process run with the actors' thread count (the first row for the runs with torch's default).")
    if (1, 1) in infos:
        print(overhead_line(infos[1, 1], one_thread, len(plan)))
    one = infos.get((1, 1)) or next(iter(infos.values()))
    per_actor = len(order) / one["compute_seconds"]["total"]
    print(f"\n## On paper: nodes with this CPU, {one['cpus_per_actor']:g} CPU per actor, {per_actor:.1f} outputs/s per actor "
          "(measured: rows over the actor's compute time, 1 actor)\n")
    print(markdown_table(paper_table(per_actor, one["cpus_per_actor"]),
                         ["CPUs per node", "actors per node", "outputs/s per node", "outputs/hour per node", "nodes for 1M outputs/hour"]))


def released_records(data_dir: Path, limit: int | None):
    import pandas as pd

    data = load_chehbouni(data_dir)
    records = pd.concat([data["7b"], data["13b"]], ignore_index=True)
    return records.iloc[:limit] if limit else records


def overhead_line(info: dict, one_thread: dict, batches: int) -> str:
    """Ray's cost per batch, two ways: against one process on one thread (what one actor has), and the
    driver's wall time the actor spent not computing (scheduling, pickling, moving rows back)."""
    against = (info["seconds"] - one_thread["label s"]) / batches
    idle = (info["seconds"] - info["compute_seconds"]["total"]) / batches
    return (f"Ray's cost per batch, 1 actor, {batches} batches: {against * 1000:.1f} ms more than one process on one thread; "
            f"{idle * 1000:.1f} ms of the driver's wall time per batch not spent computing in the actor; a batch took "
            f"{info['compute_seconds']['mean'] * 1000:.0f} ms in the actor, {info['round_trip_seconds']['mean'] * 1000:.0f} ms from the driver "
            "(its wait behind the other batch in flight on the actor included).")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
