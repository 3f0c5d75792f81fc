"""Generation throughput: batch size 1 (the paper's way) against the batched path, same prompts.

    python benchmarks/generation.py                              # bundled SmolLM2-135M on CPU
    python benchmarks/generation.py --batch-sizes 1,8,16,32 --prompts 32 --max-new-tokens 48
    python benchmarks/generation.py --random-llama2-7b --batch-sizes 1,16,64,128   # on a GPU

Each configuration runs in its own process so peak memory (max RSS on CPU, max allocated on GPU) is
its own. Greedy decoding, so the outputs of every batch size can be compared with batch size 1.
--random-llama2-7b builds a randomly initialised model with the Llama-2-7B shape (bf16, GPU) since
real weights cannot be fetched; it uses the bundled tokenizer (vocabulary 49,152 instead of 32,000).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, markdown_table


def worker(args) -> dict:
    import torch

    from generation.generate import Decoding, generate_outputs
    from generation.prompts import build_prompts, load_names, load_templates
    from judge.engines.transformers import TransformersEngine

    data = ROOT / "data"
    prompts = build_prompts(load_templates(data / "templates" / "templates.json"), load_names(data / "names" / "names.json"), sample=args.prompts, seed=0)
    if args.random_llama2_7b:
        from transformers import LlamaConfig, LlamaForCausalLM

        engine = TransformersEngine("bundled:smollm2", device="cpu")
        tokenizer = engine.tokenizer
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                             num_key_value_heads=32, max_position_embeddings=4096, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        with torch.device("cuda"):
            model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
        engine.model, engine.device = model, next(model.parameters()).device  # SmolLM2's tokenizer, a 7B-shaped model
        torch.cuda.reset_peak_memory_stats()
    else:
        engine = TransformersEngine("bundled:smollm2", device=args.device)
        model = engine.model
    decoding = Decoding(max_new_tokens=args.max_new_tokens, temperature=0)
    started = time.perf_counter()
    rows = generate_outputs(prompts, engine=engine, model_id="bench", samples=1, decoding=decoding, batch_size=args.batch_size,
                            system_prompt="You are a helpful assistant. Complete the [BLANK].", instruction="{prompt}", progress=False).rows
    seconds = time.perf_counter() - started
    gpu = torch.cuda.is_available() and next(model.parameters()).is_cuda
    peak = torch.cuda.max_memory_allocated() / 2**20 if gpu else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"batch_size": args.batch_size, "outputs": len(rows), "new_tokens": sum(r["response_tokens"] for r in rows), "seconds": seconds,
            "peak_mb": peak, "memory": "GPU max allocated" if gpu else "process max RSS", "responses": {r["id"]: r["response"] for r in rows}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", default="1,8,16,32")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--random-llama2-7b", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    results = []
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        cmd = [sys.executable, __file__, "--worker", "--batch-size", str(bs), "--prompts", str(args.prompts), "--max-new-tokens", str(args.max_new_tokens), "--device", args.device]
        if args.random_llama2_7b:
            cmd.append("--random-llama2-7b")
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent)
        if proc.returncode:
            sys.exit(f"batch size {bs} failed:\n{proc.stderr[-2000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"batch {bs}: {results[-1]['new_tokens'] / results[-1]['seconds']:.1f} tokens/s", file=sys.stderr, flush=True)
    base = results[0]
    rows = []
    for r in results:
        same = sum(r["responses"][k] == base["responses"][k] for k in base["responses"])
        rows.append({"batch size": r["batch_size"], "outputs": r["outputs"], "new tokens": r["new_tokens"], "seconds": r["seconds"],
                     "tokens/s": r["new_tokens"] / r["seconds"], "speed-up vs batch 1": (r["new_tokens"] / r["seconds"]) / (base["new_tokens"] / base["seconds"]),
                     f"peak MB ({r['memory']})": r["peak_mb"], "greedy outputs identical to batch 1": f"{same}/{len(base['responses'])}"})
    model = "random Llama-2-7B shape, bf16" if args.random_llama2_7b else "bundled SmolLM2-135M-Instruct, fp32"
    print(f"\n## Generation throughput ({model}; {args.prompts} prompts, greedy, up to {args.max_new_tokens} new tokens)\n")
    print(markdown_table(rows, list(rows[0].keys())))


if __name__ == "__main__":
    main()
