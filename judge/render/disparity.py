"""The disparity report drawn from a DisparityResult (judge.analysis.disparity): Markdown and LaTeX tables
(``render_disparity``), figures (rates with intervals, splits by a second group column, stacked shares, a
heatmap, prediction-powered rates) and the report folder (``write_disparity_report``).

Every function takes the typed result, or the dict a ``disparity.json`` holds (read into the result), so a
report can be drawn again from its JSON.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from judge.analysis.disparity import RULE_SHORT, DisparityResult, Rate, TrainingRows
from judge.analysis.ppi import PPIResult
from judge.analysis.results import ABSENT, opt
from judge.core.files import json_text, write_text
from judge.render.tables import Style, heatmap, markdown, save_figures, wrap, write_tables

NOT_ESTIMABLE = "not estimable"


def as_disparity(result: DisparityResult | Mapping[str, Any]) -> DisparityResult:
    return DisparityResult.from_dict(result)


def _shown(entry) -> bool:
    """Whether an entry is estimable (one that does not say is)."""
    return entry.estimable is ABSENT or bool(entry.estimable)


# -- tables ------------------------------------------------------------------------------------------


def rate_cell(r: Rate, digits: int = 3) -> str:
    if not r.n:
        return "n/a"
    if not _shown(r):
        return NOT_ESTIMABLE
    return f"{r.rate:.{digits}f} [{r.ci_low:.{digits}f}, {r.ci_high:.{digits}f}]"


def rates_table(rates: dict[str, dict[str, Rate]], categories: list[str], *, digits: int = 3) -> pd.DataFrame:
    """Group x category table of 'rate [low, high]' strings ('not estimable' below the estimability rule)."""
    return pd.DataFrame({c: {g: rate_cell(r[c], digits) for g, r in rates.items()} for c in categories}).loc[
        list(rates)
    ]


def rate_matrix(rates: dict[str, dict[str, Rate]], categories: list[str]) -> np.ndarray:
    return np.array([[rates[g][c].rate for c in categories] for g in rates], dtype=float)


def _interval_name(result: DisparityResult) -> str:
    if result.clusters and result.clusters.column:
        return f"Wilson 95% CI clustered by {result.clusters.column} (effective sample size, t with G - 1 df)"
    return "Wilson 95% CI"


def _estimability_lines(not_estimable: dict, *, what: str) -> list[str]:
    if not not_estimable:
        return []
    listed = "; ".join(f"{g}: {why}" for g, why in not_estimable.items())
    return [f"\nNot estimable ({what}; {RULE_SHORT}): {listed}. Shown as 'not estimable', never dropped.\n"]


def chi_square_line(result: DisparityResult, style: Style) -> str:
    left_out = result.chi_square.groups_without_scored_outputs
    line = _chi_square_line(result, style)
    return line + (f" Left out of the test (no scored output): {', '.join(left_out)}." if left_out else "")


def _chi_square_line(result: DisparityResult, style: Style) -> str:
    chi = result.chi_square
    if chi.statistic is None:
        return "Chi-square test not computed (needs two groups and two observed categories)."
    pearson = (
        f"Pearson chi-square test of independence ({result.group_column} x category, categories with any count): "
        f"chi2 = {style.fmt(chi.statistic, 2)}, dof = {chi.dof}, p = {chi.p_value:.3g}; smallest expected count "
        f"{style.fmt(chi.min_expected, 1)}"
    )
    rs = chi.rao_scott
    if not rs:
        return pearson + "."
    column = result.clusters.column
    if rs.statistic is None:
        return (
            f"Rao-Scott test not computed (fewer than 2 clusters of {column}); {pearson}, "
            "as if outputs were independent."
        )
    return (
        f"Rao-Scott design-corrected test (second order, clusters: {column}, G = {rs.n_clusters}; mean design effect "
        f"{style.fmt(rs.mean_design_effect, 2)}): F = {style.fmt(rs.statistic, 2)} on ({style.fmt(rs.df_num, 1)}, "
        f"{style.fmt(rs.df_den, 1)}) df, "
        f"p = {rs.p_value:.3g}. {pearson}, as if outputs were independent."
    )


def _split_table(per_group: dict[str, dict[str, dict[str, Rate]]], cats: list[str], style: Style) -> pd.DataFrame:
    rows = {}
    for g, by_value in per_group.items():
        for v, rates in by_value.items():
            rows[f"{g} / {v}"] = {"n": rates[cats[0]].n, **{c: rate_cell(rates[c], style.digits) for c in cats}}
    return pd.DataFrame(rows).T


def render_disparity(result: DisparityResult | Mapping[str, Any], style: Style) -> tuple[str, str]:
    """The report's Markdown and LaTeX (disparity.md, disparity.tex)."""
    result = as_disparity(result)
    cats, ref = result.categories, result.reference
    table = rates_table(result.rates, cats, digits=style.digits)
    table.insert(0, "n", [result.rates[g][cats[0]].n for g in table.index])

    def ratio_cell(g, v):
        if g == ref:
            return "—"  # the reference against itself: no interval to report
        if not _shown(v):
            return NOT_ESTIMABLE
        return style.fmt(v.ratio) + (f" [{style.fmt(v.ci_low)}, {style.fmt(v.ci_high)}]" if v.ratio is not None else "")

    ratio = pd.DataFrame({c: {g: ratio_cell(g, v[c]) for g, v in result.rate_ratios.items()} for c in cats}).loc[
        list(result.rates)
    ]
    title = result.title or (
        f"Category rates by {result.group_column} ({result.label_source or 'label ' + result.label_column}, "
        f"taxonomy {result.taxonomy}, n = {result.n}, unscored {result.n_unscored}"
        + (f", escalated to people {result.n_escalated}" if result.n_escalated else "")
        + ")"
    )
    interval, ratios_note = _interval_name(result), result.rate_ratio_intervals.note
    clusters_note = result.clusters.note if result.clusters else None
    md = [f"# {title}\n", f"Rate [{interval}; marginal: each rate is its own question] among scored outputs.\n"]
    md += [f"Clustering: {clusters_note}.\n"] if clusters_note else []
    md += [
        markdown(table),
        *_estimability_lines(result.not_estimable or {}, what="labelled outputs"),
        "\n" + chi_square_line(result, style) + "\n",
        f"\n## Rate ratio vs {ref}\n",
        f"Reference group: {opt(result.reference_note, ref)}. Intervals: {ratios_note}.\n",
        markdown(ratio),
    ]
    missing = result.not_estimable or {}
    not_estimable_caption = f" Not estimable ({RULE_SHORT}): {', '.join(missing)}." if missing else ""
    tex = [
        style.latex(table, caption=title + f". Rate [{interval}].{not_estimable_caption}", label="tab:rates"),
        style.latex(ratio, caption=f"Rate ratio against {ref}: {ratios_note}.", label="tab:rate-ratios"),
    ]
    for col, per_group in result.splits.items():
        split = _split_table(per_group, cats, style)
        split.index.name = f"{result.group_column} / {col}"
        md += [f"\n## Split by {col}\n", markdown(split)]
        tex.append(
            style.latex(
                split, caption=f"Rates by {result.group_column} and {col} [{interval}].", label=f"tab:split-{col}"
            )
        )
    if result.training_rows:
        md_t, tex_t = render_training_rows(result.training_rows, cats, style, group_column=result.group_column)
        md += md_t
        tex += tex_t
    if result.ppi:
        ppi_md, ppi_tex = render_ppi(
            result.ppi, result.ppi.categories_seen(cats), style, group_column=result.group_column
        )
        md += ppi_md
        tex += ppi_tex
    return "\n".join(md) + "\n", "\n".join(tex)


def render_training_rows(
    training: TrainingRows, cats: list[str], style: Style, *, group_column: str
) -> tuple[list[str], list[str]]:
    head = f"\n## The judge's own training rows vs the rest\n\n{training.note}\n"
    if not training.n_training_rows:
        return [head], []
    split = _split_table(training.rates, cats, style)
    split.index.name = f"{group_column} / rows"
    return [head, markdown(split)], [
        style.latex(
            split,
            caption=f"Rates on the judge's training rows and on the rest, by {group_column}.",
            label="tab:training-rows",
        )
    ]


def _estimate(entry, value: str, style: Style, *, ci_key: str = "ci") -> str:
    number = opt(getattr(entry, value)) if entry else None
    if number is None:
        return "n/a"
    return f"{style.fmt(number)} {style.fmt_ci(opt(getattr(entry, ci_key)) or entry.ci)}"


def _notes(*entries: tuple[str, Any], key: str = "clipped") -> str:
    return "; ".join(f"{name}: {getattr(e, key)}" for name, e in entries if e and getattr(e, key)) or ""


def _p_cell(entry) -> str:
    if not entry:
        return "n/a"
    p = opt(entry.p_adjusted, opt(entry.p_value))
    return "n/a" if p is None else f"{p:.3g}"


def render_ppi(
    ppi: PPIResult | Mapping[str, Any], cats: list[str], style: Style, *, group_column: str
) -> tuple[list[str], list[str]]:
    """The prediction-powered rates and gaps: Markdown parts and LaTeX tables."""
    ppi = PPIResult.from_dict(ppi)
    rows = {}
    for g, by_cat in ppi.rates.items():
        for c in cats:
            r = by_cat[c]
            shown = r.estimable
            rows[(g, c)] = {
                "n human": r.n_human,
                "judge only": _estimate(r.judge_only, "rate", style),
                "human only (Hajek)": _estimate(r.human_only, "rate", style) if shown else NOT_ESTIMABLE,
                "PPI": _estimate(r.ppi, "rate", style) if shown else NOT_ESTIMABLE,
                "effective n": style.fmt(opt(r.effective_n), 0) if shown else "n/a",
                "note": "; ".join(
                    x for x in (_notes(("human only", r.human_only), ("PPI", r.ppi)), r.note or None) if x
                )
                if shown
                else (r.reason or ""),
            }
    rates = pd.DataFrame(rows).T
    rates.index.names = [group_column, "category"]
    rates = rates.reset_index()
    family = ppi.gap_intervals or None
    adjusted = bool(family and family.adjusted)
    ci_key = "ci_adjusted" if adjusted else "ci"
    gap_rows = {}
    for g, by_cat in ppi.gaps.items():
        for c in cats:
            r = by_cat[c]
            shown = r.estimable
            gap_rows[(g, c)] = {
                "judge only": _estimate(r.judge_only, "gap", style, ci_key=ci_key),
                "human only": _estimate(r.human_only, "gap", style, ci_key=ci_key) if shown else NOT_ESTIMABLE,
                "PPI": _estimate(r.ppi, "gap", style, ci_key=ci_key) if shown else NOT_ESTIMABLE,
                f"p (PPI{', Holm' if adjusted else ''})": _p_cell(r.ppi) if shown else "n/a",
                "effective n": style.fmt(opt(r.effective_n), 0) if shown else "n/a",
                "note": _notes(
                    ("judge only", r.judge_only),
                    ("human only", r.human_only),
                    ("PPI", r.ppi),
                    key="clipped_adjusted" if adjusted else "clipped",
                )
                if shown
                else (r.reason or ""),
            }
    gaps = pd.DataFrame(gap_rows).T
    if len(gaps):
        gaps.index.names = [group_column, "category"]
        gaps = gaps.reset_index()
    level = int(round(100 * (1 - ppi.alpha)))
    head = (
        f"{ppi.n_human} human labels ({ppi.human_source}) correct the judge's labels on {ppi.n_outputs} scored outputs "
        f"(lambda: {ppi.lam}). "
        + (f"Estimand: {ppi.estimand}. " if ppi.estimand else "")
        + (f"Judge: cross-fitted, {ppi.cross_fit.note}. " if ppi.cross_fit else "")
        + f"Sampling design: {ppi.design_note}. Clustering: {opt(ppi.cluster_note, 'none')}. "
        f"Training-set overlap: {ppi.training_overlap}."
    )
    if ppi.n_unscored:
        head += (
            f" {ppi.n_unscored} outputs the judge left unscored are outside every rate, as in the rates table"
            f" ({ppi.n_human_unscored} of them human-labelled, not used)."
        )
    intervals = opt(family.note) if family else None
    md = [
        f"\n## Prediction-powered rates ({level}% CI, marginal)\n",
        head + "\n",
        "judge only: the judge's labels taken as human ones (Wilson); human only: the human sample alone, the "
        "design-weighted mean of the group's labels (ratio or Hajek estimator sum(y/pi) / sum(1/pi), a proportion "
        "whatever the design; linearised variance, Korn-Graubard interval); "
        "PPI: the judge's rate over every output plus the design-weighted human correction "
        "(difference "
        "estimator, t quantiles). Estimates and intervals are clipped to [0, 1] (rates) and [-1, 1] (gaps), said in "
        "the note column. "
        "Effective n: human labels a human-only interval would need to be as narrow as PPI's.\n",
        f"Estimability: {ppi.estimability}.\n",
        markdown(rates, index=False),
        f"\n## Gap to {ppi.reference}\n",
        f"Intervals: {intervals or f'{level}% marginal'}.\n",
        markdown(gaps, index=False) if len(gaps) else "(one group only)",
    ]
    if ppi.not_estimable:
        md.append(
            f"\nNot estimable (too few human labels; {RULE_SHORT}): "
            f"{'; '.join(f'{g}: {why}' for g, why in ppi.not_estimable_reasons.items())}. Shown as 'not estimable', "
            "never dropped.\n"
        )
    missing = f" Not estimable ({RULE_SHORT}): {', '.join(ppi.not_estimable)}." if ppi.not_estimable else ""
    if ppi.estimand:  # a paper's table says what it estimates (the JSON and Markdown say it in full)
        missing = (
            " Estimand: the model's rate (prompts drawn anew)."
            if ppi.clustered
            else " Estimand: the rate among these outputs."
        ) + missing
    tex = [
        style.latex(
            rates,
            caption=f"Category rates by {group_column}: judge only, human only (Hajek) and prediction-powered "
            f"({level}% CI, marginal).{missing}",
            label="tab:ppi-rates",
            index=False,
        )
    ]
    if len(gaps):
        tex.append(
            style.latex(
                gaps,
                caption=f"Rate difference against {ppi.reference}: {intervals or f'{level}% marginal intervals'}.",
                label="tab:ppi-gaps",
                index=False,
            )
        )
    return md, tex


# -- figures -----------------------------------------------------------------------------------------


def group_tick(g: str, estimable: bool) -> str:
    """A group's tick label; a group below the estimability rule says so in every figure."""
    return wrap(g) + ("" if estimable else f"\n({NOT_ESTIMABLE})")


def ppi_figure(
    ppi: PPIResult | Mapping[str, Any],
    cats: list[str],
    *,
    group_column: str,
    title: str | None = None,
    judge: str | None = None,
    n: int | None = None,
):
    """One panel per category: each group's rate by the three methods, with intervals; a group below the
    estimability rule keeps its row, its human-only and PPI places marked not estimable. Groups run top
    to bottom in the rates figure's order, and every panel has one x range."""
    ppi = PPIResult.from_dict(ppi)
    groups = list(ppi.rates)
    methods = [
        ("judge_only", "judge only", "tab:gray"),
        ("human_only", "human only", "tab:orange"),
        ("ppi", "PPI", "tab:blue"),
    ]
    lines = max(group_tick(g, g not in ppi.not_estimable).count("\n") + 1 for g in groups)
    fig, axes = plt.subplots(
        1,
        len(cats),
        figsize=(3.2 * len(cats) + 1, group_height(lines) * len(groups) + 1.6),
        sharey=True,
        sharex=True,
        squeeze=False,
    )
    for ax, c in zip(axes[0], cats):
        for k, (key, name, colour) in enumerate(methods):
            ys, xs, lo, hi = [], [], [], []
            for i, g in enumerate(groups):
                r = ppi.rates[g][c]
                entry = getattr(r, key)
                if key != "judge_only" and not r.estimable:
                    ax.text(
                        0.01,
                        i + (k - 1) * 0.22,
                        f"{name}: {NOT_ESTIMABLE}",
                        fontsize=6,
                        va="center",
                        color=colour,
                        transform=ax.get_yaxis_transform(),
                    )
                elif entry and opt(entry.rate) is not None and entry.ci[0] is not None:
                    ys.append(i + (k - 1) * 0.22)
                    xs.append(entry.rate)
                    lo.append(max(0.0, entry.rate - entry.ci[0]))
                    hi.append(max(0.0, entry.ci[1] - entry.rate))
            ax.errorbar(xs, ys, xerr=[lo, hi], fmt="o", color=colour, label=name, capsize=2, markersize=4)
        ax.set_title(c)
        ax.set_yticks(
            range(len(groups)),
            labels=[group_tick(g, g not in ppi.not_estimable) for g in groups],
            fontsize=tick_size(len(groups)),
        )
        ax.set_ylim(len(groups) - 0.4, -0.6)  # the first group at the top, as in every other figure
        ax.set_xlabel("rate")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_ylabel(group_column)
    one_x_range(axes)
    axes[0][-1].legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    level = int(round(100 * (1 - ppi.alpha)))
    n_human = sum(ppi.rates[g][cats[0]].n_human or 0 for g in groups) if cats else 0
    whose = f"{judge or 'judge'}{f' (n = {n})' if n is not None else ''} corrected by {n_human} human labels"
    fig.suptitle(
        title or f"Rates by {group_column}: {whose}\njudge only vs human only vs PPI ({level}% CI)", fontsize=10
    )
    fig.tight_layout()
    return fig


def one_x_range(axes) -> None:
    """Every panel of a figure on one x range, from 0 to the largest interval end any of them shows."""
    shown = [ax for ax in np.ravel(axes) if ax.get_visible() and ax.has_data()]
    high = max([ax.dataLim.x1 for ax in shown if np.isfinite(ax.dataLim.x1)] or [1.0])
    for ax in shown:
        ax.set_xlim(0, min(1.0, high) * 1.04 if high > 0 else 1.0)


def group_height(lines: int) -> float:
    """Inches a group's row takes in a figure: room for its tick label's lines, no more."""
    return 0.06 + 0.13 * lines


def tick_size(n_groups: int) -> int:
    return 7 if n_groups > 20 else 8 if n_groups > 10 else 9


def shown_categories(rates: dict[str, dict[str, Rate]], categories: list[str]) -> list[str]:
    """Categories with at least one output in some group (the others are zero everywhere)."""
    return [c for c in categories if any(r[c].count for r in rates.values())] or categories[:1]


def _interval_panel(
    ax, rates: dict[str, dict[str, Rate]], groups: list[str], category: str, *, reference: str | None
) -> None:
    for i, g in enumerate(groups):
        r = rates[g][category]
        if r.rate is None:
            continue
        if not _shown(r):
            ax.text(
                0.01, i, NOT_ESTIMABLE, fontsize=7, va="center", color="tab:red", transform=ax.get_yaxis_transform()
            )
            continue
        err = [[max(0.0, r.rate - r.ci_low)], [max(0.0, r.ci_high - r.rate)]]
        ax.errorbar(
            [r.rate],
            [i],
            xerr=err,
            fmt="s" if g == reference else "o",
            color="black" if g == reference else "tab:blue",
            capsize=2,
            markersize=4,
        )
    ax.set_title(wrap(category, 24), fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.grid(axis="x", alpha=0.3)
    ax.set_yticks(
        range(len(groups)),
        labels=[group_tick(g, _shown(rates[g][category])) for g in groups],
        fontsize=tick_size(len(groups)),
    )
    ax.set_xlabel("rate (95% CI)", fontsize=8)


def _grid(n_panels: int, n_groups: int, *, max_cols: int = 3, line_height: int = 1):
    cols = min(n_panels, max_cols)
    rows = -(-n_panels // cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(3.3 * cols + 1.8, (group_height(line_height) * n_groups + 1.3) * rows),
        sharey=True,
        sharex=True,
        squeeze=False,
        layout="constrained",
    )  # one x range: panels compare at a glance
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def rate_interval_figure(result: DisparityResult | Mapping[str, Any]):
    """One panel per category: each group's rate with its Wilson 95% interval (the reference in black)."""
    result = as_disparity(result)
    groups, cats = list(result.rates), shown_categories(result.rates, result.categories)
    fig, axes = _grid(len(cats), len(groups), line_height=max(wrap(g).count("\n") + 1 for g in groups))
    for ax, c in zip(axes.flat, cats):
        _interval_panel(ax, result.rates, groups, c, reference=result.reference)
    one_x_range(axes)
    axes[0][0].invert_yaxis()
    for row in axes:
        row[0].set_ylabel(result.group_column)
    fig.suptitle(f"{figure_title(result)}\nreference (black square): {result.reference}", fontsize=10)
    return fig


def split_figure(result: DisparityResult | Mapping[str, Any], column: str):
    """One panel per category, as in the rates figure; each group's row holds one marker per value of the
    second --group (dodged, coloured by value), so the figure is as tall as the rates figure however many
    values there are."""
    result = as_disparity(result)
    per_group = result.splits[column]
    groups = list(per_group)
    values = sorted({v for by_value in per_group.values() for v in by_value}, key=str)
    cats = shown_categories(result.rates, result.categories)
    fig, axes = _grid(len(cats), len(groups), line_height=max(wrap(g).count("\n") + 1 for g in groups))
    colours = plt.get_cmap("tab10")
    offsets = np.linspace(-0.3, 0.3, len(values)) if len(values) > 1 else np.zeros(1)
    for ax, c in zip(axes.flat, cats):
        for k, v in enumerate(values):
            points = [
                (i + offsets[k], per_group[g][v][c])
                for i, g in enumerate(groups)
                if v in per_group[g] and per_group[g][v][c].rate is not None and _shown(per_group[g][v][c])
            ]
            ax.errorbar(
                [r.rate for _, r in points],
                [y for y, _ in points],
                fmt="o",
                markersize=3,
                capsize=1.5,
                color=colours(k % 10),
                xerr=[
                    [max(0.0, r.rate - r.ci_low) for _, r in points],
                    [max(0.0, r.ci_high - r.rate) for _, r in points],
                ],
                label=f"{column} = {v}",
            )
        ax.set_title(wrap(c, 24), fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.grid(axis="x", alpha=0.3)
        ax.set_yticks(range(len(groups)), labels=[wrap(g) for g in groups], fontsize=tick_size(len(groups)))
        ax.set_xlabel("rate (95% CI)", fontsize=8)
    one_x_range(axes)
    axes[0][0].invert_yaxis()
    for row in axes:
        row[0].set_ylabel(result.group_column)
    axes.flat[len(cats) - 1].legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"{figure_title(result)}\nsplit by {column}: one marker per value (not estimable: no marker)", fontsize=10
    )
    return fig


def figure_title(result: DisparityResult) -> str:
    return (
        result.title or f"Rates by {result.group_column}: {result.label_source or result.label_column} (n = {result.n})"
    )


def stacked_bars(result: DisparityResult | Mapping[str, Any]):
    """Each group's outputs split into categories; horizontal bars when there are many groups."""
    result = as_disparity(result)
    cats = result.categories
    groups = list(result.rates)
    matrix = rate_matrix(result.rates, cats)
    horizontal = len(groups) > 8 or max(len(str(g)) for g in groups) > 12
    labels = [
        wrap(g, 28 if horizontal else 14) + ("" if g not in (result.not_estimable or {}) else f"\n({NOT_ESTIMABLE})")
        for g in groups
    ]
    lines = max(label.count("\n") + 1 for label in labels)
    size = (
        (8.5, (0.2 + 0.12 * lines) * len(groups) + 1.8)
        if horizontal
        else (max(5, 0.9 * len(groups) + 3), 4 + 0.2 * lines)
    )
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    start = np.zeros(len(groups))
    colours = plt.get_cmap("tab10")
    for j, cat in enumerate(cats):
        share = np.nan_to_num(matrix[:, j])
        if horizontal:
            ax.barh(labels, share, left=start, label=cat, color=colours(j % 10))
        else:
            ax.bar(labels, share, bottom=start, label=cat, color=colours(j % 10))
        start += share
    if horizontal:
        ax.set_xlabel("share of outputs")
        ax.set_ylabel(result.group_column)
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
    else:
        ax.set_ylabel("share of outputs")
        ax.set_xlabel(result.group_column)
        ax.set_ylim(0, 1)
    ax.set_title(figure_title(result), fontsize=10)
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    return fig


def rates_heatmap(result: DisparityResult | Mapping[str, Any]):
    """Group x category shares on a neutral sequential scale: a high rate of compliance is not a danger to paint red."""
    result = as_disparity(result)
    not_estimable = result.not_estimable or {}
    return heatmap(
        rate_matrix(result.rates, result.categories),
        rows=[group_tick(g, g not in not_estimable).replace("\n", " ") for g in result.rates],
        columns=result.categories,
        title=figure_title(result),
        xlabel="category",
        ylabel=result.group_column,
        cmap="Blues",
        vmax=1.0,
    )


def write_disparity_report(
    result: DisparityResult | Mapping[str, Any], out_dir: str | Path, *, style: Style, overwrite: bool = False
) -> list[Path]:
    """disparity.json (the result's ``to_dict()``), disparity.md and .tex, and the figures as PNG and PDF."""
    result = as_disparity(result)
    out_dir = Path(out_dir)
    md, tex = render_disparity(result, style)
    written = [
        write_text(out_dir / "disparity.json", json_text(result.to_dict(), indent=2) + "\n", overwrite=overwrite)
    ]
    written += write_tables(out_dir, "disparity", md, tex, overwrite=overwrite)
    written += save_figures(rate_interval_figure(result), out_dir / "rates", overwrite=overwrite)
    for column in result.splits:
        written += save_figures(
            split_figure(result, column),
            out_dir / f"rates_by_{re.sub(r'[^A-Za-z0-9]+', '_', column).strip('_') or 'group'}",
            overwrite=overwrite,
        )
    written += save_figures(stacked_bars(result), out_dir / "rates_stacked", overwrite=overwrite)
    written += save_figures(rates_heatmap(result), out_dir / "rates_heatmap", overwrite=overwrite)
    if result.ppi:
        cats = result.ppi.categories_seen(result.categories)
        written += save_figures(
            ppi_figure(
                result.ppi,
                cats,
                group_column=result.group_column,
                title=result.title or None,
                judge=result.label_source or result.label_column,
                n=result.n,
            ),
            out_dir / "ppi_rates",
            overwrite=overwrite,
        )
    return written
