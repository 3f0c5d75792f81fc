"""Labelled records -> arrays a trainer can use: inputs, class ids, a stratified validation split."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from judge.errors import UserError
from judge.text import judge_inputs
from judge.taxonomy import Taxonomy, resolve_taxonomy


@dataclass
class LabelledData:
    records: pd.DataFrame
    taxonomy: Taxonomy
    prompts: list[str]
    responses: list[str]
    y: np.ndarray  # index into taxonomy.labels
    n_masked: int = 0  # records whose prompt or response had its name replaced by [NAME]

    def subset(self, idx: np.ndarray) -> "LabelledData":
        return LabelledData(self.records.iloc[idx], self.taxonomy, [self.prompts[i] for i in idx], [self.responses[i] for i in idx], self.y[idx])


def labelled_data(records: pd.DataFrame, *, label_column: str, taxonomy: str | Taxonomy | None, mask_names: bool = True,
                  label_map: dict[str, str] | None = None) -> LabelledData:
    if label_column not in records.columns:
        raise UserError(f"label column {label_column!r} not found; columns present: {', '.join(records.columns)}. Fix --label-column.")
    has_label = records[label_column].notna() & (records[label_column].astype(str).str.strip() != "")
    records = records[has_label].reset_index(drop=True)
    if records.empty:
        raise UserError(f"no row has a label in column {label_column!r}; nothing to train on")
    no_response = records["response"].isna()
    if no_response.any():
        raise UserError(f"{int(no_response.sum())} labelled record(s) have no response (e.g. id {records.loc[no_response, 'id'].iloc[0]!r}); "
                        "fill or remove them: a judge cannot learn from a missing text")
    tax = resolve_taxonomy(taxonomy, records[label_column].tolist(), label_map=label_map)
    gold = tax.gold(records[label_column], column=label_column)
    index = {label: i for i, label in enumerate(tax.labels)}
    prompts = records["prompt"] if "prompt" in records.columns else [""] * len(records)
    names = records["name"] if "name" in records.columns else None
    p, r = judge_inputs(prompts, records["response"], names, mask_names=mask_names)
    n_masked = sum(mp != str(op) or mr != str(orr) for mp, op, mr, orr in zip(p, prompts, r, records["response"]))
    return LabelledData(records, tax, p, r, np.array([index[g] for g in gold]), n_masked=int(n_masked))


def stratified_split(y: np.ndarray, *, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded; classes too small to split go to training only."""
    idx = np.arange(len(y))
    if val_fraction <= 0:
        return idx, idx[:0]
    counts = np.bincount(y)
    splittable = counts[y] >= 2
    train_idx, val_idx = train_test_split(idx[splittable], test_size=val_fraction, random_state=seed, stratify=y[splittable])
    return np.sort(np.concatenate([train_idx, idx[~splittable]])), np.sort(val_idx)


def class_weights(y: np.ndarray, n_classes: int, *, scheme: str) -> np.ndarray:
    """Loss weights per class: 'none', 'balanced' (inverse frequency) or 'sqrt' (its square root, gentler)."""
    counts = np.bincount(y, minlength=n_classes).astype(float)
    present = counts > 0
    weights = np.ones(n_classes)
    if scheme == "none":
        return weights
    inverse = np.where(present, len(y) / (present.sum() * np.maximum(counts, 1)), 0.0)
    if scheme == "balanced":
        weights = inverse
    elif scheme == "sqrt":
        weights = np.sqrt(inverse)
    else:
        raise UserError(f"unknown class weighting {scheme!r}; use none, sqrt or balanced")
    return np.where(present, weights, 1.0)
