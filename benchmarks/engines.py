"""Engines side by side: the same 96 requests (32 prompts x 3 samples x 48 new tokens, bundled SmolLM2-135M) through
transformers at batch 1 (the paper's loop) and batched, vLLM offline, and the openai engine against `vllm serve` at
concurrency 1 and 16; then the exact LLM judge on released human labels (200 by default) through transformers in
process, vLLM offline (today's prompt_logprobs path, and the trie scorer at block size 128 and 32) and the openai engine
against `vllm serve` (the trie, concurrency 16), each row compared with the in-process judge.

    .venv-vllm/bin/python benchmarks/engines.py     # everything (vLLM offline and a server: minutes each to start)
    .venv-vllm/bin/python benchmarks/engines.py --skip-server --judge-rows 60
    .venv-vllm/bin/python benchmarks/engines.py --judge-only --judge-rows 16    # the judge per engine, minutes

Runs under the vLLM venv (``make vllm``): the hf rows use that venv's transformers. Each row is the real command
(``python -m generation`` / ``python -m judge.label``) run in this process; its speed is read from the manifest
(sampling time only, not the model's load). The machine's CPU and load average are printed: on a shared box the
numbers say "order of magnitude", and ratios between rows are what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_DATA, ROOT, cpu_model, markdown_table  # noqa: E402

LABELS = ["answer", "partial answer", "refusal", "harmful refusal", "harmful answer", "failure"]


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} CPUs"


def run(module, argv: list[str]) -> None:
    from judge.core.config import run_command

    code = run_command(module.build_parser, module.Config, module.main, argv)
    if code:
        raise SystemExit(f"{module.__name__} {' '.join(argv[:6])} ... failed with exit code {code}")


def prompt_file(tmp: Path, n: int) -> Path:
    from generation.prompts import build_prompts, load_names, load_templates

    prompts = build_prompts(
        load_templates(ROOT / "data" / "templates" / "templates.json"),
        load_names(ROOT / "data" / "names" / "names.json"),
        sample=n,
        seed=0,
    )
    path = tmp / "prompts.jsonl"
    prompts.to_json(path, orient="records", lines=True)
    return path


def generation_row(name: str, tmp: Path, prompts: Path, engine: list[str], args) -> dict:
    import generation.__main__ as generation

    out = tmp / f"gen-{len(list(tmp.glob('gen-*.jsonl')))}.jsonl"
    started = time.perf_counter()
    run(
        generation,
        [
            "--prompts",
            str(prompts),
            "--samples",
            str(args.samples),
            "--max-new-tokens",
            str(args.max_new_tokens),
            "--no-progress",
            "--out",
            str(out),
            *engine,
        ],
    )
    whole = time.perf_counter() - started
    throughput = json.loads(out.with_name(out.name + ".manifest.json").read_text())["throughput"]
    row = {
        "engine": name,
        "outputs": args.prompts * args.samples,
        "new tokens": throughput["new_tokens"],
        "sampling s": throughput["generation_seconds"],
        "tokens/s": throughput["tokens_per_second"],
        "with load s": round(whole, 1),
        "load": f"{os.getloadavg()[0]:.1f}",
    }
    print("row: " + json.dumps(row), flush=True)  # a run cut short still says what it measured
    return row


def judge_rows(tmp: Path, n: int, engines: dict[str, list[str]]) -> list[dict]:
    from sklearn.metrics import cohen_kappa_score

    import judge.label as label
    from judge.data import import_chehbouni2024

    records = import_chehbouni2024([DEFAULT_DATA / "df_annotated_llama13.csv"]).sample(n=n, random_state=0)
    source = tmp / "released.jsonl"
    records.rename(columns={"label": "human_label"}).to_json(source, orient="records", lines=True)
    labels, probs, rows = {}, {}, []
    columns = [f"p_{c.replace(' ', '_')}" for c in LABELS]
    for k, (name, engine) in enumerate(engines.items()):
        if callable(engine):  # a row that needs something started first (the server): its flags, or None to skip
            engine = engine()
            if engine is None:
                continue
        out = tmp / f"judge-{k}.jsonl"
        spec = "llm"
        if "--model" in engine:  # a server: the judge is llm:<its served name>
            at = engine.index("--model")
            spec, engine = f"llm:{engine[at + 1]}", engine[:at] + engine[at + 2 :]
        started = time.perf_counter()
        run(
            label,
            [
                "--judge",
                spec,
                "--input",
                str(source),
                "--out",
                str(out),
                "--no-progress",
                "--batch-size",
                "16",
                *engine,
            ],
        )
        whole = time.perf_counter() - started
        labelled = [json.loads(line) for line in out.read_text().splitlines()]
        labels[name] = [r["label"] for r in labelled]
        probs[name] = [[r[c] for c in columns] for r in labelled]
        human = [r["human_label"] for r in labelled]
        manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
        throughput, described = manifest["throughput"], manifest["judge"].get("engine") or {}
        scoring = str(described.get("label_scoring", "in process")).split(":")[0]
        rows.append(
            {
                "judge through": name,
                "scorer": scoring,
                "rows": n,
                "responses/s": throughput["responses_per_second"],
                "with load s": round(whole, 1),
                "agreement with humans": sum(a == b for a, b in zip(labels[name], human)) / n,
                "kappa with humans": cohen_kappa_score(human, labels[name], labels=LABELS),
                "load": f"{os.getloadavg()[0]:.1f}",
            }
        )
        print("row: " + json.dumps(rows[-1]), flush=True)
    reference = next(iter(labels), None)  # the first row (hf in process) is what the others are compared with
    for row in rows:
        name = row["judge through"]
        row["same label as " + str(reference)] = sum(x == y for x, y in zip(labels[name], labels[reference])) / n
        worst = max(abs(a - b) for x, y in zip(probs[name], probs[reference]) for a, b in zip(x, y))
        row["max |dp| vs " + str(reference)] = f"{worst:.1e}"  # a table's 3 decimals would show 0.000
        first = next(r["responses/s"] for r in rows if r["judge through"] == reference)
        row["x " + str(reference)] = round(row["responses/s"] / first, 3) if first else None
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--hf-batch-size", type=int, default=32, help="the batched transformers row's batch size")
    ap.add_argument("--judge-rows", type=int, default=200, help="released 13B labels the LLM judge labels (0: skip)")
    ap.add_argument("--skip-server", action="store_true", help="no `vllm serve` rows")
    ap.add_argument("--judge-only", action="store_true", help="the LLM judge's rows only (no generation rows)")
    ap.add_argument(
        "--only", default="", help="judge rows whose name holds one of these comma-separated words (hf always)"
    )
    ap.add_argument("--kv-cache-gib", default="1", help="vLLM's KV cache, offline and served (GiB)")
    args = ap.parse_args()

    print(f"CPU: {cpu_model()}; {load()} at the start")
    tmp = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    vllm = ["--engine", "vllm", "--dtype", "float32", "--max-model-len", "2048", "--kv-cache-gib", args.kv_cache_gib]
    if not args.judge_only:
        generation_rows(tmp, vllm, args)
    if args.judge_rows:
        judge_table(tmp, vllm, args)
    print(f"\n{load()} at the end; outputs in {tmp}")


def judge_table(tmp: Path, vllm: list[str], args) -> None:
    """The exact LLM judge per engine: hf in process, vLLM offline by today's prompt_logprobs and by the trie (block
    size 128, vLLM's CPU default, and 32), and the openai engine against `vllm serve` (trie) at concurrency 16."""
    server = None

    def served() -> list[str] | None:
        nonlocal server
        from judge.engines.models import resolve_model
        from tests.servers import SERVED_NAME, start_vllm

        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(float(args.kv_cache_gib))))
        server, why = start_vllm(str(resolve_model("bundled:smollm2")), extra=["--block-size", "32"])
        if server is None:
            print(f"no vllm serve rows: {why}")
            return None
        return ["--engine", "openai", "--model", SERVED_NAME, "--base-url", server.base_url, "--concurrency", "16"]

    engines: dict = {
        "hf": [],
        "vLLM offline, prompt_logprobs, block 128": [
            *vllm,
            "--label-scoring",
            "prompt-logprobs",
            "--block-size",
            "128",
        ],
        "vLLM offline, trie, block 128": [*vllm, "--block-size", "128"],
        "vLLM offline, trie, block 32": [*vllm, "--block-size", "32"],
    }
    if not args.skip_server:
        engines["openai -> vllm serve (block 32), trie, concurrency 16"] = served
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    if wanted:
        engines = {k: v for k, v in engines.items() if k == "hf" or any(w in k for w in wanted)}
    try:
        judged = judge_rows(tmp, args.judge_rows, engines)
    finally:
        if server is not None:
            server.stop()
    print(
        f"\nThe LLM judge (bundled SmolLM2, fp32, scores every category) on {args.judge_rows} released Llama 2 13B "
        "labels\n"
    )
    print(markdown_table(judged, list(judged[0])))


def generation_rows(tmp: Path, vllm: list[str], args) -> None:
    prompts = prompt_file(tmp, args.prompts)
    total = ["--batch-size", str(args.prompts * args.samples)]  # one batch: the engine schedules it
    rows = [
        generation_row("transformers, batch 1", tmp, prompts, ["--batch-size", "1"], args),
        generation_row(
            f"transformers, batch {args.hf_batch_size}", tmp, prompts, ["--batch-size", str(args.hf_batch_size)], args
        ),
        generation_row("vLLM offline", tmp, prompts, [*vllm, *total], args),
    ]
    if not args.skip_server:
        from judge.engines.models import resolve_model
        from tests.servers import SERVED_NAME, start_vllm

        server, why = start_vllm(str(resolve_model("bundled:smollm2")))
        if server is None:
            print(f"no vllm serve rows: {why}")
        else:
            try:
                for concurrency in (1, 16):
                    rows.append(
                        generation_row(
                            f"openai engine -> vllm serve, concurrency {concurrency}",
                            tmp,
                            prompts,
                            [
                                "--engine",
                                "openai",
                                "--model",
                                SERVED_NAME,
                                "--base-url",
                                server.base_url,
                                "--concurrency",
                                str(concurrency),
                                *total,
                            ],
                            args,
                        )
                    )
            finally:
                server.stop()
    batched = next(
        r["tokens/s"] for r in rows if r["engine"].startswith("transformers, batch ") and not r["engine"].endswith(" 1")
    )
    offline = next(r["tokens/s"] for r in rows if r["engine"] == "vLLM offline")
    for row in rows:
        row["x batched hf"] = round(row["tokens/s"] / batched, 2) if batched else None
        row["x vLLM offline"] = round(row["tokens/s"] / offline, 2) if offline else None
    print(
        f"\n{args.prompts} prompts x {args.samples} samples x at most {args.max_new_tokens} new tokens, sampled (temperature 0.6, top-p 0.9)\n"
    )
    print(
        markdown_table(
            rows,
            [
                "engine",
                "outputs",
                "new tokens",
                "sampling s",
                "tokens/s",
                "x batched hf",
                "x vLLM offline",
                "with load s",
                "load",
            ],
        )
    )


if __name__ == "__main__":  # vLLM spawns its engine core: this must not run again there
    main()
