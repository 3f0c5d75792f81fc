"""The TF-IDF judge on disk, as data only: a JSON vocabulary and settings, and safetensors arrays.

A pickled scikit-learn pipeline runs code when it is loaded, and a judge directory is a file users
pass around. So training writes the fitted vectorizer and logistic regression as plain numbers
(``save``), and labelling recomputes the same probabilities from them (``TfidfModel``) with
scikit-learn's own CountVectorizer on the stored vocabulary; tests check the result equals the
pipeline's ``predict_proba``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from judge.core.errors import UserError, cut
from judge.core.schema import (
    MIB,
    finite_arrays,
    only_tensors,
    read_json,
    require_tensor,
    tensor_headers,
    unique,
    validate,
)

SETTINGS = "tfidf.json"
ARRAYS = "tfidf.safetensors"
MAX_SETTINGS_BYTES = 256 * MIB  # a vocabulary of millions of terms; the sample's is 18 kB
# The one token pattern training writes (scikit-learn's default). A stored pattern is compared with
# it, never compiled: a crafted one could backtrack for ever on a long response ('(a+)+$' on 30,000
# a's) or match nothing, so that every output gets the label of the largest intercept.
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
MAX_NGRAM = 3  # terms of at most 3 words keep the cost of a response linear in its length
# The character views (text without spaces: Chinese, Japanese, Thai): scikit-learn's own character
# n-grams, which apply no stored pattern; at most 6 characters keep the cost linear as well.
ANALYZERS = ("word", "char_wb", "char")
MAX_CHAR_NGRAM = 6


def max_ngram(analyzer: str) -> int:
    return MAX_NGRAM if analyzer == "word" else MAX_CHAR_NGRAM


def tfidf_text(prompts, responses) -> list[str]:
    """What the vectorizer reads: prompt and response in one text, as in training (a conversation given as
    a list of chat messages read as "role: content" lines)."""
    from judge.core.text import render_prompt

    return [f"{render_prompt(str(p))} ||| {r}" for p, r in zip(prompts, responses)]


class Settings(BaseModel):
    """judge.json of a TF-IDF judge: the labels the logistic regression learned, in its column order."""

    model_config = ConfigDict(strict=True, extra="ignore")
    kind: Literal["tfidf"]
    classes: Annotated[list[str], Field(min_length=2), AfterValidator(unique)]
    mask_names: bool = True


class Vectorizer(BaseModel):
    """tfidf.json: the fitted vectorizer's vocabulary and options, and the classifier's class ids."""

    model_config = ConfigDict(strict=True, extra="forbid")
    vocabulary: dict[str, int]
    analyzer: Literal["word", "char_wb", "char"] = "word"  # absent in judges trained before the character views
    ngram_range: list[int]
    lowercase: bool
    token_pattern: str
    strip_accents: Literal["ascii", "unicode"] | None
    sublinear_tf: bool
    norm: Literal["l1", "l2"] | None
    class_ids: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2), AfterValidator(unique)]

    @field_validator("token_pattern")
    @classmethod
    def _written_by_training(cls, pattern: str) -> str:
        if pattern != TOKEN_PATTERN:
            raise ValueError(f"{cut(pattern)!r} is not the one training writes ({TOKEN_PATTERN})")
        return pattern

    @model_validator(mode="after")
    def _short_terms(self) -> "Vectorizer":
        bounds, top = self.ngram_range, max_ngram(self.analyzer)
        unit = "words" if self.analyzer == "word" else "characters"
        if len(bounds) != 2 or not 1 <= bounds[0] <= bounds[1] <= top:
            raise ValueError(
                f"ngram_range must be [low, high] with 1 <= low <= high <= {top} (terms of at most {top} {unit}), "
                f"got {cut(bounds)}"
            )
        return self

    @field_validator("vocabulary")
    @classmethod
    def _numbered_once(cls, vocabulary: dict[str, int]) -> dict[str, int]:
        if not vocabulary or not np.array_equal(
            np.sort(np.fromiter(vocabulary.values(), dtype=np.int64, count=len(vocabulary))), np.arange(len(vocabulary))
        ):
            raise ValueError(f"must give each of 0 .. {len(vocabulary) - 1} to one term, once")
        return vocabulary


def save(pipeline, directory: str | Path) -> None:
    """Write a fitted make_pipeline(TfidfVectorizer, LogisticRegression) as data, in the form ``TfidfModel`` accepts."""
    from safetensors.numpy import save_file

    vectorizer, classifier = pipeline.steps[0][1], pipeline.steps[-1][1]
    if vectorizer.analyzer not in ANALYZERS or vectorizer.preprocessor is not None or vectorizer.tokenizer is not None:
        raise ValueError(
            f"only the {', '.join(ANALYZERS)} analyzers with the default preprocessing can be stored as data"
        )
    if vectorizer.token_pattern != TOKEN_PATTERN:
        raise ValueError(
            f"token_pattern {vectorizer.token_pattern!r} cannot be stored: loading accepts only {TOKEN_PATTERN!r}"
        )
    directory = Path(directory)
    settings = {
        "vocabulary": {term: int(i) for term, i in vectorizer.vocabulary_.items()},
        "analyzer": vectorizer.analyzer,
        "ngram_range": list(vectorizer.ngram_range),
        "lowercase": bool(vectorizer.lowercase),
        "token_pattern": vectorizer.token_pattern,
        "strip_accents": vectorizer.strip_accents,
        "sublinear_tf": bool(vectorizer.sublinear_tf),
        "norm": vectorizer.norm,
        "class_ids": [int(c) for c in classifier.classes_],
    }
    Vectorizer.model_validate(settings)
    (directory / SETTINGS).write_text(json.dumps(settings, ensure_ascii=False) + "\n", encoding="utf-8")
    save_file(
        {
            "idf": np.ascontiguousarray(vectorizer.idf_, dtype=np.float64),
            "coef": np.ascontiguousarray(classifier.coef_, dtype=np.float64),
            "intercept": np.ascontiguousarray(classifier.intercept_, dtype=np.float64),
        },
        str(directory / ARRAYS),
    )


def write_settings(directory: str | Path, *, classes: list[str], mask_names: bool) -> Path:
    """judge.json of a TF-IDF judge: ``classes`` are the labels in the classifier's column order."""
    from judge.kinds.judge_dir import write_settings as write_judge_json

    return write_judge_json(directory, {"kind": "tfidf", "classes": list(classes), "mask_names": mask_names})


def check_classes(model: "TfidfModel", classes: list[str], labels: list[str], *, where: str) -> None:
    """judge.json's classes are the labels the class ids name, in the classifier's column order."""
    if max(model.class_ids) >= len(labels):
        raise UserError(
            f"{where}: {SETTINGS} class_ids must be distinct numbers below {len(labels)} (the judge's labels); retrain "
            "the judge"
        )
    if [labels[i] for i in model.class_ids] != list(classes):
        raise UserError(f"{where}: judge.json 'classes' does not match the classifier's classes; retrain the judge")


class TfidfModel:
    """TF-IDF features and logistic-regression probabilities from the stored numbers, checked first:
    the settings by schema, the arrays' names, dtypes and shapes from their header, then their values."""

    def __init__(self, directory: str | Path, *, where: str | None = None):
        from sklearn.feature_extraction.text import CountVectorizer

        directory = Path(directory)
        where = where or f"judge directory {directory.resolve().name}"
        settings = validate(
            Vectorizer,
            read_json(directory / SETTINGS, max_bytes=MAX_SETTINGS_BYTES, where=where),
            where=where,
            name=SETTINGS,
        )
        self.class_ids = settings.class_ids
        self.sublinear_tf, self.norm = settings.sublinear_tf, settings.norm
        self.idf, self.coef, self.intercept = self._arrays(directory, len(settings.vocabulary), where)
        # The checked constant, not the stored string, reaches the regex engine.
        self.counter = CountVectorizer(
            vocabulary=settings.vocabulary,
            analyzer=settings.analyzer,  # one of three names, never code
            ngram_range=tuple(settings.ngram_range),
            lowercase=settings.lowercase,
            token_pattern=TOKEN_PATTERN,
            strip_accents=settings.strip_accents,
        )

    def _arrays(self, directory: Path, n_terms: int, where: str):
        # scikit-learn's binary logistic regression keeps one row of coefficients, for the second class
        rows = 1 if len(self.class_ids) == 2 else len(self.class_ids)
        headers = tensor_headers(directory / ARRAYS, where=where)
        expected = {"idf": (n_terms,), "coef": (rows, n_terms), "intercept": (rows,)}
        only_tensors(headers, expected, where=where, file=ARRAYS)
        for key, shape in expected.items():
            require_tensor(headers, key, ("float64",), shape, where=where, file=ARRAYS)
        arrays = finite_arrays(directory / ARRAYS, where=where)
        return arrays["idf"], arrays["coef"], arrays["intercept"]

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Rows of class probabilities, columns in ``class_ids`` order."""
        from scipy.special import expit, softmax
        from sklearn.preprocessing import normalize

        counts = self.counter.transform(texts).astype(np.float64)
        if self.sublinear_tf:
            counts.data = np.log(counts.data) + 1.0
        features = counts.multiply(self.idf).tocsr()
        if self.norm:
            features = normalize(features, norm=self.norm, copy=False)
        scores = features @ self.coef.T + self.intercept
        if self.coef.shape[0] == 1:  # binary logistic regression: one score for the second class
            positive = expit(scores[:, 0])
            return np.column_stack([1 - positive, positive])
        return softmax(scores, axis=1)
