"""The LoRA judge kind: a peft LoRA sequence classifier trained by ``judge.train --kind lora``.

Its directory's format is ``judge.kinds.lora.format``; its training ``training/lora.py``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from judge.core.errors import UserError
from judge.core.taxonomy import Taxonomy, load_taxonomy
from judge.core.text import encode_pairs
from judge.kinds.base import Item, Judge, Judgement
from judge.kinds.judge_dir import directory_key, display_name, text_view_of, verify
from judge.kinds.lora import Options
from judge.kinds.lora.format import check_adapter, check_fits, check_max_length, load_base, load_tokenizer
from judge.kinds.lora.forward import first_token_only


def load(arg: str, options: Options, taxonomy: Taxonomy | None) -> "LoraJudge":
    return LoraJudge(arg, **vars(options))


def read_temperature(meta: dict, directory: Path) -> float:
    value = meta.get("temperature", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise UserError(
            f"{directory}/judge.json: temperature must be a positive number, got {value!r}; retrain the judge"
        )
    return float(value)


class LoraJudge(Judge):
    """A peft LoRA sequence classifier with temperature-scaled probabilities.

    Inference merges the adapter into the base and runs in the precision ``precision`` names (see
    judge.kinds.lora.precision): ``auto`` takes the fastest one this machine runs natively among those the
    judge's training check found faithful to fp32, and fp32 for a judge without that check.
    ``precision`` may also be a ``judge.kinds.lora.precision.Choice`` already made (judge.label resolves it once
    per run).
    """

    kind = "lora"

    def __init__(
        self,
        directory: str | Path,
        *,
        device: str = "auto",
        precision="auto",
        max_length: int | None = None,
        verbose: bool = False,
    ):
        from judge.core.devices import pick_device
        from judge.kinds.lora import precision as prec

        directory = Path(directory)
        meta = verify(directory)
        self.where = f"judge directory {display_name(directory)}"
        self.adapter = check_adapter(
            directory, meta["files"], where=self.where
        )  # before peft or transformers read a byte
        super().__init__(load_taxonomy(directory / "taxonomy.yaml"))
        self.directory, self.meta = directory, meta
        self.labels = list(meta["labels"])  # the classifier's output order, whatever the YAML's order
        self.device, _ = pick_device(device)
        self.temperature = read_temperature(meta, directory)
        self.max_length = max_length or int(meta["max_length"])
        self.tail_tokens = int(meta.get("tail_tokens", 0))
        self.mask_names = bool(meta.get("mask_names", True))
        self.text_view = text_view_of(meta)
        self.verbose = verbose
        if isinstance(precision, prec.Choice):
            self.choice = precision
        else:
            self.choice = prec.choose(precision, device=self.device, record=prec.read_record(meta, directory))
        self.precision = self.choice.precision
        model = first_token_only(
            self._merged_model(prec.weights_dtype(self.precision, self.device)).eval()
        )  # the logits read [CLS] alone
        check_max_length(self.max_length, model.config, where=self.where, from_flag=max_length is not None)
        # No parameter requires grad, whichever way the model came (a fresh merge freezes only the base,
        # the cache nothing): CPU kernels differ with the flag, and a resume must get the same bytes.
        self.model = prec.prepare(model.requires_grad_(False), self.precision, self.device).to(self.device).eval()
        if not isinstance(precision, prec.Choice):
            prec.say(self.choice)  # after every check passed: a refused judge gets its one line alone

    def _merged_model(self, dtype: torch.dtype):
        """The base with the adapter merged in. Small models on CPU are cached merged (keyed by the
        adapter's hash), so labelling starts without importing peft or merging again."""
        from judge.engines.models import quiet_transformers

        with quiet_transformers(self.verbose):
            return self._load_merged(dtype)

    def _load_merged(self, dtype: torch.dtype):
        from transformers import AutoModelForSequenceClassification

        from judge.engines.models import cache_root

        # judge.json holds the hash of every file of the directory: one key covers them all; the
        # weights' dtype is in the key too, so one precision's cached weights never load as another's.
        cached = cache_root() / "merged-judges" / f"{directory_key(self.directory)}-{str(dtype).removeprefix('torch.')}"
        if self.device.type == "cpu" and (cached / "config.json").exists():
            self.tokenizer = load_tokenizer(self.directory, where=self.where)
            self.tokenizer.padding_side = "right"  # as load_base pads (judge.kinds.lora.format.prepare_padding)
            return AutoModelForSequenceClassification.from_pretrained(cached, dtype=dtype)
        from peft import PeftModel

        # The base model a judge directory names is resolved locally only: a judge someone hands you
        # must not make the tool download anything.
        self.tokenizer, base = load_base(self.meta["base_model"], self.labels, dtype=dtype, allow_hub=False)
        check_fits(base, self.adapter, where=self.where)
        model = PeftModel.from_pretrained(base, self.directory).merge_and_unload()
        if self.device.type == "cpu" and sum(p.numel() for p in model.parameters()) < 500_000_000:
            from judge.core.files import build_aside

            with build_aside(cached) as tmp:  # another process may cache it first: then its copy stays
                model.save_pretrained(tmp)
            # Label with the cached copy, as every later run will: the in-memory merged model computes
            # the last bits of some logits differently, and a resumed run must write the same bytes.
            self.tokenizer.padding_side = "right"
            return AutoModelForSequenceClassification.from_pretrained(cached, dtype=dtype)
        return model

    @torch.inference_mode()
    def logits(self, batch: Sequence[Item]) -> np.ndarray:
        prompts, responses = self.texts(batch)
        # as training encodes: a conversation rendered, a long prompt cut to leave the response its half
        encoded = encode_pairs(
            self.tokenizer, prompts, responses, max_length=self.max_length, tail_tokens=self.tail_tokens
        )
        features = [{k: v[i] for k, v in encoded.items()} for i in range(len(prompts))]
        inputs = self.tokenizer.pad(features, return_tensors="pt").to(self.device)
        from judge.kinds.lora.precision import context

        with context(self.precision, self.device):
            return self.model(**inputs).logits.float().cpu().numpy()

    def _label_batch(self, batch: Sequence[Item]) -> list[Judgement]:
        probs = torch.softmax(torch.tensor(self.logits(batch), dtype=torch.float64) / self.temperature, dim=-1).numpy()
        return [Judgement.from_probabilities({c: float(p) for c, p in zip(self.labels, row)}) for row in probs]

    def describe(self) -> dict:
        return {
            **super().describe(),
            "directory": str(self.directory),
            "base_model": self.meta["base_model"],
            "base_model_revision": self.meta.get("base_model_revision"),
            "temperature": self.temperature,
            "precision": self.precision,
            "precision_reason": self.choice.reason,
            "quantized_int8": self.precision == "int8",
            "device": str(self.device),
            **self._hardware(),
            "max_length": self.max_length,
            "tail_tokens": self.tail_tokens,
        }

    def _hardware(self) -> dict:
        from judge.kinds.lora.precision import cpu_info

        if self.device.type == "cuda":
            return {"gpu": torch.cuda.get_device_name(self.device)}
        # The last bits of a CPU forward pass depend on torch's thread count (its reductions split by thread):
        # runs, shards and Ray actors write the same bytes only with the same count, so it is recorded.
        return {"cpu": cpu_info(), "torch_threads": torch.get_num_threads()}
