"""The one exception type for problems a user can fix, and the helpers that keep its messages on one line."""

from __future__ import annotations

import errno
import re
from contextvars import ContextVar
from typing import Any

EXIT_BAD_INPUT = 2  # a UserError: the input or settings are wrong
EXIT_FAILED_ROWS = 3  # the run completed, but with rows whose requests failed every retry (--allow-failed: 0)

_failed_rows: ContextVar[int] = ContextVar("failed_rows", default=0)


class UserError(Exception):
    """Bad input or settings. The message says what is wrong and how to fix it.

    Commands print it on one line and exit with code 2, never with a traceback.
    """


def cut(value: object, width: int = 40) -> str:
    """A value's text for a one-line message, cut to ``width`` characters (a 1 MB label stays short)."""
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def clip(value: Any, width: int = 60) -> str:
    """A user's value inside a one-line message: its repr (quotes, no raw newlines), cut to ``width``."""
    return cut(repr(value), width)


def short_list(values, *, limit: int = 5, width: int = 40) -> str:
    """A few values for a one-line message: each cut to ``width`` characters, then '... (N in all)'."""
    values = [str(v) for v in values]
    shown = [cut(v, width) for v in values[:limit]]
    more = f" ... ({len(values)} in all)" if len(values) > limit else ""
    return ", ".join(shown) + more


def os_error_message(exc: OSError) -> str:
    """One line for an operating-system error, naming the path and what to do."""
    where = exc.filename if exc.filename is not None else "a file"
    where = short_list([where], width=120)
    fixes = {
        errno.EACCES: f"permission denied: {where}; check its permissions, or choose another --out",
        errno.EPERM: f"operation not permitted on {where}; check its permissions, or choose another --out",
        errno.ENOSPC: f"no space left on the device writing {where}; free some space or choose another --out (nothing "
        "was replaced)",
        errno.EDQUOT: f"disk quota exceeded writing {where}; free some space or choose another --out (nothing was "
        "replaced)",
        errno.EROFS: f"{where} is on a read-only file system; choose another --out",
        errno.ENOTDIR: f"{where}: part of this path is a file, not a folder; check the path",
        errno.EISDIR: f"{where} is a directory; give a file",
        errno.EEXIST: f"{where} is a file where a folder is needed (not a folder); check the path",
        errno.ENOENT: f"{where} not found; check the path",
        errno.ENAMETOOLONG: f"a file name is too long: {where}; choose a shorter one",
    }
    return fixes.get(exc.errno, f"{exc.strerror or type(exc).__name__}: {where}; check the path and retry")


_OS_ERROR_IN_TEXT = re.compile(r"\(os error (\d+)\)|Os \{ code: (\d+)")


def wrapped_os_error(exc: BaseException) -> int | None:
    """The errno of an operating-system error that a library wrapped in its own exception: safetensors' Rust
    writer raises ``SafetensorError('... I/O error: No space left on device (os error 28)')`` on a full disk,
    not an OSError. None for anything else."""
    if type(exc).__name__ != "SafetensorError":
        return None
    found = _OS_ERROR_IN_TEXT.search(str(exc))
    return int(found.group(1) or found.group(2)) if found else None


def note_failed_rows(count: int) -> None:
    """A command completed with ``count`` rows that failed every retry (written, unscored, asked again by a
    rerun): run_command then exits EXIT_FAILED_ROWS unless the command's ``--allow-failed`` is given, so a
    script chaining commands notices. A command's main() called from Python returns as usual."""
    # a manifest's count is read back too: anything but a whole number counts as none
    _failed_rows.set(count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 0)


def failed_rows_noted() -> int:
    return _failed_rows.get()


def reset_failed_rows() -> None:
    _failed_rows.set(0)
