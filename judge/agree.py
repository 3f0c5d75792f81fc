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
    python -m judge.agree heldout.judged.jsonl --gold label --pred judge_label --by identity --by model \\
        --out runs/agree-by-group
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
Predictions must be labels of the taxonomy (aliases and --label-map codes are read): any other
value (a typo, another taxonomy's label such as 'maybe') is an error naming it, as in the gold
column. Two values are reserved: 'unscored' (the judge could not score the output; a blank cell
counts as unscored too) and 'escalate' (a selective judge handed the output to a human); both are
excluded from kappa and alpha and counted beside them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from judge.analysis.agreement import (
    AgreementResult,
    AnnotatorAgreementResult,
    agreement_analysis,
    annotator_agreement_analysis,
    blank,
    by_columns,
    default_cluster,
)
from judge.analysis.results import opt
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
from judge.core.errors import UserError, short_list
from judge.core.files import check_output_directory
from judge.core.manifest import RunManifest, judge_of, label_source
from judge.core.outputs import claim_for, staged_directory
from judge.core.records import clean_groups, read_records
from judge.core.taxonomy import parse_label_map
from judge.render.agreement import render_annotator_agreement, with_ci, write_agreement_report, write_annotator_report
from judge.render.tables import level_text, style_of


@dataclass
class Config(RecordColumns, ReportStyle):
    input: str | list[str] = field(
        metadata={
            "positional": True,
            "nargs": "*",
            "help": "records file(s) (JSONL, CSV or Parquet) with the gold "
            "labels; several files (one per model, say) are joined with a source column (--by source compares them)",
        }
    )
    out: str = field(metadata={"help": "output directory"})
    gold: str | None = field(default=None, metadata={"help": "column of gold (human) labels"})
    pred: str | None = field(
        default=None,
        metadata={
            "help": "column of the judge's (or second annotator's) labels: taxonomy labels, or the reserved "
            "'unscored' / 'escalate' (counted apart); any other value is an error"
        },
    )
    annotators: list[str] = field(
        default_factory=list,
        metadata={
            "metavar": "COL",
            "help": "human annotator columns: alpha among them, "
            "pairwise kappa, each one's kappa vs --gold, and with --pred alpha with the "
            "judge added; without --pred, a report on the annotators alone",
        },
    )
    pred_file: str | None = field(
        default=None, metadata={"help": "take --pred from this file instead, joined on --id-column"}
    )
    taxonomy: str | None = field(default=None, metadata={"help": TAXONOMY_HELP})
    label_map: str | None = field(default=None, metadata=LABEL_MAP)
    coarse: bool = field(
        default=False,
        metadata={"help": "map labels to their coarse parents first (e.g. refusal + harmful refusal -> refused)"},
    )
    bootstrap: int = field(default=1000, metadata={"help": "bootstrap resamples for the intervals"})
    level: float = field(default=0.95, metadata={"help": "confidence level of every interval, in (0, 1)"})
    seed: int = field(default=0, metadata={"help": "bootstrap seed"})
    by: list[str] | str | None = field(
        default=None,
        metadata={
            "action": "append",
            "metavar": "COL",
            "help": "the judge's agreement within each value of COL (e.g. identity): kappa with its interval, "
            "FPR/FNR, judge minus human rate, a test of equal kappas across groups; with --annotators alone, their "
            "alpha and pairwise kappa per "
            "group; repeat for several columns (one table each)",
        },
    )
    cluster: str | None = field(
        default=None,
        metadata={
            "metavar": "COL",
            "help": "intervals resample whole clusters of COL (outputs of one "
            "prompt are correlated; default: prompt when some prompt has several outputs, else items)",
        },
    )
    no_cluster: bool = field(default=False, metadata={"help": "resample outputs one by one even when prompts repeat"})
    alt_test: bool = field(
        default=False,
        metadata={
            "help": "alternative annotator test of --pred against the --annotators columns (needs 2+, better 3+)"
        },
    )
    epsilon: float | None = field(
        default=None,
        metadata={
            "help": "alt-test margin: how much better than the judge a human must be to keep the human (default: 0.15)"
        },
    )
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


def check_options(config: Config) -> None:
    """Combinations that would otherwise be silently ignored, and out-of-range values."""
    if config.pred is None:
        if len(config.annotators) < 2:
            raise UserError(
                "give --gold and --pred (a judge against humans), or two or more --annotators (agreement among humans)"
            )
        extra = [flag for flag, on in (("--alt-test", config.alt_test), ("--pred-file", config.pred_file)) if on]
        if extra:
            raise UserError(f"{', '.join(extra)} need --pred (the judge's labels)")
    elif config.gold is None:
        raise UserError("--pred needs --gold (the human labels to compare with)")
    if config.epsilon is not None and not config.alt_test:
        raise UserError("--epsilon is the alternative annotator test's margin; add --alt-test or drop --epsilon")
    if config.epsilon is not None and not 0 <= config.epsilon < 1:
        raise UserError(
            f"--epsilon must be in [0, 1) (0.1 skilled annotators, 0.2 crowd workers), got {config.epsilon}"
        )
    if config.alt_test and len(config.annotators) < 2:
        raise UserError(
            "--alt-test compares the judge with each human left out: give at least two (better three) --annotators "
            "columns"
        )
    if config.cluster and config.no_cluster:
        raise UserError(f"--cluster {config.cluster} and --no-cluster contradict each other; keep one")
    if config.bootstrap < 0:
        raise UserError(
            f"--bootstrap must be 0 (no intervals) or a positive number of resamples, got {config.bootstrap}"
        )


def main(config: Config) -> AgreementResult | AnnotatorAgreementResult:
    with claim_for(config, "judge.agree", inputs=("input", "pred_file", "taxonomy", "label_map"), directory=True):
        return _main(config)


def _main(config: Config) -> AgreementResult | AnnotatorAgreementResult:
    check_options(config)
    check_output_directory(Path(config.out), overwrite=config.overwrite)
    manifest = RunManifest(
        "judge.agree", config, inputs=config.input + ([config.pred_file] if config.pred_file else [])
    )
    return annotators_only(config, manifest) if config.pred is None else judge_agreement(config, manifest)


def read_config_records(config: Config, *, unique_ids: bool, label_columns: list[str] = ()) -> pd.DataFrame:
    records = read_records(
        config.input,
        encoding=config.encoding,
        id_column=config.id_column,
        prompt_column=config.prompt_column,
        text_column=config.text_column,
        source_column=config.source_column,
        required=(),
        label_columns=label_columns,
        unique_ids=unique_ids,
    )
    # as judge.report's --group: missing values the group '(missing)', one spelling per group
    for warning in clean_groups(records, [c for c in config.by or () if c in records.columns], flag="--by"):
        print(warning, file=sys.stderr)
    return records


def annotators_only(config: Config, manifest: RunManifest) -> AnnotatorAgreementResult:
    records = read_config_records(config, unique_ids=True)  # an item counted twice would inflate n and alpha
    cluster, how = default_cluster(records, cluster=config.cluster, no_cluster=config.no_cluster)
    result = annotator_agreement_analysis(
        records,
        annotators=list(config.annotators),
        gold=config.gold,
        taxonomy=config.taxonomy,
        coarse=config.coarse,
        n_boot=config.bootstrap,
        seed=config.seed,
        label_map=parse_label_map(config.label_map, encoding=config.encoding),
        by=config.by,
        cluster=cluster,
        level=config.level,
    )
    result.cluster.how = how
    style = style_of(config)
    with staged_directory(config.out, overwrite=config.overwrite) as staging:
        write_annotator_report(result, staging, style=style, title=config.title)
        manifest.write(staging, n_items=result.n_items)
    print(render_annotator_agreement(result, style, title=config.title)[0])
    return result


def read_predictions(records: pd.DataFrame, config: Config) -> pd.DataFrame:
    """--pred taken from --pred-file, joined on id: every record must have a row there."""
    preds = read_records(
        config.pred_file, encoding=config.encoding, id_column=config.id_column, required=(), label_columns=[config.pred]
    )
    absent = sorted(set(records["id"]) - set(preds["id"]))
    if len(absent) == len(records):
        raise UserError(f"no id of {', '.join(config.input)} appears in {config.pred_file}; check --id-column")
    if absent:
        raise UserError(
            f"{len(absent)} id(s) of {', '.join(config.input)} have no row in {config.pred_file} (e.g. "
            f"{short_list(map(repr, absent), limit=3)}); "
            "label them too (judge.label resumes) or agree on the common ids by filtering the gold file"
        )
    return records.drop(columns=[config.pred], errors="ignore").merge(preds[["id", config.pred]], on="id", how="left")


def judge_agreement(config: Config, manifest: RunManifest) -> AgreementResult:
    style = style_of(config)
    out_dir = Path(config.out)
    # A repeated id would count one output twice (n and kappa inflated): refused as judge.label does.
    records = read_config_records(config, label_columns=[config.gold], unique_ids=True)
    if config.pred_file:
        records = read_predictions(records, config)
    pred_source = config.pred_file or config.input[0]
    judge = judge_of(pred_source, config.pred) if len(config.input) == 1 or config.pred_file else None
    cluster, how = default_cluster(
        records[~blank(records[config.gold])], cluster=config.cluster, no_cluster=config.no_cluster
    )
    result = agreement_analysis(
        records,
        gold=config.gold,
        pred=config.pred,
        taxonomy=config.taxonomy,
        coarse=config.coarse,
        annotators=list(config.annotators),
        n_boot=config.bootstrap,
        seed=config.seed,
        by=config.by,
        alt_test_epsilon=(0.15 if config.epsilon is None else config.epsilon) if config.alt_test else None,
        label_map=parse_label_map(config.label_map, encoding=config.encoding),
        emittable=(judge or {}).get("emittable_categories"),
        cluster=cluster,
        level=config.level,
    )
    result.cluster.how = how
    result.title, result.pred_name = config.title, label_source(pred_source, config.pred, default=config.pred)
    result.gold_name, result.pred_precision = f"human labels ({config.gold})", (judge or {}).get("precision")
    with staged_directory(out_dir, overwrite=config.overwrite) as staging:
        written = [out_dir / p.name for p in write_agreement_report(result, staging, style=style)]
        manifest.write(
            staging,
            n=result.n,
            n_unscored=result.n_unscored,
            **({"n_escalated": result.n_escalated} if result.n_escalated else {}),
        )
    # a zero-width interval is never printed: where the judge predicts one class, say so instead
    reason = opt(result.ci.reasons, {}).get("cohen_kappa")
    kappa_ci = f"({reason})" if reason else f"{style.fmt_ci(result.ci.cohen_kappa)} ({level_text(result.ci.level)})"
    print(
        f"n={result.n} kappa={style.fmt(result.cohen_kappa)} {kappa_ci} "
        f"alpha={style.fmt(result.krippendorff_alpha)} macro-F1={style.fmt(result.macro_f1)} "
        f"unscored={result.n_unscored} ({100 * result.unscored_rate:.1f}%)"
        + (f" escalated={result.n_escalated} (to people, outside the metrics)" if result.n_escalated else "")
        + (f" precision={result.pred_precision}" if result.pred_precision else "")
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if result.alt_test:
        print(f"alt-test: {'PASS' if result.alt_test.passed else 'FAIL'}: {result.alt_test.reason}")
        for warning in result.alt_test.warnings:
            print(f"warning: alt-test: {warning}", file=sys.stderr)
    for by in result.by_groups or []:
        test = by.kappa_test
        kappas = ", ".join(
            f"{g} {with_ci(r.cohen_kappa, r.cohen_kappa_ci, style, r.cohen_kappa_ci_reason or None)}"
            for g, r in by.groups.items()
        )
        print(
            f"kappa by {by.column}: {kappas}"
            + (f"; equal-kappa test (Fleiss) p = {test.p_value:.3g}" if test.p_value is not None else "")
        )
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return result


def build_parser():
    return parser_for(
        Config,
        "python -m judge.agree",
        __doc__,
        order=("input", "gold", "pred", "annotators", "pred_file", RecordColumns, ..., ReportStyle, "out", "overwrite"),
    )


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
