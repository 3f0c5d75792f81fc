"""Ray as an executor of the runner, on a real local Ray cluster (2 CPUs): the session's one (tests/conftest.py).

The workers are real judges (TF-IDF trained here) built in each actor by the library's own picklable
factory, ``judge.kinds.base.JudgeWorker``, the one ``judge.label --ray`` hands the executor. The
commands themselves, and the 2,304 released records, are in test_ray_commands.py.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from judge.core.errors import UserError
from judge.core.records import JsonlCheckpoint, checkpoint_path, write_records
from judge.kinds.base import JudgeWorker, RowOptions
from judge.run.runner import fixed_plan, run_plan

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'safeguard-audit[cluster]')")

from judge.run.ray_executor import BatchesFailed, RayExecutor  # noqa: E402

PREFIX = "judge_"


def LoadJudge(spec: str) -> JudgeWorker:
    return JudgeWorker(spec, row_options=RowOptions(prefix=PREFIX))


@dataclass
class FaultyWorker:
    inner: object
    die_on: int | None
    raise_on: int | None
    raise_once: bool
    marker: str

    def compute(self, batch):
        if batch.number == self.die_on and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)  # the actor's process dies mid-batch, as under the OOM killer
        if batch.number == self.raise_on and not (self.raise_once and os.path.exists(self.marker)):
            Path(self.marker).touch()
            raise ValueError(f"broken batch {batch.number}")
        return self.inner.compute(batch)


@dataclass(frozen=True)
class LoadFaulty:
    spec: str
    marker: str
    die_on: int | None = None
    raise_on: int | None = None
    raise_once: bool = False  # the batch raises on its first try only (a flaky node, a transient error)

    def __call__(self):
        return FaultyWorker(LoadJudge(self.spec)(), self.die_on, self.raise_on, self.raise_once, self.marker)


@dataclass
class KillsAnActor(RayExecutor):
    """Kills the first actor with ``ray.kill`` once ``after`` batches are back, while it holds batches in flight."""

    after: int = 2
    restart: bool = True
    killed_with_pending: int | None = None

    def _dispatch(self, ray, slots, batches):
        for done, item in enumerate(super()._dispatch(ray, slots, batches), start=1):
            if done == self.after:
                self.killed_with_pending = slots[0].pending
                ray.kill(slots[0].handle, no_restart=not self.restart)
            yield item


@dataclass(frozen=True)
class CannotBuild:
    user_error: bool = True

    def __call__(self):
        if self.user_error:
            raise UserError("judge directory judge-x is missing judge.json; pass a directory judge.train wrote")
        raise MemoryError("cannot allocate 12 GiB\nsecond line of detail")


# ``ray_cluster`` (one local Ray for the session) and ``tfidf_spec`` are in tests/conftest.py.


def plan_for(records: pd.DataFrame, batch_size: int = 32):
    from judge.kinds.base import Item

    items = [Item(str(i), str(p), str(r), n if isinstance(n, str) else None)
             for i, p, r, n in zip(records["id"], records["prompt"], records["response"], records["name"])]
    return fixed_plan(items, key=lambda item: item.id, size=lambda item: len(item.prompt) + len(item.response), batch_size=batch_size)


def file_bytes(rows: dict, order, path: Path) -> bytes:
    write_records(pd.DataFrame([rows[k] for k in order]), path)
    return path.read_bytes()


def driver_threads() -> int | None:
    import sys

    return sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None


def cpu_share(actors: int, threads: int | None = None) -> float:
    """2 CPUs less the half left for the driver, shared out, at most the actor's threads each: with 2
    threads, 1.5 for one actor and 0.75 for two. ``threads``: the command's --threads where a command runs
    (judge.label sets torch's threads to it, default 1); else the driver's own."""
    return min(float(threads or driver_threads() or 1), (2 - 0.5) / actors)


def checkpoint_keys(checkpoint: JsonlCheckpoint) -> list[str]:
    return [str(r["id"]) for r in checkpoint.rows()]


# -- same bytes, whatever the number of actors ----------------------------------------------------

def test_one_and_two_actors_write_the_bytes_of_one_process(ray_cluster, tfidf_spec, sample_records, tmp_path, capsys):
    plan = plan_for(sample_records)
    order = [str(i) for i in sample_records["id"]]
    alone = run_plan(plan, LoadJudge(tfidf_spec), key_column="id", progress=False)
    expected = file_bytes(alone.rows, order, tmp_path / "alone.jsonl")
    for actors in (1, 2):
        executor = RayExecutor(actors=actors)
        checkpoint = JsonlCheckpoint(checkpoint_path(tmp_path / f"ray{actors}"))
        result = run_plan(plan, LoadJudge(tfidf_spec), key_column="id", checkpoint=checkpoint, executor=executor, progress=False)
        assert result.rows == alone.rows and result.computed == len(order)
        assert file_bytes(result.rows, order, tmp_path / f"ray{actors}.jsonl") == expected
        assert sorted(checkpoint_keys(checkpoint)) == sorted(order)  # each key written once
        info = result.executor
        assert info["executor"] == "ray" and info["actors"] == actors and info["nodes"] == 1 and info["cpus"] == 2.0
        assert info["cpus_per_actor"] == cpu_share(actors) and info["threads_per_actor"] == driver_threads()
        assert info["batches"] == len(plan) == info["compute_seconds"]["n"] and info["retries"] == 0
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith(f"ray: {len(plan)} batches on {actors} actor(s), 1 node(s), in ") and "batches/s" in line and "outputs/s" in line


@dataclass
class ThreadsWorker:
    def compute(self, batch):
        import torch

        return [{"id": k, "threads": torch.get_num_threads()} for k in batch.keys]


def test_actors_run_torch_with_the_driver_s_threads(ray_cluster, sample_records, monkeypatch):
    # torch's sums are split by thread, so a LoRA judge's scores differ in their last bits between thread
    # counts (benchmarks/cluster.py: the default judge, 1 vs 2 threads); Ray's default in an actor is 1.
    import torch

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # the driver's count, whatever this machine's cores
    plan = plan_for(sample_records.head(64))
    result = run_plan(plan, ThreadsWorker, key_column="id", executor=RayExecutor(actors=2, progress=False), progress=False)
    assert {r["threads"] for r in result.rows.values()} == {2} and result.executor["threads_per_actor"] == 2
    result = run_plan(plan, ThreadsWorker, key_column="id", executor=RayExecutor(actors=1, threads=1, progress=False), progress=False)
    assert {r["threads"] for r in result.rows.values()} == {1} and result.executor["cpus_per_actor"] == 1.0


# -- faults ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("max_restarts", [3, 0], ids=["restarted", "dead-for-good"])
def test_an_actor_killed_mid_run_loses_and_duplicates_nothing(ray_cluster, tfidf_spec, sample_records, tmp_path, max_restarts):
    plan = plan_for(sample_records)
    order = [str(i) for i in sample_records["id"]]
    marker = tmp_path / "died"
    checkpoint = JsonlCheckpoint(checkpoint_path(tmp_path / "out"))
    executor = RayExecutor(actors=2, max_restarts=max_restarts, progress=False)
    result = run_plan(plan, LoadFaulty(tfidf_spec, str(marker), die_on=3), key_column="id", checkpoint=checkpoint, executor=executor, progress=False)
    assert marker.exists()  # an actor did die in batch 3
    assert sorted(checkpoint_keys(checkpoint)) == sorted(order)  # every key exactly once
    alone = run_plan(plan, LoadJudge(tfidf_spec), key_column="id", progress=False)
    assert file_bytes(result.rows, order, tmp_path / "ray.jsonl") == file_bytes(alone.rows, order, tmp_path / "alone.jsonl")
    # The batches in flight on the dying actor (one or two) were tried again; without restarts it is gone for good.
    assert 1 <= result.executor["retries"] <= executor.in_flight and result.executor["failed_batches"] == []
    assert result.executor["actors_lost"] == (1 if max_restarts == 0 else 0)


@pytest.mark.parametrize("restart", [True, False], ids=["restarted", "no-restart"])
def test_an_actor_ray_killed_mid_run_loses_and_duplicates_nothing(ray_cluster, tfidf_spec, sample_records, tmp_path, restart):
    plan = plan_for(sample_records, batch_size=16)
    order = [str(i) for i in sample_records["id"]]
    checkpoint = JsonlCheckpoint(checkpoint_path(tmp_path / "out"))
    executor = KillsAnActor(actors=2, restart=restart, progress=False)
    result = run_plan(plan, LoadJudge(tfidf_spec), key_column="id", checkpoint=checkpoint, executor=executor, progress=False)
    assert executor.killed_with_pending >= 1  # the kill did catch batches in flight
    written = checkpoint_keys(checkpoint)
    assert len(written) == len(set(written)) and sorted(written) == sorted(order)  # none lost, none twice
    alone = run_plan(plan, LoadJudge(tfidf_spec), key_column="id", progress=False)
    assert file_bytes(result.rows, order, tmp_path / "ray.jsonl") == file_bytes(alone.rows, order, tmp_path / "alone.jsonl")
    info = result.executor
    # Every batch queued on the killed actor (at most in_flight of them) is tried once more, on either actor.
    assert 1 <= info["retries"] <= executor.in_flight and info["failed_batches"] == [] and info["batches"] == len(plan)
    assert info["actors_lost"] == (0 if restart else 1)


def test_a_task_that_raises_is_retried(ray_cluster, tfidf_spec, sample_records, tmp_path):
    plan = plan_for(sample_records)
    order = [str(i) for i in sample_records["id"]]
    marker = tmp_path / "raised"
    checkpoint = JsonlCheckpoint(checkpoint_path(tmp_path / "out"))
    executor = RayExecutor(actors=2, progress=False)
    result = run_plan(plan, LoadFaulty(tfidf_spec, str(marker), raise_on=4, raise_once=True), key_column="id",
                      checkpoint=checkpoint, executor=executor, progress=False)
    assert marker.exists()  # batch 4 did raise once
    assert result.executor["retries"] == 1 and result.executor["failed_batches"] == [] and result.executor["actors_lost"] == 0
    assert sorted(checkpoint_keys(checkpoint)) == sorted(order)
    alone = run_plan(plan, LoadJudge(tfidf_spec), key_column="id", progress=False)
    assert file_bytes(result.rows, order, tmp_path / "ray.jsonl") == file_bytes(alone.rows, order, tmp_path / "alone.jsonl")


def test_progress_lines_while_it_runs(ray_cluster, tfidf_spec, sample_records, capsys):
    plan = plan_for(sample_records)  # 300 rows in 10 batches of 32 (the last one 12)
    run_plan(plan, LoadJudge(tfidf_spec), key_column="id", executor=RayExecutor(actors=2, progress_every=0), progress=False)
    lines = capsys.readouterr().err.strip().splitlines()
    during = [m for m in map(re.compile(r"ray: (\d+)/(\d+) batches done, ([\d.]+) outputs/s$").fullmatch, lines) if m]
    assert [int(m.group(1)) for m in during] == list(range(1, len(plan) + 1))  # one line per batch back, counting up
    assert {int(m.group(2)) for m in during} == {len(plan)} and all(float(m.group(3)) > 0 for m in during)
    assert lines[-1].startswith(f"ray: {len(plan)} batches on 2 actor(s)")


def test_a_batch_failing_every_try_is_named_after_the_rest_is_written(ray_cluster, tfidf_spec, sample_records, tmp_path):
    plan = plan_for(sample_records)
    broken = plan[5]
    checkpoint = JsonlCheckpoint(checkpoint_path(tmp_path / "out"))
    executor = RayExecutor(actors=2, max_retries=1, progress=False)
    with pytest.raises(BatchesFailed) as caught:
        run_plan(plan, LoadFaulty(tfidf_spec, str(tmp_path / "unused"), raise_on=broken.number), key_column="id",
                 checkpoint=checkpoint, executor=executor, progress=False)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 300, message
    for fragment in ("1 batch(es) failed all 2 tries", "ValueError: broken batch 5", broken.keys[0], f"({len(broken.keys)} in all)", "rerun"):
        assert fragment in message, message
    assert caught.value.batches == [broken]
    written = checkpoint_keys(checkpoint)
    assert sorted(written) == sorted(k for b in plan if b is not broken for k in b.keys)  # all the others, once, and none of its rows
    assert executor.describe()["failed_batches"] == [5] and executor.describe()["retries"] == 2
    # The rerun with the cause fixed computes the one batch left, and ends with every row of one process.
    result = run_plan(plan, LoadJudge(tfidf_spec), key_column="id", checkpoint=checkpoint, executor=RayExecutor(actors=1, progress=False), progress=False)
    assert result.computed == len(broken.keys)
    assert result.rows == run_plan(plan, LoadJudge(tfidf_spec), key_column="id", progress=False).rows


# -- refused settings: one line saying what to change, and nothing written --------------------------

CASES = [
    ({"address": "http://head:8265"}, ["not one Ray reads", "auto, HOST:PORT or ray://HOST:PORT"]),
    ({"address": "head; rm -rf /"}, ["not one Ray reads"]),
    ({"actors": 0}, ["actors must be a whole number at least 1", "not 0"]),
    ({"actors": 1.5}, ["actors must be a whole number"]),
    ({"num_cpus": 0}, ["CPUs per actor must be a number more than 0"]),
    ({"num_cpus": math.nan}, ["CPUs per actor must be a number"]),
    ({"num_gpus": -1}, ["GPUs per actor must be a number at least 0"]),
    ({"max_retries": -1}, ["max retries must be a whole number at least 0"]),
    ({"in_flight": 0}, ["batches in flight per actor must be"]),
    ({"progress_every": -1}, ["seconds between progress lines must be a number at least 0"]),
    ({"threads": 0}, ["torch threads per actor must be a whole number at least 1"]),
]


@pytest.mark.parametrize("settings, fragments", CASES, ids=[str(c[0]) for c in CASES])
def test_refused_settings(settings, fragments):
    with pytest.raises(UserError) as caught:
        RayExecutor(**settings)
    assert_one_line(str(caught.value), fragments)


CLUSTER_CASES = [
    ({"actors": 3, "num_cpus": 1}, None, ["3 actors x 1 CPUs each need more than the cluster's 2 CPUs", "would wait forever", "fewer actors"]),
    ({"actors": 1, "num_gpus": 1}, None, ["the cluster's 0 GPUs"]),
    # The default share: (2 CPUs - 0.5 left free) / 200 actors = 0.0075 CPU each, under the 0.01 floor.
    ({"actors": 200}, None, ["200 actors do not fit in the cluster's 2 CPUs", "fewer actors"]),
    ({"actors": 1}, CannotBuild(user_error=False), ["could not build its worker (MemoryError: cannot allocate 12 GiB)", "fix that and rerun"]),
    ({"actors": 1}, CannotBuild(), ["judge directory judge-x is missing judge.json; pass a directory judge.train wrote"]),
]


@pytest.mark.parametrize("settings, make_worker, fragments", CLUSTER_CASES, ids=[str(c[0]) + (f"-{c[1]}" if c[1] else "") for c in CLUSTER_CASES])
def test_refused_on_the_cluster(ray_cluster, tfidf_spec, sample_records, tmp_path, settings, make_worker, fragments):
    checkpoint = JsonlCheckpoint(checkpoint_path(tmp_path / "out"))
    with pytest.raises(UserError) as caught:
        run_plan(plan_for(sample_records), make_worker or LoadJudge(tfidf_spec), key_column="id", checkpoint=checkpoint,
                 executor=RayExecutor(progress=False, **settings), progress=False)
    assert_one_line(str(caught.value), fragments)
    assert not checkpoint.path.exists()


def assert_one_line(message: str, fragments) -> None:
    assert "\n" not in message and len(message) < 300, message
    for fragment in fragments:
        assert fragment in message, message
