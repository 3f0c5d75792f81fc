"""A keyword rule judge for refusals: the cheapest baseline row of any table."""

from __future__ import annotations

import sys
from typing import Sequence

from judge.core.taxonomy import Taxonomy, load_taxonomy
from judge.kinds.base import Item, Judge, Judgement
from judge.kinds.rules import Options
from judge.kinds.rules.keywords import FAILURE_PATTERNS, REFUSAL_PATTERNS, KeywordRules, english_only_warning


def load(arg: str, options: Options, taxonomy: Taxonomy | None) -> "RulesJudge":
    return RulesJudge(taxonomy or load_taxonomy("chehbouni2024"))


class RulesJudge(Judge):
    """Refusal if a refusal phrase appears early; failure if the blank is left; else the answer category.

    It can emit only three categories: the taxonomy's refusal, answer and (where the taxonomy has one)
    failure category (``emittable``, also in the manifest). Any other gold category (partial answer,
    harmful refusal ...) it can never predict; judge.agree says so beside its kappa. Its phrases are
    English: on texts mostly in another script it warns once on stderr (``english_only_warning``).
    """

    kind = "rules"

    def __init__(self, taxonomy: Taxonomy, *, window: int = 200):
        super().__init__(taxonomy)
        self.rules = KeywordRules(taxonomy, window=window)
        self.window = window

    @property
    def emittable(self) -> list[str]:
        return self.rules.emittable

    def label_run(self, records, **options):
        warning = english_only_warning(records["response"])
        if warning:
            print(warning, file=sys.stderr)
        return super().label_run(records, **options)

    def _label_batch(self, batch: Sequence[Item]) -> list[Judgement]:
        out = []
        for item in batch:
            label = self.rules.label(item.response)
            out.append(
                Judgement(
                    label=label, confidence=1.0, probabilities={c: float(c == label) for c in self.taxonomy.labels}
                )
            )
        return out

    def describe(self) -> dict:
        return {
            **super().describe(),
            "window": self.window,
            "patterns": REFUSAL_PATTERNS + FAILURE_PATTERNS,
            "emittable_categories": self.emittable,
        }
