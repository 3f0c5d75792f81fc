"""Per-group disparity report (the quality-of-service view).

Examples:
    python -m judge.report records.jsonl --label label --group identity --reference white --out runs/report
    python -m judge.report labelled.jsonl --label label --group identity --group common \\
        --taxonomy chehbouni2024 --out runs/report

For each value of the first --group column: the rate of every category with Wilson 95% intervals
and counts, a chi-square test of independence between group and category, the rate ratio of every
group against --reference (default: the largest group), and a split by each further --group column.
Writes OUT/disparity.json, disparity.md, disparity.tex (booktabs, escaped, \\label{tab:PREFIX:...}
with PREFIX from --out or --tex-label; --digits decimals), figures as PNG and PDF (rates: each group's
rate with its interval, one panel per category; rates_by_COL: the same panels with one marker per value
of a second --group; rates_stacked; rates_heatmap; ppi_rates; every figure one group order, one x range,
at most a page's size) and manifest.json. Titles say whose labels they are
(the judge in the labelled file's manifest, or the column); --title replaces them.

Coded labels and other column names:
    python -m judge.report labelled.csv --label judge_label --group model --label-map '1=answer,2=refusal' \
        --taxonomy chehbouni2024 --id-column qid --title "Refusals by model" --digits 2 --out runs/report-coded

Judge labels corrected by human labels (prediction-powered inference, PPI++):
    python -m judge.report labelled.jsonl --label judge_label --group identity --reference white \
        --human runs/study/human_sample.csv --taxonomy chehbouni2024 --out runs/report-ppi

--human names a file of human labels (matched by id; its --human-label column, default label) or a
column of the labelled file that is filled on a sample. The report then gives, per group and
category, the judge-only rate, the human-only rate on the subset and the PPI rate (all 95%), each
group's gap to the reference by all three, and the effective number of human labels PPI is worth;
ppi_rates.png shows them side by side. The estimator follows the sampling design (judge.stats.ppi): a
sample's inclusion_probability column (judge.data sample, judge.annotate export; --inclusion-column
names another) makes it an unequal-probability sample, weighted by the inverse probabilities, and
--strata COL says it was stratified by COL; without probabilities each group's labelled outputs are
taken as a simple random sample of it. Outputs the judge left unscored are outside every rate, here
as in the rates table, and counted. The human labels must not be ones the judge was trained on: the
judge directory's training_ids.json (found through the labelled file's manifest, or --judge-dir) is
checked; labelled outputs among those ids are split out of the rates with a warning.

Small groups, clustered outputs, many comparisons (issue 19):
    python -m judge.report labelled.jsonl --label judge_label --group name --human sample.csv \
        --cluster template --reference John --out runs/report-names

A rate needs at least 5 labels from at least 5 clusters (judge.stats.estimability); a group below that is
shown as not estimable everywhere, with a warning. Outputs are clustered by the prompt when it repeats
(--cluster COL for another column, --no-cluster for none): cluster-robust intervals with t on G - 1
df, a Rao-Scott test, clustered PPI variances. Estimates and intervals are clipped to [0, 1] (gaps to
[-1, 1]), said in a note. Tables of more than 5 comparisons get Bonferroni simultaneous intervals and
Holm p-values (--no-adjust for marginal ones).
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from judge.core.config import (
    LABEL_MAP,
    TAXONOMY_HELP,
    RecordColumns,
    ReportStyle,
    check_label_map,
    check_unique,
    parser_for,
    run_command,
)
from judge.core.errors import UserError, clip, short_list
from judge.core.files import check_output_directory, json_text, write_text
from judge.core.manifest import RunManifest, label_source
from judge.core.outputs import claim_for, staged_directory
from judge.core.records import read_records, require_columns
from judge.core.taxonomy import Taxonomy, parse_label_map, resolve_taxonomy
from judge.render.tables import Style, heatmap, markdown, save_figures, style_of, wrap, write_tables
from judge.stats.disparity import canonical_labels, disparity, rate_cell, rate_matrix, rates_table
from judge.stats.estimability import MIN_CLUSTERS, MIN_LABELS

RULE_SHORT = f"rule: at least {MIN_LABELS} labels, from at least {MIN_CLUSTERS} clusters when clustered"


@dataclass
class Config(RecordColumns, ReportStyle):
    input: str | list[str] = field(metadata={"positional": True, "nargs": "*", "help": "labelled records (JSONL, JSON list, CSV or Parquet); "
                                             "several files (one per model, say) become one table with a source column, each file's manifest "
                                             "still naming its judge"})
    label: str = field(metadata={"help": "label column to report on (human or judge)"})
    out: str = field(metadata={"help": "output directory"})
    group: list[str] = field(default_factory=list, metadata={"action": "append", "metavar": "COL",
                                                             "help": "group column; repeat to split the first by further columns"})
    group_names: str | None = field(default=None, metadata={"metavar": "OLD=NEW,...", "help": "names the tables and figures show for groups, "
                                                            "e.g. 'xstest_v2_completions_gpt4=GPT-4,...'; auto: drop the words every group's "
                                                            "name shares (file stems of several inputs)"})
    reference: str | None = field(default=None, metadata={"help": "reference group for rate ratios (default: the largest group)"})
    taxonomy: str | None = field(default=None, metadata={"help": TAXONOMY_HELP})
    coarse: bool = field(default=False, metadata={"help": "report coarse parent categories"})
    human: str | None = field(default=None, metadata={"metavar": "FILE_OR_COLUMN", "help": "human labels for a random or stratified subset "
                                                      "of the outputs (a file joined on id, or a column of the input): adds prediction-powered "
                                                      "rates and gaps"})
    human_label: str = field(default="label", metadata={"metavar": "COL", "help": "with --human FILE: its column of human labels"})
    inclusion_column: str | None = field(default=None, metadata={
        "metavar": "COL", "help": "column (of the --human file, or of the input with --human COLUMN) of each human-labelled output's "
        "inclusion probability; its inverse weights the sample (default: inclusion_probability, written by judge.data sample and "
        "judge.annotate export; absent: a simple random sample)"})
    strata: list[str] = field(default_factory=list, metadata={
        "action": "append", "metavar": "COL", "help": "with --human: column of the input the human sample was stratified by (repeat for "
        "several): stratified variance with a finite-population correction; default: independent inclusion"})
    judge_dir: str | None = field(default=None, metadata={
        "help": "with --human: the judge directory whose training ids are checked: human labels among them are refused, labelled outputs "
        "among them split out with a warning (default: the one named in the labelled file's manifest, which is also checked without --human)"})
    ppi_lambda: str = field(default="1", metadata={
        "metavar": "L", "help": "PPI's lambda: 1 (plain PPI: covered >= 0.95 under four sampling designs in benchmarks/ppi_coverage.py), "
        "'tuned' (power tuning on the design variance; 0.90 under the unequal-probability design there; for a few hundred labels a group), "
        "or any value in [0, 1]"})
    cluster: str | None = field(default=None, metadata={
        "metavar": "COL", "help": "column whose outputs are correlated draws (a prompt's samples, a template's names): cluster-robust "
        "intervals, Rao-Scott test and PPI variance, t with G - 1 df (default: prompt_id or prompt when it repeats)"})
    no_cluster: bool = field(default=False, metadata={"help": "treat every output as an independent draw (no clustering)"})
    no_adjust: bool = field(default=False, metadata={"help": "marginal intervals and raw p-values even in tables of more than 5 comparisons "
                                                     "(default there: Bonferroni simultaneous intervals, Holm-adjusted p-values)"})
    label_map: str | None = field(default=None, metadata=LABEL_MAP)
    overwrite: bool = field(default=False, metadata={"help": "replace existing report files"})

    def __post_init__(self):
        self.input = [self.input] if isinstance(self.input, str) else list(self.input)
        if not self.input:
            raise UserError("give the labelled records file(s) to report on")
        ppi_lambda(self.ppi_lambda)
        check_label_map(self)
        check_unique(self, "group")
        self.check_style()
        if self.human is None and self.judge_dir is not None:
            raise UserError("--judge-dir is only used with --human (it checks the human labels against the judge's training ids; "
                            "the labelled rows are checked against the judge in the file's manifest)")
        if self.cluster is not None and self.no_cluster:
            raise UserError(f"--cluster {self.cluster} and --no-cluster contradict each other; keep one "
                            "(--no-cluster treats every output as an independent draw)")
        ppi_only = [flag for flag, value in (("--inclusion-column", self.inclusion_column), ("--strata", self.strata)) if value]
        if self.human is None and ppi_only:
            raise UserError(f"{', '.join(ppi_only)} describe the human sample and are only used with --human; add --human FILE_OR_COLUMN or drop them")


def prepare(records: pd.DataFrame, *, label: str, taxonomy: str | Taxonomy | None, coarse: bool,
            label_map: dict[str, str] | None = None) -> tuple[pd.DataFrame, Taxonomy]:
    """Resolve the taxonomy (reading ``label_map``'s codes) and, with ``coarse``, map labels to their parents."""
    require_columns(records, [label], source="records", flag_hint="Fix --label.")
    fine = resolve_taxonomy(taxonomy, [x for x in records[label] if isinstance(x, str) and x.strip()], label_map=label_map)
    if not coarse:
        return records, fine
    records = records.copy()
    records[label] = [x if x == "unscored" else fine.parent_of(x) for x in canonical_labels(records[label], fine, column=label)]
    return records, fine.coarse()


def _interval_name(result: dict) -> str:
    clusters = result.get("clusters") or {}
    if clusters.get("column"):
        return f"Wilson 95% CI clustered by {clusters['column']} (effective sample size, t with G - 1 df)"
    return "Wilson 95% CI"


def _estimability_lines(not_estimable: dict, *, what: str) -> list[str]:
    if not not_estimable:
        return []
    listed = "; ".join(f"{g}: {why}" for g, why in not_estimable.items())
    return [f"\nNot estimable ({what}; {RULE_SHORT}): {listed}. Shown as 'not estimable', never dropped.\n"]


def chi_square_line(result: dict, style: Style) -> str:
    left_out = result["chi_square"].get("groups_without_scored_outputs")
    line = _chi_square_line(result, style)
    return line + (f" Left out of the test (no scored output): {', '.join(left_out)}." if left_out else "")


def _chi_square_line(result: dict, style: Style) -> str:
    chi = result["chi_square"]
    if chi["statistic"] is None:
        return "Chi-square test not computed (needs two groups and two observed categories)."
    pearson = (f"Pearson chi-square test of independence ({result['group_column']} x category, categories with any count): "
               f"chi2 = {style.fmt(chi['statistic'], 2)}, dof = {chi['dof']}, p = {chi['p_value']:.3g}; smallest expected count {style.fmt(chi['min_expected'], 1)}")
    rs = chi.get("rao_scott")
    if not rs:
        return pearson + "."
    column = result["clusters"]["column"]
    if rs["statistic"] is None:
        return f"Rao-Scott test not computed (fewer than 2 clusters of {column}); {pearson}, as if outputs were independent."
    return (f"Rao-Scott design-corrected test (second order, clusters: {column}, G = {rs['n_clusters']}; mean design effect "
            f"{style.fmt(rs['mean_design_effect'], 2)}): F = {style.fmt(rs['statistic'], 2)} on ({style.fmt(rs['df_num'], 1)}, {style.fmt(rs['df_den'], 1)}) df, "
            f"p = {rs['p_value']:.3g}. {pearson}, as if outputs were independent.")


def _split_table(per_group: dict, cats: list[str], style: Style) -> pd.DataFrame:
    rows = {}
    for g, by_value in per_group.items():
        for v, rates in by_value.items():
            rows[f"{g} / {v}"] = {"n": rates[cats[0]]["n"], **{c: rate_cell(rates[c], style.digits) for c in cats}}
    return pd.DataFrame(rows).T


def render(result: dict, style: Style) -> tuple[str, str]:
    cats, ref = result["categories"], result["reference"]
    table = rates_table(result["rates"], cats, digits=style.digits)
    table.insert(0, "n", [result["rates"][g][cats[0]]["n"] for g in table.index])
    def ratio_cell(g, v):
        if g == ref:
            return "—"  # the reference against itself: no interval to report
        if not v.get("estimable", True):
            return "not estimable"
        return style.fmt(v["ratio"]) + (f" [{style.fmt(v['ci_low'])}, {style.fmt(v['ci_high'])}]" if v["ratio"] is not None else "")

    ratio = pd.DataFrame({c: {g: ratio_cell(g, v[c]) for g, v in result["rate_ratios"].items()} for c in cats}).loc[list(result["rates"])]
    title = result.get("title") or (f"Category rates by {result['group_column']} ({result.get('label_source') or 'label ' + result['label_column']}, "
                                    f"taxonomy {result['taxonomy']}, n = {result['n']}, unscored {result['n_unscored']})")
    interval, ratios_note = _interval_name(result), result["rate_ratio_intervals"]["note"]
    clusters_note = (result.get("clusters") or {}).get("note")
    md = [f"# {title}\n", f"Rate [{interval}; marginal: each rate is its own question] among scored outputs.\n"]
    md += [f"Clustering: {clusters_note}.\n"] if clusters_note else []
    md += [markdown(table), *_estimability_lines(result.get("not_estimable") or {}, what="labelled outputs"), "\n" + chi_square_line(result, style) + "\n",
           f"\n## Rate ratio vs {ref}\n", f"Reference group: {result.get('reference_note', ref)}. Intervals: {ratios_note}.\n", markdown(ratio)]
    missing = result.get("not_estimable") or {}
    not_estimable_caption = f" Not estimable ({RULE_SHORT}): {', '.join(missing)}." if missing else ""
    tex = [style.latex(table, caption=title + f". Rate [{interval}].{not_estimable_caption}", label="tab:rates"),
           style.latex(ratio, caption=f"Rate ratio against {ref}: {ratios_note}.", label="tab:rate-ratios")]
    for col, per_group in result["splits"].items():
        split = _split_table(per_group, cats, style)
        split.index.name = f"{result['group_column']} / {col}"
        md += [f"\n## Split by {col}\n", markdown(split)]
        tex.append(style.latex(split, caption=f"Rates by {result['group_column']} and {col} [{interval}].", label=f"tab:split-{col}"))
    if result.get("training_rows"):
        md_t, tex_t = render_training_rows(result["training_rows"], cats, style, group_column=result["group_column"])
        md += md_t
        tex += tex_t
    if "ppi" in result:
        ppi_md, ppi_tex = render_ppi(result["ppi"], ppi_categories(result["ppi"], cats), style, group_column=result["group_column"])
        md += ppi_md
        tex += ppi_tex
    return "\n".join(md) + "\n", "\n".join(tex)


def render_training_rows(training: dict, cats: list[str], style: Style, *, group_column: str) -> tuple[list[str], list[str]]:
    head = f"\n## The judge's own training rows vs the rest\n\n{training['note']}\n"
    if not training["n_training_rows"]:
        return [head], []
    split = _split_table(training["rates"], cats, style)
    split.index.name = f"{group_column} / rows"
    return [head, markdown(split)], [style.latex(split, caption=f"Rates on the judge's training rows and on the rest, by {group_column}.", label="tab:training-rows")]


def ppi_categories(ppi: dict, categories: list[str]) -> list[str]:
    """Categories that occur in the human or the judge labels (the others are zero by all three methods)."""
    def seen(c):
        return any((r[c].get("human_only") or {}).get("rate") or r[c]["judge_only"]["rate"] for r in ppi["rates"].values())
    return [c for c in categories if seen(c)]


def _estimate(entry: dict | None, key: str, style: Style, *, ci_key: str = "ci") -> str:
    if not entry or entry.get(key) is None:
        return "n/a"
    return f"{style.fmt(entry[key])} {style.fmt_ci(entry.get(ci_key) or entry['ci'])}"


def _notes(*entries: tuple[str, dict | None], key: str = "clipped") -> str:
    return "; ".join(f"{name}: {e[key]}" for name, e in entries if e and e.get(key)) or ""


def _p_cell(entry: dict | None) -> str:
    p = (entry or {}).get("p_adjusted", (entry or {}).get("p_value"))
    return "n/a" if p is None else f"{p:.3g}"


def render_ppi(ppi: dict, cats: list[str], style: Style, *, group_column: str) -> tuple[list[str], list[str]]:
    rows = {}
    for g, by_cat in ppi["rates"].items():
        for c in cats:
            r = by_cat[c]
            shown = r["estimable"]
            rows[(g, c)] = {
                "n human": r["n_human"],
                "judge only": _estimate(r["judge_only"], "rate", style),
                "human only": _estimate(r.get("human_only"), "rate", style) if shown else "not estimable",
                "PPI": _estimate(r.get("ppi"), "rate", style) if shown else "not estimable",
                "effective n": style.fmt(r.get("effective_n"), 0) if shown else "n/a",
                "note": "; ".join(x for x in (_notes(("human only", r.get("human_only")), ("PPI", r.get("ppi"))), r.get("note")) if x)
                if shown else r.get("reason", ""),
            }
    rates = pd.DataFrame(rows).T
    rates.index.names = [group_column, "category"]
    rates = rates.reset_index()
    family = ppi.get("gap_intervals") or {}
    ci_key = "ci_adjusted" if family.get("adjusted") else "ci"
    gap_rows = {}
    for g, by_cat in ppi["gaps"].items():
        for c in cats:
            r = by_cat[c]
            shown = r["estimable"]
            gap_rows[(g, c)] = {
                "judge only": _estimate(r["judge_only"], "gap", style, ci_key=ci_key),
                "human only": _estimate(r.get("human_only"), "gap", style, ci_key=ci_key) if shown else "not estimable",
                "PPI": _estimate(r.get("ppi"), "gap", style, ci_key=ci_key) if shown else "not estimable",
                f"p (PPI{', Holm' if family.get('adjusted') else ''})": _p_cell(r.get("ppi")) if shown else "n/a",
                "effective n": style.fmt(r.get("effective_n"), 0) if shown else "n/a",
                "note": _notes(("judge only", r["judge_only"]), ("human only", r.get("human_only")), ("PPI", r.get("ppi")),
                               key="clipped_adjusted" if family.get("adjusted") else "clipped") if shown else r.get("reason", ""),
            }
    gaps = pd.DataFrame(gap_rows).T
    if len(gaps):
        gaps.index.names = [group_column, "category"]
        gaps = gaps.reset_index()
    level = int(round(100 * (1 - ppi["alpha"])))
    head = (f"{ppi['n_human']} human labels ({ppi['human_source']}) correct the judge's labels on {ppi['n_outputs']} scored outputs (lambda: {ppi['lambda']}). "
            f"Sampling design: {ppi['design_note']}. Clustering: {ppi.get('cluster_note', 'none')}. Training-set overlap: {ppi['training_overlap']}.")
    if ppi["n_unscored"]:
        head += (f" {ppi['n_unscored']} outputs the judge left unscored are outside every rate, as in the rates table"
                 f" ({ppi['n_human_unscored']} of them human-labelled, not used).")
    md = [f"\n## Prediction-powered rates ({level}% CI, marginal)\n", head + "\n",
          "judge only: the judge's labels taken as human ones (Wilson); human only: the human sample alone, weighted by the design "
          "(Korn-Graubard interval); PPI: the judge's rate over every output plus the design-weighted human correction (difference "
          "estimator, t quantiles). Estimates and intervals are clipped to [0, 1] (rates) and [-1, 1] (gaps), said in the note column. "
          "Effective n: human labels a human-only interval would need to be as narrow as PPI's.\n",
          f"Estimability: {ppi['estimability']}.\n",
          markdown(rates, index=False), f"\n## Gap to {ppi['reference']}\n", f"Intervals: {family.get('note', f'{level}% marginal')}.\n",
          markdown(gaps, index=False) if len(gaps) else "(one group only)"]
    if ppi["not_estimable"]:
        md.append(f"\nNot estimable (too few human labels; {RULE_SHORT}): "
                  f"{'; '.join(f'{g}: {why}' for g, why in ppi['not_estimable_reasons'].items())}. Shown as 'not estimable', never dropped.\n")
    missing = f" Not estimable ({RULE_SHORT}): {', '.join(ppi['not_estimable'])}." if ppi["not_estimable"] else ""
    tex = [style.latex(rates, caption=f"Category rates by {group_column}: judge only, human only and prediction-powered ({level}% CI, marginal).{missing}",
                 label="tab:ppi-rates", index=False)]
    if len(gaps):
        tex.append(style.latex(gaps, caption=f"Rate difference against {ppi['reference']}: {family.get('note', f'{level}% marginal intervals')}.", label="tab:ppi-gaps", index=False))
    return md, tex


NOT_ESTIMABLE = "not estimable"


def group_tick(g: str, estimable: bool) -> str:
    """A group's tick label; a group below the estimability rule says so in every figure."""
    return wrap(g) + ("" if estimable else f"\n({NOT_ESTIMABLE})")


def ppi_figure(ppi: dict, cats: list[str], *, group_column: str, title: str | None = None, judge: str | None = None, n: int | None = None):
    """One panel per category: each group's rate by the three methods, with intervals; a group below the
    estimability rule keeps its row, its human-only and PPI places marked not estimable. Groups run top
    to bottom in the rates figure's order, and every panel has one x range."""
    groups = list(ppi["rates"])
    methods = [("judge_only", "judge only", "tab:gray"), ("human_only", "human only", "tab:orange"), ("ppi", "PPI", "tab:blue")]
    lines = max(group_tick(g, g not in ppi["not_estimable"]).count("\n") + 1 for g in groups)
    fig, axes = plt.subplots(1, len(cats), figsize=(3.2 * len(cats) + 1, group_height(lines) * len(groups) + 1.6), sharey=True, sharex=True,
                             squeeze=False)
    for ax, c in zip(axes[0], cats):
        for k, (key, name, colour) in enumerate(methods):
            ys, xs, lo, hi = [], [], [], []
            for i, g in enumerate(groups):
                r = ppi["rates"][g][c]
                entry = r.get(key)
                if key != "judge_only" and not r["estimable"]:
                    ax.text(0.01, i + (k - 1) * 0.22, f"{name}: {NOT_ESTIMABLE}", fontsize=6, va="center", color=colour,
                            transform=ax.get_yaxis_transform())
                elif entry and entry.get("rate") is not None and entry["ci"][0] is not None:
                    ys.append(i + (k - 1) * 0.22)
                    xs.append(entry["rate"])
                    lo.append(max(0.0, entry["rate"] - entry["ci"][0]))
                    hi.append(max(0.0, entry["ci"][1] - entry["rate"]))
            ax.errorbar(xs, ys, xerr=[lo, hi], fmt="o", color=colour, label=name, capsize=2, markersize=4)
        ax.set_title(c)
        ax.set_yticks(range(len(groups)), labels=[group_tick(g, g not in ppi["not_estimable"]) for g in groups], fontsize=tick_size(len(groups)))
        ax.set_ylim(len(groups) - 0.4, -0.6)  # the first group at the top, as in every other figure
        ax.set_xlabel("rate")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_ylabel(group_column)
    one_x_range(axes)
    axes[0][-1].legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    level = int(round(100 * (1 - ppi["alpha"])))
    n_human = sum(ppi["rates"][g][cats[0]].get("n_human") or 0 for g in groups) if cats else 0
    whose = f"{judge or 'judge'}{f' (n = {n})' if n is not None else ''} corrected by {n_human} human labels"
    fig.suptitle(title or f"Rates by {group_column}: {whose}\njudge only vs human only vs PPI ({level}% CI)", fontsize=10)
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


def shown_categories(rates: dict, categories: list[str]) -> list[str]:
    """Categories with at least one output in some group (the others are zero everywhere)."""
    return [c for c in categories if any(r[c]["count"] for r in rates.values())] or categories[:1]


def _interval_panel(ax, rates: dict, groups: list[str], category: str, *, reference: str | None) -> None:
    for i, g in enumerate(groups):
        r = rates[g][category]
        if r["rate"] is None:
            continue
        if not r.get("estimable", True):
            ax.text(0.01, i, NOT_ESTIMABLE, fontsize=7, va="center", color="tab:red", transform=ax.get_yaxis_transform())
            continue
        err = [[max(0.0, r["rate"] - r["ci_low"])], [max(0.0, r["ci_high"] - r["rate"])]]
        ax.errorbar([r["rate"]], [i], xerr=err, fmt="s" if g == reference else "o", color="black" if g == reference else "tab:blue",
                    capsize=2, markersize=4)
    ax.set_title(wrap(category, 24), fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.grid(axis="x", alpha=0.3)
    ax.set_yticks(range(len(groups)), labels=[group_tick(g, rates[g][category].get("estimable", True)) for g in groups],
                  fontsize=tick_size(len(groups)))
    ax.set_xlabel("rate (95% CI)", fontsize=8)


def _grid(n_panels: int, n_groups: int, *, max_cols: int = 3, line_height: int = 1):
    cols = min(n_panels, max_cols)
    rows = -(-n_panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols + 1.8, (group_height(line_height) * n_groups + 1.3) * rows), sharey=True,
                             sharex=True, squeeze=False, layout="constrained")  # one x range: panels compare at a glance
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, axes


def rate_interval_figure(result: dict):
    """One panel per category: each group's rate with its Wilson 95% interval (the reference in black)."""
    groups, cats = list(result["rates"]), shown_categories(result["rates"], result["categories"])
    fig, axes = _grid(len(cats), len(groups), line_height=max(wrap(g).count("\n") + 1 for g in groups))
    for ax, c in zip(axes.flat, cats):
        _interval_panel(ax, result["rates"], groups, c, reference=result["reference"])
    one_x_range(axes)
    axes[0][0].invert_yaxis()
    for row in axes:
        row[0].set_ylabel(result["group_column"])
    fig.suptitle(f"{figure_title(result)}\nreference (black square): {result['reference']}", fontsize=10)
    return fig


def split_figure(result: dict, column: str):
    """One panel per category, as in the rates figure; each group's row holds one marker per value of the
    second --group (dodged, coloured by value), so the figure is as tall as the rates figure however many
    values there are."""
    per_group = result["splits"][column]
    groups = list(per_group)
    values = sorted({v for by_value in per_group.values() for v in by_value}, key=str)
    cats = shown_categories(result["rates"], result["categories"])
    fig, axes = _grid(len(cats), len(groups), line_height=max(wrap(g).count("\n") + 1 for g in groups))
    colours = plt.get_cmap("tab10")
    offsets = np.linspace(-0.3, 0.3, len(values)) if len(values) > 1 else np.zeros(1)
    for ax, c in zip(axes.flat, cats):
        for k, v in enumerate(values):
            points = [(i + offsets[k], per_group[g][v][c]) for i, g in enumerate(groups) if v in per_group[g] and per_group[g][v][c].get("rate") is not None
                      and per_group[g][v][c].get("estimable", True)]
            ax.errorbar([r["rate"] for _, r in points], [y for y, _ in points], fmt="o", markersize=3, capsize=1.5, color=colours(k % 10),
                        xerr=[[max(0.0, r["rate"] - r["ci_low"]) for _, r in points], [max(0.0, r["ci_high"] - r["rate"]) for _, r in points]],
                        label=f"{column} = {v}")
        ax.set_title(wrap(c, 24), fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.grid(axis="x", alpha=0.3)
        ax.set_yticks(range(len(groups)), labels=[wrap(g) for g in groups], fontsize=tick_size(len(groups)))
        ax.set_xlabel("rate (95% CI)", fontsize=8)
    one_x_range(axes)
    axes[0][0].invert_yaxis()
    for row in axes:
        row[0].set_ylabel(result["group_column"])
    axes.flat[len(cats) - 1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{figure_title(result)}\nsplit by {column}: one marker per value (not estimable: no marker)", fontsize=10)
    return fig


def figure_title(result: dict) -> str:
    return result.get("title") or f"Rates by {result['group_column']}: {result.get('label_source') or result['label_column']} (n = {result['n']})"


def stacked_bars(result: dict):
    """Each group's outputs split into categories; horizontal bars when there are many groups."""
    cats = result["categories"]
    groups = list(result["rates"])
    matrix = rate_matrix(result["rates"], cats)
    horizontal = len(groups) > 8 or max(len(str(g)) for g in groups) > 12
    labels = [wrap(g, 28 if horizontal else 14) + ("" if g not in result.get("not_estimable", {}) else f"\n({NOT_ESTIMABLE})") for g in groups]
    lines = max(label.count("\n") + 1 for label in labels)
    size = (8.5, (0.2 + 0.12 * lines) * len(groups) + 1.8) if horizontal else (max(5, 0.9 * len(groups) + 3), 4 + 0.2 * lines)
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
        ax.set_ylabel(result["group_column"])
        ax.set_xlim(0, 1)
        ax.invert_yaxis()
    else:
        ax.set_ylabel("share of outputs")
        ax.set_xlabel(result["group_column"])
        ax.set_ylim(0, 1)
    ax.set_title(figure_title(result), fontsize=10)
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    return fig


def write_disparity_report(result: dict, out_dir: str | Path, *, style: Style, overwrite: bool = False) -> list[Path]:
    out_dir = Path(out_dir)
    md, tex = render(result, style)
    written = [write_text(out_dir / "disparity.json", json_text(result, indent=2) + "\n", overwrite=overwrite)]
    written += write_tables(out_dir, "disparity", md, tex, overwrite=overwrite)
    written += save_figures(rate_interval_figure(result), out_dir / "rates", overwrite=overwrite)
    for column in result["splits"]:
        written += save_figures(split_figure(result, column), out_dir / f"rates_by_{re.sub(r'[^A-Za-z0-9]+', '_', column).strip('_') or 'group'}", overwrite=overwrite)
    written += save_figures(stacked_bars(result), out_dir / "rates_stacked", overwrite=overwrite)
    # A neutral sequential scale: a high rate of compliance is not a danger to paint red.
    fig = heatmap(rate_matrix(result["rates"], result["categories"]), rows=[group_tick(g, g not in result.get("not_estimable", {})).replace("\n", " ")
                                                                           for g in result["rates"]], columns=result["categories"],
                  title=figure_title(result), xlabel="category", ylabel=result["group_column"], cmap="Blues", vmax=1.0)
    written += save_figures(fig, out_dir / "rates_heatmap", overwrite=overwrite)
    if "ppi" in result:
        cats = ppi_categories(result["ppi"], result["categories"])
        written += save_figures(ppi_figure(result["ppi"], cats, group_column=result["group_column"], title=result.get("title"),
                                           judge=result.get("label_source") or result["label_column"], n=result["n"]),
                                out_dir / "ppi_rates", overwrite=overwrite)
    return written


def ppi_lambda(value: str) -> float | None:
    """'tuned' (PPI++ power tuning) or a fixed lambda in [0, 1]."""
    if str(value).strip().lower() == "tuned":
        return None
    try:
        lam = float(value)
    except ValueError:
        lam = float("nan")
    if not 0 <= lam <= 1:
        raise UserError(f"--ppi-lambda must be 'tuned' or a number in [0, 1] (1: plain PPI, 0: human labels only), got {value!r}")
    return lam


DEFAULT_INCLUSION = "inclusion_probability"


def inclusion_probabilities(table: pd.DataFrame, config: Config, *, where: str) -> tuple[pd.Series | None, str | None]:
    """The sample's inclusion probabilities and the column they come from; None where none is recorded.

    The default column may be absent (a simple random sample); a column named with --inclusion-column must not be.
    """
    column = config.inclusion_column or DEFAULT_INCLUSION
    if column in table.columns:
        return table[column], column
    if config.inclusion_column is not None:
        raise UserError(f"--inclusion-column {column!r} is not a column of {where}; name the column of inclusion probabilities "
                        f"(columns: {short_list(map(str, table.columns), limit=6)}), or drop the flag for a simple random sample")
    return None, None


def human_labels_for(records: pd.DataFrame, config: Config) -> tuple[pd.Series, pd.Series | None, str, str | None]:
    """The human label of each record (empty where none), its inclusion probability if recorded, where
    the labels come from and the probabilities' column.

    ``--human`` is a file of human labels joined on id (the sample's file, which carries its
    probabilities), or a column of the labelled file (whose own column then carries them).
    """
    spec = config.human
    if Path(spec).is_file():
        human = read_records(spec, encoding=config.encoding, required=(), label_columns=[config.human_label], id_column=config.id_column)
        unknown = sorted(set(human["id"]) - set(records["id"]))
        if unknown:
            raise UserError(
                f"{len(unknown)} id(s) in --human {Path(spec).name} are not in {inputs_name(config)} (e.g. {short_list(map(repr, unknown), limit=3)}); "
                "the human labels must be for outputs of the labelled file: check both files' id columns"
            )
        by_id = human.set_index("id")
        labels = records["id"].map(by_id[config.human_label])
        inclusion, column = inclusion_probabilities(by_id, config, where=f"--human {Path(spec).name}")
        inclusion = None if inclusion is None else records["id"].map(inclusion)
        source = f"file {spec} (column {config.human_label})"
    elif spec in records.columns:
        if spec == config.label:
            raise UserError(f"--human {clip(spec)} is the --label column itself; name the column (or file) of human labels")
        labels = records[spec]
        inclusion, column = inclusion_probabilities(records, config, where=inputs_name(config))
        source = f"column {spec}"
    else:
        raise UserError(f"--human {clip(spec)} is neither a file nor a column of {inputs_name(config)}; columns present: {short_list(records.columns, limit=8, width=30)}")
    empty = labels.isna() | (labels.astype(str).str.strip() == "")
    if empty.all():
        raise UserError(f"--human {source} holds no labels for the outputs of {inputs_name(config)}")
    labels = labels.where(~empty, "")
    if inclusion is not None:
        probs = pd.to_numeric(inclusion[~empty], errors="coerce")
        if probs.isna().any() or ((probs <= 0) | (probs > 1)).any():
            raise UserError(f"column {clip(column)} must hold inclusion probabilities in (0, 1] for every human-labelled output")
        inclusion = pd.to_numeric(inclusion.where(~empty), errors="coerce")
    return labels, inclusion, source, column


def strata_for(records: pd.DataFrame, inclusion: pd.Series | None, labelled: pd.Series, config: Config) -> pd.Series | None:
    """Each output's stratum (the --strata columns joined), checked against the recorded probabilities."""
    if not config.strata:
        return None
    require_columns(records, config.strata, source=inputs_name(config), flag_hint="Fix --strata.")
    strata = records[config.strata].astype(str).agg(" / ".join, axis=1)
    if inclusion is not None:
        spread = inclusion[labelled].groupby(strata[labelled]).agg(lambda p: p.max() - p.min())
        mixed = spread[spread > 1e-9]
        if len(mixed):
            raise UserError(f"--strata {' '.join(config.strata)}: inclusion probabilities differ within stratum {clip(mixed.index[0])}, so the sample "
                            "is not stratified by it; name the columns it was stratified by, or drop --strata (independent inclusion)")
    return strata


DEFAULT_CLUSTERS = ("prompt_id", "prompt")


def _empty(values: pd.Series) -> pd.Series:
    return values.isna() | (values.astype(str).str.strip() == "")


def clusters_for(records: pd.DataFrame, config: Config) -> tuple[np.ndarray | None, dict]:
    """Each output's cluster and what the report says about it: --cluster COL, none with --no-cluster,
    else the prompt (prompt_id, or the prompt text) when it repeats, i.e. when samples share a prompt."""
    if config.no_cluster:
        return None, {"column": None, "note": "none (--no-cluster): every output taken as an independent draw"}
    if config.cluster is not None:
        column = config.cluster
        require_columns(records, [column], source=inputs_name(config), flag_hint="Fix --cluster.")
        if column == config.group[0]:
            raise UserError(f"--cluster {column} is the --group column: each group would be a single cluster and no interval could be "
                            "estimated; cluster by what outputs share within a group (prompt, template), or pass --no-cluster")
        missing = int(_empty(records[column]).sum())
        if missing:
            raise UserError(f"--cluster {column}: {missing} of {len(records)} outputs have no value there; fill them, "
                            "or cluster by another column (prompt, template), or pass --no-cluster")
        values = records[column].astype(str)
        return values.to_numpy(dtype=object), {"column": column, "default": False, "n_clusters": int(values.nunique()),
                                               "note": f"by {column} (--cluster): {values.nunique()} clusters for {len(values)} outputs"}
    for column in DEFAULT_CLUSTERS:
        if column not in records.columns or _empty(records[column]).any():
            continue
        values = records[column].astype(str)
        if values.nunique() < len(values):
            note = (f"by {column} (the default, because {column} repeats: {values.nunique()} distinct for {len(values)} outputs, so "
                    "outputs of one prompt are correlated draws); --cluster COL for another column (template), --no-cluster for none")
            return values.to_numpy(dtype=object), {"column": column, "default": True, "n_clusters": int(values.nunique()), "note": note}
    return None, {"column": None, "note": "none (no prompt_id or prompt column repeats, so every output is its own prompt); "
                                          "--cluster COL if outputs share a template or another unit"}


def inputs_name(config: Config) -> str:
    """The labelled input(s) as one-line messages name them."""
    return Path(config.input[0]).name if len(config.input) == 1 else f"the {len(config.input)} input files"


def judge_directories(config: Config) -> list[str]:
    """The judge directories named by --judge-dir or by the labelled files' manifests (each file's own,
    so files labelled apart and reported together are still checked), each once."""
    from judge.core.manifest import read_manifest

    if config.judge_dir is not None:
        if not Path(config.judge_dir).is_dir():
            what = "is a file" if Path(config.judge_dir).exists() else "does not exist"
            raise UserError(f"--judge-dir {Path(config.judge_dir).name} {what}; name the judge directory judge.train wrote (it holds "
                            "training_ids.json), or drop the flag to use the one in the labelled file's manifest")
        return [config.judge_dir]
    named = [((read_manifest(path) or {}).get("judge") or {}).get("directory") for path in config.input]
    return list(dict.fromkeys(d for d in named if d and Path(d).is_dir()))


def trained_ids(directories: list[str]) -> set[str] | None:
    """The union of the directories' training ids; None when none of them records any."""
    from judge.kinds.judge_dir import read_training_ids

    found = [ids for ids in (read_training_ids(d) for d in directories) if ids is not None]
    return set().union(*found) if found else None


def is_trained_on(records: pd.DataFrame, trained: set[str]) -> np.ndarray:
    """The records whose id (the combined SOURCE:ID where several files repeat ids, as training records them)
    the judge was trained on."""
    return records["id"].astype(str).isin(trained).to_numpy()


def training_rows(records: pd.DataFrame, taxonomy: Taxonomy, clusters: np.ndarray | None, config: Config) -> dict | None:
    """Outputs of the labelled file the judge was trained on, and the rates split into those and the rest:
    on its training rows a judge's labels are largely the human labels it learned."""
    from judge.stats.disparity import category_rates

    directories = judge_directories(config)
    trained = trained_ids(directories)
    if not trained:
        return None
    is_training = is_trained_on(records, trained)
    k, name = int(is_training.sum()), ", ".join(Path(d).name for d in directories)
    out = {"judge_dir": ", ".join(map(str, directories)), "judge_names": name, "n_training_rows": k, "n_outputs": int(len(records))}
    if not k:
        return {**out, "note": f"Checked: none of the {len(records)} outputs is among the {len(trained)} ids judge directory {name} was trained on."}
    labels = np.asarray(canonical_labels(records[config.label], taxonomy, column=config.label), dtype=object)
    groups = records[config.group[0]].astype(str).to_numpy()
    rates = {}
    for g in sorted(set(groups)):
        rates[g] = {}
        for part, mask in (("training rows", is_training), ("not trained on", ~is_training)):
            keep = (groups == g) & mask
            if keep.any():
                rates[g][part] = category_rates(labels[keep], categories=taxonomy.labels, clusters=None if clusters is None else clusters[keep])
    note = (f"{k} of the {len(records)} outputs were used to train the judge ({name}/training_ids.json): there its labels are largely "
            "the human labels it learned, so they look better than the judge is. Rates split into the training rows and the rest below; "
            "read the rest for what the judge does on outputs it has not seen.")
    return {**out, "note": note, "rates": rates}


def check_not_trained_on(human: pd.DataFrame, config: Config) -> str:
    """Refuse human labels the judge was trained on: PPI's correction assumes the judge never saw them."""
    directories = judge_directories(config)
    if not directories:
        return "not checked: no judge directory found in the labelled file's manifest (pass --judge-dir to check)"
    names = ", ".join(Path(d).name for d in directories)
    trained = trained_ids(directories)
    if trained is None:
        return f"not checked: {names} records no training ids (trained before they were recorded)"
    overlap = set(human["id"].astype(str)[is_trained_on(human, trained)])
    if overlap:
        raise UserError(
            f"{len(overlap)} of the {len(human)} human-labelled outputs were used to train the judge in {names} "
            f"(e.g. {clip(sorted(overlap)[0])}); PPI needs human labels the judge has not seen, or its intervals are too narrow: "
            "label a fresh sample (judge.data sample --exclude the training file) and pass that as --human"
        )
    return f"checked: none of the human-labelled ids is among the {len(trained)} ids {names} was trained on"


def design_note(kind: str, column: str | None, config: Config) -> str:
    """The sampling design and where its weights come from, as the report states it."""
    from judge.stats.ppi import POISSON, SIMPLE_RANDOM

    if kind == SIMPLE_RANDOM:
        return (f"simple random sample assumed within each {config.group[0]} (no {DEFAULT_INCLUSION} column; "
                "name one with --inclusion-column): weights N / n per group")
    weights = f"1 / {column}" if column else "N_h / n_h per stratum (no inclusion probabilities recorded)"
    if kind == POISSON:
        return f"unequal-probability sample, independent inclusion (Poisson) variance: weights {weights}"
    return f"stratified simple random sample by {', '.join(config.strata)} (finite-population correction per stratum): weights {weights}"


def prediction_powered(records: pd.DataFrame, result: dict, fine: Taxonomy, taxonomy: Taxonomy, config: Config,
                       clusters: np.ndarray | None = None) -> dict:
    """PPI rates and gaps; ``fine`` checks the human labels, ``taxonomy`` (coarse with --coarse) reports them."""
    from judge.stats.ppi import ppi_by_group

    labels, inclusion, source, column = human_labels_for(records, config)
    has_human = labels != ""
    gold = fine.gold(labels[has_human], column=config.human_label if Path(config.human).is_file() else config.human)
    human = pd.Series("", index=records.index, dtype=object)
    human[has_human] = [fine.parent_of(x) for x in gold] if config.coarse else gold
    strata = strata_for(records, inclusion, has_human, config)
    overlap_note = check_not_trained_on(records[has_human], config)
    judge_labels = canonical_labels(records[config.label], taxonomy, column=config.label)
    primary = config.group[0]
    ppi = ppi_by_group(judge_labels, human.tolist(), records[primary].astype(str).tolist(), categories=taxonomy.labels,
                       reference=result["reference"], inclusion=None if inclusion is None else inclusion.to_numpy(dtype=float),
                       strata=None if strata is None else strata.to_numpy(dtype=object), clusters=clusters,
                       lam=ppi_lambda(config.ppi_lambda))
    ppi.update(human_source=source, training_overlap=overlap_note, inclusion_column=column, strata=list(config.strata),
               weights_from=f"1 / {column}" if column else ("N_h / n_h per stratum" if strata is not None else "N / n per group (simple random sample assumed)"),
               design_note=design_note(ppi["design"], column, config), cluster_note=_ppi_cluster_note(result["clusters"]))
    adjust_gaps(ppi, ppi_categories(ppi, taxonomy.labels), enabled=not config.no_adjust)
    for g, why in ppi["not_estimable_reasons"].items():
        print(f"warning: group {g!r} has too few human labels to estimate its rates ({why}); shown as not estimable", file=sys.stderr)
    for g, by_cat in ppi["rates"].items():
        for c, r in by_cat.items():
            if g not in ppi["not_estimable_reasons"] and not r["estimable"]:
                print(f"warning: {g!r} / {c!r} not estimable: {r['reason']}", file=sys.stderr)
    return ppi


def _ppi_cluster_note(clusters: dict) -> str:
    if not clusters.get("column"):
        return clusters["note"] + "; PPI variance: the sampling design's, for the human rate over these outputs"
    return (clusters["note"] + "; PPI variance: cluster-robust (CR1) over the clusters, for the rate over outputs like these "
            "(prompts drawn anew), t with G - 1 df, G the clusters holding a human label")


def adjust_gaps(ppi: dict, cats: list[str], *, enabled: bool) -> None:
    """Simultaneous intervals and Holm p-values for the gap table's comparisons (one family per method column)."""
    from judge.stats.multiplicity import Family
    from judge.stats.ppi import gap_interval, gap_note

    families = {}
    for method in ("judge_only", "human_only", "ppi"):
        # the judge-only gaps are all shown; the others only where the gap is estimable
        estimable = [e for g in ppi["gaps"] for c in cats for e in [ppi["gaps"][g][c].get(method)]
                     if e and e.get("se") is not None and (method == "judge_only" or ppi["gaps"][g][c]["estimable"])]
        family = Family.of(len(estimable), enabled=enabled, alpha=ppi["alpha"])
        adjusted = family.adjust_p([e["p_value"] for e in estimable])
        for e, p in zip(estimable, adjusted):
            e["ci_adjusted"] = gap_interval(e["gap"], e["se"], e["df"], family.interval_alpha)
            e["p_adjusted"] = p
            e["clipped_adjusted"] = gap_note(e, family.interval_alpha)
        families[method] = family
    ppi["gap_intervals"] = {**families["ppi"].as_dict(), "m_by_method": {k: f.m for k, f in families.items()}}


def parse_group_names(spec: str) -> dict[str, str] | None:
    """--group-names 'OLD=NEW,...' as a mapping; 'auto' (None) shortens the names instead."""
    if spec.strip() == "auto":
        return None
    pairs = [part.partition("=") for part in spec.split(",") if part.strip()]
    bad = next((old + sep + new for old, sep, new in pairs if not sep or not old.strip() or not new.strip()), None)
    if bad is not None or not pairs:
        raise UserError(f"--group-names {clip(bad if bad is not None else spec)} is not OLD=NEW[,OLD=NEW...] or auto; "
                        "e.g. --group-names xstest_v2_completions_gpt4=GPT-4,xstest_v2_completions_llama2new=Llama-2")
    return {old.strip(): new.strip() for old, _, new in pairs}


def shortened(values: list[str]) -> dict[str, str]:
    """Each value without the words all of them share at the start and end (xstest_v2_completions_gpt4 and
    xstest_v2_completions_llama2new become gpt4 and llama2new); words split at _, - and ."""
    import os

    words = [re.split(r"(?<=[_.\-])", v) for v in values]
    if len(values) < 2:
        return {}
    fewest = min(len(w) for w in words)
    head = min(len(os.path.commonprefix(words)), fewest - 1)  # every name keeps a word of its own
    tail = min(len(os.path.commonprefix([w[::-1] for w in words])), fewest - 1 - head)
    out = {v: "".join(w[head: len(w) - tail]).strip("_-.") or v for v, w in zip(values, words)}
    return out if len(set(out.values())) == len(out) else {}


def display_group_names(records: pd.DataFrame, config: Config) -> tuple[pd.DataFrame, dict[str, str]]:
    """The --group columns with the names a paper shows (--group-names); the mapping used, {} for none.
    --reference may name a group by either name."""
    if config.group_names is None:
        return records, {}
    given = parse_group_names(config.group_names)
    records = records.copy()
    used: dict[str, str] = {}
    matched: set[str] = set()
    for column in config.group:
        values = sorted({str(v) for v in records[column]})
        names = {k: v for k, v in (shortened(values) if given is None else given).items() if k in values and k != v}
        renamed = [names.get(v, v) for v in values]
        if len(set(renamed)) < len(values):
            clash = next(n for n in renamed if renamed.count(n) > 1)
            raise UserError(f"--group-names would give two groups of {clip(column, 30)} the name {clip(clash, 30)}; give each group its own name")
        records[column] = [names.get(str(v), str(v)) for v in records[column]]
        used.update(names)
        matched.update(k for k in (given or {}) if k in values)
    unknown = [k for k in (given or {}) if k not in matched]
    if unknown:
        present = sorted({str(v) for c in config.group for v in records[c]})
        raise UserError(f"--group-names {clip(unknown[0], 40)}=...: no --group column has that value; values: {short_list(present, limit=5, width=30)}")
    return records, used


def main(config: Config) -> dict:
    with claim_for(config, 'judge.report', inputs=('input', 'human', 'judge_dir', 'taxonomy', 'label_map'), directory=True):
        return _main(config)


def _warn_not_estimable(result: dict) -> None:
    for g, why in result["not_estimable"].items():
        print(f"warning: group {g!r} is not estimable ({why}); shown as not estimable", file=sys.stderr)


def _main(config: Config) -> dict:
    out_dir = Path(config.out)
    check_output_directory(out_dir, overwrite=config.overwrite)
    manifest = RunManifest("judge.report", config, inputs=[*config.input] + ([config.human] if config.human and Path(config.human).is_file() else []))
    label_map = parse_label_map(config.label_map, encoding=config.encoding)
    records = read_records(config.input, encoding=config.encoding, required=(), label_columns=[config.label, *config.group], unique_ids=config.human is not None,
                           id_column=config.id_column, prompt_column=config.prompt_column, text_column=config.text_column,
                           source_column=config.source_column)
    records, taxonomy = prepare(records, label=config.label, taxonomy=config.taxonomy, coarse=config.coarse, label_map=label_map)
    require_columns(records, [config.label, *config.group], source="records", flag_hint="Fix --label/--group.")
    records, names = display_group_names(records, config)
    clusters, cluster_info = clusters_for(records, config)
    result = disparity(records, label=config.label, groups=list(config.group), taxonomy=taxonomy, reference=names.get(config.reference, config.reference),
                       clusters=clusters, adjust=not config.no_adjust)
    sources = list(dict.fromkeys(label_source(path, config.label) for path in config.input))
    result.update(label_source=" + ".join(sources), title=config.title, clusters=cluster_info, **({"group_names": names} if names else {}))
    _warn_not_estimable(result)
    training = training_rows(records, taxonomy, clusters, config)
    if training:
        result["training_rows"] = training
    if config.human is not None:
        fine = resolve_taxonomy(config.taxonomy, [x for x in records[config.label] if isinstance(x, str) and x.strip()],
                                label_map=label_map) if config.coarse else taxonomy
        result["ppi"] = prediction_powered(records, result, fine, taxonomy, config, clusters)
    if training and training["n_training_rows"]:  # after PPI, so refused human labels get their one line alone
        print(f"warning: {training['n_training_rows']} of the {training['n_outputs']} outputs are the judge's own training rows "
              f"({training['judge_names']}): its labels there mirror the human labels; the report splits the rates "
              "into those rows and the rest", file=sys.stderr)
    style = style_of(config)
    with staged_directory(out_dir, overwrite=config.overwrite) as staging:
        written = [out_dir / p.name for p in write_disparity_report(result, staging, style=style)]
        manifest.write(staging, n=result["n"], n_unscored=result["n_unscored"], **({"n_human": result["ppi"]["n_human"]} if "ppi" in result else {}))
    print(render(result, style)[0])
    print(("warning: " if result.get("reference_tie") else "") + f"reference group: {result['reference_note']}", file=sys.stderr)
    print(f"clustering: {cluster_info['note']}", file=sys.stderr)
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return result


def build_parser():
    return parser_for(Config, "python -m judge.report", __doc__, order=(
        "input", "label", "group", "reference", "group_names", "taxonomy", "label_map", "coarse", "human", "human_label", "inclusion_column",
        "strata", "ppi_lambda", "judge_dir", ..., RecordColumns, ReportStyle, "out", "overwrite"))


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
