"""The judge directory's layout, shared by ``training/`` (which writes it) and the judges (which read it).

A judge directory holds the backend's weights, ``judge.json`` (backend, labels, settings),
``taxonomy.yaml``, ``manifest.json``, a model card, and ``training_ids.json``: the ids of the
records it was trained on, so a report that corrects the judge with human labels can check that
those labels are ones the judge has not seen.
"""
from __future__ import annotations

import json
from pathlib import Path

from judge.errors import UserError

JUDGE_JSON = "judge.json"
TAXONOMY = "taxonomy.yaml"
TRAINING_IDS = "training_ids.json"


def write_training_ids(directory: str | Path, ids) -> Path:
    path = Path(directory) / TRAINING_IDS
    path.write_text(json.dumps(sorted(str(i) for i in ids)) + "\n", encoding="utf-8")
    return path


def read_training_ids(directory: str | Path) -> set[str] | None:
    """The ids a judge was trained on, or None when the directory does not record them."""
    path = Path(directory) / TRAINING_IDS
    if not path.is_file():
        return None
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is not a JSON list of ids; retrain the judge or restore the file") from None
    if not isinstance(ids, list):
        raise UserError(f"{path} is not a JSON list of ids; retrain the judge or restore the file")
    return {str(i) for i in ids}
