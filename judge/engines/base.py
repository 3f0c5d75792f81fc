"""What every engine offers: sampled chat completions, and scores or choices over a fixed set of labels."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

# An answer is a label when, without its surrounding whitespace, it is one; and only when it is no longer than the
# longest label and this much whitespace: "refusal" and five million spaces is not an answer of the labels.
LABEL_SLACK = 16


def as_label(text: object, labels: Sequence[str]) -> str | None:
    """The label an engine's answer names (the text stripped of surrounding whitespace), or None: one meaning for
    the judge that reads the answer and the engine that counts answers outside the labels."""
    if not isinstance(text, str) or not labels or len(text) > max(map(len, labels)) + LABEL_SLACK:
        return None
    stripped = text.strip()
    return stripped if stripped in labels else None


@dataclass(frozen=True)
class ChatRequest:
    key: str  # the plan's key of the row this request fills
    messages: tuple[tuple[str, str], ...]  # (role, content) pairs; the engine applies the chat template
    seed: int  # this one sample's seed (engines that seed per request use it)


@dataclass
class Completion:
    key: str
    text: str | None  # None when the request failed every retry
    finish_reason: str  # "stop", "length", or "failed"
    prompt_tokens: int | None = None
    response_tokens: int | None = None
    error: str | None = None  # why it failed, after the retries


class Engine:
    """One model behind one engine. A batch method gets a whole batch of the runner's plan at once."""

    name: ClassVar[str]
    # Whether a rerun gives the same rows: true in-process and for vLLM offline with seeds; a server
    # engine says so only where the server is seeded and batch-invariant.
    reproducible: ClassVar[bool] = True

    def generate(self, requests: Sequence[ChatRequest], decoding: Any, *, batch_seed: int) -> list[Completion]:
        """Sample one completion per request. ``batch_seed`` is for engines that sample a batch from one RNG."""
        raise NotImplementedError

    def label_logprobs(self, requests: Sequence[ChatRequest], labels: Sequence[str]) -> list[dict[str, float]] | None:
        """log P(label + end of turn | chat) for each request and label, exactly; None where this engine cannot."""
        raise NotImplementedError

    def choose(
        self, requests: Sequence[ChatRequest], labels: Sequence[str], *, max_new_tokens: int
    ) -> list[Completion]:
        """A completion constrained to one of ``labels`` (the text may still fall outside if the server ignores it)."""
        raise NotImplementedError

    def prompt_size(self, messages: tuple[tuple[str, str], ...]) -> int:
        """What a fixed plan sorts chats by, so a batch holds similar lengths: tokens where the engine can
        count them here, characters otherwise."""
        return sum(len(content) for _, content in messages)

    def describe(self) -> dict[str, Any]:
        """What the manifest records: the model, its revision, the engine's settings; never a secret."""
        return {"engine": self.name}


@dataclass(frozen=True)
class Decoding:
    """How to sample, for every engine alike (each maps it to its own arguments)."""

    max_new_tokens: int = 64
    temperature: float = 0.6  # Llama 2 chat's released generation defaults
    top_k: int = 0  # 0: no top-k cut
    top_p: float = 0.9
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


def is_logprob(value: Any) -> bool:
    """A server's log-probability as it may be trusted: a real number (not a bool), finite or -inf, at most 0
    (1e-6 of rounding allowed). The trie scorer and the model fingerprint read answers through it."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (math.isfinite(value) or value == -math.inf)
        and value <= 1e-6
    )
