"""A resumable run: what ``judge.label`` and ``python -m generation`` do around their batches, written once.

A command names its output, the identity of its rows and its share; this module owns the rest:

- the identity: the settings that decide the rows (all of them less ``RUN_ONLY``) with the inputs'
  and the model's fingerprints, and the share for ``--shard`` (a share resumes only as that share);
- the checkpoint ``OUT.partial.jsonl`` (``judge.core.records.checkpoint_path``), where the runner
  appends each finished batch whole;
- what a rerun does: the same identity resumes, or has nothing to do when the output is complete;
  another identity stops in one line unless ``--overwrite``, which starts again. A file at the
  checkpoint's path is resumed or removed only when the manifest beside ``out`` claims it (this
  command, ``running``, or complete with failed rows); any other file there is refused as in the way;
- rows that failed every retry (a server engine's): a run that completes with some keeps its
  checkpoint, and the same command asks again for those rows only before the whole pass;
- the manifest: written ``running`` when the work starts, ``complete`` with the counts at the end,
  and for a share the ``part`` that ``judge.join`` reads (``judge.run.shard_part``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from judge.core.errors import UserError
from judge.core.manifest import RunManifest, check_same_settings, read_manifest
from judge.core.records import JsonlCheckpoint, checkpoint_path
from judge.run.runner import RunResult, Shard
from judge.run.shard_part import part_fields

# Settings that never change a row: where the run writes and whether it may replace it, what it prints,
# where its batches run (Ray writes the bytes of one process) and which share it runs (added apart, so
# that the shares of one run have one identity). One rule for every resumable command, applied to the
# settings dict each builds (judge.label resolves --precision auto and leaves an engine's secrets out
# first), so the commands cannot drift apart: a field of a command's Config that is not named here is
# part of what a rerun must match.
RUN_ONLY = ("out", "overwrite", "progress", "verbose", "shard", "ray", "ray_actors", "ray_gpus", "allow_failed")
SHARD_KEY = "shard"  # the share, in the identity a share resumes as


def run_identity(settings: dict[str, Any], **fingerprints: Any) -> dict[str, Any]:
    """What makes a run's rows what they are: its settings less ``RUN_ONLY``, then its inputs' and model's
    fingerprints."""
    return {"settings": {k: v for k, v in settings.items() if k not in RUN_ONLY}, **fingerprints}


def sharded_identity(identity: dict[str, Any], shard: Shard | None) -> dict[str, Any]:
    """What a resumable share must match on a rerun: the run's identity and its share."""
    return {**identity, SHARD_KEY: str(shard)} if shard else identity


def unsharded(identity: dict[str, Any]) -> dict[str, Any]:
    """The identity of the run a share's identity belongs to (what judge.join records)."""
    return {k: v for k, v in identity.items() if k != SHARD_KEY}


def _failed_rows(manifest: dict[str, Any] | None) -> int:
    """How many rows a complete run's manifest says failed every retry (0 for any other manifest, or none)."""
    if not manifest or manifest.get("status") != "complete":
        return 0
    return (manifest.get("counts") or {}).get("failed", 0)


def failed_line(count: int, why: str) -> str:
    """The closing line of a run that completed with rows whose requests failed every retry."""
    return f"complete with {count} failed ({why}): rerun the same command to ask again for those only"


@dataclass
class ResumableRun:
    """One run of a resumable command on ``out``: ``prepare``, then ``start``, ``retry_failed`` and ``finish``."""

    command: str
    out: Path
    identity: dict[str, Any]  # the run's, without its share (the parts of one run share it)
    shard: Shard | None = None
    checkpoint: JsonlCheckpoint = field(init=False)
    manifest: RunManifest | None = field(init=False, default=None)
    retry: bool = field(init=False, default=False)  # the output is complete with failed rows: ask again for them first
    started: float = field(init=False, default=0.0)

    def __post_init__(self):
        self.out = Path(self.out)
        self.checkpoint = JsonlCheckpoint(checkpoint_path(self.out))

    @property
    def resume_identity(self) -> dict[str, Any]:
        return sharded_identity(self.identity, self.shard)

    def prepare(self, *, overwrite: bool, count: str, unit: str) -> dict[str, Any] | None:
        """The previous run's manifest when ``out`` is complete with this identity and no failed row to ask
        again for (said on stdout, with its ``counts[count]`` in ``unit``): nothing to do. Otherwise None,
        having kept the checkpoint to resume (the same identity) or cleared it (a new run, or --overwrite);
        stops with one line when ``out`` exists from another identity."""
        previous = self._complete_before(overwrite)
        self.retry = _failed_rows(previous) > 0 and self.checkpoint.path.exists()
        if previous and not self.retry:
            print(
                f"{self.out} is already complete with these settings ({previous['counts'].get(count)} {unit}); nothing "
                "to do"
            )
            return previous
        self.started = time.perf_counter()
        return None

    def _complete_before(self, overwrite: bool) -> dict[str, Any] | None:
        """The previous manifest when ``out`` is complete with this identity; else keep the checkpoint to resume
        (the same identity) or clear it (a new run, or --overwrite)."""
        same = check_same_settings(self.out, self.resume_identity, overwrite=overwrite)
        manifest = read_manifest(self.out) or {}  # read once: what was done, and whether the checkpoint is ours
        complete = same and manifest.get("status") == "complete" and self.out.exists()
        if not complete or _failed_rows(manifest):
            self._check_checkpoint_claimed(manifest)  # from here it is resumed, retried or removed
        if complete:
            return manifest
        if overwrite or not same:
            if self.out.exists() and not overwrite:
                raise UserError(f"{self.out} already exists; pass --overwrite to replace it or choose another --out")
            self.checkpoint.remove()
        return None

    def _check_checkpoint_claimed(self, manifest: dict[str, Any]) -> None:
        """Refuse when a file sits at the checkpoint's path that this output's manifest does not claim: a
        checkpoint is this command's own only while the manifest beside ``out`` names this command and says a
        run is in progress (``running``) or completed with failed rows it keeps for a retry. Anything else
        there (a user's file that happens to have the name) is never removed nor read as finished rows."""
        path = self.checkpoint.path
        if not (path.exists() or path.is_symlink()):
            return
        ours = manifest.get("command") == self.command and (
            manifest.get("status") == "running" or _failed_rows(manifest) > 0
        )
        if not ours or path.is_symlink() or not path.is_file():
            raise UserError(
                f"{path} is in the way: no run of {self.command} on {self.out.name} claims it (its manifest does not "
                f"say one is in progress); move that file away or choose another --out"
            )

    def start(self, settings: Any, *, inputs: Iterable[str | Path], **described: Any) -> RunManifest:
        """The manifest of the run, written ``running`` before any row: ``described`` says what computes the rows."""
        self.manifest = RunManifest(
            self.command, settings, inputs=list(inputs), identity=self.resume_identity, status="running", **described
        )
        self.manifest.write(self.out)
        return self.manifest

    def failed_keys(self, failed: Callable[[dict[str, Any]], bool], *, key: str = "id") -> set[str]:
        """The keys of the rows the checkpoint holds whose requests failed every retry (its latest copy of each)."""
        latest = {str(row[key]): row for row in self.checkpoint.rows()}  # a later copy of a row wins
        return {k for k, row in latest.items() if failed(row)}

    def retry_failed(
        self, failed: Callable[[dict[str, Any]], bool], compute: Callable[[set[str]], RunResult | None]
    ) -> RunResult | None:
        """When the previous run completed with failed rows: ``compute`` those again (by their keys) and append
        them to the checkpoint, where the later copy of a row wins, so the whole pass then reuses every batch and
        writes what one run without failures would. Each such row is its own request to an engine (seeded by
        its key), so computing it in another batch gives it the same values. None when there was no retry."""
        if not self.retry:
            return None
        result = compute(self.failed_keys(failed))
        if result is not None:
            self.checkpoint.append(result.rows[k] for k in result.computed_keys)
        return result

    def finish(
        self,
        result: RunResult,
        *,
        positions: list[int],
        total: int,
        write: Callable[[], Any],
        failed: int,
        throughput: dict[str, Any],
        counts: dict[str, Any],
        **described: Any,
    ) -> float:
        """Write the output (``write``), then the manifest ``complete``: the share's part, ``throughput`` with the
        whole process's seconds (returned), the executor, ``described`` updated, ``counts``. The checkpoint goes,
        unless ``failed`` rows remain: it then holds the rows a rerun keeps, while it asks again for those only."""
        if self.shard:
            self.manifest.update(
                part=part_fields(self.shard, plan=result.plan, identity=self.identity, positions=positions, total=total)
            )
        write()
        if not failed:
            self.checkpoint.remove()
        seconds = time.perf_counter() - self.started
        self.manifest.update(
            status="complete",
            throughput={**throughput, "whole_process_seconds": round(seconds, 3)},
            executor=result.executor,
            **described,
        )
        self.manifest.write(self.out, **counts)
        return seconds
