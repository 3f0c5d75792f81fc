"""Import public labelled data into canonical records, or draw a sample for human labelling.

Examples:
    python -m judge.data chehbouni2024 ../shared/datasets/chehbouni2024/df_annotated_llama7.csv \\
        ../shared/datasets/chehbouni2024/df_annotated_llama13.csv --out runs/chehbouni2024.jsonl
    python -m judge.data sample runs/outputs.jsonl --n 600 --stratify identity --out runs/to_label.csv
    python -m judge.data sample runs/outputs.jsonl --n 300 --exclude runs/train_labels.csv --out runs/ppi_sample.csv

``chehbouni2024`` reads the long-format CSVs released with Chehbouni et al. 2024: one record per
(prompt, sample) with fields id, prompt (the filled template), response (the sampled output the
row's label belongs to, echoed prompt stripped), label, identity, name, name_list, gender, common,
template, heading, model, sample.

``sample`` draws a seeded sample of records: a simple random sample without replacement, or with
--stratify a stratified one, proportional within each stratum (every stratum gets at least one,
and each is drawn from its own seed, so groups never share positions), and adds an empty ``label``
column for the annotators (a label the records already had is not handed to them). Each drawn
record gets its exact ``inclusion_probability`` (n / N, or stratum sample size / stratum size),
which judge.report --human uses to weight the sample; the manifest names the design.
--exclude FILE leaves out the ids in FILE (e.g. the judge's training labels, so the sample can
correct the judge's rates).
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from judge.core.outputs import claim_for
from judge.core.cli import RecordColumns, add_column_options, check_positive, check_unique, clip, new_parser, run_command
from judge.core.errors import UserError
from judge.core.manifest import RunManifest
from judge.core.records import ensure_writable, read_table, require_columns, write_records

CHEHBOUNI_COLUMNS = ["index", "ethnicity", "og_prompt", "type_name", "name", "g1", "g2", "g3", "prompt_sentence", "common", "model", "identity", "variable", "label"]
MODEL_IDS = {"llama 7": "llama-2-7b-chat", "llama 13": "llama-2-13b-chat", "llama 70": "llama-2-70b-chat"}
IMPORTERS = ("chehbouni2024", "sample")


def strip_echo(output: str, prompt: str) -> str:
    """Llama 2 chat echoes the prompt before answering; the label is about what follows."""
    output = "" if output is None or output != output else str(output)
    if output.startswith(prompt):
        output = output[len(prompt):]
    return output.strip()


def gender_of(name_list: str) -> str | None:
    if "women" in name_list:
        return "woman"
    if "men" in name_list:
        return "man"
    return None


def import_chehbouni2024(paths: list[str | Path], *, encoding: str = "utf-8") -> pd.DataFrame:
    rows = []
    for path in paths:
        table = read_table(path, encoding=encoding)
        require_columns(table, CHEHBOUNI_COLUMNS, source=str(path), flag_hint="Is this one of the df_annotated_llama*.csv files?")
        for row_number, r in enumerate(table.itertuples(index=False), start=2):
            match = re.fullmatch(r"label (\d)", str(r.variable).strip())
            if not match or match[1] not in ("1", "2", "3"):
                raise UserError(f"{path}: row {row_number} has variable {clip(r.variable)}; expected 'label 1', 'label 2' or 'label 3' "
                                "(which of g1..g3 the label is for): is this one of the df_annotated_llama*.csv files?")
            sample = int(match[1])
            if not str(r.index).strip().isdigit():
                raise UserError(f"{path}: row {row_number} has index {clip(r.index)}; expected the prompt's row number")
            if not isinstance(r.model, str) or not r.model.strip():
                raise UserError(f"{Path(path).name}: row {row_number} has no model (its id would be 'nan-p...'); fill the model column "
                                f"(e.g. {', '.join(repr(m) for m in MODEL_IDS)})")
            model = MODEL_IDS.get(r.model, r.model.replace(" ", "-"))
            rows.append(
                {
                    "id": f"{model}-p{int(r.index):04d}-s{sample}",
                    "prompt": r.prompt_sentence,
                    "response": strip_echo(getattr(r, f"g{sample}"), r.prompt_sentence),
                    "label": r.label,
                    "identity": r.identity,
                    "name": r.name,
                    "name_list": r.type_name,
                    "gender": gender_of(str(r.type_name)),
                    "common": str(r.common) == "common",
                    "template": r.og_prompt,
                    "heading": r.ethnicity,
                    "model": model,
                    "sample": sample,
                }
            )
    records = pd.DataFrame(rows)
    dup = records["id"][records["id"].duplicated()]
    if len(dup):
        raise UserError(f"the same (model, prompt, sample) appears twice, e.g. {clip(dup.iloc[0])}; give each CSV once")
    return records.sort_values("id", kind="stable").reset_index(drop=True)


def annotation_sample(records: pd.DataFrame, *, n: int, stratify: list[str], seed: int) -> pd.DataFrame:
    """A seeded sample with each record's inclusion probability, and an empty ``label`` column
    (the sampling itself is judge.annotate export's: ``annotation.choose``)."""
    from judge.human_labels import INCLUSION, choose

    if n <= 0:
        raise UserError("--n must be a positive number of records")
    if INCLUSION in records.columns:
        raise UserError(f"the records already have a column {INCLUSION!r} (a sample of a sample?); rename it or sample from the full records")
    require_columns(records, stratify, source="records", flag_hint="Fix --stratify.")
    picked = choose(records, strategy="stratified" if stratify else "random", budget=n, seed=seed, by=stratify)
    # Annotators label blind: a label the records already carry is not handed to them.
    return picked.assign(label="").reset_index(drop=True)


@dataclass
class Config(RecordColumns):
    dataset: str
    inputs: list[str]
    out: str
    n: int = 500
    stratify: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    seed: int = 0
    overwrite: bool = False

    def __post_init__(self):
        check_positive(self, "n")
        check_unique(self, "stratify")


def main(config: Config) -> pd.DataFrame:
    with claim_for(config, 'judge.data', inputs=('inputs', 'exclude', 'label_map'), directory=False):
        return _main(config)


def _main(config: Config) -> pd.DataFrame:
    if config.dataset not in IMPORTERS:
        raise UserError(f"unknown dataset {clip(config.dataset)}; known: {', '.join(IMPORTERS)}")
    if not config.inputs:
        raise UserError("give at least one input file")
    sample_only = [flag for flag, value in (("--exclude", config.exclude), ("--stratify", config.stratify), ("--source-column", config.source_column),
                                            ("--id-column", config.id_column), ("--prompt-column", config.prompt_column),
                                            ("--text-column", config.text_column)) if value]
    if config.dataset != "sample" and sample_only:
        raise UserError(f"{', '.join(sample_only)} apply to 'sample' only")
    ensure_writable(config.out, overwrite=config.overwrite)
    manifest = RunManifest("judge.data", config, inputs=[*config.inputs, *config.exclude])
    if config.dataset == "sample":
        from judge.core.records import read_records, user_columns

        records = read_records(config.inputs, encoding=config.encoding, required=(), source_column=config.source_column, id_column=config.id_column,
                               prompt_column=config.prompt_column, text_column=config.text_column)
        if config.exclude:
            excluded = set(read_records(config.exclude, encoding=config.encoding, required=(), id_column=config.id_column)["id"])
            records = records[~records["id"].isin(excluded)]
            if records.empty:
                raise UserError("every record's id is in --exclude; nothing is left to sample")
            print(f"excluded {len(excluded)} id(s) listed in {', '.join(config.exclude)}; sampling from {len(records)} records")
        column_map = records.attrs["column_map"]
        from judge.human_labels import sampling_design

        manifest.update(sampling_design=sampling_design("stratified" if config.stratify else "random", config.n, len(records)), population=len(records))
        records = user_columns(annotation_sample(records, n=config.n, stratify=list(config.stratify), seed=config.seed), column_map)
    else:
        records = import_chehbouni2024(config.inputs, encoding=config.encoding)
    write_records(records, config.out, overwrite=config.overwrite)
    manifest.write(config.out, records=len(records))
    print(f"wrote {len(records)} records to {config.out}")
    return records


def build_parser():
    parser = new_parser("python -m judge.data", __doc__)
    parser.add_argument("dataset", nargs="?", help=f"what to do: {', '.join(IMPORTERS)}")
    parser.add_argument("inputs", nargs="*", metavar="FILE", help="the released CSVs (chehbouni2024) or the records to sample from")
    parser.add_argument("--n", type=int, help="sample: how many records (default: 500)")
    parser.add_argument("--stratify", action="append", metavar="COL", help="sample: keep these columns' proportions (repeatable)")
    parser.add_argument("--exclude", action="append", metavar="FILE", help="sample: leave out the ids in FILE, e.g. the judge's training labels (repeatable)")
    add_column_options(parser)
    parser.add_argument("--seed", type=int, help="sample: seed (default: 0)")
    parser.add_argument("--out", help="output records file (.jsonl, .csv or .parquet)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    return parser


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
