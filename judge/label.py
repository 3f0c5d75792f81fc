"""Label a file of model outputs with a judge.

Examples:
    python -m judge.label --judge runs/judge-sample --input outputs.jsonl --out labelled.jsonl
    python -m judge.label --judge tfidf:runs/tfidf-7b --input llama13b.jsonl --out l.jsonl --prefix judge_
    python -m judge.label --judge rules --taxonomy chehbouni2024 --input outputs.jsonl --out rules.jsonl
    python -m judge.label --judge runs/xstest-judge --input xstest_v2_completions_*.csv --text-column completion \
        --prefix judge_ --out runs/xstest-labelled.jsonl     # several files -> one output with a source column
    python -m judge.label --judge runs/study/judge --selective runs/study/judge.cal.json --input outputs.jsonl \
        --prefix judge_ --out labelled.jsonl      # 'escalate' below the threshold judge.calibrate found
    python -m judge.label --judge runs/study/judge-lora --input labelled.jsonl --only-escalated judge_ \
        --selective runs/study/lora.cal.json --prefix lora_ --out lora.jsonl  # a cascade: what the first escalated
    .venv-vllm/bin/python -m judge.label --judge llm:MODEL_DIR --engine vllm --input outputs.jsonl --out llm.jsonl
    python -m judge.label --judge llm:smollm2 --engine openai --base-url http://127.0.0.1:8000/v1 \\
        --input outputs.jsonl --out llm.jsonl

The output keeps every input column and adds PREFIX+label, PREFIX+confidence, one PREFIX+p_<category>
column per category and PREFIX+unscored_reason. With --selective CAL.json (judge.calibrate's threshold for
this judge; another judge's calibration is refused) the label below the threshold is 'escalate', for people,
never a best guess, and the reason says why; the manifest records the calibration's target, delta, coverage
and sha256. --abstain-below P does the same at a threshold of your own, with no guarantee (it used to write
'unscored' with a best guess). 'escalate', like 'unscored', is reserved: no taxonomy names a category so.
A killed run resumes: rerun the same command and only
the missing ids are labelled (finished rows live in OUT.partial.jsonl until the end). Through a server
(--engine openai) a row whose requests failed every retry is unscored with the reason; the run says
"complete with N failed" and exits 3 (--allow-failed: 0; 2 is bad input), and the same command again asks
again for those rows only (exit 0 once every row is filled).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

from judge.core.config import (
    TAXONOMY_HELP,
    RecordColumns,
    check_choice,
    check_fraction,
    check_label_map,
    check_non_negative,
    check_positive,
    parser_for,
    run_command,
)
from judge.core.devices import THREADS_HELP
from judge.core.errors import UserError, clip, note_failed_rows
from judge.core.outputs import claim_for
from judge.engines import add_engine_arguments
from judge.kinds.lora.precision import CHOICES as PRECISION_CHOICES  # no torch at import: --help stays quick
from judge.run.ray_executor import RAY_FLAGS
from judge.run.runner import Shard

# The heavy imports (pandas, torch, the judges) happen in main(): --help and a bad flag answer at once.


@dataclass
class Config(RecordColumns):
    judge: str = field(
        metadata={
            "help": "judge directory (from judge.train), tfidf:DIR, lora:DIR, rules (English keyword rules: needs "
            "--taxonomy with a refusal and an answer category, or aliases such as 'full refusal'/'full compliance'; "
            "emits only those and failure; warns when most responses are not in the Latin alphabet), llm or llm:MODEL"
        }
    )
    input: str | list[str] = field(
        metadata={
            "nargs": "+",
            "metavar": "FILE",
            "help": "records to label (JSONL, CSV or Parquet); several "
            "files (one per model, say) become one output with a source column",
        }
    )
    out: str = field(metadata={"help": "output file (JSONL, CSV or Parquet)"})
    taxonomy: str | None = field(
        default=None, metadata={"help": "rules/llm judges: " + TAXONOMY_HELP + " (trained judges carry their own)"}
    )
    batch_size: int = field(default=64, metadata={"help": "responses per batch"})
    selective: str | None = field(
        default=None,
        metadata={
            "metavar": "CAL",
            "help": "a calibration file from python -m judge.calibrate for this judge: below its threshold the label "
            "is 'escalate' (for people), never a guess",
        },
    )
    abstain_below: float | None = field(
        default=None,
        metadata={
            "metavar": "P",
            "help": "label 'escalate' when the judge's confidence is below P: --selective with a threshold of your "
            "own, no guarantee",
        },
    )
    only_escalated: str | None = field(
        default=None,
        metadata={
            "metavar": "PREFIX",
            "help": "a cascade's later judge: label only the input rows whose PREFIX+label is 'escalate' (an "
            "earlier judge's output); the others are left out of --out",
        },
    )
    prefix: str = field(
        default="", metadata={"help": "prefix for the added columns, e.g. judge_ (default: %(default)s)"}
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda ..."})
    threads: int = field(default=1, metadata={"help": THREADS_HELP})
    precision: str = field(
        default="auto",
        metadata={
            "help": "LoRA judge: auto (the fastest precision this machine runs natively among "
            "those the judge's training check found to label as fp32 does; fp32 for judges trained "
            "without the check), fp32, bf16 or int8"
        },
    )
    examples: str | None = field(
        default=None, metadata={"help": "llm judge: labelled records to draw few-shot examples from"}
    )
    examples_label_column: str = field(
        default="label", metadata={"metavar": "COL", "help": "llm judge: the --examples file's label column"}
    )
    label_map: str | None = field(
        default=None,
        metadata={
            "metavar": "MAP",
            "help": "llm judge: read the --examples file's coded labels as "
            "categories, 'CODE=CATEGORY,...' or a YAML/JSON/CSV file",
        },
    )
    shots: int = field(default=0, metadata={"help": "llm judge: examples per category"})
    similar_examples: bool = field(
        default=False,
        metadata={"help": "llm judge: pick the examples most similar to each item (default: seeded, the same for all)"},
    )
    rationale: bool = field(
        default=False, metadata={"help": "llm judge: generate a JSON {rationale, label} instead of a bare label"}
    )
    mode: str = field(
        default="score",
        metadata={
            "choices": ("score", "generate"),
            "help": "llm judge: score every category or generate (decode with outlines constraints)",
        },
    )
    prompt_template: str | None = field(
        default=None, metadata={"help": "llm judge: prompt file (default: data/judge_prompts/default.yaml)"}
    )
    seed: int = field(default=0, metadata={"help": "seed for example selection and sampling"})
    progress: bool = field(default=True, metadata={"help": "no progress bar"})
    verbose: bool = field(
        default=False, metadata={"help": "show transformers' load report and warnings (hidden by default)"}
    )
    overwrite: bool = field(default=False, metadata={"help": "replace an existing output (otherwise a rerun resumes)"})
    allow_failed: bool = field(
        default=False,
        metadata={
            "help": "exit 0 when the run completes with rows whose requests failed every retry (an engine's); "
            "by default it exits 3 (2 is bad input), so a script notices; a rerun that fills them exits 0"
        },
    )
    shard: str | None = field(
        default=None,
        metadata={
            "metavar": "I/N",
            "help": "label only share I of N of the batch plan (e.g. 1/4; "
            "resumable like a whole run); python -m judge.join joins the N parts into the whole output",
        },
    )
    # never part of what a resume must match: Ray gives the same bytes
    ray: str | None = field(default=None, metadata=RAY_FLAGS["ray"])  # an address, or "local"
    ray_actors: int | None = field(default=None, metadata=RAY_FLAGS["ray_actors"])
    ray_gpus: float | None = field(default=None, metadata=RAY_FLAGS["ray_gpus"])  # per actor
    # the LLM judge's engine (judge.engines)
    engine: str = field(
        default="hf",
        metadata={
            "help": "llm judge: what runs its model: hf (transformers in this process), vllm (offline, "
            "from the vLLM venv), openai (an OpenAI-compatible server: --base-url; the key in --api-key-env)"
        },
    )
    engine_options: dict | None = field(
        default=None, metadata={"flags": add_engine_arguments}
    )  # that engine's own flags, by field name

    def __post_init__(self):
        from judge.run.ray_executor import check_ray_settings

        Shard.parse(self.shard)
        check_ray_settings(self)
        check_positive(self, "batch_size", "threads")
        check_non_negative(self, "shots")
        check_fraction(self, "abstain_below")
        if self.selective and self.abstain_below is not None:
            raise UserError(
                "--selective and --abstain-below both set a threshold; keep --selective (calibrated) and drop the other"
            )
        check_choice(self, "mode", ("score", "generate"))
        check_label_map(self)
        self.input = [self.input] if isinstance(self.input, str) else list(self.input)
        if not self.input:
            raise UserError("give at least one --input file")
        refuse_foreign_options(self)
        if self.engine != "hf" or self.engine_options:
            from judge.engines import engine_module, engine_options

            engine_module(self.engine)
            engine_options(self.engine, self.engine_options)
        check_choice(self, "precision", PRECISION_CHOICES)


def refuse_foreign_options(config: Config) -> None:
    """The options the chosen judge kind does not take are refused (the kind of --judge DIR read from
    DIR/judge.json first): every kind's Options says what it takes."""
    from judge.kinds import named_kind, parse_spec, refuse_options, specs

    defaults = {}
    for spec in specs():
        defaults.update({f.name: f.default for f in dataclasses.fields(spec.options) if f.name not in defaults})
    given = {
        name: getattr(config, name)
        for name, default in defaults.items()
        if hasattr(config, name) and getattr(config, name) != default
    }
    # A spec that names its kind is checked before its directory is looked at: the option is the first thing wrong.
    kind = named_kind(config.judge) or parse_spec(config.judge)[0]
    refuse_engine_flags(kind, given.pop("engine_options", None), spec=config.judge)
    refuse_options(kind, given, spec=config.judge)


def refuse_engine_flags(kind: str, given: dict | None, *, spec: str) -> None:
    """An engine's flags (--base-url, --dtype ...) reach only a judge that runs a model in an engine: named as typed."""
    from judge.engines import flag
    from judge.kinds import short_spec, spec_of, specs

    if not given or spec_of(kind).runs_engine:
        return
    flags = ", ".join(flag(name) for name in given)
    one = len(given) == 1
    owners = " and ".join(s.title for s in specs() if s.runs_engine)
    raise UserError(
        f"{flags} {'is an engine option' if one else 'are engine options'} of {owners} only, not "
        f"{spec_of(kind).title} (--judge {short_spec(spec)}); drop {'it' if one else 'them'}"
    )


def engine_settings(settings: dict, config: Config) -> None:
    """The engine a rerun must match, its secrets left out; none at all for the default (hf, no flags), so a
    manifest of the in-process LLM judge reads as it did before engines."""
    from judge.engines import engine_options, public_options

    if config.engine == "hf" and not config.engine_options:
        settings.pop("engine", None)
        settings.pop("engine_options", None)
    else:
        settings["engine_options"] = public_options(engine_options(config.engine, config.engine_options))


def settings_for_manifest(config: Config, settings: dict) -> dict:
    values = {k: v for k, v in vars(config).items() if k not in ("engine", "engine_options")}
    return {**values, **{k: settings[k] for k in ("engine", "engine_options") if k in settings}}


def added_columns(judge, prefix: str) -> list[str]:
    """Every column the judge's rows carry (Judge.output_row); the LLM and ensemble judges may add raw."""
    from judge.core.records import probability_column
    from judge.kinds import spec_of

    names = ["label", "confidence", *(probability_column(c) for c in judge.taxonomy.labels), "unscored_reason"]
    if spec_of(judge.kind).writes_raw:
        names.append("raw")
    return [prefix + n for n in names]


def refuse_clashes(records, added: list[str]) -> None:
    """The judge's columns would replace the input's own of the same name: refuse, never drop them."""
    from judge.core.errors import short_list
    from judge.core.records import SHADOW

    own = {c.removeprefix(SHADOW) for c in records.columns}
    clash = [c for c in added if c in own]
    if clash:
        raise UserError(
            f"input already has column(s) {short_list(clash, limit=3)}, which the judge writes; pass --prefix "
            "(e.g. --prefix judge_) or rename them, so the judge's columns do not replace them"
        )


def check_same_precision(out: Path, precision: str | None, requested: str) -> None:
    """A labelled file is finished in the precision it was started in (auto differs between CPUs)."""
    from judge.core.manifest import read_manifest

    before = read_manifest(out)
    if not before or before.get("command") != "judge.label":
        return
    settings = (before.get("identity") or {}).get("settings") or {}
    started = settings.get("precision")
    if "precision" not in settings or started == precision:
        return  # an output of an older version: the settings check says what changed
    cpu = ((before.get("judge") or {}).get("cpu") or {}).get("model")
    raise UserError(
        f"{out.name} was labelled in precision {started}{f' (on {cpu})' if cpu else ''}; --precision {requested} gives "
        f"{precision} here: "
        f"pass --precision {started} to finish it alike, or --overwrite to start again"
    )


def main(config: Config) -> dict:
    with claim_for(
        config,
        "judge.label",
        inputs=("input", "judge", "examples", "prompt_template", "taxonomy", "label_map", "selective"),
        directory=False,
    ):
        return _main(config)


def _main(config: Config) -> dict:
    import contextlib

    from judge.core.devices import torch_threads

    # before any model loads; a vLLM engine or a server sizes its own threads
    with torch_threads(config.threads) if config.engine == "hf" else contextlib.nullcontext():
        return _label(config)


def _label(config: Config) -> dict:
    from judge.core.manifest import fingerprint
    from judge.core.records import file_format, read_records, user_columns, write_records
    from judge.core.taxonomy import ESCALATE, UNSCORED, parse_label_map, resolve_taxonomy
    from judge.kinds import precision_directory, resolve, spec_of
    from judge.kinds.base import JudgeWorker
    from judge.kinds.lora.precision import choose_for, say
    from judge.run.ray_executor import executor_for
    from judge.run.resumable import ResumableRun, failed_line, run_identity

    out = Path(config.out)
    file_format(out)
    records = read_records(
        config.input,
        encoding=config.encoding,
        id_column=config.id_column,
        prompt_column=config.prompt_column,
        text_column=config.text_column,
        source_column=config.source_column,
    )
    column_map = records.attrs["column_map"]
    if config.only_escalated is not None:
        records = escalated_rows(records, config.only_escalated, column_map)
    ref = resolve(
        config.judge
    )  # once: the judge's files hashed here, its load, precision, manifest and Ray actors take them
    # auto is resolved here, once: a resume on a machine where it resolves otherwise is refused, not mixed
    with ref.known():
        choice = choose_for(precision_directory(ref), config.precision, config.device, spec=config.judge)
    settings = {**vars(config), "precision": choice.precision if choice else None}
    engine_settings(settings, config)
    # --batch-size is part of what a rerun must match: some judges' scores depend on their batch.
    run = ResumableRun(
        "judge.label",
        out,
        run_identity(
            settings,
            input=fingerprint(config.input),
            judge=ref.fingerprint,
            **({"calibration": fingerprint([config.selective])} if config.selective else {}),
        ),
        shard=Shard.parse(config.shard),
    )
    refuse_clashes(records, [config.prefix + c for c in ("label", "confidence", "unscored_reason")])
    if not config.overwrite:
        check_same_precision(out, settings["precision"], config.precision)
    previous = run.prepare(overwrite=config.overwrite, count="labelled", unit="rows")
    if previous:
        note_failed_rows((previous.get("counts") or {}).get("failed") or 0)
        return previous

    # the LLM judge reads --examples with the taxonomy; its default is chehbouni2024, as in load_judge
    taxonomy = (
        resolve_taxonomy(
            config.taxonomy or "chehbouni2024",
            label_map=parse_label_map(config.label_map, encoding=config.encoding),
            encoding=config.encoding,
        )
        if (config.taxonomy or config.label_map)
        else None
    )
    options = dict(
        device=config.device,
        precision=choice or "auto",
        examples=config.examples,
        examples_label_column=config.examples_label_column,
        shots=config.shots,
        similar_examples=config.similar_examples,
        rationale=config.rationale,
        mode=config.mode,
        prompt_template=config.prompt_template,
        seed=config.seed,
        verbose=config.verbose,
        engine=config.engine,
        engine_options=config.engine_options,
    )
    make_judge = JudgeWorker(
        ref, taxonomy=taxonomy, options=tuple(options.items())
    )  # picklable: executors build it elsewhere
    judge = make_judge()
    if config.engine == "openai":
        from judge.engines import engine_options
        from judge.engines.openai import concurrency_note

        note = concurrency_note(engine_options(config.engine, config.engine_options), config.batch_size)
        if note:
            print(note, file=sys.stderr)
    if getattr(judge, "engine", None) is not None:  # a served model: never two models' rows in one output
        from judge.engines.fingerprint import check_resume

        check_resume(out, ("judge", "engine"), judge.engine.describe(), resuming=run.checkpoint.path.exists())
    judge.check_columns(records, source=Path(config.input[0]).name if len(config.input) == 1 else "the input")
    calibration, selective = selective_for(config, ref, judge)
    refuse_clashes(records, added_columns(judge, config.prefix))
    if choice:
        say(choice)  # once the judge has loaded: a refused judge gets its one line alone
    run.start(
        settings_for_manifest(config, settings),
        inputs=[*config.input, *([config.selective] if config.selective else [])],
        judge=judge.describe(),
    )
    retried = run.retry_failed(
        lambda row: request_failed(row, config.prefix), lambda ids: retry_rows(judge, records, ids, config)
    )
    labelling = judge.label_run(
        records,
        batch_size=config.batch_size,
        abstain_below=config.abstain_below,
        selective=selective,
        checkpoint=run.checkpoint,
        progress=config.progress,
        prefix=config.prefix,
        shard=run.shard,
        make_worker=make_judge,
        executor=executor_for(config, progress=config.progress),
    )
    labelled = labelling.records
    this_run = retried if retried is not None else labelling.run  # after a retry, the whole pass reuses every batch
    count, seconds = this_run.computed, this_run.seconds
    served = (
        spec_of(judge.kind).runs_engine and judge.engine is not None
    )  # only an engine's requests fail or ignore the constraint
    n_failed, n_outside = engine_counts(labelled, config.prefix) if served else (0, 0)
    label_col = config.prefix + "label"
    n_unscored = int((labelled[label_col] == UNSCORED).sum())
    n_escalated = int((labelled[label_col] == ESCALATE).sum())
    rate = count / seconds if seconds else float("nan")
    total = run.finish(
        labelling.run,
        positions=labelling.positions,
        total=len(records),
        write=lambda: write_records(user_columns(labelled, column_map), out, overwrite=True),
        failed=n_failed,
        throughput={
            "labelled_this_run": count,
            "labelling_seconds": round(seconds, 3),
            "responses_per_second": round(rate, 2),
        },
        counts={
            "labelled": len(labelled),
            "unscored": n_unscored,
            "escalated": n_escalated,
            "no_response": no_response(labelled, config.prefix)[0],
            **({"failed": n_failed, "outside_labels": n_outside} if served else {}),
        },
        # the engine's usage (requests, tokens, failures) at the end
        **({"judge": judge.describe()} if served else {}),
        **selective_manifest(config, calibration, n_escalated, len(labelled)),
    )
    counts = labelled[label_col].value_counts().to_dict()
    done = f"retried {retried.computed} failed, " if retried is not None else ""
    n_missing, missing_line = no_response(labelled, config.prefix)
    print(
        f"labelled {count} responses ({done}{len(labelled) - count - n_missing} resumed"
        + (f", {n_missing} with no response" if n_missing else "")
        + f") in {seconds:.1f}s "
        f"({rate:.1f} responses/s; {total:.1f}s with model loading) -> {out}"
        + (f" (share {run.shard} of {len(records)} rows)" if run.shard else "")
    )
    print(
        "labels: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f"; unscored {n_unscored}"
        + (f"; escalated {n_escalated} (for people)" if calibration or config.abstain_below is not None else "")
        + (f" ({n_outside} outside the categories: the engine ignored the constraint)" if n_outside else "")
    )
    if missing_line:
        print(missing_line)
    if n_failed:
        print(
            failed_line(
                n_failed, f"their requests failed every retry; the reasons are in {config.prefix}unscored_reason"
            )
        )
        note_failed_rows(n_failed)
    return run.manifest.data


def no_response(labelled, prefix: str) -> tuple[int, str | None]:
    """Rows with no response (unscored, never sent to the judge), and a line saying why when some are inputs whose
    generation failed (generation's finish_reason 'failed'): neither labelled now nor resumed."""
    from judge.kinds.base import NO_RESPONSE

    missing = labelled[prefix + "unscored_reason"].astype("string").eq(NO_RESPONSE).fillna(False)
    n_missing = int(missing.sum())
    if not n_missing:
        return 0, None
    finish = labelled["finish_reason"] if "finish_reason" in labelled.columns else None
    n_gen = int((finish[missing].astype("string") == "failed").fillna(False).sum()) if finish is not None else 0
    if not n_gen:
        return n_missing, f"{n_missing} input row(s) have no response: unscored, with the reason"
    return n_missing, (
        f"{n_missing} input row(s) have no response ({n_gen} of them outputs whose generation failed, finish_reason "
        "'failed'): unscored; rerun the generation command to fill them, then label again with --overwrite"
    )


def engine_counts(labelled, prefix: str) -> tuple[int, int]:
    """Rows whose requests failed every retry, and rows whose answer fell outside the categories (an engine's)."""
    from judge.kinds.llm.judge import FAILED, OUTSIDE

    reasons = labelled[prefix + "unscored_reason"].astype("string")
    return int(reasons.str.startswith(FAILED).fillna(False).sum()), int(
        reasons.str.startswith(OUTSIDE).fillna(False).sum()
    )


def request_failed(row: dict, prefix: str) -> bool:
    """A row whose requests failed every retry (an engine's): the same command asks again for it."""
    from judge.kinds.llm.judge import FAILED

    return str(row.get(prefix + "unscored_reason") or "").startswith(FAILED)


def retry_rows(judge, records, ids: set[str], config: Config):
    """Label again the rows whose requests failed every retry (the runner's result; None when none is among
    the records): each row is its own request to an engine, so other batches give them the same values."""
    subset = records[records["id"].astype(str).isin(ids)]
    if not len(subset):
        return None
    return judge.label_run(
        subset,
        batch_size=config.batch_size,
        abstain_below=config.abstain_below,
        selective=selective_for(config, None, judge)[1],
        progress=config.progress,
        prefix=config.prefix,
    ).run


def escalated_rows(records, prefix: str, column_map: dict):
    """A cascade's later judge sees only what the earlier one escalated (its PREFIX+label is 'escalate')."""
    from judge.core.records import SHADOW
    from judge.core.taxonomy import ESCALATE

    column = prefix + "label"
    name = next((c for c in (SHADOW + column, column) if c in records.columns), None)
    if name is None:
        raise UserError(
            f"--only-escalated {clip(prefix)}: the input has no column {clip(column)}; give the prefix the earlier "
            "judge's judge.label --prefix used"
        )
    picked = records[records[name].astype(str) == ESCALATE]
    if picked.empty:
        raise UserError(
            f"--only-escalated {clip(prefix)}: no input row has {clip(column)} 'escalate'; nothing to label"
        )
    picked = picked.reset_index(drop=True)
    picked.attrs = records.attrs
    return picked


def selective_for(config: Config, ref, judge):
    """The calibration --selective names, checked against this judge (with ``ref``), and its cut for the rows."""
    from judge.analysis.selective import check_same_judge, read_calibration
    from judge.kinds.base import Selective

    if not config.selective:
        return None, None
    calibration = read_calibration(config.selective)
    if ref is not None:
        check_same_judge(calibration, ref.fingerprint, judge.taxonomy.name, spec=config.judge, path=config.selective)
    cut = Selective(
        threshold=calibration.threshold if calibration.risk == "accuracy" else None,
        by_label=tuple(sorted(calibration.thresholds.items())) if calibration.risk == "precision" else None,
        source=f"--selective {Path(config.selective).name}",
    )
    return calibration, cut


def selective_manifest(config: Config, calibration, n_escalated: int, n_rows: int) -> dict:
    """What the manifest says about selective labelling: the calibration it rests on and what it kept here."""
    from judge.core.files import file_sha256

    here = {"escalated": n_escalated, "coverage": (n_rows - n_escalated) / n_rows if n_rows else None}
    if calibration is not None:
        return {
            "selective": {
                "calibration": Path(config.selective).name,
                "calibration_sha256": file_sha256(config.selective),
                "risk": calibration.risk,
                "target": calibration.target,
                "delta": calibration.delta,
                **(
                    {"threshold": calibration.threshold}
                    if calibration.risk == "accuracy"
                    else {"thresholds": calibration.thresholds}
                ),
                "coverage_calibration": calibration.coverage,
                "n_calibration": calibration.n,
                "calibration_source": calibration.source,
                **{f"{k}_this_file": v for k, v in here.items()},
            }
        }
    if config.abstain_below is not None:
        return {"selective": {"threshold": config.abstain_below, "calibrated": False, **here}}
    return {}


def build_parser():
    return parser_for(
        Config,
        "python -m judge.label",
        __doc__,
        order=(
            "judge",
            "input",
            "out",
            RecordColumns,
            "taxonomy",
            "batch_size",
            "selective",
            "abstain_below",
            "only_escalated",
            "prefix",
            "device",
            "threads",
            "precision",
            "examples",
            "examples_label_column",
            "label_map",
            "shots",
            "similar_examples",
            "mode",
            ...,
            "engine",
            "engine_options",
            "ray",
            "ray_actors",
            "ray_gpus",
            "shard",
            "allow_failed",
        ),
    )


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
