"""The stacked ensemble against its members, across models, on the paper's released labels.

    python benchmarks/ensemble.py                        # both directions, 3 grouped folds (about 70 min on 2 CPU cores)
    python benchmarks/ensemble.py --directions 7b:13b --folds 5

For each direction (train on one model's human labels, test on the other's): out-of-fold
probabilities of the LoRA judge, TF-IDF + logistic regression and the keyword rules over grouped
folds (by template) of the training model's labels; the stacker fitted on them (every member subset);
the members retrained on all training labels; each judge's labels on the other model's outputs.
Prints Cohen's kappa with a bootstrap interval, macro-F1 and per-class F1 for every row, then
agreement split by response length (within / beyond the LoRA judge's token window). Work is cached
in runs/benchmarks/ensemble/ (out-of-fold arrays, member judges), so a rerun resumes.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
from common import DEFAULT_DATA, ROOT, cpu_model, load_chehbouni, markdown_table

from judge.analysis.agreement import agreement_analysis
from judge.core.taxonomy import load_taxonomy
from judge.kinds import load_judge
from judge.kinds.judge_dir import finish
from judge.render.tables import fmt_ci
from training.cv import grouped_folds, out_of_fold
from training.ensemble import fit_stacker, stacker_features, stacker_probabilities, weights_of
from training.examples import labelled_data
from training.lora import LoraRecipe, train_lora
from training.tfidf import train_tfidf

SHORT = {"answer": "ans", "partial answer": "part", "refusal": "ref", "harmful refusal": "h.ref", "harmful answer": "h.ans", "failure": "fail"}
MEMBERS = ("lora", "tfidf", "rules")
CHEAP_FIRST = ("rules", "tfidf", "lora")


def oof_cached(cache: Path, member: str, data, folds, recipe) -> np.ndarray:
    path = cache / f"oof-{member}.npy"
    if path.exists():
        return np.load(path)
    started = time.perf_counter()
    probs = out_of_fold(data, member, folds, recipe=recipe, progress=False).probabilities
    np.save(path, probs)
    print(json.dumps({"oof": member, "seconds": round(time.perf_counter() - started, 1)}), flush=True)
    return probs


def member_judge(cache: Path, member: str, data, tax, recipe, reuse: Path | None):
    if member == "rules":
        return load_judge("rules", taxonomy=tax)
    directory = cache / f"judge-{member}"
    if not (directory / "judge.json").exists():
        if member == "lora" and reuse is not None and (reuse / "judge.json").exists():
            directory = reuse  # the same recipe and data, already trained by another benchmark
        else:
            if member == "lora":
                train_lora(data, directory, recipe, progress=False)
            else:
                train_tfidf(data, directory)
            finish(directory, tax, training_ids=data.records["id"])
    return load_judge(str(directory))


def probabilities_of(judge, target, labels) -> np.ndarray:
    out = judge.label(target, batch_size=64, progress=False)
    return out[[f"p_{'_'.join(c.split())}" for c in labels]].to_numpy(dtype=float)


def row(name, arrow, gold, pred_labels, tax, n_boot):
    import pandas as pd

    frame = pd.DataFrame({"gold": gold, "pred": pred_labels})
    result = agreement_analysis(frame, gold="gold", pred="pred", taxonomy=tax, n_boot=n_boot)
    out = {"judge": name, "train -> test": arrow, "n": result.n, "kappa": result.cohen_kappa,
           "kappa 95% CI": fmt_ci(result.ci.cohen_kappa), "macro-F1": result.macro_f1}
    out.update({f"F1 {SHORT[c]}": v.f1 for c, v in result.per_class.items()})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--directions", default="7b:13b,13b:7b")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--bootstrap", type=int, default=500)
    ap.add_argument("--cache", type=Path, default=ROOT / "runs" / "benchmarks" / "ensemble")
    ap.add_argument("--epochs", type=int, help="LoRA epochs (default: the recipe's); a smoke run uses 1")
    ap.add_argument("--no-reuse", action="store_true", help="train the LoRA member here even if benchmarks/ppi_coverage.py cached one")
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}", flush=True)

    data = load_chehbouni(args.data_dir)
    tax = load_taxonomy("chehbouni2024")
    labels = tax.labels
    recipe = LoraRecipe() if args.epochs is None else LoraRecipe(epochs=args.epochs)
    rows, length_rows = [], []
    for direction in args.directions.split(","):
        src, dst = direction.split(":")
        arrow = f"{src} -> {dst}"
        cache = args.cache / f"{src}-folds{args.folds}"
        cache.mkdir(parents=True, exist_ok=True)
        train = labelled_data(data[src], label_column="label", taxonomy=tax)
        target = data[dst]
        gold = target["label"].tolist()
        folds = grouped_folds(train.records, k=args.folds, group="template", seed=0)
        oof = {m: oof_cached(cache, m, train, folds, recipe) for m in CHEAP_FIRST}
        reuse = None if args.no_reuse else ROOT / "runs" / "benchmarks" / "ppi" / f"judge-lora-{src}"
        test_probs = {}
        for m in CHEAP_FIRST:
            cached = cache / f"test-{dst}-{m}.npy"
            if not cached.exists():
                np.save(cached, probabilities_of(member_judge(cache, m, train, tax, recipe, reuse), target, labels))
            test_probs[m] = np.load(cached)
            rows.append(row(m, arrow, gold, [labels[i] for i in test_probs[m].argmax(1)], tax, args.bootstrap))
        for size in (2, 3):
            for subset in itertools.combinations(MEMBERS, size):
                stacker = fit_stacker(stacker_features([oof[m] for m in subset]), train.y)
                probs = stacker_probabilities(weights_of(stacker), stacker_features([test_probs[m] for m in subset]), len(labels))
                rows.append(row("ensemble " + "+".join(subset), arrow, gold, [labels[i] for i in probs.argmax(1)], tax, args.bootstrap))
                if size == 3:
                    full = probs
        # Long outputs: is agreement worse beyond the LoRA judge's token window?
        judge = load_judge(str(reuse if reuse is not None and (reuse / "judge.json").exists() else cache / "judge-lora"))
        lengths = np.array([len(judge.tokenizer(p, r)["input_ids"]) for p, r in zip(target["prompt"], target["response"].fillna(""))])
        for name, probs in (("lora", test_probs["lora"]), ("ensemble lora+tfidf+rules", full)):
            for part, mask in ((f"<= {recipe.max_length} tokens", lengths <= recipe.max_length), (f"> {recipe.max_length} tokens", lengths > recipe.max_length)):
                r = row(name, arrow, [g for g, k in zip(gold, mask) if k], [labels[i] for i in probs[mask].argmax(1)], tax, args.bootstrap)
                length_rows.append({"judge": name, "train -> test": arrow, "responses": part, "n": r["n"], "kappa": r["kappa"], "kappa 95% CI": r["kappa 95% CI"], "macro-F1": r["macro-F1"]})
        print(markdown_table([r for r in rows if r["train -> test"] == arrow], list(rows[0].keys())), flush=True)

    columns = ["judge", "train -> test", "n", "kappa", "kappa 95% CI", "macro-F1", *[f"F1 {s}" for s in SHORT.values()]]
    print(f"\n## Cross-model agreement: members and stacked ensembles ({args.folds} grouped folds for the stacker)\n")
    print(markdown_table(rows, columns))
    names = list(dict.fromkeys(r["judge"] for r in rows))
    print("\n| judge | mean kappa |\n|---|---|")
    for name in names:
        kappas = [r["kappa"] for r in rows if r["judge"] == name]
        print(f"| {name} | {sum(kappas) / len(kappas):.3f} |")
    print("\n## Agreement by response length (tokens of prompt + response, the LoRA judge's tokenizer)\n")
    print(markdown_table(length_rows, list(length_rows[0].keys())))


if __name__ == "__main__":
    main()
