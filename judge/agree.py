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

Per-group judge error (one table per --by column) and the alternative annotator test:
    python -m judge.agree heldout.judged.jsonl --gold label --pred judge_label --by identity --by model --out runs/agree-by-group
    python -m judge.agree labels.csv --annotators label_alice label_bob --out runs/annotators   # humans only
    python -m judge.agree labels.csv --annotators label_alice label_bob --by source --out runs/annotators-by-source
    python -m judge.agree triple.csv --gold label --pred judge_label --annotators ann1 ann2 ann3 --alt-test \
        --epsilon 0.15 --out runs/alt-test

Writes OUT/agreement.json, agreement.md, agreement.tex (booktabs; --digits, --tex-label),
confusion.png/.pdf and manifest.json; with --by, also error_by_group.png/.pdf: kappa with its
bootstrap interval, accuracy, false-positive/false-negative rate per category (Wilson intervals) and
the judge's rate minus the humans' (paired 95% interval) within each group, Fleiss' chi-square test
of equal kappas across groups (agreement, not accuracy, which a majority class inflates) and the
chi-square test on accuracy beside it. A repeated --by reports every column (one table and one figure
each). With --annotators and no --pred, --by splits the annotators' alpha and pairwise kappa by
group. Intervals resample whole clusters: --cluster COL, by default the prompt when some prompt was
sampled more than once (its outputs are correlated); --no-cluster for items. Macro-F1 averages over
the categories the gold labels or the predictions use (scikit-learn's convention). --alt-test asks
whether the judge may replace a human annotator (Calderon et al. 2025): for each annotator left out,
does the judge match the others at least as well (one-sided t-test against --epsilon,
Benjamini-Yekutieli across annotators)?
Unscored predictions (judge outputs outside the taxonomy) are excluded from kappa and alpha and
reported beside them.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from judge.core.config import (
    LABEL_MAP,
    TAXONOMY_HELP,
    RecordColumns,
    ReportStyle,
    check_fraction,
    check_label_map,
    check_non_negative,
    parser_for,
    run_command,
)
from judge.core.errors import UserError, clip, short_list
from judge.core.files import check_output_directory, json_text, write_text
from judge.core.manifest import RunManifest, judge_of, label_source
from judge.core.outputs import claim_for, staged_directory
from judge.core.records import read_records, require_columns
from judge.core.taxonomy import UNSCORED, Taxonomy, parse_label_map, resolve_taxonomy
from judge.render.tables import Style, heatmap, level_text, markdown, save_figures, style_of, write_tables
from judge.stats.group_error import MIN_UNITS_FOR_TEST
from judge.stats.metrics import agreement


@dataclass
class Config(RecordColumns, ReportStyle):
    input: str | list[str] = field(metadata={"positional": True, "nargs": "*", "help": "records file(s) (JSONL, CSV or Parquet) with the gold "
                                             "labels; several files (one per model, say) are joined with a source column (--by source compares them)"})
    out: str = field(metadata={"help": "output directory"})
    gold: str | None = field(default=None, metadata={"help": "column of gold (human) labels"})
    pred: str | None = field(default=None, metadata={"help": "column of the judge's (or second annotator's) labels"})
    annotators: list[str] = field(default_factory=list, metadata={"metavar": "COL", "help": "human annotator columns: alpha among them, "
                                                                  "pairwise kappa, each one's kappa vs --gold, and with --pred alpha with the "
                                                                  "judge added; without --pred, a report on the annotators alone"})
    pred_file: str | None = field(default=None, metadata={"help": "take --pred from this file instead, joined on --id-column"})
    taxonomy: str | None = field(default=None, metadata={"help": TAXONOMY_HELP})
    label_map: str | None = field(default=None, metadata=LABEL_MAP)
    coarse: bool = field(default=False, metadata={"help": "map labels to their coarse parents first (e.g. refusal + harmful refusal -> refused)"})
    bootstrap: int = field(default=1000, metadata={"help": "bootstrap resamples for the intervals"})
    level: float = field(default=0.95, metadata={"help": "confidence level of every interval, in (0, 1)"})
    seed: int = field(default=0, metadata={"help": "bootstrap seed"})
    by: list[str] | str | None = field(default=None, metadata={
        "action": "append", "metavar": "COL", "help": "the judge's agreement within each value of COL (e.g. identity): kappa with its interval, "
        "FPR/FNR, judge minus human rate, a test of equal kappas across groups; with --annotators alone, their alpha and pairwise kappa per "
        "group; repeat for several columns (one table each)"})
    cluster: str | None = field(default=None, metadata={"metavar": "COL", "help": "intervals resample whole clusters of COL (outputs of one "
                                                        "prompt are correlated; default: prompt when some prompt has several outputs, else items)"})
    no_cluster: bool = field(default=False, metadata={"help": "resample outputs one by one even when prompts repeat"})
    alt_test: bool = field(default=False, metadata={"help": "alternative annotator test of --pred against the --annotators columns (needs 2+, "
                                                    "better 3+)"})
    epsilon: float | None = field(default=None, metadata={"help": "alt-test margin: how much better than the judge a human must be to keep "
                                                          "the human (default: 0.15)"})
    overwrite: bool = field(default=False, metadata={"help": "replace existing report files"})

    def __post_init__(self):
        check_non_negative(self, "bootstrap")
        check_fraction(self, "level", low_open=True, high_open=True)
        check_label_map(self)
        self.check_style()
        self.input = [self.input] if isinstance(self.input, str) else list(self.input)
        if not self.input:
            raise UserError("give the records file(s) to compare")
        self.by = by_columns(self.by)  # every --by is reported, each column once, in the order given


def by_columns(by: str | Sequence[str] | None) -> list[str]:
    """--by as given once or several times (a config file may hold one name or a list)."""
    return list(dict.fromkeys([by] if isinstance(by, str) else (by or [])))


def cluster_codes(records: pd.DataFrame, column: str | None) -> list[str] | None:
    """Each record's cluster (the value of ``column``); a blank value is a cluster of its own."""
    if column is None:
        return None
    values, blank = records[column], _blank(records[column])
    return [f"\0row{i}" if b else str(v) for i, (v, b) in enumerate(zip(values, blank))]


def default_cluster(records: pd.DataFrame, config: Config) -> tuple[str | None, str]:
    """--cluster COL; else the prompt when some prompt was sampled more than once (its outputs are
    correlated, so resampling them one by one would make the intervals too narrow); --no-cluster: none."""
    if config.no_cluster:
        return None, "--no-cluster"
    if config.cluster:
        return config.cluster, "--cluster"
    if "prompt" in records.columns:
        prompts = records["prompt"][~_blank(records["prompt"])]
        repeated = int(prompts.duplicated(keep=False).sum())
        if repeated:
            return "prompt", f"the default, as {repeated} of {len(records)} outputs share a prompt with another; --no-cluster resamples outputs one by one"
    return None, "no prompt has several outputs"


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
    by: str | Sequence[str] | None = None,
    alt_test_epsilon: float | None = None,
    label_map: dict[str, str] | None = None,
    emittable: list[str] | None = None,
    cluster: str | None = None,
    level: float = 0.95,
) -> dict:
    """Agreement figures from records holding a gold and a prediction column (library entry point).

    ``by`` (a column or several) adds the judge's error within each value of each column: ``by_groups``
    holds one table per column and ``by_group`` the first; ``alt_test_epsilon`` runs the alternative
    annotator test of ``pred`` against the ``annotators``; ``cluster`` names a column whose values the
    bootstrap resamples whole (outputs of one prompt, say).
    """
    by = by_columns(by)
    require_columns(records, [gold, pred, *annotators, *by, *([cluster] if cluster else [])], source="records",
                    flag_hint="Fix --gold/--pred/--annotators/--by/--cluster.")
    has_gold = ~_blank(records[gold])
    n_without_gold = int((~has_gold).sum())
    records = records[has_gold]
    if records.empty:
        raise UserError(f"no row has a gold label in column {clip(gold)}; check --gold")
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
    clusters = cluster_codes(records, cluster)
    result = agreement(gold_labels, pred_labels, labels=used.labels, annotators=human or None, n_boot=n_boot, seed=seed, pred_name=pred,
                       clusters=clusters, level=level)
    result = {"taxonomy": used.name, "gold_column": gold, "pred_column": pred, "n_without_gold": n_without_gold,
              "cluster": {"column": cluster, "n_clusters": len(set(clusters)) if clusters else None}, **result}
    result["warnings"] = class_warnings(gold_labels, pred_labels, pred=pred)
    if emittable is not None:
        never = sorted({g for g in gold_labels if g not in set(emittable) and not (coarse and g in {fine.parent_of(e) for e in emittable})})
        if never:
            result["warnings"].append(f"{pred} can never predict {', '.join(never)} (its judge emits only {', '.join(emittable)}); "
                                      "every gold label in those categories counts as an error")
    if by:
        from judge.stats.group_error import judge_error_by_group

        result["by_groups"] = [{"column": col, "level": level,
                                **judge_error_by_group(gold_labels, pred_labels, records[col].astype(str).tolist(), labels=used.labels,
                                                       alpha=1 - level, clusters=clusters, n_boot=n_boot, seed=seed)} for col in by]
        result["by_group"] = result["by_groups"][0]  # the first --by, where reports before several --by kept it
    if alt_test_epsilon is not None:
        from judge.stats.alt_test import alt_test

        result["alt_test"] = alt_test(human, pred_labels, epsilon=alt_test_epsilon)
    return result


def render_markdown(result: dict, style: Style) -> tuple[str, str]:
    ci = result["ci"]
    level = level_text(ci["level"])
    summary = pd.DataFrame(
        [
            ["Cohen's kappa", style.fmt(result["cohen_kappa"]), style.fmt_ci(ci["cohen_kappa"])],
            ["Krippendorff's alpha (nominal)", style.fmt(result["krippendorff_alpha"]), style.fmt_ci(ci["krippendorff_alpha"])],
            ["Accuracy", style.fmt(result["accuracy"]), ""],
            [macro_f1_name(result), style.fmt(result["macro_f1"]), style.fmt_ci(ci["macro_f1"])],
            ["Unscored", f"{result['n_unscored']} / {result['n']} ({100 * result['unscored_rate']:.1f}%)", ""],
        ],
        columns=["metric", "value", f"{level} CI"],
    )
    per_class = pd.DataFrame(result["per_class"]).T[["precision", "recall", "f1", "support"]]
    per_class["support"] = per_class["support"].astype(int)
    per_class_shown = per_class.astype(object)
    for col in ("precision", "recall", "f1"):
        per_class_shown[col] = [style.fmt(float(v)) for v in per_class[col]]
    conf = result["confusion"]
    confusion = pd.DataFrame(conf["matrix"], index=[f"gold: {g}" for g in conf["rows_gold"]], columns=conf["columns_pred"])
    title = result.get("title") or (f"Agreement of {result.get('pred_name') or result['pred_column']} with {result.get('gold_name') or result['gold_column']} "
                                    f"(taxonomy {result['taxonomy']}, n = {result['n']})")
    parts = [f"# {title}\n", *(f"**Warning:** {w}.\n" for w in result.get("warnings", [])), *precision_note(result), markdown(summary, index=False),
             f"\n{intervals_note(result)}\n", "\n## Per class\n", markdown(per_class_shown), "\n## Confusion (rows gold, columns predicted)\n", markdown(confusion)]
    tex_parts = [
        style.latex(summary, caption=title, label="tab:agreement", index=False),
        style.latex(per_class_shown, caption="Per-class precision, recall and F1.", label="tab:per-class"),
        style.latex(confusion, caption="Confusion matrix (rows gold, columns predicted).", label="tab:confusion"),
    ]
    if "annotators" in result:
        ann = result["annotators"]
        rows = [["alpha among humans", style.fmt(ann["alpha_among_humans"])], ["alpha, humans + judge", style.fmt(ann["alpha_with_judge"])]]
        rows += [[f"kappa {pair}", style.fmt(v)] for pair, v in ann.get("pairwise_kappa", {}).items()]
        rows += [[f"kappa {name} vs gold", style.fmt(v)] for name, v in ann["kappa_vs_gold"].items()]
        frame = pd.DataFrame(rows, columns=["statistic", "value"])
        parts += ["\n## Human annotators\n", markdown(frame, index=False)]
        tex_parts.append(style.latex(frame, caption="Agreement among human annotators.", label="tab:annotators", index=False))
    for position, by in enumerate(result.get("by_groups", []), start=1):
        by_md, by_tex = render_by_group(by, style, suffix="" if position == 1 else f"-{position}")
        parts += by_md
        tex_parts += by_tex
    if "alt_test" in result:
        alt = result["alt_test"]
        frame = pd.DataFrame(
            [[name, a["n_items"], style.fmt(a["rho_judge"]), style.fmt(a["rho_human"]), f"{a['p_value']:.3g}", f"{a['p_adjusted_by']:.3g}", "yes" if a["judge_wins"] else "no"]
             for name, a in alt["annotators"].items()],
            columns=["annotator left out", "items", "rho judge", "rho human", "p", "p (BY)", "judge wins"],
        )
        verdict = f"**{'PASS' if alt['passed'] else 'FAIL'}**: {alt['reason']}; average advantage probability {style.fmt(alt['average_advantage_probability'])}."
        parts += ["\n## Alternative annotator test (Calderon et al. 2025)\n", verdict + "\n", markdown(frame, index=False)]
        parts += [f"\nWarning: {w}.\n" for w in alt["warnings"]]
        tex_parts.append(style.latex(frame, caption=f"Alternative annotator test, epsilon = {alt['epsilon']}: {'pass' if alt['passed'] else 'fail'}.", label="tab:alt-test", index=False))
    return "\n".join(parts) + "\n", "\n".join(tex_parts)


def precision_note(result: dict) -> list[str]:
    """Agreement measured in one precision does not carry to another unless checked: say which one."""
    precision = result.get("pred_precision")
    return [f"Judge labels computed in {precision} (from the labelled file's manifest).\n"] if precision else []


def with_ci(value, ci, style: Style) -> str:
    """'0.700 [0.590, 0.790]', or the value alone where no interval exists."""
    return f"{style.fmt(value)} {style.fmt_ci(ci)}" if ci is not None and ci[0] is not None else style.fmt(value)


def macro_f1_name(result: dict) -> str:
    used, every = result.get("macro_f1_labels", result["labels"]), result["labels"]
    return f"Macro-F1 (over the {len(used)} of {len(every)} categories in gold or predictions)"


def intervals_note(result: dict) -> str:
    cluster = result.get("cluster") or {}
    note = f"{level_text(result['ci']['level'])} intervals: {result['ci']['method']}"
    if cluster.get("column"):
        note += f"; clusters are the values of `{cluster['column']}`" + (f" ({cluster['how']})" if cluster.get("how") else "")
    elif cluster.get("how"):
        note += f" ({cluster['how']})"
    return note + "."


def kappa_test_line(test: dict, col: str, style: Style) -> str:
    if test["statistic"] is None:
        return (f"Equal-kappa test not computed: it needs two {col} values with a kappa, a bootstrap SE and at least "
                f"{MIN_UNITS_FOR_TEST} independent units each.")
    left = test["groups_left_out"]
    return (f"Does the judge agree with the humans equally well on every {col}? Fleiss' chi-square on the group kappas "
            f"(inverse bootstrap variances): Q = {style.fmt(test['statistic'], 2)}, dof = {test['dof']}, p = {test['p_value']:.3g}"
            f" (pooled kappa {style.fmt(test['pooled_kappa'])})" + (f"; left out: {', '.join(f'{g} ({why})' for g, why in left.items())}" if left else "") + ".")


def accuracy_test_line(test: dict, col: str, style: Style) -> str:
    if test["statistic"] is None:
        return "Accuracy test not computed (needs two groups and both correct and incorrect outputs)."
    return (f"Does the judge err more often on some {col} values? Chi-square on (correct, incorrect) x {col}: "
            f"chi2 = {style.fmt(test['statistic'], 2)}, dof = {test['dof']}, p = {test['p_value']:.3g} (accuracy: a majority class inflates it, "
            "so equal accuracy can hide very different agreement).")


def render_by_group(by: dict, style: Style, *, suffix: str = "") -> tuple[list[str], list[str]]:
    """One --by column: per-group kappa with its interval, the tests across groups, per-category errors."""
    col, level = by["column"], level_text(by["level"])
    summary = pd.DataFrame(
        [[g, r["n_scored"], r["n_unscored"], r["n_units"], with_ci(r["cohen_kappa"], r["cohen_kappa_ci"], style), style.fmt(r["accuracy"])]
         for g, r in by["groups"].items()],
        columns=[col, "n scored", "unscored", "independent units", f"kappa [{level} CI]", "accuracy"],
    )
    rows = []
    for g, r in by["groups"].items():
        for c, v in r["categories"].items():
            if not (v["human_rate"] or v["judge_rate"]):
                continue
            d = v["judge_minus_human"]
            rows.append([g, c, style.fmt(v["human_rate"]), style.fmt(v["judge_rate"]), with_ci(d["difference"], d["ci"], style),
                         with_ci(v["false_positive_rate"], v["false_positive_ci"], style), with_ci(v["false_negative_rate"], v["false_negative_ci"], style)])
    detail = pd.DataFrame(rows, columns=[col, "category", "human rate", "judge rate", f"judge - human [{level} CI]", f"FPR [{level} CI]", f"FNR [{level} CI]"])
    methods = by["intervals"]
    method_line = (f"Intervals: kappa, {methods['kappa']}; FPR and FNR, {methods['false_positive_negative_rates']}; "
                   f"judge - human, {methods['judge_minus_human']}. Independent units: clusters (or items) in the group.")
    tests = f"{kappa_test_line(by['kappa_test'], col, style)}\n\n{accuracy_test_line(by['error_rate_test'], col, style)}"
    md = [f"\n## Judge agreement by {col}\n", markdown(summary, index=False), "\n" + tests + "\n", "\n" + method_line + "\n",
          f"\n## Judge rate minus human rate, by {col} and category\n",
          "FPR: share of outputs humans did not put in the category that the judge did; FNR: share humans did put there that the judge did not.\n",
          markdown(detail, index=False)]
    tex = [style.latex(summary, caption=f"Judge agreement with humans by {col} (kappa with {level} CI). {kappa_test_line(by['kappa_test'], col, style)}",
                 label=f"tab:error-by-group{suffix}", index=False),
           style.latex(detail, caption=f"Judge rate minus human rate by {col} (paired {level} CI), false-positive and false-negative rates ({level} CI).",
                 label=f"tab:error-by-group-detail{suffix}", index=False)]
    return md, tex


def error_by_group_figure(result: dict, by: dict | None = None):
    """A kappa panel (with its interval), then one panel per category with any human or judge label:
    judge rate minus human rate per group."""
    import matplotlib.pyplot as plt

    by = by or result["by_group"]
    groups = list(by["groups"])
    cats = [c for c in result["labels"] if any(r["categories"][c]["human_rate"] or r["categories"][c]["judge_rate"] for r in by["groups"].values())]
    fig, axes = plt.subplots(1, len(cats) + 1, figsize=(2.8 * (len(cats) + 1) + 1, 0.45 * len(groups) + 1.6), sharey=True, squeeze=False)
    points = {"kappa": [(by["groups"][g]["cohen_kappa"], by["groups"][g]["cohen_kappa_ci"]) for g in groups]}
    points |= {c: [(by["groups"][g]["categories"][c]["judge_minus_human"]["difference"], by["groups"][g]["categories"][c]["judge_minus_human"]["ci"])
                   for g in groups] for c in cats}
    for ax, (name, values) in zip(axes[0], points.items()):
        for i, (value, (lo, hi)) in enumerate(values):
            if value is None or not np.isfinite(value):
                continue
            err = [[value - lo], [hi - value]] if lo is not None else None
            ax.errorbar([value], [i], xerr=err, fmt="o", color="black" if name == "kappa" else "tab:blue", capsize=2, markersize=4)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(name)
        ax.set_yticks(range(len(groups)), labels=groups)
        ax.set_xlabel("Cohen's kappa" if name == "kappa" else "judge - human")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_ylabel(by["column"])
    fig.suptitle(result.get("title") or f"{result.get('pred_name') or result['pred_column']} vs {result.get('gold_name') or result['gold_column']}: "
                 f"kappa and rate difference by {by['column']} ({level_text(by['level'])} CI)")
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


def write_agreement_report(result: dict, out_dir: str | Path, *, style: Style, overwrite: bool = False) -> list[Path]:
    out_dir = Path(out_dir)
    md, tex = render_markdown(result, style)
    written = [write_text(out_dir / "agreement.json", json_text(result, indent=2) + "\n", overwrite=overwrite)]
    written += write_tables(out_dir, "agreement", md, tex, overwrite=overwrite)
    written += save_figures(confusion_figure(result), out_dir / "confusion", overwrite=overwrite)
    for position, by in enumerate(result.get("by_groups", []), start=1):
        stem = "error_by_group" if position == 1 else f"error_by_group_{position}"
        written += save_figures(error_by_group_figure(result, by), out_dir / stem, overwrite=overwrite)
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
                                coarse: bool = False, n_boot: int = 1000, seed: int = 0, label_map: dict[str, str] | None = None,
                                by: str | Sequence[str] | None = None, cluster: str | None = None, level: float = 0.95) -> dict:
    """Agreement among human annotator columns (and each against ``gold``), no judge involved; ``by``
    repeats it within each value of each column (``by_groups``, one table per column; ``by_group`` the
    first), and ``cluster`` names a column whose values the bootstrap resamples whole."""
    from judge.stats.metrics import annotator_agreement

    columns = list(dict.fromkeys(annotators))  # one column counted once, whatever the command line repeats
    by = by_columns(by)
    require_columns(records, [*columns, *([gold] if gold else []), *by, *([cluster] if cluster else [])], source="records",
                    flag_hint="Fix --annotators/--gold/--by/--cluster.")

    fine = resolve_taxonomy(taxonomy, [x for c in columns for x in records[c][~_blank(records[c])]], label_map=label_map)

    def canon(values, column):
        labels = annotator_labels(values, fine, column=column)
        return [fine.parent_of(x) if coarse and x is not None else x for x in labels]

    used = fine.coarse() if coarse else fine
    humans = {c: canon(records[c], c) for c in columns}
    gold_labels = canon(records[gold], gold) if gold else None
    clusters = cluster_codes(records, cluster)

    def within(rows: np.ndarray) -> dict:
        pick = lambda values: None if values is None else [values[i] for i in rows]  # noqa: E731
        return annotator_agreement({c: pick(v) for c, v in humans.items()}, labels=used.labels, gold=pick(gold_labels),
                                   n_boot=n_boot, seed=seed, clusters=pick(clusters), level=level)

    result = {"taxonomy": used.name, "gold_column": gold, "level": level, "cluster": {"column": cluster, "n_clusters": len(set(clusters)) if clusters else None},
              **within(np.arange(len(records)))}
    if by:
        result["by_groups"] = [{"column": col, "groups": {g: within(np.flatnonzero(records[col].astype(str).to_numpy() == g))
                                                          for g in sorted(set(records[col].astype(str)))}} for col in by]
        result["by_group"] = result["by_groups"][0]
    return result


def render_annotators_by_group(by: dict, style: Style, *, gold: str | None, level: float, suffix: str = "") -> tuple[str, str]:
    """One --by column of the annotators-only report: alpha and every pairwise kappa per group, with intervals."""
    col, level = by["column"], level_text(level)
    first = next(iter(by["groups"].values()))
    pairs, vs_gold = list(first["pairwise_kappa"]), list(first.get("kappa_vs_gold", {}))
    rows = [[g, r["n_items"], with_ci(r["krippendorff_alpha"], r["krippendorff_alpha_ci"], style),
             *(with_ci(r["pairwise_kappa"][p]["kappa"], r["pairwise_kappa"][p]["ci"], style) for p in pairs),
             *(with_ci(r["kappa_vs_gold"][a]["kappa"], r["kappa_vs_gold"][a]["ci"], style) for a in vs_gold)] for g, r in by["groups"].items()]
    frame = pd.DataFrame(rows, columns=[col, "items", f"alpha [{level} CI]", *(f"kappa {p}" for p in pairs), *(f"kappa {a} vs {gold}" for a in vs_gold)])
    caption = f"Agreement among annotators by {col} ({level} CI)."
    return f"\n## Annotator agreement by {col}\n\n{markdown(frame, index=False)}\n", style.latex(frame, caption=caption, label=f"tab:annotators-by-group{suffix}", index=False)


def annotators_only(config: Config, manifest: RunManifest) -> dict:
    style = style_of(config)
    records = read_config_records(config, unique_ids=False)
    cluster, how = default_cluster(records, config)
    result = compute_annotator_agreement(records, annotators=list(config.annotators), gold=config.gold, taxonomy=config.taxonomy,
                                         coarse=config.coarse, n_boot=config.bootstrap, seed=config.seed,
                                         label_map=parse_label_map(config.label_map, encoding=config.encoding), by=config.by, cluster=cluster,
                                         level=config.level)
    result["cluster"]["how"] = how
    rows = [["Krippendorff's alpha (nominal), all annotators", style.fmt(result["krippendorff_alpha"]), style.fmt_ci(result["krippendorff_alpha_ci"]), result["n_items"]]]
    rows += [[f"Cohen's kappa, {pair}", style.fmt(v["kappa"]), style.fmt_ci(v["ci"]), v["n"]] for pair, v in result["pairwise_kappa"].items()]
    rows += [[f"Cohen's kappa, {name} vs {config.gold}", style.fmt(v["kappa"]), style.fmt_ci(v["ci"]), v["n"]] for name, v in result.get("kappa_vs_gold", {}).items()]
    table = pd.DataFrame(rows, columns=["statistic", "value", f"{level_text(result['level'])} CI", "items"])
    title = config.title or f"Agreement among annotators {', '.join(result['annotators'])} (taxonomy {result['taxonomy']})"
    clustered = f"; clusters are the values of `{cluster}`" if cluster else ""
    md = f"# {title}\n\n{markdown(table, index=False)}\n\nIntervals: {result['bootstrap']}{clustered} ({how}).\n"
    tex = style.latex(table, caption=title + ".", label="tab:annotator-agreement", index=False)
    for position, by in enumerate(result.get("by_groups", []), start=1):
        by_md, by_tex = render_annotators_by_group(by, style, gold=config.gold, level=result["level"], suffix="" if position == 1 else f"-{position}")
        md, tex = md + by_md, tex + "\n" + by_tex
    with staged_directory(config.out, overwrite=config.overwrite) as staging:
        write_text(staging / "agreement.json", json_text(result, indent=2) + "\n", overwrite=False)
        write_tables(staging, "agreement", md, tex, overwrite=False)
        manifest.write(staging, n_items=result["n_items"])
    print(md)
    return result


def read_config_records(config: Config, *, unique_ids: bool, label_columns: list[str] = ()) -> pd.DataFrame:
    return read_records(config.input, encoding=config.encoding, id_column=config.id_column, prompt_column=config.prompt_column, text_column=config.text_column,
                        source_column=config.source_column, required=(), label_columns=label_columns, unique_ids=unique_ids)


def check_options(config: Config) -> None:
    """Combinations that would otherwise be silently ignored, and out-of-range values."""
    if config.pred is None:
        if len(config.annotators) < 2:
            raise UserError("give --gold and --pred (a judge against humans), or two or more --annotators (agreement among humans)")
        extra = [flag for flag, on in (("--alt-test", config.alt_test), ("--pred-file", config.pred_file)) if on]
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
    if config.cluster and config.no_cluster:
        raise UserError(f"--cluster {config.cluster} and --no-cluster contradict each other; keep one")
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
    return annotators_only(config, manifest) if config.pred is None else judge_agreement(config, manifest)


def judge_agreement(config: Config, manifest: RunManifest) -> dict:
    style = style_of(config)
    out_dir = Path(config.out)
    # Ids matter only when they join two files: repeated ids are fine otherwise.
    records = read_config_records(config, label_columns=[config.gold], unique_ids=bool(config.pred_file))
    if config.pred_file:
        preds = read_records(config.pred_file, encoding=config.encoding, id_column=config.id_column, required=(), label_columns=[config.pred])
        absent = sorted(set(records["id"]) - set(preds["id"]))
        if len(absent) == len(records):
            raise UserError(f"no id of {', '.join(config.input)} appears in {config.pred_file}; check --id-column")
        if absent:
            raise UserError(f"{len(absent)} id(s) of {', '.join(config.input)} have no row in {config.pred_file} (e.g. {short_list(map(repr, absent), limit=3)}); "
                            "label them too (judge.label resumes) or agree on the common ids by filtering the gold file")
        records = records.drop(columns=[config.pred], errors="ignore").merge(preds[["id", config.pred]], on="id", how="left")
    pred_source = config.pred_file or config.input[0]
    judge = judge_of(pred_source, config.pred) if len(config.input) == 1 or config.pred_file else None
    cluster, how = default_cluster(records[~_blank(records[config.gold])], config)
    result = compute_agreement(
        records, gold=config.gold, pred=config.pred, taxonomy=config.taxonomy, coarse=config.coarse,
        annotators=list(config.annotators), n_boot=config.bootstrap, seed=config.seed,
        by=config.by, alt_test_epsilon=(0.15 if config.epsilon is None else config.epsilon) if config.alt_test else None,
        label_map=parse_label_map(config.label_map, encoding=config.encoding), emittable=(judge or {}).get("emittable_categories"), cluster=cluster,
        level=config.level,
    )
    result["cluster"]["how"] = how
    result.update(title=config.title, pred_name=label_source(pred_source, config.pred, default=config.pred),
                  gold_name=f"human labels ({config.gold})", pred_precision=(judge or {}).get("precision"))
    with staged_directory(out_dir, overwrite=config.overwrite) as staging:
        written = [out_dir / p.name for p in write_agreement_report(result, staging, style=style)]
        manifest.write(staging, n=result["n"], n_unscored=result["n_unscored"])
    print(
        f"n={result['n']} kappa={style.fmt(result['cohen_kappa'])} {style.fmt_ci(result['ci']['cohen_kappa'])} ({level_text(result['ci']['level'])}) "
        f"alpha={style.fmt(result['krippendorff_alpha'])} macro-F1={style.fmt(result['macro_f1'])} "
        f"unscored={result['n_unscored']} ({100 * result['unscored_rate']:.1f}%)"
        + (f" precision={result['pred_precision']}" if result.get("pred_precision") else "")
    )
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    if "alt_test" in result:
        print(f"alt-test: {'PASS' if result['alt_test']['passed'] else 'FAIL'}: {result['alt_test']['reason']}")
        for warning in result["alt_test"]["warnings"]:
            print(f"warning: alt-test: {warning}", file=sys.stderr)
    for by in result.get("by_groups", []):
        test = by["kappa_test"]
        kappas = ", ".join(f"{g} {with_ci(r['cohen_kappa'], r['cohen_kappa_ci'], style)}" for g, r in by["groups"].items())
        print(f"kappa by {by['column']}: {kappas}" + (f"; equal-kappa test (Fleiss) p = {test['p_value']:.3g}" if test["p_value"] is not None else ""))
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return result


def build_parser():
    return parser_for(Config, "python -m judge.agree", __doc__, order=("input", "gold", "pred", "annotators", "pred_file", RecordColumns, ...,
                                                                      ReportStyle, "out", "overwrite"))


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
