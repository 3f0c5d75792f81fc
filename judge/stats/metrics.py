"""Agreement between a judge (or annotator) and gold labels.

Every function takes an explicit ``labels=`` list so a category absent from the data still gets a
row and a column: a table never silently shrinks. Predictions equal to ``unscored`` are excluded
from the agreement statistics and counted separately.
"""
from __future__ import annotations

import warnings
from typing import Callable, Mapping, Sequence

import krippendorff
import numpy as np
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from judge.core.taxonomy import UNSCORED


def cohen_kappa(gold: Sequence[str], pred: Sequence[str], *, labels: Sequence[str]) -> float:
    if len(gold) == 0:
        return float("nan")
    with warnings.catch_warnings():
        # Undefined kappa (one label only) comes back as nan, which the reports print as n/a.
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(gold, pred, labels=list(labels)))


def krippendorff_alpha(ratings: Sequence[Sequence[str | None]], *, labels: Sequence[str]) -> float:
    """Nominal alpha; ``ratings`` is one row per coder, one column per item, None (or unscored) when missing."""
    code = {label: i for i, label in enumerate(labels)}
    data = np.array([[code.get(v, np.nan) if v is not None else np.nan for v in row] for row in ratings], dtype=float)
    if data.size == 0 or len(labels) < 2:
        return float("nan")
    pairable = (~np.isnan(data)).sum(axis=0) >= 2
    if not pairable.any():
        return float("nan")
    with warnings.catch_warnings():
        # All values equal -> no expected disagreement -> alpha undefined (nan), which we report as such.
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal", value_domain=list(range(len(labels)))))


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float], n: int, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
    clusters: Sequence | None = None,
) -> tuple[float, float]:
    """Percentile interval of ``statistic(indices)`` over items resampled with replacement; with
    ``clusters`` (one code per item), whole clusters are resampled, so outputs of one prompt, which
    are correlated, count as one draw rather than as many independent ones."""
    if n == 0 or n_boot <= 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    draw = cluster_resampler(clusters) if clusters is not None else (lambda r: r.integers(0, n, size=n))
    values = np.array([statistic(draw(rng)) for _ in range(n_boot)])
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))


def cluster_resampler(clusters: Sequence) -> Callable[[np.random.Generator], np.ndarray]:
    """A function drawing item indices by resampling whole clusters with replacement."""
    _, inverse = np.unique(np.asarray([str(c) for c in clusters], dtype=object), return_inverse=True)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1]) if len(inverse) else []

    def draw(rng: np.random.Generator) -> np.ndarray:
        return np.concatenate([members[j] for j in rng.integers(0, len(members), size=len(members))])
    return draw


def present_labels(gold: Sequence[str], pred: Sequence[str], *, labels: Sequence[str]) -> list[str]:
    """The taxonomy's categories that gold or predictions use, in taxonomy order: scikit-learn's
    macro-average convention (a category nobody used has no F1 to average)."""
    used = set(gold) | set(pred)
    return [label for label in labels if label in used]


def per_class_scores(gold: Sequence[str], pred: Sequence[str], *, labels: Sequence[str]) -> dict[str, dict[str, float]]:
    if len(gold) == 0:  # nothing scored: every class has no support
        return {label: {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0} for label in labels}
    precision, recall, f1, support = precision_recall_fscore_support(gold, pred, labels=list(labels), zero_division=0)
    return {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support)
    }


def agreement(
    gold: Sequence[str],
    pred: Sequence[str],
    *,
    labels: Sequence[str],
    annotators: Mapping[str, Sequence[str | None]] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    pred_name: str | None = None,
    clusters: Sequence | None = None,
) -> dict:
    """All agreement figures for a paper table.

    ``gold`` holds canonical labels; ``pred`` canonical labels or ``unscored``. ``annotators`` maps
    further human annotators to their labels (None where they gave none). ``clusters`` (one code per
    item, e.g. the prompt) makes the bootstrap resample whole clusters. Macro-F1 averages over the
    categories gold or predictions use (scikit-learn's convention), named in ``macro_f1_labels``.
    """
    labels = list(labels)
    gold = np.asarray(list(gold), dtype=object)
    pred = np.asarray(list(pred), dtype=object)
    if len(gold) != len(pred):
        raise ValueError(f"gold and pred differ in length ({len(gold)} vs {len(pred)})")
    scored = pred != UNSCORED
    g, p = gold[scored], pred[scored]
    n_scored = int(scored.sum())
    f1_labels = present_labels(g, p, labels=labels)
    scored_clusters = None if clusters is None else np.asarray(list(clusters), dtype=object)[scored]

    def kappa_at(idx: np.ndarray) -> float:
        return cohen_kappa(g[idx], p[idx], labels=labels)

    def alpha_at(idx: np.ndarray) -> float:
        return krippendorff_alpha([list(g[idx]), list(p[idx])], labels=labels)

    def macro_f1_at(idx: np.ndarray) -> float:
        # fixed to the categories of the whole sample, so every resample averages the same ones
        return float(f1_score(g[idx], p[idx], labels=f1_labels, average="macro", zero_division=0))

    everything = np.arange(n_scored)
    matrix_labels = labels + [UNSCORED]
    confusion = confusion_matrix(gold, pred, labels=matrix_labels)[: len(labels)] if len(gold) else np.zeros((len(labels), len(matrix_labels)), int)
    result = {
        "n": int(len(gold)),
        "n_scored": n_scored,
        "n_unscored": int(len(gold) - n_scored),
        "unscored_rate": float((len(gold) - n_scored) / len(gold)) if len(gold) else float("nan"),
        "labels": labels,
        "cohen_kappa": kappa_at(everything) if n_scored else float("nan"),
        "krippendorff_alpha": alpha_at(everything) if n_scored else float("nan"),
        "accuracy": float(accuracy_score(g, p)) if n_scored else float("nan"),
        # Counting unscored items as wrong: the figure a reader should see beside the one above.
        "accuracy_unscored_as_wrong": float((gold == pred).mean()) if len(gold) else float("nan"),
        "macro_f1": macro_f1_at(everything) if n_scored else float("nan"),
        "macro_f1_labels": f1_labels,
        "per_class": per_class_scores(g, p, labels=labels),
        "confusion": {"rows_gold": labels, "columns_pred": matrix_labels, "matrix": confusion.tolist()},
        # one key whatever the level, which it carries: every renderer reads result["ci"] and says its level
        "ci": {
            "level": level,
            "method": bootstrap_method(n_boot, seed, clusters=scored_clusters),
            "cohen_kappa": bootstrap_ci(kappa_at, n_scored, n_boot=n_boot, seed=seed, level=level, clusters=scored_clusters),
            "krippendorff_alpha": bootstrap_ci(alpha_at, n_scored, n_boot=n_boot, seed=seed, level=level, clusters=scored_clusters),
            "macro_f1": bootstrap_ci(macro_f1_at, n_scored, n_boot=n_boot, seed=seed, level=level, clusters=scored_clusters),
        },
    }
    if annotators:
        humans = {name: [v if v is not None else None for v in vals] for name, vals in annotators.items()}
        pairs = annotator_agreement(humans, labels=labels, n_boot=0) if len(humans) >= 2 else {"pairwise_kappa": {}}
        result["annotators"] = {
            "alpha_among_humans": krippendorff_alpha(list(humans.values()), labels=labels),
            # The judge joins the humans once; a --pred column that is also an annotator is not counted twice.
            "alpha_with_judge": krippendorff_alpha([*(v for k, v in humans.items() if k != pred_name), [v if v != UNSCORED else None for v in pred]], labels=labels),
            "pairwise_kappa": {k: v["kappa"] for k, v in pairs["pairwise_kappa"].items()},
            "kappa_vs_gold": {
                name: cohen_kappa(
                    [gl for gl, v in zip(gold, vals) if v is not None], [v for v in vals if v is not None], labels=labels
                )
                for name, vals in humans.items()
            },
        }
    return result


def annotator_agreement(
    annotators: Mapping[str, Sequence[str | None]],
    *,
    labels: Sequence[str],
    gold: Sequence[str | None] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    clusters: Sequence | None = None,
) -> dict:
    """Agreement among human annotators: Krippendorff's alpha over all of them, Cohen's kappa for every
    pair (on the items both labelled), and each one against ``gold`` when given. Each column counts once.
    None marks an item an annotator did not label. Intervals: percentile bootstrap over items, or over
    whole ``clusters`` (one code per item) when given."""
    names = list(annotators)
    matrix = [list(annotators[n]) for n in names]
    n_items = len(matrix[0]) if matrix else 0

    def alpha_at(idx: np.ndarray) -> float:
        return krippendorff_alpha([[row[i] for i in idx] for row in matrix], labels=labels)

    def kappa_between(a: Sequence, b: Sequence) -> dict:
        both = [i for i in range(len(a)) if a[i] is not None and b[i] is not None]
        x = np.asarray([a[i] for i in both], dtype=object)
        y = np.asarray([b[i] for i in both], dtype=object)
        stat = lambda idx: cohen_kappa(x[idx], y[idx], labels=labels)  # noqa: E731
        return {"n": len(both), "kappa": stat(np.arange(len(both))) if both else float("nan"),
                "ci": bootstrap_ci(stat, len(both), n_boot=n_boot, seed=seed, level=level,
                                   clusters=None if clusters is None else [clusters[i] for i in both])}

    result = {
        "annotators": names,
        "n_items": n_items,
        "labels_per_annotator": {n: sum(v is not None for v in annotators[n]) for n in names},
        "krippendorff_alpha": alpha_at(np.arange(n_items)),
        "krippendorff_alpha_ci": bootstrap_ci(alpha_at, n_items, n_boot=n_boot, seed=seed, level=level, clusters=clusters),
        "pairwise_kappa": {f"{a} vs {b}": kappa_between(annotators[a], annotators[b]) for i, a in enumerate(names) for b in names[i + 1 :]},
        "bootstrap": bootstrap_method(n_boot, seed, clusters=clusters),
    }
    if gold is not None:
        result["kappa_vs_gold"] = {n: kappa_between(annotators[n], gold) for n in names}
    return result


def bootstrap_method(n_boot: int, seed: int, *, clusters: Sequence | None = None) -> str:
    unit = "items" if clusters is None else f"{len(set(map(str, clusters)))} clusters (whole clusters resampled)"
    return f"percentile bootstrap over {unit}, {n_boot} resamples, seed {seed}"
