"""The TF-IDF judge kind: word 1-2 grams + logistic regression (judge.py), stored as data (format.py);
trained by training/tfidf.py."""

from __future__ import annotations

from dataclasses import dataclass

from judge.kinds.spec import KindSpec


@dataclass
class Options:
    """It takes no option: its directory holds everything it does."""


SPEC = KindSpec(
    name="tfidf",
    title="the TF-IDF judge",
    form="directory",
    options=Options,
    load="judge.kinds.tfidf.judge:load",
    format="judge.kinds.tfidf.format",
    training="training.tfidf:TRAINER",
    trainable=True,
    member=True,
    default_member=True,
)
