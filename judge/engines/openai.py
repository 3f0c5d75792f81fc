"""The OpenAI-compatible engine: a model behind an HTTP server (vLLM's OpenAI server, or any server of that API).

A batch of the runner's plan becomes concurrent requests, at most ``--concurrency`` in flight, one per
row with that row's own seed (so ``n`` is always 1: each sample is its own request). Retries,
exponential backoff, Retry-After and timeouts are the openai SDK's (``max_retries``, ``timeout``); a
request still failing after them becomes a failed row with the reason, and the run goes on.

What the server answers is data to check, not to believe: a constrained answer can still fall outside
the labels (vLLM ignores the removed ``guided_*`` fields with HTTP 200), so ``choose`` returns the text
as sent and counts it; label probabilities come only from a server that scores a given continuation
exactly (vLLM: ``/tokenize`` with the chat, then ``/v1/completions`` over token ids with
``prompt_logprobs``), and elsewhere ``label_logprobs`` says they are unavailable (None).

Every request goes through judge.engines.http's transport: a redirect is refused with its target (never followed),
an answer is bounded in size (``--max-answer-mib``) and each attempt in its whole time (``--timeout``), a 2xx answer
must be UTF-8 JSON of a sane depth, and the API key is masked in every string the engine returns (texts, reasons,
messages) in its raw, JSON-escaped and repr forms. A refused answer fails that row with the reason, as a failed
request does; at the probe (``/v1/models``, ``/version``) it stops the run in one line.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from judge.core.config import check_choice, check_positive
from judge.core.errors import UserError, cut, short_list
from judge.engines import fingerprint, http
from judge.engines.base import ChatRequest, Completion, Engine, as_label

CONSTRAINTS = ("auto", "structured-outputs", "json-schema", "guided-choice")
LOCAL_KEY = "EMPTY"  # what local servers (vLLM without --api-key) accept
MAX_TOKENS_PER_PROMPT = 1_000_000
# {"label": "..."} costs a few tokens more than the label, and a schema allows whitespace a small model spends
JSON_HEADROOM = 48  # a /tokenize answer longer than this is not a prompt of ours


@dataclass
class Options:
    base_url: str = field(
        default="http://127.0.0.1:8000/v1",
        metadata={"help": "the server's OpenAI API root, e.g. http://127.0.0.1:8000/v1 (no credentials in it)"},
    )
    api_key_env: str | None = field(
        default=None,
        metadata={
            "help": "name of the environment variable holding the API key (the key itself is never written anywhere); "
            "unset: 'EMPTY', which local vLLM servers accept"
        },
    )
    concurrency: int = field(
        default=8,
        metadata={
            "help": "requests in flight at once, within one batch: at most the command's --batch-size (a batch "
            "waits for its slowest request before the next batch starts), so raise --batch-size with it; 1 makes a "
            "seeded vLLM server reproducible"
        },
    )
    timeout: float = field(
        default=120.0,
        metadata={
            "help": "seconds one attempt of a request may take in all (connecting, the wait and the whole answer, "
            "however slowly it comes) before it is given up and retried. Worst case for a hung server: each request "
            "takes (--max-retries + 1) x --timeout plus backoff (under 2 s; a server's Retry-After up to 120 s "
            "each), 6 min with the defaults, and a batch ceil(batch size / --concurrency) times that"
        },
    )
    max_answer_mib: float = field(
        default=http.DEFAULT_MAX_ANSWER_MIB,
        metadata={
            "help": "largest answer taken from the server, in MiB (a larger one fails its row); label scores over "
            "long chats (prompt_logprobs) may need more"
        },
    )
    requests_per_minute: float | None = field(
        default=None, metadata={"help": "at most this many HTTP requests a minute, retries included (unset: no limit)"}
    )
    max_retries: int = field(
        default=2,
        metadata={
            "help": "retries of a request after a 408/409/429/5xx answer, a timeout or a lost connection, with "
            "exponential "
            "backoff or the server's Retry-After"
        },
    )
    constrain: str = field(
        default="auto",
        metadata={
            "help": "how choose() holds the answer to the labels: structured-outputs (vLLM's field), json-schema "
            "(response_format with an enum), guided-choice (the field vLLM servers before structured_outputs took); "
            "auto: structured-outputs on a vLLM server, json-schema elsewhere"
        },
    )

    def __post_init__(self):
        check_base_url(self.base_url)
        if self.api_key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", str(self.api_key_env)):
            raise UserError(
                "--api-key-env takes the NAME of an environment variable (letters, digits, _), got "
                f"{cut(self.api_key_env, 20)!r}; "
                "put the key in that variable"
            )
        for name, top in (("concurrency", 256), ("max_retries", 20)):
            value = getattr(self, name)
            low = 1 if name == "concurrency" else 0
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= top:
                raise UserError(
                    f"--{name.replace('_', '-')} must be a whole number from {low} to {top}, got {cut(value, 20)}"
                )
        for name in ("timeout", "requests_per_minute", "max_answer_mib"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise UserError(f"--{name.replace('_', '-')} must be a number, got {cut(value, 20)}")
        check_positive(self, "timeout", "requests_per_minute", "max_answer_mib")
        if self.max_answer_mib > http.MAX_ANSWER_MIB:
            raise UserError(f"--max-answer-mib is at most {http.MAX_ANSWER_MIB:g}, got {self.max_answer_mib:g}")
        if self.timeout > 3600:
            raise UserError(
                f"--timeout is in seconds per attempt and at most 3600, got {self.timeout:g}; use a smaller one"
            )
        check_choice(self, "constrain", CONSTRAINTS)


def check_sdk(openai) -> None:
    """The guarded transport (judge.engines.http) is an httpx2 client, the HTTP library of the openai SDK since it
    moved off httpx; an older SDK would refuse that client, or wrap the transport's refusals as connection errors
    and retry them. Said in one line, with the fix."""
    base = next((c for c in openai.DefaultHttpxClient.__mro__[1:] if c.__name__ == "Client"), None)
    library = base.__module__.split(".")[0] if base is not None else "an unknown library"
    if library != "httpx2":
        raise UserError(
            f"the installed openai SDK ({getattr(openai, '__version__', '?')}) is built on {library}, not httpx2, "
            "which --engine openai's guarded transport needs; upgrade it: pip install -U openai"
        )


def check_base_url(url: object) -> None:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--base-url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {cut(url)!r}")
    if parts.username or parts.password or parts.query:
        # A URL is recorded in the manifest: a secret in it would be written down.
        raise UserError(
            "--base-url must not carry credentials or a query; put the key in an environment variable named by "
            "--api-key-env"
        )


def read_api_key(name: str | None) -> str:
    if name is None:
        return LOCAL_KEY
    key = os.environ.get(name)
    if not key:
        raise UserError(
            f"environment variable {name} (named by --api-key-env) is not set or empty; export the API key in it"
        )
    return key


class RequestPacer:
    """At most ``per_minute`` request starts a minute, evenly spaced, shared by every thread.

    It sits on the HTTP client (a request hook), so the SDK's retries are paced too.
    """

    def __init__(self, per_minute: float):
        self.interval = 60.0 / per_minute
        self._next = 0.0
        self._lock = threading.Lock()

    def __call__(self, request: Any = None) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


def _retryable(exc: Exception) -> bool:
    import openai

    if isinstance(exc, openai.APIConnectionError):  # timeouts included
        return True
    status = getattr(exc, "status_code", None)
    return status in (408, 409, 429) or (isinstance(status, int) and status >= 500)


class OpenAIEngine(Engine):
    name = "openai"

    def __init__(self, model: str, *, device: str = "auto", options: Options | None = None):
        import openai

        del device  # the server's, not ours: generation's --device does not reach a served model

        self.model = model
        self.options = options or Options()
        opts = self.options
        pacer = RequestPacer(opts.requests_per_minute) if opts.requests_per_minute else None
        check_sdk(openai)
        http_client = http.client(
            opts.base_url,
            timeout=opts.timeout,
            max_bytes=int(opts.max_answer_mib * http.MIB),
            event_hooks={"request": [pacer]} if pacer else None,
        )
        key = read_api_key(opts.api_key_env)
        # A server may echo what it was sent: the key never reaches a row, a message or a log.
        self.mask = http.Masker([key] if key != LOCAL_KEY else [])
        self.client = openai.OpenAI(
            base_url=opts.base_url,
            api_key=key,
            max_retries=opts.max_retries,
            timeout=opts.timeout,
            http_client=http_client,
        )
        # vLLM's own endpoints (/tokenize, /version) sit beside /v1, not under it.
        self._root = self.client.with_options(base_url=re.sub(r"/v1/?$", "", opts.base_url.rstrip("/")) + "/")
        self._lock = threading.Lock()
        self.usage = {"requests": 0, "failed": 0, "prompt_tokens": 0, "completion_tokens": 0, "outside_labels": 0}
        self.scoring_errors: dict[str, str] = {}  # key -> why label_logprobs has no scores for that row
        self._label_ids: dict[tuple[str, ...], list[list[int]] | None] = {}
        self._model_entry = None  # the server's /v1/models entry for the model (the probe's)
        self.server = self._probe_server()
        # what the server says about the model (its /v1/models entry, a canary's log-probabilities): a resume
        # compares it (judge.engines.fingerprint); its requests are not the run's usage
        self.fingerprint = fingerprint.take(self, self._model_entry)
        self.usage = dict.fromkeys(self.usage, 0)
        self.constraint = (
            opts.constrain if opts.constrain != "auto" else ("structured-outputs" if self.is_vllm else "json-schema")
        )
        self.label_scoring = (
            "exact: /tokenize, then /v1/completions prompt_logprobs over label + end of turn"
            if self.is_vllm
            else "unavailable: only a vLLM server scores a given continuation exactly"
        )
        # vLLM serves the same rows only batch-invariantly: one request in flight (and a seed per request) keeps the
        # batch fixed. Other servers' seeds are best effort.
        self.reproducible = opts.concurrency == 1 and self.is_vllm

    @property
    def is_vllm(self) -> bool:
        return self.server["kind"] == "vllm"

    # -- talking to the server -----------------------------------------------------------------
    def _probe_server(self) -> dict[str, Any]:
        """Which server this is and whether it serves the model: refused here in one line, before any row."""
        import openai

        try:
            models = self.client.models.list().data
        except http.RefusedAnswer as exc:
            raise self._refused_at_probe(exc) from None
        except openai.APIConnectionError as exc:
            raise UserError(
                f"no server answers at {self.options.base_url} ({self._reason(exc, retried=False)}); "
                "start it or fix --base-url"
            ) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError):
            raise UserError(
                f"the server at {self.options.base_url} refused the API key; set the right key in the variable "
                "named by --api-key-env"
            ) from None
        except openai.APIStatusError:
            return {"kind": "openai-compatible", "version": None}  # a server without /models: nothing to check
        served = {getattr(m, "id", None): getattr(m, "owned_by", None) for m in models}
        if self.model not in served:
            raise UserError(
                f"model {cut(self.model)!r} is not served at {self.options.base_url}; "
                f"use one of {short_list(sorted(self.mask(str(m)) for m in served))}"
            )
        self._model_entry = next(m for m in models if getattr(m, "id", None) == self.model)
        kind = "vllm" if served[self.model] == "vllm" else "openai-compatible"
        return {"kind": kind, "version": self._vllm_version() if kind == "vllm" else None}

    def _refused_at_probe(self, exc: Exception) -> UserError:
        return UserError(f"{cut(self.options.base_url, 80)}: {self.mask(str(exc))}; check --base-url")

    def _vllm_version(self) -> str | None:
        import openai

        try:
            answer = self._root.get("version", cast_to=object)
        except http.RefusedAnswer as exc:
            raise self._refused_at_probe(exc) from None
        except openai.APIError:
            return None
        version = answer.get("version") if isinstance(answer, dict) else None
        return cut(self.mask(version), 40) if isinstance(version, str) else None

    def _reason(self, exc: Exception, *, retried: bool) -> str:
        import openai

        if isinstance(exc, http.RefusedAnswer):
            return cut(" ".join(self.mask(str(exc)).split()), 240)  # nothing to retry: the answer itself was refused
        if isinstance(exc, openai.APITimeoutError):
            what = f"timed out after {self.options.timeout:g} s"
        elif isinstance(exc, openai.APIConnectionError):
            what = "connection failed"
        elif isinstance(exc, openai.APIStatusError):
            what = f"HTTP {exc.status_code}"
        else:
            what = type(exc).__name__
        cause = str(exc.__cause__ or "")
        # the transport's deadline says it was the whole attempt (not one read) that ran out
        detail = cause if isinstance(exc, openai.APITimeoutError) and "whole request" in cause else str(exc)
        detail = self.mask(detail)  # masked before it is cut: a cut key would escape the mask
        tries = f" after {self.options.max_retries} retries" if retried and self.options.max_retries else ""
        return f"{what}{tries}: {cut(' '.join(detail.split()), 160)}"

    def _call(self, fn: Callable[[], Any]) -> tuple[Any, str | None]:
        """The answer, or None and why (after the SDK's retries). Errors no retry can fix stop the run in one line."""
        import openai

        with self._lock:
            self.usage["requests"] += 1
        try:
            return fn(), None
        except (openai.AuthenticationError, openai.PermissionDeniedError):
            raise UserError(
                f"the server at {self.options.base_url} refused the API key; set the right key in the variable "
                "named by --api-key-env"
            ) from None
        except openai.NotFoundError as exc:
            raise UserError(
                f"the server at {self.options.base_url} answered 404 ({self._reason(exc, retried=False)}); "
                "check --base-url and --model"
            ) from None
        except (openai.APIError, http.RefusedAnswer) as exc:
            with self._lock:
                self.usage["failed"] += 1
            return None, self._reason(exc, retried=_retryable(exc))

    def _count_usage(self, response: Any) -> tuple[int | None, int | None]:
        usage = getattr(response, "usage", None)
        prompt, completion = getattr(usage, "prompt_tokens", None), getattr(usage, "completion_tokens", None)
        prompt = prompt if isinstance(prompt, int) and not isinstance(prompt, bool) and prompt >= 0 else None
        completion = (
            completion if isinstance(completion, int) and not isinstance(completion, bool) and completion >= 0 else None
        )
        with self._lock:
            self.usage["prompt_tokens"] += prompt or 0
            self.usage["completion_tokens"] += completion or 0
        return prompt, completion

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if len(items) <= 1 or self.options.concurrency == 1:
            return [fn(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self.options.concurrency, len(items))) as pool:
            return list(pool.map(fn, items))

    # -- sampled completions (generation) ------------------------------------------------------
    def generate(self, requests: Sequence[ChatRequest], decoding: Any, *, batch_seed: int) -> list[Completion]:
        """One completion per request, sampled with the request's own seed (``batch_seed`` is not needed)."""
        sampling = self._sampling(decoding)
        return self._map(lambda request: self._chat(request, sampling), requests)

    def _sampling(self, decoding: Any) -> dict[str, Any]:
        temperature = float(getattr(decoding, "temperature", 0.0))
        sampling: dict[str, Any] = {"max_tokens": int(decoding.max_new_tokens), "temperature": max(temperature, 0.0)}
        if temperature > 0:
            sampling["top_p"] = float(getattr(decoding, "top_p", 1.0))
            top_k = int(getattr(decoding, "top_k", 0) or 0)
            if top_k:
                if not self.is_vllm:
                    raise UserError(
                        "--top-k is not part of the OpenAI API and this server is not vLLM; use --top-k 0 with "
                        "--engine openai"
                    )
                sampling["extra_body"] = {"top_k": top_k}
        return sampling

    def _chat(self, request: ChatRequest, sampling: dict[str, Any]) -> Completion:
        messages = [{"role": role, "content": content} for role, content in request.messages]
        response, error = self._call(
            lambda: self.client.chat.completions.create(
                model=self.model, messages=messages, n=1, seed=request.seed, **sampling
            )
        )
        if error:
            return Completion(request.key, None, "failed", error=error)
        completion = self._completion(request.key, response)
        completion.text, completion.error = self.mask(completion.text), self.mask(completion.error)
        return completion

    def _completion(self, key: str, response: Any) -> Completion:
        prompt_tokens, response_tokens = self._count_usage(response)
        choices = getattr(response, "choices", None)
        choice = choices[0] if isinstance(choices, list) and len(choices) == 1 else None
        text = getattr(getattr(choice, "message", None), "content", None)
        finish = getattr(choice, "finish_reason", None)
        if not isinstance(text, str) or finish not in ("stop", "length"):
            with self._lock:
                self.usage["failed"] += 1
            got = (
                f"{len(choices)} choices"
                if isinstance(choices, list) and choice is None
                else f"finish_reason {cut(finish, 30)!r}"
            )
            return Completion(
                key,
                None,
                "failed",
                prompt_tokens,
                response_tokens,
                error=f"the server's answer has no usable text ({got})",
            )
        return Completion(key, text, finish, prompt_tokens, self._without_eos(choice, finish, response_tokens))

    def _without_eos(self, choice: Any, finish: str, tokens: int | None) -> int | None:
        """response_tokens means the response's tokens without the end-of-sequence token, for every engine (hf and
        vLLM offline count so). A vLLM server counts the EOS it stopped at in completion_tokens (its stop_reason is
        then None; a stop string or token id would be named): one less. Other servers' counts are kept as sent."""
        if not self.is_vllm or finish != "stop" or not tokens:
            return tokens
        extra = getattr(choice, "model_extra", None) or {}
        return tokens - 1 if "stop_reason" in extra and extra["stop_reason"] is None else tokens

    # -- the labels of a taxonomy (the LLM judge) ----------------------------------------------
    def choose(
        self, requests: Sequence[ChatRequest], labels: Sequence[str], *, max_new_tokens: int
    ) -> list[Completion]:
        """Greedy answers held to ``labels`` by the server; the text comes back as sent, in the labels or not."""
        constraint = self._constraint(labels)
        if self.constraint == "json-schema":
            max_new_tokens += JSON_HEADROOM
        outs = self._map(
            lambda request: self._chat(request, {"max_tokens": max_new_tokens, "temperature": 0.0, **constraint}),
            requests,
        )
        outs = [self._unwrap_json(c) for c in outs] if self.constraint == "json-schema" else outs
        # One meaning with the judge that reads them: a label is the text without surrounding whitespace, the text
        # no longer than a label and a little whitespace (judge.engines.base.as_label)
        outside = sum(c.text is not None and as_label(c.text, labels) is None for c in outs)
        with self._lock:
            self.usage["outside_labels"] += outside
        return outs

    def _constraint(self, labels: Sequence[str]) -> dict[str, Any]:
        if self.constraint == "structured-outputs":
            return {"extra_body": {"structured_outputs": {"choice": list(labels)}}}
        if self.constraint == "guided-choice":
            return {"extra_body": {"guided_choice": list(labels)}}
        schema = {
            "type": "object",
            "properties": {"label": {"type": "string", "enum": list(labels)}},
            "required": ["label"],
            "additionalProperties": False,
        }
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "label", "strict": True, "schema": schema},
            }
        }

    @staticmethod
    def _unwrap_json(completion: Completion) -> Completion:
        """{"label": X} -> X; anything else stays the raw text, for the judge to refuse with it."""
        if completion.text is None:
            return completion
        try:
            value = json.loads(completion.text)
        except ValueError:
            return completion
        if isinstance(value, dict) and set(value) == {"label"} and isinstance(value["label"], str):
            completion.text = value["label"]
        return completion

    def label_logprobs(self, requests: Sequence[ChatRequest], labels: Sequence[str]) -> list[dict[str, float]] | None:
        """log P(label + end of turn | chat) per request, exactly as the server's model scores it; None where the
        server cannot score a given continuation. A row whose requests failed gets {} and its reason in
        ``scoring_errors[key]``."""
        if not self.is_vllm:
            return None
        continuations = self._continuations(tuple(labels))
        if continuations is None:
            return None
        return self._map(lambda request: self._score(request, labels, continuations), requests)

    def _tokenize(self, body: dict[str, Any]) -> tuple[list[int] | None, str | None]:
        answer, error = self._call(
            lambda: self._root.post("tokenize", body={"model": self.model, **body}, cast_to=object)
        )
        if error:
            return None, error
        tokens = answer.get("tokens") if isinstance(answer, dict) else None
        if (
            not isinstance(tokens, list)
            or len(tokens) > MAX_TOKENS_PER_PROMPT
            or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in tokens)
        ):
            return None, "the server's /tokenize answer is not a list of token ids"
        return tokens, None

    def _continuations(self, labels: tuple[str, ...]) -> list[list[int]] | None:
        """Each label's tokens (alone, as the in-process judge tokenizes them) and the template's end-of-turn token."""
        if labels not in self._label_ids:
            self._label_ids[labels] = self._find_continuations(labels)
            if self._label_ids[labels] is not None:
                self._choose_scorer(self._label_ids[labels])
        return self._label_ids[labels]

    def _choose_scorer(self, continuations: list[list[int]]) -> None:
        """The trie of one-token requests (judge/engines/trie.py: they read vLLM's prefix cache) where the server
        answers logprob_token_ids, else prompt_logprobs over each label's whole continuation. Which one is decided by
        the first row's answer (no extra request); the manifest written at the end says which."""
        from judge.engines import trie

        self._trie: bool | None = None if trie.fits(trie.build(continuations)) else False
        self._trie_lock = threading.Lock()
        self.label_scoring = (
            "exact: the trie of one-token requests where the server answers logprob_token_ids, else prompt_logprobs "
            "(decided at the first row)"
            if self._trie is None
            else FALLBACK
        )

    def _trie_score(self, key: str, prefix: list[int], continuations: list[list[int]]) -> list[float] | str | None:
        """The row's sums by the trie, or why it failed; None where the server turned out not to answer
        logprob_token_ids (then this row and the rest go by prompt_logprobs). The first row decides, alone."""
        from judge.engines import trie

        if self._trie is False:
            return None
        if self._trie:
            return trie.served_scores(self, prefix, continuations)
        with self._trie_lock:
            if self._trie is None:
                sums = trie.served_scores(self, prefix, continuations)
                if isinstance(sums, trie.Unsupported):
                    self._trie, self.label_scoring = False, FALLBACK
                    return None
                if not isinstance(sums, str):
                    self._trie, self.label_scoring = True, trie.DESCRIPTION
                return sums  # a failed request decides nothing: the next row asks again
        return self._trie_score(key, prefix, continuations)

    def _find_continuations(self, labels: tuple[str, ...]) -> list[list[int]] | None:
        ids = []
        for label in labels:
            tokens, error = self._tokenize({"prompt": label, "add_special_tokens": False})
            if error or not tokens:
                self.label_scoring = f"unavailable: label {cut(label)!r} did not tokenize ({error or 'no tokens'})"
                return None
            ids.append(tokens)
        # The end-of-turn token is what the chat template writes right after an assistant message's text.
        probe = [{"role": "user", "content": "Say one word."}]
        prefix, error_p = self._tokenize({"messages": probe, "add_generation_prompt": True})
        whole, error_w = self._tokenize(
            {"messages": probe + [{"role": "assistant", "content": labels[0]}], "add_generation_prompt": False}
        )
        n, m = len(prefix or []), len(ids[0])
        if error_p or error_w or whole[:n] != prefix or whole[n : n + m] != ids[0] or len(whole) <= n + m:
            self.label_scoring = (
                "unavailable: the chat template does not end an assistant turn after the label with a token of its own"
            )
            return None
        end = whole[n + m]
        return [tokens + [end] for tokens in ids]

    def _score(self, request: ChatRequest, labels: Sequence[str], continuations: list[list[int]]) -> dict[str, float]:
        messages = [{"role": role, "content": content} for role, content in request.messages]
        prefix, error = self._tokenize({"messages": messages, "add_generation_prompt": True})
        if error:
            return self._unscored(request.key, error)
        sums = self._trie_score(request.key, prefix, continuations)
        if sums is not None:
            return self._unscored(request.key, sums) if isinstance(sums, str) else dict(zip(labels, sums))
        prompts = [prefix + cont for cont in continuations]
        response, error = self._call(
            lambda: self.client.completions.create(
                model=self.model,
                prompt=prompts,
                max_tokens=1,
                temperature=0.0,
                extra_body={"prompt_logprobs": 0, "return_token_ids": True},
            )
        )
        if error:
            return self._unscored(request.key, error)
        self._count_usage(response)
        scores = parse_prompt_logprobs(getattr(response, "choices", None), prompts, start=len(prefix))
        if isinstance(scores, str):
            return self._unscored(request.key, scores)
        return dict(zip(labels, scores))

    def _unscored(self, key: str, reason: str) -> dict[str, float]:
        with self._lock:
            self.scoring_errors[key] = self.mask(reason)
        return {}

    def describe(self) -> dict[str, Any]:
        opts = self.options
        with self._lock:
            usage = dict(self.usage)
        return {
            "engine": self.name,
            "model": self.model,
            "base_url": opts.base_url,
            "server": dict(self.server),
            "api_key_env": opts.api_key_env,
            "concurrency": opts.concurrency,
            "timeout": opts.timeout,
            "max_answer_mib": opts.max_answer_mib,
            "max_retries": opts.max_retries,
            "requests_per_minute": opts.requests_per_minute,
            "constrain": self.constraint,
            "label_scoring": self.label_scoring,
            "reproducible": self.reproducible,
            "reproducibility": (
                "the same rows on a rerun: one request at a time to a vLLM server, each with its own seed"
                if self.reproducible
                else "outputs are not reproducible: concurrent requests share the server's batches (vLLM is "
                "batch-invariant "
                "only on GPU/XPU with batch invariance on), or the server's seeds are best effort"
            ),
            "usage": usage,
            "fingerprint": self.fingerprint,
        }


FALLBACK = (
    "exact (prompt_logprobs, the fallback: this server does not answer logprob_token_ids): /tokenize, then "
    "/v1/completions prompt_logprobs over label + end of turn"
)


def parse_prompt_logprobs(choices: Any, prompts: list[list[int]], *, start: int) -> list[float] | str:
    """Sum each prompt's logprobs from ``start`` on (the continuation), checking every field; a reason if any is off."""
    if not isinstance(choices, list) or len(choices) != len(prompts):
        return (
            f"the server answered {len(choices) if isinstance(choices, list) else 'no'} choices "
            f"for {len(prompts)} prompts"
        )
    by_index = {getattr(c, "index", None): c for c in choices}
    scores = []
    for i, prompt in enumerate(prompts):
        choice = by_index.get(i)
        extra = getattr(choice, "model_extra", None) or {}
        echoed, per_token = extra.get("prompt_token_ids"), extra.get("prompt_logprobs")
        if echoed is not None and echoed != prompt:
            return "the server scored other tokens than the ones sent"
        if not isinstance(per_token, list) or len(per_token) != len(prompt):
            return "the server's answer has no prompt_logprobs for every prompt token"
        total = 0.0
        for position in range(start, len(prompt)):
            entry = per_token[position].get(str(prompt[position])) if isinstance(per_token[position], dict) else None
            logprob = entry.get("logprob") if isinstance(entry, dict) else None
            if (
                not isinstance(logprob, (int, float))
                or isinstance(logprob, bool)
                or not (math.isfinite(logprob) or logprob == -math.inf)
                or logprob > 1e-6
            ):
                return f"the server's prompt_logprobs lack a log-probability for token {prompt[position]}"
            total += float(logprob)
        scores.append(total)
    return scores


def concurrency_note(options: Any, batch_size: int) -> str | None:
    """What a command says when --concurrency cannot be reached: a batch's requests are all that is in flight."""
    concurrency = getattr(options, "concurrency", None)
    if not isinstance(concurrency, int) or concurrency <= batch_size:
        return None
    return (
        f"note: --concurrency {concurrency} is more than --batch-size {batch_size}: at most {batch_size} requests are "
        f"in flight (one batch at a time); pass --batch-size {concurrency} or more to use them all"
    )
