"""The majority-class judge: the training shares for every output (its spec: judge.kinds.majority)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from judge.core.taxonomy import Taxonomy, load_taxonomy
from judge.kinds.base import Item, Judge, Judgement
from judge.kinds.judge_dir import TAXONOMY, display_name, text_view_of, verify
from judge.kinds.majority import Options
from judge.kinds.majority.format import read_shares


def load(arg: str, options: Options, taxonomy: Taxonomy | None) -> "MajorityJudge":
    return MajorityJudge(arg)


class MajorityJudge(Judge):
    """Says the most frequent training label whatever the output (ties: the first in the taxonomy)."""

    kind = "majority"

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        meta = verify(directory)
        super().__init__(load_taxonomy(directory / TAXONOMY))
        self.directory, self.meta = directory, meta
        self.text_view = text_view_of(meta)
        self.shares = read_shares(meta, self.taxonomy.labels, where=f"judge directory {display_name(directory)}")

    def _label_batch(self, batch: Sequence[Item]) -> list[Judgement]:
        return [Judgement.from_probabilities(dict(self.shares)) for _ in batch]

    def describe(self) -> dict:
        return {**super().describe(), "directory": str(self.directory), "shares": self.shares}
