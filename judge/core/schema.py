"""Reading files a user hands over as untrusted data: bounded JSON, schemas, safetensors headers.

A judge directory's seal (``judge.kinds.judge_dir``) is an unkeyed sha256 anyone can recompute: it catches
a file changed by accident, not a forged one. So what the seal covers is checked here before any
library sees it: sizes before reading, nesting before recursing, types and ranges by schema
(pydantic, strict), and array names, dtypes and shapes from the safetensors header before the data.
Every failure is one ``UserError`` line that names the file and the fix.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

from judge.core.errors import UserError, cut, short_list

MIB = 1 << 20
# Deeper than anything training writes (judge.json nests 3 levels); json and pydantic recurse, so a
# crafted '[' x 100000 must stop here, not in a RecursionError.
MAX_DEPTH = 32
RETRAIN = "retrain the judge (python -m judge.train)"


def size_text(n: int) -> str:
    return f"{n / MIB:.1f} MiB"


def _no_constant(name: str):
    raise ValueError(f"it holds {name}, which JSON does not allow")


def read_json(path: str | Path, *, max_bytes: int, where: str, fix: str = RETRAIN) -> Any:
    """Parse a JSON file no larger than ``max_bytes`` and no deeper than ``MAX_DEPTH``."""
    path = Path(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{where}: {path.name} is not a regular file; {fix}")
        if info.st_size > max_bytes:
            raise UserError(
                f"{where}: {path.name} is {size_text(info.st_size)}, more than the {size_text(max_bytes)} such a file "
                f"takes; {fix}"
            )
        text = path.read_bytes().decode("utf-8")
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise UserError(f"{where}: {path.name} is nested too deeply to be a judge's file; {fix}") from None
    except UnicodeDecodeError:
        raise UserError(f"{where}: {path.name} is not UTF-8 text; {fix}") from None
    except ValueError as exc:  # JSONDecodeError and NaN / Infinity
        raise UserError(f"{where}: {path.name} is not valid JSON ({str(exc).splitlines()[0][:80]}); {fix}") from None
    except OSError as exc:
        raise UserError(f"{where}: {path.name} cannot be read ({exc.strerror or exc}); {fix}") from None
    if nesting(value) > MAX_DEPTH:
        raise UserError(f"{where}: {path.name} is nested too deeply to be a judge's file; {fix}")
    return value


def nesting(value: Any) -> int:
    """How deep lists and objects nest (iteratively: the input may be adversarial)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def cut_path(value: str, width: int = 60) -> str:
    """A path for a one-line message: its end, which names the file."""
    return value if len(value) <= width else "..." + value[-(width - 3) :]


def validate(model, value: Any, *, where: str, name: str, fix: str = RETRAIN):
    """``model.model_validate(value)``, its first error as one line: '<where>: <name> <field>: <problem>; <fix>'."""
    from pydantic import ValidationError

    if not isinstance(value, dict):
        raise UserError(f"{where}: {name} is not a JSON object; {fix}")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise UserError(f"{where}: {name} {describe_error(exc)}; {fix}") from None


def describe_error(exc) -> str:
    error = exc.errors(include_url=False)[0]
    field = ".".join(cut(part, 30) for part in error["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if error["type"] == "value_error":  # our own validators' messages read on from the field name
        return f"{field} {str(error['ctx']['error'])}{more}" if field else f"{error['ctx']['error']}{more}"
    return f"{field}: {error['msg']}{more}"


def unique(values: list) -> list:
    """A pydantic after-validator: no value twice."""
    seen = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{cut(v)!r} is listed twice")
        seen.add(v)
    return values


# -- safetensors ---------------------------------------------------------------------------------

DTYPE_NAMES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


def tensor_headers(path: str | Path, *, where: str, fix: str = RETRAIN) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype, shape), read from the file's header only (no tensor data)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as handle:
            return {
                key: (
                    DTYPE_NAMES.get(handle.get_slice(key).get_dtype(), handle.get_slice(key).get_dtype()),
                    tuple(handle.get_slice(key).get_shape()),
                )
                for key in handle.keys()
            }
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(
            f"{where}: {path.name} is not a readable safetensors file ({cut(str(exc).splitlines()[0], 80)}); {fix}"
        ) from None


def require_tensor(
    headers: dict,
    key: str,
    dtypes: tuple[str, ...],
    shape: tuple[int, ...],
    *,
    where: str,
    file: str,
    fix: str = RETRAIN,
) -> None:
    if key not in headers:
        raise UserError(f"{where}: {file} has no {key} array; {fix}")
    dtype, got = headers[key]
    if dtype not in dtypes:
        raise UserError(f"{where}: {file}: {cut(key, 80)} is {dtype}, expected {' or '.join(dtypes)}; {fix}")
    if got != tuple(shape):
        raise UserError(f"{where}: {file}: {cut(key, 80)} has shape {got}, expected {tuple(shape)}; {fix}")


def only_tensors(headers: dict, keys, *, where: str, file: str, fix: str = RETRAIN) -> None:
    extra = sorted(set(headers) - set(keys))
    if extra:
        raise UserError(f"{where}: {file} holds unexpected arrays {short_list(extra)}; {fix}")


def finite_arrays(path: str | Path, *, where: str, fix: str = RETRAIN) -> dict:
    """Every array of a (header-checked) safetensors file, refused if a float holds NaN or infinity."""
    from safetensors.numpy import load_file

    path = Path(path)
    arrays = load_file(str(path))
    for key, array in arrays.items():
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise UserError(f"{where}: {path.name}: {cut(key, 80)} holds non-finite values (NaN or infinity); {fix}")
    return arrays
