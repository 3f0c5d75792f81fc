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


def encoder_for(run) -> embed_format.Encoder:
    recipe = run.recipe
    return embed_format.Encoder(
        run.option("base_model", recipe.base_model if recipe else "bundled:minilm"),
        max_length=run.option("max_length", recipe.max_length if recipe else 96),
        device=run.option("device", "auto"),
    )


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
        base_model=run.option("base_model", "bundled:minilm"),
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
