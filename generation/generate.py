"""Batched, resumable sampling of chat-model outputs for prompt records, through an engine.

The runner (``judge.run.runner``) owns the plan, the checkpoint and the shares; an engine
(``judge.engines``) computes a batch's completions; this module turns prompt records into chat
requests and completions into output records.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pandas as pd

from judge.core.records import JsonlCheckpoint
from judge.engines import ChatRequest, Completion, Decoding, Engine
from judge.run.runner import Batch, Executor, InProcess, RunResult, Shard, fixed_plan, run_plan

__all__ = ["GENERATED_COLUMNS", "SYSTEM_PROMPTS", "Decoding", "Generated", "Sampling", "generate_outputs", "output_id"]

SYSTEM_PROMPTS = {
    # The system prompt of Chehbouni et al. 2024 for Llama 2 chat.
    "llama2-paper": "You are a helpful assistant. Complete the [BLANK].",
    "none": None,
}

# What generate_outputs adds to each prompt record ("id" becomes the output's PROMPT_ID-sN on purpose).
GENERATED_COLUMNS = (
    "prompt_id",
    "sample",
    "response",
    "model",
    "system_prompt",
    "instruction",
    "temperature",
    "top_k",
    "top_p",
    "max_new_tokens",
    "seed",
    "prompt_tokens",
    "response_tokens",
    "finish_reason",
)


def output_id(prompt_id: str, sample: int) -> str:
    return f"{prompt_id}-s{sample}"


def batch_seed(decoding: Decoding, number: int) -> int:
    """One RNG seed per batch of the plan: a batch samples the same texts on every run, in any shard."""
    return decoding.seed * 1_000_003 + number


def request_seed(decoding: Decoding, key: str) -> int:
    """One seed per output, for engines that seed each request (servers)."""
    return int.from_bytes(hashlib.sha256(f"{decoding.seed}:{key}".encode("utf-8")).digest()[:4], "big")


@dataclass(frozen=True)
class Sampling:
    """What every output of a run shares: the model as named, the chat around each prompt, the decoding."""

    model_id: str
    decoding: Decoding
    system_prompt: str | None
    instruction: str

    def messages(self, prompt: str) -> tuple[tuple[str, str], ...]:
        user = self.instruction.format(prompt=prompt)
        return ((("system", self.system_prompt),) if self.system_prompt else ()) + (("user", user),)


class GenerationWorker:
    """The runner's Worker for generation: a batch of (prompt id, sample) pairs -> output records."""

    def __init__(self, engine: Engine, records: dict[str, dict[str, Any]], sampling: Sampling):
        self.engine, self.records, self.sampling = engine, records, sampling
        self.chats = {pid: sampling.messages(r["prompt"]) for pid, r in records.items()}

    def compute(self, batch: Batch) -> list[dict[str, Any]]:
        decoding = self.sampling.decoding
        requests = [
            ChatRequest(key=key, messages=self.chats[pid], seed=request_seed(decoding, key))
            for key, (pid, _) in zip(batch.keys, batch.items)
        ]
        completions = self.engine.generate(requests, decoding, batch_seed=batch_seed(decoding, batch.number))
        if [c.key for c in completions] != list(batch.keys):
            raise RuntimeError(
                f"{type(self.engine).__name__}.generate returned completions for other keys than batch {batch.number}'s"
            )
        return [self.row(pid, sample, c) for (pid, sample), c in zip(batch.items, completions)]

    def row(self, pid: str, sample: int, completion: Completion) -> dict[str, Any]:
        s, d = self.sampling, self.sampling.decoding
        return {
            **self.records[pid],
            "id": completion.key,
            "prompt_id": pid,
            "sample": sample,
            "response": completion.text,
            "model": s.model_id,
            "system_prompt": s.system_prompt,
            "instruction": s.instruction,
            "temperature": d.temperature,
            "top_k": d.top_k,
            "top_p": d.top_p,
            "max_new_tokens": d.max_new_tokens,
            "seed": d.seed,
            "prompt_tokens": completion.prompt_tokens,
            "response_tokens": completion.response_tokens,
            # No timings here: they belong to the manifest, and a resumed file must equal an uninterrupted one.
            "finish_reason": completion.finish_reason,
            # only on a row whose request failed every retry (a server engine's): the column exists only then
            **({"failure_reason": completion.error} if completion.finish_reason == "failed" else {}),
        }


@dataclass(frozen=True)
class BuildGenerationWorker:
    """Opens the engine and builds the generation worker wherever it is called (another process, a Ray actor)."""

    engine: str
    device: str
    options: Any
    model: str
    records: dict[str, dict[str, Any]]
    sampling: Sampling

    def __call__(self) -> GenerationWorker:
        from judge.engines import open_engine

        return GenerationWorker(
            open_engine(self.engine, self.model, device=self.device, options=self.options), self.records, self.sampling
        )


@dataclass
class Generated:
    rows: list[dict[str, Any]]  # the run's outputs (its share's, with a shard), in the whole output's order
    positions: list[int]  # where each of ``rows`` goes in the whole output (prompt order, then sample)
    run: RunResult
    total: int = 0  # outputs in the whole output
    new_tokens: int = 0  # tokens sampled in this run (not those resumed)


def generate_outputs(
    prompts: pd.DataFrame,
    *,
    engine: Engine,
    model_id: str,
    samples: int,
    decoding: Decoding,
    batch_size: int,
    system_prompt: str | None,
    instruction: str,
    checkpoint: JsonlCheckpoint | None = None,
    progress: bool = True,
    shard: Shard | None = None,
    executor: Executor | None = None,
    engine_spec: tuple[str, str, Any] | None = None,
) -> Generated:
    """Sample ``samples`` outputs per prompt in a fixed plan of batches; with a checkpoint, reuse the
    batches already written whole.

    Each batch is seeded from (seed, batch number) and counts only when all its outputs are
    written; a batch a crash left half-written is generated again whole, so a resumed run samples
    exactly what an uninterrupted one would have, and a shard what its batches give in one run.
    """
    records, sampling, worker = _worker(prompts, engine, model_id, decoding, system_prompt, instruction)
    sizes = {pid: engine.prompt_size(chat) for pid, chat in worker.chats.items()}
    pairs = [(pid, s) for pid in prompts["id"] for s in range(1, samples + 1)]
    # ties by (prompt id, sample number), not by the output id's text: s10 after s9
    plan = fixed_plan(
        pairs, key=lambda p: output_id(*p), size=lambda p: (sizes[p[0]], p[0], p[1]), batch_size=batch_size
    )
    # An executor elsewhere (a Ray actor) builds its own engine from (name, device, options): picklable.
    make_worker = (
        BuildGenerationWorker(*engine_spec, model=model_id, records=records, sampling=sampling)
        if engine_spec
        else (lambda: worker)
    )
    run = run_plan(
        plan,
        make_worker,
        key_column="id",
        checkpoint=checkpoint,
        executor=executor or InProcess(worker),
        shard=shard,
        progress=progress,
        desc="generating",
        unit="output",
    )
    keys = [output_id(*p) for p in pairs]
    positions = [n for n, key in enumerate(keys) if key in run.rows]
    new_tokens = sum(run.rows[k]["response_tokens"] or 0 for k in run.computed_keys)
    return Generated(
        rows=[run.rows[keys[n]] for n in positions],
        positions=positions,
        run=run,
        total=len(keys),
        new_tokens=new_tokens,
    )


def _worker(
    prompts: pd.DataFrame,
    engine: Engine,
    model_id: str,
    decoding: Decoding,
    system_prompt: str | None,
    instruction: str,
):
    records = {pid: r for pid, r in zip(prompts["id"], prompts.to_dict(orient="records"))}
    sampling = Sampling(model_id=model_id, decoding=decoding, system_prompt=system_prompt, instruction=instruction)
    return records, sampling, GenerationWorker(engine, records, sampling)


def retry_failed(
    prompts: pd.DataFrame,
    *,
    keys: set[str],
    engine: Engine,
    model_id: str,
    samples: int,
    decoding: Decoding,
    batch_size: int,
    system_prompt: str | None,
    instruction: str,
    progress: bool = True,
) -> RunResult:
    """Sample again only the outputs ``keys`` names (those whose requests failed every retry); the resumable run
    appends them to its checkpoint, where the later copy wins. Only a server engine fails rows, and it seeds each
    request by its output id, so an output asked again in another batch is sampled as it would have been."""
    records, sampling, worker = _worker(prompts, engine, model_id, decoding, system_prompt, instruction)
    pairs = [(pid, s) for pid in prompts["id"] for s in range(1, samples + 1) if output_id(pid, s) in keys]
    plan = fixed_plan(pairs, key=lambda p: output_id(*p), size=lambda p: (p[0], p[1]), batch_size=batch_size)
    return run_plan(
        plan,
        lambda: worker,
        key_column="id",
        executor=InProcess(worker),
        progress=progress,
        desc="retrying failed",
        unit="output",
    )
