"""Plan before sampling: how many human labels each design and estimator needs for a target half-width.

Examples:
    # a pilot: judge labels on every output, human labels on ~100 of them (blank elsewhere)
    python -m judge.plan runs/study/pilot.jsonl --group identity --judge-label judge_label --human label \\
        --category refusal --reference white --taxonomy chehbouni2024 --half-width 0.05 --out runs/study/plan
    # + the Poisson design (the judge's confidence), cross-fitted PPI (out-of-fold labels on the pilot), the
    #   model's rate (clustered by prompt) and the probe a transport check needs
    python -m judge.plan runs/study/pilot.jsonl --group identity --human label --category refusal --reference white \\
        --taxonomy chehbouni2024 --confidence-column judge_confidence --oof oof_label --estimand model \\
        --half-width 0.08 --margin 0.05 --out runs/study/plan-model
    # no pilot file: a stated confusion matrix per group (JSON or YAML)
    python -m judge.plan --confusion pilot.yaml --reference white --half-width 0.05 --out runs/study/plan-stated

From the pilot each group's confusion between the judge's and the human's indicator of --category is estimated
(the judge's rate is known exactly from its labels on every output), and the analytic variance of judge.report's
estimator (judge.stats.ppi) is solved for the number of human labels that gives every group rate (+-
--half-width) and every gap to --reference (+- --gap-half-width) that half-width: per design (random, stratified
by group, Neyman, uncertainty-driven Poisson) and estimator (human labels alone, PPI with a judge trained on
other labels, cross-fitted PPI), with the allocation across groups. The pilot's own uncertainty is carried in by a
bootstrap of its labelled outputs: n (at the pilot's estimate), a 90% interval and a conservative budget
(--conservative quantile).

--estimand outputs (the default) plans for the rate of these outputs (finite population, what judge.report
--no-cluster estimates); --estimand model for the model's rate (prompts drawn anew, clustered by --cluster,
default the prompt): a design effect from the judge's labels over the clusters, and a floor no budget removes.

The stated confusion file: {category: refusal, groups: {muslim: {outputs: 576, judge_rate: 0.30,
judge_1_human_1: 25, judge_1_human_0: 4, judge_0_human_1: 6, judge_0_human_0: 65}, white: {...}}}, each group
optionally with design_effect and clusters (for --estimand model) and oof (out-of-fold counts, the same keys).

Writes OUT/plan.json, plan.md and manifest.json.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from judge.analysis.plan import (
    ESTIMANDS,
    MODEL,
    OUTPUTS,
    PlanResult,
    pilot_from_confusion,
    pilot_from_records,
    plan_labels,
)
from judge.core.config import (
    LABEL_MAP,
    TAXONOMY_HELP,
    RecordColumns,
    check_fraction,
    check_label_map,
    check_positive,
    check_unique,
    parser_for,
    run_command,
)
from judge.core.errors import UserError
from judge.core.files import check_output_directory, read_text
from judge.core.manifest import RunManifest
from judge.core.outputs import claim_for, staged_directory
from judge.core.records import read_records
from judge.core.taxonomy import parse_label_map
from judge.core.yaml_data import load_yaml
from judge.render.plan import render_plan, write_plan
from judge.render.tables import Style
from judge.stats.planning import DESIGNS, METHODS


@dataclass
class Config(RecordColumns):
    out: str = field(metadata={"help": "output directory"})
    reference: str = field(metadata={"help": "reference group: every other group's gap to it is planned"})
    input: str | list[str] = field(
        default_factory=list,
        metadata={
            "positional": True,
            "nargs": "*",
            "help": "the pilot: records with the judge's label on every output and human labels on a sample "
            "(JSONL, JSON list, CSV or Parquet)",
        },
    )
    category: str | None = field(
        default=None,
        metadata={"help": "the category whose rates are planned (e.g. refusal); a --confusion file names it"},
    )
    confusion: str | None = field(
        default=None,
        metadata={"metavar": "FILE", "help": "instead of a pilot file: a stated confusion per group (JSON or YAML)"},
    )
    group: str | None = field(default=None, metadata={"metavar": "COL", "help": "group column of the pilot"})
    judge_label: str = field(default="judge_label", metadata={"metavar": "COL", "help": "the judge's label column"})
    human: str | None = field(
        default=None,
        metadata={
            "metavar": "FILE_OR_COLUMN",
            "help": "the pilot's human labels: a column of the input filled on the sample, or a file of them joined on "
            "id (its --human-label column)",
        },
    )
    human_label: str = field(
        default="label", metadata={"metavar": "COL", "help": "with --human FILE: its label column"}
    )
    oof: str | None = field(
        default=None,
        metadata={
            "metavar": "COL",
            "help": "out-of-fold judge labels on the pilot's human-labelled outputs (judge.train --cv K writes them "
            "in OUT/cv/oof.jsonl; join them on id): plans cross-fitted PPI",
        },
    )
    confidence_column: str | None = field(
        default=None,
        metadata={
            "metavar": "COL",
            "help": "the judge's confidence on every output: plans the uncertain (Poisson) design",
        },
    )
    half_width: float = field(default=0.05, metadata={"help": "target half-width of every group rate's interval"})
    gap_half_width: float | None = field(
        default=None, metadata={"help": "target half-width of every gap's interval (default: --half-width)"}
    )
    estimand: str = field(
        default=OUTPUTS,
        metadata={"choices": tuple(ESTIMANDS), "help": "outputs: the rate of these outputs; model: the model's rate"},
    )
    cluster: str | None = field(
        default=None,
        metadata={"metavar": "COL", "help": "with --estimand model: the cluster column (default: prompt)"},
    )
    design: list[str] = field(
        default_factory=lambda: list(DESIGNS), metadata={"choices": DESIGNS, "help": "designs to plan"}
    )
    method: list[str] = field(
        default_factory=lambda: list(METHODS),
        metadata={
            "choices": METHODS,
            "help": "estimators to plan: human (labels alone), ppi (a judge trained elsewhere), "
            "crossfit (cross-fitted PPI)",
        },
    )
    alpha: float = field(default=0.05, metadata={"help": "1 - the intervals' level"})
    n_boot: int = field(default=200, metadata={"help": "bootstrap resamples of the pilot (0: none)"})
    conservative: float = field(
        default=0.9, metadata={"help": "quantile of the bootstrap plans given as the conservative budget"}
    )
    margin: float | None = field(
        default=None,
        metadata={"help": "a transport margin: adds the probe per group judge.transport needs to PASS at it"},
    )
    seed: int = field(default=0, metadata={"help": "seed of the pilot bootstrap"})
    taxonomy: str | None = field(default=None, metadata={"help": TAXONOMY_HELP})
    label_map: str | None = field(default=None, metadata=LABEL_MAP)
    digits: int = field(default=3, metadata={"help": "decimals in the tables, 0-6"})
    overwrite: bool = field(default=False, metadata={"help": "replace a plan this command wrote before"})

    def __post_init__(self):
        self.input = [self.input] if isinstance(self.input, str) else list(self.input)
        check_label_map(self)
        check_unique(self, "design", "method")
        check_positive(self, "half_width", "gap_half_width")
        check_fraction(self, "alpha", low_open=True, high_open=True)
        check_fraction(self, "conservative", low_open=True, high_open=True)
        check_fraction(self, "margin", low_open=True, high_open=True)
        if self.half_width >= 1 or (self.gap_half_width or 0) >= 2:
            raise UserError("--half-width must be below 1 (a rate's) and --gap-half-width below 2")
        if self.n_boot < 0:
            raise UserError(f"--n-boot must be 0 or more, got {self.n_boot}")
        if bool(self.input) == bool(self.confusion):
            raise UserError("give either a pilot file (with --group, --human, --category) or --confusion FILE")
        if self.input:
            missing = [
                f for f, v in (("--group", self.group), ("--human", self.human), ("--category", self.category)) if not v
            ]
            if missing:
                raise UserError(f"a pilot file needs {', '.join(missing)}; see --help")
        elif self.group or self.human or self.oof or self.confidence_column or self.cluster:
            raise UserError(
                "--group/--human/--oof/--confidence-column/--cluster read a pilot file; with --confusion drop them"
            )


def pilot_of(config: Config):
    if config.confusion:
        path = Path(config.confusion)
        text = read_text(path, what="confusion file", encoding=config.encoding)
        data = load_yaml(text, source=path.name) if path.suffix in (".yaml", ".yml") else _json(text, path.name)
        pilot = pilot_from_confusion(data, source=path.name)
        if config.category and config.category != pilot.category:
            raise UserError(f"--category {config.category} differs from the confusion file's {pilot.category}")
        return pilot
    human_column = [] if Path(config.human).is_file() else [config.human]
    label_columns = [config.judge_label, *human_column, config.group] + ([config.oof] if config.oof else [])
    records = read_records(
        config.input,
        encoding=config.encoding,
        required=(),
        label_columns=label_columns,
        unique_ids=True,
        id_column=config.id_column,
        prompt_column=config.prompt_column,
        text_column=config.text_column,
        source_column=config.source_column,
    )
    human = config.human
    if Path(config.human).is_file():
        table = read_records(
            config.human,
            encoding=config.encoding,
            required=(),
            label_columns=[config.human_label],
            id_column=config.id_column,
        )
        labels = dict(zip(table["id"].astype(str), table[config.human_label]))
        unknown = set(labels) - set(records["id"].astype(str))
        if unknown:
            raise UserError(
                f"{len(unknown)} id(s) of {Path(config.human).name} are not in the pilot records (e.g. "
                f"{sorted(unknown)[0]!r}); check --id-column"
            )
        human = "\0pilot_human"
        records = records.assign(**{human: records["id"].astype(str).map(labels)})
    cluster = config.cluster or ("prompt" if config.estimand == MODEL else None)
    return pilot_from_records(
        records,
        group=config.group,
        judge=config.judge_label,
        human=human,
        category=config.category,
        taxonomy=config.taxonomy,
        label_map=parse_label_map(config.label_map, encoding=config.encoding),
        oof=config.oof,
        confidence=config.confidence_column,
        clusters=cluster,
    )


def _json(text: str, name: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{name} is not valid JSON ({str(exc)[:80]}); fix it or give a .yaml file") from None


def main(config: Config) -> PlanResult:
    with claim_for(
        config, "judge.plan", inputs=("input", "confusion", "human", "taxonomy", "label_map"), directory=True
    ):
        check_output_directory(Path(config.out), overwrite=config.overwrite)
        extra = [p for p in (config.confusion, config.human) if p and Path(p).is_file()]
        manifest = RunManifest("judge.plan", config, inputs=[*config.input, *extra])
        pilot = pilot_of(config)
        result = plan_labels(
            pilot,
            reference=config.reference,
            half_width=config.half_width,
            gap_half_width=config.gap_half_width,
            estimand=config.estimand,
            alpha=config.alpha,
            designs=config.design,
            methods=config.method,
            n_boot=config.n_boot,
            conservative=config.conservative,
            seed=config.seed,
            margin=config.margin,
        )
        style = Style(digits=config.digits)
        with staged_directory(config.out, overwrite=config.overwrite) as staging:
            written = [Path(config.out) / p.name for p in write_plan(result, staging, style=style)]
            manifest.write(staging, n_outputs=result.n_outputs, n_pilot=result.n_pilot)
        print(render_plan(result, style))
        print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
        return result


def build_parser():
    return parser_for(
        Config,
        "python -m judge.plan",
        __doc__,
        order=(
            "input",
            "confusion",
            "group",
            "judge_label",
            "human",
            "category",
            "reference",
            "half_width",
            ...,
            "out",
            "overwrite",
        ),
    )


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
