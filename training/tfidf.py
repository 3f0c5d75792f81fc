"""TF-IDF (word 1-2 grams) + logistic regression: the classical baseline judge."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline

from judge.core.errors import UserError
from judge.kinds.tfidf import format as tfidf_format
from judge.kinds.tfidf.format import tfidf_text  # the format owns how prompt and response are joined
from training.examples import LabelledData, stratified_split
from training.kinds import Trained, Trainer

DEFAULT_NGRAMS = {"word": (1, 2), "char_wb": (2, 4), "char": (1, 3)}


@dataclass
class TfidfOptions:
    """The judge.train settings only the TF-IDF judge takes: which terms it counts."""

    tfidf_analyzer: str = field(
        default="word",
        metadata={
            "choices": tfidf_format.ANALYZERS,
            "help": "terms: words (default), or character n-grams within words (char_wb) or across them (char), "
            "for text written without spaces (Chinese, Japanese, Thai)",
        },
    )
    tfidf_ngrams: str | None = field(
        default=None,
        metadata={
            "metavar": "LOW-HIGH",
            "help": "term lengths, in words or characters (default: 1-2 words, 2-4 characters for char_wb, 1-3 for "
            "char)",
        },
    )

    def __post_init__(self):
        from judge.core.config import check_choice

        check_choice(self, "tfidf_analyzer", tfidf_format.ANALYZERS)
        ngram_range(self.tfidf_analyzer, self.tfidf_ngrams)


def ngram_range(analyzer: str, text: str | None) -> tuple[int, int]:
    """--tfidf-ngrams LOW-HIGH, checked against what the format stores (at most 3 words, 6 characters)."""
    if text is None:
        return DEFAULT_NGRAMS[analyzer]
    top = tfidf_format.max_ngram(analyzer)
    unit = "words" if analyzer == "word" else "characters"
    low, _, high = str(text).partition("-")
    try:
        bounds = (int(low), int(high or low))
    except ValueError:
        bounds = None
    if bounds is None or not 1 <= bounds[0] <= bounds[1] <= top:
        raise UserError(
            f"--tfidf-ngrams must be LOW-HIGH with 1 <= LOW <= HIGH <= {top} ({unit} for --tfidf-analyzer "
            f"{analyzer}), got {str(text)[:40]!r}"
        )
    return bounds


def tfidf_pipeline(seed: int = 0, *, analyzer: str = "word", ngrams: str | None = None):
    """The baseline's recipe: word 1-2 grams (or character n-grams), sublinear tf, balanced logistic regression."""
    return make_pipeline(
        TfidfVectorizer(
            analyzer=analyzer,
            ngram_range=ngram_range(analyzer, ngrams),
            min_df=2,
            sublinear_tf=True,
            token_pattern=tfidf_format.TOKEN_PATTERN,
        ),
        LogisticRegression(max_iter=2000, class_weight="balanced", C=10.0, random_state=seed),
    )


def pipeline_for(run):
    return tfidf_pipeline(run.seed, analyzer=run.option("tfidf_analyzer", "word"), ngrams=run.option("tfidf_ngrams"))


def fit_tfidf(pipeline, texts: list[str], y: np.ndarray):
    """Fit, saying in one line what to do when the texts are too few for the recipe's vocabulary."""
    try:
        return pipeline.fit(texts, y)
    except ValueError as exc:
        if "no terms remain" in str(exc) or "empty vocabulary" in str(exc):
            raise UserError(
                f"the TF-IDF judge found no word that two of the {len(texts)} labelled texts share (it keeps words "
                "seen twice); "
                "add labels or use --kind lora"
            ) from None
        raise


def train_tfidf(
    data: LabelledData,
    out_dir: str | Path,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    mask_names: bool = True,
    analyzer: str = "word",
    ngrams: str | None = None,
) -> dict:
    train_idx, val_idx = stratified_split(data.y, val_fraction=val_fraction, seed=seed)
    pipeline = tfidf_pipeline(seed, analyzer=analyzer, ngrams=ngrams)
    texts = tfidf_text(data.prompts, data.responses)
    metrics = {}
    if len(val_idx):
        fit_tfidf(pipeline, [texts[i] for i in train_idx], data.y[train_idx])
        pred = pipeline.predict([texts[i] for i in val_idx])
        metrics["val_macro_f1"] = float(
            f1_score(data.y[val_idx], pred, labels=range(len(data.taxonomy.labels)), average="macro", zero_division=0)
        )
        metrics["val_predicted"] = np.bincount(pred, minlength=len(data.taxonomy.labels)).tolist()
    fit_tfidf(pipeline, texts, data.y)  # the shipped model sees every labelled example
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The classes the pipeline learned, in taxonomy order (absent classes get probability 0 at labelling).
    classes = [data.taxonomy.labels[i] for i in pipeline.classes_]
    # Stored as data (JSON + safetensors), never pickled: loading a judge must not run code.
    tfidf_format.save(pipeline, out_dir)
    tfidf_format.write_settings(out_dir, classes=classes, mask_names=mask_names)
    return {
        **metrics,
        "n_train": int(len(data.y)),
        "classes": classes,
        "class_counts": np.bincount(data.y, minlength=len(data.taxonomy.labels)).tolist(),
    }


# -- the kind's training (training.kinds.Trainer; judge.kinds.tfidf's spec names TRAINER) ---------


def train(data: LabelledData, out_dir: str | Path, run) -> Trained:
    return Trained(
        train_tfidf(
            data,
            out_dir,
            seed=run.seed,
            val_fraction=run.val_fraction,
            mask_names=run.mask_names,
            analyzer=run.option("tfidf_analyzer", "word"),
            ngrams=run.option("tfidf_ngrams"),
        )
    )


def fit_member(train_data: LabelledData, n_classes: int, run):
    pipeline = fit_tfidf(pipeline_for(run), tfidf_text(train_data.prompts, train_data.responses), train_data.y)

    def predict_tfidf(test: LabelledData) -> np.ndarray:
        out = np.zeros((len(test.y), n_classes))
        out[:, pipeline.classes_] = pipeline.predict_proba(tfidf_text(test.prompts, test.responses))
        return out

    return predict_tfidf


def card_line(config) -> str:
    analyzer = getattr(config, "tfidf_analyzer", "word")
    low, high = ngram_range(analyzer, getattr(config, "tfidf_ngrams", None))
    unit = "word" if analyzer == "word" else f"character ({analyzer})"
    return f" (TF-IDF {unit} {low}-{high} grams + logistic regression)"


TRAINER = Trainer(
    title="the TF-IDF judge (--kind tfidf)",
    train=train,
    fit_member=fit_member,
    options=TfidfOptions,
    card_line=card_line,
    validation_split=True,
)
