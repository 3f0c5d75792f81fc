"""Labelled records -> arrays a trainer can use: inputs, class ids, a stratified validation split."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from judge.core.errors import UserError, clip, short_list
from judge.core.taxonomy import Taxonomy, resolve_taxonomy
from judge.core.text import MAX_MASKED_NAMES, MAX_NAME_CHARS, TextView, record_names


@dataclass
class LabelledData:
    records: pd.DataFrame
    taxonomy: Taxonomy
    prompts: list[str]
    responses: list[str]
    y: np.ndarray  # index into taxonomy.labels
    n_masked: int = 0  # records whose prompt or response had its name replaced by [NAME]

    def subset(self, idx: np.ndarray) -> "LabelledData":
        return LabelledData(
            self.records.iloc[idx],
            self.taxonomy,
            [self.prompts[i] for i in idx],
            [self.responses[i] for i in idx],
            self.y[idx],
        )


def labelled_data(
    records: pd.DataFrame,
    *,
    label_column: str,
    taxonomy: str | Taxonomy | None,
    mask_names: bool = True,
    label_map: dict[str, str] | None = None,
    view: TextView | None = None,
    encoding: str = "utf-8",
) -> LabelledData:
    """The labelled records as the judge reads them: ``view`` (default: prompt and response, the ``name``
    column masked when ``mask_names``) is what its directory records, so labelling reads them alike."""
    view = view or TextView(mask_names=mask_names)
    if label_column not in records.columns:
        raise UserError(
            f"label column {clip(label_column)} not found; columns present: "
            f"{short_list(records.columns, limit=8, width=30)}. Fix --label-column."
        )
    has_label = records[label_column].notna() & (records[label_column].astype(str).str.strip() != "")
    records = records[has_label].reset_index(drop=True)
    if records.empty:
        raise UserError(f"no row has a label in column {clip(label_column)}; nothing to train on")
    no_response = records["response"].isna()
    if no_response.any():
        raise UserError(
            f"{int(no_response.sum())} labelled record(s) have no response (e.g. id "
            f"{clip(records.loc[no_response, 'id'].iloc[0])}); "
            "fill or remove them: a judge cannot learn from a missing text"
        )
    tax = resolve_taxonomy(taxonomy, records[label_column].tolist(), label_map=label_map, encoding=encoding)
    gold = tax.gold(records[label_column], column=label_column)
    index = {label: i for i, label in enumerate(tax.labels)}
    prompts = records["prompt"] if "prompt" in records.columns else [""] * len(records)
    names = records["name"] if "name" in records.columns else None
    own = [record_names(v) for v in records[view.names_column]] if view.names_column and view.mask_names else None
    p, r, masked = view.inputs(prompts, records["response"], names, own)
    return LabelledData(records, tax, p, r, np.array([index[g] for g in gold]), n_masked=int(sum(masked)))


def check_trainable(data: LabelledData) -> None:
    """A classifier needs examples of two categories at least; scikit-learn and the LoRA loss would
    otherwise fail deep inside, or train a judge that can say one thing."""
    present = np.flatnonzero(np.bincount(data.y, minlength=len(data.taxonomy.labels)))
    if len(present) < 2:
        only = data.taxonomy.labels[present[0]] if len(present) else "none"
        raise UserError(
            f"all {len(data.y)} labelled record(s) are {clip(only)}: a judge needs labelled examples of at least two "
            "categories; "
            "add labels of the others"
        )


def stratified_split(y: np.ndarray, *, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded; classes too small to split go to training only."""
    idx = np.arange(len(y))
    if val_fraction <= 0:
        return idx, idx[:0]
    counts = np.bincount(y)
    splittable = counts[y] >= 2
    check_split(int(splittable.sum()), int((counts >= 2).sum()), n=len(y), val_fraction=val_fraction)
    train_idx, val_idx = train_test_split(
        idx[splittable], test_size=val_fraction, random_state=seed, stratify=y[splittable]
    )
    return np.sort(np.concatenate([train_idx, idx[~splittable]])), np.sort(val_idx)


def check_split(n_splittable: int, n_classes: int, *, n: int, val_fraction: float) -> None:
    """The stratified split needs one validation and one training record of each class it splits
    (train_test_split's own conditions, said as a fix)."""
    if n_classes == 0:
        raise UserError(
            f"no category has two labelled records among {n}, so none can be split for validation; "
            "add labels or pass --val-fraction 0 (no validation split)"
        )
    n_val = math.ceil(val_fraction * n_splittable)  # scikit-learn rounds the test share up
    if n_val < n_classes:
        raise UserError(
            f"--val-fraction {val_fraction} of {n_splittable} splittable labelled records gives {n_val} for "
            "validation, fewer than "
            f"the {n_classes} categories it must hold; raise it to {math.ceil(100 * n_classes / n_splittable) / 100} "
            "or more, add labels, or pass --val-fraction 0"
        )
    if n_splittable - n_val < n_classes:
        raise UserError(
            f"--val-fraction {val_fraction} of {n_splittable} splittable labelled records leaves "
            f"{n_splittable - n_val} for training, "
            f"fewer than the {n_classes} categories it must hold; lower --val-fraction or add labels"
        )


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


MAX_NAMES_FILE_BYTES = 1 << 20


def read_names_file(path: str | Path, *, encoding: str = "utf-8") -> tuple[str, ...]:
    """--mask-names FILE: one name a line (blank lines skipped), each masked wherever it stands in a text."""
    from judge.core.files import read_text

    path = Path(path)
    if path.stat().st_size > MAX_NAMES_FILE_BYTES:
        raise UserError(
            f"--mask-names file {path.name} is larger than {MAX_NAMES_FILE_BYTES >> 20} MiB; a names file holds one "
            "name a line"
        )
    names = tuple(
        dict.fromkeys(
            line.strip()
            for line in read_text(path, what="--mask-names file", encoding=encoding).splitlines()
            if line.strip()
        )
    )
    if not names:
        raise UserError(f"--mask-names file {path.name} holds no name; write one name a line")
    if len(names) > MAX_MASKED_NAMES:
        raise UserError(
            f"--mask-names file {path.name} holds {len(names)} names, more than {MAX_MASKED_NAMES}; give the names the "
            "texts hold"
        )
    long = next((n for n in names if len(n) > MAX_NAME_CHARS), None)
    if long is not None:
        raise UserError(
            f"--mask-names file {path.name} has a line of {len(long)} characters ({clip(long, 30)}), not a name "
            f"(at most {MAX_NAME_CHARS}); write one name a line"
        )
    return names


def text_view_for(
    records: pd.DataFrame,
    *,
    no_prompt: bool,
    mask_names: bool,
    mask_names_from: str | None,
    reserved: tuple[str, ...] = (),
    encoding: str = "utf-8",
) -> TextView:
    """The TextView judge.train's flags ask for: --no-prompt, and --mask-names as a names file or a column
    of ``records``."""
    names, column = (), None
    if mask_names_from:
        if Path(mask_names_from).is_file():
            names = read_names_file(mask_names_from, encoding=encoding)
        elif mask_names_from in records.columns and mask_names_from not in ("id", "prompt", "response", *reserved):
            column = mask_names_from
        else:
            raise UserError(
                f"--mask-names {clip(mask_names_from, 60)} is neither a file nor a column of the training data "
                f"(columns: {short_list(records.columns, limit=8, width=30)}); give a file of names, one a line, or "
                "the column of each record's names"
            )
    return TextView(prompt=not no_prompt, mask_names=mask_names, names=names, names_column=column)
