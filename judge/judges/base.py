"""One judge interface, many backends.

The base class owns ordering, batching, progress, abstention and checkpointing; a backend
implements ``_label_batch`` only (after allenai/wildguard's ``SafetyClassifierBase``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import pandas as pd
from tqdm.auto import tqdm

from judge.records import JsonlCheckpoint
from judge.taxonomy import UNSCORED, Taxonomy


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


def probability_column(category: str) -> str:
    return "p_" + "_".join(category.split())


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
    def judge_items(self, items: Sequence[Item], *, batch_size: int = 32, progress: bool = True) -> Iterator[tuple[list[Item], list[Judgement]]]:
        ordered = sorted(items, key=self.sort_key)
        with tqdm(total=len(ordered), desc=f"labelling ({self.kind})", unit="resp", disable=not progress, mininterval=1.0) as bar:
            for start in range(0, len(ordered), batch_size):
                batch = ordered[start : start + batch_size]
                judgements = self._label_batch(batch)
                if len(judgements) != len(batch):
                    raise RuntimeError(f"{type(self).__name__}._label_batch returned {len(judgements)} judgements for {len(batch)} items")
                bar.update(len(batch))
                yield batch, judgements

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

        With a checkpoint, finished rows are appended after every batch and ids already there are
        skipped, so a killed run resumes without losing or repeating a row.
        """
        done = {str(r["id"]): r for r in checkpoint.rows()} if checkpoint else {}
        prompts = records["prompt"] if "prompt" in records.columns else pd.Series([""] * len(records), index=records.index)
        names = records["name"] if "name" in records.columns else pd.Series([None] * len(records), index=records.index)
        todo = [
            Item(str(i), str(p), str(r), n if isinstance(n, str) else None)
            for i, p, r, n in zip(records["id"], prompts, records["response"], names)
            if str(i) not in done
        ]
        self.last_seconds, self.last_count = 0.0, len(todo)
        started = time.perf_counter()
        for batch, judgements in self.judge_items(todo, batch_size=batch_size, progress=progress):
            rows = [self.output_row(item, self.apply_abstention(j, abstain_below), prefix=prefix) for item, j in zip(batch, judgements)]
            if checkpoint:
                checkpoint.append(rows)
            done.update((r["id"], r) for r in rows)
        self.last_seconds = time.perf_counter() - started
        added = pd.DataFrame([done[str(i)] for i in records["id"]])
        added = added.drop(columns=["id"])
        keep = records.drop(columns=[c for c in added.columns if c in records.columns])
        return pd.concat([keep.reset_index(drop=True), added.reset_index(drop=True)], axis=1)


def _clean(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
