"""Sample outputs from a chat model for a prompt set.

Examples:
    python -m generation --prompts runs/prompts.jsonl --samples 3 --out runs/outputs.jsonl
    python -m generation --model meta-llama/Llama-2-7b-chat-hf --prompts runs/paper-prompts.jsonl \\
        --system-prompt llama2-paper --samples 3 --batch-size 64 --out runs/llama2-7b.jsonl
    python -m generation --prompts runs/prompts.jsonl --temperature 0 --max-new-tokens 40 --out runs/greedy.jsonl
    python -m generation --prompts runs/prompts.jsonl --shard 1/2 --out runs/part1.jsonl   # and 2/2 elsewhere, then:
    python -m judge.join runs/part1.jsonl runs/part2.jsonl --out runs/outputs.jsonl

Uses the model's chat template; --system-prompt takes text or a preset (llama2-paper: "You are a
helpful assistant. Complete the [BLANK]."). Batched left-padded generate, bf16 and device_map="auto"
on GPU, fp32 on CPU. Resumable: rerun the same command after a crash and only the missing
(prompt, sample) pairs are generated. The default model is the bundled SmolLM2-135M-Instruct. The
model runs in an engine (--engine; hf: transformers in this process); --shard I/N samples only a
share of the batch plan, and python -m judge.join joins the shares to the bytes of one whole run.
Through a server, a sample whose requests failed every retry is a row with finish_reason "failed": the
run says "complete with N failed" and exits 3 (--allow-failed: 0; 2 is bad input); the same command
again asks again for those only, and exits 0 once every row is filled.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from generation.generate import GENERATED_COLUMNS, SYSTEM_PROMPTS, Decoding, generate_outputs, retry_failed
from judge.core.config import (
    check_format_template,
    check_fraction,
    check_non_negative,
    check_positive,
    parser_for,
    run_command,
)
from judge.core.devices import THREADS_HELP, torch_threads
from judge.core.errors import UserError, clip, note_failed_rows
from judge.core.manifest import fingerprint
from judge.core.outputs import claim_for
from judge.core.records import SHADOW, file_format, read_records, user_columns, write_records
from judge.engines import ENGINES, add_engine_arguments, engine_module, engine_options, open_engine, public_options
from judge.engines.models import SMOLLM2
from judge.run.ray_executor import RAY_FLAGS, executor_for
from judge.run.resumable import ResumableRun, failed_line, run_identity
from judge.run.runner import Shard


@dataclass
class Config:
    prompts: str = field(
        metadata={
            "help": "prompt records from python -m generation.prompts (or any file with an id and a prompt column)"
        }
    )
    out: str = field(metadata={"help": "output records (.jsonl, .csv or .parquet)"})
    model: str = field(
        default=SMOLLM2,
        metadata={
            "help": "chat model path or id (default: %(default)s, SmolLM2-135M-Instruct); a .gguf file works too"
        },
    )
    samples: int = field(default=3, metadata={"help": "outputs per prompt"})
    system_prompt: str | None = field(
        default="llama2-paper", metadata={"help": "system prompt text, or a preset: llama2-paper, none"}
    )
    instruction: str = field(
        default="{prompt}", metadata={"help": "user message, with {prompt} where the filled template goes"}
    )
    max_new_tokens: int = 64
    temperature: float = field(default=0.6, metadata={"help": "0 for greedy"})
    top_k: int = field(default=0, metadata={"help": "0 for none"})
    top_p: float = 0.9
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    batch_size: int = field(default=16, metadata={"help": "sequences per generate call"})
    device: str = field(default="auto", metadata={"help": "auto (GPU when present), cpu, cuda"})
    threads: int = field(default=1, metadata={"help": THREADS_HELP})
    id_column: str | None = field(
        default=None, metadata={"metavar": "COL", "help": "the prompt file's id column (default: id, else row numbers)"}
    )
    prompt_column: str | None = field(
        default=None, metadata={"metavar": "COL", "help": "the prompt file's prompt column (default: prompt)"}
    )
    encoding: str = "utf-8"
    progress: bool = field(default=True, metadata={"help": "no progress bar"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output (otherwise a rerun resumes)"})
    shard: str | None = field(
        default=None,
        metadata={
            "metavar": "I/N",
            "help": "sample only share I of N of the batch plan (e.g. 1/4; "
            "resumable like a whole run); python -m judge.join joins the N parts into the whole output",
        },
    )
    allow_failed: bool = field(
        default=False,
        metadata={
            "help": "exit 0 when the run completes with rows whose requests failed every retry (a server engine's); "
            "by default it exits 3 (2 is bad input), so a script notices; a rerun that fills them exits 0"
        },
    )
    engine: str = field(
        default="hf",
        metadata={
            "help": f"what runs the model: {', '.join(ENGINES)} (default: %(default)s, transformers in this process)"
        },
    )
    # the engine's own flags (its module's Options), by field name
    engine_options: dict | None = field(default=None, metadata={"flags": add_engine_arguments})
    # never part of what a resume must match: Ray gives the same bytes
    ray: str | None = field(default=None, metadata=RAY_FLAGS["ray"])  # an address, or "local"
    ray_actors: int | None = field(default=None, metadata=RAY_FLAGS["ray_actors"])
    ray_gpus: float | None = field(default=None, metadata=RAY_FLAGS["ray_gpus"])  # per actor

    def __post_init__(self):
        from judge.run.ray_executor import check_ray_settings

        Shard.parse(self.shard)
        check_ray_settings(self)
        engine_module(self.engine)
        engine_options(self.engine, self.engine_options)
        check_positive(self, "samples", "max_new_tokens", "batch_size", "threads")
        check_non_negative(self, "temperature", "top_k")
        check_fraction(self, "top_p", low_open=True)
        from judge.engines.models import check_local_model

        check_local_model(self.model)


def refuse_generated_columns(prompts: pd.DataFrame, *, source: str) -> None:
    """A prompt file's own response/model/sample ... would be overwritten by the generated ones: refuse."""
    from judge.core.errors import short_list

    own = set(user_columns(prompts, prompts.attrs["column_map"]).columns)
    taken = [c for c in GENERATED_COLUMNS if c in own]
    if SHADOW + "id" in prompts.columns and "input_id" in own:  # the file's own (typed) ids are written as input_id
        taken.append("input_id")
    if taken:
        raise UserError(
            f"{Path(source).name} already has column(s) {short_list(taken, limit=4)}, which generation writes; "
            f"rename or drop them in the prompt file (e.g. {taken[0]} -> prompt_{taken[0]})"
        )


def main(config: Config) -> pd.DataFrame:
    with claim_for(config, "generation", inputs=("prompts", "model"), directory=False):
        return _main(config)


def _main(config: Config) -> pd.DataFrame:
    # before the model loads; a vLLM engine or a server sizes its own threads
    with torch_threads(config.threads) if config.engine == "hf" else contextlib.nullcontext():
        return _generate(config)


def _generate(config: Config) -> pd.DataFrame:
    out = Path(config.out)
    file_format(out)
    if "{prompt}" not in config.instruction:
        raise UserError("--instruction must contain {prompt}, where the filled template goes")
    check_format_template(config.instruction, {"prompt"}, what="--instruction")
    system_prompt = SYSTEM_PROMPTS.get(config.system_prompt, config.system_prompt) if config.system_prompt else None
    prompts = read_records(
        config.prompts,
        encoding=config.encoding,
        required=("prompt",),
        id_column=config.id_column,
        prompt_column=config.prompt_column,
    )
    refuse_generated_columns(prompts, source=config.prompts)
    blank = prompts["prompt"].isna() | (prompts["prompt"].astype(str).str.strip() == "")
    if blank.any():
        first = prompts.index[blank][0]
        raise UserError(
            f"{config.prompts}: {int(blank.sum())} prompt(s) are empty or missing (first: row {first + 1}, id "
            f"{clip(prompts.loc[first, 'id'])}); "
            "fix or remove them before generating"
        )
    options = engine_options(config.engine, config.engine_options)
    if config.engine == "openai":
        from judge.engines.openai import concurrency_note

        note = concurrency_note(options, config.batch_size)
        if note:
            print(note, file=sys.stderr)
    settings = {**vars(config), "engine_options": public_options(options)}  # never a key or a token
    run = ResumableRun(
        "generation",
        out,
        run_identity(settings, prompts=fingerprint([config.prompts])),
        shard=Shard.parse(config.shard),
    )
    previous = run.prepare(overwrite=config.overwrite, count="outputs", unit="outputs")
    if previous:
        note_failed_rows((previous.get("counts") or {}).get("failed") or 0)
        return read_records(out)

    engine = open_engine(config.engine, config.model, device=config.device, options=options)
    described = engine.describe()
    from judge.engines.fingerprint import check_resume

    # rows from another model served under the same name are never mixed into this output
    check_resume(out, ("engine",), described, resuming=run.checkpoint.path.exists())
    run.start(
        settings,
        inputs=[config.prompts],
        engine=described,
        engine_options=public_options(options),
        model={"spec": config.model, "revision": described.get("revision")},
    )
    decoding = Decoding(
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
        top_k=config.top_k,
        top_p=config.top_p,
        seed=config.seed,
    )
    sample_with = dict(
        engine=engine,
        model_id=config.model,
        samples=config.samples,
        decoding=decoding,
        batch_size=config.batch_size,
        system_prompt=system_prompt,
        instruction=config.instruction,
        progress=config.progress,
    )
    retried = run.retry_failed(
        lambda row: row.get("finish_reason") == "failed", lambda keys: retry_failed(prompts, keys=keys, **sample_with)
    )
    generated = generate_outputs(
        prompts,
        **sample_with,
        checkpoint=run.checkpoint,
        shard=run.shard,
        executor=executor_for(config, progress=config.progress),
        engine_spec=(config.engine, config.device, options),
    )
    gen_seconds, new_count, new_tokens = generated.run.seconds, generated.run.computed, generated.new_tokens
    if retried is not None:
        gen_seconds, new_count = retried.seconds, retried.computed
        new_tokens = sum(retried.rows[k]["response_tokens"] or 0 for k in retried.computed_keys)
    outputs = pd.DataFrame(generated.rows)  # prompt order, then sample: the order of the whole output
    # Each output has its own id (PROMPT_ID-sN); the prompt file's columns come back under their own names.
    outputs = user_columns(outputs, {k: v for k, v in prompts.attrs["column_map"].items() if k != "id"})
    outputs = outputs.rename(columns={SHADOW + "id": "input_id"})
    n_failed = sum(row["finish_reason"] == "failed" for row in generated.rows)
    run.finish(
        generated.run,
        positions=generated.positions,
        total=generated.total,
        write=lambda: write_records(outputs, out, overwrite=True),
        failed=n_failed,
        throughput={
            "outputs_this_run": new_count,
            "new_tokens": new_tokens,
            "generation_seconds": round(gen_seconds, 3),
            "tokens_per_second": round(new_tokens / gen_seconds, 2) if gen_seconds else None,
        },
        counts={
            "outputs": len(outputs),
            "prompts": len(prompts),
            **({"failed": n_failed} if config.engine != "hf" else {}),
        },
        # the engine's usage (requests, tokens, failures) at the end, not the zeros written before the run
        **({"engine": engine.describe()} if config.engine != "hf" else {}),
    )
    done = f"retried {new_count} failed, " if retried is not None else ""
    print(
        f"generated {new_count} outputs ({done}{len(outputs) - new_count} resumed), {new_tokens} tokens in "
        f"{gen_seconds:.1f}s "
        f"({new_tokens / max(gen_seconds, 1e-9):.1f} tokens/s) -> {out}"
        + (f" (share {run.shard} of {generated.total} outputs)" if run.shard else "")
    )
    if n_failed:
        print(failed_line(n_failed, "no response; the reasons are in failure_reason"))
        note_failed_rows(n_failed)
    return outputs


def build_parser():
    return parser_for(
        Config,
        "python -m generation",
        __doc__,
        order=(
            "model",
            "prompts",
            "id_column",
            "prompt_column",
            "samples",
            "out",
            ...,
            "engine",
            "engine_options",
            "ray",
            "ray_actors",
            "ray_gpus",
            "shard",
            "progress",
            "overwrite",
            "allow_failed",
        ),
    )


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
