"""The transformers engine: the model loaded in this process (bf16 on a GPU, fp32 on the CPU).

torch and transformers are imported when an engine is built, not with this module: ``--help`` and the
engine flags stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from judge.core.errors import UserError
from judge.engines.base import ChatRequest, Completion, Decoding, Engine


@dataclass
class Options:
    """The transformers engine takes no options of its own beyond --device."""


def load_chat_model(spec: str, *, device: str = "auto", path: str | None = None):
    """Tokenizer and model: bf16 and device_map='auto' on GPU (shards a 70B over one machine's GPUs), fp32 on CPU.
    ``path`` is where ``spec`` resolved to, when the caller has resolved it already."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from judge.engines.models import load_failure, resolve_model

    path = path or resolve_model(spec)
    use_gpu = torch.cuda.is_available() and device in ("auto", "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but no GPU is visible; use --device cpu or auto")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        if use_gpu:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, device_map="auto")
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(
                device if device not in ("auto",) else "cpu"
            )
    except OSError as exc:
        raise load_failure(spec, exc) from None
    tokenizer.padding_side = "left"  # decoder-only batching: pad on the left so generation continues real text
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise UserError(f"model {spec[:60]!r} has no chat template; use a chat/instruct model")
    return tokenizer, model.eval()


def chat_text(tokenizer, messages: Sequence[tuple[str, str]]) -> str:
    """The chat as the model's template writes it, ready for the assistant's turn."""
    turns = [{"role": role, "content": content} for role, content in messages]
    try:
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - some templates refuse a system role: fold it into the user turn
        return tokenizer.apply_chat_template(_without_system(turns), tokenize=False, add_generation_prompt=True)


def _without_system(turns: list[dict[str, str]]) -> list[dict[str, str]]:
    system = "\n\n".join(t["content"] for t in turns if t["role"] == "system")
    rest = [dict(t) for t in turns if t["role"] != "system"]
    if system and rest:
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    return rest


def generate_kwargs(decoding: Decoding) -> dict[str, Any]:
    if decoding.greedy:
        return {
            "do_sample": False,
            "max_new_tokens": decoding.max_new_tokens,
            "temperature": None,
            "top_p": None,
            "top_k": None,
        }
    return {
        "do_sample": True,
        "max_new_tokens": decoding.max_new_tokens,
        "temperature": decoding.temperature,
        "top_p": decoding.top_p,
        "top_k": decoding.top_k or None,
    }


class TransformersEngine(Engine):
    name = "hf"

    def __init__(self, model: str, *, device: str = "auto", options: Options | None = None):
        from judge.engines.models import model_revision, resolve_model

        self.spec, self.options = model, options or Options()
        path = resolve_model(model)
        self.revision = model_revision(path)
        self.tokenizer, self.model = load_chat_model(model, device=device, path=path)
        self.device = next(self.model.parameters()).device
        self.eos_ids = set(_as_list(self.model.generation_config.eos_token_id)) | {self.tokenizer.eos_token_id}

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "model": self.spec,
            "revision": self.revision,
            "class": type(self.model).__name__,
            "dtype": str(next(self.model.parameters()).dtype),
            "device": str(self.device),
        }

    def prompt_size(self, messages: tuple[tuple[str, str], ...]) -> int:
        return len(self.tokenizer(chat_text(self.tokenizer, messages), add_special_tokens=False).input_ids)

    # -- sampled completions (generation) ------------------------------------------------------
    def generate(self, requests: Sequence[ChatRequest], decoding: Any, *, batch_seed: int) -> list[Completion]:
        """One left-padded ``generate`` call for the whole batch, sampled from one RNG seeded with ``batch_seed``:
        the same batch gives the same texts on every run, resumed or not."""
        import torch

        texts = [chat_text(self.tokenizer, r.messages) for r in requests]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        torch.manual_seed(batch_seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, **generate_kwargs(decoding), pad_token_id=self.tokenizer.pad_token_id)
        new = out[:, enc["input_ids"].shape[1] :]
        return [
            self._completion(r, new[i].tolist(), int(enc["attention_mask"][i].sum())) for i, r in enumerate(requests)
        ]

    def _completion(self, request: ChatRequest, tokens: list[int], prompt_tokens: int) -> Completion:
        stop = next((j for j, t in enumerate(tokens) if t in self.eos_ids), None)
        generated = tokens[:stop] if stop is not None else tokens
        return Completion(
            key=request.key,
            text=self.tokenizer.decode(generated, skip_special_tokens=True).strip(),
            finish_reason="stop" if stop is not None else "length",
            prompt_tokens=prompt_tokens,
            response_tokens=len(generated),
        )

    # -- the labels of a taxonomy (the LLM judge) ----------------------------------------------
    def label_logprobs(self, requests: Sequence[ChatRequest], labels: Sequence[str]) -> list[dict[str, float]] | None:
        raise NotImplementedError

    def choose(
        self, requests: Sequence[ChatRequest], labels: Sequence[str], *, max_new_tokens: int
    ) -> list[Completion]:
        raise NotImplementedError


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
