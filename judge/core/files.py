"""File primitives: text read with one-line errors, strict JSON, atomic writes, hashes, and directories
built aside and moved into place whole (readers see the old one or the new one, never a mix).

One helper for every such folder: a report or judge directory (``judge.core.outputs.staged_directory``),
a cached merged judge, a converted GGUF model. Replacing an existing directory swaps the two in one
``renameat2(RENAME_EXCHANGE)`` call where the kernel has it (Linux 3.15+), so the target path never
stops existing; elsewhere it falls back to two renames, with the old folder kept until the new one
is in place.
"""

from __future__ import annotations

import codecs
import ctypes
import ctypes.util
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from judge.core.errors import UserError, clip

AT_FDCWD = -100
RENAME_EXCHANGE = 2  # linux/fs.h


STAGING_PID = "pid"  # staging folders of an output are named .NAME.pid<PID>-XXXXXXXX.tmp (``build_aside(owned=True)``)


def _staging_name(target: Path) -> re.Pattern:
    return re.compile(rf"\.{re.escape(target.name)}\.{STAGING_PID}(\d+)-[A-Za-z0-9_]+\.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # another user's process (or a number no process has: dead)
    return True


def remove_stale_staging(target: str | Path) -> list[Path]:
    """Remove the staging folders a killed run of ``target`` left beside it (``.NAME.pid<PID>-XXXX.tmp`` whose
    process is gone): only folders named for this output, never a link, never a live process's. The caller
    holds the output's lock, so no other run of this output is building one. Returns what was removed."""
    target = Path(target)
    pattern, removed = _staging_name(target), []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        found = pattern.fullmatch(entry.name)
        if not found or not entry.is_dir(follow_symlinks=False):
            continue
        pid = int(found.group(1))
        if pid == os.getpid() or _alive(pid):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


@contextmanager
def build_aside(target: str | Path, *, replace: bool = False, owned: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success it becomes ``target``.

    ``replace=False``: a ``target`` that appeared meanwhile (another process built the same cache)
    wins and the new folder is discarded. On failure the folder is removed and ``target`` untouched.
    ``owned``: the caller holds ``target``'s lock (an output); the folder's name carries this process's id, and
    the folders a killed run of the same output left (``kill -9`` skips the removal) are removed first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if owned:
        remove_stale_staging(target)
    prefix = f".{target.name}.{STAGING_PID}{os.getpid()}-" if owned else f".{target.name}."
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        if replace and target.exists():
            swap_into_place(tmp, target)
        else:
            try:
                os.rename(tmp, target)  # an existing non-empty target makes this fail: it stays
            except OSError:
                if not target.exists():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def swap_into_place(new: Path, target: Path) -> None:
    """``new`` becomes ``target``; the old ``target`` is deleted once it is out of the way."""
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now names the old directory
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.replace(target, old / "previous")
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old / "previous", target)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the system cannot (then nothing was changed)."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: a kernel or file system without exchange
        return False
    raise OSError(errno, os.strerror(errno), str(b))


_RENAMEAT2: list = []


def _renameat2():
    if not _RENAMEAT2:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = getattr(libc, "renameat2", None)
        if function is not None:
            function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            function.restype = ctypes.c_int
        _RENAMEAT2.append(function)
    return _RENAMEAT2[0]


DEFAULT_ENCODING = "utf-8"


def check_encoding(name: str) -> str:
    """``name`` if Python decodes text with it (``--encoding``); a one-line error otherwise."""
    try:
        text_encoding = codecs.lookup(name)._is_text_encoding  # rot13, base64 ... are codecs but not text encodings
    except (LookupError, TypeError):
        text_encoding = False
    if not text_encoding:
        raise UserError(
            f"unknown --encoding {clip(name)}; use a Python codec name such as utf-8, latin-1, cp1252 or utf-16"
        ) from None
    return name


def encoding_error(path: str | Path, exc: UnicodeError, encoding: str) -> UserError:
    where = f"byte {exc.start}: {exc.reason}" if isinstance(exc, UnicodeDecodeError) else str(exc)
    return UserError(
        f"{Path(path).name} is not valid {encoding} text ({where}); "
        "save it as UTF-8 or pass its encoding, e.g. --encoding latin-1 (utf-16-le for UTF-16 without a BOM)"
    )


def _check_input_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory, not a file; give the file's path")
    if not path.exists():
        raise UserError(f"{what} {path} not found; check the path")
    if not path.is_file():
        # a FIFO or a device would block or never end
        raise UserError(f"{what} {path} is not a regular file (a pipe or a device?); save the data to a file first")


def read_text(path: str | Path, *, what: str = "input file", encoding: str = DEFAULT_ENCODING) -> str:
    """A whole text file in ``encoding``, with one-line errors for the usual mistakes."""
    path = Path(path)
    _check_input_file(path, what)
    try:
        return path.read_text(encoding=check_encoding(encoding))
    except UnicodeError as exc:
        raise encoding_error(path, exc, encoding) from None


def ensure_writable(path: str | Path, *, overwrite: bool) -> Path:
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it or choose another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _json_value(value: Any) -> Any:
    """``value`` as strict JSON can hold it: NaN and infinities become null (JSON has no such numbers,
    and Python's ``NaN`` token breaks every other reader), numpy scalars and arrays become Python ones,
    containers are walked; anything else JSON lacks is left for ``default``."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_json_key(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalars and arrays, pandas values
        return _json_value(value.tolist())
    return value


def _json_key(key: Any) -> Any:
    key = _json_value(key)
    return key if key is None or isinstance(key, (str, int, float, bool)) else str(key)


def json_text(data: Any, **options: Any) -> str:
    """The one way the toolkit writes JSON: strict (``allow_nan=False``), NaN and infinities as null.
    A value that slips past the cleaning fails here loudly instead of writing invalid JSON."""
    return json.dumps(_json_value(data), allow_nan=False, **options)


def to_json_line(row: dict[str, Any]) -> str:
    return json_text(row, ensure_ascii=False, default=str) + "\n"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def normal_permissions(path: str | Path) -> None:
    """Temporary files and folders are created private (0600/0700); what we hand over follows the umask."""
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~_umask())


def atomic_write(path: str | Path, write: Any, *, overwrite: bool, binary: bool = False) -> Path:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    path = ensure_writable(path, overwrite=overwrite)
    if path.is_dir():
        raise UserError(f"{path} is a directory; give a file name for the output")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        normal_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def replace_text(path: str | Path, text: str) -> Path:
    """A side file (a manifest) written whole: through a new temporary file beside it, created with ``O_EXCL``
    and ``O_NOFOLLOW`` (``mkstemp``), then renamed over ``path``. A link planted at ``path`` or at a fixed
    temporary name is replaced, never followed, so no other file is written through it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        normal_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_output_directory(out: str | Path, *, overwrite: bool) -> Path:
    """An output directory may be new, empty, or replaced whole with --overwrite."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; a report is a directory: choose another --out")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    return out


def write_text(path: str | Path, text: str, *, overwrite: bool) -> Path:
    return atomic_write(path, lambda h: h.write(text), overwrite=overwrite)


def file_sha256(path: str | Path, *, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()
