"""The agreement report drawn from an AgreementResult or AnnotatorAgreementResult (judge.analysis.agreement):
Markdown and LaTeX tables, the confusion matrix and the per-group error figures, and the report folder.

Every function takes the typed result, or the dict an ``agreement.json`` holds (read into the result).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from judge.analysis.agreement import (
    MIN_UNITS_FOR_TEST,
    AccuracyTest,
    AgreementByGroup,
    AgreementResult,
    AnnotatorAgreementResult,
    AnnotatorsByGroup,
    KappaTest,
)
from judge.analysis.results import opt
from judge.core.files import json_text, write_text
from judge.render.tables import Style, heatmap, level_text, markdown, save_figures, write_tables


def as_agreement(result: AgreementResult | Mapping[str, Any]) -> AgreementResult:
    return AgreementResult.from_dict(result)


def with_ci(value, ci, style: Style, reason: str | None = None) -> str:
    """'0.700 [0.590, 0.790]', or the value alone where no interval exists, with the reason where one is given
    ('0.000 (judge predicts one class (answer): no interval)')."""
    if ci is not None and ci[0] is not None:
        return f"{style.fmt(value)} {style.fmt_ci(ci)}"
    return f"{style.fmt(value)} ({reason})" if reason else style.fmt(value)


def ci_text(ci, reason: str | None, style: Style) -> str:
    """An interval's cell: '[0.590, 0.790]', or why there is none (a zero-width interval is never shown)."""
    return reason if reason and (ci is None or ci[0] is None) else style.fmt_ci(ci)


def macro_f1_name(result: AgreementResult) -> str:
    used, every = opt(result.macro_f1_labels, result.labels), result.labels
    return f"Macro-F1 (over the {len(used)} of {len(every)} categories in gold or predictions)"


def precision_note(result: AgreementResult) -> list[str]:
    """Agreement measured in one precision does not carry to another unless checked: say which one."""
    precision = result.pred_precision
    return [f"Judge labels computed in {precision} (from the labelled file's manifest).\n"] if precision else []


def intervals_note(result: AgreementResult) -> str:
    cluster = result.cluster or None
    note = f"{level_text(result.ci.level)} intervals: {result.ci.method}"
    if cluster and cluster.column:
        note += f"; clusters are the values of `{cluster.column}`" + (f" ({cluster.how})" if cluster.how else "")
    elif cluster and cluster.how:
        note += f" ({cluster.how})"
    return note + "."


def _names(result: AgreementResult) -> tuple[str, str]:
    """What the predictions and the gold labels are called in titles."""
    return result.pred_name or result.pred_column, result.gold_name or result.gold_column


def escalated_row(result: AgreementResult) -> list[list[str]]:
    """The outputs a selective judge escalated to people, counted apart (every metric is on the kept ones)."""
    if not result.n_escalated:
        return []
    total = result.n + result.n_escalated
    share = f"{result.n_escalated} / {total} ({100 * result.n_escalated / total:.1f}%)"
    return [["Escalated to people (outside the metrics)", share, ""]]


def render_agreement(result: AgreementResult | Mapping[str, Any], style: Style) -> tuple[str, str]:
    """The report's Markdown and LaTeX (agreement.md, agreement.tex)."""
    result = as_agreement(result)
    ci = result.ci
    reasons = opt(ci.reasons, {})
    level = level_text(ci.level)
    summary = pd.DataFrame(
        [
            [
                "Cohen's kappa",
                style.fmt(result.cohen_kappa),
                ci_text(ci.cohen_kappa, reasons.get("cohen_kappa"), style),
            ],
            [
                "Krippendorff's alpha (nominal)",
                style.fmt(result.krippendorff_alpha),
                ci_text(ci.krippendorff_alpha, reasons.get("krippendorff_alpha"), style),
            ],
            ["Accuracy", style.fmt(result.accuracy), ""],
            [macro_f1_name(result), style.fmt(result.macro_f1), ci_text(ci.macro_f1, reasons.get("macro_f1"), style)],
            ["Unscored", f"{result.n_unscored} / {result.n} ({100 * result.unscored_rate:.1f}%)", ""],
            *escalated_row(result),
        ],
        columns=["metric", "value", f"{level} CI"],
    )
    scores = {
        c: {"precision": v.precision, "recall": v.recall, "f1": v.f1, "support": v.support}
        for c, v in result.per_class.items()
    }
    per_class = pd.DataFrame(scores).T[["precision", "recall", "f1", "support"]]
    per_class["support"] = per_class["support"].astype(int)
    per_class_shown = per_class.astype(object)
    for col in ("precision", "recall", "f1"):
        per_class_shown[col] = [style.fmt(float(v)) for v in per_class[col]]
    conf = result.confusion
    confusion = pd.DataFrame(conf.matrix, index=[f"gold: {g}" for g in conf.rows_gold], columns=conf.columns_pred)
    pred_name, gold_name = _names(result)
    title = result.title or f"Agreement of {pred_name} with {gold_name} (taxonomy {result.taxonomy}, n = {result.n})"
    parts = [
        f"# {title}\n",
        *(f"**Warning:** {w}.\n" for w in result.warnings or []),
        *precision_note(result),
        markdown(summary, index=False),
        f"\n{intervals_note(result)}\n",
        "\n## Per class\n",
        markdown(per_class_shown),
        "\n## Confusion (rows gold, columns predicted)\n",
        markdown(confusion),
    ]
    tex_parts = [
        style.latex(summary, caption=title, label="tab:agreement", index=False),
        style.latex(per_class_shown, caption="Per-class precision, recall and F1.", label="tab:per-class"),
        style.latex(confusion, caption="Confusion matrix (rows gold, columns predicted).", label="tab:confusion"),
    ]
    if result.annotators:
        ann = result.annotators
        rows = [
            ["alpha among humans", style.fmt(ann.alpha_among_humans)],
            ["alpha, humans + judge", style.fmt(ann.alpha_with_judge)],
        ]
        rows += [[f"kappa {pair}", style.fmt(v)] for pair, v in (ann.pairwise_kappa or {}).items()]
        rows += [[f"kappa {name} vs gold", style.fmt(v)] for name, v in ann.kappa_vs_gold.items()]
        frame = pd.DataFrame(rows, columns=["statistic", "value"])
        parts += ["\n## Human annotators\n", markdown(frame, index=False)]
        tex_parts.append(
            style.latex(frame, caption="Agreement among human annotators.", label="tab:annotators", index=False)
        )
    for position, by in enumerate(result.by_groups or [], start=1):
        by_md, by_tex = render_by_group(by, style, suffix="" if position == 1 else f"-{position}")
        parts += by_md
        tex_parts += by_tex
    if result.alt_test:
        alt = result.alt_test
        frame = pd.DataFrame(
            [
                [
                    name,
                    a.n_items,
                    style.fmt(a.rho_judge),
                    style.fmt(a.rho_human),
                    f"{a.p_value:.3g}",
                    f"{a.p_adjusted_by:.3g}",
                    "yes" if a.judge_wins else "no",
                ]
                for name, a in alt.annotators.items()
            ],
            columns=["annotator left out", "items", "rho judge", "rho human", "p", "p (BY)", "judge wins"],
        )
        verdict = (
            f"**{'PASS' if alt.passed else 'FAIL'}**: {alt.reason}; average advantage probability "
            f"{style.fmt(alt.average_advantage_probability)}."
        )
        parts += [
            "\n## Alternative annotator test (Calderon et al. 2025)\n",
            verdict + "\n",
            markdown(frame, index=False),
        ]
        parts += [f"\nWarning: {w}.\n" for w in alt.warnings]
        tex_parts.append(
            style.latex(
                frame,
                caption=f"Alternative annotator test, epsilon = {alt.epsilon}: {'pass' if alt.passed else 'fail'}.",
                label="tab:alt-test",
                index=False,
            )
        )
    return "\n".join(parts) + "\n", "\n".join(tex_parts)


def kappa_test_line(test: KappaTest, col: str, style: Style) -> str:
    if test.statistic is None:
        return (
            f"Equal-kappa test not computed: it needs two {col} values with a kappa, a bootstrap SE and at least "
            f"{MIN_UNITS_FOR_TEST} independent units each."
        )
    left = test.groups_left_out
    return (
        f"Does the judge agree with the humans equally well on every {col}? Fleiss' chi-square on the group kappas "
        f"(inverse bootstrap variances): Q = {style.fmt(test.statistic, 2)}, dof = {test.dof}, p = {test.p_value:.3g}"
        f" (pooled kappa {style.fmt(test.pooled_kappa)})"
        + (f"; left out: {', '.join(f'{g} ({why})' for g, why in left.items())}" if left else "")
        + "."
    )


def accuracy_test_line(test: AccuracyTest, col: str, style: Style) -> str:
    if test.statistic is None:
        return "Accuracy test not computed (needs two groups and both correct and incorrect outputs)."
    return (
        f"Does the judge err more often on some {col} values? Chi-square on (correct, incorrect) x {col}: "
        f"chi2 = {style.fmt(test.statistic, 2)}, dof = {test.dof}, p = {test.p_value:.3g} (accuracy: a majority class "
        "inflates it, "
        "so equal accuracy can hide very different agreement)."
    )


def render_by_group(by: AgreementByGroup, style: Style, *, suffix: str = "") -> tuple[list[str], list[str]]:
    """One --by column: per-group kappa with its interval, the tests across groups, per-category errors."""
    col, level = by.column, level_text(by.level)
    summary = pd.DataFrame(
        [
            [
                g,
                r.n_scored,
                r.n_unscored,
                r.n_units,
                with_ci(r.cohen_kappa, r.cohen_kappa_ci, style, r.cohen_kappa_ci_reason or None),
                style.fmt(r.accuracy),
            ]
            for g, r in by.groups.items()
        ],
        columns=[col, "n scored", "unscored", "independent units", f"kappa [{level} CI]", "accuracy"],
    )
    rows = []
    for g, r in by.groups.items():
        for c, v in r.categories.items():
            if not (v.human_rate or v.judge_rate):
                continue
            d = v.judge_minus_human
            rows.append(
                [
                    g,
                    c,
                    style.fmt(v.human_rate),
                    style.fmt(v.judge_rate),
                    with_ci(d.difference, d.ci, style),
                    with_ci(v.false_positive_rate, v.false_positive_ci, style),
                    with_ci(v.false_negative_rate, v.false_negative_ci, style),
                ]
            )
    detail = pd.DataFrame(
        rows,
        columns=[
            col,
            "category",
            "human rate",
            "judge rate",
            f"judge - human [{level} CI]",
            f"FPR [{level} CI]",
            f"FNR [{level} CI]",
        ],
    )
    methods = by.intervals
    method_line = (
        f"Intervals: kappa, {methods.kappa}; FPR and FNR, {methods.false_positive_negative_rates}; "
        f"judge - human, {methods.judge_minus_human}. Independent units: clusters (or items) in the group."
    )
    tests = f"{kappa_test_line(by.kappa_test, col, style)}\n\n{accuracy_test_line(by.error_rate_test, col, style)}"
    md = [
        f"\n## Judge agreement by {col}\n",
        markdown(summary, index=False),
        "\n" + tests + "\n",
        "\n" + method_line + "\n",
        f"\n## Judge rate minus human rate, by {col} and category\n",
        "FPR: share of outputs humans did not put in the category that the judge did; FNR: share humans did put there "
        "that the judge did not.\n",
        markdown(detail, index=False),
    ]
    tex = [
        style.latex(
            summary,
            caption=f"Judge agreement with humans by {col} (kappa with {level} CI). "
            f"{kappa_test_line(by.kappa_test, col, style)}",
            label=f"tab:error-by-group{suffix}",
            index=False,
        ),
        style.latex(
            detail,
            caption=f"Judge rate minus human rate by {col} (paired {level} CI), false-positive and false-negative "
            f"rates ({level} CI).",
            label=f"tab:error-by-group-detail{suffix}",
            index=False,
        ),
    ]
    return md, tex


def error_by_group_figure(
    result: AgreementResult | Mapping[str, Any], by: AgreementByGroup | Mapping[str, Any] | None = None
):
    """A kappa panel (with its interval), then one panel per category with any human or judge label:
    judge rate minus human rate per group."""
    import matplotlib.pyplot as plt

    result = as_agreement(result)
    by = AgreementByGroup.from_dict(by) if by else result.by_group
    groups = list(by.groups)
    cats = [
        c
        for c in result.labels
        if any(r.categories[c].human_rate or r.categories[c].judge_rate for r in by.groups.values())
    ]
    fig, axes = plt.subplots(
        1, len(cats) + 1, figsize=(2.8 * (len(cats) + 1) + 1, 0.45 * len(groups) + 1.6), sharey=True, squeeze=False
    )
    points = {"kappa": [(by.groups[g].cohen_kappa, by.groups[g].cohen_kappa_ci) for g in groups]}
    points |= {
        c: [
            (by.groups[g].categories[c].judge_minus_human.difference, by.groups[g].categories[c].judge_minus_human.ci)
            for g in groups
        ]
        for c in cats
    }
    for ax, (name, values) in zip(axes[0], points.items()):
        for i, (value, (lo, hi)) in enumerate(values):
            if value is None or not np.isfinite(value):
                continue
            err = [[value - lo], [hi - value]] if lo is not None else None
            ax.errorbar(
                [value],
                [i],
                xerr=err,
                fmt="o",
                color="black" if name == "kappa" else "tab:blue",
                capsize=2,
                markersize=4,
            )
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(name)
        ax.set_yticks(range(len(groups)), labels=groups)
        ax.set_xlabel("Cohen's kappa" if name == "kappa" else "judge - human")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_ylabel(by.column)
    pred_name, gold_name = _names(result)
    fig.suptitle(
        result.title
        or f"{pred_name} vs {gold_name}: kappa and rate difference by {by.column} ({level_text(by.level)} CI)"
    )
    fig.tight_layout()
    return fig


def confusion_figure(result: AgreementResult | Mapping[str, Any]):
    result = as_agreement(result)
    conf = result.confusion
    matrix = np.array(conf.matrix, dtype=float)
    columns = conf.columns_pred
    if matrix[:, -1].sum() == 0:  # no unscored predictions: leave the empty column out of the picture
        matrix, columns = matrix[:, :-1], columns[:-1]
    row_share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    counts = np.array([[f"{int(c)}" for c in row] for row in matrix], dtype=object)
    pred_name, gold_name = _names(result)
    return heatmap(
        row_share,
        rows=conf.rows_gold,
        columns=columns,
        annotations=counts,
        vmax=1.0,
        title=result.title or f"{pred_name} vs {gold_name}\n(row-normalised; counts shown)",
        xlabel="predicted",
        ylabel="gold",
    )


def write_agreement_report(
    result: AgreementResult | Mapping[str, Any], out_dir: str | Path, *, style: Style, overwrite: bool = False
) -> list[Path]:
    """agreement.json (the result's ``to_dict()``), agreement.md and .tex, the confusion matrix and one error
    figure per --by."""
    result = as_agreement(result)
    out_dir = Path(out_dir)
    md, tex = render_agreement(result, style)
    written = [
        write_text(out_dir / "agreement.json", json_text(result.to_dict(), indent=2) + "\n", overwrite=overwrite)
    ]
    written += write_tables(out_dir, "agreement", md, tex, overwrite=overwrite)
    written += save_figures(confusion_figure(result), out_dir / "confusion", overwrite=overwrite)
    for position, by in enumerate(result.by_groups or [], start=1):
        stem = "error_by_group" if position == 1 else f"error_by_group_{position}"
        written += save_figures(error_by_group_figure(result, by), out_dir / stem, overwrite=overwrite)
    return written


# -- human annotators alone ------------------------------------------------------------------------------


def render_annotators_by_group(
    by: AnnotatorsByGroup, style: Style, *, gold: str | None, level: float, suffix: str = ""
) -> tuple[str, str]:
    """One --by column of the annotators-only report: alpha and every pairwise kappa per group, with intervals."""
    col, level = by.column, level_text(level)
    first = next(iter(by.groups.values()))
    pairs, vs_gold = list(first.pairwise_kappa), list(first.kappa_vs_gold or {})
    rows = [
        [
            g,
            r.n_items,
            with_ci(r.krippendorff_alpha, r.krippendorff_alpha_ci, style),
            *(with_ci(v.kappa, v.ci, style, v.ci_reason or None) for v in (r.pairwise_kappa[p] for p in pairs)),
            *(with_ci(v.kappa, v.ci, style, v.ci_reason or None) for v in (r.kappa_vs_gold[a] for a in vs_gold)),
        ]
        for g, r in by.groups.items()
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            col,
            "items",
            f"alpha [{level} CI]",
            *(f"kappa {p}" for p in pairs),
            *(f"kappa {a} vs {gold}" for a in vs_gold),
        ],
    )
    caption = f"Agreement among annotators by {col} ({level} CI)."
    return f"\n## Annotator agreement by {col}\n\n{markdown(frame, index=False)}\n", style.latex(
        frame, caption=caption, label=f"tab:annotators-by-group{suffix}", index=False
    )


def render_annotator_agreement(
    result: AnnotatorAgreementResult | Mapping[str, Any], style: Style, *, title: str | None = None
) -> tuple[str, str]:
    """The annotators-only report's Markdown and LaTeX; ``title`` replaces the default one."""
    result = AnnotatorAgreementResult.from_dict(result)
    gold = result.gold_column
    rows = [
        [
            "Krippendorff's alpha (nominal), all annotators",
            style.fmt(result.krippendorff_alpha),
            style.fmt_ci(result.krippendorff_alpha_ci),
            result.n_items,
        ]
    ]
    rows += [
        [f"Cohen's kappa, {pair}", style.fmt(v.kappa), ci_text(v.ci, v.ci_reason or None, style), v.n]
        for pair, v in result.pairwise_kappa.items()
    ]
    rows += [
        [f"Cohen's kappa, {name} vs {gold}", style.fmt(v.kappa), ci_text(v.ci, v.ci_reason or None, style), v.n]
        for name, v in (result.kappa_vs_gold or {}).items()
    ]
    table = pd.DataFrame(rows, columns=["statistic", "value", f"{level_text(result.level)} CI", "items"])
    title = title or f"Agreement among annotators {', '.join(result.annotators)} (taxonomy {result.taxonomy})"
    cluster = result.cluster.column
    clustered = f"; clusters are the values of `{cluster}`" if cluster else ""
    how = f" ({result.cluster.how})" if result.cluster.how else ""
    md = f"# {title}\n\n{markdown(table, index=False)}\n\nIntervals: {result.bootstrap}{clustered}{how}.\n"
    tex = style.latex(table, caption=title + ".", label="tab:annotator-agreement", index=False)
    for position, by in enumerate(result.by_groups or [], start=1):
        by_md, by_tex = render_annotators_by_group(
            by, style, gold=gold, level=result.level, suffix="" if position == 1 else f"-{position}"
        )
        md, tex = md + by_md, tex + "\n" + by_tex
    return md, tex


def write_annotator_report(
    result: AnnotatorAgreementResult | Mapping[str, Any],
    out_dir: str | Path,
    *,
    style: Style,
    title: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """agreement.json (the result's ``to_dict()``), agreement.md and .tex of the annotators-only report."""
    result = AnnotatorAgreementResult.from_dict(result)
    out_dir = Path(out_dir)
    md, tex = render_annotator_agreement(result, style, title=title)
    written = [
        write_text(out_dir / "agreement.json", json_text(result.to_dict(), indent=2) + "\n", overwrite=overwrite)
    ]
    return written + write_tables(out_dir, "agreement", md, tex, overwrite=overwrite)
