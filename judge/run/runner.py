"""One runner for fixed batch plans, used by labelling and generation alike.

A *plan* cuts the whole input into numbered batches once (similar lengths together, a stable order),
so every rerun, shard or cluster node sees the same batches. A *worker* turns one batch into its rows
(a judge, a generation engine). An *executor* says where the batches run: this process here; shards
and a Ray cluster plug in the same way. The runner owns the rest: which batches a checkpoint already
holds, "a batch counts only when all its rows are written", and progress.

A *shard* ``I/N`` is a share of the plan: the batches whose number is ``I-1`` modulo ``N``. The plan
is sorted by length, so this round robin gives every share short and long batches alike (and rows
scattered over the input). A share's output records where its rows go in the whole output
(``judge.run.shard_part``), so ``python -m judge.join`` puts the shares back together
without reading the input.

Nothing heavy is imported here: commands parse ``--shard`` before their slow imports.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol, Sequence

from judge.core.errors import UserError, cut

if TYPE_CHECKING:
    from judge.core.records import JsonlCheckpoint


@dataclass(frozen=True)
class Batch:
    number: int  # its place in the whole plan: seeds and shares follow it, not the order batches run in
    keys: tuple[str, ...]  # the rows it writes
    items: tuple[Any, ...]  # what a worker needs to compute them, one per key


def fixed_plan(
    items: Iterable[Any], *, key: Callable[[Any], str], size: Callable[[Any], int], batch_size: int
) -> list[Batch]:
    """Batches of similar size, ordered by (size, key): the same plan for the same input, every time."""
    ordered = sorted(items, key=lambda item: (size(item), key(item)))
    return [
        Batch(n, tuple(key(i) for i in ordered[s : s + batch_size]), tuple(ordered[s : s + batch_size]))
        for n, s in enumerate(range(0, len(ordered), batch_size))
    ]


def plan_fingerprint(plan: Sequence[Batch]) -> str:
    """sha256 over the batches' keys, in plan order: two runs with this value cut the input alike."""
    return hashlib.sha256(json.dumps([list(b.keys) for b in plan], ensure_ascii=False).encode("utf-8")).hexdigest()


def identity_fingerprint(identity: dict[str, Any]) -> str:
    """sha256 of what makes a run's rows what they are (settings, inputs, model): parts of one run share it."""
    return hashlib.sha256(
        json.dumps(identity, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")
    ).hexdigest()


SHARD_FORM = re.compile(r"(\d{1,6})/(\d{1,6})")


@dataclass(frozen=True)
class Shard:
    """Share ``index`` (1-based) of ``count``: the plan's batches whose number % count == index - 1."""

    index: int
    count: int

    def __post_init__(self):
        if self.count < 1:
            raise UserError(
                f"--shard {self.index}/{self.count}: N must be 1 or more (the number of shares), e.g. --shard 1/2"
            )
        if not 1 <= self.index <= self.count:
            raise UserError(
                f"--shard {self.index}/{self.count} is out of range: I must be from 1 to {self.count} (shares are "
                "numbered "
                f"from 1), e.g. --shard 1/{self.count}"
            )

    @classmethod
    def parse(cls, text: str | None) -> "Shard | None":
        if text is None:
            return None
        match = SHARD_FORM.fullmatch(str(text).strip())
        if not match:
            raise UserError(
                f"--shard {cut(repr(text), 30)} is not I/N; give share I of N as two whole numbers, e.g. --shard 1/4 "
                "(the first of four)"
            )
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, batch: Batch) -> bool:
        return batch.number % self.count == self.index - 1

    def share(self, plan: Sequence[Batch]) -> list[Batch]:
        return [b for b in plan if self.holds(b)]

    @property
    def first(self) -> bool:
        """The first share also writes the rows no batch computes (a missing response, say)."""
        return self.index == 1


class Worker(Protocol):
    def compute(self, batch: Batch) -> list[dict[str, Any]]:
        """One row per key of the batch, in the batch's order; each row carries its key under the plan's key column."""


class Executor(Protocol):
    def run(
        self, make_worker: Callable[[], Worker], batches: Sequence[Batch]
    ) -> Iterator[tuple[Batch, list[dict[str, Any]]]]:
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
    rows: dict[str, dict[str, Any]]  # every key of the share run: reused from the checkpoint or computed now
    computed_keys: list[str] = field(default_factory=list)  # the keys of the rows computed in this run
    seconds: float = 0.0  # time spent computing them
    executor: dict[str, Any] = field(default_factory=dict)
    plan: str = ""  # plan_fingerprint of the whole plan (not only the share)
    shard: Shard | None = None

    @property
    def computed(self) -> int:
        return len(self.computed_keys)


def run_plan(
    plan: Sequence[Batch],
    make_worker: Callable[[], Worker],
    *,
    key_column: str,
    checkpoint: JsonlCheckpoint | None = None,
    executor: Executor | None = None,
    shard: Shard | None = None,
    progress: bool = True,
    desc: str = "running",
    unit: str = "row",
) -> RunResult:
    """Run the batches of ``plan`` (of ``shard``'s share, when given) that the checkpoint does not hold
    whole; append each finished batch whole.

    A batch a crash cut is computed again whole, and its later copy wins, so a resumed run writes
    exactly what an uninterrupted one would. Rows a checkpoint holds for keys outside the share are
    ignored (they are not this run's).
    """
    from tqdm.auto import tqdm

    executor = executor or InProcess()
    batches = shard.share(plan) if shard else list(plan)
    done = {str(r[key_column]): r for r in checkpoint.rows()} if checkpoint else {}
    result = RunResult(
        rows={}, executor=getattr(executor, "describe", dict)(), plan=plan_fingerprint(plan), shard=shard
    )
    todo = []
    for batch in batches:
        if all(k in done for k in batch.keys):
            result.rows.update((k, done[k]) for k in batch.keys)
        else:
            todo.append(batch)
    started = time.perf_counter()
    with tqdm(total=sum(len(b.keys) for b in todo), desc=desc, unit=unit, disable=not progress, mininterval=1.0) as bar:
        for batch, rows in executor.run(make_worker, todo):
            _check_whole(batch, rows, key_column)
            rows = as_written(rows)
            if checkpoint:
                checkpoint.append(rows)
            result.rows.update(zip(batch.keys, rows))
            result.computed_keys.extend(batch.keys)
            bar.update(len(rows))
    result.seconds = time.perf_counter() - started
    return result


def as_written(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as a checkpoint gives them back (JSON values: numpy scalars as numbers, NaN as null), so a
    row computed now and one resumed from the checkpoint make the same output."""
    from judge.core.files import to_json_line

    return [json.loads(to_json_line(r)) for r in rows]


def _check_whole(batch: Batch, rows: list[dict[str, Any]], key_column: str) -> None:
    keys = tuple(str(r[key_column]) for r in rows)
    if keys != batch.keys:
        raise RuntimeError(
            f"batch {batch.number}: the worker returned rows for {len(keys)} keys, not the batch's {len(batch.keys)} "
            "in order"
        )
