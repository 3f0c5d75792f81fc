"""The stacked ensemble on disk: judge.json (members, their folders, the stacker's settings),
stacker.safetensors (the logistic regression's coefficients, intercept and classes), and one
ordinary judge directory per trained member under members/.

The members it may hold are the registry's member kinds (``KindSpec.member``); those with a judge
directory (lora, tfidf, embed) are shipped as folders, the others (the rules) are code. A member's folder is
a judge inside the ensemble's own directory: never a folder elsewhere, never the ensemble itself,
never another ensemble, so loading one cannot leave the directory or recurse.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from judge.core.errors import UserError, cut
from judge.core.schema import RETRAIN, finite_arrays, only_tensors, read_json, require_tensor, tensor_headers, unique
from judge.kinds.registry import member_kinds, registered, trained_members

STACKER_FILE = "stacker.safetensors"


def _member(name: str) -> str:
    return registered(member_kinds(), name, what="a registered member kind")


def _trained_member(name: str) -> str:
    return registered(trained_members(), name, what="a member with a folder of its own")


class Stacker(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    temperature: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0


class Settings(BaseModel):
    """judge.json of an ensemble."""

    model_config = ConfigDict(strict=True, extra="ignore")
    kind: Literal["ensemble"]
    members: Annotated[list[Annotated[str, AfterValidator(_member)]], Field(min_length=2), AfterValidator(unique)]
    member_dirs: dict[Annotated[str, AfterValidator(_trained_member)], str]
    stacker: Stacker = Stacker()
    mask_names: bool = True

    @model_validator(mode="after")
    def _a_folder_per_trained_member(self):
        trained = {m for m in self.members if m in trained_members()}
        if set(self.member_dirs) != trained:
            raise ValueError(
                f"member_dirs must name a folder for each of {', '.join(sorted(trained)) or 'no member'} and nothing "
                "else"
            )
        return self


def save(
    directory: Path,
    weights: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    members: list[str],
    labels: list[str],
    C: float,
    temperature: float,
    member_weights: dict[str, float],
    mask_names: bool,
) -> None:
    """stacker.safetensors (coef, intercept, classes) and judge.json of an ensemble whose members are
    written already."""
    from safetensors.numpy import save_file

    from judge.kinds.judge_dir import write_settings

    coef, intercept, classes = weights
    save_file({"coef": coef, "intercept": intercept, "classes": classes}, str(Path(directory) / STACKER_FILE))
    write_settings(
        directory,
        {
            "kind": "ensemble",
            "members": members,
            "member_dirs": {m: f"members/{m}" for m in members if m in trained_members()},
            "features": [f"{m}:{c}" for m in members for c in labels],
            "stacker": {"model": "multinomial logistic regression", "C": C, "temperature": temperature},
            "member_weights": member_weights,
            "mask_names": mask_names,
        },
    )


def member_directories(directory: Path, meta: dict, *, where: str) -> dict[str, Path]:
    """Each trained member's folder, checked to lie inside the ensemble and to hold a judge of the member's kind."""
    from judge.kinds.judge_dir import JUDGE_JSON, inside

    out = {}
    for name in meta["members"]:
        if name not in trained_members():
            continue
        relative = meta["member_dirs"][name]
        if not inside(relative):
            raise UserError(
                f"{where}: member {name}'s folder {cut(relative, 60)!r} is not a folder inside the ensemble "
                f"(members/{name}); {RETRAIN}"
            )
        folder = directory / relative
        kind = _kind_of(folder / JUDGE_JSON, where=where)
        if kind != name:
            raise UserError(
                f"{where}: member {name} ({cut(relative, 40)}) holds {'an' if kind[:1] in 'aeiou' else 'a'} "
                f"{cut(kind, 20)} judge, "
                f"not {'an' if name[:1] in 'aeiou' else 'a'} {name} one; {RETRAIN}"
            )
        out[name] = folder
    return out


def precision_directory(arg: str) -> Path | None:
    """The folder whose precision record decides how the ensemble runs: its first member that has one
    (the LoRA member's own), with the checks loading makes."""
    from judge.kinds.judge_dir import display_name, verify
    from judge.kinds.registry import spec_of
    from judge.kinds.spec import dotted

    directory = Path(arg)
    for name, folder in member_directories(
        directory, verify(directory), where=f"judge directory {display_name(directory)}"
    ).items():
        find = dotted(spec_of(name).precision_directory)
        found = find(str(folder)) if find else None
        if found is not None:
            return found
    return None


def _kind_of(path: Path, *, where: str) -> str:
    if not path.is_file():
        raise UserError(f"{where}: {path.parent.name} holds no judge (no {path.name}); {RETRAIN}")
    from judge.kinds.judge_dir import MAX_JUDGE_JSON_BYTES

    meta = read_json(path, max_bytes=MAX_JUDGE_JSON_BYTES, where=where)
    return str(meta.get("kind")) if isinstance(meta, dict) else "unreadable"


def read_stacker(
    directory: Path, *, n_members: int, n_labels: int, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coef, intercept, classes), checked by header, then by value."""
    headers = tensor_headers(directory / STACKER_FILE, where=where)
    only_tensors(headers, ("coef", "intercept", "classes"), where=where, file=STACKER_FILE)
    n_classes = _class_count(headers, where)
    rows = 1 if n_classes == 2 else n_classes  # scikit-learn's binary form: one row, for the second class
    require_tensor(headers, "coef", ("float64",), (rows, n_members * n_labels), where=where, file=STACKER_FILE)
    require_tensor(headers, "intercept", ("float64",), (rows,), where=where, file=STACKER_FILE)
    arrays = finite_arrays(directory / STACKER_FILE, where=where)
    classes = arrays["classes"]
    if n_classes < 2 or len(np.unique(classes)) != n_classes or classes.min() < 0 or classes.max() >= n_labels:
        raise UserError(
            f"{where}: {STACKER_FILE} classes must be two or more distinct class numbers below {n_labels}; {RETRAIN}"
        )
    return arrays["coef"], arrays["intercept"], classes.astype(int)


def _class_count(headers: dict, where: str) -> int:
    if "classes" not in headers:
        raise UserError(f"{where}: {STACKER_FILE} has no classes array; {RETRAIN}")
    dtype, shape = headers["classes"]
    if dtype != "int64" or len(shape) != 1 or shape[0] < 2:
        raise UserError(
            f"{where}: {STACKER_FILE}: classes is {dtype} of shape {shape}, expected int64 of shape (n,) with n >= 2; "
            f"{RETRAIN}"
        )
    return shape[0]


def stacker_probabilities(
    model_or_weights, features: np.ndarray, n_classes: int, *, temperature: float = 1.0
) -> np.ndarray:
    """Probabilities over all classes (a class the stacker never saw gets 0), scores divided by ``temperature``."""
    coef, intercept, classes = model_or_weights
    scores = features @ coef.T + intercept
    if coef.shape[0] == 1:  # scikit-learn's binary form: one row for the second class
        scores = np.hstack([-scores / 2, scores / 2])
    scores = scores / temperature
    scores -= scores.max(axis=1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(axis=1, keepdims=True)
    out = np.zeros((len(features), n_classes))
    out[:, classes] = p
    return out
