"""The judge directory's layout, shared by ``training/`` (which writes it) and the judges (which read it).

A judge directory holds the backend's weights, ``judge.json`` (backend, labels, settings),
``taxonomy.yaml``, ``manifest.json``, a model card, and ``training_ids.json``: the ids of the
records it was trained on, so a report that corrects the judge with human labels can check that
those labels are ones the judge has not seen.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path, PurePosixPath
from typing import Annotated, Iterable, Iterator, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from judge.core.errors import UserError, cut, short_list
from judge.core.files import json_text
from judge.core.schema import MIB, RETRAIN, cut_path, read_json, size_text, unique, validate
from judge.core.text import MAX_MASKED_NAMES, MAX_NAME_CHARS

JUDGE_JSON = "judge.json"
TAXONOMY = "taxonomy.yaml"
TRAINING_IDS = "training_ids.json"


def write_training_ids(directory: str | Path, ids) -> Path:
    path = Path(directory) / TRAINING_IDS
    path.write_text(json.dumps(sorted(str(i) for i in ids)) + "\n", encoding="utf-8")
    return path


MAX_TRAINING_IDS_BYTES = 256 * MIB


def read_training_ids(directory: str | Path) -> set[str] | None:
    """The ids a judge was trained on, or None when the directory does not record them."""
    path = Path(directory) / TRAINING_IDS
    if not path.is_file():
        return None
    fix = "retrain the judge or restore the file"
    ids = read_json(path, max_bytes=MAX_TRAINING_IDS_BYTES, where=f"judge directory {display_name(directory)}", fix=fix)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise UserError(f"{path.name} of judge directory {display_name(directory)} is not a JSON list of ids; {fix}")
    return set(ids)


def display_name(directory: str | Path) -> str:
    """A judge directory as messages name it: its folder name (messages stay one short line)."""
    return Path(directory).resolve().name or str(directory)


# Files a user may edit without changing what the judge does: the settings file (it carries its
# own checksum), the manifest, the model card, and the cross-validation report under cv/.
UNSEALED = {JUDGE_JSON, "manifest.json", "README.md"}
UNSEALED_FOLDER = "cv/"


def _sealed_name(name: str) -> bool:
    return name not in UNSEALED and not name.startswith(UNSEALED_FOLDER)


def seal(directory: str | Path, *, labels: list[str], text_view=None) -> dict:
    """Record every file's sha256 and the order of the classifier's outputs in judge.json.

    Called last when a judge is written. Loading then checks each file (``verify``), so a swapped
    taxonomy, an edited class list or a truncated adapter is refused instead of giving wrong labels.
    The checksums are not a signature: anyone can recompute them, so loading also validates every
    file as untrusted data.
    """
    from judge.core.files import file_sha256

    directory = Path(directory)
    meta = json.loads((directory / JUDGE_JSON).read_text(encoding="utf-8"))
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = path.relative_to(directory).as_posix()
        if _sealed_name(name):
            files[name] = file_sha256(path)
    meta.pop(SELF_DIGEST, None)
    meta.update(labels=list(labels), files=files)
    if text_view is not None:
        meta["text_view"] = text_view.settings()
    meta[SELF_DIGEST] = _self_digest(meta)
    (directory / JUDGE_JSON).write_text(json_text(meta, indent=2) + "\n", encoding="utf-8")
    return meta


SELF_DIGEST = "judge_json_sha256"


def _self_digest(meta: dict) -> str:
    """sha256 of judge.json's own settings (labels, temperature, classes ...), in canonical form."""
    import hashlib

    body = {k: v for k, v in meta.items() if k != SELF_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=True).encode("utf-8")).hexdigest()


# -- loading: the seal, then everything it covers as untrusted data -----------------------------

MAX_JUDGE_JSON_BYTES = MIB  # training writes a few kilobytes
MAX_TAXONOMY_BYTES = MIB  # read before YAML parses it; the presets are 1-3 kB
# Formats that can run code when loaded; a judge's weights are safetensors and its settings JSON.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".joblib", ".ckpt")


def _directory_kind(kind: str) -> str:
    """Only a registered kind with a judge directory: a forged judge.json cannot name any other."""
    from judge.kinds.registry import directory_kinds, registered

    return registered(directory_kinds(), kind, what="a registered kind with a judge directory")


class Kind(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    kind: Annotated[str, AfterValidator(_directory_kind)]


class TextViewSettings(BaseModel):
    """judge.json's ``text_view``: what of a record the judge reads (``judge.core.text.TextView``)."""

    model_config = ConfigDict(strict=True, extra="forbid")
    prompt: bool = True
    names: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_CHARS)]],
        Field(max_length=MAX_MASKED_NAMES),
    ] = []
    names_column: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class ViewScores(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    kappa: float
    macro_f1: float


class ViewChoice(BaseModel):
    """--pick-view: the out-of-fold agreement of both text views, and the one the judge reads."""

    model_config = ConfigDict(strict=True, extra="forbid")
    chosen: Literal["prompt", "response"]
    by: str
    scores: dict[Literal["prompt", "response"], ViewScores]


class DecisionTuning(BaseModel):
    """--tune-thresholds: how the decision offsets were tuned, and the out-of-fold objective before (all 0) and
    after (None: not tuned, with the reason). Informative: labelling reads the Seal's ``decision_offsets``."""

    model_config = ConfigDict(strict=True, extra="forbid")
    objective: Literal["kappa", "macro-f1"]
    before: float | None = None
    after: float | None = None
    reference: Annotated[str, StringConstraints(max_length=200)] | None = None
    min_gain: float
    max_offset: float
    offsets: dict[Annotated[str, StringConstraints(max_length=200)], float]
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class TrainingNotes(BaseModel):
    """judge.json's ``training_notes``: what training found of the judge (training.checks). Informative:
    labelling does not depend on it."""

    model_config = ConfigDict(strict=True, extra="ignore")
    # held-out predictions ('validation', 'out-of-fold') -> categories of >= 10% of the labels never predicted
    never_predicted: dict[str, list[Annotated[str, StringConstraints(max_length=200)]]] = {}
    view_choice: ViewChoice | None = None
    decision_offsets: DecisionTuning | None = None


# judge.train --tune-thresholds: a judge's decision offsets, label = argmax(log p + offset) (judge.kinds.base).
# |offset| is capped: an offset of 3 already multiplies a category's odds by e^3 (about 20) against the
# reference category; beyond that the label is set by the offset rather than by the model's evidence, an offset
# tuned on a few hundred out-of-fold labels that large is fitting a handful of records, and a forged judge.json
# could otherwise turn any judge into a constant labeller.
MAX_DECISION_OFFSET = 3.0
# The floor under a probability before its log is taken, in tuning and in labelling alike (a category a
# classifier never saw has probability 0): far below any offset's reach (log 1e-12 is about -27.6).
PROBABILITY_FLOOR = 1e-12

DecisionOffset = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_DECISION_OFFSET, le=MAX_DECISION_OFFSET)]


class Seal(Kind):
    """What every judge.json holds, whatever its kind; the kinds' own settings are checked by their formats."""

    labels: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=200)]],
        Field(min_length=2, max_length=1000),
        AfterValidator(unique),
    ]
    files: dict[str, Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]]
    judge_json_sha256: str
    mask_names: bool = True
    text_view: TextViewSettings = TextViewSettings()
    training_notes: TrainingNotes | None = None
    # label -> additive offset on the log-probability, one per label (judge.train --tune-thresholds); absent: none
    decision_offsets: dict[Annotated[str, StringConstraints(max_length=200)], DecisionOffset] | None = None

    @model_validator(mode="after")
    def _an_offset_per_label(self):
        offsets = self.decision_offsets
        if offsets is not None and set(offsets) != set(self.labels):
            stray = sorted(set(offsets) - set(self.labels))
            missing = sorted(set(self.labels) - set(offsets))
            raise ValueError(
                "decision_offsets must give one offset for each label: "
                + (f"{cut(stray[0], 40)!r} is not a label" if stray else f"{cut(missing[0], 40)!r} has none")
            )
        return self


def decide(probabilities, offsets):
    """Class ids argmax(log p + offset) along the last axis (ties: the first category): the one decision rule of
    tuning (training.thresholds), labelling (judge.kinds.base ``Judge.decide``) and calibration on out-of-fold
    predictions (judge.calibrate)."""
    import numpy as np

    log_p = np.log(np.clip(np.asarray(probabilities, dtype=float), PROBABILITY_FLOOR, None))
    return (log_p + np.asarray(offsets, dtype=float)).argmax(axis=-1)


def decision_offsets_of(meta: dict) -> dict[str, float] | None:
    """The decision offsets a (verified) judge.json records, or None when it has none or all are zero (labels are
    then the argmax of the probabilities, exactly as a judge without offsets gives them)."""
    offsets = meta.get("decision_offsets")
    if not offsets or not any(offsets.values()):
        return None
    return {str(label): float(value) for label, value in offsets.items()}


def text_view_of(meta: dict):
    """The TextView a (verified) judge.json records; a judge from before text views read prompt and response."""
    from judge.core.text import TextView

    view = TextViewSettings.model_validate(meta.get("text_view") or {})
    return TextView(
        prompt=view.prompt,
        mask_names=bool(meta.get("mask_names", True)),
        names=tuple(view.names),
        names_column=view.names_column,
    )


def _settings_model(kind: str):
    """The kind's own judge.json schema: the ``Settings`` of the format module its spec names."""
    import importlib

    from judge.kinds.registry import spec_of

    return importlib.import_module(spec_of(kind).format).Settings


def validate_settings(settings: dict, *, where: str, name: str = JUDGE_JSON) -> None:
    kind = validate(Kind, settings, where=where, name=name).kind
    validate(_settings_model(kind), settings, where=where, name=name)


def write_settings(directory: str | Path, settings: dict) -> Path:
    """judge.json as training writes it, checked by the schema loading applies: a judge training made always loads."""
    directory = Path(directory)
    validate_settings(settings, where=f"judge directory {display_name(directory)}")
    path = directory / JUDGE_JSON
    path.write_text(json_text(settings, indent=2) + "\n", encoding="utf-8")
    return path


def inside(name: str) -> bool:
    """A relative, normalised path that stays in its directory (no '..', no absolute path, no '.')."""
    pure = PurePosixPath(name)
    return bool(name) and not pure.is_absolute() and ".." not in pure.parts and pure.as_posix() == name and name != "."


def contents(directory: Path, where: str) -> set[str]:
    """Every regular file under ``directory`` (relative names); a symbolic link or a special file is refused.

    A link makes the sealed bytes live elsewhere (``/etc/...``, another judge), and a FIFO would
    block the reader, so a judge directory holds its own plain files and nothing else.
    """
    import stat

    found = set()
    for folder, dirs, files in os.walk(directory):  # links to folders are listed, never entered
        for entry in dirs + files:
            path = Path(folder) / entry
            name = path.relative_to(directory).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise UserError(
                    f"{where}: {cut(name, 60)} is a symbolic link; a judge directory holds its own files "
                    "(copy it with cp -rL) or retrain the judge"
                )
            if entry in files:
                if not stat.S_ISREG(mode):
                    raise UserError(f"{where}: {cut(name, 60)} is not a regular file; remove it or retrain the judge")
                found.add(name)
    return found


def _read_settings_file(directory: Path, where: str) -> dict:
    path = directory / JUDGE_JSON
    meta = read_json(path, max_bytes=MAX_JUDGE_JSON_BYTES, where=where, fix="restore it or " + RETRAIN)
    if not isinstance(meta, dict):
        raise UserError(f"{where}: {JUDGE_JSON} is not a JSON object; restore it or {RETRAIN}")
    if "files" not in meta or "labels" not in meta:
        raise UserError(
            f"{where}: {JUDGE_JSON} lists no file checksums or labels (a judge from an older version, or edited): "
            "retrain it with python -m judge.train"
        )
    return meta


def verify(directory: str | Path) -> dict:
    """judge.json, after checking that every file it lists is there and unchanged, that the taxonomy
    names exactly the labels the classifier was trained on, and that the settings have the kind's
    schema. A re-sealed forgery passes the checksums; the checks on what they cover stop it. Inside
    ``known_digests`` a file this run hashed already, unchanged since, is not hashed again."""
    directory = Path(directory)
    where = f"judge directory {display_name(directory)}"
    if not (directory / JUDGE_JSON).is_file() and not (directory / JUDGE_JSON).is_symlink():
        raise UserError(f"{where} is not a judge directory (no {JUDGE_JSON}); train one with python -m judge.train")
    present = contents(directory, where)
    meta = _read_settings_file(directory, where)
    seal_ = validate(Seal, meta, where=where, name=JUDGE_JSON)
    if meta[SELF_DIGEST] != _self_digest(meta):
        raise UserError(
            f"{where}: {JUDGE_JSON} was edited after training (its settings no longer match their checksum); "
            "restore it or retrain the judge"
        )
    validate_settings(meta, where=where)
    outside = [n for n in seal_.files if not inside(n)]
    if outside:
        raise UserError(
            f"{where}: {JUDGE_JSON} lists {cut_path(outside[0])}, outside the judge directory; "
            "a judge's files live inside it: retrain the judge"
        )
    unexpected = sorted(n for n in present - set(seal_.files) if _sealed_name(n))
    if unexpected:
        raise UserError(
            f"{where}: unexpected file(s) {short_list(unexpected)} not written by training; "
            "remove them (a judge directory is loaded only as it was trained)"
        )
    for name, digest in seal_.files.items():
        if name not in present:
            raise UserError(f"{where}: {cut(name, 60)} is missing; restore it or retrain the judge")
        if sha256_of(directory / name) != digest:
            raise UserError(
                f"{where}: {cut(name, 60)} changed since the judge was trained (sha256 differs from judge.json); "
                "restore it or retrain"
            )
    pickles = sorted(n for n in seal_.files if n.lower().endswith(PICKLE_SUFFIXES))
    if pickles:
        raise UserError(
            f"{where}: {short_list(pickles)} is a pickle (loading it could run code); a judge's weights are "
            "safetensors: "
            "retrain the judge"
        )
    if TAXONOMY not in seal_.files:
        raise UserError(f"{where}: {TAXONOMY} is not among its checked files; retrain the judge")
    from judge.core.taxonomy import load_taxonomy

    if (directory / TAXONOMY).stat().st_size > MAX_TAXONOMY_BYTES:
        raise UserError(
            f"{where}: {TAXONOMY} is larger than a taxonomy ({size_text(MAX_TAXONOMY_BYTES)} at most); retrain the "
            "judge"
        )
    taxonomy = load_taxonomy(directory / TAXONOMY)
    if sorted(taxonomy.labels) != sorted(seal_.labels):
        raise UserError(
            f"{where}: {TAXONOMY} names {short_list(taxonomy.labels)}, the classifier was trained on "
            f"{short_list(seal_.labels)}; "
            "retrain the judge"
        )
    return meta


def directory_fingerprint(directory: str | Path) -> dict[str, str]:
    """Every file at the top of a judge directory by sha256 (the manifest aside): what a rerun must match."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    # Links are left to verify(), which refuses them: never read through one before that.
    return {
        p.name: sha256_of(p)
        for p in sorted(directory.iterdir())
        if p.is_file() and not p.is_symlink() and p.name != "manifest.json"
    }


def directory_key(directory: str | Path) -> str:
    """A cache key for everything the judge is: judge.json holds every other file's hash."""
    return sha256_of(Path(directory) / JUDGE_JSON)[:24]


# -- a judge's files hashed once per run --------------------------------------------------------------

# A file's sha256 as a run found it, with what says it is still that file: (device, inode, size,
# modification and change times in ns). The kernel sets the change time on every write and no user
# can set it back, so a file whose stat is unchanged holds the bytes that were hashed.
Digest = tuple[str, tuple[int, int, int, int, int], str]  # (real path, stat, sha256)
_KNOWN: ContextVar[dict[str, tuple[tuple[int, int, int, int, int], str]] | None] = ContextVar(
    "judge_file_digests", default=None
)


@contextmanager
def known_digests(digests: Iterable[Digest] = ()) -> Iterator[dict]:
    """Within this block a judge file whose sha256 is known and whose stat has not changed since is not
    hashed again, and the files hashed in it join what is known (the dict yielded). ``judge.kinds.resolve``
    hashes a judge directory in one such block and keeps the digests in its ``JudgeRef``; choosing the
    precision, loading the judge and a Ray actor's load take them from there. A file that changed since
    is hashed again and must still be the same: a run loads the judge its manifest names."""
    known = {path: (stat, digest) for path, stat, digest in digests}
    token = _KNOWN.set(known)
    try:
        yield known
    finally:
        _KNOWN.reset(token)


def frozen(known: dict) -> tuple[Digest, ...]:
    """What ``known_digests`` yielded, as ``known_digests`` takes it again (picklable, immutable)."""
    return tuple((path, stat, digest) for path, (stat, digest) in sorted(known.items()))


def sha256_of(path: Path) -> str:
    """The sha256 of a judge's file: the one every check of a judge directory takes (see ``known_digests``)."""
    from judge.core.files import file_sha256

    known = _KNOWN.get()
    if known is None:
        return file_sha256(path)
    key, info = os.path.realpath(path), os.stat(path)
    stat = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    before = known.get(key)
    if before is not None and before[0] == stat:
        return before[1]
    digest = file_sha256(path)
    if before is not None and before[1] != digest:
        raise UserError(
            f"judge directory {display_name(Path(path).parent)}: {cut(Path(path).name, 60)} changed while the run was "
            "using it "
            "(or a Ray node holds another copy of the judge); keep one judge, the same on every node, for the whole "
            "run and rerun"
        )
    known[key] = (stat, digest)
    return digest


def finish(
    directory: str | Path, taxonomy, *, training_ids=(), text_view=None, training_notes=None, decision_offsets=None
) -> dict:
    """Complete a judge directory after its backend wrote its files: the taxonomy, the training ids,
    the decision offsets (label -> float, judge.train --tune-thresholds), then the checksums (``seal``).
    Every way of making a judge ends here."""
    import yaml

    directory = Path(directory)
    (directory / TAXONOMY).write_text(
        yaml.safe_dump(taxonomy.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    write_training_ids(directory, training_ids)
    if training_notes or decision_offsets is not None:  # one read and one write of judge.json for both
        meta = json.loads((directory / JUDGE_JSON).read_text(encoding="utf-8"))
        if training_notes:
            meta["training_notes"] = TrainingNotes.model_validate(training_notes).model_dump(exclude_none=True)
        if decision_offsets is not None:
            meta["decision_offsets"] = {str(k): float(v) for k, v in decision_offsets.items()}
        (directory / JUDGE_JSON).write_text(json_text(meta, indent=2) + "\n", encoding="utf-8")
    meta = seal(directory, labels=taxonomy.labels, text_view=text_view)
    if decision_offsets is not None:
        Seal.model_validate(meta)  # offsets training writes are ones loading accepts (finite, capped, every label)
    shareable(directory)
    return meta


def shareable(directory: Path) -> None:
    """Every file and folder of the judge follows the umask: safetensors writes its files 0600 and
    mkdtemp its folders 0700, which would keep the judge from the colleague it is meant for."""
    from judge.core.files import normal_permissions

    for folder, dirs, files in os.walk(directory):
        for entry in dirs + files:
            if not (Path(folder) / entry).is_symlink():
                normal_permissions(Path(folder) / entry)
    normal_permissions(directory)
