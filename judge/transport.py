"""Check transport before reusing a judge: is its per-group bias on a new model's outputs within a margin?

Examples:
    # the 13B outputs labelled by a judge trained on 7B; humans labelled a probe of 50 per group (column label)
    python -m judge.transport runs/study/probe-13b.jsonl --group identity --judge-label judge_label --human label \\
        --category refusal --margin 0.05 --taxonomy chehbouni2024 --out runs/study/transport-13b
    # then name a FAIL beside the rates that depend on the judge
    python -m judge.report runs/study/labelled-13b.jsonl --label judge_label --group identity \\
        --transport runs/study/transport-13b/transport.json --out runs/study/disparity-13b

The probe is the new model's outputs that hold both a judge label and a human label (other rows are ignored).
Per group: the judge's bias, judge rate - human rate on the same outputs, with Agresti & Min's paired interval,
and two one-sided tests (TOST) of |bias| < --margin at --alpha: PASS (the 1 - 2 alpha interval lies inside the
margin), FAIL (it lies wholly beyond it), INCONCLUSIVE (the probe cannot tell); the probe size a PASS would
need (power --power at bias 0, judge.plan's formula) is given beside each. The overall verdict is FAIL if any
group fails, else INCONCLUSIVE if any is, else PASS.

Writes OUT/transport.json, transport.md and manifest.json.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from judge.analysis.transport import TransportResult, transport_check
from judge.core.config import (
    LABEL_MAP,
    TAXONOMY_HELP,
    RecordColumns,
    check_fraction,
    check_label_map,
    parser_for,
    run_command,
)
from judge.core.files import check_output_directory
from judge.core.manifest import RunManifest
from judge.core.outputs import claim_for, staged_directory
from judge.core.records import read_records
from judge.core.taxonomy import parse_label_map
from judge.render.plan import render_transport, write_transport
from judge.render.tables import Style


@dataclass
class Config(RecordColumns):
    out: str = field(metadata={"help": "output directory"})
    group: str = field(metadata={"metavar": "COL", "help": "group column"})
    human: str = field(metadata={"metavar": "COL", "help": "the human label column (filled on the probe)"})
    category: str = field(metadata={"help": "the category whose bias is checked (e.g. refusal)"})
    margin: float = field(metadata={"help": "the largest judge bias (judge rate - human rate) acceptable, e.g. 0.05"})
    input: str | list[str] = field(
        default_factory=list,
        metadata={
            "positional": True,
            "nargs": "*",
            "help": "the new model's records, judge-labelled, human labels on the probe (JSONL, CSV or Parquet)",
        },
    )
    judge_label: str = field(default="judge_label", metadata={"metavar": "COL", "help": "the judge's label column"})
    alpha: float = field(default=0.05, metadata={"help": "level of each one-sided test"})
    power: float = field(default=0.8, metadata={"help": "power of the probe size given beside each group"})
    taxonomy: str | None = field(default=None, metadata={"help": TAXONOMY_HELP})
    label_map: str | None = field(default=None, metadata=LABEL_MAP)
    digits: int = field(default=3, metadata={"help": "decimals in the tables, 0-6"})
    overwrite: bool = field(default=False, metadata={"help": "replace a result this command wrote before"})

    def __post_init__(self):
        from judge.core.errors import UserError

        self.input = [self.input] if isinstance(self.input, str) else list(self.input)
        if not self.input:
            raise UserError("give the new model's judge-labelled records holding the human probe")
        check_label_map(self)
        check_fraction(self, "margin", low_open=True, high_open=True)
        check_fraction(self, "alpha", low_open=True, high_open=True)
        check_fraction(self, "power", low_open=True, high_open=True)


def main(config: Config) -> TransportResult:
    with claim_for(config, "judge.transport", inputs=("input", "taxonomy", "label_map"), directory=True):
        check_output_directory(Path(config.out), overwrite=config.overwrite)
        manifest = RunManifest("judge.transport", config, inputs=list(config.input))
        records = read_records(
            config.input,
            encoding=config.encoding,
            required=(),
            label_columns=[config.judge_label, config.human, config.group],
            unique_ids=True,
            id_column=config.id_column,
            prompt_column=config.prompt_column,
            text_column=config.text_column,
            source_column=config.source_column,
        )
        result = transport_check(
            records,
            group=config.group,
            judge=config.judge_label,
            human=config.human,
            category=config.category,
            margin=config.margin,
            taxonomy=config.taxonomy,
            label_map=parse_label_map(config.label_map, encoding=config.encoding),
            alpha=config.alpha,
            power=config.power,
        )
        style = Style(digits=config.digits)
        with staged_directory(config.out, overwrite=config.overwrite) as staging:
            written = [Path(config.out) / p.name for p in write_transport(result, staging, style=style)]
            manifest.write(staging, n_probe=result.n, verdict=result.verdict)
        print(render_transport(result, style))
        print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
        return result


def build_parser():
    return parser_for(
        Config,
        "python -m judge.transport",
        __doc__,
        order=("input", "group", "judge_label", "human", "category", "margin", ..., "out", "overwrite"),
    )


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
