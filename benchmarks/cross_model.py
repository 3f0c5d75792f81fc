"""Cross-model agreement of the judges on the paper's released labels, plus their speed.

    python benchmarks/cross_model.py                 # both directions, all judges (about 25 min on 2 CPU cores)
    python benchmarks/cross_model.py --directions 7b:13b --llm-sample 200 --shots 2

Trains each judge on one model's human labels (7B or 13B) and labels the other model's outputs;
prints one table: Cohen's kappa, Krippendorff's alpha, macro-F1 and per-class F1 for the LoRA judge,
TF-IDF + logistic regression and the keyword rules (and, with --llm-sample, the constrained LLM
judge on a stratified sample), with training examples/s and labelling responses/s. Then the default
judge's labelling throughput against its own batch-size-1 fp32 path on the 13B records.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from common import DEFAULT_DATA, cpu_model, load_chehbouni, markdown_table

from judge.analysis.agreement import agreement_analysis
from judge.core.taxonomy import load_taxonomy
from judge.kinds import load_judge
from judge.kinds.judge_dir import finish
from judge.render.tables import fmt_ci
from training.examples import labelled_data
from training.lora import LoraRecipe, train_lora
from training.tfidf import train_tfidf

SHORT = {"answer": "ans", "partial answer": "part", "refusal": "ref", "harmful refusal": "h.ref", "harmful answer": "h.ans", "failure": "fail"}


def evaluate(judge, target, tax, *, batch_size=64):
    started = time.perf_counter()
    labelled = judge.label(target, batch_size=batch_size, progress=False)
    seconds = time.perf_counter() - started
    result = agreement_analysis(labelled.assign(gold=target["label"].to_numpy()), gold="gold", pred="label", taxonomy=tax, n_boot=200)
    return result, len(target) / seconds, labelled


def row_for(name, direction, result, train_eps, label_rps):
    row = {"judge": name, "train -> test": direction, "n": result.n, "kappa": result.cohen_kappa,
           "kappa 95% CI": fmt_ci(result.ci.cohen_kappa),
           "alpha": result.krippendorff_alpha, "macro-F1": result.macro_f1, "unscored": result.n_unscored,
           "train ex/s": train_eps, "label resp/s": label_rps}
    row.update({f"F1 {SHORT[c]}": v.f1 for c, v in result.per_class.items()})
    return row


def stratified_sample(frame, n, seed=0):
    if n >= len(frame):
        return frame
    share = n / len(frame)
    parts = [g.sample(n=max(1, round(len(g) * share)), random_state=seed) for _, g in frame.groupby("label")]
    return frame.loc[sorted(i for p in parts for i in p.index)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--directions", default="7b:13b,13b:7b")
    ap.add_argument("--epochs", type=int, default=None, help="override the default LoRA recipe's epochs")
    ap.add_argument("--llm-sample", type=int, default=0, help="also run the LLM judge on a stratified sample of N target records")
    ap.add_argument("--shots", type=int, default=2, help="K-shot examples per category for the LLM judge's few-shot row")
    ap.add_argument("--skip-speed", action="store_true", help="skip the batch-size-1 fp32 comparison")
    ap.add_argument("--precision", default="auto", help="the LoRA judge's labelling precision: auto (default), fp32, bf16 or int8; "
                    "a comma list (auto,fp32) labels with each, from the one trained judge (same seed, same weights)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}; load average at start {os.getloadavg()[0]:.1f}", flush=True)
    precisions = args.precision.split(",")
    args.precision = precisions[0]  # the throughput comparison's fast path

    data = load_chehbouni(args.data_dir)
    tax = load_taxonomy("chehbouni2024")
    rows, work = [], Path(tempfile.mkdtemp(prefix="bench-cross-"))
    for direction in args.directions.split(","):
        src, dst = direction.split(":")
        train, target = data[src], data[dst]
        arrow = f"{src} -> {dst}"
        labelled = labelled_data(train, label_column="label", taxonomy=tax)

        started = time.perf_counter()
        tf_dir = work / f"tfidf-{src}"
        train_tfidf(labelled, tf_dir)
        finish(tf_dir, tax)
        tf_eps = len(train) / (time.perf_counter() - started)
        result, rps, _ = evaluate(load_judge(f"tfidf:{tf_dir}"), target, tax)
        rows.append(row_for("TF-IDF + LR", arrow, result, tf_eps, rps))

        result, rps, _ = evaluate(load_judge("rules", taxonomy=tax), target, tax)
        rows.append(row_for("keyword rules", arrow, result, None, rps))

        recipe = LoraRecipe() if args.epochs is None else LoraRecipe(epochs=args.epochs)
        lora_dir = work / f"lora-{src}"
        trained = train_lora(labelled, lora_dir, recipe, progress=False)
        finish(lora_dir, tax)
        for precision in precisions:
            load_started = time.perf_counter()
            judge = load_judge(str(lora_dir), precision=precision)
            load_seconds = time.perf_counter() - load_started
            result, rps, _ = evaluate(judge, target, tax)
            row = row_for(f"LoRA MiniLM ({precision}: {judge.precision})", arrow, result, trained.metrics["train_examples_per_second"], rps)
            row["train s"] = trained.metrics["train_seconds"]
            row["load s"] = round(load_seconds, 1)
            rows.append(row)
        print(json.dumps({"direction": arrow, "lora_metrics": {k: v for k, v in trained.metrics.items() if k != "history"}}), flush=True)

        if args.llm_sample:
            sample = stratified_sample(target, args.llm_sample)
            examples = work / f"examples-{src}.jsonl"
            train.to_json(examples, orient="records", lines=True)
            for shots in (0, args.shots):
                judge = load_judge("llm", taxonomy=tax, examples=str(examples) if shots else None, shots=shots)
                result, rps, _ = evaluate(judge, sample, tax, batch_size=8)
                rows.append(row_for(f"LLM SmolLM2-135M {shots}-shot (sample)", arrow, result, None, rps))
        print(markdown_table([r for r in rows if r['train -> test'] == arrow], list(rows[-1].keys())), flush=True)

    columns = ["judge", "train -> test", "n", "kappa", "kappa 95% CI", "alpha", "macro-F1", *[f"F1 {s}" for s in SHORT.values()], "unscored", "train ex/s", "label resp/s", "train s"]
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print("\n## Cross-model agreement with the human labels\n")
    print(markdown_table(rows, columns))
    for name in {r["judge"] for r in rows}:
        kappas = [r["kappa"] for r in rows if r["judge"] == name]
        if len(kappas) > 1:
            print(f"mean kappa {name}: {sum(kappas) / len(kappas):.3f}")

    if not args.skip_speed:
        speed_rows = []
        target = data["13b"]
        lora_dir = work / "lora-7b" if (work / "lora-7b").exists() else next(work.glob("lora-*"))
        fast_started = time.perf_counter()
        fast = load_judge(str(lora_dir), precision=args.precision)
        fast_labels = fast.label(target, batch_size=64, progress=False)
        fast_total = time.perf_counter() - fast_started
        slow_started = time.perf_counter()
        slow = load_judge(str(lora_dir), precision="fp32")
        slow_labels = slow.label(target, batch_size=1, progress=False)
        slow_total = time.perf_counter() - slow_started
        same = (fast_labels["label"] == slow_labels["label"]).mean()
        speed_rows.append({"path": f"{args.precision} ({fast.precision}), batch 64, length-sorted", "responses": len(target), "seconds (load + label)": fast_total, "responses/s": len(target) / fast_total})
        speed_rows.append({"path": "fp32, batch 1", "responses": len(target), "seconds (load + label)": slow_total, "responses/s": len(target) / slow_total})
        print("\n## Labelling throughput of the default judge on the 13B records (whole process: load + label)\n")
        print(markdown_table(speed_rows, list(speed_rows[0].keys())))
        print(f"speed-up: {slow_total / fast_total:.2f}x; labels identical between the two paths for {same:.1%} of responses")
        ka = agreement_analysis(fast_labels.assign(gold=target["label"].to_numpy()), gold="gold", pred="label", taxonomy=tax, n_boot=0).cohen_kappa
        kb = agreement_analysis(slow_labels.assign(gold=target["label"].to_numpy()), gold="gold", pred="label", taxonomy=tax, n_boot=0).cohen_kappa
        print(f"kappa vs human: {fast.precision} path {ka:.3f}, fp32 path {kb:.3f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
