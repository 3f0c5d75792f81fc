"""Engines compute a model's outputs: transformers in this process, vLLM, an OpenAI-compatible server.

Generation and the LLM judge ask an engine by name. Each engine is one module defining ``Options``
(a dataclass: its flags, help and validation) and an ``Engine`` subclass; adding one is its module
plus one line here. Modules are imported only when asked for, so ``--help`` stays fast.
"""
from __future__ import annotations

import importlib

from judge.core.errors import UserError
from judge.engines.base import ChatRequest, Completion, Engine

ENGINES = {
    "hf": "judge.engines.transformers",
    "openai": "judge.engines.openai",
}

__all__ = ["ENGINES", "ChatRequest", "Completion", "Engine", "engine_module"]


def engine_module(name: str):
    if name not in ENGINES:
        raise UserError(f"unknown --engine {name!r}; use one of {', '.join(ENGINES)}")
    return importlib.import_module(ENGINES[name])
