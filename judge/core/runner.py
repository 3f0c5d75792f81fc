"""One runner for fixed batch plans, used by labelling and generation alike.

A *plan* cuts the whole input into numbered batches once (similar lengths together, a stable order),
so every rerun, shard or cluster node sees the same batches. A *worker* turns one batch into its rows
(a judge, a generation engine). An *executor* says where the batches run: this process here; shards
and a Ray cluster plug in the same way. The runner owns the rest: which batches a checkpoint already
holds, "a batch counts only when all its rows are written", and progress.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

from tqdm.auto import tqdm

from judge.core.records import JsonlCheckpoint


@dataclass(frozen=True)
class Batch:
    number: int  # its place in the whole plan: seeds and shares follow it, not the order batches run in
    keys: tuple[str, ...]  # the rows it writes
    items: tuple[Any, ...]  # what a worker needs to compute them, one per key


def fixed_plan(items: Iterable[Any], *, key: Callable[[Any], str], size: Callable[[Any], int], batch_size: int) -> list[Batch]:
    """Batches of similar size, ordered by (size, key): the same plan for the same input, every time."""
    ordered = sorted(items, key=lambda item: (size(item), key(item)))
    return [Batch(n, tuple(key(i) for i in ordered[s : s + batch_size]), tuple(ordered[s : s + batch_size]))
            for n, s in enumerate(range(0, len(ordered), batch_size))]


class Worker(Protocol):
    def compute(self, batch: Batch) -> list[dict[str, Any]]:
        """One row per key of the batch, in the batch's order; each row carries its key under the plan's key column."""


class Executor(Protocol):
    def run(self, make_worker: Callable[[], Worker], batches: Sequence[Batch]) -> Iterator[tuple[Batch, list[dict[str, Any]]]]:
        """Yield each batch with its rows as it finishes, in any order; build workers with ``make_worker``."""


class InProcess:
    """Runs the batches one after another in this process, on a worker already built here (or built once)."""

    def __init__(self, worker: Worker | None = None):
        self.worker = worker

    def describe(self) -> dict[str, Any]:
        return {"executor": "in-process"}

    def run(self, make_worker, batches):
        worker = self.worker or make_worker()
        for batch in batches:
            yield batch, worker.compute(batch)


@dataclass
class RunResult:
    rows: dict[str, dict[str, Any]]  # every planned key: reused from the checkpoint or computed now
    computed: int = 0  # rows computed in this run
    seconds: float = 0.0  # time spent computing them
    executor: dict[str, Any] = field(default_factory=dict)


def run_plan(plan: Sequence[Batch], make_worker: Callable[[], Worker], *, key_column: str, checkpoint: JsonlCheckpoint | None = None,
             executor: Executor | None = None, progress: bool = True, desc: str = "running", unit: str = "row") -> RunResult:
    """Run the batches of ``plan`` that the checkpoint does not hold whole; append each finished batch whole.

    A batch a crash cut is computed again whole, and its later copy wins, so a resumed run writes
    exactly what an uninterrupted one would.
    """
    executor = executor or InProcess()
    done = {str(r[key_column]): r for r in checkpoint.rows()} if checkpoint else {}
    result = RunResult(rows={}, executor=getattr(executor, "describe", dict)())
    todo = []
    for batch in plan:
        if all(k in done for k in batch.keys):
            result.rows.update((k, done[k]) for k in batch.keys)
        else:
            todo.append(batch)
    started = time.perf_counter()
    with tqdm(total=sum(len(b.keys) for b in todo), desc=desc, unit=unit, disable=not progress, mininterval=1.0) as bar:
        for batch, rows in executor.run(make_worker, todo):
            keys = tuple(str(r[key_column]) for r in rows)
            if keys != batch.keys:
                raise RuntimeError(f"batch {batch.number}: the worker returned rows for {len(keys)} keys, not the batch's {len(batch.keys)} in order")
            if checkpoint:
                checkpoint.append(rows)
            result.rows.update(zip(keys, rows))
            result.computed += len(rows)
            bar.update(len(rows))
    result.seconds = time.perf_counter() - started
    return result
