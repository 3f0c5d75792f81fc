"""Is bf16 worth it for training the LoRA judge on this CPU? Seconds per training step, side by side.

    python benchmarks/train_precision.py                       # 50 steps of batch 16 x 96 tokens per mode, MiniLM
    python benchmarks/train_precision.py --steps 20 --repeats 2 --base-model bundled:smollm2
    python benchmarks/train_precision.py --whole       # the default judge trained on all 2,304 7B labels in fp32 and in bf16

Modes, each on the same batches of real (prompt, response) pairs padded to --max-length, the
default recipe's LoRA (r=16, all linear layers, AdamW), forward + backward + optimizer step:

- fp32: what judge.train does;
- autocast: fp32 weights, forward and backward under ``torch.autocast("cpu", dtype=torch.bfloat16)``;
- frozen bf16: the frozen base stored in bf16, the LoRA adapters and the classifier head in fp32,
  under autocast (the matmuls in bf16, the trained weights and their optimizer state in fp32).

Repeats run the modes in turn (fp32, autocast, frozen bf16, fp32, ...) so a busy machine slows
them alike; the table gives the median step time and the speed relative to fp32, the CPU named.
A mode that is faster per step still has to keep the judge's kappa: ``--whole`` trains the default
judge (LoraRecipe) on the 7B labels once per training precision (fp32, and bf16 autocast through
``LoraRecipe.train_precision``), same seed and early stopping, and gives each one's training time,
best epoch, validation kappa and 7B -> 13B kappa (labelled in fp32 and in auto), side by side.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

from common import DEFAULT_DATA, cpu_model, markdown_table

MODES = ("fp32", "autocast", "frozen bf16")


def batches(tokenizer, n_steps: int, batch_size: int, max_length: int, seed: int):
    """n_steps batches of the bundled sample's texts (names masked), each padded to max_length."""
    import random

    import torch

    from judge.core.paths import SAMPLE
    from judge.core.records import read_records
    from judge.core.text import TextView

    frame = read_records(SAMPLE)
    prompts, responses, _ = TextView().inputs(frame["prompt"], frame["response"], frame["name"])
    rng = random.Random(seed)
    order = list(range(len(prompts)))
    out = []
    for _ in range(n_steps):
        idx = rng.sample(order, batch_size)
        enc = tokenizer([prompts[i] for i in idx], [responses[i] for i in idx], truncation="only_second", max_length=max_length,
                        padding="max_length", return_tensors="pt")
        out.append((dict(enc), torch.tensor([i % 6 for i in idx])))
    return out


def build(mode: str, base_model: str, n_labels: int, seed: int):
    import torch
    from peft import LoraConfig, TaskType, get_peft_model

    from training.lora import LoraRecipe, load_base, seed_everything

    seed_everything(seed)
    recipe = LoraRecipe(base_model=base_model)
    dtype = torch.bfloat16 if mode == "frozen bf16" else torch.float32
    tokenizer, base = load_base(base_model, [str(i) for i in range(n_labels)], dtype=dtype)
    lora = LoraConfig(task_type=TaskType.SEQ_CLS, r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
                      target_modules=recipe.target_modules)
    model = get_peft_model(base, lora)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()  # adapters and head: trained in fp32 in every mode
    trainable = [p for p in model.parameters() if p.requires_grad]
    return tokenizer, model.train(), torch.optim.AdamW(trainable, lr=recipe.lr, weight_decay=recipe.weight_decay), trainable


def step_seconds(mode: str, model, optimizer, trainable, data) -> tuple[list[float], float]:
    import torch

    loss_fn = torch.nn.CrossEntropyLoss()
    times, loss = [], float("nan")
    for inputs, y in data:
        started = time.perf_counter()
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if mode != "fp32" else contextlib.nullcontext()
        with ctx:
            logits = model(**inputs).logits
        value = loss_fn(logits.float(), y)
        value.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
        loss = value.item()
    return times, loss


def whole_trainings(data_dir, seed: int) -> list[dict]:
    """The default judge trained on 7B in each training precision, tested on 13B in fp32 and auto."""
    import tempfile
    from pathlib import Path

    from common import load_chehbouni

    from judge.analysis.agreement import agreement_analysis
    from judge.core.taxonomy import load_taxonomy
    from judge.kinds import load_judge
    from judge.kinds.judge_dir import finish
    from training.examples import labelled_data
    from training.lora import LoraRecipe, train_lora

    data, tax = load_chehbouni(Path(data_dir)), load_taxonomy("chehbouni2024")
    labelled, work, rows = labelled_data(data["7b"], label_column="label", taxonomy=tax), Path(tempfile.mkdtemp(prefix="bench-train-prec-")), []
    for train_precision in ("fp32", "bf16"):
        out = work / f"judge-{train_precision}"
        trained = train_lora(labelled, out, LoraRecipe(seed=seed, train_precision=train_precision), progress=False)
        finish(out, tax, training_ids=labelled.records["id"])
        row = {"training": train_precision, "train min": trained.metrics["train_seconds"] / 60, "best epoch": trained.metrics["best_epoch"],
               "val kappa": trained.metrics["val_kappa"]}
        for precision in ("fp32", "auto"):
            judge = load_judge(str(out), precision=precision)
            result = agreement_analysis(judge.label(data["13b"], batch_size=64, progress=False).assign(gold=data["13b"]["label"].to_numpy()),
                                        gold="gold", pred="label", taxonomy=tax, n_boot=200)
            row[f"7B->13B kappa, labelled {precision}" + ("" if precision == "fp32" else f" ({judge.precision})")] = result.cohen_kappa
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-model", default="bundled:minilm")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=3, help="steps per mode and repeat left out of the timing")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--whole", action="store_true", help="also train the default judge on all 7B labels per training precision (about 15-30 min each)")
    ap.add_argument("--data-dir", default=str(DEFAULT_DATA))
    args = ap.parse_args()
    from judge.engines.models import quiet_transformers
    from judge.kinds.lora.precision import cpu_info

    cpu = cpu_info()
    print(f"CPU: {cpu_model()}; flags {' '.join(cpu['flags'])}", flush=True)
    times = {m: [] for m in MODES}
    losses = {}
    for repeat in range(args.repeats):
        for mode in MODES:
            with quiet_transformers():
                tokenizer, model, optimizer, trainable = build(mode, args.base_model, 6, args.seed)
            data = batches(tokenizer, args.steps + args.warmup, args.batch_size, args.max_length, args.seed)
            seconds, losses[mode] = step_seconds(mode, model, optimizer, trainable, data)
            times[mode] += seconds[args.warmup:]
            print(f"repeat {repeat + 1}, {mode}: median {statistics.median(seconds[args.warmup:]):.3f} s/step, last loss {losses[mode]:.3f}", flush=True)
    reference = statistics.median(times["fp32"])
    rows = [{"mode": m, "steps timed": len(times[m]), "median s/step": statistics.median(times[m]), "min s/step": min(times[m]),
             "speed vs fp32": reference / statistics.median(times[m]), "last loss": losses[m]} for m in MODES]
    print(f"\n## LoRA training steps, batch {args.batch_size} x {args.max_length} tokens, {args.base_model} ({cpu_model()}; {' '.join(cpu['flags'])})\n")
    print(markdown_table(rows, list(rows[0])))
    if args.whole:
        whole = whole_trainings(args.data_dir, args.seed)
        print(f"\n## The default judge trained on the 7B labels per training precision ({cpu_model()})\n")
        print(markdown_table(whole, list(dict.fromkeys(k for r in whole for k in r))))


if __name__ == "__main__":
    main()
