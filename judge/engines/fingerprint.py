"""What a server says about the model it serves under a name: a fingerprint recorded in the manifest, so that a
resumed run (or a retry of its failed rows) cannot mix two models that were served under one name.

A served name, kind and version say nothing of the weights behind them: a server restarted with another model
under the same ``--served-model-name`` answers as before. So the openai engine records, at the start of every
run:

- the server's ``/v1/models`` entry for the model (``id``, ``owned_by``, ``root``, ``parent``, ``max_model_len``
  where given; never ``created``, which a restart changes);
- the log-probabilities of a fixed canary text, sent alone before any row: on a vLLM server the prompt
  log-probabilities of the canary's tokens (``/tokenize``, then ``/v1/completions`` with ``prompt_logprobs``).
  Other servers (an API, llama.cpp, TGI) are recorded "unverifiable" and sent no canary.

A rerun of the same command compares them with the manifest's: the entry exactly, the canary's tokens exactly
and its log-probabilities within ``TOLERANCE`` (a CPU server is not batch-invariant: other clients' requests in
the same batch move the last bits). A change stops the run in one line. A server that gives no prompt
log-probabilities allows no fingerprint of its weights: the manifest says "unverifiable" with the reason, and the
command says so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from judge.core.errors import UserError, cut
from judge.engines.base import is_logprob

CANARY = "The capital of France is Paris. One, two, three, four, five."
TOLERANCE = 0.01  # nats per token: batch noise on a CPU server is ~1e-5; another model differs by far more
ENTRY_KEYS = ("id", "owned_by", "root", "parent", "max_model_len")
UNVERIFIABLE = "unverifiable"
MAX_CANARY_TOKENS = 64
NOT_VLLM = (
    "only a vLLM server's prompt log-probabilities are read for a fingerprint (no request is spent on others: an "
    "API's sampled-token log-probabilities are not reproducible enough to compare)"
)


def model_entry(entry: Any, mask) -> dict[str, Any]:
    """The /v1/models entry's identifying fields (strings cut and masked, whole numbers kept), others left out."""
    extra = getattr(entry, "model_extra", None) or {}
    out: dict[str, Any] = {}
    for key in ENTRY_KEYS:
        value = getattr(entry, key, None)
        value = extra.get(key) if value is None else value
        if isinstance(value, str):
            out[key] = cut(mask(value), 200)
        elif isinstance(value, int) and not isinstance(value, bool):
            out[key] = value
    return out


def canary(engine) -> dict[str, Any] | str:
    """The canary's tokens and log-probabilities from the engine's server, or why there are none (a string)."""
    try:
        if not engine.is_vllm:
            return f"{UNVERIFIABLE}: {NOT_VLLM}"
        return _vllm_canary(engine)
    except UserError:
        raise
    except Exception as exc:  # an answer of an unexpected shape: nothing to fingerprint, said so
        return f"{UNVERIFIABLE}: the canary's answer could not be read ({type(exc).__name__})"


def _vllm_canary(engine) -> dict[str, Any] | str:
    tokens, error = engine._tokenize({"prompt": CANARY, "add_special_tokens": False})
    if error or not tokens or len(tokens) > MAX_CANARY_TOKENS:
        return f"{UNVERIFIABLE}: the canary did not tokenize ({error or 'no tokens'})"
    response, error = engine._call(
        lambda: engine.client.completions.create(
            model=engine.model,
            prompt=[tokens],
            max_tokens=1,
            temperature=0.0,
            extra_body={"prompt_logprobs": 0, "return_token_ids": True},
        )
    )
    if error:
        return f"{UNVERIFIABLE}: the canary request failed ({error})"
    choices = getattr(response, "choices", None)
    first = choices[0] if isinstance(choices, list) and choices else None
    extra = getattr(first, "model_extra", None) or {}
    per_token = extra.get("prompt_logprobs")
    if not isinstance(per_token, list) or len(per_token) != len(tokens):
        return f"{UNVERIFIABLE}: the server gives no prompt log-probabilities"
    logprobs = []
    for position in range(1, len(tokens)):
        slot = per_token[position]
        entry = slot.get(str(tokens[position])) if isinstance(slot, dict) else None
        value = entry.get("logprob") if isinstance(entry, dict) else None
        if not is_logprob(value):
            return f"{UNVERIFIABLE}: the server's prompt log-probabilities lack token {tokens[position]}"
        logprobs.append(round(float(value), 6))
    return {"text": CANARY, "tokens": tokens, "logprobs": logprobs, "tolerance": TOLERANCE}


def _distance(x: Any, y: Any) -> float:
    if not (is_logprob(x) and is_logprob(y)):
        return math.inf
    return 0.0 if x == y else abs(float(x) - float(y))  # -inf == -inf: no difference


def take(engine, entry: Any) -> dict[str, Any]:
    """The fingerprint of the model the engine's server serves (its /v1/models ``entry``, None when there is none)."""
    return {"models_entry": model_entry(entry, engine.mask) if entry is not None else {}, "canary": canary(engine)}


def verifiable(fingerprint: dict[str, Any] | None) -> bool:
    return isinstance(fingerprint, dict) and isinstance(fingerprint.get("canary"), dict)


def unverifiable_line(fingerprint: dict[str, Any] | None) -> str | None:
    """What a command says when the server allows no fingerprint of its weights (None when it does)."""
    if not isinstance(fingerprint, dict) or verifiable(fingerprint):
        return None
    why = fingerprint.get("canary")
    return (
        f"the served model is {why if isinstance(why, str) else UNVERIFIABLE}: a resumed run cannot tell whether "
        "another model was started under the same name (recorded in the manifest)"
    )


def check_same_model(before: Any, now: dict[str, Any] | None, *, out: str | Path) -> None:
    """Refuse (one line) a resume whose server now serves another model than the run's rows came from. ``before``
    is the previous manifest's engine description (untrusted JSON), ``now`` this run's."""
    old = before.get("fingerprint") if isinstance(before, dict) else None
    new = now.get("fingerprint") if isinstance(now, dict) else None
    if not isinstance(old, dict) or not isinstance(new, dict):
        return  # an engine without a fingerprint, or a run written before them
    name = Path(out).name
    fix = "restart the server with the run's model, or pass --overwrite to start again"
    old_entry, new_entry = old.get("models_entry"), new.get("models_entry") or {}
    if isinstance(old_entry, dict):
        for key in ENTRY_KEYS:
            if old_entry.get(key) != new_entry.get(key):
                raise UserError(
                    f"the server's model changed since {name} was started (/v1/models {key}: "
                    f"{cut(old_entry.get(key), 60)!r} then, {cut(new_entry.get(key), 60)!r} now); {fix}"
                )
    old_canary, new_canary = old.get("canary"), new.get("canary")
    if not isinstance(old_canary, dict):
        return  # unverifiable then: nothing to compare (said when the run started)
    if not isinstance(new_canary, dict):
        raise UserError(
            f"the server no longer allows the model's fingerprint that {name} was started with "
            f"({cut(new_canary, 120)}); {fix}"
        )
    a, b = old_canary.get("logprobs"), new_canary.get("logprobs")
    if old_canary.get("tokens") != new_canary.get("tokens") or not isinstance(a, list) or len(a) != len(b):
        raise UserError(f"the server's model changed since {name} was started (the canary's tokens differ); {fix}")
    tolerance = TOLERANCE
    worst = max((_distance(x, y) for x, y in zip(a, b)), default=0.0)
    if not worst <= tolerance:
        raise UserError(
            f"the server's model changed since {name} was started (the canary's log-probabilities differ by up to "
            f"{worst:.3g}, more than {tolerance:g}); {fix}"
        )


def check_resume(out: str | Path, where: tuple[str, ...], described: dict[str, Any] | None, *, resuming: bool) -> None:
    """At the start of a run on ``out``: refuse a resume across a changed model (the old manifest's engine
    description sits at the keys ``where``), and say on stderr when the server allows no fingerprint."""
    import sys

    from judge.core.manifest import read_manifest

    if resuming:
        previous: Any = read_manifest(out)
        for key in where:
            previous = previous.get(key) if isinstance(previous, dict) else None
        check_same_model(previous, described, out=out)
    line = unverifiable_line(described.get("fingerprint") if isinstance(described, dict) else None)
    if line:
        print(f"note: {line}", file=sys.stderr)
