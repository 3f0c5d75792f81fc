"""Directories built aside and moved into place whole: readers see the old one or the new one, never a mix.

One helper for every such folder: a report or judge directory (``judge.core.records.staged_directory``),
a cached merged judge, a converted GGUF model. Replacing an existing directory swaps the two in one
``renameat2(RENAME_EXCHANGE)`` call where the kernel has it (Linux 3.15+), so the target path never
stops existing; elsewhere it falls back to two renames, with the old folder kept until the new one
is in place.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

AT_FDCWD = -100
RENAME_EXCHANGE = 2  # linux/fs.h


@contextmanager
def build_aside(target: str | Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success it becomes ``target``.

    ``replace=False``: a ``target`` that appeared meanwhile (another process built the same cache)
    wins and the new folder is discarded. On failure the folder is removed and ``target`` untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
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
