"""Train a judge on human labels: a LoRA classifier (default) or the TF-IDF baseline.

Examples:
    python -m judge.train --train data/sample/annotated_sample.jsonl --label-column label \\
        --taxonomy chehbouni2024 --out runs/judge-sample
    python -m judge.train --train runs/llama7b.jsonl --label-column label --kind tfidf --out runs/tfidf-7b
    python -m judge.train --train runs/llama7b.csv runs/llama13b.csv --kind tfidf \\
        --out runs/tfidf-both   # ids may repeat
    python -m judge.train --train xstest_v2_completions_gpt4.csv xstest_v2_completions_llama2orig.csv \\
        --text-column completion --label-column final_label --taxonomy compliance3 --kind tfidf --out runs/xstest-judge
    python -m judge.train --train coded.csv --label-map '1=answer,2=refusal,3=partial answer' \\
        --taxonomy chehbouni2024 --out runs/judge-coded
    python -m judge.train --train runs/study/labelled.csv --kind ensemble --cv 5 --cv-group template \\
        --taxonomy chehbouni2024 --out runs/study/judge-ensemble      # stacked LoRA + TF-IDF + rules
    python -m judge.train --train runs/study/labelled.csv --kind tfidf --cv 5 --out runs/study/judge-tfidf
    python -m judge.train --train runs/study/labelled.csv --kind tfidf --cv 5 --tune-thresholds kappa \
        --out runs/study/judge-tfidf-tuned   # per-category decision offsets tuned on the out-of-fold predictions
    python -m judge.train --train runs/llama7b.jsonl --tail-tokens 32 --out runs/judge-head-tail   # long outputs
    python -m judge.train --train labels.csv --kind tfidf --no-prompt --mask-names names.txt \\
        --out runs/judge-response-only
    python -m judge.train --train chats.jsonl --label-column propositions.fully_complies --kind tfidf \\
        --cv 5 --pick-view --out runs/judge-chats   # a nested label; the text view chosen by cross-validation
    python -m judge.train --train zh.jsonl --kind tfidf --tfidf-analyzer char_wb --out runs/judge-zh   # no spaces
    python -m judge.train --train labels.csv --kind embed --out runs/judge-embed   # frozen MiniLM + a linear head
    python -m judge.train --train labels.csv --base-model bundled:smollm2 \\
        --out runs/judge-smollm2   # a decoder backbone
    python -m judge.train --train labels.csv --text-column output --prompt-column question \\
        --base-model meta-llama/Llama-2-7b-hf --device cuda --max-length 512 --out runs/judge-llama

--kind ensemble trains the LoRA classifier, TF-IDF + logistic regression and the keyword rules
(--members picks two or more), then a logistic-regression stacker on their out-of-fold probabilities
from folds grouped by --cv-group (default: template, else prompt when prompts repeat), so the stacker never
sees a member's prediction
about a template that member trained on. --cv K (any kind) writes OUT/cv/oof.jsonl and the agreement
report judge.agree would write (OUT/cv/agreement.*): the agreement to expect on unseen templates,
known before any unlabelled output is judged. Both cost K extra trainings of each trained member.

The output directory is a standard peft adapter (PeftModel.from_pretrained loads it onto the base
model) with the classification head, plus judge.json (backend, labels, temperature), taxonomy.yaml,
manifest.json (settings, data fingerprint, validation metrics) and a model card (README.md).

A prompt given as a list of chat messages ([{"role": ..., "content": ...}, ...], or its JSON text) is
read as the conversation (the base model's chat template where its tokenizer has one, else one
"role: content" line per turn); when a long one would crowd the response
out of --max-length, it keeps its latest turns (its last half-window of tokens). A category of 10% or
more of the labels that the judge never predicts on held-out records is warned of and recorded in
judge.json's training_notes (--refuse-degenerate: not saved).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

from judge.core.config import RecordColumns, field_like, parser_for, run_command
from judge.core.errors import UserError
from judge.core.taxonomy import load_taxonomy
from judge.kinds import member_kinds, trainable_kinds
from training.build import CV_DIR, TrainConfig, summary_line, train_judge
from training.kinds import trained_kinds, trainer


@dataclass
class Config(TrainConfig):
    # the kinds to choose from are the registry's, which training/ (below judge.kinds) cannot import
    kind: str = field_like(TrainConfig, "kind", choices=trainable_kinds)
    members: list[str] = field_like(TrainConfig, "members", choices=member_kinds)

    def __post_init__(self):
        super().__post_init__()
        refuse_foreign_settings(self)


def settings_taken(kind: str, members: list[str]) -> set[str]:
    taken = set(trainer(kind).settings)
    if "members" in taken:
        for member in members:
            taken |= set(trainer(member).settings)
    return taken


def refuse_foreign_settings(config: TrainConfig) -> None:
    """A setting no kind of this run takes is refused in one line, naming the kinds that take it."""
    owners = {kind: set(trainer(kind).settings) for kind in trained_kinds()}
    settings = set().union(*owners.values())
    defaults = {
        f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
        for f in dataclasses.fields(TrainConfig)
        if f.name in settings
    }
    taken = settings_taken(config.kind, config.members)
    foreign = [name for name, default in defaults.items() if name not in taken and getattr(config, name) != default]
    if foreign:
        takers = [trainer(kind).title for kind, names in owners.items() if names & set(foreign)]
        flags = ", ".join("--" + n.replace("_", "-") for n in foreign)
        one = len(foreign) == 1
        raise UserError(
            f"{flags} only {'applies' if one else 'apply'} to {' or '.join(takers)}; drop {'it' if one else 'them'} "
            f"for --kind {config.kind}"
        )


def main(config: Config) -> dict:
    def cv_report(judge_dir, metrics):
        if "cv" in metrics:
            write_cv_report(config, metrics, judge_dir)

    metrics = train_judge(config, before_commit=cv_report)
    print(f"trained {config.kind} judge -> {config.out}: {summary_line(metrics)}")
    return metrics


def write_cv_report(config: Config, metrics: dict, judge_dir) -> None:
    """JUDGE/cv/: the agreement the judge reached on labels its fold's model never saw, as judge.agree writes it."""
    from pathlib import Path

    from judge.analysis.agreement import agreement_analysis
    from judge.analysis.results import opt
    from judge.core.records import read_records
    from judge.render.agreement import ci_text, write_agreement_report
    from judge.render.tables import Style, tex_label_for

    folder = Path(judge_dir) / CV_DIR
    oof = read_records(folder / "oof.jsonl", required=())
    cv = metrics["cv"]
    by = cv["group"] if cv["group"] in oof.columns and oof[cv["group"]].nunique() <= 40 else None
    result = agreement_analysis(
        oof,
        gold=config.label_column,
        pred="oof_label",
        taxonomy=load_taxonomy(Path(judge_dir) / "taxonomy.yaml"),
        n_boot=1000,
        seed=config.seed,
        by=by,
    )
    result.pred_name = f"out-of-fold {config.kind} judge ({cv['folds']} folds grouped by {cv['group'] or 'record'})"
    result.gold_name = f"human labels ({config.label_column})"
    style = Style(tex_label=tex_label_for(Path(config.out) / CV_DIR))
    write_agreement_report(result, folder, style=style)
    print(
        f"cross-validated agreement ({cv['folds']} folds grouped by {cv['group'] or 'record'}): kappa "
        f"{style.fmt(result.cohen_kappa)} "
        f"{ci_text(result.ci.cohen_kappa, opt(result.ci.reasons, {}).get('cohen_kappa'), style)}, "
        f"macro-F1 {style.fmt(result.macro_f1)} -> {Path(config.out) / CV_DIR}"
    )


def build_parser():
    # every kind's training options (``training.kinds.Trainer.options``: LoRA's --base-model ... --device) are
    # fields of TrainConfig, so their flags come from the same fields, after the run's own settings
    return parser_for(
        Config,
        "python -m judge.train",
        __doc__,
        order=(
            "train",
            "label_column",
            RecordColumns,
            "taxonomy",
            "label_map",
            "kind",
            "members",
            "cv",
            "cv_group",
            ...,
            "mask_names",
            "mask_names_from",
            "no_prompt",
            "progress",
            "verbose",
            "out",
            "overwrite",
        ),
    )


if __name__ == "__main__":
    sys.exit(run_command(build_parser, Config, main))
