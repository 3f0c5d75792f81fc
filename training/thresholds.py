"""Per-category decision offsets tuned on out-of-fold probabilities (judge.train --tune-thresholds).

A judge's label is the argmax of its probabilities. When a category is rare, a classifier fitted by
log-loss under-predicts it: its probability is often the second highest where people chose it. An
additive offset on each category's log-probability, label = argmax(log p + offset), moves the
decision boundaries without touching the probabilities (which stay calibrated, and are what PPI and
the reports read). The offsets are tuned to maximise the agreement (Cohen's kappa, or macro-F1) of
the out-of-fold labels with the human ones, by coordinate ascent over a fixed grid.

Identifiability: adding one constant to every offset changes no label, so the most frequent category
(of the gold labels; ties: the first in taxonomy order) keeps offset 0. A category absent from the gold
labels keeps 0 too: nothing could tell its offset apart. Overfitting: a move is kept only when it raises
the out-of-fold objective by at least ``MIN_GAIN`` (a few records' worth on a few hundred labels), so
noise-level gains leave the offsets at 0; tuning explores |offset| <= ``TUNING_RANGE`` (1, chosen by
measurement, below), and no judge.json may hold more than ``MAX_DECISION_OFFSET`` (3, see judge.kinds.judge_dir
for why); labelling applies the same rule (judge.kinds.base ``Judge.decide``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from judge.kinds.judge_dir import MAX_DECISION_OFFSET, PROBABILITY_FLOOR, decide  # noqa: F401 (decide: labelling's rule, for callers)

OBJECTIVES = ("kappa", "macro-f1")
GRID_STEP = 0.25
# The range tuning explores, by measurement (TF-IDF word and char_wb judges, 5 template-grouped folds, tuned on the
# training side's out-of-fold predictions and scored on the other side: the paper's 7B -> 13B, 13B -> 7B and
# XSTest): offsets up to 3 raised the out-of-fold kappa most (13B: 0.640 -> 0.708) and lowered the other model's
# by 0.044 (an offset of -2.5 on 'harmful refusal'); within +-1 and a margin of 0.01 the changes were -0.007 to
# +0.016. Out-of-fold predictions are from the training side's model and templates: a large offset fits them, not
# another model's outputs. So -1, -0.75, ..., 1 (9 values, 0 among them), inside the cap labelling accepts.
TUNING_RANGE = 1.0
GRID = np.round(np.arange(-TUNING_RANGE, TUNING_RANGE + GRID_STEP / 2, GRID_STEP), 10)
MIN_GAIN = 0.01  # the least rise of the out-of-fold objective that keeps a move (0.005 let noise-level moves in)
MAX_SWEEPS = 20  # each kept move raises the objective by MIN_GAIN, so ascent ends well before on any data


@dataclass
class TunedOffsets:
    """The offsets (taxonomy order), the out-of-fold objective before (all offsets 0) and after, and why
    nothing was tuned (None when tuning ran)."""

    offsets: np.ndarray
    objective: str
    before: float | None
    after: float | None
    reference: int | None  # the category held at 0 for identifiability
    reason: str | None = None

    def by_label(self, labels: list[str]) -> dict[str, float]:
        return {label: float(v) for label, v in zip(labels, self.offsets)}

    def to_dict(self, labels: list[str]) -> dict:
        """What judge.json's training_notes record of the tuning."""
        out = {
            "objective": self.objective,
            "before": None if self.before is None else round(float(self.before), 4),
            "after": None if self.after is None else round(float(self.after), 4),
            "reference": None if self.reference is None else labels[self.reference],
            "min_gain": MIN_GAIN,
            "max_offset": MAX_DECISION_OFFSET,
        }
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def objective_scores(y: np.ndarray, predicted: np.ndarray, *, n_classes: int, objective: str) -> np.ndarray:
    """The objective of each row of ``predicted`` (G candidate labellings of the n records, shape (G, n)) against
    ``y``: Cohen's kappa, or macro-F1 over all ``n_classes`` (a category neither in ``y`` nor predicted scores
    0, as sklearn's f1_score(labels=..., zero_division=0)). Vectorised: one bincount gives every confusion matrix.
    Kappa is NaN where chance agreement is 1 (one category in both)."""
    predicted = np.atleast_2d(predicted)
    g, k = predicted.shape[0], n_classes
    index = (np.arange(g)[:, None] * k * k + y[None, :] * k + predicted).ravel()
    confusion = np.bincount(index, minlength=g * k * k).reshape(g, k, k).astype(float)  # [candidate, gold, predicted]
    gold, pred = confusion.sum(axis=2), confusion.sum(axis=1)
    hits = np.diagonal(confusion, axis1=1, axis2=2)
    if objective == "kappa":
        n = confusion.sum(axis=(1, 2))
        observed = hits.sum(axis=1) / n
        chance = (gold * pred).sum(axis=1) / n**2
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(chance < 1, (observed - chance) / (1 - chance), np.nan)
    if objective == "macro-f1":
        denominator = gold + pred  # 2 TP + FP + FN
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(denominator > 0, 2 * hits / denominator, 0.0)
        return f1.mean(axis=1)
    raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")


def tune_offsets(
    probabilities: np.ndarray,
    y: np.ndarray,
    *,
    labels: list[str],
    objective: str = "kappa",
    grid: np.ndarray = GRID,
    min_gain: float = MIN_GAIN,
    max_sweeps: int = MAX_SWEEPS,
) -> TunedOffsets:
    """Offsets on the log-probabilities (taxonomy order, ``labels``) that maximise ``objective`` of
    argmax(log p + offset) against the gold class ids ``y``, by coordinate ascent over ``grid``.

    Each sweep visits the free categories in taxonomy order and moves one to the grid value that scores
    best with the others held (ties: the smallest |offset|, then the lower), kept only when it raises the
    objective by ``min_gain`` or more; sweeps stop when none moves. Deterministic: no randomness anywhere."""
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(y, dtype=int)
    k = len(labels)
    grid = np.asarray(grid, dtype=float)
    if p.ndim != 2 or p.shape != (len(y), k):
        raise ValueError(f"probabilities must be (n, {k}) for {len(y)} labels, got {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ValueError("probabilities must be finite and non-negative")
    if len(y) and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"gold class ids must lie in 0..{k - 1}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if not np.isfinite(grid).all() or (np.abs(grid) > MAX_DECISION_OFFSET).any() or 0.0 not in grid:
        raise ValueError(f"the grid must hold 0 and finite values within +-{MAX_DECISION_OFFSET}")
    offsets = np.zeros(k)
    counts = np.bincount(y, minlength=k)
    present = np.flatnonzero(counts)
    if len(present) < 2:
        return TunedOffsets(
            offsets, objective, None, None, None, reason="fewer than two categories among the gold labels"
        )
    reference = int(counts.argmax())  # the first of the most frequent
    free = [c for c in present.tolist() if c != reference]
    log_p = np.log(np.clip(p, PROBABILITY_FLOOR, None))

    def score(pred: np.ndarray) -> np.ndarray:
        return objective_scores(y, pred, n_classes=k, objective=objective)

    before = float(score(log_p.argmax(axis=1))[0])
    current = before
    # candidates: the grid values ordered by preference among equal scores (smallest |offset|, then lower)
    preference = np.lexsort((grid, np.abs(grid)))
    for _ in range(max_sweeps):
        moved = False
        for c in free:
            scores = log_p + offsets  # (n, k)
            candidates = np.repeat(scores[None], len(grid), axis=0)  # (G, n, k)
            candidates[:, :, c] = log_p[None, :, c] + grid[:, None]
            values = score(candidates.argmax(axis=2))[preference]
            best = preference[int(np.argmax(values))]  # argmax: the first (most preferred) of the highest
            if grid[best] != offsets[c] and values.max() >= current + min_gain:
                offsets[c], current, moved = grid[best], float(values.max()), True
        if not moved:
            break
    return TunedOffsets(offsets, objective, before, current, reference)
