"""The one HTTP transport every conversation with a server goes through: the openai engine's (the openai SDK over
httpx2) and Label Studio's (its SDK over httpx).

A server's answer is untrusted, so the transport, below either SDK, holds it to four rules before the SDK sees it:

- **No redirects.** A 3xx is refused with the address it points to, never followed: a redirect would re-send every
  prompt, response and the key to another host. (The clients are made with ``follow_redirects=False`` too.)
- **Bounded size.** An answer larger than ``max_bytes`` is refused as it streams in (its Content-Length first); a
  compressed answer is refused (identity is asked for), since its size on the wire does not bound its size in memory.
- **Bounded time.** ``timeout`` bounds the whole attempt (connecting, sending, the wait, every byte of the answer),
  not each read: the deadline is checked at every socket operation, so an answer dripped one byte a second ends
  at ``timeout`` like a silent one. The SDK may retry after it, each attempt with a deadline of its own.
- **JSON or nothing.** A 2xx answer with a body must be UTF-8 JSON nested at most ``MAX_ANSWER_DEPTH`` deep
  (every endpoint used answers JSON); anything else is refused here rather than in the SDK's parser.

A refusal is a :class:`RefusedAnswer` (its message names what was wrong and, for a redirect, the target), which
neither SDK retries; a deadline passed is the HTTP library's own ``ReadTimeout``, which the SDKs retry as a timeout.

Secrets a server echoes (the API key, the Label Studio token) are masked by :class:`Masker` in every string taken
from an answer, in their raw, JSON-escaped and repr forms, before anything is written or printed.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
import urllib.request
from functools import lru_cache
from typing import Any, Callable, Iterable
from urllib.parse import urljoin, urlsplit

from judge.core.errors import cut
from judge.core.schema import MAX_DEPTH, nesting

MIB = 1 << 20
DEFAULT_MAX_ANSWER_MIB = 8.0
MAX_ANSWER_MIB = 1024.0
# Deeper than any answer of the OpenAI API (prompt_logprobs nest 6) or Label Studio (a task's results about 8);
# json and pydantic recurse, so a crafted '[' x 100000 stops here.
MAX_ANSWER_DEPTH = MAX_DEPTH
MASK = "***"


class RefusedAnswer(Exception):
    """An answer the transport does not hand on; the message says what it was (and where a redirect pointed)."""


# -- the deadline of the attempt running in this thread ------------------------------------------------------
_attempt = threading.local()


def _bounded(timeout: float | None, error: type[Exception]) -> float | None:
    """The per-operation timeout cut to what is left of this thread's attempt; past its deadline, ``error``."""
    end = getattr(_attempt, "end", None)
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise error(f"the whole request took longer than {_attempt.timeout:g} s")
    return left if timeout is None else min(timeout, left)


@lru_cache(maxsize=None)
def _kit(library: str) -> Any:
    """The transport classes for one HTTP library: httpx2 (the openai SDK's) or httpx (Label Studio's)."""
    httpx = importlib.import_module(library)
    core = importlib.import_module({"httpx2": "httpcore2", "httpx": "httpcore"}[library])

    class DeadlineStream(core.NetworkStream):
        def __init__(self, stream: Any):
            self._stream = stream

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._stream.read(max_bytes, _bounded(timeout, core.ReadTimeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._stream.write(buffer, _bounded(timeout, core.WriteTimeout))

        def close(self) -> None:
            self._stream.close()

        def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None):
            return DeadlineStream(
                self._stream.start_tls(ssl_context, server_hostname, _bounded(timeout, core.ConnectTimeout))
            )

        def get_extra_info(self, info: str) -> Any:
            return self._stream.get_extra_info(info)

    class DeadlineBackend(core.NetworkBackend):
        """The library's own socket backend, each operation's timeout cut to the attempt's deadline."""

        def __init__(self, backend: Any):
            self._backend = backend

        def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
            timeout = _bounded(timeout, core.ConnectTimeout)
            return DeadlineStream(self._backend.connect_tcp(host, port, timeout, local_address, socket_options))

        def connect_unix_socket(self, path, timeout=None, socket_options=None):
            timeout = _bounded(timeout, core.ConnectTimeout)
            return DeadlineStream(self._backend.connect_unix_socket(path, timeout, socket_options))

        def sleep(self, seconds: float) -> None:
            self._backend.sleep(seconds)

    class GuardedTransport(httpx.BaseTransport):
        def __init__(self, url: str, *, timeout: float, max_bytes: int, setting: str):
            self.timeout, self.max_bytes, self.setting = float(timeout), int(max_bytes), setting
            # The client itself ignores the environment (trust_env=False: its proxy mounts would bypass this
            # transport), so the environment's proxy for this address is taken here.
            self._inner = httpx.HTTPTransport(
                proxy=environment_proxy(url), limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100)
            )
            pool = self._inner._pool  # the deadline has to reach every socket operation: the pool's backend
            pool._network_backend = DeadlineBackend(pool._network_backend)

        def handle_request(self, request: Any) -> Any:
            request.headers["Accept-Encoding"] = "identity"
            _attempt.end, _attempt.timeout = time.monotonic() + self.timeout, self.timeout
            try:
                response = self._inner.handle_request(request)
                try:
                    body = self._read(request, response)
                finally:
                    response.close()
            finally:
                _attempt.end = None
            headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "transfer-encoding"]
            return httpx.Response(
                response.status_code, headers=headers, content=body, request=request, extensions=response.extensions
            )

        def _read(self, request: Any, response: Any) -> bytes:
            status = response.status_code
            if 300 <= status < 400:
                raise RefusedAnswer(redirect_reason(status, str(request.url), response.headers.get("location")))
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise RefusedAnswer(
                    f"the server sent its answer compressed ({cut(encoding, 20)}) although it was asked not to; "
                    "a compressed answer's size is not bounded"
                )
            declared = response.headers.get("content-length", "")
            if declared.strip().isdigit() and int(declared) > self.max_bytes:
                raise RefusedAnswer(self._too_large(f"{int(declared) / MIB:.1f} MiB, more"))
            chunks, size = [], 0
            for chunk in response.stream:
                size += len(chunk)
                if size > self.max_bytes:
                    raise RefusedAnswer(self._too_large("larger"))
                chunks.append(chunk)
            body = b"".join(chunks)
            if 200 <= status < 300 and body.strip():
                check_json(body)
            return body

        def _too_large(self, size: str) -> str:
            return (
                f"the server's answer is {size} than the {self.max_bytes / MIB:g} MiB allowed; "
                f"raise {self.setting} if the answer is genuine"
            )

    return type("Kit", (), {"httpx": httpx, "Transport": GuardedTransport})


def client(
    url: str,
    *,
    timeout: float,
    max_bytes: int,
    setting: str = "--max-answer-mib",
    library: str = "httpx2",
    event_hooks: dict[str, list[Callable]] | None = None,
) -> Any:
    """A ``library`` client (httpx2 for the openai SDK, httpx for Label Studio's) whose every request goes through
    the guarded transport; ``setting`` names the option that raises ``max_bytes`` in a refusal's message."""
    kit = _kit(library)
    return kit.httpx.Client(
        transport=kit.Transport(url, timeout=timeout, max_bytes=max_bytes, setting=setting),
        trust_env=False,
        follow_redirects=False,
        timeout=timeout,
        event_hooks=event_hooks or {},
    )


def environment_proxy(url: str) -> str | None:
    """The proxy the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY) names for ``url``, if any."""
    parts = urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass_environment(parts.hostname):
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(parts.scheme) or proxies.get("all")


def redirect_reason(status: int, url: str, location: str | None) -> str:
    """One line naming where a redirect pointed (resolved against the request), so the user can pass that address."""
    target = urljoin(url, location) if location else None
    where = f"to {cut(target, 100)}" if target else "without a Location"
    return (
        f"the server answered HTTP {status}, a redirect {where}, which is not followed "
        "(if that is the server, give that address)"
    )


def check_json(body: bytes) -> Any:
    """The answer parsed, or :class:`RefusedAnswer` saying why it is not UTF-8 JSON of a sane depth."""
    deep = f"the server's answer is nested too deeply (more than {MAX_ANSWER_DEPTH} levels)"
    try:
        value = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RefusedAnswer(f"the server's answer is not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise RefusedAnswer(deep) from None
    except ValueError as exc:
        raise RefusedAnswer(f"the server's answer is not JSON ({cut(str(exc).splitlines()[0], 80)})") from None
    if nesting(value) > MAX_ANSWER_DEPTH:
        raise RefusedAnswer(deep)
    return value


# -- secrets ---------------------------------------------------------------------------------------------
def secret_forms(secret: str) -> list[str]:
    """The ways a secret can appear in text taken from an answer: raw, JSON-escaped (ASCII or not) and repr'd, each
    of those once more (a repr of a JSON body holding it), longest first so that no form is half-masked."""
    escapes = (
        lambda s: json.dumps(s)[1:-1],
        lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
        lambda s: repr(s)[1:-1],
        lambda s: repr(s + '"')[1:-2],  # repr within a text holding " as well: quoted with ', so ' is escaped
    )
    forms = {secret}
    for _ in range(2):
        forms |= {escape(form) for form in forms for escape in escapes}
    return sorted((f for f in forms if f), key=len, reverse=True)


# A secret shorter than this is not masked: masking "re" would turn every "refusal" a model writes into "***fusal"
# (a changed response, an unscored label, exit 0), and a key that short protects nothing a mask could save.
MIN_MASKED_LENGTH = 8


class Masker:
    """Replace every form of the given secrets by ``***`` in a text (None and other values pass through).
    Secrets shorter than MIN_MASKED_LENGTH characters are left alone: they would mask ordinary words."""

    def __init__(self, secrets: Iterable[str | None]):
        forms = {f for s in secrets if s and len(s) >= MIN_MASKED_LENGTH for f in secret_forms(s)}
        self.forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: Any) -> Any:
        if not isinstance(text, str):
            return text
        for form in self.forms:
            if form in text:
                text = text.replace(form, MASK)
        return text
