"""Calibrate a judge for selective labelling: the confidence threshold above which its labels agree with people
at least --target of the time, with probability at least 1 - --delta; judge.label --selective CAL.json then
writes 'escalate' (for people) below it.

Examples:
    # a human-labelled calibration sample the judge labelled (judge.label --prefix judge_), never its training data
    python -m judge.calibrate --judge runs/study/judge --input runs/study/heldout.judged.jsonl --gold label \\
        --prefix judge_ --target 0.95 --delta 0.1 --out runs/study/judge.cal.json
    # no separate sample: the judge's cross-fitted out-of-fold predictions (judge.train --cv K wrote JUDGE/cv/oof.jsonl)
    python -m judge.calibrate --judge runs/study/judge-tfidf --target 0.95 --out runs/study/tfidf.cal.json
    # the precision of every predicted category at least the target (delta split over the categories)
    python -m judge.calibrate --judge runs/study/judge --input heldout.judged.jsonl --prefix judge_ --risk precision \\
        --out runs/study/judge.precision.cal.json
    python -m judge.label --judge runs/study/judge --selective runs/study/judge.cal.json --input outputs.jsonl \\
        --prefix judge_ --out labelled.jsonl

The threshold comes from Learn then Test (fixed-sequence testing over a descending grid of thresholds, each with
the exact binomial p-value; judge/stats/selective.py). The default risk is 1 - accuracy on the kept outputs, the
agreement Trust or Escalate (Jung et al., ICLR 2025) guarantees and the agreement reports state; --risk precision
bounds each predicted category's precision instead (rare categories protected, less coverage). The guarantee holds
for outputs drawn like the calibration sample: calibrate on the model and prompts you will label. Out-of-fold
predictions come from models trained on part of the labels, a little weaker than the judge trained on all of them
(the bound is then conservative for it); a fresh human-labelled sample is the stronger basis.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from judge.core.config import TAXONOMY_HELP, InputEncoding, check_choice, check_positive, parser_for, run_command
from judge.core.errors import UserError, clip
from judge.core.outputs import claim_for


@dataclass
class Config(InputEncoding):
    judge: str = field(metadata={"help": "the judge to calibrate (as judge.label --judge takes it)"})
    out: str = field(metadata={"help": "the calibration file (JSON) judge.label --selective reads"})
    input: str | None = field(
        default=None,
        metadata={
            "metavar": "FILE",
            "help": "human-labelled outputs the judge labelled (judge.label's output); default: the judge's "
            "out-of-fold predictions, JUDGE/cv/oof.jsonl (judge.train --cv K)",
        },
    )
    gold: str | None = field(
        default=None,
        metadata={"metavar": "COL", "help": "the human label column (default: label; out-of-fold: the training's)"},
    )
    taxonomy: str | None = field(
        default=None, metadata={"help": "rules/llm judges: " + TAXONOMY_HELP + " (trained judges carry their own)"}
    )
    prefix: str = field(
        default="", metadata={"help": "the judge's columns in --input: PREFIX+label, PREFIX+confidence"}
    )
    target: float = field(default=0.95, metadata={"help": "accuracy (or precision) the kept labels must reach"})
    delta: float = field(default=0.1, metadata={"help": "allowed probability that the guarantee fails"})
    risk: str = field(
        default="accuracy",
        metadata={
            "choices": ("accuracy", "precision"),
            "help": "accuracy over kept outputs, or each category's precision",
        },
    )
    grid: int = field(default=200, metadata={"help": "thresholds tested (quantiles of the calibration confidences)"})
    overwrite: bool = field(default=False, metadata={"help": "replace the calibration file this command wrote before"})

    def __post_init__(self):
        for name in ("target", "delta"):
            value = getattr(self, name)
            if not (0 < value < 1):
                raise UserError(f"--{name} must lie strictly between 0 and 1, got {value:g}")
        check_choice(self, "risk", ("accuracy", "precision"))
        check_positive(self, "grid")
        if Path(self.out).suffix.lower() != ".json":
            raise UserError(f"--out {clip(self.out)}: the calibration is a .json file; name it e.g. judge.cal.json")


def main(config: Config) -> dict:
    from judge.core.files import ensure_writable

    with claim_for(config, "judge.calibrate", inputs=("input", "judge"), directory=False):
        ensure_writable(config.out, overwrite=config.overwrite)  # before the work: a user's file is never replaced
        return _main(config)


def _main(config: Config) -> dict:
    import numpy as np

    from judge.analysis.selective import calibrate
    from judge.core.files import file_sha256, json_text, write_text
    from judge.core.manifest import RunManifest, read_manifest
    from judge.core.records import probability_column, read_records
    from judge.core.taxonomy import load_taxonomy, resolve_taxonomy
    from judge.kinds import resolve
    from judge.kinds.judge_dir import decide, decision_offsets_of, verify

    ref = resolve(config.judge)
    if ref.directory is not None:
        taxonomy = load_taxonomy(ref.directory / "taxonomy.yaml")
    elif config.taxonomy:
        taxonomy = resolve_taxonomy(config.taxonomy, encoding=config.encoding)
    else:
        raise UserError(f"--judge {clip(config.judge)} carries no taxonomy: pass --taxonomy, as judge.label took it")
    if config.input is None:
        if ref.directory is None or not (ref.directory / "cv" / "oof.jsonl").is_file():
            raise UserError(
                f"--judge {clip(config.judge)} has no out-of-fold predictions (cv/oof.jsonl): train it with "
                "judge.train --cv K, or give a human-labelled --input the judge labelled"
            )
        path = ref.directory / "cv" / "oof.jsonl"
        records = read_records(path, required=())
        trained = (read_manifest(ref.directory) or {}).get("settings") or {}
        gold = config.gold or trained.get("label_column") or "label"
        probs = [probability_column(c) for c in taxonomy.labels]
        columns = ["oof_" + p for p in probs]
        missing = [c for c in columns if c not in records.columns]
        if missing:
            raise UserError(f"{path} lacks {clip(missing[0])}: retrain the judge with judge.train --cv K")
        probabilities = records[columns].to_numpy(dtype=float)
        offsets = decision_offsets_of(verify(ref.directory))
        if offsets:  # judge.label decides with the judge's tuned offsets: calibrate the labels it will write
            chosen = decide(probabilities, [offsets[c] for c in taxonomy.labels])
            records = records.assign(
                _label=[taxonomy.labels[i] for i in chosen], _confidence=probabilities[np.arange(len(chosen)), chosen]
            )
            pred = "_label"
        else:
            records = records.assign(_confidence=probabilities.max(axis=1))
            pred = "oof_label"
        confidence = "_confidence"
        source = f"out-of-fold predictions {ref.directory.name}/cv/oof.jsonl (column {gold})"
    else:
        path = Path(config.input)
        records = read_records(path, required=(), encoding=config.encoding)
        gold, pred, confidence = config.gold or "label", config.prefix + "label", config.prefix + "confidence"
        labelled_by = ((read_manifest(path) or {}).get("identity") or {}).get("judge")
        if labelled_by is not None and labelled_by != ref.fingerprint:
            raise UserError(
                f"--input {clip(path.name)} was labelled by another judge than --judge {clip(config.judge)} "
                "(its manifest's judge fingerprint differs); label the calibration sample with this judge first"
            )
        source = f"{path.name} (gold {gold}, judge {pred})"
    result = calibrate(
        records,
        gold=gold,
        pred=pred,
        confidence=confidence,
        taxonomy=taxonomy,
        target=config.target,
        delta=config.delta,
        risk=config.risk,
        judge=ref.fingerprint,
        source=source,
        grid_size=config.grid,
    )
    result.source_sha256 = file_sha256(path)
    result.judge_spec = config.judge
    out = Path(config.out)
    write_text(out, json_text(result.to_dict(), indent=2) + "\n", overwrite=config.overwrite)
    RunManifest("judge.calibrate", config, inputs=[path]).write(out, n=result.n, kept=result.kept)
    cut = (
        f"threshold {result.threshold:.4g}"
        if result.risk == "accuracy" and result.threshold is not None
        else (
            "thresholds "
            + ", ".join(f"{k} {'none' if v is None else f'{v:.4g}'}" for k, v in result.thresholds.items())
            if result.risk == "precision"
            else f"no threshold ({result.reason})"
        )
    )
    print(
        f"calibrated {config.judge} on {result.n} human labels: {cut}; kept {result.kept} "
        f"({100 * result.coverage:.1f}% coverage), accuracy on them "
        f"{'n/a' if result.accuracy_kept is None else f'{result.accuracy_kept:.3f}'}; with probability >= "
        f"{1 - config.delta:g} the kept labels' {config.risk} is >= {config.target:g} -> {out}"
    )
    return result.to_dict()


def build_parser():
    return parser_for(Config, "python -m judge.calibrate", __doc__)


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
