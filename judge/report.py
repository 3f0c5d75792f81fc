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
as in the rates table, and counted. Outputs a selective judge escalated (judge.label --selective) are outside
the judge's rates too and counted apart, but inside PPI's: people label every one of them (judge.annotate export
--strategy escalated gives them inclusion_probability 1 beside a random check sample of the kept outputs), so
the PPI rate is the human rate over all outputs. The human labels must not be ones the judge was trained on: the
judge directory's training_ids.json (found through the labelled file's manifest, or --judge-dir) is
checked; labelled outputs among those ids are split out of the rates with a warning.

Every human label spent twice (cross-fitted PPI, issue 32):
    python -m judge.report outputs.jsonl --label crossfit_label --group identity --reference white \
        --human sample.csv --cross-fit 5 --kind tfidf --taxonomy chehbouni2024 --out runs/report-xfit

--cross-fit K trains K judges of --kind on K - 1 folds of the human sample (folds grouped by template, else by
the prompt when it repeats; --cv-group COL for another), corrects each fold with the judge that did not see it
and labels the other outputs with the K judges' averaged probabilities (judge.analysis.crossfit). The --label
column (one the input lacks) is filled with the fold-average judge's labels (the judge-only column).

The estimand (--estimand): 'model' (default) is the model's rate, outputs like these with prompts drawn anew,
what a paper claims about a model: PPI and the rates are clustered by the prompt (or --cluster COL), so an
interval also covers the luck of which prompts were written. 'outputs' is the rate among these very outputs
(finite population, the sampling design's variance only, no clusters; same as --no-cluster): narrower, for a
claim about this set of outputs. Every PPI table and JSON says which it estimates.

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

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from judge.analysis.disparity import DisparityResult, disparity_analysis
from judge.analysis.ppi import HumanSample, JudgeTraining, SamplingDesign, human_sample, parse_ppi_lambda
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
from judge.core.errors import UserError
from judge.core.files import check_output_directory
from judge.core.manifest import RunManifest, label_source, read_manifest
from judge.core.outputs import claim_for, staged_directory
from judge.core.records import clean_groups, read_records, source_names
from judge.core.taxonomy import parse_label_map
from judge.kinds import trainable_kinds
from judge.render.disparity import render_disparity, write_disparity_report
from judge.render.plan import add_transport_notes
from judge.render.tables import style_of


@dataclass
class Config(RecordColumns, ReportStyle):
    input: str | list[str] = field(
        metadata={
            "positional": True,
            "nargs": "*",
            "help": "labelled records (JSONL, JSON list, CSV or Parquet); "
            "several files (one per model, say) become one table with a source column, each file's manifest "
            "still naming its judge",
        }
    )
    label: str = field(metadata={"help": "label column to report on (human or judge)"})
    out: str = field(metadata={"help": "output directory"})
    group: list[str] = field(
        default_factory=list,
        metadata={
            "action": "append",
            "metavar": "COL",
            "help": "group column; repeat to split the first by further columns",
        },
    )
    group_names: str | None = field(
        default=None,
        metadata={
            "metavar": "OLD=NEW,...",
            "help": "names the tables and figures show for groups, "
            "e.g. 'xstest_v2_completions_gpt4=GPT-4,...'; auto: drop the words every group's "
            "name shares (file stems of several inputs)",
        },
    )
    reference: str | None = field(
        default=None,
        metadata={"help": "reference group for rate ratios (default: the largest group other than '(missing)')"},
    )
    taxonomy: str | None = field(default=None, metadata={"help": TAXONOMY_HELP})
    coarse: bool = field(default=False, metadata={"help": "report coarse parent categories"})
    human: str | None = field(
        default=None,
        metadata={
            "metavar": "FILE_OR_COLUMN",
            "help": "human labels for a random or stratified subset "
            "of the outputs (a file joined on id, or a column of the input): adds prediction-powered "
            "rates and gaps",
        },
    )
    human_label: str = field(
        default="label", metadata={"metavar": "COL", "help": "with --human FILE: its column of human labels"}
    )
    inclusion_column: str | None = field(
        default=None,
        metadata={
            "metavar": "COL",
            "help": "column (of the --human file, or of the input with --human COLUMN) of each human-labelled output's "
            "inclusion probability; its inverse weights the sample (default: inclusion_probability, written by "
            "judge.data sample and "
            "judge.annotate export; absent: a simple random sample)",
        },
    )
    strata: list[str] = field(
        default_factory=list,
        metadata={
            "action": "append",
            "metavar": "COL",
            "help": "with --human: column of the input the human sample was stratified by (repeat for "
            "several): stratified variance with a finite-population correction; default: independent inclusion",
        },
    )
    judge_dir: str | None = field(
        default=None,
        metadata={
            "help": "with --human: the judge directory whose training ids are checked: human labels among them are "
            "refused, labelled outputs "
            "among them split out with a warning (default: the one named in the labelled file's manifest, which is "
            "also checked without --human)"
        },
    )
    ppi_lambda: str = field(
        default="1",
        metadata={
            "metavar": "L",
            "help": "PPI's lambda: 1 (plain PPI: covered >= 0.95 under four sampling designs in "
            "benchmarks/ppi_coverage.py), "
            "'tuned' (power tuning on the design variance; 0.90 under the unequal-probability design there; for a few "
            "hundred labels a group), "
            "or any value in [0, 1]",
        },
    )
    cluster: str | None = field(
        default=None,
        metadata={
            "metavar": "COL",
            "help": "column whose outputs are correlated draws (a prompt's samples, a template's names): "
            "cluster-robust "
            "intervals, Rao-Scott test and PPI variance, t with G - 1 df "
            "(default: prompt_id or prompt when it repeats)",
        },
    )
    no_cluster: bool = field(
        default=False, metadata={"help": "treat every output as an independent draw (no clustering)"}
    )
    estimand: str = field(
        default="model",
        metadata={
            "choices": ("model", "outputs"),
            "help": "what PPI and the rates estimate: 'model' (default; the model's rate, prompts drawn anew: "
            "clustered by the prompt when it repeats, or --cluster COL) or 'outputs' (the rate among these "
            "outputs: finite population, no clusters, as --no-cluster)",
        },
    )
    cross_fit: int | None = field(
        default=None,
        metadata={
            "metavar": "K",
            "help": "with --human: cross-fitted PPI, K judges of --kind each trained on K - 1 folds of the human "
            "labels, every label used to train and to correct (the --label column is filled with the fold-average "
            "judge's labels when absent)",
        },
    )
    kind: str = field(
        default="tfidf",
        metadata={"choices": trainable_kinds, "help": "with --cross-fit: the judge kind the K judges are"},
    )
    cv_group: str | None = field(
        default=None,
        metadata={
            "metavar": "COL",
            "help": "with --cross-fit: the column whose values stay in one fold (default: template, else the prompt "
            "when it repeats)",
        },
    )
    seed: int = field(default=0, metadata={"help": "with --cross-fit: the folds' and the judges' seed"})
    no_adjust: bool = field(
        default=False,
        metadata={
            "help": "marginal intervals and raw p-values even in tables of more than 5 comparisons "
            "(default there: Bonferroni simultaneous intervals, Holm-adjusted p-values)"
        },
    )
    label_map: str | None = field(default=None, metadata=LABEL_MAP)
    transport: str | None = field(
        default=None,
        metadata={
            "metavar": "FILE",
            "help": "a judge.transport result (transport.json): a group whose check did not PASS is named beside "
            "its rates (a note in disparity.md and on stderr)",
        },
    )
    overwrite: bool = field(default=False, metadata={"help": "replace existing report files"})

    def __post_init__(self):
        self.input = [self.input] if isinstance(self.input, str) else list(self.input)
        if not self.input:
            raise UserError("give the labelled records file(s) to report on")
        parse_ppi_lambda(self.ppi_lambda)
        check_label_map(self)
        check_unique(self, "group")
        self.check_style()
        if self.human is None and self.judge_dir is not None:
            raise UserError(
                "--judge-dir is only used with --human (it checks the human labels against the judge's training ids; "
                "the labelled rows are checked against the judge in the file's manifest)"
            )
        if self.cluster is not None and self.no_cluster:
            raise UserError(
                f"--cluster {self.cluster} and --no-cluster contradict each other; keep one "
                "(--no-cluster treats every output as an independent draw)"
            )
        if self.estimand == "outputs" and self.cluster is not None:
            raise UserError(
                f"--estimand outputs (the rate among these outputs, no clusters) contradicts --cluster {self.cluster}; "
                "drop one (--estimand model clusters by it)"
            )
        if self.estimand == "outputs":
            self.no_cluster = True
        if self.cross_fit is not None:
            if self.human is None:
                raise UserError("--cross-fit trains the judges on the human labels: add --human FILE_OR_COLUMN")
            if self.cross_fit < 2:
                raise UserError(f"--cross-fit needs at least 2 folds, got {self.cross_fit}")
            if self.coarse:
                raise UserError("--cross-fit reports the categories the judges are trained on: drop --coarse")
        elif self.cv_group is not None:
            raise UserError("--cv-group is only used with --cross-fit K; add it or drop --cv-group")
        ppi_only = [
            flag for flag, value in (("--inclusion-column", self.inclusion_column), ("--strata", self.strata)) if value
        ]
        if self.human is None and ppi_only:
            raise UserError(
                f"{', '.join(ppi_only)} describe the human sample and are only used with --human; add --human "
                "FILE_OR_COLUMN or drop them"
            )


def inputs_name(config: Config) -> str:
    """The labelled input(s) as one-line messages name them."""
    return Path(config.input[0]).name if len(config.input) == 1 else f"the {len(config.input)} input files"


def manifest_judges(path: str) -> list[str]:
    """The judge directories a labelled file's manifest names: the judge.label (or judge.join) run's judge, or
    those a judge.data filter, split or sample carried on from its inputs (``judges``)."""
    manifest = read_manifest(path) or {}
    judges = [manifest.get("judge"), *(manifest.get("judges") or [])]
    named = [j.get("directory") for j in judges if isinstance(j, dict)]
    return list(dict.fromkeys(d for d in named if isinstance(d, str) and d))


def _union(sets: list) -> frozenset | None:
    found = [s for s in sets if s is not None]
    return frozenset().union(*found) if found else None


def judge_training(config: Config) -> JudgeTraining:
    """The judge directories named by --judge-dir or by the labelled files' manifests (each file's own, so files
    labelled apart and reported together are still checked), each once, and the union of their training ids.
    Several files, each labelled by its own judge: each judge's ids are applied to its own file's outputs only
    (``by_source``, through the ``source`` column read_records gives them), not the union to every file."""
    from judge.kinds.judge_dir import read_training_ids

    if config.judge_dir is not None:
        if not Path(config.judge_dir).is_dir():
            what = "is a file" if Path(config.judge_dir).exists() else "does not exist"
            raise UserError(
                f"--judge-dir {Path(config.judge_dir).name} {what}; name the judge directory judge.train wrote (it "
                "holds "
                "training_ids.json), or drop the flag to use the one in the labelled file's manifest"
            )
        directories = [config.judge_dir]
    else:
        named = [manifest_judges(path) for path in config.input]
        directories = list(dict.fromkeys(d for dirs in named for d in dirs if Path(d).is_dir()))
    by_directory = {d: read_training_ids(d) for d in directories}
    union = _union(list(by_directory.values()))
    if config.judge_dir is not None or len(config.input) < 2 or len(directories) < 2:
        return JudgeTraining(directories=directories, ids=union)  # one judge behind every file
    own = [_union([by_directory.get(d) for d in dirs]) for dirs in named]
    return JudgeTraining(
        directories=directories,
        ids=union,
        by_source=tuple(zip(source_names(config.input), own)),
        source_column=config.source_column or "source",
    )


def human_labels(records: pd.DataFrame, config: Config, design: SamplingDesign) -> HumanSample:
    """--human: a file of human labels joined on id (its --human-label column), or a column of the input."""
    if Path(config.human).is_file():
        table = read_records(
            config.human,
            encoding=config.encoding,
            required=(),
            label_columns=[config.human_label],
            id_column=config.id_column,
        )
        return human_sample(
            records, table, label_column=config.human_label, design=design, file=config.human, where=inputs_name(config)
        )
    return human_sample(records, config.human, label=config.label, design=design, where=inputs_name(config))


def cross_fitted_judge(records: pd.DataFrame, human: HumanSample, config: Config) -> tuple[pd.DataFrame, dict]:
    """--cross-fit: the K fold judges (training.crossfit), the --label column filled with the fold-average judge's
    labels where the input lacks it, and disparity_analysis's cross-fit arguments."""
    from judge.analysis.crossfit import cross_fit_note, cross_fitted_scores, fold_average_labels
    from judge.analysis.ppi import CrossFitInfo
    from training.crossfit import cross_fit

    fitted = cross_fit(
        records,
        human.labels,
        kind=config.kind,
        k=config.cross_fit,
        taxonomy=config.taxonomy,
        group=config.cv_group,
        seed=config.seed,
    )
    if fitted.warning:
        print(f"warning: {fitted.warning}", file=sys.stderr)
    if config.label in records.columns:
        raise UserError(
            f"--label {config.label}: with --cross-fit it names the new column of the fold-average judge's labels, "
            "but the input has it; pick a name the input lacks (e.g. --label crossfit_label)"
        )
    labels = fold_average_labels(fitted.fold_average)
    records = records.assign(**{config.label: records["id"].astype(str).map(labels).to_numpy()})
    n = len(fitted.out_of_fold)
    info = CrossFitInfo(
        k=fitted.k,
        kind=fitted.kind,
        folds_by=fitted.group,
        n_labelled=n,
        note=cross_fit_note(k=fitted.k, kind=fitted.kind, folds_by=fitted.group, n_labelled=n),
    )
    scores = cross_fitted_scores(fitted.out_of_fold, fitted.fold_average)
    # the judge term reads the same scores (out of fold where a human label is): judge.analysis.crossfit says why
    return records, {"ppi_scores": scores, "cross_fit": info}


def main(config: Config) -> DisparityResult:
    with claim_for(
        config,
        "judge.report",
        inputs=("input", "human", "judge_dir", "taxonomy", "label_map", "transport"),
        directory=True,
    ):
        return _main(config)


def _main(config: Config) -> DisparityResult:
    out_dir = Path(config.out)
    check_output_directory(out_dir, overwrite=config.overwrite)
    manifest = RunManifest(
        "judge.report",
        config,
        inputs=[*config.input] + ([config.human] if config.human and Path(config.human).is_file() else []),
    )
    label_map = parse_label_map(config.label_map, encoding=config.encoding)
    records = read_records(
        config.input,
        encoding=config.encoding,
        required=(),
        label_columns=[*([] if config.cross_fit else [config.label]), *config.group],
        unique_ids=True,  # a repeated id would count one output twice in every rate
        id_column=config.id_column,
        prompt_column=config.prompt_column,
        text_column=config.text_column,
        source_column=config.source_column,
    )
    for warning in clean_groups(records, config.group):  # missing values a group of their own, one spelling each
        print(warning, file=sys.stderr)
    design = SamplingDesign(strata=tuple(config.strata), inclusion_column=config.inclusion_column)
    human = None if config.human is None else human_labels(records, config, design)
    crossfit = {}
    if config.cross_fit is not None:
        records, crossfit = cross_fitted_judge(records, human, config)
    result = disparity_analysis(
        records,
        label=config.label,
        groups=list(config.group),
        taxonomy=config.taxonomy,
        label_map=label_map,
        coarse=config.coarse,
        reference=config.reference,
        group_names=config.group_names,
        clusters=None if config.no_cluster else (config.cluster or "auto"),
        human=human,
        design=design,
        training=judge_training(config),
        ppi_lambda=parse_ppi_lambda(config.ppi_lambda),
        adjust=not config.no_adjust,
        label_source=" + ".join(dict.fromkeys(label_source(path, config.label) for path in config.input)),
        title=config.title,
        where=inputs_name(config),
        **crossfit,
    )
    for warning in result.warnings:
        print(warning, file=sys.stderr)
    style = style_of(config)
    with staged_directory(out_dir, overwrite=config.overwrite) as staging:
        written = [out_dir / p.name for p in write_disparity_report(result, staging, style=style)]
        if config.transport:
            for line in add_transport_notes(config.transport, result, staging, encoding=config.encoding):
                print(f"warning: {line}", file=sys.stderr)
        manifest.write(
            staging,
            n=result.n,
            n_unscored=result.n_unscored,
            **({"n_escalated": result.n_escalated} if result.n_escalated else {}),
            **({"n_human": result.ppi.n_human} if result.ppi else {}),
        )
    print(render_disparity(result, style)[0])
    print(("warning: " if result.reference_tie else "") + f"reference group: {result.reference_note}", file=sys.stderr)
    print(f"clustering: {result.clusters.note}", file=sys.stderr)
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return result


def build_parser():
    return parser_for(
        Config,
        "python -m judge.report",
        __doc__,
        order=(
            "input",
            "label",
            "group",
            "reference",
            "group_names",
            "taxonomy",
            "label_map",
            "coarse",
            "human",
            "human_label",
            "inclusion_column",
            "strata",
            "ppi_lambda",
            "estimand",
            "cross_fit",
            "kind",
            "cv_group",
            "seed",
            "judge_dir",
            ...,
            RecordColumns,
            ReportStyle,
            "out",
            "overwrite",
        ),
    )


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
