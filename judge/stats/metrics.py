"""Agreement between a judge (or annotator) and gold labels.

Every function takes an explicit ``labels=`` list so a category absent from the data still gets a
row and a column: a table never silently shrinks. Predictions equal to a reserved value (``unscored``,
or ``escalate``, which a selective judge writes for an output it hands to a human) are excluded from the
agreement statistics and counted separately.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Iterator, Mapping, Sequence

import krippendorff
import numpy as np
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from judge.core.taxonomy import ESCALATE, RESERVED, UNSCORED


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
        return float(
            krippendorff.alpha(
                reliability_data=data, level_of_measurement="nominal", value_domain=list(range(len(labels)))
            )
        )


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    clusters: Sequence | None = None,
) -> tuple[float, float]:
    """Percentile interval of ``statistic(indices)`` over items resampled with replacement; with
    ``clusters`` (one code per item), whole clusters are resampled, so outputs of one prompt, which
    are correlated, count as one draw rather than as many independent ones.

    One call of ``statistic`` per resample: the path for a statistic that is no sum over items. The
    agreement statistics take the vectorised path (``bootstrap_counts``/``bootstrap_totals``), which
    draws the very same resamples (``resample_draws``)."""
    if n == 0 or n_boot <= 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    draw = cluster_resampler(clusters) if clusters is not None else (lambda r: r.integers(0, n, size=n))
    return percentile_interval(np.array([statistic(draw(rng)) for _ in range(n_boot)]), level=level)


def percentile_interval(values: np.ndarray, *, level: float) -> tuple[float, float]:
    """Percentile interval of bootstrap values; nan values (a resample where the statistic is undefined,
    e.g. kappa when both raters used one category) are dropped, and (nan, nan) when none is left."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))


def flat_interval(ci: Sequence, reason: str) -> tuple[tuple, str | None]:
    """An interval of zero width is no interval: it says only that every resample gave one value (a judge
    predicting one class has kappa 0 in each of them), not that the value is known. Such an interval
    becomes (None, None) with ``reason``; any other comes back as it is, with None."""
    low, high = ci
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high) and high - low <= 1e-12:
        return (None, None), reason
    return tuple(ci), None


def one_value_reason(gold: Sequence, pred: Sequence, *, pred_name: str = "the judge") -> str:
    """Why every bootstrap resample of two raters' agreement gives one value: one of them uses one class,
    they agree on every item, or nothing else in the sample varies."""
    if len(set(pred)) == 1:
        return f"{pred_name} predicts one class ({next(iter(set(pred)))}): no interval"
    if len(set(gold)) == 1:
        return f"the gold labels hold one class ({next(iter(set(gold)))}): no interval"
    if all(a == b for a, b in zip(gold, pred)):
        return "perfect agreement on every item: no interval"
    return "every bootstrap resample gives the same value: no interval"


def cluster_units(clusters: Sequence) -> np.ndarray:
    """Each item's cluster as an index 0..G-1 in sorted order of the clusters' string codes: the order
    in which ``cluster_resampler`` and ``resample_draws`` number the clusters they draw."""
    _, inverse = np.unique(np.asarray([str(c) for c in clusters], dtype=object), return_inverse=True)
    return inverse.reshape(-1)


def cluster_resampler(clusters: Sequence) -> Callable[[np.random.Generator], np.ndarray]:
    """A function drawing item indices by resampling whole clusters with replacement."""
    inverse = cluster_units(clusters)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(np.bincount(inverse))[:-1]) if len(inverse) else []

    def draw(rng: np.random.Generator) -> np.ndarray:
        return np.concatenate([members[j] for j in rng.integers(0, len(members), size=len(members))])

    return draw


def resample_draws(n_units: int, *, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """The units (items, or clusters in ``cluster_units`` order) each of ``n_boot`` bootstrap resamples
    draws, one array per resample: ``bootstrap_ci``'s draws, call for call (one ``default_rng(seed)``,
    per resample one ``rng.integers(0, U, size=U)``), so the vectorised intervals are the loop's."""
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield rng.integers(0, n_units, size=n_units)


def bootstrap_counts(
    codes: Sequence[int], *, n_codes: int, n_boot: int, seed: int, clusters: Sequence | None = None
) -> np.ndarray:
    """How many items of each code (0..n_codes-1, e.g. gold * K + pred for a confusion matrix) every
    bootstrap resample holds: integers, shape (n_boot, n_codes), the resamples of ``resample_draws``
    (items, or with ``clusters`` whole clusters).

    One bincount per resample, in a loop: counting a (resamples x items) block in one call measured
    twice as slow here (memory-bound); what cost time was the library calls per resample, now gone."""
    codes = np.asarray(codes, dtype=np.int64)
    if clusters is not None:
        # a cluster's codes counted once; a resample's counts are its clusters' multiplicities times these
        units = cluster_units(clusters)
        n_units = int(units.max()) + 1 if len(units) else 0
        table = np.bincount(units * n_codes + codes, minlength=n_units * n_codes).reshape(n_units, n_codes)
        return np.rint(bootstrap_totals(table, n_boot=n_boot, seed=seed)).astype(np.int64)
    out = np.empty((max(n_boot, 0), n_codes), dtype=np.int64)
    for b, draw in enumerate(resample_draws(len(codes), n_boot=n_boot, seed=seed)):
        out[b] = np.bincount(codes[draw], minlength=n_codes)
    return out


def bootstrap_totals(table: np.ndarray, *, n_boot: int, seed: int, clusters: Sequence | None = None) -> np.ndarray:
    """Column totals of ``table`` (one row per item of additive figures) over every bootstrap resample,
    shape (n_boot, columns), the resamples of ``resample_draws``: each unit's multiplicity in the resample
    times the unit's row (with ``clusters``, the sum of its items' rows)."""
    table = np.asarray(table, dtype=float)
    if clusters is not None:
        units = cluster_units(clusters)
        summed = np.zeros((int(units.max()) + 1 if len(units) else 0, table.shape[1]))
        np.add.at(summed, units, table)
        table = summed
    out = np.empty((max(n_boot, 0), table.shape[1]))
    for b, draw in enumerate(resample_draws(len(table), n_boot=n_boot, seed=seed)):
        # whole-number multiplicities: exact products and sums for counts (below 2^53)
        out[b] = np.bincount(draw, minlength=len(table)) @ table
    return out


def kappa_from_confusion(counts: np.ndarray) -> np.ndarray:
    """Cohen's kappa of confusion matrices shaped (..., K, K) (one rater's categories on the rows, the
    other's on the columns), as scikit-learn's ``cohen_kappa_score`` computes it from the same matrix:
    1 - n (n - trace) / (n^2 - sum_k rows_k cols_k). nan where scikit-learn gives nan: no item, or both
    raters kept to one and the same category. The terms are whole numbers until the one division, so
    undefined is an exact zero, not a threshold."""
    counts = np.asarray(counts, dtype=float)
    n = counts.sum(axis=(-2, -1))
    disagree = n - np.trace(counts, axis1=-2, axis2=-1)
    chance = n**2 - (counts.sum(axis=-1) * counts.sum(axis=-2)).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = 1 - n * disagree / chance
    return np.where(chance > 0, kappa, np.nan)


def macro_f1_from_confusion(counts: np.ndarray, *, columns: Sequence[int]) -> np.ndarray:
    """Macro-F1 of confusion matrices (..., K, K) (gold on the rows, predictions on the columns) over the
    categories at ``columns``: the mean of 2 tp / (gold + predicted), 0 for a category with neither
    (scikit-learn's ``f1_score(average="macro", zero_division=0)`` with those labels)."""
    counts = np.asarray(counts, dtype=float)
    columns = list(columns)
    if not columns:
        return np.full(counts.shape[:-2], np.nan)
    tp = np.diagonal(counts, axis1=-2, axis2=-1)[..., columns]
    both = counts.sum(axis=-1)[..., columns] + counts.sum(axis=-2)[..., columns]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(both > 0, 2 * tp / both, 0.0)
    return f1.mean(axis=-1)


def alpha_parts(codes: np.ndarray, *, n_labels: int) -> np.ndarray:
    """The additive parts of nominal Krippendorff's alpha, one row per unit (item), from ``codes``
    (coders x units, category indices, -1 where a coder gave none): the unit's value counts n_uc (zero
    for a unit with fewer than two values, which is not pairable) and its coincidences off the
    diagonal, (m_u^2 - sum_c n_uc^2) / (m_u - 1) with m_u its number of values. Shape (units, K + 1).

    Coincidence matrices are sums over units, so the totals of these rows over any resample of the
    units give that resample's alpha (``alpha_from_parts``), whatever the number of coders and
    however many labels are missing."""
    codes = np.asarray(codes, dtype=np.int64)
    n_units = codes.shape[1]
    counts = np.zeros((n_units, n_labels))
    coder, unit = np.nonzero(codes >= 0)
    np.add.at(counts, (unit, codes[coder, unit]), 1)
    m = counts.sum(axis=1)
    pairable = m >= 2
    counts[~pairable] = 0
    off_diagonal = np.zeros(n_units)
    off_diagonal[pairable] = (m[pairable] ** 2 - (counts[pairable] ** 2).sum(axis=1)) / (m[pairable] - 1)
    return np.column_stack([counts, off_diagonal])


def alpha_from_parts(totals: np.ndarray) -> np.ndarray:
    """Nominal alpha from totals (..., K + 1) of ``alpha_parts`` rows: 1 - (n - 1) D / (n^2 - sum_c n_c^2),
    n_c the pairable values of category c, n their sum, D the coincidences off the diagonal (as the
    ``krippendorff`` package computes it). nan where undefined: no pairable unit, or a single category
    among the pairable values (whole-number totals, so an exact zero). Needs K >= 2."""
    totals = np.asarray(totals, dtype=float)
    values, off_diagonal = totals[..., :-1], totals[..., -1]
    n = values.sum(axis=-1)
    expected = n**2 - (values**2).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = 1 - (n - 1) * off_diagonal / expected
    return np.where(expected > 0, alpha, np.nan)


def alpha_parts_from_confusion(counts: np.ndarray) -> np.ndarray:
    """``alpha_parts`` totals of two coders from their confusion matrices (..., K, K): every item is a
    pairable unit with two values, off the diagonal (coincidences 2) when they differ."""
    counts = np.asarray(counts, dtype=float)
    n = counts.sum(axis=(-2, -1))
    disagree = n - np.trace(counts, axis1=-2, axis2=-1)
    return np.concatenate([counts.sum(axis=-1) + counts.sum(axis=-2), (2 * disagree)[..., None]], axis=-1)


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

    ``gold`` holds canonical labels; ``pred`` canonical labels or a reserved value (``unscored``,
    ``escalate``), both left out of the statistics and counted apart (``n_unscored``; ``n_escalated``
    where some were escalated). ``annotators`` maps further human annotators to their labels (None
    where they gave none). ``clusters`` (one code per item, e.g. the prompt) makes the bootstrap resample
    whole clusters. Macro-F1 averages over the categories gold or predictions use (scikit-learn's
    convention), named in ``macro_f1_labels``.

    The intervals of kappa, macro-F1 and alpha (judge and gold: two coders, no missing label) are
    computed from each resample's confusion matrix (``agreement_intervals``), not by calling the
    libraries once per resample; the point estimates and the ``annotators`` figures (no intervals) are
    the libraries'.
    """
    labels = list(labels)
    gold = np.asarray(list(gold), dtype=object)
    pred = np.asarray(list(pred), dtype=object)
    if len(gold) != len(pred):
        raise ValueError(f"gold and pred differ in length ({len(gold)} vs {len(pred)})")
    scored = ~np.isin(pred, RESERVED)
    n_escalated = int((pred == ESCALATE).sum())
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
    matrix_labels = labels + [UNSCORED] + ([ESCALATE] if n_escalated else [])
    confusion = (
        confusion_matrix(gold, pred, labels=matrix_labels)[: len(labels)]
        if len(gold)
        else np.zeros((len(labels), len(matrix_labels)), int)
    )
    result = {
        "n": int(len(gold)),
        "n_scored": n_scored,
        "n_unscored": int(len(gold) - n_scored - n_escalated),
        **({"n_escalated": n_escalated} if n_escalated else {}),  # only where a selective judge escalated some
        "unscored_rate": float((len(gold) - n_scored - n_escalated) / len(gold)) if len(gold) else float("nan"),
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
            **agreement_intervals(
                g,
                p,
                labels=labels,
                f1_labels=f1_labels,
                n_boot=n_boot,
                seed=seed,
                level=level,
                clusters=scored_clusters,
            ),
        },
    }
    # a zero-width interval (a judge predicting one class: kappa 0 in every resample) is none, with its reason
    why = one_value_reason(g, p, pred_name=pred_name or "the judge")
    reasons = {}
    for stat in ("cohen_kappa", "krippendorff_alpha", "macro_f1"):
        result["ci"][stat], reason = flat_interval(result["ci"][stat], why)
        if reason:
            reasons[stat] = reason
    if reasons:
        result["ci"]["reasons"] = reasons
    if annotators:
        humans = {name: [v if v is not None else None for v in vals] for name, vals in annotators.items()}
        pairs = annotator_agreement(humans, labels=labels, n_boot=0) if len(humans) >= 2 else {"pairwise_kappa": {}}
        result["annotators"] = {
            "alpha_among_humans": krippendorff_alpha(list(humans.values()), labels=labels),
            # The judge joins the humans once; a --pred column that is also an annotator is not counted twice.
            "alpha_with_judge": krippendorff_alpha(
                [*(v for k, v in humans.items() if k != pred_name), [v if v not in RESERVED else None for v in pred]],
                labels=labels,
            ),
            "pairwise_kappa": {k: v["kappa"] for k, v in pairs["pairwise_kappa"].items()},
            "kappa_vs_gold": {
                name: cohen_kappa(
                    [gl for gl, v in zip(gold, vals) if v is not None],
                    [v for v in vals if v is not None],
                    labels=labels,
                )
                for name, vals in humans.items()
            },
        }
    return result


def agreement_intervals(
    gold: Sequence[str],
    pred: Sequence[str],
    *,
    labels: Sequence[str],
    f1_labels: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    clusters: Sequence | None = None,
) -> dict[str, tuple[float, float]]:
    """Bootstrap intervals of Cohen's kappa, nominal Krippendorff's alpha and macro-F1 (over ``f1_labels``)
    of ``pred`` against ``gold``, all three from one confusion matrix per resample.

    The resamples, and so the intervals, are those of ``bootstrap_ci`` with the same seed (each statistic
    used to draw them anew from the seed, hence from the same sequence): they are drawn once and counted
    with bincount. A resample where a statistic is undefined (nan) is dropped, as ``bootstrap_ci`` does.
    """
    labels = list(labels)
    gold, pred = np.asarray(list(gold), dtype=object), np.asarray(list(pred), dtype=object)
    nan = (float("nan"), float("nan"))
    if len(gold) == 0 or n_boot <= 0:
        return {"cohen_kappa": nan, "krippendorff_alpha": nan, "macro_f1": nan}
    # Values outside ``labels`` get categories of their own after them: the libraries leave such items
    # out of kappa and alpha (the first K x K block) but count them in F1's row and column sums.
    categories = labels + sorted((set(gold.tolist()) | set(pred.tolist())) - set(labels), key=str)
    index = {c: i for i, c in enumerate(categories)}
    k, size = len(labels), len(categories)
    codes = np.array([index[x] * size + index[y] for x, y in zip(gold, pred)], dtype=np.int64)
    counts = bootstrap_counts(codes, n_codes=size * size, n_boot=n_boot, seed=seed, clusters=clusters)
    counts = counts.reshape(n_boot, size, size)
    within = counts[:, :k, :k]
    # krippendorff_alpha is nan for fewer than two categories, whatever the data
    alpha = alpha_from_parts(alpha_parts_from_confusion(within)) if k >= 2 else np.full(n_boot, np.nan)
    macro_f1 = macro_f1_from_confusion(counts, columns=[index[c] for c in f1_labels])
    return {
        "cohen_kappa": percentile_interval(kappa_from_confusion(within), level=level),
        "krippendorff_alpha": percentile_interval(alpha, level=level),
        "macro_f1": percentile_interval(macro_f1, level=level),
    }


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
    whole ``clusters`` (one code per item) when given.

    The intervals are vectorised, with the resamples ``bootstrap_ci`` would draw: alpha over any number
    of annotators with missing labels, which no confusion matrix holds, from each resample's totals of
    the items' coincidence parts (``alpha_parts``); each pair's kappa from its confusion matrices
    (``pair_kappa_interval``)."""
    names = list(annotators)
    matrix = [list(annotators[n]) for n in names]
    n_items = len(matrix[0]) if matrix else 0
    labels = list(labels)

    def alpha_at(idx: np.ndarray) -> float:
        return krippendorff_alpha([[row[i] for i in idx] for row in matrix], labels=labels)

    def alpha_interval() -> tuple[float, float]:
        if n_items == 0 or n_boot <= 0 or len(labels) < 2:  # krippendorff_alpha is nan for one category
            return (float("nan"), float("nan"))
        code = {label: i for i, label in enumerate(labels)}
        # None, and anything outside the labels, is a missing value, as in krippendorff_alpha
        codes = np.array([[code.get(v, -1) if v is not None else -1 for v in row] for row in matrix], dtype=np.int64)
        totals = bootstrap_totals(alpha_parts(codes, n_labels=len(labels)), n_boot=n_boot, seed=seed, clusters=clusters)
        return percentile_interval(alpha_from_parts(totals), level=level)

    def kappa_between(a: Sequence, b: Sequence) -> dict:
        both = [i for i in range(len(a)) if a[i] is not None and b[i] is not None]
        x = np.asarray([a[i] for i in both], dtype=object)
        y = np.asarray([b[i] for i in both], dtype=object)
        ci, reason = flat_interval(
            pair_kappa_interval(
                x,
                y,
                labels=labels,
                n_boot=n_boot,
                seed=seed,
                level=level,
                clusters=None if clusters is None else [clusters[i] for i in both],
            ),
            one_value_reason(x, y, pred_name="one of them"),
        )
        return {
            "n": len(both),
            "kappa": cohen_kappa(x, y, labels=labels) if both else float("nan"),
            "ci": ci,
            **({"ci_reason": reason} if reason else {}),
        }

    result = {
        "annotators": names,
        "n_items": n_items,
        "labels_per_annotator": {n: sum(v is not None for v in annotators[n]) for n in names},
        "krippendorff_alpha": alpha_at(np.arange(n_items)),
        "krippendorff_alpha_ci": alpha_interval(),
        "pairwise_kappa": {
            f"{a} vs {b}": kappa_between(annotators[a], annotators[b])
            for i, a in enumerate(names)
            for b in names[i + 1 :]
        },
        "bootstrap": bootstrap_method(n_boot, seed, clusters=clusters),
    }
    if gold is not None:
        result["kappa_vs_gold"] = {n: kappa_between(annotators[n], gold) for n in names}
    return result


def pair_kappa_interval(
    a: Sequence[str],
    b: Sequence[str],
    *,
    labels: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    clusters: Sequence | None = None,
) -> tuple[float, float]:
    """Bootstrap interval of Cohen's kappa between two raters of the same items, from one confusion
    matrix per resample (``bootstrap_ci``'s resamples); items where either gave a value outside ``labels``
    count in no matrix, as in scikit-learn."""
    labels = list(labels)
    if len(a) == 0 or n_boot <= 0:
        return (float("nan"), float("nan"))
    index = {c: i for i, c in enumerate(labels)}
    k = len(labels)
    # an item outside the labels gets code k * k, a column of its own that the K x K matrix leaves out
    codes = np.array(
        [index[x] * k + index[y] if x in index and y in index else k * k for x, y in zip(a, b)], dtype=np.int64
    )
    counts = bootstrap_counts(codes, n_codes=k * k + 1, n_boot=n_boot, seed=seed, clusters=clusters)
    return percentile_interval(kappa_from_confusion(counts[:, : k * k].reshape(n_boot, k, k)), level=level)


def bootstrap_method(n_boot: int, seed: int, *, clusters: Sequence | None = None) -> str:
    unit = "items" if clusters is None else f"{len(set(map(str, clusters)))} clusters (whole clusters resampled)"
    return f"percentile bootstrap over {unit}, {n_boot} resamples, seed {seed}"
