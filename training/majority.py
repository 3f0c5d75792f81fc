"""The majority-class judge: each label's share of the training labels, the same for every output."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from judge.kinds.majority import format as majority_format
from training.examples import LabelledData
from training.kinds import Trained, Trainer


def shares(y: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(y, minlength=n_classes)
    return counts / counts.sum()


def train(data: LabelledData, out_dir: str | Path, run) -> Trained:
    labels = data.taxonomy.labels
    p = shares(data.y, len(labels))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    majority_format.write_settings(
        out_dir, shares={c: float(v) for c, v in zip(labels, p) if v > 0}, mask_names=run.mask_names
    )
    return Trained(
        {
            "n_train": int(len(data.y)),
            "majority": labels[int(p.argmax())],
            "majority_share": float(p.max()),
            "class_counts": np.bincount(data.y, minlength=len(labels)).tolist(),
        }
    )


def fit_member(train_data: LabelledData, n_classes: int, run):
    p = shares(train_data.y, n_classes)
    return lambda test: np.tile(p, (len(test.y), 1))


def card_line(config) -> str:
    return " (the most frequent training label for every output, the training shares as its probabilities)"


TRAINER = Trainer(
    title="the majority-class judge (--kind majority)", train=train, fit_member=fit_member, card_line=card_line
)
