"""One judge interface, many backends.

The base class owns ordering, batching, progress, abstention and checkpointing; a backend
implements ``_label_batch`` only (after allenai/wildguard's ``SafetyClassifierBase``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd
from tqdm.auto import tqdm

from judge.core.records import JsonlCheckpoint
from judge.core.records import probability_column  # noqa: F401 - re-exported: judges write these columns
from judge.core.taxonomy import UNSCORED, Taxonomy


@dataclass
class Judgement:
    """A category (or ``unscored`` with a reason), a confidence, and a probability per category."""

    label: str
    confidence: float = float("nan")
    probabilities: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    raw: str | None = None

    @classmethod
    def unscored(cls, reason: str, *, raw: str | None = None, probabilities: dict[str, float] | None = None) -> "Judgement":
        return cls(label=UNSCORED, reason=reason, raw=raw, probabilities=probabilities or {})

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




class Judge:
    """Assigns taxonomy categories to (prompt, response) items."""

    kind: str = "judge"

    def __init__(self, taxonomy: Taxonomy):
        self.taxonomy = taxonomy

    # -- what each backend implements --------------------------------------------------------
    def _label_batch(self, batch: Sequence[Item]) -> list[Judgement]:
        raise NotImplementedError

    def sort_key(self, item: Item) -> int:
        """Items are processed in this order so batches hold texts of similar length."""
        return len(item.prompt) + len(item.response)

    def describe(self) -> dict[str, Any]:
        """What the run manifest records about this judge."""
        return {"kind": self.kind, "taxonomy": self.taxonomy.name}

    # -- shared machinery ---------------------------------------------------------------------
    def batch_plan(self, items: Sequence[Item], batch_size: int) -> list[list[Item]]:
        """Fixed batches over the whole input: similar lengths together (a stable sort), the same plan
        on every rerun. A judge whose scores depend on the other items in a batch (int8 kernels, padding)
        then gives a resumed run exactly the batches an uninterrupted one had."""
        ordered = sorted(items, key=lambda item: (self.sort_key(item), item.id))
        return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]

    def checked(self, judgements: list[Judgement], batch: Sequence[Item]) -> list[Judgement]:
        if len(judgements) != len(batch):
            raise RuntimeError(f"{type(self).__name__}._label_batch returned {len(judgements)} judgements for {len(batch)} items")
        out = []
        for j in judgements:
            bad = [c for c, p in j.probabilities.items() if p is None or not math.isfinite(p)]
            if j.label != UNSCORED and (bad or math.isinf(j.confidence)):
                j = Judgement.unscored(f"the judge returned non-finite probabilities for {', '.join(bad) or 'its label'} (a broken model or temperature)",
                                       raw=j.raw)
            out.append(j)
        return out

    def apply_abstention(self, judgement: Judgement, abstain_below: float | None) -> Judgement:
        if abstain_below is not None and judgement.label != UNSCORED and not (judgement.confidence >= abstain_below):
            return Judgement(
                label=UNSCORED, confidence=judgement.confidence, probabilities=judgement.probabilities,
                reason=f"confidence {judgement.confidence:.3f} below --abstain-below {abstain_below} (best guess: {judgement.label})",
                raw=judgement.raw,
            )
        return judgement

    def output_row(self, item: Item, judgement: Judgement, *, prefix: str = "") -> dict[str, Any]:
        row = {"id": item.id, f"{prefix}label": judgement.label, f"{prefix}confidence": _clean(judgement.confidence)}
        for cat in self.taxonomy.labels:
            row[prefix + probability_column(cat)] = _clean(judgement.probabilities.get(cat))
        row[f"{prefix}unscored_reason"] = judgement.reason
        if judgement.raw is not None:
            row[f"{prefix}raw"] = judgement.raw
        return row

    def label(
        self,
        records: pd.DataFrame,
        *,
        batch_size: int = 32,
        abstain_below: float | None = None,
        checkpoint: JsonlCheckpoint | None = None,
        progress: bool = True,
        prefix: str = "",
    ) -> pd.DataFrame:
        """Label records; returns them with label, confidence, p_<category> and unscored_reason columns.

        With a checkpoint, every finished batch is appended whole; a rerun reuses the batches of the
        fixed plan whose rows are all there and labels the others again whole (a batch cut by a crash
        included), so a resumed run writes exactly what an uninterrupted one would. A missing
        response (null) is ``unscored`` with the reason, never sent to the judge; an empty string is
        a response like any other.
        """
        done = {str(r["id"]): r for r in checkpoint.rows()} if checkpoint else {}
        prompts = records["prompt"] if "prompt" in records.columns else pd.Series([""] * len(records), index=records.index)
        names = records["name"] if "name" in records.columns else pd.Series([None] * len(records), index=records.index)
        items, missing = [], []
        for i, p, r, n in zip(records["id"], prompts, records["response"], names):
            if r is None or (isinstance(r, float) and math.isnan(r)):
                missing.append(str(i))
                continue
            items.append(Item(str(i), "" if p is None or p != p else str(p), str(r), n if isinstance(n, str) else None))
        results: dict[str, dict] = {}
        for i in missing:
            results[i] = self.output_row(Item(i, "", ""), Judgement.unscored("no response (the response value is missing)"), prefix=prefix)
        plan = self.batch_plan(items, batch_size)
        todo = []
        for batch in plan:
            if all(item.id in done for item in batch):
                results.update((item.id, done[item.id]) for item in batch)
            else:
                todo.append(batch)
        self.last_seconds, self.last_count = 0.0, sum(len(b) for b in todo)
        started = time.perf_counter()
        with tqdm(total=self.last_count, desc=f"labelling ({self.kind})", unit="resp", disable=not progress, mininterval=1.0) as bar:
            for batch in todo:
                judgements = self.checked(self._label_batch(batch), batch)
                rows = [self.output_row(item, self.apply_abstention(j, abstain_below), prefix=prefix) for item, j in zip(batch, judgements)]
                if checkpoint:
                    checkpoint.append(rows)
                results.update((r["id"], r) for r in rows)
                bar.update(len(batch))
        self.last_seconds = time.perf_counter() - started
        added = pd.DataFrame([results[str(i)] for i in records["id"]])
        added = added.drop(columns=["id"])
        keep = records.drop(columns=[c for c in added.columns if c in records.columns])
        return pd.concat([keep.reset_index(drop=True), added.reset_index(drop=True)], axis=1)


def _clean(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
