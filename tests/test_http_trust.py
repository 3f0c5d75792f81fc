"""Issue 31 (items 2, 3, 5, 6, 8h): what a misbehaving server on 127.0.0.1 can and cannot do to a run.

Real stdlib servers on loopback ports (tests/servers.py ``ScriptedServer``), no mocks: one redirects to a second
server, which must receive nothing; one echoes the Authorization header in its 200 and 4xx answers; one sends a
gigabyte, one drips a byte at a time, others answer bytes that are not UTF-8, not JSON or nested 100000 deep.
Each becomes an unscored or failed row with its reason (the run goes on), or, at the probe, one line and exit 2.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from judge import annotate as annotate_cmd
from judge import label as label_cmd
from judge.engines import ChatRequest
from judge.engines.http import MASK, Masker, secret_forms
from judge.engines.openai import OpenAIEngine, Options
from tests.badinput import assert_refused
from tests.conftest import run_cli
from tests.servers import (
    ScriptedServer,
    chat_answer,
    chat_route,
    drip_route,
    huge_route,
    models_route,
    raw_route,
    redirect_route,
    send,
)
from tests.test_openai_engine import LABELS, OptionsCommand, Sampling

# A key holding a backslash and a double quote: its JSON-escaped and repr forms differ from the raw one.
KEY = 'sk-tr\\ust"31-5b1f0e'
KEY_VAR = "SAFEGUARD_TEST_TRUST_KEY"
NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture()
def serve():
    started = []

    def start(routes: dict) -> ScriptedServer:
        server = ScriptedServer(routes)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def ask(key: str, text: str) -> ChatRequest:
    return ChatRequest(key=key, messages=(("user", text),), seed=0)


def engine(server: ScriptedServer, **options) -> OpenAIEngine:
    return OpenAIEngine("smollm2", options=Options(base_url=server.base_url, **options))


def elsewhere(serve) -> ScriptedServer:
    """The second loopback server a redirect points to: it answers everything, and must be asked nothing."""
    return serve({p: models_route() for p in ("/v1/models", "/v1/chat/completions", "/tokenize", "/version", "/api/tasks/")})


# -- item 2: redirects are refused with their target, never followed ---------------------------------------------


def test_a_redirected_request_fails_its_row_naming_the_target_and_the_target_hears_nothing(serve):
    other = elsewhere(serve)
    target = other.root + "/v1/chat/completions"
    server = serve({"/v1/models": models_route(), "/v1/chat/completions": redirect_route(target)})
    e = engine(server, max_retries=2, concurrency=1)
    out = e.generate([ask("a", "Name a fruit."), ask("b", "Name a tree.")], Sampling(), batch_seed=0)
    assert [c.finish_reason for c in out] == ["failed", "failed"]
    for c in out:
        assert "HTTP 307" in c.error and target in c.error and "not followed" in c.error, c.error
    assert other.seen == []  # nothing was re-sent there
    assert [p for _, p, _ in server.seen].count("/v1/chat/completions") == 2  # and a redirect is not retried
    assert e.describe()["usage"]["failed"] == 2


@pytest.mark.slow
def test_judge_label_through_a_redirect_writes_unscored_rows_naming_the_target(serve, tmp_path, capsys):
    other = elsewhere(serve)
    target = other.root + "/v1/chat/completions"
    server = serve({"/v1/models": models_route(), "/v1/chat/completions": redirect_route(target)})
    out = tmp_path / "labelled.jsonl"
    code, stdout, err = run_cli(label_cmd, ["--judge", "llm:smollm2", "--mode", "generate", "--engine", "openai", "--base-url",
                                            server.base_url, "--input", str(records_file(tmp_path, n=3)), "--out", str(out),
                                            "--no-progress"], capsys)
    assert code == 3, err  # complete with failed rows
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["label"] for r in rows] == ["unscored"] * 3
    assert all(f"HTTP 307, a redirect to {target}" in r["unscored_reason"] for r in rows), rows[0]
    assert "complete with 3 failed" in stdout and other.seen == []


def test_a_redirected_tokenize_leaves_the_scores_unavailable_naming_the_target(serve):
    other = elsewhere(serve)
    server = serve({"/v1/models": models_route(owned_by="vllm"), "/version": raw_route(200, b'{"version": "0.32"}'),
                    "/tokenize": redirect_route(other.root + "/tokenize", 308)})
    e = engine(server, max_retries=0)
    assert e.is_vllm
    assert e.label_logprobs([ask("a", "x")], LABELS) is None
    assert "HTTP 308" in e.label_scoring and other.root + "/tokenize" in e.label_scoring, e.label_scoring
    assert other.seen == []


def probe_server(serve, case: str) -> tuple[ScriptedServer, list[str]]:
    other = elsewhere(serve)
    cases = {
        "models-redirect": ({"/v1/models": redirect_route(other.root + "/v1/models", 301)},
                            ["HTTP 301", other.root + "/v1/models", "not followed", "--base-url"]),
        "version-redirect": ({"/v1/models": models_route(owned_by="vllm"), "/version": redirect_route(other.root + "/version", 302)},
                             ["HTTP 302", other.root + "/version", "--base-url"]),
        "models-not-json": ({"/v1/models": raw_route(200, b"{'data': [")}, ["the server's answer is not JSON", "--base-url"]),
        "models-not-utf8": ({"/v1/models": raw_route(200, b'{"data": "\xff\xfe"}')}, ["the server's answer is not UTF-8", "--base-url"]),
        "models-nested": ({"/v1/models": raw_route(200, NESTED)}, ["nested too deeply", "--base-url"]),
    }
    routes, fragments = cases[case]
    return serve(routes), fragments, other


PROBE_CASES = ["models-redirect", "version-redirect", "models-not-json", "models-not-utf8", "models-nested"]


@pytest.mark.parametrize("case", PROBE_CASES)
def test_the_probe_refuses_a_bad_answer_in_one_line(case, serve, tmp_path, capsys):
    # A bad input (the wrong --base-url, or not an API server): exit 2, one line, nothing written, no traceback.
    server, fragments, other = probe_server(serve, case)
    assert_refused(OptionsCommand, ["--base-url", server.base_url, "--max-retries", "0"], fragments, root=tmp_path, capsys=capsys)
    assert other.seen == []


def export_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "round"
    folder.mkdir()
    (folder / "tasks.json").write_text(json.dumps([{"data": {"id": "r1", "prompt": "p", "response": "r"}}]))
    (folder / "label_config.xml").write_text("<View></View>")
    return folder


@pytest.mark.parametrize("action", ["pull", "push"])
def test_label_studio_redirects_are_refused_naming_the_target(action, serve, tmp_path, capsys, monkeypatch):
    pytest.importorskip("label_studio_sdk", reason="the [annotate] extra (label-studio-sdk) is not installed")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", KEY)
    other = elsewhere(serve)
    server = serve({"/api/tasks/": redirect_route(other.root + "/api/tasks/"),
                    "/api/projects/": redirect_route(other.root + "/api/projects/")})
    folder = export_folder(tmp_path)
    argv = (["pull", str(folder), "--url", server.root, "--project", "1", "--taxonomy", "chehbouni2024", "--out",
             str(tmp_path / "labels.csv")] if action == "pull" else ["push", str(folder), "--url", server.root, "--title", "t"])
    line = assert_refused(annotate_cmd, argv, ["HTTP 307", f"{other.root}/api/", "not followed"], root=tmp_path, capsys=capsys)
    assert other.seen == [] and server.seen  # Label Studio was asked, the other address never
    assert all(form not in line for form in secret_forms(KEY))


# -- item 3: an echoed key is masked in every form, in every file and console line --------------------------------


def test_secret_forms_cover_raw_json_and_repr():
    forms = secret_forms(KEY)
    assert KEY in forms and json.dumps(KEY)[1:-1] in forms and repr(KEY)[1:-1] in forms
    assert repr(json.dumps(KEY)[1:-1])[1:-1] in forms  # a repr of a JSON text holding it
    quoted = "k'ey"  # repr quotes it with ", alone; with ' (escaping it) inside a text that holds a " too
    assert repr(f'"{quoted}"')[2:-2] in secret_forms(quoted) and repr(quoted)[1:-1] in secret_forms(quoted)
    mask = Masker([KEY])
    text = f"raw {KEY} json {json.dumps(KEY)} repr {KEY!r} dict {({'h': f'Bearer {KEY}'})}"
    assert mask(text).count(MASK) == 4
    assert all(form not in mask(text) for form in forms)
    assert mask(None) is None and Masker([None, ""])("EMPTY") == "EMPTY"
    # a key too short to tell from a word is not masked: "re" must not turn a model's "refusal" into "***fusal"
    assert Masker(["re"])("refusal") == "refusal" and Masker(["re"]).forms == []


def echo_server(serve) -> ScriptedServer:
    """Echoes the Authorization header: in a 200 answer's text, and (every third chat request) in a 400 body as
    the raw header, a JSON-escaped copy and a Python repr of the headers, as careless servers do."""
    calls = {"n": 0}

    def chat(handler, body, server):
        calls["n"] += 1
        headers = {k.lower(): v for k, v in handler.headers.items()}
        if calls["n"] % 3 == 0:
            message = f"bad request from {headers['authorization']} {json.dumps(headers)} {headers!r}"
            return send(handler, 400, {"error": {"message": message, "sent": headers["authorization"]}})
        return send(handler, 200, chat_answer(f"you sent {headers['authorization']} and {json.dumps(headers)}"))

    return serve({"/v1/models": models_route(), "/v1/chat/completions": chat})


def records_file(tmp_path: Path, n: int = 6) -> Path:
    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"Question {i}?", "response": f"Answer {i}."}) + "\n"
                               for i in range(n)))
    return records


def assert_no_key(tmp_path: Path, *console: str) -> int:
    forms = secret_forms(KEY)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        assert not [f for f in forms if f in text], path.name
    for text in console:
        assert not [f for f in forms if f in text], text[-500:]
    return len(files)


@pytest.mark.slow
def test_an_echoed_key_reaches_no_written_file_or_console_line(serve, tmp_path, capsys, monkeypatch):
    from generation import __main__ as generate_cmd

    monkeypatch.setenv(KEY_VAR, KEY)
    server = echo_server(serve)
    records = records_file(tmp_path)
    common = ["--engine", "openai", "--base-url", server.base_url, "--api-key-env", KEY_VAR, "--max-retries", "0", "--concurrency", "1"]
    code, out, err = run_cli(label_cmd, ["--judge", "llm:smollm2", "--mode", "generate", "--input", str(records), "--out",
                                         str(tmp_path / "labelled.jsonl"), "--batch-size", "2", "--no-progress", *common], capsys)
    assert code == 3, err  # complete, every row failed (HTTP 400)
    rows = [json.loads(line) for line in (tmp_path / "labelled.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["label"] == "unscored" for r in rows)
    reasons = [r["unscored_reason"] for r in rows]
    assert sum("HTTP 400" in r for r in reasons) == 2 and all(MASK in r for r in reasons), reasons
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"Say {i}."}) + "\n" for i in range(3)))
    code, out2, err2 = run_cli(generate_cmd, ["--prompts", str(prompts), "--model", "smollm2", "--samples", "1",
                                              "--max-new-tokens", "8", "--out", str(tmp_path / "gen.jsonl"), "--no-progress",
                                              *common], capsys)
    assert code == 3, err2  # every third request answers 400: complete with a failed row
    generated = [json.loads(line) for line in (tmp_path / "gen.jsonl").read_text().splitlines()]
    assert any(r["response"] and MASK in r["response"] for r in generated), generated
    assert all(h.get("authorization") == f"Bearer {KEY}" for *_, h in server.seen)  # the key was sent...
    assert assert_no_key(tmp_path, out, err, out2, err2) >= 4  # ...and is in no file (outputs, manifests) nor line


# -- item 5: bounded size and bounded time -------------------------------------------------------------------------


@pytest.mark.parametrize("length", [False, True], ids=["streamed", "content-length"])
def test_a_gigabyte_answer_fails_its_row_after_at_most_the_limit(length, serve):
    server = serve({"/v1/models": models_route(), "/v1/chat/completions": huge_route(length=length)})
    e = engine(server, max_answer_mib=1, max_retries=0, concurrency=1)
    out = e.generate([ask("big", "x")], Sampling(), batch_seed=0)
    assert out[0].finish_reason == "failed" and "than the 1 MiB allowed" in out[0].error and "--max-answer-mib" in out[0].error
    # The client hung up near the limit: the server got rid of a few MiB (socket buffers), not the gigabyte.
    assert server.sent.get("/v1/chat/completions", 0) < 64 << 20


@pytest.mark.slow
@pytest.mark.parametrize("from_status", [False, True], ids=["body", "status-line"])
def test_a_dripped_answer_ends_at_the_timeout_of_the_whole_attempt(from_status, serve):
    # One byte every 0.2 s, each read well inside --timeout 1: only a bound on the whole attempt ends it. Each
    # attempt (the first and one retry) gets about 1 / 0.2 = 5 bytes out before the client hangs up; unbounded,
    # the server would send all of its 400.
    server = serve({"/v1/models": models_route(), "/v1/chat/completions": drip_route(0.2, from_status=from_status)})
    e = engine(server, timeout=1.0, max_retries=1, concurrency=1)
    out = e.generate([ask("drip", "x")], Sampling(), batch_seed=0)
    assert (out[0].text, out[0].finish_reason) == (None, "failed")
    assert out[0].error.startswith("timed out after 1 s after 1 retries"), out[0].error
    assert [p for _, p, _ in server.seen].count("/v1/chat/completions") == 2
    assert server.sent["/v1/chat/completions"] < 60


def test_timeout_help_says_the_whole_attempt():
    import dataclasses

    helps = {f.name: f.metadata["help"] for f in dataclasses.fields(Options)}
    assert "in all" in helps["timeout"] and "whole answer" in helps["timeout"]
    assert "MiB" in helps["max_answer_mib"]


# -- item 6: answers that are not UTF-8 JSON fail one row, not the run ---------------------------------------------


def test_a_broken_answer_fails_its_row_and_the_run_goes_on(serve):
    answers = {"utf8": b'{"choices": "\xff\xfe"}', "json": b'{"choices": [', "nested": NESTED, "gzip": None}

    def chat(handler, body, server):
        word = body["messages"][0]["content"]
        if word == "gzip":
            return send(handler, 200, b"\x1f\x8b", {"Content-Encoding": "gzip"})
        if word in answers:
            return send(handler, 200, answers[word])
        return send(handler, 200, chat_answer("refusal"))

    server = serve({"/v1/models": models_route(), "/v1/chat/completions": chat})
    e = engine(server, max_retries=0, concurrency=2)
    out = e.generate([ask(w, w) for w in ("utf8", "ok", "json", "nested", "gzip")], Sampling(), batch_seed=0)
    by = {c.key: c for c in out}
    assert by["ok"].text == "refusal" and by["ok"].error is None
    assert "not UTF-8" in by["utf8"].error
    assert "not JSON" in by["json"].error
    assert "nested too deeply" in by["nested"].error
    assert "compressed" in by["gzip"].error
    assert e.describe()["usage"]["failed"] == 4


# -- item 8h: "refusal" and five million spaces is outside the labels, for the rows and the count alike ------------


@pytest.mark.slow
def test_a_label_padded_past_any_length_is_outside_and_counted_so(serve, tmp_path, capsys):
    def chat(handler, body, server):
        user = body["messages"][-1]["content"]
        text = "refusal" + " " * 5_000_000 if "Answer 0." in user or "Answer 1." in user else " refusal\n"
        send(handler, 200, chat_answer(text))

    server = serve({"/v1/models": models_route(), "/v1/chat/completions": chat})
    records = records_file(tmp_path, n=4)
    out = tmp_path / "labelled.jsonl"
    code, stdout, err = run_cli(label_cmd, ["--judge", "llm:smollm2", "--mode", "generate", "--engine", "openai", "--base-url",
                                            server.base_url, "--input", str(records), "--out", str(out), "--no-progress"], capsys)
    assert code == 0, err
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert [rows[f"r{i}"]["label"] for i in range(4)] == ["unscored", "unscored", "refusal", "refusal"]
    assert "an answer of 5000007 characters" in rows["r0"]["unscored_reason"]
    manifest = json.loads(Path(str(out) + ".manifest.json").read_text())
    assert manifest["counts"]["outside_labels"] == 2  # the rows' meaning...
    assert manifest["judge"]["engine"]["usage"]["outside_labels"] == 2  # ...and the engine's count agree
    assert os.path.getsize(out) < 30 << 20


def test_an_openai_sdk_on_plain_httpx_is_refused_in_one_line(monkeypatch):
    # The transport is an httpx2 client; an SDK built on httpx (openai 1.x, which pyproject's openai>=1.40 allows)
    # would refuse it, or retry the transport's refusals as connection errors: one line saying to upgrade instead.
    import httpx
    import openai

    from judge.core.errors import UserError

    monkeypatch.setattr(openai, "DefaultHttpxClient", type("DefaultHttpxClient", (httpx.Client,), {}))
    with pytest.raises(UserError, match=r"built on httpx, not httpx2.*pip install -U openai"):
        OpenAIEngine("m", options=Options(base_url="http://127.0.0.1:9/v1"))


def test_label_studio_echoing_the_token_in_a_task_reaches_no_written_file(serve, tmp_path, capsys, monkeypatch):
    # pull keeps Label Studio's raw export beside --out: a server that echoes the token into a task's data must not
    # have it written there (or anywhere) in any form; the labels still come through.
    pytest.importorskip("label_studio_sdk", reason="the [annotate] extra (label-studio-sdk) is not installed")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", KEY)

    def tasks(handler, body, server):
        page = handler.path.split("page=")[1].split("&")[0] if "page=" in handler.path else "1"
        task = {"id": 1, "data": {"item_id": "r1", "prompt": "p", "response": "r",
                                  "note": f"you sent {handler.headers.get('Authorization')}"},
                "annotations": [{"id": 1, "completed_by": 1, "was_cancelled": False,
                                 "result": [{"from_name": "label", "to_name": "response", "type": "choices",
                                             "value": {"choices": ["refusal"]}}]}]}
        send(handler, 200, {"tasks": [task] if page == "1" else [], "total": 1, "total_annotations": 1,
                            "total_predictions": 0})

    server = serve({"/api/tasks/": tasks, "/api/users/": lambda h, b, s: send(h, 200, [{"id": 1, "email": "a@x.org"}])})
    folder = tmp_path / "round"
    folder.mkdir()
    (folder / "tasks.json").write_text(json.dumps([{"data": {"item_id": "r1", "prompt": "p", "response": "r"}}]))
    (folder / "items.csv").write_text("id,prompt,response\nr1,p,r\n")
    code, out, err = run_cli(annotate_cmd, ["pull", str(folder), "--url", server.root, "--project", "1", "--taxonomy",
                                            "refusal2", "--out", str(tmp_path / "labels.csv")], capsys)
    assert code == 0, err
    assert any(KEY in h.get("authorization", "") for *_, h in server.seen)  # the token was sent...
    export = (tmp_path / "labels.label-studio.json").read_text()
    assert f"you sent Token {MASK}" in export  # ...echoed, and masked where the export keeps the task
    assert assert_no_key(tmp_path, out, err) >= 3
    labels = (tmp_path / "labels.csv").read_text()
    assert "refusal" in labels
