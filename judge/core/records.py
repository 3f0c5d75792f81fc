"""Canonical records: one row per model output, read from and written to JSONL, CSV or Parquet.

A record has ``id``, ``prompt``, ``response``, any metadata (``identity``, ``name``, ``template``,
``model``, ``sample`` ...) and zero or more label columns. Every stage adds columns and keeps the
ones it received. Writes are atomic and never replace an existing file unless asked to.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import math
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from judge.core.errors import UserError, short_list
from judge.core.files import (
    DEFAULT_ENCODING,
    _check_input_file,
    _json_value,
    atomic_write,
    check_encoding,
    encoding_error,
    json_text,
    read_text,
    to_json_line,
)
from judge.core.schema import nesting
from judge.core.sheets import guard_formulas, unguard_formulas

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# A JSON list is parsed whole in memory (JSONL streams line by line), so its size and nesting are bounded first.
MAX_JSON_LIST_BYTES = 1 << 30
MAX_JSON_LIST_DEPTH = 32  # judge.core.schema.nesting counts no further
# Records have a handful of columns; 10^6 of them made judge.label run for minutes on 5 rows (issue 31, 7).
MAX_COLUMNS = 10_000


def file_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UserError(
            f"unknown file format '{suffix or Path(path).name}' for {path}; use one of {', '.join(sorted(FORMATS))}"
        )
    return FORMATS[suffix]


def _read_jsonl(
    path: Path, *, tolerate_truncated_tail: bool = False, encoding: str = DEFAULT_ENCODING
) -> list[dict[str, Any]]:
    rows, columns = [], set()
    try:
        with open(path, encoding=check_encoding(encoding)) as handle:
            lines = handle.readlines()
    except UnicodeError as exc:
        raise encoding_error(path, exc, encoding) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if _holds_infinity(row):  # C-speed containment at each level; rare
                json.loads(line, parse_float=_finite_float, parse_constant=_constant)  # says which number
        except json.JSONDecodeError as exc:
            # A process killed mid-write leaves at most one cut line, and only at the end.
            if tolerate_truncated_tail and number == len(lines) and not line.endswith("\n"):
                break
            raise UserError(f"{path}: line {number} is not valid JSON ({exc.msg}); fix or remove that line") from None
        except ValueError as exc:  # a number no reader keeps as it is: 5,000 digits, or 1e400
            raise UserError(f"{path.name}: line {number} {_number_problem(exc)}") from None
        _check_unicode(line, row, f"{path.name}: line {number}")
        if not isinstance(row, dict):
            raise UserError(f"{path}: line {number} is not a JSON object; each line must be one record {{...}}")
        columns.update(row)
        if len(columns) > MAX_COLUMNS:
            raise _too_many_columns(path, f"{len(columns):,}")
        rows.append(row)
    return rows


def _read_json_list(path: Path, *, encoding: str) -> list[dict[str, Any]]:
    """A ``.json`` file holding ``[{...}, ...]``: the same records a JSONL file holds, one object each."""

    size = path.stat().st_size
    if size > MAX_JSON_LIST_BYTES:
        raise UserError(
            f"{path.name} is {size / 2**20:.0f} MiB, more than the {MAX_JSON_LIST_BYTES / 2**20:.0f} MiB a JSON list "
            "may hold "
            "(it is parsed whole); convert it to JSONL (one record per line), which is read without that limit"
        )
    text = read_text(path, encoding=encoding)
    try:
        rows = json.loads(text, parse_float=_finite_float, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path.name}: not valid JSON ({exc.msg} at line {exc.lineno}); fix the file or save it as JSONL"
        ) from None
    except ValueError as exc:
        raise UserError(f"{path.name} {_number_problem(exc)}") from None
    except RecursionError:
        rows = None
    if rows is not None and not isinstance(rows, list):
        kind = {dict: "an object", str: "text", bool: "true/false", type(None): "null"}.get(type(rows), "a number")
        raise UserError(
            f"{path.name} holds {kind}, not a JSON list of records; "
            "a .json input must be [{...}, {...}] (one object per record), or save the records as JSONL"
        )
    if rows is None or nesting(rows) > MAX_JSON_LIST_DEPTH:
        raise UserError(
            f"{path.name} nests JSON more than {MAX_JSON_LIST_DEPTH} levels deep; flatten its records (one object "
            "each, plain values)"
        )
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise UserError(
                f"{path.name}: item {number} of the list is not a JSON object; each item must be one record {{...}}"
            )
    _check_unicode(text, rows, path.name)
    columns: set = set()
    for row in rows:
        columns.update(row)
        if len(columns) > MAX_COLUMNS:
            raise _too_many_columns(path, f"more than {MAX_COLUMNS:,}")
    return rows


def _too_many_columns(path: Path, count: str) -> UserError:
    return UserError(
        f"{path.name} has {count} columns, more than the {MAX_COLUMNS:,} a records file may have; keep the columns "
        "the run needs (id, prompt, response, labels, groups)"
    )


def _check_csv_header(path: Path, encoding: str) -> None:
    """Refuse a CSV whose header names a column twice (pandas would rename the second 'response.1' and the run
    would judge the first) or names more than ``MAX_COLUMNS`` columns (each is work for every row)."""
    try:
        with open(path, encoding=check_encoding(encoding), newline="") as handle:
            header = next(csv.reader(handle), [])
    except UnicodeError as exc:
        raise encoding_error(path, exc, encoding) from None
    except csv.Error:
        return  # pandas says what is wrong with the file
    if len(header) > MAX_COLUMNS:
        raise _too_many_columns(path, f"{len(header):,}")
    seen = set()
    for name in header:
        if name in seen:
            raise UserError(
                f"{path.name} has two columns named {name[:40]!r}; rename one (the run would read only the first)"
            )
        seen.add(name)


class _BeyondFloat(ValueError):
    """A JSON number that a float would hold as infinity (1e400): the value would be written back as null."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BeyondFloat(text)
    return value


def _constant(text: str) -> float:
    """JSON's non-standard constants as Python reads them: NaN stays (a missing value, as pandas writes one),
    Infinity and -Infinity are refused (they would be written back as null)."""
    if text == "NaN":
        return math.nan
    raise _BeyondFloat(text)


def _number_problem(exc: ValueError) -> str:
    """What is wrong with a JSON number Python refused, and the fix (the rest of a one-line message)."""
    if isinstance(exc, _BeyondFloat):
        shown = str(exc)[:30]
        return (
            f"holds the number {shown}, beyond what a float holds (it would be written back as null); write it as "
            f'text in quotes ("{shown}")'
        )
    return (
        "holds an integer of more than 4,300 digits, which Python will not read as a number; write it as text in quotes"
    )


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_INF = float("inf")


def _holds_infinity(value: Any) -> bool:
    """Whether a parsed JSON value holds an infinity (1e400, Infinity) at any depth: containment tests at C speed
    on each object's values and each list, descending only into nested objects and lists."""
    if type(value) is dict:
        values = value.values()
    elif type(value) is list:
        values = value
    else:
        return False
    try:
        return (
            _INF in values
            or -_INF in values
            or any(_holds_infinity(v) for v in values if type(v) is dict or type(v) is list)
        )
    except RecursionError:  # nested past the interpreter's limit: the nesting check refuses the record
        return False


def _check_unicode(text: str, parsed: Any, where: str) -> None:
    """Refuse a text value holding a lone surrogate (JSON's "\\ud800" escape with no pair): it is not Unicode
    text, and the write at the end of the run would fail after all the work. Checked only where the source holds
    such an escape (an escaped pair, one emoji, is fine)."""
    if "\\u" not in text or not _SURROGATE_ESCAPE.search(text):  # a substring test first: most lines have no escape
        return
    try:
        json.dumps(parsed, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise UserError(
            f"{where} holds a lone surrogate escape (such as \\ud800 without its pair), which is not Unicode text "
            "and cannot be written; fix that text"
        ) from None


def read_table(path: str | Path, *, encoding: str = DEFAULT_ENCODING, sheet: bool = False) -> pd.DataFrame:
    """Read a whole file as a DataFrame, with errors a user can act on (``encoding``: text formats only).
    ``sheet``: a CSV written for people (judge.core.sheets), whose guarded cells lose their one apostrophe."""
    path = Path(path)
    fmt = file_format(path)
    _check_input_file(path, "input file")
    if fmt == "jsonl":
        # object columns keep each value as JSON gave it: 3 stays 3 beside a null, not 3.0
        frame = pd.DataFrame(_read_jsonl(path, encoding=encoding), dtype=object)
    elif fmt == "json":
        frame = pd.DataFrame(_read_json_list(path, encoding=encoding), dtype=object)
    elif fmt == "csv":
        _check_csv_header(path, encoding)
        try:
            frame = pd.read_csv(
                path, dtype=object, keep_default_na=False, na_values=[""], encoding=check_encoding(encoding)
            )
        except UnicodeError as exc:
            raise encoding_error(path, exc, encoding) from None
        except pd.errors.EmptyDataError:
            frame = pd.DataFrame()
        except pd.errors.ParserError as exc:
            raise UserError(f"{path}: not a readable CSV ({' '.join(str(exc).split())[:120]}); fix the file") from None
        if sheet:
            frame = unguard_formulas(frame)
    else:
        _check_parquet_columns(path)
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many types
            raise UserError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())[:120]})") from None
    if frame.empty:
        raise UserError(f"input file {path} holds no records; give a file with at least one row")
    return frame


def _check_parquet_columns(path: Path) -> None:
    import pyarrow.parquet as pq

    try:
        count = len(pq.read_schema(path).names)
    except Exception:  # noqa: BLE001 - pyarrow raises many types; pd.read_parquet says what is wrong
        return
    if count > MAX_COLUMNS:
        raise _too_many_columns(path, f"{count:,}")


def require_columns(frame: pd.DataFrame, columns: Iterable[str], *, source: str, flag_hint: str = "") -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        hint = f" {flag_hint}" if flag_hint else ""

        raise UserError(
            f"{Path(source).name}: column(s) {short_list([repr(m) for m in missing], limit=4)} not found; "
            f"columns present: {short_list(frame.columns, limit=8, width=30)}.{hint}"
        )


def probability_column(category: str) -> str:
    """The column a judge's probability for ``category`` goes in: p_<category, spaces as _>."""
    return "p_" + "_".join(category.split())


COMBINED_ID = "combined_id"  # source:id when ids repeat across several input files
SHADOW = (
    "__user__"  # prefix under which a user's own id/prompt/response column waits while another column plays its part
)


def read_records(
    paths: str | Path | Sequence[str | Path],
    *,
    id_column: str | None = None,
    prompt_column: str | None = None,
    text_column: str | None = None,
    required: Sequence[str] = ("response",),
    label_columns: Sequence[str] = (),
    label_hint: str = "",
    source_column: str | None = None,
    unique_ids: bool = True,
    encoding: str = DEFAULT_ENCODING,
    sheet: bool = False,
) -> pd.DataFrame:
    """Read one or more files into canonical records (CSV and JSONL decoded with ``encoding``).

    ``id_column``/``prompt_column``/``text_column`` name the source columns that play ``id``/
    ``prompt``/``response``. The source column is kept as it is; a column of the canonical name the
    file already had is kept aside and put back by ``user_columns`` when the records are written, so
    no column is lost or renamed. Without an id column, ids are the 1-based row numbers (``row-1``
    ...), stable as long as the file does not change. A missing prompt reads as ""; a missing
    response stays missing (None), for the judges to report as unscored.

    Several files (per-model outputs of one prompt set, say) get a ``source`` column (the file stem,
    or ``source_column`` as its name); when ids repeat across files the records' id is ``source:id``,
    written in a column of its own (``COMBINED_ID``) while the files' own id column comes out
    unchanged, and that is said on stdout. A file that has a ``COMBINED_ID`` column (one written so)
    is read with it as the id unless ``id_column`` names another, so those ids stay the same from
    stage to stage. ``unique_ids=False`` is for readers that never join on ids.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    mapping = {"id": id_column, "prompt": prompt_column, "response": text_column}
    source_name = source_column or "source"
    sources = source_names(paths)
    tables = [read_table(path, encoding=encoding, sheet=sheet) for path in paths]
    if id_column is None and all(COMBINED_ID in t.columns for t in tables):
        mapping["id"] = COMBINED_ID
    several = len(paths) > 1
    frames = [
        _canonical_columns(
            frame,
            Path(path),
            mapping,
            source=source if several or source_column else None,
            source_name=source_name,
            id_prefix=f"{Path(path).stem}-row-" if several else "row-",
            required=required,
            label_columns=label_columns,
            label_hint=label_hint,
        )
        for path, source, frame in zip(paths, sources, tables)
    ]
    records = pd.concat(frames, ignore_index=True) if several else frames[0]
    records = _text_ids(records, frames, mapping, source_name=source_name, unique_ids=unique_ids)
    column_map = {k: v for k, v in mapping.items() if v and v != k}
    if SHADOW + "id" in records.columns and "id" not in column_map:
        column_map["id"] = "id"
    for canonical in ("prompt", "response"):
        if canonical in records.columns:
            records = _as_judged_text(records, canonical, keep_original=canonical not in column_map)
            if SHADOW + canonical in records.columns and canonical not in column_map:
                column_map[canonical] = canonical
    records.attrs["column_map"] = column_map
    return records


def source_names(paths: Sequence[str | Path]) -> list[str]:
    """Each input file's value in the ``source`` column of several files read together: its stem, or its path
    without the suffix where two files share a stem."""
    stems = [Path(p).stem for p in paths]
    return stems if len(set(stems)) == len(stems) else [str(Path(p).with_suffix("")) for p in paths]


_FLAGS = {"id": "--id-column", "prompt": "--prompt-column", "response": "--text-column"}
_MISSING_HINTS = {"response": "Name it with --text-column.", "prompt": "Name it with --prompt-column."}


def _canonical_columns(
    frame: pd.DataFrame,
    path: Path,
    mapping: dict,
    *,
    source: str | None,
    source_name: str,
    id_prefix: str,
    required: Sequence[str],
    label_columns: Sequence[str],
    label_hint: str,
) -> pd.DataFrame:
    """One file's table with its file-of-origin column, the canonical columns beside the ones that play
    them (a canonical name the file had is kept aside), row-number ids where it has none, and the
    columns the reader requires checked."""
    if source is not None:
        if source_name in frame.columns:
            raise UserError(
                f"{path.name} already has a column {source_name[:40]!r}; name the file-of-origin column with "
                "--source-column NAME"
            )
        frame.insert(0, source_name, source)
    for canonical, source_col in mapping.items():
        if source_col and source_col != canonical:
            require_columns(frame, [source_col], source=str(path), flag_hint=f"Fix {_FLAGS[canonical]}.")
            if canonical in frame.columns:
                frame = frame.rename(columns={canonical: SHADOW + canonical})
            frame.insert(frame.columns.get_loc(source_col) + 1, canonical, frame[source_col])
    if "id" not in frame.columns:
        frame.insert(0, "id", [f"{id_prefix}{i}" for i in range(1, len(frame) + 1)])
    for col in required:
        require_columns(frame, [col], source=str(path), flag_hint=_MISSING_HINTS.get(col, ""))
    frame = nested_columns(frame, label_columns)
    require_columns(frame, label_columns, source=str(path), flag_hint=label_hint)
    return frame


MAX_PATH_DEPTH = 16


def nested_columns(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """A dotted column name that is not a column (``propositions.fully_complies``) reaches into JSON
    objects: the longest leading part that is a column, then a key per dot; the value is added as a
    column of that name (a record without the key gets a missing value). Objects may be given as
    JSON text (a CSV cell). A name that is a column is always that column."""
    for name in columns:
        if not isinstance(name, str) or name in frame.columns or "." not in name:
            continue
        parts = name.split(".")
        if len(parts) > MAX_PATH_DEPTH + 1:
            continue
        split = next((i for i in range(len(parts) - 1, 0, -1) if ".".join(parts[:i]) in frame.columns), None)
        if split is None:
            continue
        keys = parts[split:]
        values = [_reach(cell, keys) for cell in frame[".".join(parts[:split])]]
        frame = frame.copy()
        frame[name] = pd.Series(values, index=frame.index, dtype=object)
    return frame


def _reach(cell: Any, keys: list[str]) -> Any:
    if isinstance(cell, str) and cell.lstrip()[:1] == "{":
        try:
            cell = json.loads(cell)
        except ValueError:
            return None
    for key in keys:
        if not isinstance(cell, dict) or key not in cell:
            return None
        cell = cell[key]
    if isinstance(cell, (dict, list)):
        return json.dumps(cell, ensure_ascii=False, default=str)
    return cell


def _text_ids(
    records: pd.DataFrame, frames: list[pd.DataFrame], mapping: dict, *, source_name: str, unique_ids: bool
) -> pd.DataFrame:
    """Ids as text (a typed id column kept aside to come back unchanged), made unique across files
    that repeat each other's ids, and refused when missing or (``unique_ids``) repeated."""
    missing_id = records["id"].isna()
    if missing_id.any():
        raise UserError(
            f"{int(missing_id.sum())} record(s) have no id (first: row {int(missing_id.idxmax()) + 1}); fill the id "
            "column or pick another --id-column"
        )
    typed_ids = not all(isinstance(v, str) for v in records["id"])
    if typed_ids and "id" not in mapping_used(mapping):
        # ids are text inside the toolkit; the file's own (numeric) ids come back unchanged on writing
        records.insert(records.columns.get_loc("id") + 1, SHADOW + "id", records["id"])
    records["id"] = records["id"].map(_id_text)
    if (
        len(frames) > 1
        and records["id"].duplicated().any()
        and not any(f["id"].map(_id_text).duplicated().any() for f in frames)
    ):
        records = _combined_ids(
            records, source_name, user_id_kept=SHADOW + "id" in records.columns or "id" in mapping_used(mapping)
        )
        print(
            f"ids repeat across the {len(frames)} input files: made unique as {source_name}:id in column "
            f"{COMBINED_ID!r} "
            f"(e.g. {records['id'].iloc[0]!r}); the files' own id column is kept as it is"
        )
    duplicated = records["id"][records["id"].duplicated()].unique()
    if len(duplicated) and unique_ids:
        shown = ", ".join(map(repr, duplicated[:5]))
        raise UserError(
            f"duplicate id(s) {shown} ({len(duplicated)} in all); ids must be unique: fix the data or pick another "
            "--id-column"
        )
    return records


def _combined_ids(records: pd.DataFrame, source_name: str, *, user_id_kept: bool) -> pd.DataFrame:
    """Ids made unique across files as source:id, in their own column; the file's own id waits under
    the SHADOW name (unless another column already plays the id) and comes back when written."""
    if COMBINED_ID in records.columns:
        raise UserError(
            f"ids repeat across the input files and a file already has a column {COMBINED_ID!r}; "
            f"pass --id-column {COMBINED_ID} to use it as the id, or rename it"
        )
    if not user_id_kept:
        records.insert(records.columns.get_loc("id") + 1, SHADOW + "id", records["id"])
    combined = records[source_name].astype(str) + ":" + records["id"]
    records["id"] = combined
    records.insert(records.columns.get_loc("id") + 1, COMBINED_ID, combined)
    return records


def _as_judged_text(records: pd.DataFrame, column: str, *, keep_original: bool) -> pd.DataFrame:
    """The text a judge reads in ``column`` (a missing prompt reads as "", a missing response stays None).

    Where that text differs from the user's value (a number, a JSON object, bytes, a null prompt), the
    user's value waits under the SHADOW name and ``user_columns`` puts it back: the written file holds
    ``123`` and ``{"a": 1}`` as they came, not "123" and the Python repr "{'a': 1}"."""
    original = records[column]
    texts = [judged_text(v, column=column) for v in original]
    if column == "prompt":
        texts = ["" if t is None else t for t in texts]
    differs = any(not (isinstance(v, str) or (t is None and _missing(v))) for v, t in zip(original, texts))
    if differs and keep_original:
        records.insert(records.columns.get_loc(column) + 1, SHADOW + column, original)
    records[column] = pd.Series(texts, index=records.index, dtype=object)
    return records


def judged_text(value: Any, *, column: str = "response") -> str | None:
    """A cell as the text a judge reads: text as it is, bytes decoded as UTF-8, an object or a list as its
    JSON text, a number as JSON writes it; None when missing."""
    if _missing(value):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(
                f"a {column} value holds bytes that are not UTF-8 text (byte {exc.start}); "
                f"store the {column} column as text (decoded) before judging it"
            ) from None
    return json.dumps(_json_value(value), ensure_ascii=False, default=str)


def mapping_used(mapping: dict[str, str | None]) -> set[str]:
    """The canonical columns another column stands in for."""
    return {k for k, v in mapping.items() if v and v != k}


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _id_text(value: Any) -> str:
    # 7 and 7.0 (a JSON number, or a CSV column pandas read as float) are the same id.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def user_columns(records: pd.DataFrame, column_map: dict[str, str]) -> pd.DataFrame:
    """Undo ``read_records``' stand-ins before writing: drop the canonical copies made from the
    user's columns and put back the user's own id/prompt/response columns under their names."""
    out = records
    for canonical in column_map:
        if canonical in out.columns:
            out = out.drop(columns=[canonical])
        shadow = SHADOW + canonical
        if shadow in out.columns:
            out = out.rename(columns={shadow: canonical})
    return out


def write_records(records: pd.DataFrame, path: str | Path, *, overwrite: bool = False, sheet: bool = False) -> Path:
    """``sheet``: a CSV meant for people, its formula-like cells neutralised (judge.core.sheets)."""
    fmt = file_format(path)
    if fmt == "jsonl":
        rows = records.to_dict(orient="records")
        return atomic_write(path, lambda h: h.writelines(to_json_line(r) for r in rows), overwrite=overwrite)
    if fmt == "json":
        rows = records.to_dict(orient="records")
        lines = [json_text(r, ensure_ascii=False, default=str) for r in rows]
        return atomic_write(path, lambda h: h.write("[\n" + ",\n".join(lines) + "\n]\n"), overwrite=overwrite)
    if fmt == "csv":
        if sheet:  # for spreadsheets: formulas neutralised, RFC 4180 line ends (a carriage return in a cell is quoted)
            table = guard_formulas(records)
            return atomic_write(
                path, lambda h: table.to_csv(h, index=False, lineterminator="\r\n"), overwrite=overwrite
            )
        return atomic_write(path, lambda h: records.to_csv(h, index=False), overwrite=overwrite)
    return atomic_write(path, lambda h: records.to_parquet(h, index=False), overwrite=overwrite, binary=True)


def checkpoint_path(out: str | Path) -> Path:
    """Where a resumable run keeps the rows of ``out`` it has finished until it ends: OUT.partial.jsonl
    beside it. The one place the name is made (the resumable run, the output rules, judge.join)."""
    out = Path(out)
    return out.with_name(out.name + ".partial.jsonl")


class JsonlCheckpoint:
    """An append-only JSONL file of finished rows, so a killed run resumes where it stopped.

    Each append (one batch) ends with a seal line, ``{"__batch_sha256__": HEX, "rows": N}``: the sha256 of the
    N row lines before it, as written. Only rows under a seal that still matches are given back: a batch a kill
    cut (no seal yet), a row edited after it was written (issue 31, 1d: an edited label was reused) or a line torn
    in the middle are computed again by the runner, and the later copy wins. (A digest detects edits and damage;
    someone who rewrites the seal too can still forge rows, as they could edit the finished output.) The file is
    opened without following links (``O_NOFOLLOW``), and only a regular file."""

    SEAL = "__batch_sha256__"

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _digest(self, lines: list[bytes]) -> str:
        digest = hashlib.sha256()
        for line in lines:
            digest.update(line + b"\n")
        return digest.hexdigest()

    def _open(self, flags: int) -> int:
        fd = os.open(self.path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UserError(f"{self.path} is not a regular file; move it away or choose another --out")
        return fd

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.exists() and not self.path.is_symlink():
            return []
        try:
            fd = self._open(os.O_RDWR)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UserError(f"{self.path} is a symbolic link; a checkpoint is never followed: remove it") from None
            raise
        with os.fdopen(fd, "r+b") as handle:
            data = handle.read()
            cut = data.rfind(b"\n") + 1
            if cut < len(data):  # a kill mid-write: drop the cut tail so the next append starts on a fresh line
                handle.truncate(cut)
        rows, pending, rejected = [], [], 0
        for line in data[:cut].split(b"\n")[:-1]:
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                value = None  # a torn line: whatever batch it is in does not match its seal
            if isinstance(value, dict) and set(value) == {self.SEAL, "rows"}:
                count = value["rows"] if isinstance(value["rows"], int) and 0 < value["rows"] <= len(pending) else 0
                batch = pending[len(pending) - count :] if count else []
                if (
                    count
                    and value[self.SEAL] == self._digest([raw for raw, _ in batch])
                    and all(isinstance(row, dict) for _, row in batch)
                ):
                    rows += [row for _, row in batch]  # rows before them no seal covers: a batch a kill cut
                else:
                    rejected += count or len(pending)
                pending = []
            else:
                pending.append((line, value))
        if rejected:
            print(
                f"note: {rejected} row(s) of {self.path.name} do not match the digest their batch was sealed with "
                "(edited or damaged); they are computed again",
                file=sys.stderr,
            )
        return rows  # rows after the last seal are a batch a kill cut: computed again, as the runner does

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        lines = [to_json_line(r).encode("utf-8").rstrip(b"\n") for r in rows]
        if not lines:
            return
        seal = json.dumps({self.SEAL: self._digest(lines), "rows": len(lines)}).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._open(os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        with os.fdopen(fd, "ab") as handle:
            handle.write(b"".join(line + b"\n" for line in lines) + seal + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


MISSING_GROUP = "(missing)"  # the group of rows whose group column is empty: reported as a group of its own


def clean_groups(records: pd.DataFrame, columns: Sequence[str], *, flag: str = "--group") -> list[str]:
    """Make each group column of ``records`` (in place) hold one spelling per group; return the warnings to print.

    Real files have missing metadata: a missing value (None, NaN, '' or spaces only) becomes the group
    ``(missing)``, reported like any other (other values become text then, so that groups sort). Spaces around
    a value are stripped ('asian ' is 'asian'), said in a warning. Two values that differ only in case ('asian'
    and 'ASIAN') are refused: which spelling is right is the user's to say."""
    warnings = []
    for column in dict.fromkeys(columns):
        values = records[column]
        missing = values.map(lambda v: _missing(v) or (isinstance(v, str) and not v.strip()))
        if missing.any():
            values = values.where(~missing, MISSING_GROUP).map(lambda v: v if isinstance(v, str) else _id_text(v))
            warnings.append(
                f"note: {int(missing.sum())} row(s) have no {column!r} value; they are reported as the group "
                f"{MISSING_GROUP!r}"
            )
        padded = values.map(lambda v: isinstance(v, str) and v != v.strip())
        if padded.any():
            first = values[padded].iloc[0]
            values = values.map(lambda v: v.strip() if isinstance(v, str) else v)
            warnings.append(
                f"warning: {int(padded.sum())} {column!r} value(s) had spaces around them, stripped ({first!r} is "
                f"{first.strip()!r}); fix the file to silence this"
            )
        spellings: dict[str, str] = {}
        for value in dict.fromkeys(v for v in values if isinstance(v, str)):
            other = spellings.setdefault(value.casefold(), value)
            if other != value:
                raise UserError(
                    f"{flag} {column!r} has the groups {other[:40]!r} and {value[:40]!r}, which differ only in case; "
                    "give each group one spelling in the file"
                )
        records[column] = values
    return warnings
