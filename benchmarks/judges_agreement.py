"""Cross-model agreement of the cheap judges against the default LoRA judge (issue 34): kappa per
direction, per-category F1, categories never predicted, training and labelling time.

    python benchmarks/judges_agreement.py                                  # TF-IDF (word, char) and embed, 3 directions
    python benchmarks/judges_agreement.py --judges lora --directions 7b:13b --rows runs/bench.jsonl
    python benchmarks/judges_agreement.py --judges embed,embed:noprompt,lora:balanced:p6

Directions: the paper's released labels (Chehbouni et al. 2024) 7B -> 13B and 13B -> 7B, and XSTest
(train gpt4 + llama2orig + mistralguard, test llama2new + mistralinstruct). Each judge is trained by
training.build.train_judge (what judge.train runs) and labels the other side through judge.kinds.load_judge.
A judge is NAME[:noprompt][:balanced][:pN][:char][:cvK][:thk|:thf][:tkappa|:tf1]: tfidf-word, tfidf-char (char_wb
2-4 grams), embed (frozen MiniLM + logistic regression), lora (the default recipe), or ens-M1+M2+... (a stacked
ensemble of those member kinds, e.g. ens-tfidf+embed+rules); ':noprompt' reads the response only, ':balanced' /
':pN' set LoRA's --class-weighting balanced / --patience N, ':char' gives a TF-IDF member char_wb 2-4 grams, ':cvK'
adds --cv K, ':thk' / ':thf' --tune-thresholds kappa / macro-f1 (an ensemble tunes on its stacker's out-of-fold
predictions; other kinds need ':cvK'), ':tkappa' / ':tf1' add both --cv 5 and the tuning. Every row is appended to
--rows as it is done (JSONL), so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import DEFAULT_DATA, cpu_model, load_chehbouni, markdown_table
from sklearn.metrics import cohen_kappa_score, f1_score

from judge.core.taxonomy import load_taxonomy
from judge.kinds import load_judge
from training.build import TrainConfig, train_judge

XSTEST = DEFAULT_DATA.parent / "xstest2024"
XSTEST_SPLIT = (("gpt4", "llama2orig", "mistralguard"), ("llama2new", "mistralinstruct"))
KINDS = {
    "tfidf-word": {"kind": "tfidf"},
    "tfidf-char": {"kind": "tfidf", "tfidf_analyzer": "char_wb", "tfidf_ngrams": "2-4"},
    "embed": {"kind": "embed"},
    "lora": {"kind": "lora"},
}
SHORT = {
    "answer": "ans",
    "partial answer": "part",
    "refusal": "ref",
    "harmful refusal": "h.ref",
    "harmful answer": "h.ans",
    "failure": "fail",
    "full compliance": "comply",
    "full refusal": "refuse",
    "partial refusal": "partial",
}


def xstest(folder: Path):
    def read(models):
        frames = []
        for model in models:
            f = pd.read_csv(folder / f"xstest_v2_completions_{model}.csv")
            frames.append(
                pd.DataFrame(
                    {
                        "id": model + ":" + f["id"].astype(str),
                        "prompt": f["prompt"],
                        "response": f["completion"],
                        "label": f["final_label"],
                        "model": model,
                        "template": f["id"].astype(str),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    train, test = read(XSTEST_SPLIT[0]), read(XSTEST_SPLIT[1])
    tax = load_taxonomy("compliance3")
    for frame in (train, test):
        frame["label"] = tax.gold(frame["label"], column="final_label")
    return train, test


def directions(names: list[str], data_dir: Path):
    chehbouni = load_chehbouni(data_dir) if any(n != "xstest" for n in names) else None
    for name in names:
        if name == "xstest":
            yield name, "compliance3", *xstest(XSTEST)
        else:
            src, dst = name.split(":")
            yield name, "chehbouni2024", chehbouni[src], chehbouni[dst]


def judge_settings(spec: str) -> dict:
    name, *flags = spec.split(":")
    if name.startswith("ens-"):  # ens-tfidf+embed+rules: a stacked ensemble of those members
        settings = {"kind": "ensemble", "members": name[len("ens-") :].split("+")}
    else:
        settings = dict(KINDS[name])
    for flag in flags:
        if flag == "noprompt":
            settings["no_prompt"] = True
        elif flag == "char":  # the TF-IDF (member) on char_wb 2-4 grams
            settings.update(tfidf_analyzer="char_wb", tfidf_ngrams="2-4")
        elif flag.startswith("cv") and flag[2:].isdigit():
            settings["cv"] = int(flag[2:])
        elif flag in ("thk", "thf"):  # per-category decision offsets tuned out of fold (kappa / macro-F1)
            settings["tune_thresholds"] = "kappa" if flag == "thk" else "macro-f1"
        elif flag == "balanced":
            settings["class_weighting"] = "balanced"
        elif flag in ("tkappa", "tf1"):  # decision offsets tuned on 5-fold out-of-fold predictions
            settings["tune_thresholds"] = "kappa" if flag == "tkappa" else "macro-f1"
            settings.setdefault("cv", 5)
        elif flag.startswith("p") and flag[1:].isdigit():
            settings["patience"] = int(flag[1:])
        else:
            raise SystemExit(f"unknown judge flag {flag!r} in {spec!r}")
    return settings


def measure(spec: str, direction: str, taxonomy: str, train: pd.DataFrame, test: pd.DataFrame, work: Path) -> dict:
    folder = work / f"{spec.replace(':', '-')}-{direction.replace(':', '-')}"
    folder.mkdir(parents=True, exist_ok=True)
    src = folder / "train.jsonl"
    train[
        ["id", "prompt", "response", "label", *[c for c in ("template", "name", "model") if c in train.columns]]
    ].to_json(src, orient="records", lines=True, force_ascii=False)
    config = TrainConfig(
        train=[str(src)], out=str(folder / "judge"), taxonomy=taxonomy, progress=False, seed=0, **judge_settings(spec)
    )
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    metrics = train_judge(config)
    train_seconds = time.perf_counter() - started
    judge = load_judge(str(folder / "judge"))
    started = time.perf_counter()
    labelled = judge.label(test.drop(columns=["label"]), batch_size=64, progress=False)
    label_seconds = time.perf_counter() - started
    labels = judge.taxonomy.labels
    gold, pred = test["label"].to_numpy(), labelled["label"].to_numpy()
    shares = pd.Series(gold).value_counts(normalize=True)
    f1 = f1_score(gold, pred, labels=labels, average=None, zero_division=0)
    row = {
        "judge": spec,
        "direction": direction,
        "n_train": len(train),
        "n_test": len(test),
        "kappa": float(cohen_kappa_score(gold, pred, labels=labels)),
        "macro-F1": float(
            f1_score(gold, pred, labels=[c for c in labels if c in shares.index], average="macro", zero_division=0)
        ),
        "never predicted (>=10%)": ", ".join(c for c in labels if shares.get(c, 0) >= 0.10 and c not in set(pred))
        or "-",
        "train s": round(train_seconds, 1),
        "label s": round(label_seconds, 1),
        "load": f"{load_before:.1f}-{os.getloadavg()[0]:.1f}",
        "val degenerate": json.dumps(metrics.get("never_predicted", {})),
    }
    if "decision_offsets" in metrics:
        tuning = metrics["decision_offsets"]
        row["oof before/after"] = f"{tuning['before']}/{tuning['after']}"
        row["offsets"] = ", ".join(f"{SHORT.get(c, c)} {v:+.2f}" for c, v in tuning["offsets"].items() if v)
    row.update({f"F1 {SHORT.get(c, c)}": float(v) for c, v in zip(labels, f1) if shares.get(c, 0) > 0})
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--directions", default="7b:13b,13b:7b,xstest")
    ap.add_argument("--judges", default="tfidf-word,tfidf-char,embed")
    ap.add_argument(
        "--rows", type=Path, help="append each row here as JSON (and read rows already there into the table)"
    )
    args = ap.parse_args()
    print(
        f"CPU: {cpu_model()}; load average at start {os.getloadavg()[0]:.1f}; torch threads {os.environ.get('OMP_NUM_THREADS', 'default')}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="bench-judges-"))
    rows = [json.loads(line) for line in args.rows.read_text().splitlines()] if args.rows and args.rows.exists() else []
    for direction, taxonomy, train, test in directions(args.directions.split(","), args.data_dir):
        for spec in args.judges.split(","):
            row = measure(spec, direction, taxonomy, train, test, work)
            print(json.dumps(row), flush=True)
            rows.append(row)
            if args.rows:
                with args.rows.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    print(markdown_table(rows, columns))
    by_judge = {}
    for r in rows:
        by_judge.setdefault(r["judge"], {})[r["direction"]] = r["kappa"]
    print("\nmean kappa over directions (judges measured on all three):")
    for judge, kappas in by_judge.items():
        if len(kappas) == 3:
            print(
                f"- {judge}: {np.mean(list(kappas.values())):.3f} ({', '.join(f'{d} {k:.3f}' for d, k in kappas.items())})"
            )


if __name__ == "__main__":
    main()
