"""Agreement of a judge (or a second annotator) with gold human labels.

Examples:
    python -m judge.agree records.jsonl --gold label --pred judge_label --out runs/agree
    python -m judge.agree gold.jsonl --gold label --pred label --pred-file judged.jsonl --out runs/agree
    python -m judge.agree data/sample/annotated_sample.jsonl --gold label --pred second_annotator \\
        --taxonomy chehbouni2024 --coarse --out runs/agree-coarse

Several per-model files (ids may repeat: they become SOURCE:ID), coded labels read with a map:
    python -m judge.agree xstest_v2_completions_gpt4.csv xstest_v2_completions_llama2orig.csv \
        --annotators annotation_1 annotation_2 --gold final_label --taxonomy compliance3 --out runs/annotators
    python -m judge.agree coded.csv --gold gold --pred judge_label --label-map '1=answer,2=refusal' \
        --taxonomy refusal2 --out runs/agree-coded

Per-group judge error and the alternative annotator test:
    python -m judge.agree heldout.judged.jsonl --gold label --pred judge_label --by identity --out runs/agree-by-group
    python -m judge.agree labels.csv --annotators label_alice label_bob --out runs/annotators   # humans only
    python -m judge.agree triple.csv --gold label --pred judge_label --annotators ann1 ann2 ann3 --alt-test \
        --epsilon 0.15 --out runs/alt-test

Writes OUT/agreement.json, agreement.md, agreement.tex (booktabs; --digits, --tex-label),
confusion.png/.pdf and manifest.json; with --by, also error_by_group.png/.pdf: kappa, accuracy, false-positive/false-negative rate per category and the
judge's rate minus the humans' (paired 95% interval) within each group, and a chi-square test of
whether the judge errs more on some groups. --alt-test asks whether the judge may replace a human
annotator (Calderon et al. 2025): for each annotator left out, does the judge match the others at
least as well (one-sided t-test against --epsilon, Benjamini-Yekutieli across annotators)?
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

from judge.outputs import claim_for
from judge.cli import (RecordColumns, ReportStyle, TAXONOMY_HELP, add_column_options, add_label_map_option, add_report_style_options,
                       check_label_map, check_non_negative, new_parser, run_command)
from judge.errors import UserError
from judge.manifest import RunManifest, judge_of, label_source
from judge.metrics import agreement
from judge.records import check_output_directory, staged_directory, read_records, require_columns, write_text
from judge.tables import fmt, fmt_ci, heatmap, latex, markdown, report_style, save_figures, tex_label_for, write_tables
from judge.taxonomy import UNSCORED, Taxonomy, parse_label_map, resolve_taxonomy


@dataclass
class Config(RecordColumns, ReportStyle):
    input: str | list[str]
    out: str
    gold: str | None = None
    pred: str | None = None
    annotators: list[str] = field(default_factory=list)
    pred_file: str | None = None
    taxonomy: str | None = None
    label_map: str | None = None
    coarse: bool = False
    bootstrap: int = 1000
    seed: int = 0
    by: str | None = None
    alt_test: bool = False
    epsilon: float | None = None
    overwrite: bool = False

    def __post_init__(self):
        check_non_negative(self, "bootstrap")
        check_label_map(self)
        self.check_style()
        self.input = [self.input] if isinstance(self.input, str) else list(self.input)
        if not self.input:
            raise UserError("give the records file(s) to compare")


def _blank(values: pd.Series) -> pd.Series:
    return values.isna() | (values.astype(str).str.strip() == "")


def annotator_labels(values: pd.Series, taxonomy: Taxonomy, *, column: str) -> list[str | None]:
    """Canonical labels of one annotator column; None where the annotator gave none. A label outside
    the taxonomy is an error naming it."""
    blank = _blank(values)
    it = iter(taxonomy.gold(values[~blank], column=column))
    return [None if b else next(it) for b in blank]


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
    by: str | None = None,
    alt_test_epsilon: float | None = None,
    label_map: dict[str, str] | None = None,
    emittable: list[str] | None = None,
) -> dict:
    """Agreement figures from records holding a gold and a prediction column (library entry point).

    ``by`` adds the judge's error within each value of that column; ``alt_test_epsilon`` runs the
    alternative annotator test of ``pred`` against the ``annotators``.
    """
    require_columns(records, [gold, pred, *annotators, *([by] if by else [])], source="records", flag_hint="Fix --gold/--pred/--annotators/--by.")
    has_gold = ~_blank(records[gold])
    n_without_gold = int((~has_gold).sum())
    records = records[has_gold]
    if records.empty:
        raise UserError(f"no row has a gold label in column {gold!r}; check --gold")
    fine = resolve_taxonomy(taxonomy, records[gold].tolist(), label_map=label_map)
    gold_labels = fine.gold(records[gold], column=gold)
    pred_labels = fine.predicted(records[pred])
    human = {col: annotator_labels(records[col], fine, column=col) for col in annotators}
    used = fine
    if coarse:
        used = fine.coarse()
        up = lambda labs: [fine.parent_of(x) if x not in (None, UNSCORED) else x for x in labs]  # noqa: E731
        gold_labels, pred_labels = up(gold_labels), up(pred_labels)
        human = {k: up(v) for k, v in human.items()}
    result = agreement(gold_labels, pred_labels, labels=used.labels, annotators=human or None, n_boot=n_boot, seed=seed, pred_name=pred)
    result = {"taxonomy": used.name, "gold_column": gold, "pred_column": pred, "n_without_gold": n_without_gold, **result}
    result["warnings"] = class_warnings(gold_labels, pred_labels, pred=pred)
    if emittable is not None:
        never = sorted({g for g in gold_labels if g not in set(emittable) and not (coarse and g in {fine.parent_of(e) for e in emittable})})
        if never:
            result["warnings"].append(f"{pred} can never predict {', '.join(never)} (its judge emits only {', '.join(emittable)}); "
                                      "every gold label in those categories counts as an error")
    if by:
        from judge.group_error import judge_error_by_group

        result["by_group"] = {"column": by, **judge_error_by_group(gold_labels, pred_labels, records[by].astype(str).tolist(), labels=used.labels)}
    if alt_test_epsilon is not None:
        from judge.alt_test import alt_test

        result["alt_test"] = alt_test(human, pred_labels, epsilon=alt_test_epsilon)
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
    per_class_shown = per_class.astype(object)
    for col in ("precision", "recall", "f1"):
        per_class_shown[col] = [fmt(float(v)) for v in per_class[col]]
    conf = result["confusion"]
    confusion = pd.DataFrame(conf["matrix"], index=[f"gold: {g}" for g in conf["rows_gold"]], columns=conf["columns_pred"])
    title = result.get("title") or (f"Agreement of {result.get('pred_name') or result['pred_column']} with {result.get('gold_name') or result['gold_column']} "
                                    f"(taxonomy {result['taxonomy']}, n = {result['n']})")
    parts = [f"# {title}\n", *(f"**Warning:** {w}.\n" for w in result.get("warnings", [])), *precision_note(result), markdown(summary, index=False), "\n## Per class\n", markdown(per_class_shown), "\n## Confusion (rows gold, columns predicted)\n", markdown(confusion)]
    tex_parts = [
        latex(summary, caption=title, label="tab:agreement", index=False),
        latex(per_class_shown, caption="Per-class precision, recall and F1.", label="tab:per-class"),
        latex(confusion, caption="Confusion matrix (rows gold, columns predicted).", label="tab:confusion"),
    ]
    if "annotators" in result:
        ann = result["annotators"]
        rows = [["alpha among humans", fmt(ann["alpha_among_humans"])], ["alpha, humans + judge", fmt(ann["alpha_with_judge"])]]
        rows += [[f"kappa {pair}", fmt(v)] for pair, v in ann.get("pairwise_kappa", {}).items()]
        rows += [[f"kappa {name} vs gold", fmt(v)] for name, v in ann["kappa_vs_gold"].items()]
        frame = pd.DataFrame(rows, columns=["statistic", "value"])
        parts += ["\n## Human annotators\n", markdown(frame, index=False)]
        tex_parts.append(latex(frame, caption="Agreement among human annotators.", label="tab:annotators", index=False))
    if "by_group" in result:
        by_md, by_tex = render_by_group(result)
        parts += by_md
        tex_parts += by_tex
    if "alt_test" in result:
        alt = result["alt_test"]
        frame = pd.DataFrame(
            [[name, a["n_items"], fmt(a["rho_judge"]), fmt(a["rho_human"]), f"{a['p_value']:.3g}", f"{a['p_adjusted_by']:.3g}", "yes" if a["judge_wins"] else "no"]
             for name, a in alt["annotators"].items()],
            columns=["annotator left out", "items", "rho judge", "rho human", "p", "p (BY)", "judge wins"],
        )
        verdict = f"**{'PASS' if alt['passed'] else 'FAIL'}**: {alt['reason']}; average advantage probability {fmt(alt['average_advantage_probability'])}."
        parts += ["\n## Alternative annotator test (Calderon et al. 2025)\n", verdict + "\n", markdown(frame, index=False)]
        parts += [f"\nWarning: {w}.\n" for w in alt["warnings"]]
        tex_parts.append(latex(frame, caption=f"Alternative annotator test, epsilon = {alt['epsilon']}: {'pass' if alt['passed'] else 'fail'}.", label="tab:alt-test", index=False))
    return "\n".join(parts) + "\n", "\n".join(tex_parts)


def precision_note(result: dict) -> list[str]:
    """Agreement measured in one precision does not carry to another unless checked: say which one."""
    precision = result.get("pred_precision")
    return [f"Judge labels computed in {precision} (from the labelled file's manifest).\n"] if precision else []


def render_by_group(result: dict) -> tuple[list[str], list[str]]:
    by = result["by_group"]
    col = by["column"]
    summary = pd.DataFrame(
        [[g, r["n_scored"], r["n_unscored"], fmt(r["cohen_kappa"]), fmt(r["accuracy"])] for g, r in by["groups"].items()],
        columns=[col, "n scored", "unscored", "kappa", "accuracy"],
    )
    rows = []
    for g, r in by["groups"].items():
        for c, v in r["categories"].items():
            if not (v["human_rate"] or v["judge_rate"]):
                continue
            d = v["judge_minus_human"]
            rows.append([g, c, fmt(v["human_rate"]), fmt(v["judge_rate"]),
                         f"{fmt(d['difference'])} {fmt_ci(d['ci']) if d['ci'][0] is not None else ''}".strip(),
                         fmt(v["false_positive_rate"]), fmt(v["false_negative_rate"])])
    detail = pd.DataFrame(rows, columns=[col, "category", "human rate", "judge rate", "judge - human [95% CI]", "FPR", "FNR"])
    test = by["error_rate_test"]
    test_line = (f"Does the judge err more on some {col} values? Chi-square on (correct, incorrect) x {col}: "
                 f"chi2 = {fmt(test['statistic'], 2)}, dof = {test['dof']}, p = {test['p_value']:.3g}."
                 if test["statistic"] is not None else "Error-rate test not computed (needs two groups and both correct and incorrect outputs).")
    md = [f"\n## Judge error by {col}\n", markdown(summary, index=False), "\n" + test_line + "\n",
          f"\n## Judge rate minus human rate, by {col} and category\n",
          "FPR: share of outputs humans did not put in the category that the judge did; FNR: share humans did put there that the judge did not.\n",
          markdown(detail, index=False)]
    tex = [latex(summary, caption=f"Judge agreement with humans by {col}.", label="tab:error-by-group", index=False),
           latex(detail, caption=f"Judge rate minus human rate by {col} (paired 95% CI), false-positive and false-negative rates.", label="tab:error-by-group-detail", index=False)]
    return md, tex


def error_by_group_figure(result: dict):
    """One panel per category with any human or judge label: judge rate minus human rate per group."""
    import matplotlib.pyplot as plt

    by = result["by_group"]
    groups = list(by["groups"])
    cats = [c for c in result["labels"] if any(r["categories"][c]["human_rate"] or r["categories"][c]["judge_rate"] for r in by["groups"].values())]
    fig, axes = plt.subplots(1, len(cats), figsize=(2.8 * len(cats) + 1, 0.45 * len(groups) + 1.6), sharey=True, squeeze=False)
    for ax, c in zip(axes[0], cats):
        for i, g in enumerate(groups):
            d = by["groups"][g]["categories"][c]["judge_minus_human"]
            if d["difference"] is None:
                continue
            lo, hi = d["ci"]
            err = [[d["difference"] - lo], [hi - d["difference"]]] if lo is not None else None
            ax.errorbar([d["difference"]], [i], xerr=err, fmt="o", color="tab:blue", capsize=2, markersize=4)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(c)
        ax.set_yticks(range(len(groups)), labels=groups)
        ax.set_xlabel("judge - human")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_ylabel(by["column"])
    fig.suptitle(result.get("title") or f"{result.get('pred_name') or result['pred_column']} minus {result.get('gold_name') or result['gold_column']}: "
                 f"rate difference by {by['column']} (95% CI)")
    fig.tight_layout()
    return fig


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
        title=result.get("title") or f"{result.get('pred_name') or result['pred_column']} vs {result.get('gold_name') or result['gold_column']}\n(row-normalised; counts shown)",
        xlabel="predicted", ylabel="gold",
    )


def write_agreement_report(result: dict, out_dir: str | Path, *, overwrite: bool = False) -> list[Path]:
    out_dir = Path(out_dir)
    md, tex = render_markdown(result)
    written = [write_text(out_dir / "agreement.json", json.dumps(result, indent=2) + "\n", overwrite=overwrite)]
    written += write_tables(out_dir, "agreement", md, tex, overwrite=overwrite)
    written += save_figures(confusion_figure(result), out_dir / "confusion", overwrite=overwrite)
    if "by_group" in result:
        written += save_figures(error_by_group_figure(result), out_dir / "error_by_group", overwrite=overwrite)
    return written


def class_warnings(gold_labels, pred_labels, *, pred: str) -> list[str]:
    """A judge that predicts one class, or fewer classes than the humans used, can look fine on kappa's
    neighbours (accuracy) while saying nothing about the missing classes: say so beside the numbers."""
    predicted = {p for p in pred_labels if p != UNSCORED}
    used = set(gold_labels)
    warnings = []
    if len(predicted) <= 1:
        warnings.append(f"{pred} predicts a single class ({', '.join(sorted(predicted)) or 'none scored'}): its kappa says nothing about the others")
    missing = sorted(used - predicted)
    if missing and len(predicted) > 1:
        warnings.append(f"{pred} never predicts {', '.join(missing)}, which the gold labels use ({len(predicted)} of {len(used)} gold classes predicted)")
    return warnings


def compute_annotator_agreement(records: pd.DataFrame, *, annotators: list[str], gold: str | None = None, taxonomy=None,
                                coarse: bool = False, n_boot: int = 1000, seed: int = 0, label_map: dict[str, str] | None = None) -> dict:
    """Agreement among human annotator columns (and each against ``gold``), no judge involved."""
    from judge.metrics import annotator_agreement

    columns = list(dict.fromkeys(annotators))  # one column counted once, whatever the command line repeats
    require_columns(records, [*columns, *([gold] if gold else [])], source="records", flag_hint="Fix --annotators/--gold.")

    fine = resolve_taxonomy(taxonomy, [x for c in columns for x in records[c][~_blank(records[c])]], label_map=label_map)

    def canon(values, column):
        labels = annotator_labels(values, fine, column=column)
        return [fine.parent_of(x) if coarse and x is not None else x for x in labels]

    used = fine.coarse() if coarse else fine
    humans = {c: canon(records[c], c) for c in columns}
    result = annotator_agreement(humans, labels=used.labels, gold=canon(records[gold], gold) if gold else None, n_boot=n_boot, seed=seed)
    return {"taxonomy": used.name, "gold_column": gold, **result}


def annotators_only(config: Config, manifest: RunManifest) -> dict:
    records = read_config_records(config, unique_ids=False)
    result = compute_annotator_agreement(records, annotators=list(config.annotators), gold=config.gold, taxonomy=config.taxonomy,
                                         coarse=config.coarse, n_boot=config.bootstrap, seed=config.seed,
                                         label_map=parse_label_map(config.label_map))
    rows = [["Krippendorff's alpha (nominal), all annotators", fmt(result["krippendorff_alpha"]), fmt_ci(result["krippendorff_alpha_ci"]), result["n_items"]]]
    rows += [[f"Cohen's kappa, {pair}", fmt(v["kappa"]), fmt_ci(v["ci"]), v["n"]] for pair, v in result["pairwise_kappa"].items()]
    rows += [[f"Cohen's kappa, {name} vs {config.gold}", fmt(v["kappa"]), fmt_ci(v["ci"]), v["n"]] for name, v in result.get("kappa_vs_gold", {}).items()]
    table = pd.DataFrame(rows, columns=["statistic", "value", "95% CI", "items"])
    title = config.title or f"Agreement among annotators {', '.join(result['annotators'])} (taxonomy {result['taxonomy']})"
    md = f"# {title}\n\n{markdown(table, index=False)}\n\nIntervals: {result['bootstrap']}.\n"
    tex = latex(table, caption=title + ".", label="tab:annotator-agreement", index=False)
    with staged_directory(config.out, overwrite=config.overwrite) as staging:
        write_text(staging / "agreement.json", json.dumps(result, indent=2) + "\n", overwrite=False)
        write_tables(staging, "agreement", md, tex, overwrite=False)
        manifest.write(staging, n_items=result["n_items"])
    print(md)
    return result


def read_config_records(config: Config, *, unique_ids: bool, label_columns: list[str] = ()) -> pd.DataFrame:
    return read_records(config.input, id_column=config.id_column, prompt_column=config.prompt_column, text_column=config.text_column,
                        source_column=config.source_column, required=(), label_columns=label_columns, unique_ids=unique_ids)


def check_options(config: Config) -> None:
    """Combinations that would otherwise be silently ignored, and out-of-range values."""
    if config.pred is None:
        if len(config.annotators) < 2:
            raise UserError("give --gold and --pred (a judge against humans), or two or more --annotators (agreement among humans)")
        extra = [flag for flag, on in (("--by", config.by), ("--alt-test", config.alt_test), ("--pred-file", config.pred_file)) if on]
        if extra:
            raise UserError(f"{', '.join(extra)} need --pred (the judge's labels)")
    elif config.gold is None:
        raise UserError("--pred needs --gold (the human labels to compare with)")
    if config.epsilon is not None and not config.alt_test:
        raise UserError("--epsilon is the alternative annotator test's margin; add --alt-test or drop --epsilon")
    if config.epsilon is not None and not 0 <= config.epsilon < 1:
        raise UserError(f"--epsilon must be in [0, 1) (0.1 skilled annotators, 0.2 crowd workers), got {config.epsilon}")
    if config.alt_test and len(config.annotators) < 2:
        raise UserError("--alt-test compares the judge with each human left out: give at least two (better three) --annotators columns")
    if config.bootstrap < 0:
        raise UserError(f"--bootstrap must be 0 (no intervals) or a positive number of resamples, got {config.bootstrap}")


def main(config: Config) -> dict:
    with claim_for(config, 'judge.agree', inputs=('input', 'pred_file', 'taxonomy', 'label_map'), directory=True):
        return _main(config)


def _main(config: Config) -> dict:
    check_options(config)
    out_dir = Path(config.out)
    check_output_directory(out_dir, overwrite=config.overwrite)
    manifest = RunManifest("judge.agree", config, inputs=config.input + ([config.pred_file] if config.pred_file else []))
    with report_style(digits=config.digits, tex_label=config.tex_label or tex_label_for(config.out)):
        return annotators_only(config, manifest) if config.pred is None else judge_agreement(config, manifest)


def judge_agreement(config: Config, manifest: RunManifest) -> dict:
    out_dir = Path(config.out)
    # Ids matter only when they join two files: repeated ids are fine otherwise.
    records = read_config_records(config, label_columns=[config.gold], unique_ids=bool(config.pred_file))
    if config.pred_file:
        preds = read_records(config.pred_file, id_column=config.id_column, required=(), label_columns=[config.pred])
        absent = sorted(set(records["id"]) - set(preds["id"]))
        if len(absent) == len(records):
            raise UserError(f"no id of {', '.join(config.input)} appears in {config.pred_file}; check --id-column")
        if absent:
            raise UserError(f"{len(absent)} id(s) of {', '.join(config.input)} have no row in {config.pred_file} (e.g. {', '.join(map(repr, absent[:3]))}); "
                            "label them too (judge.label resumes) or agree on the common ids by filtering the gold file")
        records = records.drop(columns=[config.pred], errors="ignore").merge(preds[["id", config.pred]], on="id", how="left")
    pred_source = config.pred_file or config.input[0]
    judge = judge_of(pred_source, config.pred) if len(config.input) == 1 or config.pred_file else None
    result = compute_agreement(
        records, gold=config.gold, pred=config.pred, taxonomy=config.taxonomy, coarse=config.coarse,
        annotators=list(config.annotators), n_boot=config.bootstrap, seed=config.seed,
        by=config.by, alt_test_epsilon=(0.15 if config.epsilon is None else config.epsilon) if config.alt_test else None,
        label_map=parse_label_map(config.label_map), emittable=(judge or {}).get("emittable_categories"),
    )
    result.update(title=config.title, pred_name=label_source(pred_source, config.pred, default=config.pred),
                  gold_name=f"human labels ({config.gold})", pred_precision=(judge or {}).get("precision"))
    with staged_directory(out_dir, overwrite=config.overwrite) as staging:
        written = [out_dir / p.name for p in write_agreement_report(result, staging)]
        manifest.write(staging, n=result["n"], n_unscored=result["n_unscored"])
    print(
        f"n={result['n']} kappa={fmt(result['cohen_kappa'])} {fmt_ci(result['ci95']['cohen_kappa'])} "
        f"alpha={fmt(result['krippendorff_alpha'])} macro-F1={fmt(result['macro_f1'])} "
        f"unscored={result['n_unscored']} ({100 * result['unscored_rate']:.1f}%)"
        + (f" precision={result['pred_precision']}" if result.get("pred_precision") else "")
    )
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    if "alt_test" in result:
        print(f"alt-test: {'PASS' if result['alt_test']['passed'] else 'FAIL'}: {result['alt_test']['reason']}")
        for warning in result["alt_test"]["warnings"]:
            print(f"warning: alt-test: {warning}", file=sys.stderr)
    if "by_group" in result:
        test = result["by_group"]["error_rate_test"]
        kappas = ", ".join(f"{g} {fmt(r['cohen_kappa'])}" for g, r in result["by_group"]["groups"].items())
        print(f"kappa by {config.by}: {kappas}" + (f"; error-rate difference between groups p = {test['p_value']:.3g}" if test["p_value"] is not None else ""))
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return result


def build_parser():
    parser = new_parser("python -m judge.agree", __doc__)
    parser.add_argument("input", nargs="*", help="records file(s) (JSONL, CSV or Parquet) with the gold labels; several files "
                        "(one per model, say) are joined with a source column (--by source compares them)")
    parser.add_argument("--gold", help="column of gold (human) labels")
    parser.add_argument("--pred", help="column of the judge's (or second annotator's) labels")
    parser.add_argument("--annotators", nargs="+", metavar="COL", help="human annotator columns: alpha among them, pairwise kappa, each one's kappa vs --gold, "
                        "and with --pred alpha with the judge added; without --pred, a report on the annotators alone")
    parser.add_argument("--pred-file", help="take --pred from this file instead, joined on --id-column")
    add_column_options(parser)
    parser.add_argument("--taxonomy", help=TAXONOMY_HELP)
    add_label_map_option(parser)
    parser.add_argument("--coarse", action="store_true", help="map labels to their coarse parents first (e.g. refusal + harmful refusal -> refused)")
    parser.add_argument("--bootstrap", type=int, help="bootstrap resamples for the 95%% intervals (default: 1000)")
    parser.add_argument("--seed", type=int, help="bootstrap seed (default: 0)")
    parser.add_argument("--by", metavar="COL", help="the judge's error within each value of COL (e.g. identity): kappa, FPR/FNR, judge minus human rate, a test across groups")
    parser.add_argument("--alt-test", action="store_true", help="alternative annotator test of --pred against the --annotators columns (needs 2+, better 3+)")
    parser.add_argument("--epsilon", type=float, help="alt-test margin: how much better than the judge a human must be to keep the human (default: 0.15)")
    add_report_style_options(parser)
    parser.add_argument("--out", help="output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace existing report files")
    return parser


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
