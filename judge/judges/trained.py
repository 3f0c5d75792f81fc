"""Judges trained by ``python -m judge.train``: the LoRA classifier and the TF-IDF baseline."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from judge.errors import UserError
from judge.judges.base import Item, Judge, Judgement
from judge.judges.text import judge_inputs
from judge.taxonomy import Taxonomy, load_taxonomy


def read_judge_json(directory: Path) -> dict:
    meta = directory / "judge.json"
    if not meta.exists():
        raise UserError(f"{directory} is not a judge directory (no judge.json); train one with python -m judge.train")
    return json.loads(meta.read_text())


class LoraJudge(Judge):
    """A peft LoRA sequence classifier with temperature-scaled probabilities.

    On CPU, inference merges the adapter into the base and quantizes the Linear layers to int8
    (``quantize=True``, the default there): about twice the speed of the fp32 path.
    """

    kind = "lora"

    def __init__(self, directory: str | Path, *, device: str = "auto", quantize: bool | None = None, max_length: int | None = None):
        from peft import PeftModel

        from training.lora import load_base, pick_device

        directory = Path(directory)
        meta = read_judge_json(directory)
        super().__init__(load_taxonomy(directory / "taxonomy.yaml"))
        self.directory, self.meta = directory, meta
        self.device, dtype = pick_device(device)
        self.temperature = float(meta.get("temperature", 1.0))
        self.max_length = max_length or int(meta["max_length"])
        self.mask_names = bool(meta.get("mask_names", True))
        self.tokenizer, base = load_base(meta["base_model"], meta["labels"], dtype=dtype)
        model = PeftModel.from_pretrained(base, directory).merge_and_unload()
        self.quantize = (self.device.type == "cpu") if quantize is None else quantize
        if self.quantize:
            if self.device.type != "cpu":
                raise UserError("int8 quantized inference runs on CPU only; drop --quantize or use --device cpu")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao deprecation notices; the kernels are what we want
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self.model = model.to(self.device).eval()

    def sort_key(self, item: Item) -> int:
        return len(item.prompt) + len(item.response)

    @torch.inference_mode()
    def logits(self, batch: Sequence[Item]) -> np.ndarray:
        prompts, responses = judge_inputs([b.prompt for b in batch], [b.response for b in batch], [b.name for b in batch], mask_names=self.mask_names)
        inputs = self.tokenizer(prompts, responses, truncation="only_second" if self.max_length > 64 else True,
                                max_length=self.max_length, padding=True, return_tensors="pt").to(self.device)
        return self.model(**inputs).logits.float().cpu().numpy()

    def _label_batch(self, batch: Sequence[Item]) -> list[Judgement]:
        probs = torch.softmax(torch.tensor(self.logits(batch), dtype=torch.float64) / self.temperature, dim=-1).numpy()
        labels = self.taxonomy.labels
        return [Judgement.from_probabilities({c: float(p) for c, p in zip(labels, row)}) for row in probs]

    def describe(self) -> dict:
        return {**super().describe(), "directory": str(self.directory), "base_model": self.meta["base_model"],
                "temperature": self.temperature, "quantized_int8": self.quantize, "device": str(self.device), "max_length": self.max_length}


class TfidfJudge(Judge):
    """TF-IDF word 1-2 grams + logistic regression."""

    kind = "tfidf"

    def __init__(self, directory: str | Path):
        import joblib

        directory = Path(directory)
        meta = read_judge_json(directory)
        super().__init__(load_taxonomy(directory / "taxonomy.yaml"))
        self.directory, self.meta = directory, meta
        self.pipeline = joblib.load(directory / "model.joblib")
        self.classes = meta["classes"]
        self.mask_names = bool(meta.get("mask_names", True))

    def _label_batch(self, batch: Sequence[Item]) -> list[Judgement]:
        from training.tfidf import tfidf_text

        prompts, responses = judge_inputs([b.prompt for b in batch], [b.response for b in batch], [b.name for b in batch], mask_names=self.mask_names)
        probs = self.pipeline.predict_proba(tfidf_text(prompts, responses))
        out = []
        for row in probs:
            p = {c: 0.0 for c in self.taxonomy.labels}
            p.update({c: float(v) for c, v in zip(self.classes, row)})
            out.append(Judgement.from_probabilities(p))
        return out

    def describe(self) -> dict:
        return {**super().describe(), "directory": str(self.directory)}


def save_taxonomy(taxonomy: Taxonomy, directory: Path) -> None:
    import yaml

    (directory / "taxonomy.yaml").write_text(yaml.safe_dump(taxonomy.to_dict(), sort_keys=False, allow_unicode=True))
