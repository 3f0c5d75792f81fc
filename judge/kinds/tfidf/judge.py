"""The TF-IDF judge kind: word 1-2 grams + logistic regression, the classical baseline.

Its directory's format is ``judge.kinds.tfidf.format``; its training ``training/tfidf.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from judge.core.taxonomy import Taxonomy, load_taxonomy
from judge.kinds.base import Item, Judge, Judgement
from judge.kinds.judge_dir import directory_fingerprint, display_name, text_view_of, verify

TITLE = "the TF-IDF judge"
SPEC = "directory"
TRAINING = "training.tfidf"  # named, never imported here (the floors): judge.train reads it; training/ finds it by the kind's name
TRAINABLE = True
MEMBER = True


@dataclass
class Options:
    """It takes no option: its directory holds everything it does."""


def load(arg: str, options: Options, taxonomy: Taxonomy | None) -> "TfidfJudge":
    return TfidfJudge(arg)


def fingerprint(arg: str) -> dict[str, str]:
    return directory_fingerprint(Path(arg))


def masks_names(judge: "TfidfJudge") -> bool:
    return judge.mask_names


class TfidfJudge(Judge):
    """TF-IDF word 1-2 grams + logistic regression."""

    kind = "tfidf"

    def __init__(self, directory: str | Path):
        from judge.kinds.tfidf.format import TfidfModel, check_classes

        directory = Path(directory)
        meta = verify(directory)
        super().__init__(load_taxonomy(directory / "taxonomy.yaml"))
        self.directory, self.meta = directory, meta
        where = f"judge directory {display_name(directory)}"
        self.model = TfidfModel(directory, where=where)
        check_classes(self.model, meta["classes"], meta["labels"], where=where)
        self.classes = list(meta["classes"])
        self.mask_names = bool(meta.get("mask_names", True))
        self.text_view = text_view_of(meta)

    def _label_batch(self, batch: Sequence[Item]) -> list[Judgement]:
        from judge.kinds.tfidf.format import tfidf_text

        prompts, responses = self.texts(batch)
        probs = self.model.predict_proba(tfidf_text(prompts, responses))
        out = []
        for row in probs:
            p = {c: 0.0 for c in self.taxonomy.labels}
            p.update({c: float(v) for c, v in zip(self.classes, row)})
            out.append(Judgement.from_probabilities(p))
        return out

    def describe(self) -> dict:
        return {**super().describe(), "directory": str(self.directory)}

