"""Name-swap check: does the judge's label change when only the name (the group signal) changes?

Examples:
    python -m judge.swap runs/study/heldout.jsonl --judge runs/study/judge --out runs/swap
    python -m judge.swap outputs.jsonl --judge llm --taxonomy chehbouni2024 --group identity --sample 200 \\
        --out runs/swap-llm

Each record's name (column --name-column, default name) is replaced, in the prompt and the
response, by a name from every other group of --group (drawn with --seed from the names the file
holds for that group, of the same gender when a gender column exists). The judge labels the
original and every swapped copy; the report gives the share of labels that flip, per pair of groups
(from -> to) with Wilson 95% intervals. A copy whose texts did not change (the name does not occur
in the prompt or the response, or the drawn name is the same) tests nothing: it is counted and
reported as unchanged, left out of the rates, and a pair with no changed copy is not estimable;
when no copy changes any text the check stops with an error. A judge that masks names (the trained
judges' default) must flip nothing; an LLM judge or a judge trained with --no-mask-names can, and
that share is the judge's own group bias, to report beside any disparity it measures.

Writes OUT/swap.json, swap.md, swap.tex, swap_flips.png and manifest.json.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from judge.core.config import RecordColumns, ReportStyle, check_positive, parser_for, run_command
from judge.core.outputs import claim_for
from judge.stats.disparity import wilson_interval

if TYPE_CHECKING:
    from judge.render.tables import Style
from judge.core.errors import UserError
from judge.core.files import check_output_directory, json_text, write_text
from judge.core.manifest import RunManifest
from judge.core.outputs import staged_directory
from judge.core.records import clean_groups, read_records


@dataclass
class Config(RecordColumns, ReportStyle):
    input: str = field(
        metadata={
            "positional": True,
            "nargs": "?",
            "help": "records with a name and a group column (JSONL, CSV or Parquet)",
        }
    )
    judge: str = field(metadata={"help": "judge directory, tfidf:DIR, rules, llm or llm:MODEL (as in judge.label)"})
    out: str = field(metadata={"help": "output directory"})
    group: str = field(default="identity", metadata={"help": "group column the names signal"})
    name_column: str = field(default="name", metadata={"help": "column holding the name that appears in the texts"})
    taxonomy: str | None = field(default=None, metadata={"help": "taxonomy for rules/llm judges"})
    sample: int | None = field(
        default=None, metadata={"help": "check a seeded sample of this many records (default: all)"}
    )
    seed: int = field(default=0, metadata={"help": "seed for the sample and the replacement names"})
    batch_size: int = field(default=64, metadata={"help": "responses per batch"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda ..."})
    progress: bool = field(default=True, metadata={"help": "no progress bar"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing report"})

    def __post_init__(self):
        check_positive(self, "sample", "batch_size")
        self.check_style()


def replace_name(text: str, old: str, new: str) -> str:
    return re.sub(rf"(?<!\w){re.escape(old)}(?!\w)", lambda _: new, text)


def swapped_copies(records: pd.DataFrame, *, group: str, name_column: str, seed: int) -> pd.DataFrame:
    """One copy of each record per other group, with the name replaced everywhere it appears.

    ``swap_of`` is the original's id, ``swap_row`` its position in ``records`` (what labels are
    matched on: ids are the user's and may look like anything), ``changed`` whether any text did."""
    rng = np.random.default_rng(seed)
    gender = "gender" if "gender" in records.columns else None
    pools: dict[tuple, list[str]] = {}
    for keys, sub in records.groupby([group] + ([gender] if gender else []), dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        pools[tuple(str(k) for k in keys)] = sorted(sub[name_column].astype(str).unique())
    groups = sorted(records[group].astype(str).unique())
    rows = []
    for row, r in enumerate(records.to_dict(orient="records")):
        old, own = str(r[name_column]), str(r[group])
        for other in groups:
            if other == own:
                continue
            pool = (
                pools.get((other, str(r[gender])) if gender else (other,))
                or pools.get((other,))
                or sorted({n for k, names in pools.items() if k[0] == other for n in names})
            )
            new = pool[int(rng.integers(len(pool)))]
            prompt, response = str(r.get("prompt", "")), str(r["response"])
            copy = {"prompt": replace_name(prompt, old, new), "response": replace_name(response, old, new)}
            rows.append(
                {
                    **r,
                    **copy,
                    "swap_of": r["id"],
                    "swap_row": row,
                    "swap_from": own,
                    "swap_to": other,
                    name_column: new,
                    group: other,
                    "changed": copy != {"prompt": prompt, "response": response},
                }
            )
    return pd.DataFrame(rows)


def flip_rates(original: pd.Series, swapped: pd.DataFrame) -> dict:
    """Share of swapped copies whose label differs from the original's, per (from, to) pair.

    ``original`` is the originals' labels by position (``swap_row``). Copies that changed no text
    are counted apart (``unchanged``) and never in a rate; a pair with none changed has no rate."""
    swapped = swapped.assign(original_label=swapped["swap_row"].map(original))
    swapped["flipped"] = swapped["changed"] & (swapped["label"] != swapped["original_label"])
    pairs = {
        f"{a} -> {b}": {"from": a, "to": b, **_rate(sub)} for (a, b), sub in swapped.groupby(["swap_from", "swap_to"])
    }
    changes = swapped.loc[swapped["flipped"], ["swap_of", "swap_from", "swap_to", "original_label", "label"]].head(20)
    return {"overall": _rate(swapped), "pairs": pairs, "examples": changes.to_dict(orient="records")}


def _rate(copies: pd.DataFrame) -> dict:
    changed = copies[copies["changed"]]
    flips, n = int(changed["flipped"].sum()), len(changed)
    return {
        "n": n,
        "flips": flips,
        "unchanged": int(len(copies) - n),
        "rate": flips / n if n else None,
        "estimable": n > 0,
        "ci": wilson_interval(flips, n) if n else (None, None),
    }


def render(result: dict, style: Style) -> tuple[str, str]:
    from judge.render.tables import markdown

    table = pd.DataFrame(
        [
            [
                p["from"],
                p["to"],
                p["n"],
                p["unchanged"],
                p["flips"],
                f"{style.fmt(p['rate'])} {style.fmt_ci(p['ci'])}"
                if p["estimable"]
                else "not estimable (no text changed)",
            ]
            for p in result["pairs"].values()
        ],
        columns=["from", "to", "swaps", "unchanged", "flips", "flip rate [95% CI]"],
    )
    o = result["overall"]
    title = (
        result.get("title")
        or f"Name-swap check of judge {result['judge']} ({result['group']}; {result['n_records']} records, {o['n']} "
        "swaps)"
    )
    line = (
        f"Overall: {o['flips']} of {o['n']} labels flip ({style.fmt(o['rate'])} {style.fmt_ci(o['ci'])}). "
        f"Judge masks names: {result['masks_names']}."
    )
    if o["unchanged"]:
        line += (
            f" {o['unchanged']} of {o['n'] + o['unchanged']} swaps changed no text (the name is not in the prompt or "
            "response, "
            "or the drawn name was the same) and are left out."
        )
    md = f"# {title}\n\n{line}\n\n{markdown(table, index=False)}\n"
    tex = style.latex(
        table,
        caption=f"Name-swap flip rates of the judge, by {result['group']} pair (Wilson 95% CI).",
        label="tab:name-swap",
        index=False,
    )
    return md, tex


def flips_figure(result: dict, style: Style):
    from judge.render.tables import heatmap

    groups = sorted({p["from"] for p in result["pairs"].values()} | {p["to"] for p in result["pairs"].values()})
    matrix = np.full((len(groups), len(groups)), np.nan)
    for p in result["pairs"].values():
        if p["estimable"]:
            matrix[groups.index(p["from"]), groups.index(p["to"])] = p["rate"]
    shown = np.nan_to_num(matrix)
    notes = np.array([["—" if np.isnan(v) else style.fmt(v) for v in row] for row in matrix], dtype=object)
    return heatmap(
        shown,
        rows=groups,
        columns=groups,
        annotations=notes,
        vmax=max(float(np.nanmax(shown)), 0.05),
        title=result.get("title") or f"Share of labels that flip when the name changes ({result['judge']})",
        xlabel="name from",
        ylabel="original name from",
        cmap="Purples",
    )


def main(config: Config) -> dict:
    with claim_for(config, "judge.swap", inputs=("input", "judge", "taxonomy", "label_map"), directory=True):
        return _main(config)


def _main(config: Config) -> dict:
    out_dir = Path(config.out)
    check_output_directory(out_dir, overwrite=config.overwrite)
    records = read_records(
        config.input,
        encoding=config.encoding,
        label_columns=[config.group, config.name_column],
        id_column=config.id_column,
        prompt_column=config.prompt_column,
        text_column=config.text_column,
        source_column=config.source_column,
    )
    for warning in clean_groups(records, [config.group]):  # missing values a group of their own, one spelling each
        print(warning, file=sys.stderr)
    records = records[
        records[config.name_column].notna()
        & (records[config.name_column].astype(str).str.strip() != "")
        & records["response"].notna()
    ]
    if records[config.group].astype(str).nunique() < 2:
        raise UserError(
            f"column {config.group!r} has fewer than two groups; a name swap needs names from another group"
        )
    if config.sample is not None and config.sample < len(records):
        records = records.sample(n=config.sample, random_state=config.seed).sort_index()
    from judge.kinds import load_judge, masks_names

    judge = load_judge(config.judge, taxonomy=config.taxonomy, device=config.device, seed=config.seed)
    manifest = RunManifest("judge.swap", config, inputs=[config.input], judge=judge.describe())
    keep = ["id", "prompt", "response", config.name_column, config.group] + (
        ["gender"] if "gender" in records.columns else []
    )
    base = records[[c for c in keep if c in records.columns]].copy()
    if "prompt" not in base.columns:
        base["prompt"] = ""
    copies = swapped_copies(base, group=config.group, name_column=config.name_column, seed=config.seed)
    if not copies["changed"].any():
        raise UserError(
            f"no swap changed any text: the names in column {config.name_column!r} never occur in the prompts or "
            "responses "
            f"({len(copies)} copies); check --name-column"
        )
    tested = copies[copies["changed"]]
    both = pd.concat(
        [base, tested.drop(columns=["swap_of", "swap_row", "swap_from", "swap_to", "changed"])], ignore_index=True
    )
    # The judge keys its rows on ids: positions are collision-free by construction, whatever the user's ids look like.
    both["id"] = [str(k) for k in range(len(both))]
    # The name column is what a masking judge masks: it must follow the swap.
    both = both.rename(columns={config.name_column: "name"}) if config.name_column != "name" else both
    labelled = judge.label(both, batch_size=config.batch_size, progress=config.progress)
    original = labelled["label"].iloc[: len(base)].reset_index(drop=True)
    copies.loc[copies["changed"], "label"] = labelled["label"].iloc[len(base) :].to_numpy()
    result = {
        "judge": config.judge,
        "group": config.group,
        "n_records": len(base),
        "masks_names": masks_names(judge),
        "title": config.title,
        **flip_rates(original, copies),
    }
    from judge.render.tables import save_figures, style_of, write_tables

    style = style_of(config)
    md, tex = render(result, style)
    with staged_directory(out_dir, overwrite=config.overwrite) as staging:
        write_text(staging / "swap.json", json_text(result, indent=2, default=str) + "\n", overwrite=False)
        write_tables(staging, "swap", md, tex, overwrite=False)
        save_figures(flips_figure(result, style), staging / "swap_flips", overwrite=False)
        manifest.write(
            staging,
            records=len(base),
            swaps=result["overall"]["n"],
            unchanged=result["overall"]["unchanged"],
            flips=result["overall"]["flips"],
        )
    written = [
        out_dir / n for n in ("swap.json", "swap.md", "swap.tex", "swap_flips.png", "swap_flips.pdf", "manifest.json")
    ]
    print(md)
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return result


def build_parser():
    return parser_for(
        Config,
        "python -m judge.swap",
        __doc__,
        order=("input", "judge", "group", RecordColumns, ReportStyle, ..., "out", "overwrite"),
    )


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
