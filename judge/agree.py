"""Agreement of a judge (or a second annotator) with gold human labels.

Examples:
    python -m judge.agree records.jsonl --gold label --pred judge_label --out runs/agree
    python -m judge.agree gold.jsonl --gold label --pred label --pred-file judged.jsonl --out runs/agree
    python -m judge.agree data/sample/annotated_sample.jsonl --gold label --pred second_annotator \\
        --taxonomy chehbouni2024 --coarse --out runs/agree-coarse

Writes OUT/agreement.json, agreement.md, agreement.tex, confusion.png and manifest.json.
Unscored predictions (judge outputs outside the taxonomy) are excluded from kappa and alpha and
reported beside them.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from judge.cli import new_parser, run_command
from judge.errors import UserError
from judge.manifest import RunManifest
from judge.metrics import agreement
from judge.records import ensure_writable, read_records, require_columns, write_text
from judge.tables import fmt, fmt_ci, heatmap, latex, markdown, save_figure, write_tables
from judge.taxonomy import UNSCORED, Taxonomy, resolve_taxonomy


@dataclass
class Config:
    input: str
    gold: str
    pred: str
    out: str
    annotators: list[str] = field(default_factory=list)
    pred_file: str | None = None
    id_column: str = "id"
    taxonomy: str | None = None
    coarse: bool = False
    bootstrap: int = 1000
    seed: int = 0
    overwrite: bool = False


def compute_agreement(
    records: pd.DataFrame,
    *,
    gold: str,
    pred: str,
    taxonomy: str | Taxonomy | None = None,
    coarse: bool = False,
    annotators: list[str] = (),
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Agreement figures from records holding a gold and a prediction column (library entry point)."""
    require_columns(records, [gold, pred, *annotators], source="records")
    has_gold = records[gold].notna() & (records[gold].astype(str).str.strip() != "")
    n_without_gold = int((~has_gold).sum())
    records = records[has_gold]
    if records.empty:
        raise UserError(f"no row has a gold label in column {gold!r}; check --gold")
    fine = resolve_taxonomy(taxonomy, records[gold].tolist())
    gold_labels = fine.gold(records[gold], column=gold)
    pred_labels = fine.predicted(records[pred])
    human = {}
    for col in annotators:
        values = records[col]
        missing = values.isna() | (values.astype(str).str.strip() == "")
        present = fine.gold(values[~missing], column=col)
        it = iter(present)
        human[col] = [None if m else next(it) for m in missing]
    used = fine
    if coarse:
        used = fine.coarse()
        up = lambda labs: [fine.parent_of(x) if x not in (None, UNSCORED) else x for x in labs]  # noqa: E731
        gold_labels, pred_labels = up(gold_labels), up(pred_labels)
        human = {k: up(v) for k, v in human.items()}
    result = agreement(gold_labels, pred_labels, labels=used.labels, annotators=human or None, n_boot=n_boot, seed=seed)
    result = {"taxonomy": used.name, "gold_column": gold, "pred_column": pred, "n_without_gold": n_without_gold, **result}
    return result


def render_markdown(result: dict) -> tuple[str, str]:
    ci = result["ci95"]
    summary = pd.DataFrame(
        [
            ["Cohen's kappa", fmt(result["cohen_kappa"]), fmt_ci(ci["cohen_kappa"])],
            ["Krippendorff's alpha (nominal)", fmt(result["krippendorff_alpha"]), fmt_ci(ci["krippendorff_alpha"])],
            ["Accuracy", fmt(result["accuracy"]), ""],
            ["Macro-F1", fmt(result["macro_f1"]), fmt_ci(ci["macro_f1"])],
            ["Unscored", f"{result['n_unscored']} / {result['n']} ({100 * result['unscored_rate']:.1f}%)", ""],
        ],
        columns=["metric", "value", "95% CI"],
    )
    per_class = pd.DataFrame(result["per_class"]).T[["precision", "recall", "f1", "support"]]
    per_class["support"] = per_class["support"].astype(int)
    conf = result["confusion"]
    confusion = pd.DataFrame(conf["matrix"], index=[f"gold: {g}" for g in conf["rows_gold"]], columns=conf["columns_pred"])
    title = f"Agreement of `{result['pred_column']}` with `{result['gold_column']}` (taxonomy {result['taxonomy']}, n = {result['n']})"
    parts = [f"# {title}\n", markdown(summary, index=False), "\n## Per class\n", markdown(per_class.round(3)), "\n## Confusion (rows gold, columns predicted)\n", markdown(confusion)]
    tex_parts = [
        latex(summary, caption=title.replace("`", ""), label="tab:agreement", index=False),
        latex(per_class.round(3), caption="Per-class precision, recall and F1.", label="tab:per-class"),
        latex(confusion, caption="Confusion matrix (rows gold, columns predicted).", label="tab:confusion"),
    ]
    if "annotators" in result:
        ann = result["annotators"]
        rows = [["alpha among humans", fmt(ann["alpha_among_humans"])], ["alpha, humans + judge", fmt(ann["alpha_with_judge"])]]
        rows += [[f"kappa {name} vs gold", fmt(v)] for name, v in ann["kappa_vs_gold"].items()]
        frame = pd.DataFrame(rows, columns=["statistic", "value"])
        parts += ["\n## Human annotators\n", markdown(frame, index=False)]
        tex_parts.append(latex(frame, caption="Agreement among human annotators.", label="tab:annotators", index=False))
    return "\n".join(parts) + "\n", "\n".join(tex_parts)


def confusion_figure(result: dict):
    conf = result["confusion"]
    matrix = np.array(conf["matrix"], dtype=float)
    columns = conf["columns_pred"]
    if matrix[:, -1].sum() == 0:  # no unscored predictions: leave the empty column out of the picture
        matrix, columns = matrix[:, :-1], columns[:-1]
    row_share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    counts = np.array([[f"{int(c)}" for c in row] for row in matrix], dtype=object)
    return heatmap(
        row_share, rows=conf["rows_gold"], columns=columns, annotations=counts, vmax=1.0,
        title=f"{result['pred_column']} vs {result['gold_column']} (row-normalised; counts shown)",
        xlabel="predicted", ylabel="gold",
    )


def write_agreement_report(result: dict, out_dir: str | Path, *, overwrite: bool = False) -> list[Path]:
    out_dir = Path(out_dir)
    md, tex = render_markdown(result)
    written = [write_text(out_dir / "agreement.json", json.dumps(result, indent=2) + "\n", overwrite=overwrite)]
    written += write_tables(out_dir, "agreement", md, tex, overwrite=overwrite)
    written.append(save_figure(confusion_figure(result), out_dir / "confusion.png", overwrite=overwrite))
    return written


def main(config: Config) -> dict:
    out_dir = Path(config.out)
    ensure_writable(out_dir / "agreement.json", overwrite=config.overwrite)
    manifest = RunManifest("judge.agree", config, inputs=[config.input] + ([config.pred_file] if config.pred_file else []))
    records = read_records(config.input, id_column=config.id_column if config.pred_file else None, required=(), label_columns=[config.gold])
    if config.pred_file:
        preds = read_records(config.pred_file, id_column=config.id_column, required=(), label_columns=[config.pred])
        merged = records.drop(columns=[config.pred], errors="ignore").merge(preds[["id", config.pred]], on="id", how="left")
        missing = int(merged[config.pred].isna().sum())
        if missing == len(merged):
            raise UserError(f"no id of {config.input} appears in {config.pred_file}; check --id-column")
        merged[config.pred] = merged[config.pred].fillna(UNSCORED)
        records = merged
        manifest.update(ids_without_prediction=missing)
    result = compute_agreement(
        records, gold=config.gold, pred=config.pred, taxonomy=config.taxonomy, coarse=config.coarse,
        annotators=list(config.annotators), n_boot=config.bootstrap, seed=config.seed,
    )
    written = write_agreement_report(result, out_dir, overwrite=config.overwrite)
    manifest.write(out_dir, n=result["n"], n_unscored=result["n_unscored"])
    print(
        f"n={result['n']} kappa={fmt(result['cohen_kappa'])} {fmt_ci(result['ci95']['cohen_kappa'])} "
        f"alpha={fmt(result['krippendorff_alpha'])} macro-F1={fmt(result['macro_f1'])} "
        f"unscored={result['n_unscored']} ({100 * result['unscored_rate']:.1f}%)"
    )
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return result


def build_parser():
    parser = new_parser("python -m judge.agree", __doc__)
    parser.add_argument("input", nargs="?", help="records file (JSONL, CSV or Parquet) with the gold labels")
    parser.add_argument("--gold", help="column of gold (human) labels")
    parser.add_argument("--pred", help="column of the judge's (or second annotator's) labels")
    parser.add_argument("--annotators", nargs="+", metavar="COL", help="further human annotator columns: alpha among them, each one's kappa vs gold, alpha with the judge added")
    parser.add_argument("--pred-file", help="take --pred from this file instead, joined on --id-column")
    parser.add_argument("--id-column", help="id column for --pred-file joins (default: id)")
    parser.add_argument("--taxonomy", help="preset name (chehbouni2024, compliance3, refusal2) or YAML path; default: the distinct gold labels")
    parser.add_argument("--coarse", action="store_true", help="map labels to their coarse parents first (e.g. refusal + harmful refusal -> refused)")
    parser.add_argument("--bootstrap", type=int, help="bootstrap resamples for the 95%% intervals (default: 1000)")
    parser.add_argument("--seed", type=int, help="bootstrap seed (default: 0)")
    parser.add_argument("--out", help="output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace existing report files")
    return parser


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
