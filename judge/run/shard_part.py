"""A shard's output: what its manifest says so that ``judge.join`` needs no input.

A run with ``--shard I/N`` writes the rows of its share (in input order among themselves) and, in its
manifest (``OUT.manifest.json``), a ``part`` object: the share, the plan's fingerprint (sha256 over
the batches' keys), the run's identity (sha256 of its settings without shard and out, its inputs'
and model's fingerprints), how many rows the whole output has, and where each of the part's rows
goes in it. A part's manifest is read as untrusted data (size
bounded, schema strict, every position checked) before a row is placed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from judge.core.errors import UserError
from judge.core.records import checkpoint_path
from judge.core.schema import MIB, read_json, validate
from judge.run.runner import Shard, identity_fingerprint

PART_KEY = "part"
# A position is a few bytes of JSON; a billion rows would not fit a manifest anyway.
MAX_MANIFEST_BYTES = 2048 * MIB
# The commands whose outputs can be sharded, and what their manifests describe (copied to the join's).
SHARDED_COMMANDS = ("judge.label", "generation")
DESCRIPTIONS = ("judge", "engine", "engine_options", "model")
FIX = "rerun that share's command (the same with --shard I/N) to write it again"

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def part_fields(
    shard: Shard, *, plan: str, identity: dict[str, Any], positions: list[int], total: int
) -> dict[str, Any]:
    """The manifest's ``part`` object for a share; ``identity`` is the run's, without the shard."""
    return {
        "index": shard.index,
        "count": shard.count,
        "plan": plan,
        "run": identity_fingerprint(identity),
        "total": total,
        "positions": positions,
    }


class Part(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    index: int = Field(ge=1)
    count: int = Field(ge=1)
    plan: Sha256
    run: Sha256
    total: int = Field(ge=0)
    positions: list[int]

    @model_validator(mode="after")
    def _places(self):
        if self.index > self.count:
            raise ValueError(f"index {self.index} is more than count {self.count}")
        if len(self.positions) > self.total:
            raise ValueError(f"places {len(self.positions)} rows in a whole of {self.total}")
        if any(p < 0 or p >= self.total for p in self.positions):
            raise ValueError(f"holds a position outside 0..{self.total - 1}")
        if len(set(self.positions)) != len(self.positions):
            raise ValueError("holds a position twice")
        return self

    @property
    def shard(self) -> Shard:
        return Shard(self.index, self.count)


class PartManifest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    command: Literal["judge.label", "generation"]
    status: Literal["complete"]
    output_sha256: Sha256
    settings: dict
    identity: dict
    part: Part


def read_part(path: str | Path) -> tuple[PartManifest, dict[str, Any]]:
    """The validated manifest of the part at ``path`` (and the raw one, for what the join copies over)."""
    from judge.core.manifest import manifest_path

    path = Path(path)
    beside = manifest_path(path)
    if not path.exists() and not beside.is_file():
        raise UserError(f"part {path.name} not found; check the path")
    if not beside.is_file():
        raise UserError(f"part {path.name} has no {beside.name} beside it; join only outputs of runs with --shard I/N")
    raw = read_json(beside, max_bytes=MAX_MANIFEST_BYTES, where=f"part {path.name}", fix=FIX)
    if not isinstance(raw, dict):
        raise UserError(f"part {path.name}: {beside.name} is not a JSON object; {FIX}")
    if raw.get("command") in SHARDED_COMMANDS and (raw.get("status") != "complete" or not path.is_file()):
        partial = checkpoint_path(path)
        held = f" ({partial.name} holds its rows so far)" if partial.is_file() else ""
        raise UserError(f"part {path.name} is not finished{held}; rerun its command to finish it, then join")
    if isinstance(raw.get("command"), str) and raw["command"] in SHARDED_COMMANDS and PART_KEY not in raw:
        raise UserError(
            f"{path.name} was written without --shard (a whole output, not a part); join only the parts of a sharded "
            "run"
        )
    manifest = validate(PartManifest, raw, where=f"part {path.name}", name=beside.name, fix=FIX)
    return manifest, raw
