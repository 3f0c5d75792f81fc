"""The frozen-encoder judge: embeddings of a base encoder that is never trained (mean-pooled, L2-normalised)
and a logistic-regression head, fitted in seconds where LoRA takes minutes (judge.kinds.embed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score, f1_score

from judge.kinds.embed import format as embed_format
from training.examples import LabelledData, stratified_split
from training.kinds import Trained, Trainer

HEAD_C = 10.0  # the TF-IDF head's inverse regularisation; embeddings are unit vectors as TF-IDF rows are


def head(seed: int) -> LogisticRegression:
    return LogisticRegression(max_iter=5000, class_weight="balanced", C=HEAD_C, random_state=seed)


def encoder_settings(run) -> tuple[str, int, str]:
    """(base model, window, device) the run's embed trainings use: its options, else the LoRA recipe's."""
    recipe = run.recipe
    return (
        run.option("base_model", recipe.base_model if recipe else "bundled:minilm"),
        run.option("max_length", recipe.max_length if recipe else 96),
        run.option("device", "auto"),
    )


class CachedEncoder:
    """An encoder whose embeddings are kept, by the exact (prompt, response) pair, for the rest of one run.

    The encoder is frozen, so a pair's embedding cannot change within a run: an ensemble's K folds and its
    shipped member (and --pick-view's second view, --cv's folds then the shipped judge) would otherwise embed
    every record K + 1 times, and load the encoder K + 1 times. Why the cache hangs on the run (``Run.cache``)
    and not on a module-level LRU keyed by the weights' sha256: its lifetime is exactly one training, so
    nothing computed for one judge.train call is served to another in the same process (tests, benchmarks and
    notebooks train many judges in one process, on encoders that can be rewritten between calls), no global
    state, no size bound to tune. Its key is the whole input of the frozen function: this instance fixes the
    encoder (its weights' sha256, read once), the window (max_length) and the device, and the text pair is the
    text view already applied (prompt or not, names masked); so a pair's vector is the one an uncached encoder
    gives for it, bit for bit (the encoder batches pairs of one token length: nothing padded, no batch-mates).
    """

    def __init__(self, encoder: embed_format.Encoder):
        self.encoder = encoder
        self.max_length, self.width = encoder.max_length, encoder.width
        self._sha256 = encoder.sha256()
        self.vectors: dict[tuple[str, str], np.ndarray] = {}
        self.computed = 0  # pairs the encoder embedded (the misses); the rest came from the cache

    def sha256(self) -> str:
        return self._sha256

    def embed(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        pairs = list(zip(prompts, responses, strict=True))
        missing = list(dict.fromkeys(p for p in pairs if p not in self.vectors))  # each new pair once, in order
        if missing:
            fresh = self.encoder.embed([p for p, _ in missing], [r for _, r in missing])
            self.vectors.update(zip(missing, fresh))
            self.computed += len(missing)
        if not pairs:
            return np.zeros((0, self.width), dtype=np.float64)
        return np.stack([self.vectors[p] for p in pairs])


def encoder_for(run) -> embed_format.Encoder | CachedEncoder:
    """The run's encoder: loaded once per (base model, window, device) and shared, with its embeddings, by every
    training of the run through ``run.cache``; a run without a cache (``cache=None``) loads its own each time."""
    base_model, max_length, device = encoder_settings(run)
    if run.cache is None:
        return embed_format.Encoder(base_model, max_length=max_length, device=device)
    key = ("embed", base_model, max_length, device)
    if key not in run.cache:
        run.cache[key] = CachedEncoder(embed_format.Encoder(base_model, max_length=max_length, device=device))
    return run.cache[key]


def train(data: LabelledData, out_dir: str | Path, run) -> Trained:
    import time

    started = time.perf_counter()
    encoder = encoder_for(run)
    features = encoder.embed(data.prompts, data.responses)
    embed_seconds = time.perf_counter() - started
    labels = range(len(data.taxonomy.labels))
    train_idx, val_idx = stratified_split(data.y, val_fraction=run.val_fraction, seed=run.seed)
    metrics = {}
    if len(val_idx):
        pred = head(run.seed).fit(features[train_idx], data.y[train_idx]).predict(features[val_idx])
        metrics = {
            "val_macro_f1": float(f1_score(data.y[val_idx], pred, labels=labels, average="macro", zero_division=0)),
            "val_kappa": float(cohen_kappa_score(data.y[val_idx], pred, labels=list(labels))),
            "val_predicted": np.bincount(pred, minlength=len(labels)).tolist(),
        }
    classifier = head(run.seed).fit(features, data.y)  # the shipped head sees every labelled example
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = [data.taxonomy.labels[i] for i in classifier.classes_]
    embed_format.save_head(classifier, out_dir)
    embed_format.write_settings(
        out_dir,
        base_model=encoder_settings(run)[0],
        sha256=encoder.sha256(),
        max_length=encoder.max_length,
        classes=classes,
        mask_names=run.mask_names,
    )
    return Trained(
        {
            **metrics,
            "n_train": int(len(data.y)),
            "classes": classes,
            "embed_seconds": round(embed_seconds, 2),
            "train_seconds": round(time.perf_counter() - started, 2),
        }
    )


def fit_member(train_data: LabelledData, n_classes: int, run):
    encoder = encoder_for(run)
    classifier = head(run.seed).fit(encoder.embed(train_data.prompts, train_data.responses), train_data.y)

    def predict_embed(test: LabelledData) -> np.ndarray:
        out = np.zeros((len(test.y), n_classes))
        out[:, classifier.classes_] = classifier.predict_proba(encoder.embed(test.prompts, test.responses))
        return out

    return predict_embed


def card_line(config) -> str:
    return f" (frozen `{config.base_model}` embeddings, mean-pooled, + logistic regression)"


TRAINER = Trainer(
    title="the frozen-encoder judge (--kind embed)",
    train=train,
    fit_member=fit_member,
    takes=("base_model", "max_length", "device"),
    card_line=card_line,
    validation_split=True,
)
