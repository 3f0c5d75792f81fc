"""The stacked ensemble (``judge.train --kind ensemble``): members' probabilities -> a stacker."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from judge.core.errors import UserError
from judge.core.taxonomy import UNSCORED, Taxonomy, load_taxonomy
from judge.kinds.base import Item, Judge, Judgement
from judge.kinds.ensemble import Options
from judge.kinds.ensemble.format import member_directories, read_stacker
from judge.kinds.judge_dir import display_name, text_view_of, verify


def load(arg: str, options: Options, taxonomy: Taxonomy | None) -> "EnsembleJudge":
    return EnsembleJudge(arg, **vars(options))


class EnsembleJudge(Judge):
    """Each member labels the batch; the stacker (logistic regression fitted on the members'
    out-of-fold probabilities) turns their probabilities into one. A member that cannot score an
    item makes the ensemble's label for it unscored, with the member's reason."""

    kind = "ensemble"

    def __init__(self, directory: str | Path, **member_options):
        from judge.kinds import load_kind

        directory = Path(directory)
        self.meta = verify(directory)
        self.text_view = text_view_of(self.meta)  # its members read records alike: training gave them the same view
        where = f"judge directory {display_name(directory)}"
        super().__init__(load_taxonomy(directory / "taxonomy.yaml"))
        self.directory = directory
        self.labels = list(self.meta["labels"])
        # Checked to lie inside this directory and to hold judges of the members' kinds: loading cannot leave it
        # or recurse.
        folders = member_directories(directory, self.meta, where=where)
        self.members: dict[str, Judge] = {}
        for name in self.meta["members"]:
            self.members[name] = load_kind(name, str(folders.get(name, "")), member_options, self.taxonomy)
            if sorted(self.members[name].taxonomy.labels) != sorted(self.labels):
                raise UserError(
                    f"{where}: member {name} was trained on other labels than the ensemble; retrain the judge"
                )
        self.coef, self.intercept, self.classes = read_stacker(
            directory, n_members=len(self.members), n_labels=len(self.labels), where=where
        )
        self.temperature = self.meta.get("stacker", {}).get(
            "temperature", 1.0
        )  # 1.0 for ensembles trained before it was fitted

    def sort_key(self, item: Item) -> int:
        return next(iter(self.members.values())).sort_key(item)

    def _label_batch(self, batch: Sequence[Item]) -> list[Judgement]:
        from judge.kinds.ensemble.format import stacker_probabilities

        per_member = {name: judge._label_batch(batch) for name, judge in self.members.items()}
        out: list[Judgement | None] = [None] * len(batch)
        rows = []
        for i in range(len(batch)):
            failed = [(n, j[i]) for n, j in per_member.items() if j[i].label == UNSCORED or not j[i].probabilities]
            if failed:
                name, j = failed[0]
                out[i] = Judgement.unscored(f"member {name}: {j.reason or 'no probabilities'}", raw=j.raw)
                rows.append(np.zeros(self.coef.shape[1]))
                continue
            rows.append(
                np.concatenate([[j[i].probabilities.get(c, 0.0) for c in self.labels] for j in per_member.values()])
            )
        probs = stacker_probabilities(
            (self.coef, self.intercept, self.classes), np.array(rows), len(self.labels), temperature=self.temperature
        )
        return [
            o if o is not None else Judgement.from_probabilities({c: float(p) for c, p in zip(self.labels, row)})
            for o, row in zip(out, probs)
        ]

    def describe(self) -> dict:
        return {
            **super().describe(),
            "directory": str(self.directory),
            "members": {n: j.describe() for n, j in self.members.items()},
            "member_weights": self.meta.get("member_weights"),
            "stacker_temperature": self.temperature,
        }
