"""Cross-fitted prediction-powered rates, as a library: every human label trains the judge and corrects it.

The training floor (training.crossfit.cross_fit) gives two arrays of the judge's probabilities: out of fold
(each human-labelled output predicted by the fold judge that did not see its fold) and the fold average (every
output predicted by the K fold judges, averaged). ``cross_fitted_scores`` joins them: the out-of-fold vector
where a human label is, the fold average elsewhere. ``cross_fitted`` gives the PPI rates and gaps of
judge.stats.ppi on those probabilities, under the sample's design (random, stratified, Neyman, Poisson) and
clusters:

    theta_g = lam * mean_{i in g} a_i + (1 / N_g) * sum_{i in S, in g} (y_i - lam * f_i) / pi_i

with a_i the fold average on every output and f_i the out-of-fold probability on the sample S. Under a simple
random sample this is ppi_py's ``crossppi_mean`` with every output of the group as its unlabelled data (its
point estimate exactly; its variance differs by the finite-population correction and the judge term, see
tests/test_crossfit.py). The variance is the design's (or, with clusters, the cluster-robust one) treating
the K judges as fixed: they depend on the labels, which the cross-fitting argument (Zrnic & Candes 2024,
PNAS) shows leaves the variance first-order unchanged; tests/test_crossfit.py checks coverage by simulation
under each design, benchmarks/label_economy.py on the released 13B outputs.

Known limit (benchmarks/label_economy.py, XSTest): for these outputs' rate with a sample of half the outputs,
cross-fitted intervals covered 0.86-0.89 (0.95-0.97 at under a quarter): the finite-population correction
shrinks the correction's variance, while the fold average's own dependence on the sample is not in it.

Which estimand: without clusters the rate among these outputs (the judge term is then fixed: only the
correction varies with the sample), with clusters the model's rate (prompts drawn anew).

The judge-only column counts the fold-average judge's most probable category.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from judge.analysis.ppi import CrossFitInfo, HumanSample, PPIResult, SamplingDesign, prediction_powered
from judge.core.errors import UserError
from judge.core.taxonomy import Taxonomy

__all__ = ["CrossFitInfo", "cross_fitted", "cross_fitted_scores", "fold_average_labels", "cross_fit_note"]


def cross_fitted_scores(out_of_fold: pd.DataFrame, fold_average: pd.DataFrame) -> pd.DataFrame:
    """Each output's probabilities: out of fold where it is human-labelled (its index in ``out_of_fold``), the
    fold average elsewhere. Both tables are indexed by record id, one column per category."""
    missing = out_of_fold.index.difference(fold_average.index)
    if len(missing):
        raise UserError(f"{len(missing)} out-of-fold ids are not among the fold average's (e.g. {missing[0]!r})")
    scores = fold_average.copy()
    scores.loc[out_of_fold.index, out_of_fold.columns] = out_of_fold.to_numpy()
    return scores


def fold_average_labels(fold_average: pd.DataFrame) -> pd.Series:
    """The fold-average judge's most probable category per id (the judge-only labels)."""
    return pd.Series(fold_average.columns[np.argmax(fold_average.to_numpy(), axis=1)], index=fold_average.index)


def cross_fit_note(*, k: int, kind: str, folds_by: str | None, n_labelled: int) -> str:
    return (
        f"{k} {kind} judges, each trained on {k - 1} of {k} folds of the {n_labelled} human labels (folds grouped by "
        f"{folds_by or 'output'}); each labelled output corrected by the judge that did not see its fold, the others "
        f"labelled by the {k} judges' averaged probabilities"
    )


def cross_fitted(
    records: pd.DataFrame,
    human: HumanSample,
    *,
    out_of_fold: pd.DataFrame,
    fold_average: pd.DataFrame,
    k: int,
    kind: str,
    folds_by: str | None,
    taxonomy: Taxonomy,
    label: str,
    group: str,
    reference: str,
    design: SamplingDesign | None = None,
    clusters: np.ndarray | None = None,
    cluster_info: dict | None = None,
    ppi_lambda: float | None = 1.0,
    adjust: bool = True,
) -> PPIResult:
    """Cross-fitted PPI rates and gaps by ``group``: ``records[label]`` holds the judge-only labels (e.g.
    ``fold_average_labels``), ``human`` the sample, ``out_of_fold`` / ``fold_average`` the fold judges'
    probabilities (training.crossfit). Every human-labelled output must have an out-of-fold row."""
    labelled_ids = set(records["id"].astype(str)[(human.labels != "").to_numpy()])
    absent = labelled_ids - set(out_of_fold.index.astype(str))
    if absent:
        raise UserError(
            f"{len(absent)} human-labelled outputs have no out-of-fold prediction (e.g. {sorted(absent)[0]!r}); "
            "cross-fit on the same human sample the report corrects with"
        )
    info = CrossFitInfo(
        k=k,
        kind=kind,
        folds_by=folds_by,
        n_labelled=len(labelled_ids),
        note=cross_fit_note(k=k, kind=kind, folds_by=folds_by, n_labelled=len(labelled_ids)),
    )
    return prediction_powered(
        records,
        human,
        fine=taxonomy,
        taxonomy=taxonomy,
        label=label,
        group=group,
        reference=reference,
        design=design,
        clusters=clusters,
        cluster_info=cluster_info,
        ppi_lambda=ppi_lambda,
        adjust=adjust,
        scores=cross_fitted_scores(out_of_fold, fold_average),
        average=fold_average,
        cross_fit=info,
    )
