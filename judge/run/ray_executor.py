"""Ray as an executor of the runner: a pool of stateful actors runs the batches the driver planned.

Each actor builds one worker (a judge, a generation engine) once, with ``make_worker``, and computes
whole batches. The driver keeps the plan, the checkpoint and the order of nothing: the runner appends
each batch whole as it comes back, so the output is the same bytes whatever the number of actors and
the order they finish in.

Faults are retried here rather than by Ray's ``max_task_retries``, so that a batch goes to another
actor and every try is counted: an actor that dies (killed, out of memory) is restarted by Ray
(``max_restarts``) and probed before it gets work again; a batch whose worker raises is tried again
up to ``max_retries`` times; a batch that fails every try is named, with its ids, after every other
batch has been handed to the runner (which only ever writes whole batches).

Ray Data is not used: the driver already owns the plan, and plain actors avoid the dataset hang when
actors hold every CPU (ray-project/ray#44687) and the ``concurrency=`` / ``ActorPoolStrategy`` churn.
By default the actors share the cluster's CPUs less half a CPU, left for the driver and Ray itself.

Each actor runs torch with the driver's intra-op thread count: torch's sums over a matrix are split
by thread, so a model's scores (the LoRA judge's, a sampled token) differ in their last bits between
thread counts, and an actor on Ray's default of one thread would not write the bytes of the run
without Ray on the driver's machine.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from judge.core.errors import UserError, cut, short_list
from judge.run.runner import Batch, Worker

RESERVED_CPUS = 0.5  # left free by the default share, for the driver and Ray's own tasks
_ADDRESS = re.compile(r"(auto|ray://[\w.\-\[\]:]+|[\w.\-]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5})")


class BatchesFailed(UserError):
    """Batches that failed every try; every other batch was handed to the runner first."""

    def __init__(self, message: str, batches: Sequence[Batch]):
        super().__init__(message)
        self.batches = list(batches)


class _BatchActor:
    """Holds one worker for the actor's life; a restarted actor builds it again."""

    def __init__(self, make_worker: Callable[[], Worker], threads: int | None = None):
        if threads:
            _set_torch_threads(threads)
        # A worker that cannot be built is reported by ready(), whole: an error raised here would reach
        # the driver only inside Ray's many-line "creation task" message, and the actor restarted in vain.
        started, self.worker, self.error = time.perf_counter(), None, None
        try:
            self.worker = make_worker()
        except Exception as exc:  # noqa: BLE001 - every reason goes back to the driver
            self.error = exc if isinstance(exc, UserError) else f"{type(exc).__name__}: {_first_line(exc)}"
        self.build_seconds = time.perf_counter() - started

    def ready(self) -> dict[str, Any]:
        import ray

        return {
            "node": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "build_seconds": self.build_seconds,
            "error": self.error,
        }

    def compute(self, batch: Batch) -> tuple[list[dict[str, Any]], float]:
        started = time.perf_counter()
        rows = self.worker.compute(batch)
        return rows, time.perf_counter() - started


@dataclass
class _Slot:
    handle: Any
    index: int
    pending: int = 0
    probing: bool = False  # died once: gets no batch until a probe says Ray restarted it
    probe_since: float = 0.0
    dead: bool = False


@dataclass
class _Task:
    slot: _Slot
    batch: Batch | None  # None: a probe of a restarted actor
    submitted: float = field(default_factory=time.perf_counter)


@dataclass
class RayExecutor:
    """Run a plan's batches on ``actors`` Ray actors (an Executor for ``judge.run.runner.run_plan``).

    ``address``: None starts a local Ray (or joins RAY_ADDRESS; never a `ray start` cluster it was not
    pointed at), "auto" joins the local cluster,
    "HOST:PORT" or "ray://HOST:PORT" a remote one. A Ray already initialised in this process is used as
    it is and left running.
    """

    address: str | None = None
    actors: int = 1
    num_cpus: float | None = (
        None  # per actor; None: the cluster's CPUs less RESERVED_CPUS, shared out, at most its threads each
    )
    threads: int | None = None  # torch intra-op threads per actor; None: the driver's (where it has torch loaded)
    num_gpus: float = 0.0  # per actor
    max_retries: int = 3  # further tries of a batch after its first, on another actor where one is free
    max_restarts: int = 3  # per actor, by Ray, after it dies
    in_flight: int = 2  # batches queued on each actor, so none waits on the driver between batches
    start_timeout: float = 600.0  # seconds for every actor to build its worker
    progress: bool = True  # lines on stderr while it runs (batches done, outputs/s) and a closing one
    progress_every: float = 10.0  # seconds between the lines while it runs; 0: after every batch
    info: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self):
        if self.address is not None and not _ADDRESS.fullmatch(str(self.address)):
            raise UserError(
                f"Ray address {cut(self.address)!r} is not one Ray reads; use auto, HOST:PORT or ray://HOST:PORT (or "
                "none for a local Ray)"
            )
        _check_number("actors", self.actors, integer=True, low=1)
        _check_number("max retries", self.max_retries, integer=True, low=0)
        _check_number("max restarts", self.max_restarts, integer=True, low=0)
        _check_number("batches in flight per actor", self.in_flight, integer=True, low=1)
        if self.num_cpus is not None:
            _check_number("CPUs per actor", self.num_cpus, low=0, low_open=True)
        _check_number("GPUs per actor", self.num_gpus, low=0)
        _check_number("seconds between progress lines", self.progress_every, low=0)
        if self.threads is not None:
            _check_number("torch threads per actor", self.threads, integer=True, low=1)
        # The runner keeps describe()'s dict from before the run; filling this same dict as the run goes
        # lets its manifest hold the cluster and the timings without a change to the runner.
        self.info = {"executor": "ray", "address": self.address or "local", "actors": self.actors}

    def describe(self) -> dict[str, Any]:
        return self.info

    def run(
        self, make_worker: Callable[[], Worker], batches: Sequence[Batch]
    ) -> Iterator[tuple[Batch, list[dict[str, Any]]]]:
        if not batches:
            return
        ray = _import_ray()
        started_here = self._connect(ray)
        slots: list[_Slot] = []
        try:
            started = time.perf_counter()
            slots = self._create_actors(ray, make_worker)
            self._wait_ready(ray, slots)
            self.info["startup_seconds"] = round(time.perf_counter() - started, 3)
            yield from self._dispatch(ray, slots, batches)
        finally:
            for slot in slots:
                _kill(ray, slot.handle)
            if started_here:
                ray.shutdown()

    # -- the cluster ------------------------------------------------------------------------------
    def _connect(self, ray) -> bool:
        """Start or join Ray; True when this call started it (and so shuts it down after)."""
        if ray.is_initialized():
            return False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report from an audit machine
        try:
            ray.init(
                address=self.address or _local_or_env(),
                include_dashboard=False,
                logging_level=logging.ERROR,
                log_to_driver=False,
            )
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            where = f"the Ray cluster at {cut(self.address)}" if self.address else "a local Ray"
            raise UserError(
                f"could not start or reach {where} ({cut(_first_line(exc), 100)}); start one with `ray start --head` "
                "or drop the address to run a local one"
            ) from None
        return True

    def _per_actor_cpus(self, cluster_cpus: float) -> float:
        if self.num_cpus is not None:
            return float(self.num_cpus)
        share = min(float(self._threads() or 1), (cluster_cpus - RESERVED_CPUS) / self.actors)
        if share < 0.01:
            raise UserError(
                f"{self.actors} actors do not fit in the cluster's {cluster_cpus:g} CPUs; use fewer actors or a CPU "
                "share per actor"
            )
        return round(share, 4)

    def _threads(self) -> int | None:
        if self.threads is None and "torch" in sys.modules:
            self.threads = sys.modules["torch"].get_num_threads()
        return self.threads

    def _create_actors(self, ray, make_worker) -> list[_Slot]:
        resources = ray.cluster_resources()
        cluster_cpus, cluster_gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        cpus = self._per_actor_cpus(cluster_cpus)
        for what, each, total in (("CPUs", cpus, cluster_cpus), ("GPUs", self.num_gpus, cluster_gpus)):
            if each * self.actors > total + 1e-9:
                raise UserError(
                    f"{self.actors} actors x {each:g} {what} each need more than the cluster's {total:g} {what} "
                    "(they would wait forever); use fewer actors or a smaller share each"
                )
        actor_class = ray.remote(_BatchActor).options(
            num_cpus=cpus, num_gpus=self.num_gpus, max_restarts=self.max_restarts, max_task_retries=0
        )
        self.info.update(
            {
                "nodes": sum(1 for n in ray.nodes() if n.get("Alive")),
                "cpus": cluster_cpus,
                "gpus": cluster_gpus,
                "cpus_per_actor": cpus,
                "gpus_per_actor": self.num_gpus,
                "threads_per_actor": self._threads(),
            }
        )
        return [_Slot(actor_class.remote(make_worker, self._threads()), i) for i in range(self.actors)]

    def _wait_ready(self, ray, slots: list[_Slot]) -> None:
        refs = {slot.handle.ready.remote(): slot for slot in slots}
        done, waiting = ray.wait(list(refs), num_returns=len(refs), timeout=self.start_timeout)
        if waiting:
            raise UserError(
                f"{len(waiting)} of {len(slots)} Ray actors had not built their worker after {self.start_timeout:g} s "
                "(a node short of memory or GPUs?); check `ray status`, or use fewer actors"
            )
        try:
            ready = ray.get(done)
        except ray.exceptions.RayError as exc:
            raise UserError(
                f"a Ray actor died while building its worker ({cut(_reason(exc), 120)}); check `ray status` and rerun"
            ) from None
        error = next((r["error"] for r in ready if r["error"] is not None), None)
        if isinstance(error, UserError):
            raise error
        if error:
            raise UserError(f"a Ray actor could not build its worker ({cut(error, 160)}); fix that and rerun")
        self.info.update(
            {
                "nodes_used": len({r["node"] for r in ready}),
                "worker_build_seconds": _summary([r["build_seconds"] for r in ready]),
            }
        )

    # -- the batches ------------------------------------------------------------------------------
    def _dispatch(self, ray, slots: list[_Slot], batches: Sequence[Batch]):
        queue, tasks = deque(batches), {}
        tries: dict[int, int] = {}
        failed: list[tuple[Batch, str]] = []
        compute, round_trip = [], []
        started, rows_done = time.perf_counter(), 0
        said = started
        while queue or tasks:
            self._fill(slots, queue, tasks)
            if not tasks:  # every actor is dead for good: what is left cannot run
                failed.extend((b, "no Ray actor left alive") for b in queue)
                queue.clear()
                break
            [ref], _ = ray.wait(list(tasks), num_returns=1)
            task = tasks.pop(ref)
            task.slot.pending -= 1
            try:
                value = ray.get(ref)
            except ray.exceptions.RayError as exc:
                lost = isinstance(exc, ray.exceptions.RayActorError)  # "unavailable" (restarting) included
                if lost or task.batch is None:
                    self._actor_lost(task, exc, tasks)
                if task.batch is not None:
                    self._retry(task.batch, _reason(exc), tries, queue, failed)
                continue
            if task.batch is None:
                task.slot.probing = False
                continue
            rows, seconds = value
            compute.append(seconds)
            round_trip.append(time.perf_counter() - task.submitted)
            rows_done += len(rows)
            now = time.perf_counter()
            if self.progress and now - said >= self.progress_every:
                said = now
                _say(
                    f"ray: {len(compute)}/{len(batches)} batches done, {rows_done / (now - started):.1f} outputs/s"
                    + (f", {sum(tries.values())} retried" if tries else "")
                )
            yield task.batch, rows
        wall = time.perf_counter() - started
        self._record(compute, round_trip, wall, tries, failed, slots)
        if failed:
            raise _failure(failed, self.max_retries)
        if self.progress:
            _say(
                f"ray: {len(compute)} batches on {self.actors} actor(s), {self.info.get('nodes_used', '?')} node(s), "
                f"in {wall:.1f} s: "
                f"{len(compute) / wall:.2f} batches/s, {rows_done / wall:.1f} outputs/s"
            )

    def _fill(self, slots, queue, tasks) -> None:
        for slot in slots:
            while queue and not slot.dead and not slot.probing and slot.pending < self.in_flight:
                batch = queue.popleft()
                tasks[slot.handle.compute.remote(batch)] = _Task(slot, batch)
                slot.pending += 1

    def _actor_lost(self, task: _Task, exc: BaseException, tasks) -> None:
        """After a death Ray restarts the actor (or not): a probe finds out before it gets a batch again.
        A probe answered "unavailable" is sent again (the restart is under way); "died" means for good."""
        slot = task.slot
        if task.batch is not None:
            if not slot.probing and not slot.dead:
                slot.probing, slot.probe_since = True, time.perf_counter()
                self._probe(slot, tasks)
        elif _unavailable(exc) and time.perf_counter() - slot.probe_since < self.start_timeout:
            self._probe(slot, tasks)
        else:
            slot.dead, slot.probing = True, False

    @staticmethod
    def _probe(slot: _Slot, tasks) -> None:
        tasks[slot.handle.ready.remote()] = _Task(slot, None)
        slot.pending += 1

    def _retry(self, batch: Batch, reason: str, tries: dict[int, int], queue: deque, failed: list) -> None:
        tries[batch.number] = tries.get(batch.number, 0) + 1
        if tries[batch.number] > self.max_retries:
            failed.append((batch, reason))
        else:
            queue.appendleft(batch)  # first in line, for whichever actor is free next

    def _record(self, compute, round_trip, wall, tries, failed, slots) -> None:
        self.info.update(
            {
                "batches": len(compute),
                "seconds": round(wall, 3),
                "batches_per_second": round(len(compute) / wall, 3) if wall > 0 else None,
                "compute_seconds": _summary(compute),
                "round_trip_seconds": _summary(round_trip),
                "retries": sum(tries.values()),
                "failed_batches": [b.number for b, _ in failed],
                "actors_lost": sum(1 for s in slots if s.dead),
            }
        )


def _failure(failed: list[tuple[Batch, str]], max_retries: int) -> BatchesFailed:
    batches = [b for b, _ in failed]
    ids = [k for b in batches for k in b.keys]
    return BatchesFailed(
        f"{len(batches)} batch(es) failed all {max_retries + 1} tries ({cut(failed[0][1], 80)}); ids "
        f"{short_list(ids, limit=4, width=24)}; "
        "every other batch is written: fix the cause and rerun to finish these",
        batches,
    )


def _set_torch_threads(threads: int) -> None:
    try:
        import torch
    except ImportError:  # a worker without torch (TF-IDF, rules) has no threads to set
        return
    torch.set_num_threads(threads)


def _local_or_env() -> str | None:
    """No address: RAY_ADDRESS where set (a job submitted to a cluster), else a Ray of this run's own.
    Ray's own default would join whichever `ray start` cluster this machine ran last, silently."""
    return None if os.environ.get("RAY_ADDRESS") else "local"


def _say(line: str) -> None:
    """A line on stderr that leaves the runner's progress bar whole (tqdm redraws it below)."""
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)


def _unavailable(exc: BaseException) -> bool:
    import ray

    return isinstance(exc, ray.exceptions.ActorUnavailableError)


def _kill(ray, handle) -> None:
    try:
        ray.kill(handle, no_restart=True)
    except Exception:  # noqa: BLE001 - already gone, or Ray itself is: nothing left to stop
        pass


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(
            "Ray is not installed; pip install 'safeguard-audit[cluster]' to run on a Ray cluster"
        ) from None
    return ray


def _reason(exc: BaseException) -> str:
    """The worker's own error for a task that raised; the first line of Ray's for the rest."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {_first_line(cause)}"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)
    return {
        "n": len(values),
        "total": round(sum(values), 4),
        "mean": round(sum(values) / len(values), 4),
        "median": round(ordered[len(ordered) // 2], 4),
        "max": round(ordered[-1], 4),
    }


def _check_number(what: str, value: Any, *, low: float, integer: bool = False, low_open: bool = False) -> None:
    kind = int if integer else (int, float)
    ok = isinstance(value, kind) and not isinstance(value, bool) and (value > low if low_open else value >= low)
    if not ok or (not integer and value != value):
        bound = f"more than {low:g}" if low_open else f"at least {low:g}"
        raise UserError(
            f"{what} must be {'a whole number ' if integer else 'a number '}{bound}, not {cut(repr(value))}"
        )


# -- the --ray flags that judge.label and python -m generation share --------------------------------

LOCAL = "local"  # `--ray` with no address: a Ray started here for this run


# The field metadata of a command's ray, ray_actors and ray_gpus settings: their flags (judge.core.config)
RAY_FLAGS = {
    "ray": {
        "nargs": "?",
        "const": LOCAL,
        "metavar": "ADDRESS",
        "help": "run the batches on Ray actors: no ADDRESS starts a local Ray for this run; auto joins the local "
        "cluster "
        "(ray start --head); HOST:PORT or ray://HOST:PORT a remote one. The output is the same bytes as without Ray",
    },
    "ray_actors": {"metavar": "N", "help": "with --ray: actors, each holding one judge or engine (default: 1)"},
    "ray_gpus": {
        "metavar": "G",
        "help": "with --ray: GPUs each actor holds (default: 0). 1 gives each actor a GPU of its own (Ray shows "
        "it only that one); an actor asking for none sees every GPU of its node",
    },
}


@dataclass(kw_only=True)
class RaySettings:
    """The three settings as a field group; a command's Config declares them with RAY_FLAGS' metadata."""

    ray: str | None = field(default=None, metadata=RAY_FLAGS["ray"])  # an address, or "local"
    ray_actors: int | None = field(default=None, metadata=RAY_FLAGS["ray_actors"])
    ray_gpus: float | None = field(default=None, metadata=RAY_FLAGS["ray_gpus"])  # per actor


def add_ray_arguments(parser) -> None:
    """--ray, --ray-actors and --ray-gpus, for a parser not generated from a Config."""
    from judge.core.config import add_fields

    add_fields(parser, RaySettings)


def check_ray_settings(config) -> None:
    """--ray-actors or --ray-gpus without --ray would be ignored: refuse them; the settings are checked here, once."""
    if config.ray is None:
        given = [
            flag
            for flag, value in (("--ray-actors", config.ray_actors), ("--ray-gpus", config.ray_gpus))
            if value is not None
        ]
        if given:
            raise UserError(
                f"{' and '.join(given)} appl{'y' if len(given) > 1 else 'ies'} with --ray only; add --ray [ADDRESS] or "
                f"drop {' and '.join(given)}"
            )
        return
    if getattr(config, "engine", None) == "vllm":
        # vLLM batches the whole run itself and starts its own workers (and, for --tensor-parallel-size > 1 on
        # GPUs, its own Ray placement): inside the toolkit's Ray actors each actor would load the model again
        # and ask for GPUs the actor does not hold. Untested, so refused.
        raise UserError(
            "--engine vllm does not run inside Ray actors (--ray): vLLM batches the whole run in one process and "
            "spreads a model over GPUs with --tensor-parallel-size; drop --ray, or serve the model and use "
            "--engine openai"
        )
    executor_for(config)


def executor_for(config, *, progress: bool = True):
    """The executor a command's --ray settings ask for; None runs in this process."""
    if config.ray is None:
        return None
    return RayExecutor(
        address=None if config.ray == LOCAL else config.ray,
        actors=1 if config.ray_actors is None else config.ray_actors,
        num_gpus=0.0 if config.ray_gpus is None else config.ray_gpus,
        progress=progress,
    )
