"""The frozen-encoder judge on disk: judge.json's settings (the encoder by name and by the sha256 of its
weights, the window, the classes) and embed.safetensors (the logistic-regression head: coef and
intercept, float64). No pickle: loading reads numbers, and recomputes scikit-learn's probabilities.

The encoder is not copied into the directory (the bundled MiniLM is 90 MB); the judge names it and
records its weights' sha256, and loading refuses an encoder whose weights differ: a head fitted on one
encoder's embeddings means nothing on another's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from judge.core.errors import UserError
from judge.core.schema import RETRAIN, finite_arrays, only_tensors, require_tensor, tensor_headers, unique

ARRAYS = "embed.safetensors"
MAX_LENGTH = 8192
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class Settings(BaseModel):
    """judge.json of a frozen-encoder judge."""

    model_config = ConfigDict(strict=True, extra="ignore")
    kind: Literal["embed"]
    base_model: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    base_model_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    max_length: Annotated[int, Field(ge=8, le=MAX_LENGTH)]
    pooling: Literal["mean"] = "mean"
    normalize: bool = True
    classes: Annotated[list[str], Field(min_length=2), AfterValidator(unique)]
    mask_names: bool = True


def weights_sha256(path: str | Path) -> str:
    """sha256 of an encoder's weights file (the first of WEIGHT_FILES it has)."""
    from judge.core.files import file_sha256

    path = Path(path)
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return file_sha256(path / name)
    raise UserError(f"encoder {path.name} has no {' or '.join(WEIGHT_FILES)}; give a model saved with save_pretrained")


def write_settings(directory, *, base_model: str, sha256: str, max_length: int, classes: list[str], mask_names: bool):
    from judge.kinds.judge_dir import write_settings as write_judge_json

    return write_judge_json(
        directory,
        {
            "kind": "embed",
            "base_model": base_model,
            "base_model_sha256": sha256,
            "max_length": max_length,
            "pooling": "mean",
            "normalize": True,
            "classes": list(classes),
            "mask_names": mask_names,
        },
    )


def save_head(classifier, directory: str | Path) -> None:
    """A fitted LogisticRegression as data: coef (one row for two classes, as scikit-learn keeps it) and intercept."""
    from safetensors.numpy import save_file

    save_file(
        {
            "coef": np.ascontiguousarray(classifier.coef_, dtype=np.float64),
            "intercept": np.ascontiguousarray(classifier.intercept_, dtype=np.float64),
        },
        str(Path(directory) / ARRAYS),
    )


class Head:
    """The stored logistic regression, checked (names, dtypes, shapes, finite values) before use."""

    def __init__(self, directory: str | Path, *, n_classes: int, where: str):
        path = Path(directory) / ARRAYS
        headers = tensor_headers(path, where=where)
        only_tensors(headers, ("coef", "intercept"), where=where, file=ARRAYS)
        rows = 1 if n_classes == 2 else n_classes
        coef = headers.get("coef")
        width = coef[1][1] if coef and len(coef[1]) == 2 else -1
        if width < 1:
            raise UserError(f"{where}: {ARRAYS} coef must be a matrix of {rows} rows; {RETRAIN}")
        require_tensor(headers, "coef", ("float64",), (rows, width), where=where, file=ARRAYS)
        require_tensor(headers, "intercept", ("float64",), (rows,), where=where, file=ARRAYS)
        arrays = finite_arrays(path, where=where)
        self.coef, self.intercept, self.width = arrays["coef"], arrays["intercept"], width

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        from scipy.special import expit, softmax

        scores = features @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:
            positive = expit(scores[:, 0])
            return np.column_stack([1 - positive, positive])
        return softmax(scores, axis=1)


class Encoder:
    """A base encoder's mean-pooled, L2-normalised embeddings of (prompt, response) pairs: what training
    fits the head on and what labelling feeds it, computed alike."""

    def __init__(self, base_model: str, *, max_length: int, device: str = "auto", allow_hub: bool = True):
        import torch
        from transformers import AutoModel, AutoTokenizer

        from judge.core.devices import pick_device
        from judge.engines.models import load_failure, resolve_model

        self.path = resolve_model(base_model, allow_hub=allow_hub)
        self.device, _ = pick_device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModel.from_pretrained(self.path, dtype=torch.float32).to(self.device).eval()
        except OSError as exc:
            raise load_failure(base_model, exc) from None
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"
        positions = getattr(self.model.config, "max_position_embeddings", None)
        self.max_length = min(max_length, positions) if positions else max_length
        self.width = int(self.model.config.hidden_size)

    def sha256(self) -> str:
        return weights_sha256(self.path)

    def embed(self, prompts: list[str], responses: list[str], *, batch_size: int = 32) -> np.ndarray:
        import itertools

        import torch

        from judge.core.text import encode_pairs

        out = np.zeros((len(responses), self.width), dtype=np.float64)
        if not len(responses):
            return out
        encoded = encode_pairs(self.tokenizer, prompts, responses, max_length=self.max_length)
        length = [len(ids) for ids in encoded["input_ids"]]
        # Each batch holds pairs of one token length: nothing is padded, so a pair's vector does not depend on
        # the pairs it shares a batch with (padding shifts the float rounding by ~1e-7, which a solver stopping
        # at its tolerance can turn into 1e-3 in a head's probabilities). An embedding is then a function of its
        # pair alone: what training's run-wide cache (training.embed.CachedEncoder) needs to give the judge that
        # embedding every fold afresh gives, bit for bit.
        batches = []
        for _, same in itertools.groupby(sorted(range(len(responses)), key=length.__getitem__), key=length.__getitem__):
            same = list(same)
            batches += [same[start : start + batch_size] for start in range(0, len(same), batch_size)]
        with torch.inference_mode():
            for idx in batches:
                batch = self.tokenizer.pad([{k: encoded[k][i] for k in encoded} for i in idx], return_tensors="pt")
                batch = {k: v.to(self.device) for k, v in batch.items()}
                hidden = self.model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled, dim=1)
                out[idx] = pooled.cpu().numpy()
        return out


def fingerprint(arg: str) -> dict[str, str]:
    """The directory's files by sha256, and the encoder its head was fitted on (by its weights' sha256)."""
    import json

    from judge.kinds.judge_dir import JUDGE_JSON, directory_fingerprint

    found = directory_fingerprint(Path(arg))
    meta = json.loads((Path(arg) / JUDGE_JSON).read_text(encoding="utf-8"))
    found["encoder_sha256"] = str(meta.get("base_model_sha256"))
    return found
