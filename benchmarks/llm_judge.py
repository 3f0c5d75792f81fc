"""The constrained LLM judge: validity, agreement with humans, and speed, on a sample of the paper's records.

    python benchmarks/llm_judge.py --sample 200                  # 13B records, examples from 7B
    python benchmarks/llm_judge.py --target 7b --sample 300 --shots 2

Rows: category scoring at batch 8 (the default), zero-shot and K-shot (examples drawn from the
other model's records); then speed on a smaller subset: scoring at batch 1, outlines-constrained
generation, and free (unconstrained) generation whose text is parsed afterwards (its invalid-label
count is the failure mode constrained decoding removes).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import DEFAULT_DATA, load_chehbouni, markdown_table

from judge.analysis.agreement import agreement_analysis
from judge.core.taxonomy import UNSCORED, load_taxonomy
from judge.kinds import load_judge
from judge.render.tables import fmt_ci


def stratified(frame, n, seed=0):
    share = min(1.0, n / len(frame))
    parts = [g.sample(n=max(1, round(len(g) * share)), random_state=seed) for _, g in frame.groupby("label")]
    return frame.loc[sorted(i for p in parts for i in p.index)].reset_index(drop=True)


def agreement_row(name, labelled, target, tax, seconds):
    valid = labelled["label"].isin(tax.labels + [UNSCORED])
    invalid = int((~valid).sum())
    # judge.agree refuses a label outside the taxonomy; the benchmark counts them and scores them as unscored
    scored = labelled.assign(gold=target["label"].to_numpy(), label=labelled["label"].where(valid, UNSCORED))
    result = agreement_analysis(scored, gold="gold", pred="label", taxonomy=tax, n_boot=200)
    return {"judge": name, "n": len(target), "invalid labels": invalid, "unscored": result.n_unscored, "kappa": result.cohen_kappa,
            "kappa 95% CI": fmt_ci(result.ci.cohen_kappa),
            "macro-F1": result.macro_f1, "responses/s": len(target) / seconds}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--target", choices=["7b", "13b"], default="13b")
    ap.add_argument("--sample", type=int, default=200)
    ap.add_argument("--speed-sample", type=int, default=24)
    ap.add_argument("--shots", type=int, default=2)
    ap.add_argument("--skip-agreement", action="store_true", help="only the speed table")
    ap.add_argument("--model", default=None, help="chat model for the judge (default: bundled SmolLM2-135M-Instruct)")
    args = ap.parse_args()
    data = load_chehbouni(args.data_dir)
    tax = load_taxonomy("chehbouni2024")
    other = "7b" if args.target == "13b" else "13b"
    target = stratified(data[args.target], args.sample)
    examples = Path(tempfile.mkdtemp()) / "examples.jsonl"
    data[other].to_json(examples, orient="records", lines=True)
    spec = f"llm:{args.model}" if args.model else "llm"

    rows = []
    for shots in () if args.skip_agreement else (0, args.shots):
        judge = load_judge(spec, taxonomy=tax, examples=str(examples) if shots else None, shots=shots)
        started = time.perf_counter()
        labelled = judge.label(target, batch_size=8, progress=True)
        rows.append(agreement_row(f"scoring, {shots}-shot, batch 8", labelled, target, tax, time.perf_counter() - started))
    if rows:
        print(f"\n## LLM judge ({args.model or 'SmolLM2-135M-Instruct'}) on a stratified sample of {len(target)} {args.target} records\n")
        print(markdown_table(rows, list(rows[0].keys())), flush=True)

    speed = stratified(data[args.target], args.speed_sample, seed=1)
    judge = load_judge(spec, taxonomy=tax)
    timings = []
    for name, run in (
        ("scoring, batch 8", lambda: judge.label(speed, batch_size=8, progress=False)),
        ("scoring, batch 1", lambda: judge.label(speed, batch_size=1, progress=False)),
    ):
        started = time.perf_counter()
        labelled = run()
        timings.append(agreement_row(name, labelled, speed, tax, time.perf_counter() - started))
    judge.mode = "generate"
    judge.generator()  # build the outlines constraint once, outside the timing
    started = time.perf_counter()
    labelled = judge.label(speed, batch_size=8, progress=False)
    timings.append(agreement_row("outlines-constrained generation, batch 8", labelled, speed, tax, time.perf_counter() - started))
    # Free generation: what a plain LLM judge does; the text is parsed afterwards.
    tok, model = judge.tokenizer, judge.model
    tok.padding_side = "left"
    started = time.perf_counter()
    raws = []
    for i in range(0, len(speed), 8):
        part = speed.iloc[i : i + 8]
        texts = [judge.render_chat(judge.user_text(judge_item(r))) for r in part.itertuples()]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id)
        raws += tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    seconds = time.perf_counter() - started
    free = speed.copy()
    free["label"] = [tax.canonical(r.strip().strip(".").split("\n")[0]) or f"INVALID: {r.strip()[:30]}" for r in raws]
    row = agreement_row("free generation (parsed), batch 8", free.assign(label=free["label"].where(free["label"].isin(tax.labels), UNSCORED)), speed, tax, seconds)
    row["invalid labels"] = int((~free["label"].isin(tax.labels)).sum())
    timings.append(row)
    base = timings[1]["responses/s"]
    for t in timings:
        t["speed-up vs scoring batch 1"] = t["responses/s"] / base
    print(f"\n## Speed on {len(speed)} records\n")
    print(markdown_table(timings, list(timings[0].keys())))
    print("examples of free-generation output: " + " | ".join(repr(r.strip()[:40]) for r in raws[:5]))


def judge_item(row):
    from judge.kinds.base import Item

    return Item(row.id, row.prompt, row.response, row.name)


if __name__ == "__main__":
    main()
