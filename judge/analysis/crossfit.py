"""Cross-fitted prediction-powered rates, as a library: every human label trains the judge and corrects it.

The training floor (training.crossfit.cross_fit) gives two arrays of the judge's probabilities: out of fold
(each human-labelled output predicted by the fold judge that did not see its fold) and the fold average (every
output predicted by the K fold judges, averaged). ``cross_fitted_scores`` joins them: the out-of-fold vector
where a human label is, the fold average elsewhere. ``cross_fitted`` gives the PPI rates and gaps of
judge.stats.ppi on those probabilities, under the sample's design (random, stratified, Neyman, Poisson) and
clusters:

    theta_g = lam * mean_{i in g} s_i + (1 / N_g) * sum_{i in S, in g} (y_i - lam * s_i) / pi_i

with s_i the out-of-fold probability on the sample S and the fold average elsewhere: the judge term and the
correction read the same prediction, so a labelled output's own prediction cancels and, at lam = 1, it
counts by its human label. Under a simple random sample of the group this is (n/N) * mean_S y + (1 - n/N) *
ppi_py's ``crossppi_mean`` with the unlabelled outputs as its unlabelled data (its point estimate exactly, see
tests/test_crossfit.py). The variance is the design's (or, with clusters, the cluster-robust one) treating the
K judges as fixed: they depend on the labels, which the cross-fitting argument (Zrnic & Candes 2024, PNAS)
shows leaves the variance first-order unchanged; tests/test_crossfit.py checks coverage by simulation under
each design, with fold judges that learn their training labels, benchmarks/label_economy.py on the released
outputs.

Why not the fold average on the labelled outputs too (what this module did before, and what ppi_py does when
its unlabelled data are every output): K - 1 of the K fold judges were trained on each labelled output, so
their average leans towards its human label, and the judge term then carries (n/N) * mean_S(a_i - f_i), an
in-sample fit that does not vanish with the sample (it grows with n/N). benchmarks/crossfit_judge_term.py
(random samples, 400 draws, the same draws scored both ways): on XSTest's llama2orig - gpt4 gap among its
900 outputs the fold average biased the gap by +0.010 at n = 450 (about 0.6 standard errors) and the 95%
intervals covered 0.91 (label_economy's 100-draw runs: 0.86-0.89); with the out-of-fold prediction the bias
is -0.006, the spread smaller, and coverage 0.98 at the same width (0.96 -> 0.985 at n = 150; 13B outputs,
n = 500 of 1,152: 0.93 -> 0.98; n = 150: 0.975 -> 0.983). The finite-population correction was not the
cause: the interval's standard error matched the estimates' spread (0.0162 against 0.0159); dropping the
correction covered 0.97 only by widening the interval by 41% and left the bias.

Which estimand: without clusters the rate among these outputs (the variance is the design's, the judges taken
as fixed), with clusters the model's rate (prompts drawn anew).

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
        scores=cross_fitted_scores(out_of_fold, fold_average),  # the judge term reads them too (module docstring)
        cross_fit=info,
    )
