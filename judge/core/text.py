"""How a (prompt, response) pair is shown to a trained judge.

Names are masked by default: a judge used to compare groups must not be able to condition its
label on the name that signals the group.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property

from judge.core.errors import UserError

NAME_PLACEHOLDER = "[NAME]"


def mask_name(text: str, name: str | None) -> str:
    if not name or not isinstance(name, str) or not name.strip():
        return text
    return re.sub(rf"(?<!\w){re.escape(name.strip())}(?!\w)", NAME_PLACEHOLDER, text)


MAX_MASKED_NAMES = 5000  # a names file of a study's names; judge.json holds them and stays under its 1 MiB bound
MAX_NAME_CHARS = 100


def names_pattern(names) -> re.Pattern | None:
    """One pattern for many names, longest first so 'Mary Ann' is masked whole before 'Mary' is."""
    names = sorted({n.strip() for n in names if isinstance(n, str) and n.strip()}, key=lambda n: (-len(n), n))
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, names)) + r")(?!\w)") if names else None


def record_names(value) -> tuple[str, ...]:
    """A record's own names (--mask-names COL): a list of names, or one text with names separated by ';'."""
    if value is None or (isinstance(value, float) and value != value):
        return ()
    if isinstance(value, str):
        return tuple(n.strip() for n in value.split(";") if n.strip())
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ndarray":
        return tuple(str(n).strip() for n in value if isinstance(n, str) and n.strip())
    return (str(value),)


@dataclass(frozen=True)
class TextView:
    """What a trained judge reads of a record. Recorded in its directory (judge.json's ``text_view``),
    so labelling reads records exactly as training did: with ``prompt`` off the prompt is never part
    of the input, so no prompt can change a label; names are masked from the ``name`` column
    (``mask_names``), from a list (``names``, masked in every record) and from each record's
    ``names_column``."""

    prompt: bool = True
    mask_names: bool = True
    names: tuple[str, ...] = ()
    names_column: str | None = None

    @cached_property
    def _pattern(self) -> re.Pattern | None:
        return names_pattern(self.names) if self.mask_names else None

    def settings(self) -> dict:
        return {"prompt": self.prompt, "names": list(self.names), "names_column": self.names_column}

    @property
    def masks_other_names(self) -> bool:
        return bool(self.mask_names and (self.names or self.names_column))

    def mask(self, text: str, name: str | None, own: tuple[str, ...] = ()) -> str:
        if not self.mask_names:
            return text
        text = mask_name(text, name)
        if self._pattern is not None:
            text = self._pattern.sub(NAME_PLACEHOLDER, text)
        mine = names_pattern(own) if own else None
        return mine.sub(NAME_PLACEHOLDER, text) if mine is not None else text

    def inputs(self, prompts, responses, names=None, own_names=None) -> tuple[list[str], list[str], list[bool]]:
        """(prompts, responses, whether a name was masked) as the judge reads them."""
        n = len(responses)
        names = list(names) if names is not None else [None] * n
        own_names = list(own_names) if own_names is not None else [()] * n
        out_p, out_r, masked = [], [], []
        for p, r, name, own in zip(prompts, responses, names, own_names):
            p = str(p) if self.prompt else ""
            mp, mr = (
                self.mask(p, name if isinstance(name, str) else None, own),
                self.mask(str(r), name if isinstance(name, str) else None, own),
            )
            out_p.append(mp)
            out_r.append(mr)
            masked.append(mp != p or mr != str(r))
        return out_p, out_r, masked


MAX_CHAT_TURNS = 1000  # a conversation of more turns is read as the text it is


def chat_messages(prompt: str) -> list[dict] | None:
    """The messages of a prompt given as a list of chat messages (the JSON text of ``[{"role": ...,
    "content": ...}, ...]``, as records read a list cell), each content as text; None for any other prompt."""
    if prompt.lstrip()[:1] != "[":
        return None
    try:
        messages = json.loads(prompt)
    except ValueError:
        return None
    if not (isinstance(messages, list) and messages and len(messages) <= MAX_CHAT_TURNS):
        return None
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) and "content" in m for m in messages):
        return None
    return [{"role": m["role"].strip(), "content": _message_text(m["content"])} for m in messages]


def render_prompt(prompt: str, tokenizer=None) -> str:
    """A prompt as the judge reads it: a conversation given as a list of chat messages becomes the
    tokenizer's chat template (ending where the assistant's reply, the response, begins) when the judge's
    tokenizer has one, else one "role: content" line per turn; any other prompt is returned unchanged.
    Training and labelling render alike (``encode_pairs``; TF-IDF's ``tfidf_text``)."""
    messages = chat_messages(prompt)
    if messages is None:
        return prompt
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # a template that refuses these roles (no system turn, say): the plain rendering
            pass
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def _message_text(content) -> str:
    """A message's text: a string, or the text parts of a list of content parts (OpenAI's form)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"] if isinstance(part, dict) and isinstance(part.get("text"), str) else str(part)
            for part in content
            if not isinstance(part, dict) or part.get("type", "text") == "text"
        )
    return "" if content is None else json.dumps(content, ensure_ascii=False, default=str)


def encode_pairs(tokenizer, prompts, responses, *, max_length: int, tail_tokens: int = 0) -> dict[str, list[list[int]]]:
    """Token ids of (prompt, response) pairs within ``max_length``. A response too long is cut at the
    end (``tail_tokens=0``), or keeps its head and its last ``tail_tokens`` tokens, so a late refusal
    or a late partial compliance is still read, at the same bounded cost. A prompt that would leave the
    response less than half the window (a long conversation) keeps its last half-window of tokens."""
    prompts = [render_prompt(str(p), tokenizer) for p in prompts]  # a conversation as the tokenizer's chat
    if tail_tokens <= 0:
        # The response is what the label is about: when too long, cut the response, keep the prompt.
        responses = list(responses)
        if max_length <= 64:
            return tokenizer(prompts, responses, truncation=True, max_length=max_length)
        prompts, cut = _prompts_within_half(tokenizer, prompts, responses, max_length=max_length)
        if not cut:
            return tokenizer(prompts, responses, truncation="only_second", max_length=max_length)
        kept = [i for i in range(len(prompts)) if i not in cut]
        parts = [
            (
                idx,
                tokenizer(
                    [prompts[i] for i in idx], [responses[i] for i in idx], truncation=how, max_length=max_length
                ),
            )
            for idx, how in ((kept, "only_second"), (sorted(cut), "longest_first"))
            if idx
        ]
        out: dict[str, list] = {key: [None] * len(prompts) for key in parts[0][1].keys()}
        for idx, encoded in parts:
            for key in out:
                for j, i in enumerate(idx):
                    out[key][i] = encoded[key][j]
        return out
    template = _pair_template(tokenizer)
    special = len(template["prefix"]) + len(template["middle"]) + len(template["suffix"])
    out: dict[str, list[list[int]]] = {"input_ids": [], "attention_mask": []}
    if template["types"] is not None:
        out["token_type_ids"] = []
    for prompt, response in zip(prompts, responses):
        p_ids = tokenizer(str(prompt), add_special_tokens=False)["input_ids"][
            : max_length // 2
        ]  # a prompt takes at most half
        r_ids = tokenizer(str(response), add_special_tokens=False)["input_ids"]
        room = max(max_length - special - len(p_ids), 1)
        if len(r_ids) > room:
            tail = min(tail_tokens, room // 2)
            r_ids = r_ids[: room - tail] + (r_ids[len(r_ids) - tail :] if tail else [])
        ids = template["prefix"] + p_ids + template["middle"] + r_ids + template["suffix"]
        out["input_ids"].append(ids)
        out["attention_mask"].append([1] * len(ids))
        if template["types"] is not None:
            t = template["types"]
            out["token_type_ids"].append(
                t["prefix"] + [t["a"]] * len(p_ids) + t["middle"] + [t["b"]] * len(r_ids) + t["suffix"]
            )
    return out


def _prompts_within_half(tokenizer, prompts: list[str], responses: list[str], *, max_length: int):
    """(prompts, indices cut): where a pair exceeds the window and its prompt takes more than half of it,
    the prompt keeps its last half-window of tokens (a conversation's latest turns, what the response
    answers), so the response keeps its share instead of being cut to nothing (or failing to be cut:
    "Sequence to truncate too short"). Pairs that fit, or whose prompt is short, are unchanged."""
    special = tokenizer.num_special_tokens_to_add(pair=True)
    half = max((max_length - special) // 2, 1)
    fast = getattr(tokenizer, "is_fast", False)
    p_enc = tokenizer(prompts, add_special_tokens=False, return_offsets_mapping=fast)
    long = [i for i, ids in enumerate(p_enc["input_ids"]) if len(ids) > half]
    if not long:
        return prompts, set()
    r_lens = [len(ids) for ids in tokenizer([responses[i] for i in long], add_special_tokens=False)["input_ids"]]
    prompts, cut = list(prompts), set()
    for i, r_len in zip(long, r_lens):
        ids = p_enc["input_ids"][i]
        if len(ids) + r_len + special <= max_length:
            continue
        if fast:
            prompts[i] = prompts[i][p_enc["offset_mapping"][i][len(ids) - half][0] :]
        else:
            prompts[i] = tokenizer.decode(ids[len(ids) - half :])
        cut.add(i)
    return prompts, cut


def _pair_template(tokenizer) -> dict:
    """Where a tokenizer puts its special tokens around a pair (BERT: [CLS] a [SEP] b [SEP]; Llama:
    <s> a b), found by encoding a pair of one-token texts, so ids can be spliced in directly."""
    a = tokenizer("x", add_special_tokens=False)["input_ids"]
    b = tokenizer("y", add_special_tokens=False)["input_ids"]
    full = tokenizer("x", "y")
    ids = list(full["input_ids"])
    try:
        ia = next(i for i in range(len(ids)) if ids[i : i + len(a)] == a)
        ib = next(i for i in range(ia + len(a), len(ids)) if ids[i : i + len(b)] == b)
    except StopIteration:
        raise UserError(
            f"--tail-tokens is not supported for the tokenizer {type(tokenizer).__name__}; train without it"
        ) from None
    types = None
    if "token_type_ids" in full:
        tt = list(full["token_type_ids"])
        types = {
            "prefix": tt[:ia],
            "a": tt[ia],
            "middle": tt[ia + len(a) : ib],
            "b": tt[ib],
            "suffix": tt[ib + len(b) :],
        }
    return {"prefix": ids[:ia], "middle": ids[ia + len(a) : ib], "suffix": ids[ib + len(b) :], "types": types}
