"""The frozen-encoder judge: mean-pooled encoder embeddings + a logistic-regression head (spec: judge.kinds.embed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from judge.core.errors import UserError
from judge.core.schema import RETRAIN
from judge.core.taxonomy import Taxonomy, load_taxonomy
from judge.kinds.base import Item, Judge, Judgement
from judge.kinds.embed import Options
from judge.kinds.judge_dir import display_name, text_view_of, verify


def load(arg: str, options: Options, taxonomy: Taxonomy | None) -> "EmbedJudge":
    return EmbedJudge(arg, device=options.device)


class EmbedJudge(Judge):
    kind = "embed"

    def __init__(self, directory: str | Path, *, device: str = "auto"):
        from judge.kinds.embed.format import Encoder, Head

        directory = Path(directory)
        meta = verify(directory)
        super().__init__(load_taxonomy(directory / "taxonomy.yaml"))
        self.directory, self.meta = directory, meta
        where = f"judge directory {display_name(directory)}"
        self.classes = list(meta["classes"])
        stray = [c for c in self.classes if c not in meta["labels"]]
        if stray:
            raise UserError(f"{where}: judge.json classes name {stray[0][:40]!r}, not a label of the judge; {RETRAIN}")
        self.head = Head(directory, n_classes=len(self.classes), where=where)
        # The encoder a judge directory names is resolved locally only, and must be the one its head was fitted on.
        self.encoder = Encoder(meta["base_model"], max_length=int(meta["max_length"]), device=device, allow_hub=False)
        if self.encoder.sha256() != meta["base_model_sha256"]:
            raise UserError(
                f"{where}: the encoder {str(meta['base_model'])[:60]} found here is not the one the judge was trained "
                f"on (its weights' sha256 differs); install that encoder or {RETRAIN}"
            )
        if self.head.width != self.encoder.width:
            raise UserError(f"{where}: {self.head.width}-wide head on a {self.encoder.width}-wide encoder; {RETRAIN}")
        self.mask_names = bool(meta.get("mask_names", True))
        self.text_view = text_view_of(meta)

    def _label_batch(self, batch: Sequence[Item]) -> list[Judgement]:
        prompts, responses = self.texts(batch)
        probs = self.head.predict_proba(self.encoder.embed(prompts, responses))
        return Judgement.from_rows(probs, self.classes, self.taxonomy.labels)

    def describe(self) -> dict:
        return {**super().describe(), "directory": str(self.directory), "encoder": self.meta["base_model"]}
