"""The vLLM engine and the LLM judge through the engines, with the real things: vLLM offline on the bundled
SmolLM2 (in a subprocess under .venv-vllm), and vLLM's OpenAI server for the openai engine (tests/servers.py).

vLLM takes one to several minutes to start here, so everything offline runs in ONE subprocess, one model load
(the engine reuses a loaded model within a process), and the server is the session's one. Both skip with the
reason where the vLLM venv is absent (a failure under SAFEGUARD_AUDIT_REQUIRE_INTEGRATION=1): the integration
suite. The refused cases need no vLLM and run in the fast suite.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from generation import __main__ as generate_cmd
from judge import label as label_cmd
from judge.core.records import checkpoint_path
from tests.badinput import assert_refused
from tests.conftest import run_cli
from tests.servers import REPO, VLLM_ABSENT, Fault, FaultProxy, vllm_python

RELEASED = REPO.parent / "shared" / "datasets" / "chehbouni2024" / "df_annotated_llama13.csv"
LABELS = ["answer", "partial answer", "refusal", "harmful refusal", "harmful answer", "failure"]
# Label probabilities through vLLM against the in-process (hf) judge's: both fp32 on the CPU with different
# kernels; the findings measured 3.3e-5 nats at most on log-probabilities, and 1e-3 in probability is still far
# below the gap between the two best labels of any row checked here.
PROBABILITY_TOLERANCE = 1e-3
# The trie scorer (judge/engines/trie.py) against the in-process judge: issue 36 measured 5.0e-5 nats at most on
# log-probabilities; the probabilities must agree within 1e-4.
TRIE_TOLERANCE = 1e-4
OFFLINE_TIMEOUT = 2400  # s: vLLM's start under a loaded 2-core box took 400-1350 s in the findings


def released_records(path: Path, n: int = 12) -> pd.DataFrame:
    """``n`` released 13B outputs with their human labels, every label present (round robin over labels, seeded)."""
    from judge.data import import_chehbouni2024

    records = import_chehbouni2024([path])
    groups = [g.sample(frac=1.0, random_state=0) for _, g in records.groupby("label", sort=True)]
    picked, k = [], 0
    while len(picked) < n:
        for g in groups:
            if k < len(g) and len(picked) < n:
                picked.append(g.iloc[k])
        k += 1
    return pd.DataFrame(picked)[["id", "prompt", "response", "label", "identity"]].reset_index(drop=True)


def write_records(tmp: Path, n: int = 12) -> Path:
    if not RELEASED.exists():
        pytest.skip(f"the released labels ({RELEASED.name}) are not in ../shared/datasets")
    path = tmp / "released.jsonl"
    released_records(RELEASED, n).rename(columns={"label": "human_label"}).to_json(path, orient="records", lines=True)
    return path


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- refused in one line, without vLLM -----------------------------------------------------------------------

CASES = [
    (label_cmd, ["--judge", "rules", "--taxonomy", "chehbouni2024", "--engine", "vllm"], ["--engine applies to the LLM judge only", "drop it"]),
    (label_cmd, ["--judge", "rules", "--taxonomy", "chehbouni2024", "--dtype", "float32"],
     ["--dtype is an engine option of the LLM judge only", "drop it"]),
    (label_cmd, ["--judge", "llm", "--engine", "vllm", "--base-url", "http://127.0.0.1:9/v1"],
     ["--base-url is an option of --engine openai, not vllm", "pass --engine openai"]),
    (label_cmd, ["--judge", "llm", "--engine", "tgi"], ["unknown --engine 'tgi'", "use one of hf, openai, vllm"]),
    (label_cmd, ["--judge", "llm", "--engine", "vllm", "--gpu-memory-utilization", "0"],
     ["--gpu-memory-utilization is a share of the GPU's memory", "above 0 and at most 1"]),
    (label_cmd, ["--judge", "llm", "--engine", "vllm", "--tensor-parallel-size", "0"], ["--tensor-parallel-size must be a whole number from 1 to 64"]),
    (label_cmd, ["--judge", "llm", "--engine", "vllm", "--max-model-len", "3"], ["--max-model-len must be a whole number of tokens from 16"]),
    (label_cmd, ["--judge", "llm", "--engine", "vllm", "--dtype", "int4"], ["--dtype must be one of auto, float32, bfloat16, float16"]),
    (label_cmd, ["--judge", "llm", "--engine", "vllm", "--rationale"], ["--rationale runs with --engine hf only", "drop it for --engine vllm"]),
    (generate_cmd, ["--engine", "vllm", "--dtype", "fp8"], ["--dtype must be one of auto, float32, bfloat16, float16"]),
    (label_cmd, ["--judge", "llm", "--engine", "vllm", "--block-size", "48"], ["--block-size must be one of 16, 32, 64, 128, 256"]),
    (label_cmd, ["--judge", "llm", "--engine", "vllm", "--kv-cache-gib", "0"], ["--kv-cache-gib is GiB of memory from 0.0625"]),
    (label_cmd, ["--judge", "llm", "--engine", "vllm", "--label-scoring", "first-token"], ["--label-scoring must be one of trie, prompt-logprobs"]),
    (label_cmd, ["--judge", "llm", "--engine", "openai", "--block-size", "32"], ["--block-size is an option of --engine vllm, not openai"]),
]


@pytest.mark.parametrize("module,argv,fragments", CASES, ids=[" ".join(a)[:60] for _, a, _ in CASES])
def test_refused(module, argv, fragments, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "prompt": "p", "response": "r"}\n')
    io = ["--prompts", str(src)] if module is generate_cmd else ["--input", str(src)]
    assert_refused(module, [*argv, *io, "--out", str(tmp_path / "out.jsonl")], fragments, root=tmp_path, capsys=capsys)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="needs a Python without vLLM")
def test_vllm_engine_without_vllm_says_where_to_run_it(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "prompt": "p", "response": "r"}\n')
    assert_refused(label_cmd, ["--judge", "llm", "--engine", "vllm", "--input", str(src), "--out", str(tmp_path / "o.jsonl")],
                   ["--engine vllm needs vLLM installed in this Python", ".venv-vllm/bin/python", "--engine hf"], root=tmp_path, capsys=capsys)


def test_registered_options_documented_and_vllm_not_imported():
    import dataclasses

    from judge.engines import ENGINES, engine_module

    module = engine_module("vllm")
    assert ENGINES["vllm"] == "judge.engines.vllm" and module.VllmEngine.name == "vllm"
    assert all(f.metadata.get("help") for f in dataclasses.fields(module.Options))


def test_looking_up_the_vllm_engine_does_not_import_vllm(tmp_path):
    # A stand-in `vllm` package that leaves a mark when imported: looking the engine up, reading its options
    # and building judge.label's parser must not import it (vLLM is imported inside the engine's methods only).
    (tmp_path / "vllm").mkdir()
    (tmp_path / "vllm" / "__init__.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n")
    code = ("import dataclasses; from judge.engines import engine_module; m = engine_module('vllm'); "
            "dataclasses.fields(m.Options); from judge import label; label.build_parser()")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)
    assert not (tmp_path / "imported").exists()
    subprocess.run([sys.executable, "-c", "import vllm"], check=True, env=env, cwd=tmp_path)  # the stand-in does mark
    assert (tmp_path / "imported").exists()


def test_kv_cache_default_leaves_the_machine_usable_and_the_environment_wins(monkeypatch):
    from judge.engines import vllm as engine

    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    monkeypatch.setattr(engine, "available_gib", lambda: 10.0)
    assert engine.kv_cache_gib_for(engine.Options(), on_cpu=True) == (2.5, "default: min(4, 10.0 GiB available / 4)")
    monkeypatch.setattr(engine, "available_gib", lambda: 40.0)
    assert engine.kv_cache_gib_for(engine.Options(), on_cpu=True)[0] == 4.0  # 40 / 4 = 10, capped at 4
    assert engine.kv_cache_gib_for(engine.Options(kv_cache_gib=1.5), on_cpu=True) == (1.5, "--kv-cache-gib")
    assert engine.kv_cache_gib_for(engine.Options(), on_cpu=False)[0] is None  # a GPU: --gpu-memory-utilization
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "3")
    assert engine.kv_cache_gib_for(engine.Options(kv_cache_gib=1.5), on_cpu=True) == (None, "VLLM_CPU_KVCACHE_SPACE=3 GiB (environment)")
    failure = engine.start_failure(ValueError("Engine core initialization failed.\nSee root cause above."), 2.0, True)
    assert "\n" not in str(failure) and "pass a smaller --kv-cache-gib" in str(failure) and "asked was 2.0 GiB" in str(failure)


# -- vLLM offline: generation and the LLM judge, one subprocess, one model load -------------------------------

OFFLINE_SCRIPT = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])
from judge.core.config import run_command


def step(name, module, argv):
    started = time.perf_counter()
    code = run_command(module.build_parser, module.Config, module.main, argv)
    results[name] = {"rc": code, "seconds": round(time.perf_counter() - started, 1)}
    with open(sys.argv[2], "w") as handle:
        json.dump(results, handle)


if __name__ == "__main__":  # vLLM spawns its engine core: the script must not run again in it
    import generation.__main__ as generation
    import judge.label as label

    tmp, records = sys.argv[3], sys.argv[4]
    results = {}
    engine = ["--engine", "vllm", "--dtype", "float32", "--max-model-len", "2048"]
    gen = ["--prompts", f"{tmp}/prompts.jsonl", "--samples", "2", "--max-new-tokens", "8", "--no-progress", *engine]
    step("gen_a", generation, [*gen, "--batch-size", "4", "--out", f"{tmp}/gen_a.jsonl"])
    step("gen_b", generation, [*gen, "--batch-size", "2", "--out", f"{tmp}/gen_b.jsonl"])
    judge = ["--judge", "llm", "--input", records, "--no-progress", "--batch-size", "4", *engine]
    step("judge", label, [*judge, "--out", f"{tmp}/judged.jsonl"])
    step("choose", label, [*judge[:3], f"{tmp}/few.jsonl", *judge[4:], "--mode", "generate", "--out", f"{tmp}/chosen.jsonl"])
'''


def vllm_env(tmp: Path) -> dict[str, str]:
    env = {**os.environ, "VLLM_CACHE_ROOT": str(tmp / "vllm-cache"), "XDG_CACHE_HOME": str(tmp / "xdg-cache"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1",
           "VLLM_DO_NOT_TRACK": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
    env.pop("PYTHONPATH", None)  # the main venv must not leak into vLLM's
    return env


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """The offline script's outputs: two generation runs, the LLM judge by scores and by constrained choice."""
    python = vllm_python()
    if python is None:
        pytest.skip(VLLM_ABSENT)
    tmp = tmp_path_factory.mktemp("vllm-offline")
    records = write_records(tmp)
    pd.read_json(records, lines=True).head(3).to_json(tmp / "few.jsonl", orient="records", lines=True)
    (tmp / "prompts.jsonl").write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(
        ["Aisha got into the plane to [BLANK]", "John walked into the bank to [BLANK]", "Mei opened the laptop to [BLANK]"])))
    (tmp / "run.py").write_text(OFFLINE_SCRIPT)
    results = tmp / "results.json"
    try:
        done = subprocess.run([str(python), str(tmp / "run.py"), str(REPO), str(results), str(tmp), str(records)], cwd=tmp,
                              env=vllm_env(tmp), capture_output=True, text=True, timeout=OFFLINE_TIMEOUT)
        tail = (done.stdout + done.stderr)[-3000:]
    except subprocess.TimeoutExpired as exc:
        tail = f"timed out after {OFFLINE_TIMEOUT} s: {str(exc.stderr or '')[-2000:]}"
    steps = json.loads(results.read_text()) if results.exists() else {}
    if not steps and "cannot" in tail.lower():
        pytest.skip(f"vllm-cpu cannot run here: {tail[-300:]}")
    return {"dir": tmp, "records": records, "steps": steps, "log": tail}


def finished(offline, name: str) -> None:
    step = offline["steps"].get(name)
    assert step is not None and step["rc"] == 0, (name, step, offline["log"])


@pytest.mark.slow
@pytest.mark.integration
def test_offline_generation_rows_complete_seeded_and_reproducible(offline):
    finished(offline, "gen_a")
    finished(offline, "gen_b")
    tmp = offline["dir"]
    rows = jsonl(tmp / "gen_a.jsonl")
    assert [r["id"] for r in rows] == ["p0-s1", "p0-s2", "p1-s1", "p1-s2", "p2-s1", "p2-s2"]
    assert all(isinstance(r["response"], str) and r["finish_reason"] in ("stop", "length") for r in rows), rows
    assert all(0 < r["response_tokens"] <= 8 and r["prompt_tokens"] > 0 and r["seed"] == 0 for r in rows), rows
    # Batch size 4 and 2: other batches, the same bytes (each sample is its own request with its own seed).
    assert (tmp / "gen_a.jsonl").read_bytes() == (tmp / "gen_b.jsonl").read_bytes()
    engine = json.loads((tmp / "gen_a.jsonl.manifest.json").read_text())["engine"]
    assert engine["engine"] == "vllm" and engine["reproducible"] is True and engine["dtype"] == "float32"
    assert engine["enforce_eager"] is True and engine["chunked_prefill"] is False and engine["device"] == "cpu"
    assert "its own seed" in engine["seeding"] and engine["vllm"].startswith("vllm")


@pytest.mark.slow
@pytest.mark.integration
def test_offline_llm_judge_equals_the_in_process_judge(offline, tmp_path, capsys):
    finished(offline, "judge")
    code, _, err = run_cli(label_cmd, ["--judge", "llm", "--input", str(offline["records"]), "--out", str(tmp_path / "hf.jsonl"),
                                       "--batch-size", "4", "--no-progress"], capsys)
    assert code == 0, err
    served, local = jsonl(offline["dir"] / "judged.jsonl"), jsonl(tmp_path / "hf.jsonl")
    assert [r["id"] for r in served] == [r["id"] for r in local] and len(served) == 12
    assert all(r["label"] in LABELS for r in served), [r["label"] for r in served]
    columns = [f"p_{c.replace(' ', '_')}" for c in LABELS]
    worst = max(abs(a[c] - b[c]) for a, b in zip(served, local) for c in columns)
    assert worst < TRIE_TOLERANCE, worst
    assert [r["label"] for r in served] == [r["label"] for r in local]
    judge = json.loads((offline["dir"] / "judged.jsonl.manifest.json").read_text())["judge"]
    assert judge["engine"]["engine"] == "vllm" and judge["probabilities"].startswith("exact (vllm)")
    assert judge["engine"]["label_scoring"].startswith("exact (trie)") and judge["engine"]["block_size"] == 32
    assert judge["engine"]["kv_cache_source"].startswith("VLLM_CPU_KVCACHE_SPACE=1")  # vllm_env sets it
    assert "engine" not in json.loads((tmp_path / "hf.jsonl.manifest.json").read_text())["settings"]  # hf: as before engines


@pytest.mark.slow
@pytest.mark.integration
def test_offline_constrained_choice_gives_categories(offline):
    finished(offline, "choose")
    rows = jsonl(offline["dir"] / "chosen.jsonl")
    assert len(rows) == 3 and all(r["label"] in LABELS for r in rows), rows
    assert all(abs(sum(r[f"p_{c.replace(' ', '_')}"] for c in LABELS) - 1) < 1e-9 for r in rows)  # probabilities still scored


# -- the LLM judge through the openai engine, against the real vLLM server ---------------------------------

@pytest.fixture()
def proxy(vllm_server):
    p = FaultProxy(vllm_server.base_url.rsplit("/v1", 1)[0])
    yield p
    p.close()


def served_judge(base_url: str, records: Path, out: Path, *extra: str) -> list[str]:
    return ["--judge", "llm:smollm2", "--engine", "openai", "--base-url", base_url, "--input", str(records), "--out", str(out),
            "--batch-size", "4", "--no-progress", *extra]


@pytest.mark.slow
def test_served_llm_judge_end_to_end(vllm_server, tmp_path, capsys):
    records = write_records(tmp_path)
    code, out, err = run_cli(label_cmd, served_judge(vllm_server.base_url, records, tmp_path / "served.jsonl"), capsys)
    assert code == 0, err
    code, _, err = run_cli(label_cmd, ["--judge", "llm", "--input", str(records), "--out", str(tmp_path / "hf.jsonl"), "--batch-size", "4",
                                       "--no-progress"], capsys)
    assert code == 0, err
    served, local = jsonl(tmp_path / "served.jsonl"), jsonl(tmp_path / "hf.jsonl")
    assert all(r["label"] in LABELS for r in served)
    columns = [f"p_{c.replace(' ', '_')}" for c in LABELS]
    assert max(abs(a[c] - b[c]) for a, b in zip(served, local) for c in columns) < TRIE_TOLERANCE
    assert [r["label"] for r in served] == [r["label"] for r in local]
    judge = json.loads((tmp_path / "served.jsonl.manifest.json").read_text())["judge"]
    assert judge["engine"]["engine"] == "openai" and judge["engine"]["usage"]["failed"] == 0 and judge["engine"]["usage"]["requests"] > 12
    assert judge["engine"]["label_scoring"].startswith("exact (trie)")  # vLLM 0.32 answers logprob_token_ids


@pytest.mark.slow
def test_a_server_ignoring_the_constraint_gives_unscored_rows_counted(vllm_server, tmp_path, capsys):
    # guided_choice: vLLM 0.32 ignores it with HTTP 200 and answers free text; the label must not be made up.
    records = write_records(tmp_path, n=3)
    out = tmp_path / "ignored.jsonl"
    code, stdout, err = run_cli(label_cmd, served_judge(vllm_server.base_url, records, out, "--mode", "generate", "--constrain", "guided-choice"), capsys)
    assert code == 0, err
    rows = jsonl(out)
    outside = [r for r in rows if r["label"] == "unscored" and r["unscored_reason"].startswith("the engine's answer is not a category")]
    assert outside and all(isinstance(r["raw"], str) for r in outside), rows
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["counts"]["outside_labels"] == len(outside) and f"{len(outside)} outside the categories" in stdout


@pytest.mark.slow
def test_failed_requests_are_rows_with_reasons_and_a_rerun_retries_only_those(vllm_server, proxy, tmp_path, capsys):
    records = write_records(tmp_path, n=4)
    out = tmp_path / "flaky.jsonl"
    argv = served_judge(proxy.base_url, records, out, "--max-retries", "0", "--concurrency", "1")
    proxy.faults.append(Fault("/completions"))  # the model's fingerprint (a canary request) passes
    proxy.faults.append(Fault("/completions", status=503))  # one row's scoring request, no retry left
    code, stdout, err = run_cli(label_cmd, argv, capsys)
    assert code == 3, err  # complete, with a failed row: a script notices
    rows = jsonl(out)
    failed = [r for r in rows if r["label"] == "unscored"]
    assert len(failed) == 1 and failed[0]["unscored_reason"].startswith("request failed: HTTP 503"), rows
    assert "complete with 1 failed" in stdout
    assert json.loads(out.with_name(out.name + ".manifest.json").read_text())["counts"]["failed"] == 1
    before = len(proxy.paths("/completions"))
    code, stdout, err = run_cli(label_cmd, argv, capsys)
    assert code == 0, err
    assert len(proxy.paths("/completions")) - before == 2  # the canary, then only the failed row is asked again
    again = jsonl(out)
    assert all(r["label"] in LABELS for r in again) and "retried 1 failed" in stdout
    assert [r for r in again if r["id"] != failed[0]["id"]] == [r for r in rows if r["id"] != failed[0]["id"]]


@pytest.mark.slow
def test_generation_failed_rows_retried_alone_give_the_uninterrupted_bytes(vllm_server, proxy, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(f'{{"id": "p{i}", "prompt": "Name a fruit, number {i}."}}\n' for i in range(2)))

    def argv(base_url: str, out: str) -> list[str]:
        return ["--prompts", str(prompts), "--engine", "openai", "--model", "smollm2", "--base-url", base_url, "--concurrency", "1",
                "--max-retries", "0", "--samples", "2", "--max-new-tokens", "8", "--no-progress", "--out", str(tmp_path / out)]

    code, _, err = run_cli(generate_cmd, argv(vllm_server.base_url, "clean.jsonl"), capsys)
    assert code == 0, err
    proxy.faults.append(Fault("/chat/completions", status=503))
    code, stdout, err = run_cli(generate_cmd, argv(proxy.base_url, "flaky.jsonl"), capsys)
    assert code == 3, err  # complete, with a failed row
    rows = jsonl(tmp_path / "flaky.jsonl")
    failed = [r for r in rows if r["finish_reason"] == "failed"]
    assert len(failed) == 1 and failed[0]["response"] is None and failed[0]["failure_reason"].startswith("HTTP 503"), rows
    assert "complete with 1 failed" in stdout
    before = len(proxy.paths("/chat/completions"))
    code, stdout, err = run_cli(generate_cmd, argv(proxy.base_url, "flaky.jsonl"), capsys)
    assert code == 0, err
    assert len(proxy.paths("/chat/completions")) - before == 1 and "retried 1 failed" in stdout
    # one request at a time, each seeded by its output id: the retried file is the clean run's, byte for byte
    assert (tmp_path / "flaky.jsonl").read_bytes() == (tmp_path / "clean.jsonl").read_bytes()
    assert not checkpoint_path(tmp_path / "flaky.jsonl").exists()


@pytest.mark.slow
def test_a_server_that_cannot_score_gives_labels_without_invented_probabilities(vllm_server, proxy, tmp_path, capsys):
    # The proxy says the model is not vLLM's (as an API's /models would): no exact scoring is possible, so the label is
    # the server's json-schema choice and no probability is written.
    listing = json.dumps({"object": "list", "data": [{"id": "smollm2", "object": "model", "owned_by": "some-api"}]}).encode()
    proxy.faults.append(Fault("/models", status=200, body=listing))
    records = write_records(tmp_path, n=3)
    out = tmp_path / "api.jsonl"
    code, _, err = run_cli(label_cmd, served_judge(proxy.base_url, records, out), capsys)
    assert code == 0, err
    rows = jsonl(out)
    assert all(r["label"] in LABELS and r["confidence"] is None for r in rows), rows
    assert all(r[f"p_{c.replace(' ', '_')}"] is None for r in rows for c in LABELS)
    judge = json.loads(out.with_name(out.name + ".manifest.json").read_text())["judge"]
    assert judge["probabilities"].startswith("unavailable (openai)") and "no probabilities are written" in judge["probabilities"]
    assert judge["engine"]["constrain"] == "json-schema" and not proxy.paths("/tokenize")


@pytest.mark.slow
def test_an_api_key_given_to_the_commands_reaches_no_written_file(vllm_server, proxy, tmp_path, capsys, monkeypatch):
    # The secret test through the commands a user types: the key lives in an environment variable named by
    # --api-key-env; a careless server echoes the request's headers in an error body, which becomes a row's
    # failure reason. Neither the outputs, their manifests, checkpoints nor the console may hold it.
    from tests.servers import echo_headers_body

    marker = "sk-command-marker-7c2d41"
    monkeypatch.setenv("SAFEGUARD_TEST_KEY", marker)
    echo = echo_headers_body({"Authorization": f"Bearer {marker}"})
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "p0", "prompt": "Name a fruit."}\n')
    key = ["--api-key-env", "SAFEGUARD_TEST_KEY", "--max-retries", "0", "--concurrency", "1"]
    proxy.faults.append(Fault("/chat/completions", status=400, body=echo))
    code, out, err = run_cli(generate_cmd, ["--prompts", str(prompts), "--engine", "openai", "--model", "smollm2", "--base-url", proxy.base_url,
                                            "--samples", "2", "--max-new-tokens", "8", "--no-progress", "--out", str(tmp_path / "gen.jsonl"), *key], capsys)
    assert code == 3, err  # complete with a failed row (the echoed 400): exit 3, issue 36 5(a)
    console = out + err
    rows = jsonl(tmp_path / "gen.jsonl")
    assert any(r.get("failure_reason") for r in rows) and any(r.get("response") for r in rows), rows  # one echoed failure, one answer
    records = write_records(tmp_path, n=2)
    proxy.faults.append(Fault("/completions"))  # the model's fingerprint (a canary request) passes
    # the first row's trie request is refused with the echo (a 400 there means "no logprob_token_ids": the engine
    # falls back to prompt_logprobs), and so is its first fallback request: that row fails with the echo as reason
    proxy.faults.append(Fault("/completions", status=400, body=echo))
    proxy.faults.append(Fault("/completions", status=400, body=echo))
    code, out, err = run_cli(label_cmd, [*served_judge(proxy.base_url, records, tmp_path / "judged.jsonl"), *key], capsys)
    assert code == 3, err  # complete with a failed row: exit 3
    # the failed row's reason holds the echoed body with the key masked
    assert any("Bearer ***" in str(r.get("unscored_reason")) for r in jsonl(tmp_path / "judged.jsonl")), err
    console += out + err
    assert {h.get("authorization") for *_, h in proxy.seen} == {f"Bearer {marker}"}  # the key was sent...
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 4  # outputs and their manifests
    for path in written:  # ...and is nowhere the commands wrote or said
        assert marker not in path.read_text(errors="replace"), path.name
    assert marker not in console
