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

import numpy as np

from judge.errors import UserError

SETTINGS = "tfidf.json"
ARRAYS = "tfidf.safetensors"


def save(pipeline, directory: str | Path) -> None:
    """Write a fitted make_pipeline(TfidfVectorizer, LogisticRegression) as data."""
    from safetensors.numpy import save_file

    vectorizer, classifier = pipeline.steps[0][1], pipeline.steps[-1][1]
    if vectorizer.analyzer != "word" or vectorizer.preprocessor is not None or vectorizer.tokenizer is not None:
        raise ValueError("only word analyzers with the default preprocessing can be stored as data")
    directory = Path(directory)
    settings = {
        "vocabulary": {term: int(i) for term, i in vectorizer.vocabulary_.items()},
        "ngram_range": list(vectorizer.ngram_range),
        "lowercase": bool(vectorizer.lowercase),
        "token_pattern": vectorizer.token_pattern,
        "strip_accents": vectorizer.strip_accents,
        "sublinear_tf": bool(vectorizer.sublinear_tf),
        "norm": vectorizer.norm,
        "class_ids": [int(c) for c in classifier.classes_],
    }
    (directory / SETTINGS).write_text(json.dumps(settings, ensure_ascii=False) + "\n", encoding="utf-8")
    save_file({"idf": np.ascontiguousarray(vectorizer.idf_, dtype=np.float64),
               "coef": np.ascontiguousarray(classifier.coef_, dtype=np.float64),
               "intercept": np.ascontiguousarray(classifier.intercept_, dtype=np.float64)}, str(directory / ARRAYS))


class TfidfModel:
    """TF-IDF features and logistic-regression probabilities from the stored numbers."""

    def __init__(self, directory: str | Path):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file
        from sklearn.feature_extraction.text import CountVectorizer

        directory = Path(directory)
        try:
            settings = json.loads((directory / SETTINGS).read_text(encoding="utf-8"))
            arrays = load_file(str(directory / ARRAYS))
        except (OSError, json.JSONDecodeError, SafetensorError) as exc:
            raise UserError(f"{directory}: the TF-IDF judge's files cannot be read ({str(exc).splitlines()[0]}); retrain the judge") from None
        self.idf, self.coef, self.intercept = arrays["idf"], arrays["coef"], arrays["intercept"]
        self.class_ids = settings["class_ids"]
        self.sublinear_tf, self.norm = settings["sublinear_tf"], settings["norm"]
        vocabulary = settings["vocabulary"]
        if len(vocabulary) != len(self.idf) or self.coef.shape[1] != len(self.idf):
            raise UserError(f"{directory}: the TF-IDF vocabulary and arrays disagree in size; retrain the judge")
        self.counter = CountVectorizer(vocabulary=vocabulary, ngram_range=tuple(settings["ngram_range"]), lowercase=settings["lowercase"],
                                       token_pattern=settings["token_pattern"], strip_accents=settings["strip_accents"])

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
