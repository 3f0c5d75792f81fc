"""Cross-fitted judges: K judges, each trained on K - 1 folds of the human-labelled sample.

Cross-prediction-powered inference (Zrnic & Candes 2024, *Cross-prediction-powered inference*, PNAS) spends
every human label twice: it trains the judge and it corrects it. The labelled sample is cut into K folds
grouped by prompt or template (training.cv.grouped_folds: no prompt on both sides), a ``kind`` judge is
trained on each K - 1 folds, each labelled output is predicted by the judge that did not see its fold
(out of fold), and every output is also predicted by all K judges, their probability vectors averaged
(the fold average, which labels the outputs no human labelled). judge.analysis.crossfit turns the two
arrays into rates; this module only trains (the training floor stays below the analysis one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from judge.core.errors import UserError
from training.cv import default_group, grouped_folds, out_of_fold
from training.examples import labelled_data

__all__ = ["CrossFitted", "cross_fit"]

_HUMAN = "_cross_fit_human"


@dataclass
class CrossFitted:
    """Probabilities in ``categories`` order: ``out_of_fold`` (labelled ids), ``fold_average`` (every id), each
    labelled id's ``folds`` (0..k-1), what the folds were grouped by and the warning default_group gave."""

    categories: list[str]
    out_of_fold: pd.DataFrame
    fold_average: pd.DataFrame
    folds: pd.Series
    k: int
    kind: str
    group: str | None
    warning: str | None


def cross_fit(
    records: pd.DataFrame,
    human: pd.Series,
    *,
    kind: str,
    k: int,
    taxonomy,
    group: str | None = None,
    seed: int = 0,
    recipe=None,
    mask_names: bool = True,
) -> CrossFitted:
    """K ``kind`` judges trained on the human labels of ``records`` (``human``: one label per record, '' or NaN
    where none), folds grouped by ``group`` (default: template, else the prompt when it repeats)."""
    labels = human.reindex(records.index)
    has = labels.notna() & (labels.astype(str).str.strip() != "")
    if int(has.sum()) < k:
        raise UserError(f"--cross-fit {k} needs at least {k} human-labelled outputs, found {int(has.sum())}")
    sample = labelled_data(
        records[has.to_numpy()].assign(**{_HUMAN: labels[has]}),
        label_column=_HUMAN,
        taxonomy=taxonomy,
        mask_names=mask_names,
    )
    tax = sample.taxonomy
    # every output, for the fold average: its label is never read (the first category stands in)
    everyone = labelled_data(
        records.assign(**{_HUMAN: labels.where(has, tax.labels[0])}),
        label_column=_HUMAN,
        taxonomy=tax,
        mask_names=mask_names,
    )
    group, warning = default_group(sample.records, group)
    folds = grouped_folds(sample.records, k=k, group=group, seed=seed)
    if recipe is None and kind == "lora":  # the default recipe judge.train uses, with this seed
        from training.lora import LoraRecipe

        recipe = LoraRecipe(seed=seed, mask_names=mask_names)
    fitted = out_of_fold(sample, kind, folds, recipe=recipe, seed=seed, also=everyone)
    ids = records["id"].astype(str)
    lab_ids = sample.records["id"].astype(str)
    return CrossFitted(
        categories=list(tax.labels),
        out_of_fold=pd.DataFrame(fitted.probabilities, index=lab_ids.to_numpy(), columns=tax.labels),
        fold_average=pd.DataFrame(fitted.fold_average, index=ids.to_numpy(), columns=tax.labels),
        folds=pd.Series(np.asarray(folds), index=lab_ids.to_numpy()),
        k=k,
        kind=kind,
        group=group,
        warning=warning,
    )
