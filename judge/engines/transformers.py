"""The transformers engine: the model loaded in this process (bf16 on a GPU, fp32 on the CPU)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from judge.engines.base import ChatRequest, Completion, Engine


@dataclass
class Options:
    """The transformers engine takes no options of its own beyond --device."""


class TransformersEngine(Engine):
    name = "hf"

    # -- sampled completions (generation) ------------------------------------------------------
    def generate(self, requests: Sequence[ChatRequest], decoding: Any, *, batch_seed: int) -> list[Completion]:
        raise NotImplementedError

    # -- the labels of a taxonomy (the LLM judge) ----------------------------------------------
    def label_logprobs(self, requests: Sequence[ChatRequest], labels: Sequence[str]) -> list[dict[str, float]] | None:
        raise NotImplementedError

    def choose(self, requests: Sequence[ChatRequest], labels: Sequence[str], *, max_new_tokens: int) -> list[Completion]:
        raise NotImplementedError
