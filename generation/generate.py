"""Batched, resumable sampling of chat-model outputs for prompt records (Hugging Face transformers)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import pandas as pd
import torch
from tqdm.auto import tqdm

from judge.core.errors import UserError
from judge.core.models import load_failure, resolve_model
from judge.core.records import JsonlCheckpoint

SYSTEM_PROMPTS = {
    # The system prompt of Chehbouni et al. 2024 for Llama 2 chat.
    "llama2-paper": "You are a helpful assistant. Complete the [BLANK].",
    "none": None,
}


@dataclass
class Decoding:
    max_new_tokens: int = 64
    temperature: float = 0.6  # Llama 2 chat's released generation defaults
    top_k: int = 0
    top_p: float = 0.9
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def generate_kwargs(self) -> dict:
        if self.greedy:
            return {"do_sample": False, "max_new_tokens": self.max_new_tokens, "temperature": None, "top_p": None, "top_k": None}
        return {"do_sample": True, "max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k or None}


def load_chat_model(spec: str, *, device: str = "auto"):
    """Tokenizer and model: bf16 and device_map='auto' on GPU (shards a 70B over one machine's GPUs), fp32 on CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(spec)
    use_gpu = torch.cuda.is_available() and device in ("auto", "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but no GPU is visible; use --device cpu or auto")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        if use_gpu:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, device_map="auto")
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device if device not in ("auto",) else "cpu")
    except OSError as exc:
        raise load_failure(spec, exc) from None
    tokenizer.padding_side = "left"  # decoder-only batching: pad on the left so generation continues real text
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise UserError(f"model {spec[:60]!r} has no chat template; use a chat/instruct model")
    return tokenizer, model.eval()


def chat_text(tokenizer, prompt: str, *, system_prompt: str | None, instruction: str) -> str:
    user = instruction.format(prompt=prompt)
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [{"role": "user", "content": user}]
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - some templates refuse a system role: fold it into the user turn
        merged = [{"role": "user", "content": f"{system_prompt}\n\n{user}" if system_prompt else user}]
        return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)


# What generate_outputs adds to each prompt record ("id" becomes the output's PROMPT_ID-sN on purpose).
GENERATED_COLUMNS = ("prompt_id", "sample", "response", "model", "system_prompt", "instruction", "temperature", "top_k", "top_p",
                     "max_new_tokens", "seed", "prompt_tokens", "response_tokens", "finish_reason")


def batch_plan(prompts: pd.DataFrame, samples: int, batch_size: int, lengths: dict[str, int]) -> list[list[tuple[str, int]]]:
    """Fixed batches of (prompt id, sample): similar lengths together, the same plan on every rerun."""
    pairs = sorted(((pid, s) for pid in prompts["id"] for s in range(1, samples + 1)), key=lambda p: (lengths[p[0]], p[0], p[1]))
    return [pairs[i : i + batch_size] for i in range(0, len(pairs), batch_size)]


def generate_outputs(
    prompts: pd.DataFrame,
    *,
    tokenizer,
    model,
    model_id: str,
    samples: int,
    decoding: Decoding,
    batch_size: int,
    system_prompt: str | None,
    instruction: str,
    checkpoint: JsonlCheckpoint | None = None,
    progress: bool = True,
) -> Iterator[dict]:
    """Yield finished output records batch by batch; with a checkpoint, skip pairs already written.

    Each batch is seeded from (seed, batch number) and counts only when all its outputs are
    written; a batch a crash left half-written is generated again whole, so a resumed run samples
    exactly what an uninterrupted one would have.
    """
    texts = {pid: chat_text(tokenizer, p, system_prompt=system_prompt, instruction=instruction) for pid, p in zip(prompts["id"], prompts["prompt"])}
    lengths = {pid: len(tokenizer(t, add_special_tokens=False).input_ids) for pid, t in texts.items()}
    records = prompts.set_index("id", drop=False)
    done = {(r["prompt_id"], int(r["sample"])) for r in checkpoint.rows()} if checkpoint else set()
    plan = batch_plan(prompts, samples, batch_size, lengths)
    todo = [(n, b) for n, b in enumerate(plan) if not all(pair in done for pair in b)]
    device = next(model.parameters()).device
    eos_ids = set(_as_list(model.generation_config.eos_token_id)) | {tokenizer.eos_token_id}
    bar = tqdm(total=sum(len(b) for _, b in todo), desc="generating", unit="output", disable=not progress, mininterval=1.0)
    for number, batch in todo:
        enc = tokenizer([texts[pid] for pid, _ in batch], return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        torch.manual_seed(decoding.seed * 1_000_003 + number)
        with torch.inference_mode():
            out = model.generate(**enc, **decoding.generate_kwargs(), pad_token_id=tokenizer.pad_token_id)
        new = out[:, enc["input_ids"].shape[1]:]
        rows = []
        for i, (pid, sample) in enumerate(batch):
            tokens = new[i].tolist()
            stop = next((j for j, t in enumerate(tokens) if t in eos_ids), None)
            generated = tokens[:stop] if stop is not None else tokens
            rows.append({
                **records.loc[pid].to_dict(),
                "id": f"{pid}-s{sample}", "prompt_id": pid, "sample": sample,
                "response": tokenizer.decode(generated, skip_special_tokens=True).strip(),
                "model": model_id, "system_prompt": system_prompt, "instruction": instruction,
                "temperature": decoding.temperature, "top_k": decoding.top_k, "top_p": decoding.top_p, "max_new_tokens": decoding.max_new_tokens,
                "seed": decoding.seed, "prompt_tokens": int(lengths[pid]), "response_tokens": len(generated),
                # No timings here: they belong to the manifest, and a resumed file must equal an uninterrupted one.
                "finish_reason": "stop" if stop is not None else "length",
            })
        if checkpoint:
            checkpoint.append(rows)
        bar.update(len(batch))
        yield from rows
    bar.close()


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
