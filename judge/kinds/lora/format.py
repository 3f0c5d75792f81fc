"""The LoRA judge on disk: judge.json's settings, peft's adapter_config.json and
adapter_model.safetensors (LoRA matrices and the classification head), the tokenizer's files.

Training writes them through peft and transformers; loading checks them here as untrusted data
before peft or transformers read them (``check_adapter``), and once the base model is loaded,
that every matrix fits the layer it adapts (``check_fits``): peft would otherwise stop with a
traceback, or quietly load a tensor into any base weight it names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from judge.core.errors import UserError, cut
from judge.core.schema import MIB, RETRAIN, read_json, tensor_headers, validate

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
TOKENIZER_JSONS = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.json")
MAX_LENGTH = 131_072  # the longest context of today's models; the recipe's default is 96
MAX_CONFIG_BYTES = MIB
WEIGHT_DTYPES = ("float32", "float16", "bfloat16")
PREFIX = "base_model.model."  # peft's name for the base model inside the adapter's state dict
LORA_SUFFIXES = {".lora_A.weight": "A", ".lora_B.weight": "B"}


class Settings(BaseModel):
    """judge.json of a LoRA judge (written by ``write_settings``)."""

    model_config = ConfigDict(strict=True, extra="ignore")
    kind: Literal["lora"]
    base_model: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    base_model_revision: str | None = None
    temperature: float = 1.0
    max_length: Annotated[int, Field(ge=16, le=MAX_LENGTH)]
    tail_tokens: Annotated[int, Field(ge=0)] = 0
    mask_names: bool = True
    recipe: dict | None = None

    @field_validator("temperature")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"must be a positive number, got {value!r}")
        return value

    @model_validator(mode="after")
    def _head_left(self):
        if self.tail_tokens > self.max_length // 2:
            raise ValueError(f"tail_tokens {self.tail_tokens} is more than half of max_length {self.max_length}")
        return self


# Keys of adapter_config.json that change what peft builds beyond plain LoRA on named Linear layers;
# training never sets them, and some make peft match regexes or import modules by name.
MUST_BE_EMPTY = (
    "rank_pattern",
    "alpha_pattern",
    "layers_to_transform",
    "layers_pattern",
    "layer_replication",
    "exclude_modules",
    "target_parameters",
    "trainable_token_indices",
    "alora_invocation_tokens",
    "auto_mapping",
)


class AdapterConfig(BaseModel):
    """adapter_config.json as training writes it: LoRA for sequence classification on listed modules."""

    model_config = ConfigDict(strict=True, extra="allow")
    peft_type: Literal["LORA"]
    task_type: Literal["SEQ_CLS"]
    r: Annotated[int, Field(ge=1, le=4096)]
    lora_alpha: Annotated[float, Field(gt=0, le=1e6)]
    # A list of names, never a pattern: peft matches a string as a regex against every module name.
    target_modules: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=500)]], Field(min_length=1)
    ]
    modules_to_save: list[Annotated[str, StringConstraints(min_length=1, max_length=500)]] | None = None
    use_dora: Literal[False] = False

    @model_validator(mode="after")
    def _plain_lora(self):
        for key, value in (self.model_extra or {}).items():
            if (key in MUST_BE_EMPTY or key.endswith("_config")) and value not in (None, {}, []):
                raise ValueError(f"{cut(key)} must be null or empty (training never sets it)")
        return self


@dataclass
class Adapter:
    """What the adapter's header says: each adapted module's A and B shapes, and the head's tensors."""

    rank: int
    lora: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict)
    head: dict[str, tuple[int, ...]] = field(default_factory=dict)


def check_adapter(directory: Path, files: dict, *, where: str) -> Adapter:
    """adapter_config.json by schema, the tokenizer's JSON files as documents, and every tensor of
    adapter_model.safetensors by name, dtype, rank and value, before peft reads any of them."""
    if ADAPTER_WEIGHTS not in files:
        raise UserError(f"{where}: {ADAPTER_WEIGHTS} is missing (a LoRA judge keeps its weights there); {RETRAIN}")
    config = validate(
        AdapterConfig,
        read_json(directory / ADAPTER_CONFIG, max_bytes=MAX_CONFIG_BYTES, where=where),
        where=where,
        name=ADAPTER_CONFIG,
    )
    for name in TOKENIZER_JSONS:
        if name in files:
            check_tokenizer_json(directory, name, where=where)
    adapter = Adapter(rank=config.r)
    heads = tuple(config.modules_to_save or ())
    for key, (dtype, shape) in tensor_headers(directory / ADAPTER_WEIGHTS, where=where).items():
        if dtype not in WEIGHT_DTYPES:
            raise UserError(
                f"{where}: {ADAPTER_WEIGHTS}: {cut(key, 90)} is {dtype}, expected {' or '.join(WEIGHT_DTYPES)}; "
                f"{RETRAIN}"
            )
        name = key.removeprefix(PREFIX)
        suffix = next((s for s in LORA_SUFFIXES if name.endswith(s)), None)
        if key.startswith(PREFIX) and suffix:
            _add_lora(adapter, name[: -len(suffix)], LORA_SUFFIXES[suffix], shape, key, where)
        elif key.startswith(PREFIX) and any(name.startswith(h + ".") for h in heads):
            adapter.head[name] = shape
        else:
            raise UserError(
                f"{where}: {ADAPTER_WEIGHTS}: {cut(key, 90)} is neither a LoRA matrix nor part of the head "
                f"(modules_to_save); {RETRAIN}"
            )
    unpaired = [m for m, parts in adapter.lora.items() if set(parts) != {"A", "B"}]
    if unpaired or not adapter.lora:
        raise UserError(
            f"{where}: {ADAPTER_WEIGHTS} lacks "
            f"{'the other half of ' + cut(unpaired[0], 80) if unpaired else 'LoRA matrices'}; {RETRAIN}"
        )
    _check_finite(directory / ADAPTER_WEIGHTS, where)
    return adapter


def _add_lora(adapter: Adapter, module: str, part: str, shape: tuple[int, ...], key: str, where: str) -> None:
    rank_at = 0 if part == "A" else 1  # A is (r, in), B is (out, r)
    if len(shape) != 2 or shape[rank_at] != adapter.rank:
        raise UserError(
            f"{where}: {ADAPTER_WEIGHTS}: {cut(key, 90)} has shape {shape}, expected rank {adapter.rank} "
            f"(adapter_config.json r) as its {'rows' if part == 'A' else 'columns'}; {RETRAIN}"
        )
    adapter.lora.setdefault(module, {})[part] = shape


def _check_finite(path: Path, where: str) -> None:
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():
            if not torch.isfinite(handle.get_tensor(key)).all():
                raise UserError(
                    f"{where}: {ADAPTER_WEIGHTS}: {cut(key, 90)} holds non-finite values (NaN or infinity); {RETRAIN}"
                )


def check_tokenizer_json(directory: Path, name: str, *, where: str) -> None:
    """A tokenizer file transformers parses in Python: a bounded JSON object that asks for no code."""
    value = read_json(directory / name, max_bytes=MAX_CONFIG_BYTES, where=where)
    if not isinstance(value, dict):
        raise UserError(f"{where}: {name} is not a JSON object; {RETRAIN}")
    if "auto_map" in value:
        raise UserError(
            f"{where}: {name} names auto_map (tokenizer code to download and run); a judge's tokenizer is its base "
            f"model's: {RETRAIN}"
        )


def check_fits(base, adapter: Adapter, *, where: str) -> None:
    """Every LoRA matrix has the shape of the base layer it adapts, and the head the base's head shape."""
    import torch

    for module, parts in adapter.lora.items():
        try:
            layer = base.get_submodule(module)
        except AttributeError:
            raise UserError(
                f"{where}: {ADAPTER_WEIGHTS} adapts {cut(module, 90)}, a layer the base model does not have; {RETRAIN}"
            ) from None
        if not isinstance(layer, torch.nn.Linear):
            raise UserError(
                f"{where}: {ADAPTER_WEIGHTS} adapts {cut(module, 90)}, which is not a linear layer of the base model; "
                f"{RETRAIN}"
            )
        expected = {"A": (adapter.rank, layer.in_features), "B": (layer.out_features, adapter.rank)}
        for part, shape in parts.items():
            if shape != expected[part]:
                raise UserError(
                    f"{where}: {ADAPTER_WEIGHTS}: {cut(module, 70)}.lora_{part}.weight has shape {shape}, expected "
                    f"{expected[part]} for the base model's layer; {RETRAIN}"
                )
    for name, shape in adapter.head.items():
        try:
            expected = tuple(base.get_parameter(name).shape)
        except AttributeError:
            raise UserError(
                f"{where}: {ADAPTER_WEIGHTS}: {cut(name, 90)} is not a parameter of the base model's head; {RETRAIN}"
            ) from None
        if shape != expected:
            raise UserError(
                f"{where}: {ADAPTER_WEIGHTS}: {cut(name, 70)} has shape {shape}, expected {expected} "
                f"(one row per label); {RETRAIN}"
            )


def check_max_length(max_length: int, model_config, *, where: str, from_flag: bool) -> None:
    """A window longer than the base model's position table fails on the first long output."""
    limit = getattr(model_config, "max_position_embeddings", None)
    if isinstance(limit, int) and max_length > limit:
        if from_flag:
            raise UserError(
                f"--max-length {max_length} is more than the {limit} positions of the judge's base model; give at most "
                f"{limit}"
            )
        raise UserError(
            f"{where}: judge.json max_length {max_length} is more than the base model's {limit} positions; {RETRAIN}"
        )


def load_tokenizer(directory: Path, *, where: str):
    """The tokenizer saved beside the adapter; whatever transformers raises on a crafted file becomes one line."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(directory)
    except Exception as exc:  # noqa: BLE001 - a third-party parser of untrusted files raises many types
        raise UserError(
            f"{where}: its tokenizer files cannot be loaded "
            f"({cut(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, 100)}); "
            f"{RETRAIN}"
        ) from None


def write_settings(
    directory: Path,
    *,
    base_model: str,
    base_model_revision: str | None,
    labels: list[str],
    temperature: float,
    max_length: int,
    tail_tokens: int,
    mask_names: bool,
    recipe: dict,
    precision: dict | None = None,
) -> Path:
    """judge.json of a LoRA judge, as training writes it and ``Settings`` reads it."""
    from judge.kinds.judge_dir import write_settings as write_judge_json

    settings = {
        "kind": "lora",
        "base_model": base_model,
        "base_model_revision": base_model_revision,
        "labels": labels,
        "temperature": temperature,
        "max_length": max_length,
        "tail_tokens": tail_tokens,
        "mask_names": mask_names,
        "recipe": recipe,
    }
    if precision is not None:
        settings["precision"] = precision
    return write_judge_json(directory, settings)


def load_base(base_model: str, labels: list[str], *, dtype=None, allow_hub: bool = True):
    """(tokenizer, classifier) for a base model with a fresh head of ``labels``: what training adapts and
    what loading merges the adapter into, so both read the base alike."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from judge.engines.models import load_failure, resolve_model

    path = resolve_model(base_model, allow_hub=allow_hub)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            dtype=dtype or torch.float32,
        )
    except OSError as exc:
        raise load_failure(base_model, exc) from None
    prepare_padding(tokenizer, model)
    return tokenizer, model


def prepare_padding(tokenizer, model) -> None:
    """Pad on the right, with a pad token the model knows. A decoder classifier (Llama) pools the last
    non-pad token and numbers positions from the left: right padding keeps both as they are for the
    text alone, whatever side the tokenizer was saved with."""
    if tokenizer.pad_token is None:  # decoder models (Llama) ship without one
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    model.config.pad_token_id = tokenizer.pad_token_id
