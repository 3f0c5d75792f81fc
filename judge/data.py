"""Import public labelled data into canonical records, draw a sample for human labelling, or split
and filter records (cross-model and held-out designs) without a pandas step.

Examples:
    python -m judge.data chehbouni2024 ../shared/datasets/chehbouni2024/df_annotated_llama7.csv \\
        ../shared/datasets/chehbouni2024/df_annotated_llama13.csv --out runs/chehbouni2024.jsonl
    python -m judge.data sample runs/outputs.jsonl --n 600 --stratify identity --blind --out runs/to_label.csv
    python -m judge.data sample runs/labelled.jsonl --n 300 --stratify identity --allocation neyman --target refusal \
        --target-column judge_label --blind --out runs/to_label.csv
    python -m judge.data sample runs/outputs.jsonl --n 300 --exclude runs/train_labels.csv --label-column label \\
        --out runs/ppi_sample.csv
    python -m judge.data filter gpt4.csv llama2.json --keep source=gpt4,llama2 --out runs/train.jsonl
    python -m judge.data split labelled.jsonl --fraction 0.2 --seed 1 --out runs/human.jsonl --rest runs/train.jsonl

``chehbouni2024`` reads the long-format CSVs released with Chehbouni et al. 2024: one record per
(prompt, sample) with fields id, prompt (the filled template), response (the sampled output the
row's label belongs to, echoed prompt stripped), label, identity, name, name_list, gender, common,
template, heading, model, sample.

``sample`` draws a seeded sample of records: a simple random sample without replacement, or with
--stratify a stratified one whose sizes meet --n exactly (proportional allocation by largest
remainders, or --allocation neyman --target CATEGORY: sizes n_h ~ N_h S_h for that category's rate by the
judge's labels, --target-column; every stratum at least one; each stratum drawn from its own seed, so groups never share
positions). Each drawn record gets its exact ``inclusion_probability`` (n / N, or n_h / N_h in its
stratum), which judge.report --human uses to weight the sample; the manifest names the design.
Every column is kept as it is; --label-column COL adds an empty COL for annotators. --blind makes
the sheet annotators see: names masked as [NAME] in the texts, the --hide columns left out, and so
are the judge's and earlier annotators' columns (any column whose name holds label, annotation,
annotator, confidence, judge, adjudicat, unscored or verdict, p_* probabilities, raw); it adds an
empty ``label`` column unless --label-column names another. --exclude FILE leaves out the ids in
FILE (e.g. the judge's training labels, so the sample can correct the judge's rates).

Sampling a sample (two-phase sampling): the first sample's ``inclusion_probability`` pi1 and this
draw's pi2 (given the first sample) multiply, pi = pi1 x pi2. That product is the exact inclusion
probability when the second draw's pi2 cannot depend on which records the first draw kept: a random
second sample of a first sample of fixed size (random or stratified), or a second sample stratified
by some of the first's --stratify columns. Other combinations (a stratified second sample of a random
first one, a first sample that is Poisson, a split, unknown or edited, or --exclude) are refused:
sample from the full records instead. The first sample's design is read from its manifest.

``filter`` keeps the records whose columns hold given values (--keep COL=V1,V2, repeatable: every
--keep must match; --drop COL=V: leaves those out), or a seeded --fraction of them. ``split`` does the
same and writes the records not kept to --rest. A --fraction draws whole groups: the --group column,
or by default prompt_id or prompt, so a prompt's outputs never land on both sides; the kept records
get ``inclusion_probability`` k / G (k of the G groups drawn at random), so the kept side can serve
as a human sample for judge.report --human.

sample, filter and split keep the provenance of judge labels: the judge(s) the inputs' manifests name
(judge.label's, judge.join's, or an earlier judge.data's) go into the output's manifest (and --rest's),
each with the sha256 of its training_ids.json, so judge.report --human still refuses the judge's own
training labels as human labels after the records passed through here.
"""

from __future__ import annotations

import re
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from judge.core.config import (
    RecordColumns,
    check_choice,
    check_fraction,
    check_positive,
    check_seed,
    check_unique,
    parser_for,
    run_command,
)
from judge.core.errors import UserError, clip, short_list
from judge.core.files import ensure_writable
from judge.core.manifest import RunManifest
from judge.core.outputs import claim_for
from judge.core.records import SHADOW, read_table, require_columns, user_columns, write_records

CHEHBOUNI_COLUMNS = [
    "index",
    "ethnicity",
    "og_prompt",
    "type_name",
    "name",
    "g1",
    "g2",
    "g3",
    "prompt_sentence",
    "common",
    "model",
    "identity",
    "variable",
    "label",
]
MODEL_IDS = {"llama 7": "llama-2-7b-chat", "llama 13": "llama-2-13b-chat", "llama 70": "llama-2-70b-chat"}
IMPORTERS = ("chehbouni2024", "sample", "split", "filter")
RECORD_ACTIONS = ("sample", "split", "filter")
DEFAULT_HIDE = ["name", "identity", "name_list", "gender", "common"]  # as judge.annotate export --blind hides
# Columns a blind sheet never shows: judge outputs (label, confidence, p_*, unscored_reason, raw) and earlier
# human labels.
JUDGE_OR_HUMAN_LABEL = re.compile(
    r"label|annotation|annotator|confidence|judge|adjudicat|unscored|verdict|(^|_)p_|(^|_)raw$", re.IGNORECASE
)


def strip_echo(output: str, prompt: str) -> str:
    """Llama 2 chat echoes the prompt before answering; the label is about what follows."""
    output = "" if output is None or output != output else str(output)
    if output.startswith(prompt):
        output = output[len(prompt) :]
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
        require_columns(
            table, CHEHBOUNI_COLUMNS, source=str(path), flag_hint="Is this one of the df_annotated_llama*.csv files?"
        )
        for row_number, r in enumerate(table.itertuples(index=False), start=2):
            match = re.fullmatch(r"label (\d)", str(r.variable).strip())
            if not match or match[1] not in ("1", "2", "3"):
                raise UserError(
                    f"{path}: row {row_number} has variable {clip(r.variable)}; expected 'label 1', 'label 2' or "
                    "'label 3' "
                    "(which of g1..g3 the label is for): is this one of the df_annotated_llama*.csv files?"
                )
            sample = int(match[1])
            if not str(r.index).strip().isdigit():
                raise UserError(f"{path}: row {row_number} has index {clip(r.index)}; expected the prompt's row number")
            if not isinstance(r.model, str) or not r.model.strip():
                raise UserError(
                    f"{Path(path).name}: row {row_number} has no model (its id would be 'nan-p...'); fill the model "
                    "column "
                    f"(e.g. {', '.join(repr(m) for m in MODEL_IDS)})"
                )
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


def annotation_sample(
    records: pd.DataFrame, *, n: int, stratify: list[str], seed: int, allocation=None
) -> pd.DataFrame:
    """A seeded sample with each record's inclusion probability (the sampling itself is judge.annotate
    export's: ``human_labels.choose``); every column kept as it came."""
    from judge.annotation.human_labels import choose

    if n <= 0:
        raise UserError("--n must be a positive number of records")
    require_columns(records, stratify, source="records", flag_hint="Fix --stratify.")
    picked = choose(
        records,
        strategy="stratified" if stratify else "random",
        budget=n,
        seed=seed,
        by=stratify,
        allocation=allocation,
    )
    return picked.reset_index(drop=True)


def allocation_of(config: "Config"):
    """--allocation neyman's allocation (None: proportional)."""
    from judge.annotation.human_labels import Neyman

    return Neyman(config.target, config.target_column or "judge_label") if config.allocation == "neyman" else None


def blind_sheet(records: pd.DataFrame, *, hide: list[str], keep: set[str]) -> pd.DataFrame:
    """What annotators see: names masked in the texts, the hidden, judge and earlier-label columns left out
    (``keep`` names what must stay: the id, the texts, the inclusion probabilities)."""
    from judge.core.text import mask_name

    out = records.copy()
    if "name" in out.columns:
        for column in ("prompt", "response"):
            if column in out.columns:
                out[column] = [
                    v if not isinstance(v, str) else mask_name(v, n) for v, n in zip(out[column], out["name"])
                ]
    hidden = [c for c in out.columns if c not in keep and (c in hide or JUDGE_OR_HUMAN_LABEL.search(str(c)))]
    return out.drop(columns=hidden)


# -- two-phase sampling ------------------------------------------------------------------------


def first_phase(path: str, n_records: int) -> tuple[str, list[str]]:
    """The design of the sample in ``path`` (census, random or stratified, and its strata), read from its
    manifest; refused where the manifest is missing, names another design or another number of records."""
    from judge.core.files import file_sha256
    from judge.core.manifest import OUTPUT_DIGEST_KEY, read_manifest

    manifest = read_manifest(path) or {}
    if manifest.get("command") != "judge.data" and (Path(path).parent / "manifest.json").is_file():
        manifest = read_manifest(Path(path).parent) or {}  # judge.annotate export's items.csv
    settings, counts = manifest.get("settings") or {}, manifest.get("counts") or {}
    design = str(manifest.get("sampling_design", ""))
    fix = "sample from the full records instead (with --exclude FILE to leave this sample out)"
    digest = manifest.get(OUTPUT_DIGEST_KEY)
    if counts.get("records", counts.get("items")) != n_records or (digest is not None and digest != file_sha256(path)):
        raise UserError(
            f"{Path(path).name} has an inclusion_probability column but no manifest of the sample it is "
            f"({'none found' if not manifest else 'the file changed since'}), so the probabilities cannot be composed; "
            f"{fix}"
        )
    if design.startswith("census"):
        return "census", []
    if manifest.get("command") == "judge.data" and settings.get("dataset") == "sample":
        return ("stratified", list(settings.get("stratify") or [])) if settings.get("stratify") else ("random", [])
    if manifest.get("command") == "judge.annotate" and settings.get("strategy") in ("random", "stratified"):
        return settings["strategy"], list(settings.get("by") or [])
    raise UserError(
        f"{Path(path).name} is not a fixed-size random or stratified sample "
        f"({clip(design or manifest.get('command'), 50)}), "
        f"so a second sample's probabilities do not compose exactly; {fix}"
    )


def check_composable(phase1: tuple[str, list[str]], stratify: list[str], path: str) -> None:
    """pi1 x pi2 is exact when pi2 is the same for every first sample that holds the record."""
    kind, strata = phase1
    if kind == "census" or not stratify or (kind == "stratified" and set(stratify) <= set(strata)):
        return
    first = "a random sample" if kind == "random" else f"stratified by {', '.join(strata)}"
    raise UserError(
        f"{Path(path).name} is {first}: a second sample stratified by {', '.join(stratify)} would have probabilities "
        "that depend "
        "on which records the first kept (not exact); drop --stratify, stratify by the first's columns, or sample the "
        "full records"
    )


def sample_of_sample(records: pd.DataFrame, config: "Config") -> pd.DataFrame:
    """Two-phase sampling: this draw's pi2 times the first sample's pi1 (``first_phase``)."""
    from judge.annotation.human_labels import INCLUSION

    if len(config.inputs) > 1 or config.exclude:
        raise UserError(
            f"the records already have a column {INCLUSION!r} (a sample): a sample of it takes one input file and no "
            "--exclude "
            "(its probabilities would not compose exactly); sample from the full records instead"
        )
    if config.allocation == "neyman":
        raise UserError(
            f"the records already have a column {INCLUSION!r} (a sample): a Neyman second phase would allocate by the "
            "labels the "
            "first sample happened to keep (its probabilities would not be exact); use proportional allocation or "
            "sample the full records"
        )
    check_composable(first_phase(config.inputs[0], len(records)), list(config.stratify), config.inputs[0])
    pi1 = pd.to_numeric(records[INCLUSION], errors="coerce")
    if pi1.isna().any() or ((pi1 <= 0) | (pi1 > 1)).any():
        raise UserError(
            f"{Path(config.inputs[0]).name}: column {INCLUSION!r} must hold probabilities in (0, 1] for every record; "
            "restore the sample's file as it was written"
        )
    picked = annotation_sample(
        records.assign(**{INCLUSION: pi1}).rename(columns={INCLUSION: "__pi1__"}),
        n=config.n,
        stratify=list(config.stratify),
        seed=config.seed,
    )
    picked[INCLUSION] = picked.pop("__pi1__") * picked[INCLUSION]
    return picked


# -- filter and split --------------------------------------------------------------------------


def parse_values(spec: str, flag: str) -> tuple[str, set[str]]:
    """COL=V1,V2 as (column, {values as text})."""
    column, sep, values = spec.partition("=")
    if not sep or not column.strip():
        raise UserError(f"{flag} {clip(spec)} is not COL=VALUE[,VALUE...]; e.g. {flag} model=gpt4,llama2")
    return column.strip(), {v.strip() for v in values.split(",")}


def value_mask(records: pd.DataFrame, spec: str, flag: str) -> pd.Series:
    from judge.core.records import _id_text, _missing

    column, values = parse_values(spec, flag)
    require_columns(records, [column], source="records", flag_hint=f"Fix {flag}.")
    cells = records[column].map(lambda v: "" if _missing(v) else _id_text(v))
    absent = sorted(values - set(cells))
    if absent:
        raise UserError(
            f"{flag} {column}=...: no record has the value {clip(absent[0], 40)}; values present: "
            f"{short_list(sorted(set(cells)), limit=6, width=24)}"
        )
    return cells.isin(values)


def fraction_groups(records: pd.DataFrame, config: "Config") -> tuple[pd.Series, str, int, int]:
    """A seeded fraction of whole groups: (mask, group column, groups drawn k, groups G)."""
    import numpy as np

    column = config.group or next((c for c in ("prompt_id", "prompt") if c in records.columns), None)
    if column is not None:
        require_columns(records, [column], source="records", flag_hint="Fix --group.")
        keys = records[column].map(lambda v: "\0missing" if v is None or v != v else str(v))
    else:
        keys = records["id"].astype(str)
    groups = sorted(set(keys))
    if len(groups) < 2:
        raise UserError(
            f"--fraction needs at least two groups to draw from; the records have one {column or 'record'}: "
            "name another --group column"
        )
    k = min(len(groups) - 1, max(1, round(config.fraction * len(groups))))
    drawn = set(np.random.default_rng(config.seed).permutation(len(groups))[:k].tolist())
    chosen = {g for i, g in enumerate(groups) if i in drawn}
    return keys.isin(chosen), column or "record", k, len(groups)


def select(records: pd.DataFrame, config: "Config") -> tuple[pd.Series, str, float | None]:
    """The records filter keeps (and split writes to --out), a line saying how they were chosen, and with
    --fraction each kept record's inclusion probability k / G."""
    mask = pd.Series(True, index=records.index)
    for spec in config.keep:
        mask &= value_mask(records, spec, "--keep")
    for spec in config.drop:
        mask &= ~value_mask(records, spec, "--drop")
    said, probability = [], None
    if config.keep or config.drop:
        said.append(
            f"{int(mask.sum())} of {len(records)} records match "
            f"{' and '.join([*config.keep, *(f'not {d}' for d in config.drop)])}"
        )
    if config.fraction is not None:
        drawn, column, k, total = fraction_groups(records[mask], config)
        mask &= drawn.reindex(records.index, fill_value=False)
        probability = k / total
        said.append(f"{k} of {total} {column} groups drawn at random (seed {config.seed}): {int(mask.sum())} records")
    if not mask.any():
        raise UserError("no record is kept; check the --keep/--drop values (or raise --fraction)")
    if config.dataset == "split" and mask.all():
        raise UserError("every record is kept, so --rest would be empty; narrow --keep/--drop or lower --fraction")
    return mask, "; ".join(said), probability


@dataclass
class Config(RecordColumns):
    dataset: str = field(
        metadata={"positional": True, "nargs": "?", "metavar": "ACTION", "help": f"what to do: {', '.join(IMPORTERS)}"}
    )
    inputs: list[str] = field(
        metadata={
            "positional": True,
            "nargs": "*",
            "metavar": "FILE",
            "help": "the released CSVs (chehbouni2024) or "
            "the records to sample, split or filter (JSONL, JSON list, CSV or Parquet; several files get a source "
            "column)",
        }
    )
    out: str = field(metadata={"help": "output records file (.jsonl, .json, .csv or .parquet)"})
    n: int = field(
        default=500,
        metadata={"help": "sample: how many records (default: %(default)s); met exactly, stratified or not"},
    )
    stratify: list[str] = field(
        default_factory=list,
        metadata={"action": "append", "metavar": "COL", "help": "sample: keep these columns' proportions (repeatable)"},
    )
    exclude: list[str] = field(
        default_factory=list,
        metadata={
            "action": "append",
            "metavar": "FILE",
            "help": "sample, split, filter: leave out the ids in FILE, e.g. the judge's training labels (repeatable)",
        },
    )
    seed: int = field(default=0, metadata={"help": "sample, --fraction: seed"})
    label_column: str | None = field(
        default=None,
        metadata={
            "metavar": "COL",
            "help": "sample: add an empty column COL for annotators to fill in (default: none; label with --blind)",
        },
    )
    blind: bool = field(
        default=False,
        metadata={
            "help": "sample: the sheet annotators see: names masked as [NAME], the --hide columns and "
            "every judge or earlier label column left out"
        },
    )
    hide: list[str] = field(
        default_factory=lambda: list(DEFAULT_HIDE),
        metadata={
            "metavar": "COL",
            "help": "sample --blind: the group columns never shown, besides the judge and label columns",
        },
    )
    keep: list[str] = field(
        default_factory=list,
        metadata={
            "action": "append",
            "metavar": "COL=V[,V]",
            "help": "split, filter: keep the "
            "records whose COL is one of the values (repeatable: all must match), e.g. --keep source=gpt4,llama2",
        },
    )
    drop: list[str] = field(
        default_factory=list,
        metadata={
            "action": "append",
            "metavar": "COL=V[,V]",
            "help": "split, filter: leave out the records whose COL is one of the values",
        },
    )
    fraction: float | None = field(
        default=None,
        metadata={"metavar": "P", "help": "split, filter: keep a seeded share P (0 < P < 1) of the groups"},
    )
    allocation: str = field(
        default="proportional",
        metadata={
            "choices": ("proportional", "neyman"),
            "help": "sample --stratify: proportional "
            "or neyman: the sizes that make one category's rate most precise (n_h ~ N_h S_h by the "
            "--target-column labels); pi still exact",
        },
    )
    target: str | None = field(
        default=None,
        metadata={
            "metavar": "CATEGORY",
            "help": "sample --allocation neyman: the category whose rate the sample is for, e.g. refusal",
        },
    )
    target_column: str | None = field(
        default=None,
        metadata={
            "metavar": "COL",
            "help": "sample --allocation neyman: the labels known for every record (default: judge_label)",
        },
    )
    group: str | None = field(
        default=None,
        metadata={
            "metavar": "COL",
            "help": "split, filter --fraction: the column whose values stay "
            "together (default: prompt_id, else prompt, so one prompt never lands on both sides)",
        },
    )
    rest: str | None = field(default=None, metadata={"metavar": "FILE", "help": "split: where the records not kept go"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output"})

    def __post_init__(self):
        check_positive(self, "n")
        check_unique(self, "stratify")
        check_fraction(self, "fraction", low_open=True, high_open=True)
        check_seed(self)
        check_choice(self, "allocation", ("proportional", "neyman"))
        if self.dataset == "sample" and self.allocation == "neyman" and not (self.stratify and self.target):
            raise UserError(
                "--allocation neyman allocates strata for one category's rate: add --stratify COL and --target "
                "CATEGORY "
                "(and --target-column COL, default judge_label)"
            )
        if self.dataset == "sample" and (self.target or self.target_column) and self.allocation != "neyman":
            raise UserError("--target/--target-column apply to --allocation neyman; add it or drop them")
        if self.label_column is not None and not self.label_column.strip():
            raise UserError("--label-column needs a column name, e.g. --label-column label")


def misplaced_flags(config: Config) -> str | None:
    """What is wrong with flags given to an action that does not use them, in words, or None."""
    record_flags = {
        "--exclude": config.exclude,
        "--source-column": config.source_column,
        "--id-column": config.id_column,
        "--prompt-column": config.prompt_column,
        "--text-column": config.text_column,
    }
    sample_flags = {
        "--stratify": config.stratify,
        "--label-column": config.label_column,
        "--blind": config.blind,
        "--allocation": config.allocation != "proportional",
        "--target": config.target,
        "--target-column": config.target_column,
    }
    select_flags = {
        "--keep": config.keep,
        "--drop": config.drop,
        "--fraction": config.fraction is not None,
        "--group": config.group,
    }
    if config.hide != DEFAULT_HIDE and not config.blind:
        return "--hide (it needs --blind) is given without --blind; add --blind or drop --hide"
    uses = {
        "split": {**record_flags, **select_flags, "--rest": config.rest},
        "filter": {**record_flags, **select_flags},
        "sample": {**record_flags, **sample_flags},
    }  # sample last, so a message ends "'sample' only" where it does
    given = [
        flag for flag, value in {**record_flags, **sample_flags, **select_flags, "--rest": config.rest}.items() if value
    ]
    wrong = [flag for flag in given if flag not in uses.get(config.dataset, {})]
    if not wrong:
        return None
    where = [f"'{action}'" for action, flags in uses.items() if wrong[0] in flags]
    return (
        f"{short_list(wrong, limit=4)} do(es) not apply to '{config.dataset}': {wrong[0]} applies to "
        f"{', '.join(where[:-1]) + ' and ' if len(where) > 1 else ''}{where[-1]} only"
    )


def main(config: Config) -> pd.DataFrame:
    with ExitStack() as claims:
        claims.enter_context(
            claim_for(config, "judge.data", inputs=("inputs", "exclude", "label_map"), directory=False)
        )
        if config.rest:
            if Path(config.rest).resolve() == Path(config.out).resolve():
                raise UserError("--rest and --out are the same file; give the records not kept a file of their own")
            claims.enter_context(
                claim_for(config, "judge.data", inputs=("inputs", "exclude", "out"), directory=False, out_field="rest")
            )
        return _main(config)


def _main(config: Config) -> pd.DataFrame:
    if config.dataset not in IMPORTERS:
        raise UserError(f"unknown dataset or action {clip(config.dataset)}; known: {', '.join(IMPORTERS)}")
    if not config.inputs:
        raise UserError("give at least one input file")
    wrong = misplaced_flags(config)
    if wrong:
        raise UserError(wrong)
    if config.dataset == "split" and not config.rest:
        raise UserError(
            "split writes the kept records to --out and the others to --rest; add --rest FILE (or use filter)"
        )
    if config.dataset in ("split", "filter") and not (config.keep or config.drop or config.fraction is not None):
        raise UserError(
            f"{config.dataset} needs --keep COL=V, --drop COL=V or --fraction P to say which records to keep"
        )
    ensure_writable(config.out, overwrite=config.overwrite)
    if config.rest:
        ensure_writable(config.rest, overwrite=config.overwrite)
    manifest = RunManifest("judge.data", config, inputs=[*config.inputs, *config.exclude])
    manifest.update(**(judge_provenance(config.inputs) or {}))  # the judge behind the labels, on to --out and --rest
    if config.dataset == "chehbouni2024":
        records = import_chehbouni2024(config.inputs, encoding=config.encoding)
    else:
        records = read_input_records(config)
        column_map = records.attrs["column_map"]
        if config.dataset == "sample":
            records = user_columns(sampled(records, config, manifest), column_map)
        else:
            records = selected(records, config, manifest, column_map)
    write_records(records, config.out, overwrite=config.overwrite)
    manifest.write(config.out, records=len(records))
    print(f"wrote {len(records)} records to {config.out}")
    return records


def judge_provenance(paths: list[str]) -> dict | None:
    """The judge(s) whose labels the input files carry, as their manifests name them (judge.label, judge.join, or
    an earlier judge.data that carried them on), each with the sha256 of its training_ids.json: written into the
    output's manifest (``judge`` where one judge, ``judges`` always), so that judge.report --human still finds the
    judge's training ids after a filter, split or sample and refuses its own training labels as human ones,
    instead of saying 'not checked' (issue 31, 8e)."""
    from judge.core.files import file_sha256
    from judge.core.manifest import read_manifest
    from judge.kinds.judge_dir import TRAINING_IDS

    found: dict[str, dict] = {}
    for path in paths:
        manifest = read_manifest(path) or {}
        for judge in [manifest.get("judge"), *(manifest.get("judges") or [])]:
            if isinstance(judge, dict) and isinstance(judge.get("directory"), str):
                found.setdefault(judge["directory"], judge)
    if not found:
        return None
    judges = []
    for directory, judge in found.items():
        ids = Path(directory) / TRAINING_IDS
        judges.append({**judge, "training_ids_sha256": file_sha256(ids) if ids.is_file() else None})
    return {"judges": judges, **({"judge": judges[0]} if len(judges) == 1 else {})}


def read_input_records(config: Config) -> pd.DataFrame:
    from judge.core.records import read_records

    records = read_records(
        config.inputs,
        encoding=config.encoding,
        required=(),
        source_column=config.source_column,
        id_column=config.id_column,
        prompt_column=config.prompt_column,
        text_column=config.text_column,
    )
    if config.exclude:
        excluded = set(
            read_records(config.exclude, encoding=config.encoding, required=(), id_column=config.id_column)["id"]
        )
        records = records[~records["id"].isin(excluded)]
        if records.empty:
            raise UserError("every record's id is in --exclude; nothing is left")
        print(f"excluded {len(excluded)} id(s) listed in {', '.join(config.exclude)}; {len(records)} records left")
    return records


def sampled(records: pd.DataFrame, config: Config, manifest: RunManifest) -> pd.DataFrame:
    from judge.annotation.human_labels import INCLUSION, sampling_design

    design = sampling_design(
        "stratified" if config.stratify else "random", config.n, len(records), allocation_of(config)
    )
    if INCLUSION in records.columns:
        picked = sample_of_sample(records, config)
        design = (
            f"two-phase: this draw ({design}) of an earlier sample; "
            "pi_i = pi1_i (the earlier sample's) x pi2_i (this draw's)"
        )
    else:
        picked = annotation_sample(
            records, n=config.n, stratify=list(config.stratify), seed=config.seed, allocation=allocation_of(config)
        )
    manifest.update(sampling_design=design, population=len(records))
    if config.blind:
        picked = blind_sheet(
            picked,
            hide=list(config.hide),
            keep={
                "id",
                "prompt",
                "response",
                INCLUSION,
                SHADOW + "id",
                SHADOW + "prompt",
                SHADOW + "response",
                *records.attrs["column_map"].values(),
            },
        )
    label = config.label_column or ("label" if config.blind else None)
    if label:
        if label in picked.columns:
            raise UserError(
                f"the records already have a column {label!r}; name the annotators' column with --label-column NAME"
                + ("" if config.blind else " (or pass --blind to hide the earlier one)")
            )
        picked[label] = ""
    return picked


def selected(records: pd.DataFrame, config: Config, manifest: RunManifest, column_map: dict) -> pd.DataFrame:
    """filter: the kept records; split: the same, and the rest written to --rest."""
    from judge.annotation.human_labels import INCLUSION

    if config.fraction is not None and INCLUSION in records.columns:
        raise UserError(
            f"the records already have a column {INCLUSION!r} (a sample): a --fraction of it would need both "
            "phases' probabilities; draw the fraction from the full records"
        )
    mask, said, probability = select(records, config)
    kept = records[mask] if probability is None else records[mask].assign(**{INCLUSION: probability})
    print(said)
    manifest.update(selection=said)
    if config.rest:
        rest = user_columns(records[~mask], column_map)
        write_records(rest, config.rest, overwrite=config.overwrite)
        manifest.write(config.rest, records=len(rest), side="rest")
        print(f"wrote {len(rest)} records to {config.rest}")
    return user_columns(kept, column_map)


def build_parser():
    return parser_for(
        Config,
        "python -m judge.data",
        __doc__,
        order=(
            "dataset",
            "inputs",
            "n",
            "stratify",
            "allocation",
            "target",
            "target_column",
            ...,
            RecordColumns,
            "seed",
            "out",
            "overwrite",
        ),
    )


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
