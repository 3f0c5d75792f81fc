"""Train a judge directory from labelled records (the library behind ``python -m judge.train``)."""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

from judge.cli import check_choice, check_label_map, check_fraction, check_non_negative, check_positive
from judge.errors import UserError
from judge.judge_dir import finish
from judge.manifest import RunManifest
from judge.records import normal_permissions, read_records
from judge.taxonomy import parse_label_map
from judge.tables import fmt
from training.data import labelled_data
from training.lora import LoraRecipe


LORA_ONLY = ("base_model", "max_length", "epochs", "lr", "lora_r", "lora_alpha", "batch_size", "grad_accum", "patience", "class_weighting", "device")


@dataclass
class TrainConfig:
    train: list[str]
    out: str
    label_column: str = "label"
    prompt_column: str | None = None
    text_column: str | None = None
    id_column: str | None = None
    taxonomy: str | None = None
    kind: str = "lora"
    # LoRA recipe: defaults live in training.lora.LoraRecipe
    base_model: str = LoraRecipe.base_model
    max_length: int = LoraRecipe.max_length
    epochs: int = LoraRecipe.epochs
    lr: float = LoraRecipe.lr
    lora_r: int = LoraRecipe.lora_r
    lora_alpha: int = LoraRecipe.lora_alpha
    batch_size: int = LoraRecipe.batch_size
    grad_accum: int = LoraRecipe.grad_accum
    val_fraction: float = LoraRecipe.val_fraction
    patience: int = LoraRecipe.patience
    class_weighting: str = LoraRecipe.class_weighting
    seed: int = LoraRecipe.seed
    device: str = LoraRecipe.device
    mask_names: bool = True
    progress: bool = True
    verbose: bool = False
    overwrite: bool = False
    extra: dict = field(default_factory=dict)
    source_column: str | None = None
    label_map: str | None = None

    def __post_init__(self):
        check_label_map(self)
        check_choice(self, "kind", ("lora", "tfidf"))
        check_choice(self, "class_weighting", ("none", "sqrt", "balanced"))
        check_positive(self, "epochs", "lr", "lora_r", "lora_alpha", "batch_size", "grad_accum")
        check_non_negative(self, "patience")
        check_fraction(self, "val_fraction", high_open=True)
        if self.max_length < 16:
            raise UserError(f"--max-length must be at least 16 tokens (prompt + response), got {self.max_length}")
        if self.kind == "tfidf":
            lora_only = [f.name for f in fields(LoraRecipe) if f.name in LORA_ONLY and getattr(self, f.name) != f.default]
            if lora_only:
                raise UserError(f"{', '.join('--' + n.replace('_', '-') for n in lora_only)} only apply to --kind lora; drop them for --kind tfidf")


def train_judge(config: TrainConfig) -> dict:
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; a judge is a directory: choose another --out")
    if out.exists() and any(out.iterdir()) and not config.overwrite:
        raise UserError(f"{out} already exists and is not empty; pass --overwrite to replace it or choose another --out")
    if not config.train:
        raise UserError("give at least one --train file")
    manifest = RunManifest("judge.train", config, inputs=config.train)
    if config.kind == "tfidf":
        # A TF-IDF judge's manifest records the settings that made it, not the LoRA recipe's defaults.
        for name in LORA_ONLY:
            manifest.data["settings"].pop(name, None)
    records = read_records(config.train, id_column=config.id_column, prompt_column=config.prompt_column,
                           text_column=config.text_column, label_columns=[config.label_column], label_hint="Fix --label-column.",
                           source_column=config.source_column)
    data = labelled_data(records, label_column=config.label_column, taxonomy=config.taxonomy, mask_names=config.mask_names,
                         label_map=parse_label_map(config.label_map))
    print(name_masking_line(data, config.mask_names))
    out.parent.mkdir(parents=True, exist_ok=True)
    # Train into a temporary folder beside the target: a crash never leaves a half-written judge.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if config.kind == "lora":
            from training.lora import train_lora

            recipe = LoraRecipe(**{f.name: getattr(config, f.name) for f in fields(LoraRecipe) if hasattr(config, f.name) and f.name != "extra"},
                                **{k: v for k, v in config.extra.items() if k in ("lora_dropout", "target_modules", "weight_decay", "warmup_ratio")})
            metrics = train_lora(data, tmp, recipe, progress=config.progress, verbose=config.verbose).metrics
        else:
            from training.tfidf import train_tfidf

            metrics = train_tfidf(data, tmp, seed=config.seed, val_fraction=config.val_fraction, mask_names=config.mask_names)
        finish(tmp, data.taxonomy, training_ids=data.records["id"])
        counts = {c: int((data.y == i).sum()) for i, c in enumerate(data.taxonomy.labels)}
        manifest.update(kind=config.kind, taxonomy=data.taxonomy.name, label_counts=counts, metrics=metrics,
                        name_masking={"enabled": config.mask_names, "records_masked": data.n_masked, "records": len(data.y),
                                      "name_column": "name" in data.records.columns})
        manifest.write(tmp, n_records=len(data.y))
        (tmp / "README.md").write_text(model_card(config, data.taxonomy.labels, counts, metrics, manifest.data["inputs"], name_masking_line(data, config.mask_names)))
        normal_permissions(tmp)  # mkdtemp made it private
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return metrics


def name_masking_line(data, mask_names: bool) -> str:
    """Say how many names masking actually replaced: zero is a finding (no 'name' column, or names not in the texts)."""
    if not mask_names:
        return "name masking off (--no-mask-names): the judge sees the names"
    if "name" not in data.records.columns:
        return f"name masking: 0 of {len(data.y)} records masked (no 'name' column in the training data)"
    return f"name masking: {data.n_masked} of {len(data.y)} records had their name replaced by [NAME]"


def model_card(config: TrainConfig, labels: list[str], counts: dict, metrics: dict, inputs: dict, masking: str = "") -> str:
    lines = [
        f"# Judge: {config.kind} on `{config.label_column}`",
        "",
        f"- Kind: {config.kind}" + (f", LoRA r={config.lora_r} on `{config.base_model}`" if config.kind == "lora" else " (TF-IDF word 1-2 grams + logistic regression)"),
        f"- Categories: {', '.join(labels)}",
        f"- Training labels: {', '.join(f'{k} {v}' for k, v in counts.items())}",
        f"- Data: {', '.join(f'`{p}` (sha256 {h[:12]})' for p, h in inputs.items())}",
        f"- Names masked before the judge sees the text: {config.mask_names} ({masking})",
    ]
    for key in ("val_macro_f1", "val_kappa", "ece_before", "ece_after", "temperature", "best_epoch", "train_seconds"):
        if key in metrics:
            value = metrics[key]
            lines.append(f"- {key.replace('_', ' ')}: {fmt(value) if isinstance(value, float) else value}")
    lines += [
        "",
        "Use: `python -m judge.label --judge THIS_DIR --input FILE --out FILE`.",
        "Rerun: see `manifest.json` (command line, settings, package versions, data fingerprints).",
        "Validation figures come from a stratified held-out split of the training data; "
        "report agreement on data from another model or another annotation round before trusting it.",
        "",
    ]
    return "\n".join(lines)


def summary_line(metrics: dict) -> str:
    keys = [k for k in ("val_macro_f1", "val_kappa", "ece_before", "ece_after", "temperature", "train_seconds") if k in metrics]
    return " ".join(f"{k}={fmt(metrics[k]) if isinstance(metrics[k], float) else metrics[k]}" for k in keys)
