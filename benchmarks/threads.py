"""Torch threads of the in-process engines: whole processes of generation and judge.label at --threads 1 and 2.

    python benchmarks/threads.py                        # 4 prompts x 32 greedy tokens; 8 responses for the judge
    python benchmarks/threads.py --threads 1,2,4 --repeats 2

Each run is its own process (`python -m generation --engine hf` with the bundled SmolLM2, and `python -m
judge.label --judge llm` with the bundled SmolLM2 as an in-process LLM judge), alternating thread counts so a
change in the machine's load falls on both. The table gives the command's own throughput line (tokens/s,
responses/s), the wall time, the 1-minute load average at the start and whether the outputs are byte-identical
to the first thread count's. Say the load with the figures: on a machine whose other jobs already take the
cores, more threads oversubscribe them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, cpu_model, markdown_table

PROMPTS = [
    "Write one sentence about the sea.",
    "Name three fruits.",
    "What is the capital of Italy?",
    "Describe a cat in one sentence.",
]
RESPONSES = [
    "I can't help with that.",
    "Apple, banana, cherry.",
    "Rome.",
    "Sorry, I won't do that.",
    "The sea is vast.",
    "No.",
    "Paris is in France; Rome is Italy's capital.",
    "A cat is a small furry animal.",
]


def run(command: list[str], threads: int) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, *command, "--threads", str(threads)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:2])} failed: {done.stderr.strip()[-500:]}")
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="thread counts to compare (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per thread count (default: %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    work = Path(tempfile.mkdtemp(prefix="threads-bench-"))
    prompts, records = work / "prompts.jsonl", work / "records.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS)))
    records.write_text(
        "".join(
            json.dumps({"id": f"r{i}", "prompt": PROMPTS[i % 4], "response": r}) + "\n" for i, r in enumerate(RESPONSES)
        )
    )
    rows, first = [], {}
    for repeat in range(args.repeats):
        for threads in counts:
            for what, command, pattern in (
                (
                    "generation",
                    [
                        "-m",
                        "generation",
                        "--prompts",
                        str(prompts),
                        "--samples",
                        "1",
                        "--max-new-tokens",
                        str(args.max_new_tokens),
                        "--temperature",
                        "0",
                    ],
                    r"\(([\d.]+) tokens/s\)",
                ),
                (
                    "judge.label llm",
                    ["-m", "judge.label", "--judge", "llm", "--taxonomy", "chehbouni2024", "--input", str(records)],
                    r"\(([\d.]+) responses/s",
                ),
            ):
                out = work / f"{what.split()[0]}-{threads}-{repeat}.jsonl"
                load = os.getloadavg()[0]
                seconds, stdout = run([*command, "--no-progress", "--overwrite", "--out", str(out)], threads)
                rate = re.search(pattern, stdout)
                key = (what, repeat)
                first.setdefault(key, out)
                rows.append(
                    {
                        "command": what,
                        "threads": threads,
                        "repeat": repeat + 1,
                        "rate": float(rate.group(1)) if rate else None,
                        "wall_s": round(seconds, 1),
                        "load_1min": round(load, 2),
                        "same_bytes": out.read_bytes() == first[key].read_bytes(),
                    }
                )
    print(f"CPU: {cpu_model()}; rate = tokens/s (generation) or responses/s (judge)")
    print(markdown_table(rows, ["command", "threads", "repeat", "rate", "wall_s", "load_1min", "same_bytes"]))


if __name__ == "__main__":
    main()
