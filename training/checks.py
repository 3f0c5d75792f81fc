"""What training checks of the judge it made before shipping it, recorded in judge.json's ``training_notes``:

- ``never_predicted``: a category with a real share of the training labels (``MIN_SHARE``) that the
  judge never predicts on held-out records (its validation split, and its out-of-fold predictions
  under --cv). Such a judge is degenerate for that category: its agreement on it is zero, and a
  rate estimated from its labels is biased, however good its overall accuracy looks.
- ``view_choice`` (--pick-view with --cv K): the out-of-fold agreement of both text views (with the
  prompt, and the response only) and the one kept.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import cohen_kappa_score, f1_score

MIN_SHARE = 0.10  # a category of at least 10% of the training labels must be predicted somewhere


def never_predicted(
    y_train: np.ndarray, predicted: np.ndarray, *, labels: list[str], min_share: float = MIN_SHARE
) -> list[dict]:
    """The categories of at least ``min_share`` of ``y_train`` that no entry of ``predicted`` (class ids
    of held-out predictions) names, each with its share of the training labels."""
    counts = np.bincount(y_train, minlength=len(labels))
    shares = counts / max(len(y_train), 1)
    seen = set(np.asarray(predicted, dtype=int).tolist())
    return [
        {"category": labels[i], "train_share": round(float(shares[i]), 4)}
        for i in range(len(labels))
        if shares[i] >= min_share and i not in seen
    ]


def degenerate_message(missing: list[dict], where: str) -> str:
    which = "that category" if len(missing) == 1 else "those categories"
    shown = ", ".join(f"{m['category']!r} ({m['train_share']:.0%} of the training labels)" for m in missing)
    return (
        f"the judge never predicts {shown} on {where}: it is degenerate for {which} "
        "(agreement on it is zero); train with --class-weighting balanced and a larger --patience (LoRA), add labels "
        "of it, or try another --kind. Recorded in judge.json's training_notes"
    )


def agreement(y: np.ndarray, probabilities: np.ndarray, *, n_classes: int) -> dict:
    pred = probabilities.argmax(axis=1)
    labels = list(range(n_classes))
    return {
        "kappa": round(float(cohen_kappa_score(y, pred, labels=labels)), 4),
        "macro_f1": round(float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)), 4),
    }


def view_choice(y: np.ndarray, with_prompt: np.ndarray, response_only: np.ndarray, *, n_classes: int) -> dict:
    """Keep the view whose out-of-fold predictions agree more with the labels (Cohen's kappa; a tie
    keeps the prompt, what the judge read by default)."""
    scores = {
        "prompt": agreement(y, with_prompt, n_classes=n_classes),
        "response": agreement(y, response_only, n_classes=n_classes),
    }
    chosen = "response" if scores["response"]["kappa"] > scores["prompt"]["kappa"] else "prompt"
    return {"chosen": chosen, "by": "out-of-fold kappa", "scores": scores}
