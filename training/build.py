"""Train a judge directory from labelled records (the library behind ``python -m judge.train``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

from judge.core.config import (
    LABEL_MAP,
    TAXONOMY_HELP,
    RecordColumns,
    check_choice,
    check_fraction,
    check_label_map,
    check_unique,
)
from judge.core.errors import UserError, clip, short_list
from judge.core.files import check_output_directory
from judge.core.manifest import RunManifest
from judge.core.outputs import claim_for, staged_directory
from judge.core.records import read_records
from judge.core.taxonomy import parse_label_map
from judge.core.text import TextView
from judge.kinds.judge_dir import finish
from judge.kinds.registry import default_members, member_kinds
from judge.render.tables import fmt
from training.examples import check_trainable, labelled_data, stratified_split, text_view_for
from training.kinds import Run, option_fields, trained_kinds, trainer
from training.lora import LoraRecipe

TUNE_THRESHOLDS = ("off", "kappa", "macro-f1")  # --tune-thresholds: off, or the objective (training.thresholds)


@dataclass
class RunSettings(RecordColumns):
    """judge.train's settings that are not a kind's: TrainConfig adds every kind's training options
    (``Trainer.options``: LoRA's base model, epochs, rank ...) as fields of their own."""

    train: list[str] = field(
        metadata={"metavar": "FILE", "help": "labelled records (JSONL, CSV or Parquet); several files are concatenated"}
    )
    out: str = field(metadata={"help": "judge directory to create"})
    label_column: str = field(default="label", metadata={"help": "column with the human labels"})
    taxonomy: str | None = field(default=None, metadata={"help": TAXONOMY_HELP})
    kind: str = field(
        default="lora",
        metadata={
            "help": "lora, the tfidf baseline, or ensemble: LoRA, TF-IDF and the keyword rules "
            "stacked by a logistic regression fitted on grouped out-of-fold predictions"
        },
    )
    val_fraction: float = field(default=LoraRecipe.val_fraction, metadata={"help": "stratified validation share"})
    seed: int = field(default=LoraRecipe.seed, metadata={"help": "seed for split, initialisation and batching"})
    mask_names: bool = field(
        default=True, metadata={"help": "let the judge see the names (they are masked by default)"}
    )
    no_prompt: bool = field(
        default=False,
        metadata={  # the judge reads the response only
            "help": "the judge reads the response only (recorded in the judge directory; labelling never shows it the "
            "prompt): the "
            "response-only ablation, or a judge for prompts it never saw"
        },
    )
    mask_names_from: str | None = field(
        default=None,
        metadata={  # names inside the texts, besides the name column
            "flag": "--mask-names",
            "metavar": "FILE|COL",
            "help": "also mask names that live inside the texts: a file of names, one a line, "
            "or a column holding each record's names (a list, or names separated by ';'); labelling masks them alike",
        },
    )
    pick_view: bool = field(
        default=False,
        metadata={
            "help": "with --cv K: cross-validate both text views, prompt and response or the response only, and keep "
            "the one whose out-of-fold kappa is higher (both scores recorded in judge.json's training_notes; twice the "
            "cross-validation's cost)"
        },
    )
    tune_thresholds: str = field(
        default="off",
        metadata={
            "choices": TUNE_THRESHOLDS,
            "help": "per-category decision offsets tuned on out-of-fold predictions (needs --cv K, or --kind "
            "ensemble's own folds): the label becomes argmax(log p + offset), chosen to maximise the out-of-fold "
            "kappa or macro-F1; the probabilities stay calibrated; offsets and the objective before and after are "
            "recorded in judge.json (default: %(default)s)",
        },
    )
    refuse_degenerate: bool = field(
        default=False,
        metadata={
            "help": "refuse to save a judge that never predicts, on held-out records, a category of 10%% or more of "
            "the training labels (by default it is saved with a warning, recorded in judge.json)"
        },
    )
    progress: bool = field(default=True, metadata={"help": "no progress bars"})
    verbose: bool = field(
        default=False,
        metadata={
            "help": "show transformers' load report and warnings (hidden by default: the new "
            "classifier head is expected to be missing from the base model)"
        },
    )
    overwrite: bool = field(default=False, metadata={"help": "replace an existing judge directory"})
    extra: dict = field(
        default_factory=dict, metadata={"internal": True}
    )  # a config file's further recipe settings (check_extra)
    label_map: str | None = field(default=None, metadata=LABEL_MAP)
    cv: int = field(
        default=0,
        metadata={
            "metavar": "K",
            "help": "also cross-validate: K grouped folds, out-of-fold predictions and the "
            "agreement report in OUT/cv/ (what to expect on unseen templates, before labelling anything); the "
            "ensemble uses K folds (5 when K is 0)",
        },
    )
    cv_group: str | None = field(
        default=None,
        metadata={
            "metavar": "COL",
            "help": "records sharing a value of COL stay in one fold (default: "
            "template when present, else prompt when prompts repeat, with a warning, else none)",
        },
    )
    members: list[str] = field(
        default_factory=default_members,
        metadata={  # the kinds whose spec says default_member
            "metavar": "KIND",
            "help": "ensemble: its members, two or more of %(choices)s",
        },
    )  # choices: judge.train's Config

    def __post_init__(self):
        check_label_map(self)
        check_text_view_flags(self)
        kind = trainer(self.kind, needs="train")
        if self.cv == 1 or self.cv < 0:
            raise UserError(f"--cv must be 0 (none) or at least 2 folds, got {self.cv}")
        if self.cv_group is not None and not self.cv and not kind.default_folds:
            raise UserError(
                "--cv-group applies to --cv K (or --kind ensemble, whose stacker is fitted on grouped folds); add --cv "
                "5"
            )
        if "members" in kind.takes:
            for member in self.members:
                trainer(member, needs="fit_member")
            if len(set(self.members)) < 2:
                raise UserError(
                    f"--members takes two or more of {', '.join(member_kinds())}, got {' '.join(self.members)}"
                )
        for name in trained_kinds():  # each kind checks its own settings, as its options' __post_init__ says
            options = trainer(name).options
            if options is not None:
                options(**{f.name: getattr(self, f.name) for f in fields(options)})
        check_choice(self, "tune_thresholds", TUNE_THRESHOLDS)
        if self.tune_thresholds != "off" and not self.cv and not kind.default_folds:
            raise UserError(
                "--tune-thresholds tunes the decision offsets on out-of-fold predictions, which need cross-validation: "
                "add --cv 5"
            )
        if self.pick_view and not self.cv:
            raise UserError("--pick-view chooses the text view by cross-validation: add --cv 5")
        if self.pick_view and self.no_prompt:
            raise UserError("--pick-view and --no-prompt contradict each other: --no-prompt fixes the view; drop one")
        if self.pick_view and kind.default_folds:
            raise UserError(f"--pick-view is not available for --kind {self.kind}; pick the view with --no-prompt")
        check_fraction(self, "val_fraction", high_open=True)
        check_unique(self, "members")
        check_extra(self.extra)
        if self.uses_lora or "embed" in self.kinds:
            from judge.engines.models import check_local_model

            check_local_model(self.base_model)

    @property
    def kinds(self) -> list[str]:
        """The kinds this run trains: the kind, or an ensemble's members."""
        return list(self.members) if "members" in trainer(self.kind, needs="train").takes else [self.kind]

    @property
    def uses_lora(self) -> bool:
        return "lora" in self.kinds


def _with_kind_options(name: str, base: type) -> type:
    """``base`` with a field for every kind's training option (``training.kinds.option_fields``), so that
    ``TrainConfig(lora_r=8)``, a config file's ``lora_r`` and judge.train's ``--lora-r`` all set it."""
    added = [
        (f.name, f.type, field(default=f.default, default_factory=f.default_factory, metadata=f.metadata))
        for f in option_fields()
    ]
    cls = dataclasses.make_dataclass(name, added, bases=(base,), namespace={"__module__": base.__module__})
    cls.__qualname__ = name
    cls.__doc__ = (
        f"The settings of judge.train: {base.__name__}'s and every kind's training options "
        f"({', '.join(n for n, _, _ in added)})."
    )
    return cls


TrainConfig = _with_kind_options("TrainConfig", RunSettings)


def check_text_view_flags(config: "TrainConfig") -> None:
    if config.prompt_column is not None and not config.prompt_column.strip():
        raise UserError(
            "--prompt-column '' names no column; to train a judge that reads the response only, pass --no-prompt"
        )
    if config.mask_names_from is not None and not config.mask_names:
        raise UserError("--mask-names and --no-mask-names contradict each other; drop one")
    if config.mask_names_from is not None and not config.mask_names_from.strip():
        raise UserError("--mask-names needs a file of names (one a line) or the column holding each record's names")


EXTRA_RANGES = {
    "lora_dropout": (0.0, 1.0, "[0, 1)"),
    "weight_decay": (0.0, math.inf, "0 or more"),
    "warmup_ratio": (0.0, 1.0, "[0, 1]"),
}


def check_extra(extra: dict) -> None:
    """The config file's `extra` recipe settings, checked as the flags are (an unknown key is an error there too)."""
    unknown = sorted(set(extra) - {*EXTRA_RANGES, "target_modules"})
    if unknown:
        raise UserError(
            f"config 'extra' has unknown key(s) {short_list(map(str, unknown))}; allowed: "
            f"{', '.join([*EXTRA_RANGES, 'target_modules'])}"
        )
    for key, (low, high, words) in EXTRA_RANGES.items():
        if key not in extra:
            continue
        value = extra[key]
        ok = (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and low <= value <= high
        )
        if not ok or (key == "lora_dropout" and value == 1):
            raise UserError(f"config 'extra' {key} must be a finite number in {words}, got {clip(value)}")
    modules = extra.get("target_modules", "all-linear")
    if not (
        isinstance(modules, str) or (isinstance(modules, list) and modules and all(isinstance(m, str) for m in modules))
    ):
        raise UserError(
            f"config 'extra' target_modules must be 'all-linear' or a list of module names, got {clip(modules)}"
        )


def train_judge(config: TrainConfig, *, before_commit: Callable[[Path, dict], None] | None = None) -> dict:
    """Train a judge into ``config.out``: built aside and moved into place whole (replacing only a judge
    this command wrote, with --overwrite). ``before_commit(folder, metrics)`` may add files to the judge
    directory before it is moved into place (``judge.train`` writes its cross-validation report so)."""
    with claim_for(
        config,
        "judge.train",
        inputs=("train", "base_model", "taxonomy", "label_map", "mask_names_from"),
        directory=True,
    ):
        return _train_judge(config, before_commit)


def _train_judge(config: TrainConfig, before_commit) -> dict:
    out = Path(config.out)
    check_output_directory(out, overwrite=config.overwrite)
    if not config.train:
        raise UserError("give at least one --train file")
    manifest = RunManifest("judge.train", config, inputs=config.train)
    # A judge records the settings that made it, not the defaults of kinds it has no part of (the LoRA recipe's).
    used = set().union(*(trainer(k).settings for k in config.kinds))
    for f in option_fields():
        if f.name not in used:
            manifest.data["settings"].pop(f.name, None)
    records = read_records(
        config.train,
        encoding=config.encoding,
        id_column=config.id_column,
        prompt_column=config.prompt_column,
        text_column=config.text_column,
        label_columns=[config.label_column],
        label_hint="Fix --label-column.",
        source_column=config.source_column,
    )
    view = text_view_for(
        records,
        no_prompt=config.no_prompt,
        mask_names=config.mask_names,
        mask_names_from=config.mask_names_from,
        encoding=config.encoding,
        reserved=(config.label_column,),
    )
    label_map = parse_label_map(config.label_map, encoding=config.encoding)

    def data_for(view: TextView):
        return labelled_data(
            records,
            label_column=config.label_column,
            taxonomy=config.taxonomy,
            view=view,
            label_map=label_map,
            encoding=config.encoding,
        )

    data = data_for(view)
    check_trainable(data)
    # the split the shipped model (or its LoRA member) validates on, checked before any training
    if trainer(config.kind, needs="train").validation_split or config.uses_lora:
        stratified_split(data.y, val_fraction=config.val_fraction, seed=config.seed)
    print(name_masking_line(data, view))
    recipe = LoraRecipe(
        **{
            f.name: getattr(config, f.name) for f in fields(LoraRecipe) if hasattr(config, f.name) and f.name != "extra"
        },
        **{
            k: v
            for k, v in config.extra.items()
            if k in ("lora_dropout", "target_modules", "weight_decay", "warmup_ratio")
        },
    )
    oof, notes = None, {}
    # Trained in a folder beside the target: a crash never leaves a half-written judge.
    with staged_directory(out, overwrite=config.overwrite) as tmp:
        from judge.engines.models import quiet_transformers

        with quiet_transformers(config.verbose):
            folds, group = cv_folds(data, config)
            kind = trainer(config.kind, needs="train")
            run = Run(
                recipe=recipe,
                seed=config.seed,
                val_fraction=config.val_fraction,
                mask_names=config.mask_names,
                view=view,
                progress=config.progress,
                verbose=config.verbose,
                members=list(config.members),
                folds=folds,
                options={f.name: getattr(config, f.name) for f in option_fields()},
            )
            if folds is not None and not kind.default_folds:
                from training.cv import out_of_fold

                print(f"cross-validation: {config.kind} over {config.cv} folds grouped by {group or 'record'}")
                oof = out_of_fold(data, config.kind, folds, run=run).probabilities
                if config.pick_view:
                    data, view, oof, notes["view_choice"] = pick_view(data, view, oof, data_for, config, folds, run)
                    run.view = view
            trained = kind.train(data, tmp, run)
            metrics, oof = trained.metrics, oof if trained.oof is None else trained.oof
        if "view_choice" in notes:
            metrics["view_choice"] = notes["view_choice"]
        check_degenerate(data, metrics, oof, notes, refuse=config.refuse_degenerate)
        offsets = tune_thresholds(data, oof, metrics, notes, objective=config.tune_thresholds)
        finish(
            tmp,
            data.taxonomy,
            training_ids=data.records["id"],
            text_view=view,
            training_notes=notes or None,
            decision_offsets=offsets,
        )
        if oof is not None:
            metrics["cv"] = write_out_of_fold(tmp / CV_DIR, data, oof, folds, group, records.attrs.get("column_map"))
        counts = {c: int((data.y == i).sum()) for i, c in enumerate(data.taxonomy.labels)}
        manifest.update(
            kind=config.kind,
            taxonomy=data.taxonomy.name,
            label_counts=counts,
            metrics=metrics,
            name_masking={
                "enabled": config.mask_names,
                "records_masked": data.n_masked,
                "records": len(data.y),
                "name_column": "name" in data.records.columns,
                "names_listed": len(view.names),
                "names_column": view.names_column,
            },
            reads_prompt=view.prompt,
        )
        manifest.write(tmp, n_records=len(data.y))
        (tmp / "README.md").write_text(
            model_card(
                config,
                data.taxonomy.labels,
                counts,
                metrics,
                manifest.data["inputs"],
                name_masking_line(data, view),
                view,
            )
        )
        if before_commit is not None:
            before_commit(tmp, metrics)
    return metrics


def pick_view(data, view: TextView, oof, data_for, config, folds, run):
    """--pick-view: the response-only view cross-validated on the same folds; the better view's data,
    view and out-of-fold probabilities, and the choice with both scores."""
    from dataclasses import replace

    from training.checks import view_choice
    from training.cv import out_of_fold

    response_view = replace(view, prompt=False)
    response_data = data_for(response_view)
    print(f"cross-validation: {config.kind} over {config.cv} folds, reading the response only")
    response_oof = out_of_fold(response_data, config.kind, folds, run=replace(run, view=response_view)).probabilities
    choice = view_choice(data.y, oof, response_oof, n_classes=len(data.taxonomy.labels))
    scores = choice["scores"]
    print(
        f"text view by cross-validation: kappa {scores['prompt']['kappa']:.3f} with the prompt, "
        f"{scores['response']['kappa']:.3f} on the response only -> "
        f"{'the response only' if choice['chosen'] == 'response' else 'the prompt and the response'}"
    )
    if choice["chosen"] == "response":
        return response_data, response_view, response_oof, choice
    return data, view, oof, choice


def check_degenerate(data, metrics: dict, oof, notes: dict, *, refuse: bool) -> None:
    """A category of a real share of the labels that held-out predictions never name: warned of (or
    refused, --refuse-degenerate) and recorded in ``notes`` (judge.json's training_notes)."""
    import sys

    import numpy as np

    from training.checks import degenerate_message, never_predicted

    labels = data.taxonomy.labels
    found = {}
    if metrics.get("val_predicted") is not None:
        predicted = np.repeat(np.arange(len(labels)), metrics["val_predicted"])
        found["validation"] = never_predicted(data.y, predicted, labels=labels)
    if oof is not None:
        found["out-of-fold"] = never_predicted(data.y, oof.argmax(axis=1), labels=labels)
    found = {where: missing for where, missing in found.items() if missing}
    notes["never_predicted"] = {where: [m["category"] for m in missing] for where, missing in found.items()}
    if not found:
        return
    where, missing = next(iter(found.items()))
    message = degenerate_message(missing, f"its {where} predictions")
    if refuse:
        raise UserError(message.replace("Recorded in judge.json's training_notes", "Not saved (--refuse-degenerate)"))
    print(f"warning: {message}", file=sys.stderr)
    metrics["never_predicted"] = notes["never_predicted"]


def tune_thresholds(data, oof, metrics: dict, notes: dict, *, objective: str) -> dict[str, float] | None:
    """--tune-thresholds: decision offsets (label -> float) tuned on the out-of-fold probabilities
    (training.thresholds), with the objective before and after in ``notes["decision_offsets"]`` (judge.json's
    training_notes) and ``metrics["decision_offsets"]``; None when off.

    With --cv K the probabilities are the fold models' (each trained on K-1 folds), while the judge shipped is
    trained on every label: the offsets are a property of the recipe, tuned where its predictions are out of
    sample, as the degenerate-judge check reads the same out-of-fold predictions. The ensemble's are its
    stacker's own calibrated out-of-fold probabilities (``Trained.oof``)."""
    if objective == "off":
        return None
    from training.thresholds import tune_offsets

    labels = data.taxonomy.labels
    if oof is None:  # __post_init__ refuses this first; a kind with default folds always returns its own
        raise UserError("--tune-thresholds needs out-of-fold predictions: add --cv 5")
    tuned = tune_offsets(oof, data.y, labels=labels, objective=objective)
    notes["decision_offsets"] = metrics["decision_offsets"] = {
        **tuned.to_dict(labels),
        "offsets": tuned.by_label(labels),
    }
    shown = ", ".join(f"{c} {v:+.2f}" for c, v in tuned.by_label(labels).items())
    if tuned.reason is not None:
        print(f"decision offsets not tuned ({tuned.reason}): all 0")
    else:
        print(f"decision offsets ({objective}, out-of-fold {tuned.before:.3f} -> {tuned.after:.3f}): {shown}")
    return tuned.by_label(labels)


CV_DIR = "cv"  # out-of-fold predictions and their agreement report; not part of what the judge does


def cv_folds(data, config: TrainConfig):
    """Grouped folds for --cv K or the ensemble's stacker (5 folds unless --cv says otherwise)."""
    import sys

    from training.cv import check_folds, default_group, grouped_folds

    k = config.cv or trainer(config.kind, needs="train").default_folds
    if not k:
        return None, None
    refuse_oof_clashes(data.records, data.taxonomy.labels)
    group, warning = default_group(data.records, config.cv_group)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    folds = grouped_folds(data.records, k=k, group=group, seed=config.seed)
    check_folds(data, folds, lora=config.uses_lora, val_fraction=config.val_fraction, seed=config.seed)
    return folds, group


OOF_COLUMNS = ("fold", "oof_label")  # and oof_p_<category>: what OUT/cv/oof.jsonl adds to each training record


def oof_columns(labels) -> list[str]:
    from judge.core.records import probability_column

    return [*OOF_COLUMNS, *("oof_" + probability_column(c) for c in labels)]


def write_out_of_fold(
    folder: Path, data, probabilities, folds, group: str | None, column_map: dict | None = None
) -> dict:
    """OUT/cv/oof.jsonl: every training record with all its columns as read (the label column under its
    own name), its fold, its out-of-fold label and probabilities, so out-of-fold labels can be
    reported by any group."""
    import numpy as np

    from judge.core.records import user_columns, write_records

    labels = data.taxonomy.labels
    frame = user_columns(data.records.reset_index(drop=True), column_map or {}).copy()
    added = dict(
        zip(
            oof_columns(labels),
            [
                folds,
                [labels[i] for i in probabilities.argmax(axis=1)],
                *(np.round(probabilities[:, j], 6) for j in range(len(labels))),
            ],
        )
    )
    for column, values in added.items():
        frame[column] = values
    folder.mkdir(parents=True, exist_ok=True)
    write_records(frame, folder / "oof.jsonl")
    return {"folds": int(len(np.unique(folds))), "group": group, "oof_file": f"{CV_DIR}/oof.jsonl"}


def refuse_oof_clashes(records, labels) -> None:
    clash = [c for c in oof_columns(labels) if c in records.columns]
    if clash:
        raise UserError(
            f"the training data has column(s) {short_list(clash)}, which cross-validation adds to cv/oof.jsonl; rename "
            "them"
        )


def name_masking_line(data, view: TextView) -> str:
    """Say how many records masking actually changed, and from which names: zero is a finding (no
    'name' column and no --mask-names, or names not in the texts)."""
    if not view.mask_names:
        return "name masking off (--no-mask-names): the judge sees the names"
    sources = (
        (["the 'name' column"] if "name" in data.records.columns else [])
        + ([f"{len(view.names)} listed names"] if view.names else [])
        + ([f"column {view.names_column!r}"] if view.names_column else [])
    )
    if not sources:
        return (
            f"name masking: 0 of {len(data.y)} records masked (no 'name' column in the training data; "
            "--mask-names FILE|COL masks names inside the texts)"
        )
    return (
        f"name masking: {data.n_masked} of {len(data.y)} records had a name replaced by [NAME] "
        f"(names from {' and '.join(sources)})"
    )


def reads_line(view: TextView) -> str:
    if view.prompt:
        return "- Reads: the prompt and the response"
    return (
        "- Reads: the response only (--no-prompt): the prompt is never part of its input, so a record's label "
        "cannot depend on its prompt"
    )


def model_card(
    config: TrainConfig,
    labels: list[str],
    counts: dict,
    metrics: dict,
    inputs: dict,
    masking: str = "",
    view: TextView | None = None,
) -> str:
    lines = [
        f"# Judge: {config.kind} on `{config.label_column}`",
        "",
        f"- Kind: {config.kind}" + trainer(config.kind, needs="train").card_line(config),
        f"- Categories: {', '.join(labels)}",
        f"- Training labels: {', '.join(f'{k} {v}' for k, v in counts.items())}",
        f"- Data: {', '.join(f'`{p}` (sha256 {h[:12]})' for p, h in inputs.items())}",
        f"- Names masked before the judge sees the text: {masking}",  # the count, never a bare True over zero masked
        reads_line(view or TextView(mask_names=config.mask_names)),
    ]
    for key in ("val_macro_f1", "val_kappa", "ece_before", "ece_after", "temperature", "best_epoch", "train_seconds"):
        if key in metrics:
            value = metrics[key]
            lines.append(f"- {key.replace('_', ' ')}: {fmt(value) if isinstance(value, float) else value}")
    if "precision" in metrics:
        from judge.kinds.lora.precision import summary

        lines.append(f"- {summary(metrics['precision'])}; `judge.label --precision auto` uses the fastest that passed")
    if "member_weights" in metrics:
        lines.append(
            "- Member weights (share of the stacker's absolute coefficients): "
            + ", ".join(f"{m} {w:.2f}" for m, w in metrics["member_weights"].items())
        )
        lines.append(
            "- Out-of-fold kappa (grouped folds): "
            + ", ".join(f"{m} {v['kappa']:.3f}" for m, v in metrics["oof"].items())
        )
    if "decision_offsets" in metrics:
        tuning = metrics["decision_offsets"]
        if tuning.get("reason"):
            lines.append(f"- Decision offsets: not tuned ({tuning['reason']})")
        else:
            lines.append(
                "- Decision offsets (label = argmax of log p + offset, tuned on out-of-fold "
                f"{tuning['objective']}: {tuning['before']:.3f} -> {tuning['after']:.3f}): "
                + ", ".join(f"{c} {v:+.2f}" for c, v in tuning["offsets"].items())
            )
    if "cv" in metrics:
        lines.append(
            f"- Cross-validation: {metrics['cv']['folds']} folds grouped by {metrics['cv']['group'] or 'record'}; "
            "out-of-fold predictions and the agreement report in `cv/`"
        )
    lines += [
        "",
        "Use: `python -m judge.label --judge THIS_DIR --input FILE --out FILE`.",
        "Rerun: see `manifest.json` (command line, settings, package versions, data fingerprints).",
        "Validation figures come from a stratified held-out split of the training data; "
        "report agreement on data from another model or another annotation round before trusting it.",
        "",
    ]
    return "\n".join(lines)


def summary_line(metrics: dict) -> str:
    keys = [
        k
        for k in ("val_macro_f1", "val_kappa", "ece_before", "ece_after", "temperature", "train_seconds")
        if k in metrics
    ]
    return " ".join(f"{k}={fmt(metrics[k]) if isinstance(metrics[k], float) else metrics[k]}" for k in keys)
