"""The majority-class judge on disk: judge.json alone, holding each label's share of the training labels."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from judge.core.errors import UserError
from judge.core.schema import RETRAIN

Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class Settings(BaseModel):
    """judge.json of a majority-class judge."""

    model_config = ConfigDict(strict=True, extra="ignore")
    kind: Literal["majority"]
    shares: Annotated[dict[str, Share], Field(min_length=1)]
    mask_names: bool = True

    @model_validator(mode="after")
    def _one_in_all(self):
        if not math.isclose(sum(self.shares.values()), 1.0, abs_tol=1e-9):
            raise ValueError(f"shares must add up to 1, got {sum(self.shares.values())!r}")
        return self


def write_settings(directory: str | Path, *, shares: dict[str, float], mask_names: bool) -> Path:
    from judge.kinds.judge_dir import write_settings as write_judge_json

    return write_judge_json(directory, {"kind": "majority", "shares": dict(shares), "mask_names": mask_names})


def read_shares(meta: dict, labels: list[str], *, where: str) -> dict[str, float]:
    """Every label's share, in taxonomy order (a label training never saw: 0); a share of another label is refused."""
    shares = meta["shares"]
    stray = [label for label in shares if label not in labels]
    if stray:
        raise UserError(f"{where}: judge.json shares name {stray[0][:40]!r}, not a label of the judge; {RETRAIN}")
    return {label: float(shares.get(label, 0.0)) for label in labels}
