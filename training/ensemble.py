"""The stacked ensemble judge: LoRA, TF-IDF and the keyword rules, combined by a small stacker.

The stacker (multinomial logistic regression over the members' probabilities) is fitted on
out-of-fold predictions from grouped cross-validation (``training.cv``): no member's prediction
about a record comes from a model trained on that record's group, so the stacker learns how far
to trust each member on unseen templates, not on its own training data. The shipped members are
then retrained on all labels. Layout: judge.json (kind ``ensemble``, members, stacker classes and
feature order), stacker.safetensors (coefficients, intercept), members/lora and members/tfidf
(ordinary sealed judge directories), taxonomy.yaml, training_ids.json.

A member with a frozen encoder (embed) embeds each record once per run: its folds and its shipped member
share the encoder and its embeddings through ``Run.cache`` (training.embed.CachedEncoder).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score, f1_score

from judge.core.errors import UserError
from judge.kinds.ensemble import format as ensemble_format
from judge.kinds.ensemble.format import stacker_probabilities
from judge.kinds.judge_dir import finish
from training.calibration import expected_calibration_error, fit_temperature, softmax
from training.cv import OutOfFold, out_of_fold
from training.examples import LabelledData
from training.kinds import Run, Trained, Trainer, trainer

DEFAULT_FOLDS = 5  # the stacker is fitted on grouped out-of-fold predictions even without --cv
STACKER_C = 1.0  # mild regularisation: 3 members x 6 classes = 18 features for a few thousand labels


def stacker_features(member_probs: list[np.ndarray]) -> np.ndarray:
    return np.hstack(member_probs)


def fit_stacker(features: np.ndarray, y: np.ndarray, *, seed: int = 0) -> LogisticRegression:
    return LogisticRegression(C=STACKER_C, max_iter=5000, random_state=seed).fit(features, y)


def weights_of(model: LogisticRegression) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # C order: safetensors writes the raw buffer, and scikit-learn's coef_ may be Fortran-ordered
    return (
        np.ascontiguousarray(model.coef_, dtype=np.float64),
        np.ascontiguousarray(model.intercept_, dtype=np.float64),
        np.ascontiguousarray(model.classes_, dtype=np.int64),
    )


def stacked_out_of_fold(
    features: np.ndarray, y: np.ndarray, folds: np.ndarray, n_classes: int, *, seed: int = 0
) -> np.ndarray:
    """The stacker's own out-of-fold probabilities on the same folds: the agreement to expect from
    the ensemble (the members' features are out-of-fold already)."""
    out = np.zeros((len(y), n_classes))
    for f in np.unique(folds):
        train, test = folds != f, folds == f
        out[test] = stacker_probabilities(
            weights_of(fit_stacker(features[train], y[train], seed=seed)), features[test], n_classes
        )
    return out


def member_weights(coef: np.ndarray, members: list[str], n_classes: int) -> dict[str, float]:
    """Each member's share of the stacker's absolute coefficients: a readable 'how much it listens'."""
    mass = {m: float(np.abs(coef[:, i * n_classes : (i + 1) * n_classes]).sum()) for i, m in enumerate(members)}
    total = sum(mass.values()) or 1.0
    return {m: round(v / total, 3) for m, v in mass.items()}


def train_ensemble(
    data: LabelledData,
    out_dir: str | Path,
    *,
    folds: np.ndarray,
    recipe,
    members: list[str],
    seed: int = 0,
    progress: bool = True,
    mask_names: bool = True,
    view=None,
    options: dict | None = None,
    cache: dict | None = None,
    share: bool = True,
) -> dict:
    """Out-of-fold member probabilities -> stacker; members retrained on everything; the ensemble written.

    ``options``: the members' training options by name (judge.train's, e.g. the embed member's device);
    ``cache``: what the run's trainings share (``Run.cache``; a new one when None); ``share=False``: nothing is
    shared, each fold and the shipped members load and compute their own (what the cache is tested against)."""
    if len(set(members)) < 2:
        raise UserError(f"--members takes two or more judge kinds, got {', '.join(members)}")
    run = Run(
        recipe=recipe,
        seed=seed,
        progress=progress,
        mask_names=mask_names,
        view=view,
        options=dict(options or {}),
        cache=({} if cache is None else cache) if share else None,
    )
    labels = data.taxonomy.labels
    n_classes = len(labels)
    oof: dict[str, OutOfFold] = {}
    for m in members:
        print(f"ensemble: out-of-fold {m} over {len(np.unique(folds))} folds")
        oof[m] = out_of_fold(data, m, folds, run=run)
    features = stacker_features([oof[m].probabilities for m in members])
    stacker = fit_stacker(features, data.y, seed=seed)
    stacked = stacked_out_of_fold(features, data.y, folds, n_classes, seed=seed)
    # Temperature on the stacker's own out-of-fold scores, as the LoRA judge is calibrated on its
    # validation split; log-probabilities are the scores up to a per-row shift, which softmax ignores.
    oof_log_probs = np.log(np.clip(stacked, 1e-12, None))
    temperature = fit_temperature(oof_log_probs, data.y)
    calibrated = softmax(oof_log_probs, temperature)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for m in members:
        member = trainer(m, needs="fit_member")
        if member.train is None:
            continue  # nothing to ship: the rules are code
        member_dir = out_dir / "members" / m
        print(f"ensemble: training the shipped {m} member on all {len(data.y)} labels")
        member.train(data, member_dir, run.for_member())
        finish(member_dir, data.taxonomy, training_ids=data.records["id"], text_view=view)
    weights = member_weights(weights_of(stacker)[0], members, n_classes)
    ensemble_format.save(
        out_dir,
        weights_of(stacker),
        members=members,
        labels=labels,
        C=STACKER_C,
        temperature=temperature,
        member_weights=weights,
        mask_names=mask_names,
    )

    def scores(p):
        pred = p.argmax(axis=1)
        return {
            "kappa": float(cohen_kappa_score(data.y, pred, labels=range(n_classes))),
            "macro_f1": float(f1_score(data.y, pred, labels=range(n_classes), average="macro", zero_division=0)),
        }

    metrics = {
        "cv_folds": int(len(np.unique(folds))),
        "members": members,
        "member_weights": weights,
        "oof": {**{m: scores(oof[m].probabilities) for m in members}, "ensemble": scores(stacked)},
    }
    metrics["val_kappa"] = metrics["oof"]["ensemble"]["kappa"]
    metrics["val_macro_f1"] = metrics["oof"]["ensemble"]["macro_f1"]
    metrics.update(
        temperature=temperature,
        ece_before=expected_calibration_error(stacked, data.y),
        ece_after=expected_calibration_error(calibrated, data.y),
    )
    return {"metrics": metrics, "oof_probabilities": calibrated, "member_oof": oof, "folds": folds}


def train(data: LabelledData, out_dir: str | Path, run: Run) -> Trained:
    trained = train_ensemble(
        data,
        out_dir,
        folds=run.folds,
        recipe=run.recipe,
        members=list(run.members),
        seed=run.seed,
        progress=run.progress,
        mask_names=run.mask_names,
        view=run.view,
        options=run.options,
        cache=run.cache,
        share=run.cache is not None,
    )
    return Trained(trained["metrics"], oof=trained["oof_probabilities"])


def card_line(config) -> str:
    # each member as its own card line says it (the embed member's encoder, the TF-IDF member's terms ...)
    members = "; ".join(f"{m}{trainer(m).card_line(config)}" for m in config.members)
    return f" of {members}; combined by a logistic-regression stacker fitted on their grouped out-of-fold probabilities"


TRAINER = Trainer(
    title="an ensemble (--kind ensemble)",
    train=train,
    card_line=card_line,
    default_folds=DEFAULT_FOLDS,
    takes=("members",),
)  # and whatever its members take; judge.kinds.ensemble's spec names it
