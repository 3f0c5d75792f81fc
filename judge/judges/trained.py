"""Judges trained by ``python -m judge.train``: the LoRA classifier and the TF-IDF baseline."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from judge.errors import UserError
from judge.judges.base import Item, Judge, Judgement
from judge.judge_dir import directory_key, display_name, verify
from judge.lora_format import check_adapter, check_fits, check_max_length, load_tokenizer
from judge.models import first_token_only
from judge.text import encode_pairs, judge_inputs
from judge.taxonomy import load_taxonomy


def read_judge_json(directory: Path) -> dict:
    """judge.json of a directory whose files are all as trained (see judge.judge_dir.verify)."""
    return verify(directory)


# Architectures whose int8 path was measured to label about as the fp32 one does: MiniLM, cross-model
# kappa 0.680 / 0.721 in int8 vs 0.686 / 0.723 in fp32 on the paper's labels. Gemma 3 270M lost 0.13
# kappa in int8 (benchmarks/backbones.py), so other bases run in fp32 unless --quantize asks for int8.
INT8_BY_DEFAULT = frozenset({"bert"})


class LoraJudge(Judge):
    """A peft LoRA sequence classifier with temperature-scaled probabilities.

    On CPU, inference merges the adapter into the base and quantizes the Linear layers to int8
    (``quantize=True``, the default there for BERT-type bases such as MiniLM; other bases run in fp32
    unless asked): 1.4-1.5x the speed of the fp32 path.
    """

    kind = "lora"

    def __init__(self, directory: str | Path, *, device: str = "auto", quantize: bool | None = None, max_length: int | None = None,
                 verbose: bool = False):
        from judge.models import pick_device

        directory = Path(directory)
        meta = read_judge_json(directory)
        self.where = f"judge directory {display_name(directory)}"
        self.adapter = check_adapter(directory, meta["files"], where=self.where)  # before peft or transformers read a byte
        super().__init__(load_taxonomy(directory / "taxonomy.yaml"))
        self.directory, self.meta = directory, meta
        self.labels = list(meta["labels"])  # the classifier's output order, whatever the YAML's order
        self.device, dtype = pick_device(device)
        self.temperature = float(meta.get("temperature", 1.0))  # positive and finite (judge.lora_format.Settings)
        self.max_length = max_length or int(meta["max_length"])
        self.tail_tokens = int(meta.get("tail_tokens", 0))
        self.mask_names = bool(meta.get("mask_names", True))
        self.verbose = verbose
        if quantize and self.device.type != "cpu":
            raise UserError("int8 quantized inference runs on CPU only; drop --quantize or use --device cpu")
        model = first_token_only(self._merged_model(dtype).eval())  # the logits read [CLS] alone
        check_max_length(self.max_length, model.config, where=self.where, from_flag=max_length is not None)
        if quantize is None:
            quantize = self.device.type == "cpu" and model.config.model_type in INT8_BY_DEFAULT
        self.quantize = quantize
        if self.quantize:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao deprecation notices; the kernels are what we want
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self.model = model.to(self.device).eval()

    def _merged_model(self, dtype: torch.dtype):
        """The base with the adapter merged in. Small models on CPU are cached merged (keyed by the
        adapter's hash), so labelling starts without importing peft or merging again."""
        from judge.models import quiet_transformers

        with quiet_transformers(self.verbose):
            return self._load_merged(dtype)

    def _load_merged(self, dtype: torch.dtype):
        from transformers import AutoModelForSequenceClassification

        from judge.models import cache_root

        # judge.json holds the hash of every file of the directory: one key covers them all.
        cached = cache_root() / "merged-judges" / directory_key(self.directory)
        if self.device.type == "cpu" and (cached / "config.json").exists():
            self.tokenizer = load_tokenizer(self.directory, where=self.where)
            self.tokenizer.padding_side = "right"  # as in training (training.lora.prepare_padding)
            return AutoModelForSequenceClassification.from_pretrained(cached, dtype=dtype)
        from peft import PeftModel

        from training.lora import load_base  # only here: it imports the training stack (scikit-learn, peft)

        # The base model a judge directory names is resolved locally only: a judge someone hands you
        # must not make the tool download anything.
        self.tokenizer, base = load_base(self.meta["base_model"], self.labels, dtype=dtype, allow_hub=False)
        check_fits(base, self.adapter, where=self.where)
        model = PeftModel.from_pretrained(base, self.directory).merge_and_unload()
        if self.device.type == "cpu" and sum(p.numel() for p in model.parameters()) < 500_000_000:
            import shutil
            import tempfile

            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".merge-", dir=cached.parent))
            model.save_pretrained(tmp)
            try:
                tmp.rename(cached)
            except OSError:  # another process cached it first
                shutil.rmtree(tmp, ignore_errors=True)
            # Label with the cached copy, as every later run will: the in-memory merged model computes
            # the last bits of some logits differently, and a resumed run must write the same bytes.
            self.tokenizer.padding_side = "right"
            return AutoModelForSequenceClassification.from_pretrained(cached, dtype=dtype)
        return model

    @torch.inference_mode()
    def logits(self, batch: Sequence[Item]) -> np.ndarray:
        prompts, responses = judge_inputs([b.prompt for b in batch], [b.response for b in batch], [b.name for b in batch], mask_names=self.mask_names)
        if self.tail_tokens:
            encoded = encode_pairs(self.tokenizer, prompts, responses, max_length=self.max_length, tail_tokens=self.tail_tokens)
            features = [{k: v[i] for k, v in encoded.items()} for i in range(len(prompts))]
            inputs = self.tokenizer.pad(features, return_tensors="pt").to(self.device)
        else:
            inputs = self.tokenizer(prompts, responses, truncation="only_second" if self.max_length > 64 else True,
                                    max_length=self.max_length, padding=True, return_tensors="pt").to(self.device)
        return self.model(**inputs).logits.float().cpu().numpy()

    def _label_batch(self, batch: Sequence[Item]) -> list[Judgement]:
        probs = torch.softmax(torch.tensor(self.logits(batch), dtype=torch.float64) / self.temperature, dim=-1).numpy()
        return [Judgement.from_probabilities({c: float(p) for c, p in zip(self.labels, row)}) for row in probs]

    def describe(self) -> dict:
        return {**super().describe(), "directory": str(self.directory), "base_model": self.meta["base_model"], "base_model_revision": self.meta.get("base_model_revision"),
                "temperature": self.temperature, "quantized_int8": self.quantize, "device": str(self.device), "max_length": self.max_length, "tail_tokens": self.tail_tokens}


class TfidfJudge(Judge):
    """TF-IDF word 1-2 grams + logistic regression."""

    kind = "tfidf"

    def __init__(self, directory: str | Path):
        from judge.tfidf_format import TfidfModel, check_classes

        directory = Path(directory)
        meta = read_judge_json(directory)
        super().__init__(load_taxonomy(directory / "taxonomy.yaml"))
        self.directory, self.meta = directory, meta
        where = f"judge directory {display_name(directory)}"
        self.model = TfidfModel(directory, where=where)
        check_classes(self.model, meta["classes"], meta["labels"], where=where)
        self.classes = list(meta["classes"])
        self.mask_names = bool(meta.get("mask_names", True))

    def _label_batch(self, batch: Sequence[Item]) -> list[Judgement]:
        from judge.tfidf_format import tfidf_text

        prompts, responses = judge_inputs([b.prompt for b in batch], [b.response for b in batch], [b.name for b in batch], mask_names=self.mask_names)
        probs = self.model.predict_proba(tfidf_text(prompts, responses))
        out = []
        for row in probs:
            p = {c: 0.0 for c in self.taxonomy.labels}
            p.update({c: float(v) for c, v in zip(self.classes, row)})
            out.append(Judgement.from_probabilities(p))
        return out

    def describe(self) -> dict:
        return {**super().describe(), "directory": str(self.directory)}

