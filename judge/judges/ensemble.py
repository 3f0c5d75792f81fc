"""The stacked ensemble (``judge.train --kind ensemble``): members' probabilities -> a stacker."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from judge.errors import UserError
from judge.judges.base import Item, Judge, Judgement
from judge.judge_dir import verify
from judge.judges.trained import read_temperature
from judge.taxonomy import UNSCORED, load_taxonomy


class EnsembleJudge(Judge):
    """Each member labels the batch; the stacker (logistic regression fitted on the members'
    out-of-fold probabilities) turns their probabilities into one. A member that cannot score an
    item makes the ensemble's label for it unscored, with the member's reason."""

    kind = "ensemble"

    def __init__(self, directory: str | Path, **member_options):
        from safetensors.numpy import load_file

        from judge.judges import load_judge
        from judge.judges.rules import RulesJudge

        directory = Path(directory)
        self.meta = verify(directory)
        super().__init__(load_taxonomy(directory / "taxonomy.yaml"))
        self.directory = directory
        self.members: dict[str, Judge] = {}
        for name in self.meta.get("members", []):
            if name == "rules":
                self.members[name] = RulesJudge(self.taxonomy)
            elif name in self.meta.get("member_dirs", {}):
                self.members[name] = load_judge(str(directory / self.meta["member_dirs"][name]), **member_options)
            else:
                raise UserError(f"{directory}/judge.json names member {name!r} without a directory; retrain the judge")
        if len(self.members) < 2:
            raise UserError(f"{directory}/judge.json lists fewer than two members; retrain the judge")
        weights = load_file(str(directory / "stacker.safetensors"))
        self.coef, self.intercept, self.classes = weights["coef"], weights["intercept"], weights["classes"].astype(int)
        n_features = len(self.members) * len(self.taxonomy.labels)
        if self.coef.shape[1] != n_features:
            raise UserError(f"{directory}/stacker.safetensors expects {self.coef.shape[1]} features, the members give {n_features}; retrain the judge")
        self.labels = [str(x) for x in self.meta["labels"]]
        stacker = self.meta.get("stacker") if isinstance(self.meta.get("stacker"), dict) else {}
        self.temperature = read_temperature(stacker, directory)  # 1.0 for ensembles trained before it was fitted

    def sort_key(self, item: Item) -> int:
        return next(iter(self.members.values())).sort_key(item)

    def _label_batch(self, batch: Sequence[Item]) -> list[Judgement]:
        from training.ensemble import stacker_probabilities

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
            rows.append(np.concatenate([[j[i].probabilities.get(c, 0.0) for c in self.labels] for j in per_member.values()]))
        probs = stacker_probabilities((self.coef, self.intercept, self.classes), np.array(rows), len(self.labels), temperature=self.temperature)
        return [o if o is not None else Judgement.from_probabilities({c: float(p) for c, p in zip(self.labels, row)})
                for o, row in zip(out, probs)]

    def describe(self) -> dict:
        return {**super().describe(), "directory": str(self.directory), "members": {n: j.describe() for n, j in self.members.items()},
                "member_weights": self.meta.get("member_weights"), "stacker_temperature": self.temperature}
