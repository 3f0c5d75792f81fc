"""One judge interface, many backends.

The base class owns the rows (abstention, missing responses, columns) and hands the batching,
progress, checkpointing and shares to the runner (``judge.run.runner``), as the runner's Worker;
a backend implements ``_label_batch`` only (after allenai/wildguard's ``SafetyClassifierBase``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pandas as pd

from judge.core.errors import UserError, clip
from judge.core.records import (
    JsonlCheckpoint,
    probability_column,  # noqa: F401 - re-exported: judges write these columns
)
from judge.core.taxonomy import ESCALATE, UNSCORED, Taxonomy
from judge.core.text import TextView, record_names
from judge.run.runner import Batch, Executor, InProcess, RunResult, Shard, Worker, fixed_plan, run_plan

# the reason of a row with no response (never sent to the judge): judge.label counts these apart
NO_RESPONSE = "no response (the response value is missing)"


@dataclass
class Judgement:
    """A category (or ``unscored`` with a reason), a confidence, and a probability per category."""

    label: str
    confidence: float = float("nan")
    probabilities: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    raw: str | None = None

    @classmethod
    def unscored(
        cls, reason: str, *, raw: str | None = None, probabilities: dict[str, float] | None = None
    ) -> "Judgement":
        return cls(label=UNSCORED, reason=reason, raw=raw, probabilities=probabilities or {})

    @classmethod
    def from_rows(cls, rows: Any, classes: Sequence[str], labels: Sequence[str]) -> list["Judgement"]:
        """One judgement per row of a classifier's probabilities over ``classes`` (its training classes, in its
        column order); a category of ``labels`` the classifier never saw has probability 0."""
        out = []
        for row in rows:
            probabilities = dict.fromkeys(labels, 0.0)
            probabilities.update({c: float(v) for c, v in zip(classes, row)})
            out.append(cls.from_probabilities(probabilities))
        return out

    @classmethod
    def from_probabilities(cls, probabilities: dict[str, float], **extra: Any) -> "Judgement":
        label = max(probabilities, key=probabilities.get)
        return cls(label=label, confidence=float(probabilities[label]), probabilities=probabilities, **extra)


@dataclass
class Item:
    id: str
    prompt: str
    response: str
    name: str | None = None  # the name that signals the group, for judges that mask it
    names: tuple[str, ...] = ()  # the record's other names in its texts (a trained judge's --mask-names COL)


@dataclass(frozen=True)
class RowOptions:
    """How a judge writes its rows: what ``Judge.compute`` reads, set by ``label_run`` (or a ``JudgeWorker``)."""

    abstain_below: float | None = None
    prefix: str = ""
    # judge.label --selective: the calibrated threshold(s) below which a label becomes ESCALATE (None: off)
    selective: "Selective | None" = None


@dataclass(frozen=True)
class Selective:
    """A calibration's cut (judge.analysis.selective.Calibration): one threshold, or one per predicted category
    (as (label, threshold) pairs, None: always escalated), and the file it comes from, for the reason."""

    threshold: float | None = None
    by_label: tuple[tuple[str, float | None], ...] | None = None
    source: str = "the calibration"

    def cut(self, label: str) -> float | None:
        return dict(self.by_label).get(label) if self.by_label is not None else self.threshold


class Judge:
    """Assigns taxonomy categories to (prompt, response) items."""

    kind: str = "judge"
    row_options: RowOptions = RowOptions()
    text_view: TextView = TextView(mask_names=False)  # a trained judge reads its own from judge.json

    def __init__(self, taxonomy: Taxonomy):
        self.taxonomy = taxonomy

    # -- what each backend implements --------------------------------------------------------
    def _label_batch(self, batch: Sequence[Item]) -> list[Judgement]:
        raise NotImplementedError

    def sort_key(self, item: Item) -> int:
        """Items are processed in this order so batches hold texts of similar length (of what the judge
        reads: a judge that never reads the prompt gets the same batches whatever the prompts)."""
        return (len(item.prompt) if self.text_view.prompt else 0) + len(item.response)

    def texts(self, batch: Sequence[Item]) -> tuple[list[str], list[str]]:
        """The batch's prompts and responses as the judge reads them (its ``text_view``)."""
        prompts, responses, _ = self.text_view.inputs(
            [b.prompt for b in batch], [b.response for b in batch], [b.name for b in batch], [b.names for b in batch]
        )
        return prompts, responses

    def check_columns(self, records: pd.DataFrame, *, source: str = "the input") -> None:
        """Refuse, before anything is written, records that lack a column the judge reads."""
        column = self.text_view.names_column if self.text_view.mask_names else None
        if column and column not in records.columns:
            raise UserError(
                f"the judge masks the names in column {clip(column)} (judge.train --mask-names), which {source} lacks; "
                "add that column (each record's names) or use a judge trained without it"
            )

    def describe(self) -> dict[str, Any]:
        """What the run manifest records about this judge."""
        offsets = self.decision_offsets
        return {"kind": self.kind, "taxonomy": self.taxonomy.name, **({"decision_offsets": offsets} if offsets else {})}

    @property
    def decision_offsets(self) -> dict[str, float] | None:
        """The offsets its judge directory records (judge.json's ``decision_offsets``, judge.train
        --tune-thresholds), checked by its schema when the directory was verified; None without (or all zero)."""
        from judge.kinds.judge_dir import decision_offsets_of

        meta = getattr(self, "meta", None)  # every kind with a judge directory keeps its verified judge.json
        return decision_offsets_of(meta) if isinstance(meta, dict) else None

    def decide(self, judgement: Judgement, offsets: dict[str, float] | None) -> Judgement:
        """The label with the directory's decision offsets: argmax over categories of log p + offset (ties: the
        first, as without offsets). The probabilities stay the calibrated ones; the confidence is the chosen
        label's probability. Applied here, to the judge's own output only: an ensemble reads its members'
        ``_label_batch``, so a member's offsets never alter the stacker's features."""
        if not offsets or judgement.label in (UNSCORED, ESCALATE) or not judgement.probabilities:
            return judgement
        from judge.kinds.judge_dir import decide

        categories = list(judgement.probabilities)
        chosen = decide([judgement.probabilities[c] for c in categories], [offsets.get(c, 0.0) for c in categories])
        label = categories[int(chosen)]
        return dataclasses.replace(judgement, label=label, confidence=float(judgement.probabilities[label]))

    # -- shared machinery ---------------------------------------------------------------------
    def plan(self, items: Sequence[Item], batch_size: int) -> list[Batch]:
        """Fixed batches over the whole input: similar lengths together (a stable sort), the same plan
        on every rerun. A judge whose scores depend on the other items in a batch (int8 kernels, padding)
        then gives a resumed run, and every shard, exactly the batches an uninterrupted one had."""
        return fixed_plan(items, key=lambda item: item.id, size=self.sort_key, batch_size=batch_size)

    def checked(self, judgements: list[Judgement], batch: Sequence[Item]) -> list[Judgement]:
        if len(judgements) != len(batch):
            raise RuntimeError(
                f"{type(self).__name__}._label_batch returned {len(judgements)} judgements for {len(batch)} items"
            )
        out = []
        for j in judgements:
            bad = [c for c, p in j.probabilities.items() if p is None or not math.isfinite(p)]
            if j.label != UNSCORED and (bad or math.isinf(j.confidence)):
                j = Judgement.unscored(
                    f"the judge returned non-finite probabilities for {', '.join(bad) or 'its label'} (a broken model "
                    "or temperature)",
                    raw=j.raw,
                )
            out.append(j)
        return out

    def apply_abstention(self, judgement: Judgement, abstain_below: float | None) -> Judgement:
        """--abstain-below P: a fixed threshold with no guarantee, the uncalibrated form of --selective; below it
        the label is ``escalate`` (for people), never a best guess."""
        if abstain_below is None:
            return judgement
        return self.apply_selective(
            judgement, Selective(threshold=abstain_below, source="--abstain-below, uncalibrated")
        )

    def apply_selective(self, judgement: Judgement, selective: Selective | None) -> Judgement:
        """Below the calibrated threshold the label is ``escalate`` (for people), never a best guess: the
        confidence and probabilities stay, the reason says what the threshold was."""
        if selective is None or judgement.label in (UNSCORED, ESCALATE):
            return judgement
        cut = selective.cut(judgement.label)
        if cut is not None and judgement.confidence >= cut:
            return judgement
        why = (
            "no threshold reaches the target"
            if cut is None
            else f"confidence {judgement.confidence:.3f} below {cut:.4g}"
        )
        return Judgement(
            label=ESCALATE,
            confidence=judgement.confidence,
            probabilities=judgement.probabilities,
            reason=f"escalated: {why} ({selective.source})",
            raw=judgement.raw,
        )

    def output_row(self, item: Item, judgement: Judgement, *, prefix: str = "") -> dict[str, Any]:
        row = {"id": item.id, f"{prefix}label": judgement.label, f"{prefix}confidence": _clean(judgement.confidence)}
        for cat in self.taxonomy.labels:
            row[prefix + probability_column(cat)] = _clean(judgement.probabilities.get(cat))
        row[f"{prefix}unscored_reason"] = judgement.reason
        if judgement.raw is not None:
            row[f"{prefix}raw"] = judgement.raw
        return row

    # -- the runner's Worker -------------------------------------------------------------------
    def compute(self, batch: Batch) -> list[dict[str, Any]]:
        """The output rows of one batch of the plan, written as ``self.row_options`` says."""
        items = batch.items
        judgements = self.checked(self._label_batch(items), items)
        options, offsets = self.row_options, self.decision_offsets
        return [
            self.output_row(
                item,
                self.apply_selective(
                    self.apply_abstention(self.decide(j, offsets), options.abstain_below), options.selective
                ),
                prefix=options.prefix,
            )
            for item, j in zip(items, judgements)
        ]

    def label(self, records: pd.DataFrame, **options: Any) -> pd.DataFrame:
        """Label records; returns them with label, confidence, p_<category> and unscored_reason columns
        (``label_run`` with the same options, for its records)."""
        return self.label_run(records, **options).records

    def label_run(
        self,
        records: pd.DataFrame,
        *,
        batch_size: int = 32,
        abstain_below: float | None = None,
        selective: Selective | None = None,
        checkpoint: JsonlCheckpoint | None = None,
        progress: bool = True,
        prefix: str = "",
        shard: Shard | None = None,
        executor: Executor | None = None,
        make_worker: Callable[[], Worker] | None = None,
    ) -> "LabelRun":
        """Label records: the records with the judge's columns, and what the run did (``LabelRun``).

        With a checkpoint, every finished batch is appended whole; a rerun reuses the batches of the
        fixed plan whose rows are all there and labels the others again whole (a batch cut by a crash
        included), so a resumed run writes exactly what an uninterrupted one would. A missing
        response (null) is ``unscored`` with the reason, never sent to the judge; an empty string is
        a response like any other. With ``shard``, only its share of the plan is labelled and only
        its rows come back (in input order; the first share also holds the missing responses), and
        the result's ``positions`` say where each goes among all the records. ``executor`` runs the
        batches elsewhere, on workers ``make_worker`` builds there (a ``JudgeWorker``); by default
        this judge labels them here.
        """
        self.row_options = RowOptions(abstain_below=abstain_below, prefix=prefix, selective=selective)
        self.check_columns(records)
        items, missing = labelling_items(
            records, names_column=self.text_view.names_column if self.text_view.mask_names else None
        )
        results: dict[str, dict] = {}
        if shard is None or shard.first:
            for i in missing:
                results[i] = self.output_row(Item(i, "", ""), Judgement.unscored(NO_RESPONSE), prefix=prefix)
        plan = self.plan(items, batch_size)
        if isinstance(make_worker, JudgeWorker):  # a judge built elsewhere writes its rows as this run says
            make_worker = dataclasses.replace(make_worker, row_options=self.row_options)
        run = run_plan(
            plan,
            make_worker or (lambda: self),
            key_column="id",
            checkpoint=checkpoint,
            executor=executor or InProcess(self),
            shard=shard,
            progress=progress,
            desc=f"labelling ({self.kind})",
            unit="resp",
        )
        results.update(run.rows)
        ids = [str(i) for i in records["id"]]
        positions = [n for n, i in enumerate(ids) if i in results]
        share = records.iloc[positions] if shard else records
        added = pd.DataFrame([results[ids[n]] for n in positions]).drop(columns=["id"])
        keep = share.drop(columns=[c for c in added.columns if c in share.columns])
        return LabelRun(pd.concat([keep.reset_index(drop=True), added.reset_index(drop=True)], axis=1), positions, run)


@dataclass
class LabelRun:
    """What ``Judge.label_run`` did: the records with the judge's columns (only its share's, with a
    shard), where each goes among all the records, and the runner's result (the rows computed in this
    run and the seconds they took, the plan's fingerprint, the executor)."""

    records: pd.DataFrame
    positions: list[int]
    run: RunResult

    @property
    def computed(self) -> int:
        """Rows labelled in this run (not those a checkpoint held)."""
        return self.run.computed

    @property
    def seconds(self) -> float:
        return self.run.seconds


@dataclass(frozen=True)
class JudgeWorker:
    """Builds a judge from its spec wherever it is called: the picklable ``make_worker`` of a labelling run,
    for executors that build their workers elsewhere (another process, a Ray actor). Given the run's
    ``JudgeRef`` (judge.label's), it loads without parsing the spec again, and checks the judge's files
    against the digests the run found: a file that is the one the driver hashed, unchanged (the same
    machine, a shared filesystem), is not hashed again; another copy is hashed and must be the same."""

    spec: Any  # a spec string, or a judge.kinds.ref.JudgeRef
    taxonomy: Any = None  # a Taxonomy or a preset name, as load_judge takes it
    options: tuple[tuple[str, Any], ...] = ()  # load_judge's options, as (name, value) pairs
    row_options: RowOptions = RowOptions()

    def __call__(self) -> "Judge":
        from judge.kinds import load_judge

        judge = load_judge(self.spec, taxonomy=self.taxonomy, **dict(self.options))
        judge.row_options = self.row_options
        return judge


def labelling_items(records: pd.DataFrame, *, names_column: str | None = None) -> tuple[list[Item], list[str]]:
    """The records a judge reads, and the ids of those with no response (unscored, never judged)."""
    blank = pd.Series([None] * len(records), index=records.index)
    prompts = records["prompt"] if "prompt" in records.columns else pd.Series([""] * len(records), index=records.index)
    names = records["name"] if "name" in records.columns else blank
    own = records[names_column] if names_column else blank
    items, missing = [], []
    for i, p, r, n, o in zip(records["id"], prompts, records["response"], names, own):
        if r is None or (isinstance(r, float) and math.isnan(r)):
            missing.append(str(i))
            continue
        items.append(
            Item(
                str(i),
                "" if p is None or p != p else str(p),
                str(r),
                n if isinstance(n, str) else None,
                record_names(o),
            )
        )
    return items, missing


def _clean(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
