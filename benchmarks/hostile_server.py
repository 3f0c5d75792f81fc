"""What a hostile OpenAI-compatible server costs a run: memory and time of whole `judge.label` processes (issue 31).

    python benchmarks/hostile_server.py                   # 8 rows of 1 GB answers at --concurrency 8; 3 dripped rows
    python benchmarks/hostile_server.py --rows 16 --drip-timeout 5

A stdlib server on 127.0.0.1 (tests/servers.py ScriptedServer) answers every chat request with a gigabyte (streamed,
no Content-Length), or one byte a second. Each case runs `python -m judge.label --judge llm:smollm2 --mode generate
--engine openai` in its own process and prints its peak resident memory (ru_maxrss of the child), its wall time,
the rows unscored and a reason. Before issue 31 the gigabyte case took 12.8 GB for 300 MB answers and the drip
outlived 200 s at --timeout 5; now an answer stops at --max-answer-mib (default 8) and an attempt at --timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT

from tests.servers import ScriptedServer, chat_route, drip_route, huge_route, models_route


def run_label(base_url: str, rows: int, folder: Path, *extra: str) -> dict:
    records = folder / "records.jsonl"
    records.write_text("".join(json.dumps({"id": f"r{i}", "prompt": "p", "response": "r"}) + "\n" for i in range(rows)))
    out = folder / "out.jsonl"
    command = [sys.executable, "-m", "judge.label", "--judge", "llm:smollm2", "--mode", "generate", "--engine", "openai",
               "--base-url", base_url, "--input", str(records), "--out", str(out), "--no-progress", *extra]
    started = time.monotonic()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own peak (ru_maxrss, KiB on Linux)
    seconds = time.monotonic() - started
    labelled = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    reasons = sorted({(r.get("unscored_reason") or "")[:110] for r in labelled} - {""})
    code = os.waitstatus_to_exitcode(status)
    return {"rc": code, "seconds": round(seconds, 1), "peak_mib": round(usage.ru_maxrss / 1024),
            "unscored": sum(r["label"] == "unscored" for r in labelled), "rows": len(labelled), "reasons": reasons,
            "stderr": stderr.strip().splitlines()[-1:] if code else []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8, help="rows of the gigabyte case (all in flight at once)")
    parser.add_argument("--drip-rows", type=int, default=3)
    parser.add_argument("--drip-timeout", type=float, default=5.0)
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"CPU: {cpu}; load average before: {Path('/proc/loadavg').read_text().split()[:3]}")
    with tempfile.TemporaryDirectory() as tmp:
        plain = ScriptedServer({"/v1/models": models_route(), "/v1/chat/completions": chat_route(lambda body, headers: "refusal")})
        (Path(tmp) / "plain").mkdir()
        result = run_label(plain.base_url, args.rows, Path(tmp) / "plain", "--concurrency", str(args.rows))
        plain.close()
        print(f"baseline, a plain answer, {args.rows} in flight: {json.dumps(result)}")
        big = ScriptedServer({"/v1/models": models_route(), "/v1/chat/completions": huge_route()})
        (Path(tmp) / "big").mkdir()
        result = run_label(big.base_url, args.rows, Path(tmp) / "big", "--concurrency", str(args.rows), "--max-retries", "0")
        sent = big.sent.get("/v1/chat/completions", 0)
        big.close()
        print(f"1 GB answers, {args.rows} in flight: {json.dumps(result)}; the server got {sent / 2**20:.0f} MiB out in all")
        drip = ScriptedServer({"/v1/models": models_route(), "/v1/chat/completions": drip_route(1.0)})
        (Path(tmp) / "drip").mkdir()
        result = run_label(drip.base_url, args.drip_rows, Path(tmp) / "drip", "--timeout", str(args.drip_timeout),
                           "--max-retries", "0", "--concurrency", "1")
        drip.close()
        print(f"one byte a second, --timeout {args.drip_timeout:g}, {args.drip_rows} rows one at a time: {json.dumps(result)}")
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
