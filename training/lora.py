"""LoRA fine-tuning (peft) of a sequence classifier on (prompt, response) -> category.

Works with any model ``AutoModelForSequenceClassification`` accepts, encoder or decoder. The
default base is the bundled all-MiniLM-L6-v2, so training runs offline on a laptop CPU.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import cohen_kappa_score, f1_score
from tqdm.auto import tqdm

from judge.core.formats import lora as lora_format
from judge.core.formats.lora import load_base  # training and loading read the base alike
from judge.core.models import MINILM, model_revision, pick_device, resolve_model
from judge.core.precision import summary as precision_summary
from judge.core.text import encode_pairs
from training.calibration import expected_calibration_error, fit_temperature, softmax
from training.examples import LabelledData, class_weights, stratified_split


# The judge.train settings only a LoRA part takes (judge.judges.lora.TRAIN_OPTIONS names the same).
LORA_ONLY = ("base_model", "max_length", "tail_tokens", "epochs", "lr", "lora_r", "lora_alpha", "batch_size", "grad_accum", "patience",
             "class_weighting", "device")


@dataclass
class LoraRecipe:
    base_model: str = MINILM
    max_length: int = 96
    tail_tokens: int = 0  # >0: a long response keeps its head and its last tail_tokens tokens
    epochs: int = 6
    lr: float = 1e-3
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"
    batch_size: int = 16
    grad_accum: int = 1
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    val_fraction: float = 0.15
    patience: int = 2
    class_weighting: str = "sqrt"
    seed: int = 0
    device: str = "auto"
    mask_names: bool = True
    # "bf16": forward and backward under torch.autocast(bf16). Not the default: on the AMX Xeon its
    # steps were no faster than fp32's (benchmarks/train_precision.py), so nothing was gained for the risk.
    train_precision: str = "fp32"
    extra: dict = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def encode(tokenizer, prompts: list[str], responses: list[str], max_length: int, tail_tokens: int = 0) -> dict[str, list[list[int]]]:
    return encode_pairs(tokenizer, prompts, responses, max_length=max_length, tail_tokens=tail_tokens)


def say_estimate(seconds: float, done: int, per_epoch: int, epochs: int, val_batches: float) -> None:
    """After the first batches, say how long the whole training will take when it is long enough to matter."""
    per_batch = seconds / done
    # validation runs forward only (about a third of a training step), once per epoch
    estimate = per_batch * epochs * (per_epoch + val_batches / 3)
    if estimate > SAY_ESTIMATE_ABOVE_SECONDS:
        tqdm.write(f"estimated training time: about {estimate / 60:.0f} min for {epochs} epochs ({per_batch:.1f} s a batch over the first "
                   f"{done} batches; early stopping may end it sooner)")


def length_bucketed_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, sort within chunks of 50 batches by length, then shuffle the batches: little padding, still random."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(tokenizer, encoded: dict, idx: list[int], device: torch.device) -> dict[str, torch.Tensor]:
    features = [{k: encoded[k][i] for k in encoded} for i in idx]
    batch = tokenizer.pad(features, return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items()}


@torch.inference_mode()
def predict_logits(model, tokenizer, encoded: dict, *, batch_size: int, device: torch.device) -> np.ndarray:
    model.eval()
    n = len(encoded["input_ids"])
    order = sorted(range(n), key=lambda i: len(encoded["input_ids"][i]))
    out = np.zeros((n, model.config.num_labels), dtype=np.float64)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        logits = model(**collate(tokenizer, encoded, idx, device)).logits
        out[idx] = logits.float().cpu().numpy()
    return out


def check_loss(loss: torch.Tensor, *, epoch: int, step: int, lr: float) -> None:
    """A NaN or infinite loss poisons every weight it touches: stop, never save the judge it would make."""
    if not torch.isfinite(loss).all():
        from judge.core.errors import UserError

        raise UserError(f"training diverged: the loss is {loss.item()} at epoch {epoch}, batch {step} (--lr {lr}); "
                        "lower --lr (default 1e-3) and train again")


def training_autocast(precision: str, device: torch.device):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"train_precision is fp32 or bf16, got {precision!r}")
    return contextlib.nullcontext()


@dataclass
class TrainedLora:
    metrics: dict
    model: object  # the peft model, best epoch loaded
    tokenizer: object


def train_lora(data: LabelledData, out_dir: str | Path, recipe: LoraRecipe, *, progress: bool = True, verbose: bool = False,
               check_precision: bool = True) -> TrainedLora:
    """Train, pick the best epoch on validation macro-F1, calibrate, check reduced precisions, save.

    ``check_precision=False`` skips the faithfulness check of bf16 and int8 against fp32 (a model
    that is never shipped as a judge directory, such as a cross-validation fold's)."""
    from judge.core.models import quiet_transformers

    with quiet_transformers(verbose):
        return _train_lora(data, out_dir, recipe, progress=progress, check_precision=check_precision)


MIN_TEXTS_CHECKED = 200


def texts_to_check(enc_val: dict, enc_train: dict, *, seed: int) -> tuple[dict, str]:
    """The validation split, topped up with a seeded draw of training texts to MIN_TEXTS_CHECKED.

    Flips are rare (bf16 changed 0.15% of labels): 45 validation texts, what 300 labels give, cannot
    tell a 6% flip rate from none (0.94^45 = 6% of int8 checks would pass), 200 mostly can
    (0.94^200 + 200 * 0.06 * 0.94^199 < 0.01%). No label is needed to compare precisions."""
    n_val, n_train = len(enc_val["input_ids"]), len(enc_train["input_ids"])
    top_up = min(max(MIN_TEXTS_CHECKED - n_val, 0), n_train)
    if not top_up:
        return enc_val, "validation"
    picked = sorted(random.Random(seed).sample(range(n_train), top_up))
    merged = {k: list(enc_val[k]) + [enc_train[k][i] for i in picked] for k in enc_val}
    return merged, "validation+training" if n_val else "training"


def precision_record(model, tokenizer, encoded: dict, *, temperature: float, device: torch.device, split: str) -> dict:
    """judge.json's "precision": each reduced precision's probabilities against fp32's on these texts,
    computed by the model judge.label runs (adapter merged, first-token last layer)."""
    from judge.core.models import first_token_only
    from judge.core.precision import check_precisions, context

    merged = first_token_only(copy.deepcopy(model).merge_and_unload().float().eval().requires_grad_(False))  # as LoraJudge runs it

    def probabilities(candidate, precision: str) -> np.ndarray:
        with context(precision, device):
            return softmax(predict_logits(candidate, tokenizer, encoded, batch_size=64, device=device), temperature)

    return check_precisions(merged, probabilities, device=device, n=len(encoded["input_ids"]), split=split)


ESTIMATE_AFTER_BATCHES = 3
SAY_ESTIMATE_ABOVE_SECONDS = 60


def _train_lora(data: LabelledData, out_dir: str | Path, recipe: LoraRecipe, *, progress: bool, check_precision: bool) -> TrainedLora:
    from peft import LoraConfig, TaskType, get_peft_model

    seed_everything(recipe.seed)
    device, dtype = pick_device(recipe.device)
    labels = data.taxonomy.labels
    tokenizer, base = load_base(recipe.base_model, labels, dtype=dtype)
    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS, r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
        target_modules=recipe.target_modules,
    )
    model = get_peft_model(base, lora).to(device)

    train_idx, val_idx = stratified_split(data.y, val_fraction=recipe.val_fraction, seed=recipe.seed)
    train, val = data.subset(train_idx), data.subset(val_idx)
    enc_train = encode(tokenizer, train.prompts, train.responses, recipe.max_length, recipe.tail_tokens)
    enc_val = encode(tokenizer, val.prompts, val.responses, recipe.max_length, recipe.tail_tokens)
    weights = torch.tensor(class_weights(train.y, len(labels), scheme=recipe.class_weighting), dtype=torch.float32, device=device)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    y_train = torch.tensor(train.y, dtype=torch.long)

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps_per_epoch = math.ceil(len(train_idx) / recipe.batch_size / recipe.grad_accum)
    total = steps_per_epoch * recipe.epochs
    from transformers import get_linear_schedule_with_warmup

    scheduler = get_linear_schedule_with_warmup(optimizer, int(recipe.warmup_ratio * total), total)
    rng = random.Random(recipe.seed)
    lengths = [len(x) for x in enc_train["input_ids"]]

    best = {"val_macro_f1": -1.0, "epoch": 0, "state": None}
    history = []
    n_batches = math.ceil(len(train_idx) / recipe.batch_size)
    print(f"training LoRA on {len(train_idx)} examples ({len(val_idx)} held out for validation): up to {recipe.epochs} epochs "
          f"of {n_batches} batches on {device}")
    started = time.perf_counter()
    examples_seen = 0
    stale = 0
    for epoch in range(1, recipe.epochs + 1):
        model.train()
        batches = length_bucketed_batches(lengths, recipe.batch_size, rng)
        running = 0.0
        bar = tqdm(batches, desc=f"epoch {epoch}/{recipe.epochs}", unit="batch", disable=not progress, mininterval=1.0)
        for step, idx in enumerate(bar, start=1):
            inputs = collate(tokenizer, enc_train, idx, device)
            with training_autocast(recipe.train_precision, device):
                logits = model(**inputs).logits.float()
            loss = loss_fn(logits, y_train[idx].to(device)) / recipe.grad_accum
            check_loss(loss, epoch=epoch, step=step, lr=recipe.lr)
            loss.backward()
            if step % recipe.grad_accum == 0 or step == len(batches):
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            running += loss.item() * recipe.grad_accum
            examples_seen += len(idx)
            if epoch == 1 and step == ESTIMATE_AFTER_BATCHES:
                say_estimate(time.perf_counter() - started, step, n_batches, recipe.epochs, len(val_idx) / recipe.batch_size)
            bar.set_postfix(loss=f"{running / step:.3f}")
        entry = {"epoch": epoch, "train_loss": running / max(len(batches), 1)}
        if len(val_idx):
            val_logits = predict_logits(model, tokenizer, enc_val, batch_size=64, device=device)
            pred = val_logits.argmax(axis=1)
            entry["val_macro_f1"] = float(f1_score(val.y, pred, labels=range(len(labels)), average="macro", zero_division=0))
            entry["val_kappa"] = float(cohen_kappa_score(val.y, pred, labels=range(len(labels))))
        history.append(entry)
        if progress:
            tqdm.write(json.dumps(entry))
        score = entry.get("val_macro_f1", -epoch)  # no validation split: keep the last epoch
        if score > best["val_macro_f1"] or not len(val_idx):
            best = {"val_macro_f1": score, "epoch": epoch, "state": copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items() if "lora_" in k or "modules_to_save" in k})}
            stale = 0
        else:
            stale += 1
            if stale >= recipe.patience:
                break
    train_seconds = time.perf_counter() - started
    model.load_state_dict(best["state"], strict=False)
    if not all(torch.isfinite(v).all() for v in best["state"].values()):
        from judge.core.errors import UserError

        raise UserError(f"training diverged: the trained weights hold NaN or infinite values (--lr {recipe.lr}); lower --lr and train again")

    metrics = {"best_epoch": best["epoch"], "history": history, "train_seconds": round(train_seconds, 2),
               "train_examples_per_second": round(examples_seen / train_seconds, 2), "n_train": len(train_idx), "n_val": len(val_idx)}
    temperature = 1.0
    if len(val_idx):
        val_logits = predict_logits(model, tokenizer, enc_val, batch_size=64, device=device)
        temperature = fit_temperature(val_logits, val.y)
        metrics.update(
            val_macro_f1=float(f1_score(val.y, val_logits.argmax(1), labels=range(len(labels)), average="macro", zero_division=0)),
            val_kappa=float(cohen_kappa_score(val.y, val_logits.argmax(1), labels=range(len(labels)))),
            ece_before=expected_calibration_error(softmax(val_logits), val.y),
            ece_after=expected_calibration_error(softmax(val_logits, temperature), val.y),
        )
    metrics["temperature"] = temperature
    extra = {}
    if check_precision:
        encoded, split = texts_to_check(enc_val, enc_train, seed=recipe.seed)
        extra["precision"] = precision_record(model, tokenizer, encoded, temperature=temperature, device=device, split=split)
        metrics["precision"] = extra["precision"]
        print(precision_summary(extra["precision"]))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The modules peft adapted, by name: a pattern (a string) would be matched as a regex on loading,
    # and loading accepts only a list (judge.core.formats.lora.AdapterConfig).
    model.peft_config["default"].target_modules = sorted(model.base_model.targeted_module_names)
    model.save_pretrained(out_dir)  # adapter + the classification head (peft's modules_to_save)
    tokenizer.save_pretrained(out_dir)
    lora_format.write_settings(out_dir, base_model=recipe.base_model, base_model_revision=model_revision(resolve_model(recipe.base_model)),
                               labels=labels, temperature=temperature, max_length=recipe.max_length, tail_tokens=recipe.tail_tokens,
                               mask_names=recipe.mask_names, recipe=asdict(recipe), precision=extra.get("precision"))
    return TrainedLora(metrics, model.eval(), tokenizer)


# -- the kind's training interface (training.kinds) -----------------------------------------------

VALIDATION_SPLIT = True  # holds out --val-fraction of the labels to validate on
TAKES = LORA_ONLY
TITLE = "a LoRA judge (--kind lora, or an ensemble with a lora member)"


def train(data: LabelledData, out_dir: str | Path, run) -> "Trained":
    from training.kinds import Trained

    return Trained(train_lora(data, out_dir, run.recipe, progress=run.progress, verbose=run.verbose).metrics)


def fit_member(train_data: LabelledData, n_classes: int, run):
    """Trained with its own validation split and temperature, as the shipped LoRA judge is; never
    shipped, so the precision check is skipped."""
    import tempfile
    from dataclasses import replace

    with tempfile.TemporaryDirectory(prefix="cv-lora-") as tmp:
        trained = train_lora(train_data, tmp, replace(run.recipe), progress=run.progress, check_precision=False)
    device, _ = pick_device(run.recipe.device)

    def predict_lora(test: LabelledData) -> np.ndarray:
        encoded = encode(trained.tokenizer, test.prompts, test.responses, run.recipe.max_length, run.recipe.tail_tokens)
        logits = predict_logits(trained.model, trained.tokenizer, encoded, batch_size=64, device=device)
        return softmax(logits, trained.metrics["temperature"])
    predict_lora.training_metrics = trained.metrics  # best epoch, validation history: why a point is what it is
    return predict_lora


def card_line(config) -> str:
    """What the model card says of the kind, after its name."""
    return f", LoRA r={config.lora_r} on `{config.base_model}`"
