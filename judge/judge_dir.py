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


# Files a user may edit without changing what the judge does: the settings file (it carries its
# own checksum), the manifest, the model card, and the cross-validation report under cv/.
UNSEALED = {JUDGE_JSON, "manifest.json", "README.md"}
UNSEALED_FOLDER = "cv/"


def _sealed_name(name: str) -> bool:
    return name not in UNSEALED and not name.startswith(UNSEALED_FOLDER)


def seal(directory: str | Path, *, labels: list[str]) -> dict:
    """Record every file's sha256 and the order of the classifier's outputs in judge.json.

    Called last when a judge is written. Loading then checks each file (``verify``), so a swapped
    taxonomy, an edited class list or a truncated adapter is refused instead of giving wrong labels.
    """
    from judge.manifest import file_sha256

    directory = Path(directory)
    meta = json.loads((directory / JUDGE_JSON).read_text(encoding="utf-8"))
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = path.relative_to(directory).as_posix()
        if _sealed_name(name):
            files[name] = file_sha256(path)
    meta.pop(SELF_DIGEST, None)
    meta.update(labels=list(labels), files=files)
    meta[SELF_DIGEST] = _self_digest(meta)
    (directory / JUDGE_JSON).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


SELF_DIGEST = "judge_json_sha256"


def _self_digest(meta: dict) -> str:
    """sha256 of judge.json's own settings (labels, temperature, classes ...), in canonical form."""
    import hashlib

    body = {k: v for k, v in meta.items() if k != SELF_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=True).encode("utf-8")).hexdigest()


def verify(directory: str | Path) -> dict:
    """judge.json, after checking that every file it lists is there and unchanged, and that the
    taxonomy names exactly the labels the classifier was trained on."""
    from judge.manifest import file_sha256

    directory = Path(directory)
    meta_path = directory / JUDGE_JSON
    if not meta_path.is_file():
        raise UserError(f"{directory} is not a judge directory (no {JUDGE_JSON}); train one with python -m judge.train")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{meta_path} is not valid JSON ({exc}); restore it or retrain the judge") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict) or not isinstance(meta.get("labels"), list):
        raise UserError(f"{meta_path} lists no file checksums or labels (a judge from an older version, or edited): retrain it with python -m judge.train")
    if meta.get(SELF_DIGEST) != _self_digest(meta):
        raise UserError(f"judge directory {directory}: {JUDGE_JSON} was edited after training (its settings no longer match their checksum); "
                        "restore it or retrain the judge")
    present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    unexpected = sorted(n for n in present - set(meta["files"]) if _sealed_name(n))
    if unexpected:
        raise UserError(f"judge directory {directory}: unexpected file(s) {', '.join(unexpected)} not written by training; "
                        "remove them (a judge directory is loaded only as it was trained)")
    for name, digest in meta["files"].items():
        path = directory / name
        if ".." in Path(name).parts or not path.is_file():
            raise UserError(f"judge directory {directory}: {name} is missing; restore it or retrain the judge")
        if file_sha256(path) != digest:
            raise UserError(f"judge directory {directory}: {name} changed since the judge was trained (sha256 differs from judge.json); restore it or retrain")
    if TAXONOMY not in meta["files"]:
        raise UserError(f"judge directory {directory}: {TAXONOMY} is not among its checked files; retrain the judge")
    from judge.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(directory / TAXONOMY)
    if sorted(taxonomy.labels) != sorted(map(str, meta["labels"])):
        raise UserError(f"judge directory {directory}: {TAXONOMY} names {taxonomy.labels}, the classifier was trained on {meta['labels']}; retrain the judge")
    return meta


def directory_key(directory: str | Path) -> str:
    """A cache key for everything the judge is: judge.json holds every other file's hash."""
    from judge.manifest import file_sha256

    return file_sha256(Path(directory) / JUDGE_JSON)[:24]


def finish(directory: str | Path, taxonomy, *, training_ids=()) -> dict:
    """Complete a judge directory after its backend wrote its files: the taxonomy, the training ids,
    then the checksums (``seal``). Every way of making a judge ends here."""
    import yaml

    directory = Path(directory)
    (directory / TAXONOMY).write_text(yaml.safe_dump(taxonomy.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")
    write_training_ids(directory, training_ids)
    return seal(directory, labels=taxonomy.labels)
