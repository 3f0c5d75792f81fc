"""The human annotation round trip: choose outputs, hand them to annotators, read labels back, adjudicate.

Each action has its own flags and help: python -m judge.annotate ACTION --help.

Examples:
    # 1. choose 200 outputs, stratified by identity, for two annotators who must not see the names
    python -m judge.annotate export runs/study/outputs.jsonl --strategy stratified --by identity --budget 200 \\
        --annotators alice bob --blind --taxonomy chehbouni2024 --out runs/study/round1
    # 2a. spreadsheets back (one filled CSV per annotator; the file name names the annotator)
    python -m judge.annotate import runs/study/round1 runs/study/round1/alice.csv runs/study/round1/bob.csv \\
        --taxonomy chehbouni2024 --out runs/study/round1/labels.csv
    # 2b. or a running Label Studio: push the tasks, annotate in the browser, pull the labels
    python -m judge.annotate push runs/study/round1 --url http://127.0.0.1:8080 --title "Round 1"
    python -m judge.annotate pull runs/study/round1 --url http://127.0.0.1:8080 --project 1 \\
        --taxonomy chehbouni2024 --out runs/study/round1/labels.csv
    # 3. disagreements to a third person, then the final label column
    python -m judge.annotate adjudicate runs/study/round1/labels.csv --out runs/study/round1/adjudicate
    python -m judge.annotate resolve runs/study/round1/labels.csv runs/study/round1/adjudicate/adjudicator.csv \\
        --taxonomy chehbouni2024 --out runs/study/labelled.csv
    # 1b. a selective judge's escalated outputs (all of them) and 100 of its kept ones at random, for PPI
    python -m judge.annotate export runs/study/labelled.jsonl --strategy escalated --escalated-column judge_label \
        --budget 100 --taxonomy chehbouni2024 --out runs/study/escalated
    # 4. human labels that are probably wrong (cleanlab on out-of-fold judge probabilities)
    python -m judge.annotate issues runs/study/labelled.csv --label label --taxonomy chehbouni2024 \\
        --out runs/study/issues
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pandas as pd

from judge.annotation import human_labels as annotation
from judge.core.config import (
    LABEL_MAP,
    TAXONOMY_HELP,
    InputEncoding,
    RecordColumns,
    add_action,
    check_choice,
    check_fraction,
    check_label_map,
    check_non_negative,
    check_positive,
    new_parser,
    run_command,
)
from judge.core.errors import UserError, cut, short_list
from judge.core.files import check_output_directory, ensure_writable, json_text, write_text
from judge.core.manifest import RunManifest, read_manifest
from judge.core.outputs import check_apart, claim_for, input_paths, staged_directory
from judge.core.records import SHADOW, read_records, require_columns, user_columns, write_records
from judge.core.sheets import NOTE as SHEET_NOTE
from judge.core.taxonomy import parse_label_map, resolve_taxonomy
from judge.engines import http

ACTIONS = ("export", "import", "push", "pull", "adjudicate", "resolve", "issues")
ITEMS = "items.csv"
TOKEN_VARIABLE = "LABEL_STUDIO_API_KEY"


# -- each action's settings: the pieces some actions share, then one Config per action -------------


@dataclass(kw_only=True)
class Config(InputEncoding):
    """What every action takes (its input paths); the base run_command builds when no action is given."""

    action: ClassVar[str | None] = None
    inputs: list[str] = field(default_factory=list)

    def __post_init__(self):
        for part in type(self).__mro__:  # each shared group of fields checks its own, once
            if "check_part" in vars(part):
                part.check_part(self)
        self.check()

    def check(self) -> None:
        """Each action's own value checks (flags of other actions cannot reach it: argparse refuses them)."""


@dataclass(kw_only=True)
class _Labels:
    taxonomy: str | None = field(
        default=None, metadata={"help": "the categories annotators choose from: " + TAXONOMY_HELP}
    )
    label_map: str | None = field(default=None, metadata=LABEL_MAP)

    def check_part(self) -> None:
        check_label_map(self)


@dataclass(kw_only=True)
class _Annotators:
    annotators: list[str] = field(
        default_factory=list, metadata={"metavar": "COL", "help": "the annotator columns (default: label_*)"}
    )

    def check_part(self) -> None:
        twice = sorted({a for a in self.annotators if self.annotators.count(a) > 1})
        if twice:
            raise UserError(f"--annotators lists {short_list(map(repr, twice))} twice; give each annotator once")


@dataclass(kw_only=True)
class _Written:
    out: str | None = field(default=None, metadata={"help": "output folder"})
    overwrite: bool = field(default=False, metadata={"help": "replace what this action wrote there before"})


@dataclass(kw_only=True)
class _Server:
    url: str = field(default="http://127.0.0.1:8080", metadata={"help": "Label Studio address"})
    token: str | None = field(
        default=None,
        repr=False,
        metadata={  # a credential: never printed, saved, or put in a message
            "help": f"access token (default: ${TOKEN_VARIABLE}; prefer the variable: a flag's value is visible to "
            "other users)"
        },
    )
    timeout: float = field(
        default=60.0,
        metadata={
            "help": "seconds one request to Label Studio may take in all (connecting, the wait and the whole answer)"
        },
    )
    max_answer_mib: float = field(
        default=64.0,
        metadata={"help": "largest answer (one page of tasks) taken from Label Studio, in MiB"},
    )


def _check_one_input(config: Config, what: str) -> None:
    if len(config.inputs) != 1:
        raise UserError(
            f"{config.action} takes one {what}, got {len(config.inputs)}; see python -m judge.annotate {config.action} "
            "--help"
        )


@dataclass(kw_only=True)
class ExportConfig(Config, RecordColumns, _Labels, _Annotators, _Written):
    action: ClassVar[str] = "export"
    inputs: list[str] = field(
        default_factory=list,
        metadata={
            "positional": True,
            "nargs": 1,
            "metavar": "RECORDS",
            "help": "the records to choose from (JSONL, CSV or Parquet)",
        },
    )
    annotators: list[str] = field(
        default_factory=list,
        metadata={"metavar": "NAME", "help": "one spreadsheet per name (default: annotator1 annotator2)"},
    )
    strategy: str = field(
        default="random",
        metadata={
            "help": "random, stratified, uncertain, or escalated (every output a selective judge escalated, plus "
            "--budget of the kept ones at random)"
        },
    )
    escalated_column: str | None = field(
        default=None,
        metadata={"metavar": "COL", "help": "--strategy escalated: the judge's label column (default: judge_label)"},
    )
    by: list[str] = field(
        default_factory=list,
        metadata={"action": "append", "metavar": "COL", "help": "--strategy stratified: strata column (repeatable)"},
    )
    budget: int = field(
        default=100, metadata={"help": "how many items (default: %(default)s; uncertain: the expected number)"}
    )
    confidence_column: str | None = field(
        default=None,
        metadata={
            "metavar": "COL",
            "help": "--strategy uncertain: the judge's confidence "
            "(largest probability, 0-1); the lower, the likelier drawn",
        },
    )
    compare: list[str] = field(
        default_factory=list,
        metadata={
            "nargs": 2,
            "metavar": "COL",
            "help": "--strategy uncertain: two judges' label columns; disagreements more likely drawn",
        },
    )
    uniform_share: float | None = field(
        default=None,
        metadata={
            "metavar": "S",
            "help": "--strategy uncertain: share of the budget spread "
            "evenly over all outputs, so every output can be drawn (0 < S <= 1; default: "
            f"{annotation.UNIFORM_SHARE})",
        },
    )
    exclude: list[str] = field(
        default_factory=list,
        metadata={
            "action": "append",
            "metavar": "FILE",
            "help": "never pick ids in FILE (already labelled; repeatable)",
        },
    )
    blind: bool = field(default=False, metadata={"help": "mask names in the texts and hide the --hide columns"})
    hide: list[str] = field(
        default_factory=lambda: ["name", "identity", "name_list", "gender", "common"],
        metadata={"metavar": "COL", "help": "--blind: columns never shown"},
    )
    show: list[str] = field(
        default_factory=list,
        metadata={"metavar": "COL", "help": "further columns annotators see (unless hidden by --blind)"},
    )
    with_predictions: str | None = field(
        default=None,
        metadata={
            "metavar": "COL",
            "help": "pre-fill Label Studio with this label column (anchors annotators; off by default)",
        },
    )
    seed: int = field(default=0, metadata={"help": "seed for sampling and the spreadsheets' orders"})
    allocation: str = field(
        default="proportional",
        metadata={
            "help": "--strategy stratified: proportional or neyman (sizes n_h ~ N_h S_h "
            "that make the --target category's rate most precise, by the --target-column labels)"
        },
    )
    target: str | None = field(
        default=None,
        metadata={"metavar": "CATEGORY", "help": "--allocation neyman: the category whose rate the sample is for"},
    )
    target_column: str | None = field(
        default=None,
        metadata={
            "metavar": "COL",
            "help": "--allocation neyman: labels known for every record (default: judge_label)",
        },
    )

    def check(self) -> None:
        _check_one_input(self, "records file")
        check_choice(self, "allocation", ("proportional", "neyman"))
        if self.allocation == "neyman" and not (self.strategy == "stratified" and self.target):
            raise UserError(
                "--allocation neyman allocates strata for one category's rate: use --strategy stratified --by COL with "
                "--target CATEGORY (and --target-column COL, default judge_label)"
            )
        if (self.target or self.target_column) and self.allocation != "neyman":
            raise UserError("--target/--target-column apply to --allocation neyman; add it or drop them")
        check_non_negative(self, "seed")
        check_fraction(self, "uniform_share", low_open=True)
        check_choice(self, "strategy", ("random", "stratified", "uncertain", "escalated"))
        if self.escalated_column and self.strategy != "escalated":
            raise UserError("--escalated-column only applies to --strategy escalated")
        check_positive(self, "budget")
        if self.strategy == "stratified" and not self.by:
            raise UserError("--strategy stratified needs --by COL (the strata)")
        if self.by and self.strategy != "stratified":
            raise UserError("--by only applies to --strategy stratified")
        if (self.confidence_column or self.compare) and self.strategy != "uncertain":
            raise UserError("--confidence-column/--compare only apply to --strategy uncertain")
        if self.strategy == "uncertain" and not (self.confidence_column or self.compare):
            raise UserError("--strategy uncertain needs --confidence-column COL or --compare COL_A COL_B")
        if self.uniform_share is not None and self.strategy != "uncertain":
            raise UserError("--uniform-share only applies to --strategy uncertain")
        if self.compare and len(self.compare) != 2:
            raise UserError("--compare takes exactly two label columns (e.g. two judges' labels)")


@dataclass(kw_only=True)
class ImportConfig(Config, _Labels, _Written):
    action: ClassVar[str] = "import"
    inputs: list[str] = field(
        default_factory=list,
        metadata={
            "positional": True,
            "metavar": "PATH",
            "help": "the export folder, then the filled files (CSV per annotator, or Label Studio JSON exports)",
        },
    )
    out: str | None = field(default=None, metadata={"help": "the labelled records file"})


@dataclass(kw_only=True)
class PushConfig(Config, _Server):
    action: ClassVar[str] = "push"
    inputs: list[str] = field(
        default_factory=list,
        metadata={"positional": True, "nargs": 1, "metavar": "FOLDER", "help": "the export folder"},
    )
    title: str = field(default="safeguard-audit", metadata={"help": "project title"})

    def check(self) -> None:
        _check_one_input(self, "export folder")


@dataclass(kw_only=True)
class PullConfig(Config, _Server, _Labels, _Written):
    action: ClassVar[str] = "pull"
    inputs: list[str] = field(
        default_factory=list,
        metadata={
            "positional": True,
            "nargs": 1,
            "metavar": "FOLDER",
            "help": "the export folder the project was pushed from",
        },
    )
    out: str | None = field(default=None, metadata={"help": "the labelled records file"})
    project: int | None = field(default=None, metadata={"help": "project id printed by push"})

    def check(self) -> None:
        _check_one_input(self, "export folder")
        check_positive(self, "project")


@dataclass(kw_only=True)
class AdjudicateConfig(Config, RecordColumns, _Labels, _Annotators, _Written):
    action: ClassVar[str] = "adjudicate"
    inputs: list[str] = field(
        default_factory=list,
        metadata={
            "positional": True,
            "nargs": 1,
            "metavar": "LABELS",
            "help": "records with two or more annotator columns (judge.annotate import's --out)",
        },
    )

    def check(self) -> None:
        _check_one_input(self, "labels file")


@dataclass(kw_only=True)
class ResolveConfig(Config, RecordColumns, _Labels, _Annotators, _Written):
    action: ClassVar[str] = "resolve"
    inputs: list[str] = field(
        default_factory=list,
        metadata={
            "positional": True,
            "metavar": "PATH",
            "help": "the labels file from import, then the adjudicator's filled CSV (or Label Studio JSON)",
        },
    )
    out: str | None = field(default=None, metadata={"help": "the records file with the final labels"})
    label: str = field(default="label", metadata={"help": "the final label column to write"})


@dataclass(kw_only=True)
class IssuesConfig(Config, RecordColumns, _Labels, _Annotators, _Written):
    action: ClassVar[str] = "issues"
    inputs: list[str] = field(
        default_factory=list,
        metadata={
            "positional": True,
            "metavar": "RECORDS",
            "help": "labelled records (several files are joined with a source column)",
        },
    )
    annotators: list[str] = field(
        default_factory=list,
        metadata={"metavar": "COL", "help": "two or more annotator columns instead (cleanlab multiannotator)"},
    )
    label: str = field(default="label", metadata={"help": "the human label column"})
    folds: int = field(default=5, metadata={"help": "cross-validation folds for out-of-fold judge probabilities"})
    cv_group: str | None = field(
        default=None,
        metadata={
            "metavar": "COL",
            "help": "keep each value of COL in one fold (default: template "
            "when present, else prompt when prompts repeat)",
        },
    )
    seed: int = field(default=0, metadata={"help": "seed for the folds"})

    def check(self) -> None:
        check_non_negative(self, "seed")
        if self.folds < 2:
            raise UserError(f"--folds must be at least 2, got {self.folds}")


def _taxonomy(config: Config, labels=()):
    if config.taxonomy is None and not labels:
        raise UserError(
            f"'{config.action}' needs --taxonomy (a preset such as chehbouni2024, or a YAML path): the categories "
            "annotators choose from"
        )
    label_map = parse_label_map(config.label_map, encoding=config.encoding)
    if config.taxonomy is None:
        labels = annotation.one_spelling_each(labels, label_map)
    return resolve_taxonomy(config.taxonomy, labels, label_map=label_map, encoding=config.encoding)


def _given_labels(records: pd.DataFrame, columns: list[str]) -> list:
    return [v for c in columns for v in records[c] if not annotation.blank(v)]


def _records(config: Config, paths, **options) -> pd.DataFrame:
    """A user's records, with the column options (--id-column, --prompt-column, --text-column, --source-column)."""
    records = read_records(
        paths,
        id_column=config.id_column,
        prompt_column=config.prompt_column,
        text_column=config.text_column,
        source_column=config.source_column,
        encoding=config.encoding,
        **options,
    )
    # The annotation round trip keys everything on ids as text (spreadsheets hold text anyway), and
    # annotators read the text form of a response or prompt that was a number or an object.
    own = [SHADOW + c for c, source in records.attrs["column_map"].items() if c == source]
    return records.drop(columns=[SHADOW + "id", *own], errors="ignore")


def _exported(folder: str) -> pd.DataFrame:
    path = Path(folder)
    items = path / ITEMS if path.is_dir() else path
    if not items.is_file():
        raise UserError(f"{folder} is not an export folder (no {ITEMS}); give the folder judge.annotate export wrote")
    # written by export: UTF-8 whatever --encoding the sheets need, formula-like cells guarded (judge.core.sheets)
    return read_records(items, required=(), sheet=True)


def _shown(folder: str) -> dict[str, dict] | None:
    """What the export in ``folder`` gave the annotators (its tasks.json), to check a Label Studio export against."""
    path = Path(folder)
    return annotation.exported_tasks(path / "tasks.json") if path.is_dir() else None


def export(config: ExportConfig) -> dict:
    if not config.out:
        raise UserError("give --out FOLDER for the exported files")
    check_output_directory(config.out, overwrite=config.overwrite)
    taxonomy = _taxonomy(config)
    records = _records(config, config.inputs[0])
    needed = [
        *config.by,
        *config.compare,
        *([config.confidence_column] if config.confidence_column else []),
        *([config.with_predictions] if config.with_predictions else []),
        *config.show,
    ]
    require_columns(
        records,
        needed,
        source=config.inputs[0],
        flag_hint="Fix --by/--compare/--confidence-column/--with-predictions/--show.",
    )
    if records["response"].isna().any():
        records = records[records["response"].notna()]
    if config.exclude:
        excluded = set(
            read_records(
                config.exclude,
                required=(),
                id_column=config.id_column,
                encoding=config.encoding,
                sheet=all(map(_is_items_sheet, config.exclude)),
            )["id"]
        )
        records = records[~records["id"].isin(excluded)]
    if records.empty:
        raise UserError("no records left to export (all excluded or without a response)")
    annotators = config.annotators or ["annotator1", "annotator2"]
    _check_annotators(annotators, records)
    share = annotation.UNIFORM_SHARE if config.uniform_share is None else config.uniform_share
    allocation = (
        annotation.Neyman(config.target, config.target_column or "judge_label")
        if config.allocation == "neyman"
        else None
    )
    picked = annotation.choose(
        records,
        strategy=config.strategy,
        budget=config.budget,
        seed=config.seed,
        by=config.by,
        confidence=config.confidence_column,
        compare=config.compare,
        uniform_share=share,
        taxonomy=taxonomy,
        allocation=allocation,
        escalated=config.escalated_column,
    )
    fields = annotation.task_fields(picked, blind=config.blind, hide=config.hide, show=config.show)
    predictions = picked[config.with_predictions].map(taxonomy.canonical) if config.with_predictions else None
    tasks = annotation.label_studio_tasks(
        fields, predictions=predictions, model_version=config.with_predictions or "judge"
    )
    design = annotation.sampling_design(config.strategy, config.budget, len(records), allocation)
    manifest = RunManifest(
        "judge.annotate export",
        config,
        inputs=[*config.inputs, *config.exclude],
        taxonomy=taxonomy.name,
        sampling_design=design,
        population=len(records),
        **({"uniform_share": share} if config.strategy == "uncertain" else {}),
    )
    with staged_directory(config.out, overwrite=config.overwrite) as staging:
        # items.csv: everything the round needs to read labels back (all columns, never shown to annotators).
        write_records(picked.drop(columns=[c for c in ("label",) if c in picked.columns]), staging / ITEMS, sheet=True)
        write_text(staging / "tasks.json", json_text(tasks, indent=1, ensure_ascii=False) + "\n", overwrite=False)
        write_text(
            staging / "label_config.xml",
            annotation.label_config(
                taxonomy, show=[c for c in fields.columns if c not in ("id", "prompt", "response")]
            ),
            overwrite=False,
        )
        write_text(staging / "GUIDELINES.md", annotation.guidelines(taxonomy, blind=config.blind), overwrite=False)
        for name, sheet in annotation.annotator_sheets(fields, annotators, seed=config.seed).items():
            write_records(sheet, annotation.sheet_path(staging, name), sheet=True)
        manifest.write(staging, items=len(picked), annotators=annotators, blind=config.blind)
    expected = (
        f", expected {config.budget}: a Poisson sample"
        if config.strategy == "uncertain" and len(records) > config.budget
        else ""
    )
    print(
        f"exported {len(picked)} items ({config.strategy}{expected}; design in manifest.json) for "
        f"{', '.join(annotators)} -> {config.out}"
    )
    return {"items": len(picked)}


def _is_items_sheet(path: str) -> bool:
    """An --exclude file that is the items.csv of an earlier export (its cells guarded for spreadsheets)."""
    folder = Path(path).parent
    return Path(path).name == ITEMS and (read_manifest(folder) or {}).get("command") == "judge.annotate export"


def _sheet_readme(name: str) -> str:
    return f"# {name}\n\n{SHEET_NOTE}\n"


def _check_annotators(annotators: list[str], records: pd.DataFrame) -> None:
    """Each annotator's sheet stays inside --out and comes back as a column of its own."""
    taken = [c for c in annotation.check_annotator_names(annotators).values() if c in records.columns]
    if taken:
        raise UserError(
            f"the records already have a column {taken[0]!r}, which an annotator's labels would take; rename that "
            "annotator"
        )


def _write_labels(records: pd.DataFrame, config: Config, what: str, inputs: list[str]) -> pd.DataFrame:
    if not config.out:
        raise UserError("give --out FILE for the labelled records")
    ensure_writable(config.out, overwrite=config.overwrite)
    manifest = RunManifest(f"judge.annotate {what}", config, inputs=inputs)
    write_records(records, config.out, overwrite=config.overwrite)
    manifest.write(config.out, records=len(records))
    return records


def import_(config: ImportConfig | PullConfig, annotations: list | None = None) -> pd.DataFrame:
    if config.out:
        ensure_writable(config.out, overwrite=config.overwrite)
    if len(config.inputs) < 2 and annotations is None:
        raise UserError(
            "import takes the export folder, then the filled files (CSV per annotator, or Label Studio JSON exports)"
        )
    exported = _exported(config.inputs[0])
    taxonomy = _taxonomy(config)
    if annotations is None:
        annotations = []
        for path in map(Path, config.inputs[1:]):
            if path.suffix.lower() == ".json":
                annotations += annotation.label_studio_annotations(
                    path, encoding=config.encoding, shown=_shown(config.inputs[0])
                )
            else:
                annotations += annotation.sheet_annotations(
                    path, path.stem, encoding=config.encoding
                )  # the file name names the annotator
    labelled = annotation.import_annotations(exported, annotations, taxonomy)
    columns = [c for c in labelled.columns if c.startswith("label_")]
    _write_labels(labelled, config, config.action, config.inputs)
    counts = {c: int((labelled[c] != "").sum()) for c in columns}
    print(
        f"imported {sum(counts.values())} labels from {len(columns)} annotator(s) "
        f"({', '.join(f'{c} {n}' for c, n in counts.items())}) -> {config.out}"
    )
    print(f"agreement among them: python -m judge.agree {config.out} --annotators {' '.join(columns)} ...")
    return labelled


def _annotator_columns(records: pd.DataFrame, config: Config) -> list[str]:
    columns = config.annotators or [c for c in records.columns if c.startswith("label_")]
    if len(columns) < 2:
        raise UserError(
            "adjudication needs two or more annotator columns (label_* from judge.annotate import, or --annotators)"
        )
    require_columns(records, columns, source=config.inputs[0], flag_hint="Fix --annotators.")
    return columns


def adjudicate(config: AdjudicateConfig) -> dict:
    if not config.out:
        raise UserError("give --out FOLDER for the adjudication files")
    check_output_directory(config.out, overwrite=config.overwrite)
    records = _records(config, config.inputs[0], required=())
    columns = _annotator_columns(records, config)
    taxonomy = _taxonomy(config, _given_labels(records, columns))
    # Annotators are compared by category (taxonomy and --label-map applied), never by spelling.
    labels = annotation.canonical_labels(records, columns, taxonomy)
    split = annotation.disagreements(labels)
    disputed = records[split].assign(**{c: labels.loc[split, c] for c in columns})
    texts = [c for c in ("prompt", "response") if c in disputed.columns]
    sheet = disputed[["id", *texts, *columns]].assign(label="")
    tasks = [
        {
            "data": {
                annotation.ITEM_ID: r["id"],
                "prompt": r.get("prompt", ""),
                "response": r.get("response", ""),
                "annotator_labels": "; ".join(f"{c}: {r[c]}" for c in columns),
            }
        }
        for _, r in disputed.iterrows()
    ]
    manifest = RunManifest("judge.annotate adjudicate", config, inputs=config.inputs)
    with staged_directory(config.out, overwrite=config.overwrite) as staging:
        write_records(sheet, staging / "adjudicator.csv", sheet=True)
        write_text(staging / "README.md", _sheet_readme("adjudicator.csv"), overwrite=False)
        write_text(staging / "tasks.json", json_text(tasks, indent=1, ensure_ascii=False) + "\n", overwrite=False)
        write_text(
            staging / "label_config.xml", annotation.label_config(taxonomy, show=["annotator_labels"]), overwrite=False
        )
        manifest.write(staging, disagreements=len(disputed), items=len(records))
    share = len(disputed) / len(records)
    print(
        f"{len(disputed)} of {len(records)} items ({share:.1%}) have disagreeing labels -> {config.out}/adjudicator.csv"
    )
    return {"disagreements": len(disputed), "items": len(records)}


def resolve_(config: ResolveConfig) -> pd.DataFrame:
    if len(config.inputs) != 2:
        raise UserError(
            "resolve takes the labels file from import, then the adjudicator's filled CSV (or Label Studio JSON)"
        )
    records = _records(config, config.inputs[0], required=())
    columns = _annotator_columns(records, config)
    path = Path(config.inputs[1])
    rows = (
        annotation.label_studio_annotations(path, encoding=config.encoding)
        if path.suffix.lower() == ".json"
        else annotation.sheet_annotations(path, "adjudicator", encoding=config.encoding)
    )
    taxonomy = _taxonomy(config, _given_labels(records, columns) + [r.label for r in rows])
    adjudicated = {}
    for item, _, value, where in rows:
        if item in adjudicated:
            raise UserError(f"{where}: id {annotation.short(item)} is adjudicated twice; keep one decision per item")
        adjudicated[item] = value
    final = annotation.resolve(records, columns, adjudicated, taxonomy=taxonomy, out_column=config.label)
    _write_labels(final, config, "resolve", config.inputs)
    print(
        f"final labels: {int((~final['adjudicated']).sum())} agreed, {int(final['adjudicated'].sum())} adjudicated -> "
        f"{config.out}"
    )
    return final


def _token(config: PushConfig | PullConfig) -> str:
    token = config.token or os.environ.get(TOKEN_VARIABLE)
    if not token:
        raise UserError(
            f"give the Label Studio access token in {TOKEN_VARIABLE} (or --token; Account & Settings in Label Studio)"
        )
    return token


def _client(config: PushConfig | PullConfig):
    """Label Studio's SDK over judge.engines.http's transport: no redirect followed (a 3xx is refused with its
    target), each answer bounded in size and each request in its whole time."""
    try:
        from label_studio_sdk import LabelStudio
    except ImportError:
        raise UserError("push/pull need the Label Studio SDK: pip install -e '.[annotate]'") from None
    for name, top in (("timeout", 3600.0), ("max_answer_mib", http.MAX_ANSWER_MIB)):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= top:
            raise UserError(f"--{name.replace('_', '-')} must be a number above 0 and at most {top:g}, got {value!r}")
    check_url(config.url)
    transport = http.client(
        config.url,
        timeout=config.timeout,
        max_bytes=int(config.max_answer_mib * http.MIB),
        setting="--max-answer-mib",
        library="httpx",  # the SDK's own HTTP library
    )
    return LabelStudio(
        base_url=config.url,
        api_key=_token(config),
        timeout=config.timeout,
        httpx_client=transport,
        follow_redirects=False,
    )


def check_url(url: object) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"--url must be Label Studio's http(s) address such as http://127.0.0.1:8080, got {cut(url)!r}")


def _masker(config: PushConfig | PullConfig) -> http.Masker:
    """Masks the Label Studio token (in every form) in text taken from the server, should it echo it."""
    return http.Masker([config.token, os.environ.get(TOKEN_VARIABLE)])


def _server_said(exc: Exception, config: PushConfig | PullConfig) -> str:
    """The first line of a server error for a one-line message, the token masked (in every form) should the server
    echo it, before the line is cut: a cut token would escape the mask."""
    text = _masker(config)(str(exc)).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def push(config: PushConfig) -> dict:
    folder = Path(config.inputs[0])
    tasks_path, config_path = folder / "tasks.json", folder / "label_config.xml"
    if not tasks_path.is_file() or not config_path.is_file():
        raise UserError(
            f"{folder} is not an export folder (tasks.json, label_config.xml); run judge.annotate export first"
        )
    tasks = json.loads(tasks_path.read_text(encoding="utf-8"))
    client = _client(config)
    try:
        project = client.projects.create(title=config.title, label_config=config_path.read_text(encoding="utf-8"))
        client.projects.import_tasks(id=project.id, request=tasks)
    except Exception as exc:  # noqa: BLE001 - network and API errors come in many types
        raise UserError(
            f"Label Studio at {config.url} refused the push ({_server_said(exc, config)}); check --url and the token"
        ) from None
    print(f"created project {project.id} ({config.title!r}) with {len(tasks)} tasks at {config.url}")
    print(
        f"when annotated: python -m judge.annotate pull {folder} --url {config.url} --project {project.id} --out "
        "LABELS.csv"
    )
    return {"project": project.id, "tasks": len(tasks)}


def pull(config: PullConfig) -> pd.DataFrame:
    if config.project is None:
        raise UserError("give --project ID (printed by push)")
    if not config.out:
        raise UserError("give --out FILE for the labelled records")
    ensure_writable(config.out, overwrite=config.overwrite)
    # The raw export is kept beside the records: what Label Studio said, for anyone who checks. It is
    # this command's file only when --out is (claim_for checked --out's manifest under --overwrite).
    export_path = Path(config.out).with_suffix(".label-studio.json")
    check_apart(export_path, input_paths([config.inputs, config.taxonomy, config.label_map]), directory=False)
    if export_path.exists() and not (config.overwrite and Path(config.out).exists()):
        raise UserError(
            f"{export_path.name} already exists beside --out and pull writes Label Studio's raw export there; "
            "move it away or choose another --out"
        )
    _taxonomy(config)  # checked here: a missing or bad --taxonomy or --label-map is refused before the server is asked
    client = _client(config)
    try:
        tasks = [
            t.dict() if hasattr(t, "dict") else dict(t) for t in client.tasks.list(project=config.project, fields="all")
        ]
    except Exception as exc:  # noqa: BLE001
        raise UserError(
            f"could not read project {config.project} from {config.url} ({_server_said(exc, config)}); check "
            "--project, --url and the token"
        ) from None
    try:  # annotators by e-mail rather than by a bare user id, so their columns read label_<name>
        users = {u.id: u.email for u in client.users.list() if getattr(u, "email", None)}
    except http.RefusedAnswer as exc:  # a redirect, or an answer too large or not JSON: not a missing permission
        raise UserError(
            f"could not read the users of {config.url} ({_server_said(exc, config)}); check --url"
        ) from None
    except Exception:  # noqa: BLE001 - a token that may not list users: ids it is
        users = {}
    for task in tasks:
        for ann in task.get("annotations") or []:
            who = ann.get("completed_by")
            if isinstance(who, int) and who in users:
                ann["completed_by"] = {"id": who, "email": users[who]}
    # the server's answer, kept as it came but for the token, should the server echo it (never written)
    write_text(export_path, _masker(config)(json_text(tasks, indent=1, default=str)) + "\n", overwrite=config.overwrite)
    return import_(config, annotations=annotation.label_studio_annotations(export_path, shown=_shown(config.inputs[0])))


def issues(config: IssuesConfig) -> pd.DataFrame:
    from training.label_errors import find_label_errors, find_label_errors_multi

    if not config.out:
        raise UserError("give --out FOLDER for the label-issue list")
    check_output_directory(config.out, overwrite=config.overwrite)
    if len(config.annotators) >= 2:
        records = _records(config, config.inputs, label_columns=config.annotators, label_hint="Fix --annotators.")
        result = find_label_errors_multi(
            records,
            annotators=list(config.annotators),
            taxonomy=config.taxonomy,
            folds=config.folds,
            group=config.cv_group,
            seed=config.seed,
            label_map=parse_label_map(config.label_map, encoding=config.encoding),
        )
    else:
        records = _records(config, config.inputs, label_columns=[config.label], label_hint="Fix --label.")
        result = find_label_errors(
            records,
            label=config.label,
            taxonomy=config.taxonomy,
            folds=config.folds,
            group=config.cv_group,
            seed=config.seed,
            label_map=parse_label_map(config.label_map, encoding=config.encoding),
        )
    flagged = result["flagged"]
    manifest = RunManifest("judge.annotate issues", config, inputs=config.inputs, method=result["method"])
    taxonomy = _taxonomy(config, [v for v in flagged["given_label"]]) if len(flagged) else None
    # The same list as an adjudication round: Label Studio tasks showing the given and the suggested label.
    tasks = [
        {
            "data": {
                annotation.ITEM_ID: r["id"],
                "prompt": r.get("prompt", ""),
                "response": r["response"],
                "annotator_labels": f"given: {r['given_label']}"
                + (f" ({r['annotator']})" if "annotator" in r else "")
                + f"; judge suggests: {r['suggested_label']}",
            }
        }
        for _, r in flagged.iterrows()
    ]
    with staged_directory(config.out, overwrite=config.overwrite) as staging:
        write_records(
            user_columns(flagged, records.attrs.get("column_map", {})), staging / "label_issues.csv", sheet=True
        )
        write_text(staging / "README.md", _sheet_readme("label_issues.csv"), overwrite=False)
        write_text(staging / "tasks.json", json_text(tasks, indent=1, ensure_ascii=False) + "\n", overwrite=False)
        if taxonomy is not None:
            write_text(
                staging / "label_config.xml",
                annotation.label_config(taxonomy, show=["annotator_labels"]),
                overwrite=False,
            )
        manifest.write(staging, records=len(records), flagged=len(flagged))
    print(
        f"{len(flagged)} of {len(records)} labels look wrong ({len(flagged) / len(records):.1%}; {result['method']}) "
        f"-> {config.out}/label_issues.csv"
    )
    return flagged


HANDLERS = {
    ExportConfig: export,
    ImportConfig: import_,
    PushConfig: push,
    PullConfig: pull,
    AdjudicateConfig: adjudicate,
    ResolveConfig: resolve_,
    IssuesConfig: issues,
}
DIRECTORY_ACTIONS = ("export", "adjudicate", "issues")  # the others write one records file


def main(config: Config):
    """Run the action whose Config this is (``ExportConfig(...)`` runs export, and so on)."""
    handler = HANDLERS.get(type(config))
    if handler is None:
        raise UserError(
            f"give an action first, one of: {', '.join(ACTIONS)} (e.g. python -m judge.annotate export FILE --out "
            "DIR); see --help"
        )
    if not config.inputs:
        raise UserError(f"give the input file(s) after the action; see python -m judge.annotate {config.action} --help")
    if getattr(config, "out", None) is None:
        return handler(config)
    with claim_for(
        config,
        f"judge.annotate {config.action}",
        inputs=("inputs", "exclude", "taxonomy", "label_map", "with_predictions"),
        directory=config.action in DIRECTORY_ACTIONS,
    ):
        return handler(config)


# -- the command line: one subcommand per action, each with the flags of its Config only -------------

EXPORT_HELP = """Choose outputs for humans to label and write what annotators need.

Every strategy is a probability sample whose exact inclusion probabilities go to the
inclusion_probability column of items.csv (judge.report --human weights the sample by 1 / p) and
whose design is named in manifest.json:
  random      simple random sample without replacement (p = budget / N)
  stratified  --by COL: a simple random sample in each stratum, proportional (p = n_s / N_s), every
              stratum drawn from its own seed
  uncertain   --confidence-column COL (the judge's largest probability) and/or --compare COL_A COL_B:
              Poisson sampling, each output drawn independently with p proportional to the judge's
              uncertainty (1 - confidence, +1 where the two labels disagree), --uniform-share of the
              budget spread evenly so every p > 0, capped at 1; the expected size is the budget
  escalated   --escalated-column COL (a selective judge's labels, judge.label --selective): every output it
              escalated (p = 1: people label them all) and a simple random sample of --budget of the
              outputs it kept (p = budget / N_kept), the check sample PPI corrects the kept labels with
The folder holds tasks.json + label_config.xml (Label Studio), one shuffled CSV per annotator,
GUIDELINES.md, items.csv (what was exported) and manifest.json.

Examples:
    python -m judge.annotate export runs/study/outputs.jsonl --strategy stratified --by identity --budget 200 \\
        --annotators alice bob --blind --taxonomy chehbouni2024 --out runs/study/round1
    python -m judge.annotate export runs/study/labelled.jsonl --strategy uncertain \\
        --confidence-column judge_confidence --budget 100 --exclude runs/study/round1/items.csv \\
        --taxonomy chehbouni2024 --out runs/study/round2
    python -m judge.annotate export runs/study/labelled.jsonl --strategy escalated --escalated-column judge_label \
        --budget 200 --taxonomy chehbouni2024 --out runs/study/escalated
"""
IMPORT_HELP = """Read filled spreadsheets (or Label Studio JSON exports) back: one label_<annotator> column each.

The export folder comes first, then the filled files; a sheet's file name names its annotator.
A label outside the taxonomy, two labels from one annotator on an item, or an id that was never
exported stops the import with a one-line error and writes nothing.

Examples:
    python -m judge.annotate import runs/study/round1 runs/study/round1/alice.csv runs/study/round1/bob.csv \\
        --taxonomy chehbouni2024 --out runs/study/round1/labels.csv
    python -m judge.annotate import runs/study/round1 project-1-export.json --taxonomy chehbouni2024 \\
        --out runs/study/round1/labels.csv
"""
PUSH_HELP = f"""Create a Label Studio project from an export folder (tasks.json, label_config.xml).

Needs `pip install -e '.[annotate]'` and a running server (README, "Labelling with humans"). The
access token comes from {TOKEN_VARIABLE} (or --token); it is never written to a file or a message.

Examples:
    export {TOKEN_VARIABLE}=your-token
    python -m judge.annotate push runs/study/round1 --url http://127.0.0.1:8080 --title "Round 1"
"""
PULL_HELP = f"""Read a Label Studio project's annotations into records with one label_<annotator> column each.

Annotators are named by their e-mail up to the '@' (the whole e-mail where two share that part).
Label Studio's raw export is kept beside --out as OUT.label-studio.json. The token comes from
{TOKEN_VARIABLE} (or --token).

Examples:
    python -m judge.annotate pull runs/study/round1 --url http://127.0.0.1:8080 --project 1 \\
        --taxonomy chehbouni2024 --out runs/study/round1/labels.csv
"""
ADJUDICATE_HELP = """Hand the items whose annotators disagree to a third person (adjudicator.csv, tasks.json).

Annotators are compared by category (taxonomy and --label-map applied), never by spelling.

Examples:
    python -m judge.annotate adjudicate runs/study/round1/labels.csv --out runs/study/round1/adjudicate
    python -m judge.annotate adjudicate runs/study/round1/labels.csv --annotators label_alice label_bob \\
        --taxonomy chehbouni2024 --out runs/study/round1/adjudicate
"""
RESOLVE_HELP = """Write the final label column: the agreed label, or the adjudicator's where annotators disagreed.

Examples:
    python -m judge.annotate resolve runs/study/round1/labels.csv runs/study/round1/adjudicate/adjudicator.csv \\
        --taxonomy chehbouni2024 --out runs/study/labelled.csv
"""
ISSUES_HELP = """List human labels that are probably wrong (cleanlab on out-of-fold judge probabilities).

Folds are grouped by template (or --cv-group); without a template column, by prompt when prompts
repeat. With two or more --annotators, each annotator's labels are checked against the others.

Examples:
    python -m judge.annotate issues runs/study/labelled.csv --label label --taxonomy chehbouni2024 \\
        --out runs/study/issues
    python -m judge.annotate issues runs/study/round1/labels.csv --annotators label_alice label_bob label_carol \\
        --taxonomy chehbouni2024 --folds 5 --out runs/study/issues
"""


def build_parser():
    p = new_parser("python -m judge.annotate", __doc__)
    actions = p.add_subparsers(title="actions", metavar="ACTION", parser_class=type(p))
    reads = ("inputs", _Written, _Labels, RecordColumns)  # the layout of the actions that read records
    add_action(
        actions,
        "export",
        EXPORT_HELP,
        ExportConfig,
        order=(
            *reads,
            "strategy",
            "escalated_column",
            "by",
            "budget",
            "allocation",
            "target",
            "target_column",
            "confidence_column",
            "compare",
            "uniform_share",
            "exclude",
            "annotators",
        ),
    )
    add_action(actions, "import", IMPORT_HELP, ImportConfig, order=("inputs", _Written, _Labels))
    add_action(actions, "push", PUSH_HELP, PushConfig, order=("inputs", _Server))
    add_action(actions, "pull", PULL_HELP, PullConfig, order=("inputs", _Written, _Server, "project", _Labels))
    add_action(actions, "adjudicate", ADJUDICATE_HELP, AdjudicateConfig, order=reads)
    add_action(actions, "resolve", RESOLVE_HELP, ResolveConfig, order=(*reads, "annotators"))
    add_action(actions, "issues", ISSUES_HELP, IssuesConfig, order=(*reads, "label", "annotators"))
    return p


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
