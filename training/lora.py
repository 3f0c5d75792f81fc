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

from judge.core.devices import pick_device
from judge.core.errors import UserError
from judge.core.text import encode_pairs
from judge.engines.models import MINILM, model_revision, resolve_model
from judge.kinds.lora import format as lora_format
from judge.kinds.lora.format import load_base  # training and loading read the base alike
from judge.kinds.lora.precision import summary as precision_summary
from training.calibration import expected_calibration_error, fit_temperature, softmax
from training.examples import LabelledData, class_weights, stratified_split
from training.kinds import Trained, Trainer


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


CLASS_WEIGHTINGS = ("none", "sqrt", "balanced")


@dataclass
class LoraOptions:
    """The judge.train settings only a LoRA part takes (its Trainer's options): judge.train's flags
    --base-model ... --device and TrainConfig's fields, checked here. Defaults: ``LoraRecipe``'s."""

    base_model: str = field(
        default=LoraRecipe.base_model,
        metadata={"help": "base model path or id (default: %(default)s, all-MiniLM-L6-v2)"},
    )
    max_length: int = field(
        default=LoraRecipe.max_length,
        metadata={
            "help": "max tokens of prompt + response (default: %(default)s; the label is usually "
            "decided early in a response; 80 labels ~25%% faster for ~0.03 less kappa in benchmarks/cross_model.py)"
        },
    )
    tail_tokens: int = field(
        default=LoraRecipe.tail_tokens,
        metadata={
            "metavar": "N",
            "help": "long responses: keep the head and the last N "
            "tokens within --max-length (a late refusal or partial compliance is still read; "
            "default 0: cut at the end)",
        },
    )
    epochs: int = field(
        default=LoraRecipe.epochs, metadata={"help": "max epochs; early stopping on validation macro-F1"}
    )
    lr: float = field(default=LoraRecipe.lr, metadata={"help": "learning rate"})
    lora_r: int = field(default=LoraRecipe.lora_r, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=LoraRecipe.lora_alpha, metadata={"help": "LoRA alpha"})
    batch_size: int = field(default=LoraRecipe.batch_size, metadata={"help": "batch size"})
    grad_accum: int = field(default=LoraRecipe.grad_accum, metadata={"help": "gradient accumulation steps"})
    patience: int = field(
        default=LoraRecipe.patience, metadata={"help": "epochs without validation gain before stopping"}
    )
    class_weighting: str = field(
        default=LoraRecipe.class_weighting,
        metadata={"choices": CLASS_WEIGHTINGS, "help": "loss weights against class imbalance"},
    )
    device: str = field(
        default=LoraRecipe.device, metadata={"help": "auto (GPU with bf16 where present), cpu, cuda, cuda:1 ..."}
    )

    def __post_init__(self):
        from judge.core.config import check_choice, check_non_negative, check_positive

        check_choice(self, "class_weighting", CLASS_WEIGHTINGS)
        check_positive(self, "epochs", "lr", "lora_r", "lora_alpha", "batch_size", "grad_accum")
        check_non_negative(self, "patience", "tail_tokens")
        if self.tail_tokens and self.tail_tokens > self.max_length // 2:
            raise UserError(
                f"--tail-tokens {self.tail_tokens} leaves too little of the response's head: keep it at most half of "
                f"--max-length ({self.max_length // 2})"
            )
        if self.max_length < 16:
            raise UserError(f"--max-length must be at least 16 tokens (prompt + response), got {self.max_length}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def encode(
    tokenizer, prompts: list[str], responses: list[str], max_length: int, tail_tokens: int = 0
) -> dict[str, list[list[int]]]:
    if not prompts:  # --val-fraction 0: no validation split; the tokenizers refuse an empty batch
        return {key: [] for key in encode_pairs(tokenizer, ["x"], ["y"], max_length=max_length)}
    return encode_pairs(tokenizer, prompts, responses, max_length=max_length, tail_tokens=tail_tokens)


def say_estimate(seconds: float, done: int, per_epoch: int, epochs: int, val_batches: float) -> None:
    """After the first batches, say how long the whole training will take when it is long enough to matter."""
    per_batch = seconds / done
    # validation runs forward only (about a third of a training step), once per epoch
    estimate = per_batch * epochs * (per_epoch + val_batches / 3)
    if estimate > SAY_ESTIMATE_ABOVE_SECONDS:
        tqdm.write(
            f"estimated training time: about {estimate / 60:.0f} min for {epochs} epochs ({per_batch:.1f} s a batch "
            "over the first "
            f"{done} batches; early stopping may end it sooner)"
        )


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

        raise UserError(
            f"training diverged: the loss is {loss.item()} at epoch {epoch}, batch {step} (--lr {lr}); "
            "lower --lr (default 1e-3) and train again"
        )


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


def train_lora(
    data: LabelledData,
    out_dir: str | Path,
    recipe: LoraRecipe,
    *,
    progress: bool = True,
    verbose: bool = False,
    check_precision: bool = True,
) -> TrainedLora:
    """Train, pick the best epoch on validation macro-F1, calibrate, check reduced precisions, save.

    ``check_precision=False`` skips the faithfulness check of bf16 and int8 against fp32 (a model
    that is never shipped as a judge directory, such as a cross-validation fold's)."""
    from judge.engines.models import quiet_transformers

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
    from judge.kinds.lora.forward import first_token_only
    from judge.kinds.lora.precision import check_precisions, context

    merged = first_token_only(
        copy.deepcopy(model).merge_and_unload().float().eval().requires_grad_(False)
    )  # as LoraJudge runs it

    def probabilities(candidate, precision: str) -> np.ndarray:
        with context(precision, device):
            return softmax(predict_logits(candidate, tokenizer, encoded, batch_size=64, device=device), temperature)

    return check_precisions(merged, probabilities, device=device, n=len(encoded["input_ids"]), split=split)


ESTIMATE_AFTER_BATCHES = 3
SAY_ESTIMATE_ABOVE_SECONDS = 60


@dataclass
class Prepared:
    """The model with its adapters, and the encoded splits, before the first step."""

    model: object
    tokenizer: object
    device: torch.device
    train: LabelledData
    val: LabelledData
    enc_train: dict
    enc_val: dict

    @property
    def n_labels(self) -> int:
        return len(self.train.taxonomy.labels)


def prepare(data: LabelledData, recipe: LoraRecipe) -> Prepared:
    from peft import LoraConfig, TaskType, get_peft_model

    seed_everything(recipe.seed)
    device, dtype = pick_device(recipe.device)
    tokenizer, base = load_base(recipe.base_model, data.taxonomy.labels, dtype=dtype)
    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        target_modules=recipe.target_modules,
    )
    model = get_peft_model(base, lora).to(device)
    train_idx, val_idx = stratified_split(data.y, val_fraction=recipe.val_fraction, seed=recipe.seed)
    train, val = data.subset(train_idx), data.subset(val_idx)
    return Prepared(
        model,
        tokenizer,
        device,
        train,
        val,
        encode(tokenizer, train.prompts, train.responses, recipe.max_length, recipe.tail_tokens),
        encode(tokenizer, val.prompts, val.responses, recipe.max_length, recipe.tail_tokens),
    )


class Stepper:
    """One optimiser step per grad_accum batches: AdamW on the adapters, linear warmup and decay, clipped gradients."""

    def __init__(self, prepared: Prepared, recipe: LoraRecipe):
        from transformers import get_linear_schedule_with_warmup

        self.recipe = recipe
        weights = class_weights(prepared.train.y, prepared.n_labels, scheme=recipe.class_weighting)
        self.loss_fn = torch.nn.CrossEntropyLoss(
            weight=torch.tensor(weights, dtype=torch.float32, device=prepared.device)
        )
        self.trainable = [p for p in prepared.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=recipe.lr, weight_decay=recipe.weight_decay)
        total = math.ceil(len(prepared.train.y) / recipe.batch_size / recipe.grad_accum) * recipe.epochs
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, int(recipe.warmup_ratio * total), total)

    def backward(self, logits: torch.Tensor, targets: torch.Tensor, *, epoch: int, step: int) -> float:
        loss = self.loss_fn(logits, targets) / self.recipe.grad_accum
        check_loss(loss, epoch=epoch, step=step, lr=self.recipe.lr)
        loss.backward()
        return loss.item() * self.recipe.grad_accum

    def step(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.trainable, 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)


def run_epoch(
    p: Prepared,
    stepper: Stepper,
    recipe: LoraRecipe,
    *,
    epoch: int,
    rng: random.Random,
    progress: bool,
    on_early_step=None,
) -> tuple[float, int]:
    """(mean training loss, examples seen) of one pass over length-bucketed batches."""
    p.model.train()
    y_train = torch.tensor(p.train.y, dtype=torch.long)
    batches = length_bucketed_batches([len(x) for x in p.enc_train["input_ids"]], recipe.batch_size, rng)
    running, seen = 0.0, 0
    bar = tqdm(batches, desc=f"epoch {epoch}/{recipe.epochs}", unit="batch", disable=not progress, mininterval=1.0)
    for step, idx in enumerate(bar, start=1):
        with training_autocast(recipe.train_precision, p.device):
            logits = p.model(**collate(p.tokenizer, p.enc_train, idx, p.device)).logits.float()
        running += stepper.backward(logits, y_train[idx].to(p.device), epoch=epoch, step=step)
        if step % recipe.grad_accum == 0 or step == len(batches):
            stepper.step()
        seen += len(idx)
        if on_early_step and epoch == 1 and step == ESTIMATE_AFTER_BATCHES:
            on_early_step(step)
        bar.set_postfix(loss=f"{running / step:.3f}")
    return running / max(len(batches), 1), seen


def validation_scores(p: Prepared, logits: np.ndarray) -> dict[str, float]:
    pred, labels = logits.argmax(axis=1), range(p.n_labels)
    return {
        "val_macro_f1": float(f1_score(p.val.y, pred, labels=labels, average="macro", zero_division=0)),
        "val_kappa": float(cohen_kappa_score(p.val.y, pred, labels=labels)),
    }


def adapter_state(model) -> dict[str, torch.Tensor]:
    """What training changes (the adapters and the head), copied off the device."""
    return copy.deepcopy(
        {k: v.detach().cpu() for k, v in model.state_dict().items() if "lora_" in k or "modules_to_save" in k}
    )


def fit(p: Prepared, recipe: LoraRecipe, *, progress: bool) -> dict:
    """Epochs until patience runs out on validation macro-F1; the best epoch's weights loaded back."""
    stepper, rng = Stepper(p, recipe), random.Random(recipe.seed)
    n_batches, n_val = math.ceil(len(p.train.y) / recipe.batch_size), len(p.val.y)
    print(
        f"training LoRA on {len(p.train.y)} examples ({n_val} held out for validation): up to {recipe.epochs} epochs "
        f"of {n_batches} batches on {p.device}"
    )
    started = time.perf_counter()

    def estimate(step: int) -> None:
        say_estimate(time.perf_counter() - started, step, n_batches, recipe.epochs, n_val / recipe.batch_size)

    best, history, seen, stale = {"score": -1.0, "epoch": 0, "state": None}, [], 0, 0
    for epoch in range(1, recipe.epochs + 1):
        loss, n = run_epoch(p, stepper, recipe, epoch=epoch, rng=rng, progress=progress, on_early_step=estimate)
        seen += n
        entry = {"epoch": epoch, "train_loss": loss}
        if n_val:
            entry.update(
                validation_scores(p, predict_logits(p.model, p.tokenizer, p.enc_val, batch_size=64, device=p.device))
            )
        history.append(entry)
        if progress:
            tqdm.write(json.dumps(entry))
        score = entry.get("val_macro_f1", -epoch)
        if score > best["score"] or not n_val:  # no validation split: keep the last epoch
            best, stale = {"score": score, "epoch": epoch, "state": adapter_state(p.model)}, 0
        else:
            stale += 1
            if stale >= recipe.patience:
                break
    seconds = time.perf_counter() - started
    p.model.load_state_dict(best["state"], strict=False)
    if not all(torch.isfinite(v).all() for v in best["state"].values()):
        from judge.core.errors import UserError

        raise UserError(
            f"training diverged: the trained weights hold NaN or infinite values (--lr {recipe.lr}); lower --lr and "
            "train again"
        )
    return {
        "best_epoch": best["epoch"],
        "history": history,
        "train_seconds": round(seconds, 2),
        "train_examples_per_second": round(seen / seconds, 2),
        "n_train": len(p.train.y),
        "n_val": n_val,
    }


def calibrate(p: Prepared, metrics: dict) -> float:
    """The temperature fitted on validation (1.0 without a split), with the calibrated scores added to ``metrics``."""
    temperature = 1.0
    if len(p.val.y):
        val_logits = predict_logits(p.model, p.tokenizer, p.enc_val, batch_size=64, device=p.device)
        temperature = fit_temperature(val_logits, p.val.y)
        metrics.update(
            validation_scores(p, val_logits),
            ece_before=expected_calibration_error(softmax(val_logits), p.val.y),
            ece_after=expected_calibration_error(softmax(val_logits, temperature), p.val.y),
            # how often each category is predicted on validation: a real category never predicted is a degenerate judge
            val_predicted=np.bincount(val_logits.argmax(axis=1), minlength=p.n_labels).tolist(),
        )
    metrics["temperature"] = temperature
    return temperature


def save(p: Prepared, out_dir: str | Path, recipe: LoraRecipe, *, temperature: float, precision: dict | None) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = p.model
    # The modules peft adapted, by name: a pattern (a string) would be matched as a regex on loading,
    # and loading accepts only a list (judge.kinds.lora.format.AdapterConfig).
    model.peft_config["default"].target_modules = sorted(model.base_model.targeted_module_names)
    model.save_pretrained(out_dir)  # adapter + the classification head (peft's modules_to_save)
    p.tokenizer.save_pretrained(out_dir)
    lora_format.write_settings(
        out_dir,
        base_model=recipe.base_model,
        base_model_revision=model_revision(resolve_model(recipe.base_model)),
        labels=p.train.taxonomy.labels,
        temperature=temperature,
        max_length=recipe.max_length,
        tail_tokens=recipe.tail_tokens,
        mask_names=recipe.mask_names,
        recipe=asdict(recipe),
        precision=precision,
    )


def _train_lora(
    data: LabelledData, out_dir: str | Path, recipe: LoraRecipe, *, progress: bool, check_precision: bool
) -> TrainedLora:
    p = prepare(data, recipe)
    metrics = fit(p, recipe, progress=progress)
    temperature = calibrate(p, metrics)
    precision = None
    if check_precision:
        encoded, split = texts_to_check(p.enc_val, p.enc_train, seed=recipe.seed)
        precision = metrics["precision"] = precision_record(
            p.model, p.tokenizer, encoded, temperature=temperature, device=p.device, split=split
        )
        print(precision_summary(precision))
    save(p, out_dir, recipe, temperature=temperature, precision=precision)
    return TrainedLora(metrics, p.model.eval(), p.tokenizer)


# -- the kind's training (training.kinds.Trainer; judge.kinds.lora's spec names TRAINER) ----------


def train(data: LabelledData, out_dir: str | Path, run) -> Trained:
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


TRAINER = Trainer(
    title="a LoRA judge (--kind lora, or an ensemble with a lora member)",
    train=train,
    fit_member=fit_member,
    options=LoraOptions,
    card_line=card_line,
    validation_split=True,
)  # it holds out --val-fraction of the labels to validate on
