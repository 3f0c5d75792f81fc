"""The TF-IDF judge: word 1-2 grams + logistic regression, the classical baseline (its spec: judge.kinds.tfidf)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from judge.core.taxonomy import Taxonomy, load_taxonomy
from judge.kinds.base import Item, Judge, Judgement
from judge.kinds.judge_dir import display_name, text_view_of, verify
from judge.kinds.tfidf import Options


def load(arg: str, options: Options, taxonomy: Taxonomy | None) -> "TfidfJudge":
    return TfidfJudge(arg)


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
        return Judgement.from_rows(probs, self.classes, self.taxonomy.labels)

    def describe(self) -> dict:
        return {**super().describe(), "directory": str(self.directory)}
