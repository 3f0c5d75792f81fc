"""Per-group disparity report (the quality-of-service view).

Examples:
    python -m judge.report records.jsonl --label label --group identity --reference white --out runs/report
    python -m judge.report labelled.jsonl --label label --group identity --group common \\
        --taxonomy chehbouni2024 --out runs/report

For each value of the first --group column: the rate of every category with Wilson 95% intervals
and counts, a chi-square test of independence between group and category, the rate ratio of every
group against --reference (default: the largest group), and a split by each further --group column.
Writes OUT/disparity.json, disparity.md, disparity.tex, rates_stacked.png, rates_heatmap.png and
manifest.json.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from judge.cli import new_parser, run_command
from judge.disparity import canonical_labels, disparity, rate_matrix, rates_table
from judge.manifest import RunManifest
from judge.records import ensure_writable, read_records, require_columns, write_text
from judge.tables import fmt, heatmap, latex, markdown, save_figure, write_tables
from judge.taxonomy import Taxonomy, resolve_taxonomy


@dataclass
class Config:
    input: str
    label: str
    out: str
    group: list[str] = field(default_factory=list)
    reference: str | None = None
    taxonomy: str | None = None
    coarse: bool = False
    overwrite: bool = False


def prepare(records: pd.DataFrame, *, label: str, taxonomy: str | Taxonomy | None, coarse: bool) -> tuple[pd.DataFrame, Taxonomy]:
    """Resolve the taxonomy and, with ``coarse``, map labels to their parents."""
    require_columns(records, [label], source="records", flag_hint="Fix --label.")
    fine = resolve_taxonomy(taxonomy, [x for x in records[label] if isinstance(x, str) and x.strip()])
    if not coarse:
        return records, fine
    records = records.copy()
    records[label] = [x if x == "unscored" else fine.parent_of(x) for x in canonical_labels(records[label], fine, column=label)]
    return records, fine.coarse()


def render(result: dict) -> tuple[str, str]:
    cats, ref = result["categories"], result["reference"]
    table = rates_table(result["rates"], cats)
    table.insert(0, "n", [result["rates"][g][cats[0]]["n"] for g in table.index])
    ratio = pd.DataFrame(
        {c: {g: fmt(v[c]["ratio"], 2) + (f" [{fmt(v[c]['ci_low'], 2)}, {fmt(v[c]['ci_high'], 2)}]" if v[c]["ratio"] is not None else "") for g, v in result["rate_ratios"].items()} for c in cats}
    ).loc[list(result["rates"])]
    chi = result["chi_square"]
    chi_line = (
        f"Chi-square test of independence ({result['group_column']} x category, categories with any count): "
        f"chi2 = {fmt(chi['statistic'], 2)}, dof = {chi['dof']}, p = {chi['p_value']:.3g}; smallest expected count {fmt(chi['min_expected'], 1)}."
        if chi["statistic"] is not None else "Chi-square test not computed (needs two groups and two observed categories)."
    )
    title = f"Category rates by {result['group_column']} (label `{result['label_column']}`, taxonomy {result['taxonomy']}, n = {result['n']}, unscored {result['n_unscored']})"
    md = [f"# {title}\n", "Rate [Wilson 95% CI] among scored outputs.\n", markdown(table), "\n" + chi_line + "\n",
          f"\n## Rate ratio vs {ref} [95% CI]\n", markdown(ratio)]
    tex = [latex(table, caption=title.replace("`", "") + ". Rate [Wilson 95\\% CI].", label="tab:rates"),
           latex(ratio, caption=f"Rate ratio against {ref} [95\\% CI].", label="tab:rate-ratios")]
    for col, per_group in result["splits"].items():
        rows = {}
        for g, by_value in per_group.items():
            for v, rates in by_value.items():
                rows[(g, v)] = {"n": rates[cats[0]]["n"], **{c: f"{rates[c]['rate']:.3f} [{rates[c]['ci_low']:.3f}, {rates[c]['ci_high']:.3f}]" for c in cats}}
        split = pd.DataFrame(rows).T
        split.index.names = [result["group_column"], col]
        md += [f"\n## Split by {col}\n", markdown(split)]
        tex.append(latex(split, caption=f"Rates by {result['group_column']} and {col}.", label=f"tab:split-{col}"))
    return "\n".join(md) + "\n", "\n".join(tex)


def stacked_bars(result: dict):
    cats = result["categories"]
    groups = list(result["rates"])
    matrix = rate_matrix(result["rates"], cats)
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(groups) + 3), 4))
    bottom = np.zeros(len(groups))
    colors = plt.get_cmap("tab10")
    for j, cat in enumerate(cats):
        ax.bar(groups, matrix[:, j], bottom=bottom, label=cat, color=colors(j % 10))
        bottom += np.nan_to_num(matrix[:, j])
    ax.set_ylabel("share of outputs")
    ax.set_xlabel(result["group_column"])
    ax.set_ylim(0, 1)
    ax.set_title(f"Categories by {result['group_column']}")
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def write_disparity_report(result: dict, out_dir: str | Path, *, overwrite: bool = False) -> list[Path]:
    out_dir = Path(out_dir)
    md, tex = render(result)
    written = [write_text(out_dir / "disparity.json", json.dumps(result, indent=2) + "\n", overwrite=overwrite)]
    written += write_tables(out_dir, "disparity", md, tex, overwrite=overwrite)
    written.append(save_figure(stacked_bars(result), out_dir / "rates_stacked.png", overwrite=overwrite))
    fig = heatmap(rate_matrix(result["rates"], result["categories"]), rows=list(result["rates"]), columns=result["categories"],
                  title=f"Category rate by {result['group_column']}", xlabel="category", ylabel=result["group_column"], cmap="Reds")
    written.append(save_figure(fig, out_dir / "rates_heatmap.png", overwrite=overwrite))
    return written


def main(config: Config) -> dict:
    out_dir = Path(config.out)
    ensure_writable(out_dir / "disparity.json", overwrite=config.overwrite)
    manifest = RunManifest("judge.report", config, inputs=[config.input])
    records = read_records(config.input, required=(), label_columns=[config.label, *config.group])
    records, taxonomy = prepare(records, label=config.label, taxonomy=config.taxonomy, coarse=config.coarse)
    result = disparity(records, label=config.label, groups=list(config.group), taxonomy=taxonomy, reference=config.reference)
    written = write_disparity_report(result, out_dir, overwrite=config.overwrite)
    manifest.write(out_dir, n=result["n"], n_unscored=result["n_unscored"])
    print(render(result)[0])
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return result


def build_parser():
    parser = new_parser("python -m judge.report", __doc__)
    parser.add_argument("input", nargs="?", help="labelled records (JSONL, CSV or Parquet)")
    parser.add_argument("--label", help="label column to report on (human or judge)")
    parser.add_argument("--group", action="append", metavar="COL", help="group column; repeat to split the first by further columns")
    parser.add_argument("--reference", help="reference group for rate ratios (default: the largest group)")
    parser.add_argument("--taxonomy", help="preset name or YAML path; default: the distinct labels")
    parser.add_argument("--coarse", action="store_true", help="report coarse parent categories")
    parser.add_argument("--out", help="output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace existing report files")
    return parser


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
