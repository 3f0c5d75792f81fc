"""How a (prompt, response) pair is shown to a trained judge.

Names are masked by default: a judge used to compare groups must not be able to condition its
label on the name that signals the group.
"""
from __future__ import annotations

import re

NAME_PLACEHOLDER = "[NAME]"


def mask_name(text: str, name: str | None) -> str:
    if not name or not isinstance(name, str) or not name.strip():
        return text
    return re.sub(rf"(?<!\w){re.escape(name.strip())}(?!\w)", NAME_PLACEHOLDER, text)


def judge_inputs(prompts, responses, names=None, *, mask_names: bool = True) -> tuple[list[str], list[str]]:
    names = list(names) if names is not None and mask_names else [None] * len(responses)
    masked_p = [mask_name(str(p), n) for p, n in zip(prompts, names)]
    masked_r = [mask_name(str(r), n) for r, n in zip(responses, names)]
    return masked_p, masked_r


def encode_pairs(tokenizer, prompts, responses, *, max_length: int, tail_tokens: int = 0) -> dict[str, list[list[int]]]:
    """Token ids of (prompt, response) pairs within ``max_length``. A response too long is cut at the
    end (``tail_tokens=0``), or keeps its head and its last ``tail_tokens`` tokens, so a late refusal
    or a late partial compliance is still read, at the same bounded cost."""
    if tail_tokens <= 0:
        # The response is what the label is about: when too long, cut the response, keep the prompt.
        return tokenizer(list(prompts), list(responses), truncation="only_second" if max_length > 64 else True, max_length=max_length)
    template = _pair_template(tokenizer)
    special = len(template["prefix"]) + len(template["middle"]) + len(template["suffix"])
    out: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": []}
    if template["types"] is not None:
        out["token_type_ids"] = []
    for prompt, response in zip(prompts, responses):
        p_ids = tokenizer(str(prompt), add_special_tokens=False)["input_ids"][: max_length // 2]  # a prompt takes at most half
        r_ids = tokenizer(str(response), add_special_tokens=False)["input_ids"]
        room = max(max_length - special - len(p_ids), 1)
        if len(r_ids) > room:
            tail = min(tail_tokens, room // 2)
            r_ids = r_ids[: room - tail] + (r_ids[len(r_ids) - tail:] if tail else [])
        ids = template["prefix"] + p_ids + template["middle"] + r_ids + template["suffix"]
        out["input_ids"].append(ids)
        out["attention_mask"].append([1] * len(ids))
        if template["types"] is not None:
            t = template["types"]
            out["token_type_ids"].append(t["prefix"] + [t["a"]] * len(p_ids) + t["middle"] + [t["b"]] * len(r_ids) + t["suffix"])
    return out


def _pair_template(tokenizer) -> dict:
    """Where a tokenizer puts its special tokens around a pair (BERT: [CLS] a [SEP] b [SEP]; Llama:
    <s> a b), found by encoding a pair of one-token texts, so ids can be spliced in directly."""
    a = tokenizer("x", add_special_tokens=False)["input_ids"]
    b = tokenizer("y", add_special_tokens=False)["input_ids"]
    full = tokenizer("x", "y")
    ids = list(full["input_ids"])
    try:
        ia = next(i for i in range(len(ids)) if ids[i:i + len(a)] == a)
        ib = next(i for i in range(ia + len(a), len(ids)) if ids[i:i + len(b)] == b)
    except StopIteration:
        from judge.core.errors import UserError

        raise UserError(f"--tail-tokens is not supported for the tokenizer {type(tokenizer).__name__}; train without it") from None
    types = None
    if "token_type_ids" in full:
        tt = list(full["token_type_ids"])
        types = {"prefix": tt[:ia], "a": tt[ia], "middle": tt[ia + len(a):ib], "b": tt[ib], "suffix": tt[ib + len(b):]}
    return {"prefix": ids[:ia], "middle": ids[ia + len(a):ib], "suffix": ids[ib + len(b):], "types": types}
