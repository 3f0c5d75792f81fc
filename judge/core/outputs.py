"""Whose file is it: the rules every command follows before it writes an output.

1. An output never is, contains or lies inside one of the run's inputs (``check_apart``), and is never named
   as another output's side file (``check_not_side_file``).
2. ``--overwrite`` replaces only what this command wrote before: a file whose manifest beside it
   names this command and whose bytes are still the ones it wrote, or a directory holding nothing
   but the files its ``manifest.json`` lists, unchanged (``check_replaceable``). A user's own file,
   an edited output, or a folder with anything else in it is refused, never deleted.
3. One run at a time writes an output: an advisory lock (``flock``) on a hidden file beside it is
   held from the first check to the last write, so a second run on the same ``--out`` is refused at
   once, naming the first; the kernel releases it when the process dies, even by ``kill -9``. The lock
   file is opened with ``O_NOFOLLOW``: a link or anything but a regular file there is refused, so a
   run never writes its pid into a link's target.

``claim_output`` does all three; each command's ``main`` wraps its work in it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from judge.core.errors import UserError, cut
from judge.core.files import build_aside, check_output_directory, file_sha256, normal_permissions, replace_text
from judge.core.manifest import MANIFEST, OUTPUT_DIGEST_KEY, OUTPUTS_KEY, read_manifest
from judge.core.records import checkpoint_path


def _resolved(path: str | Path) -> Path:
    """The absolute path with links resolved, for a path that may not exist yet."""
    return Path(os.path.realpath(Path(path).expanduser()))


def _inside(child: Path, parent: Path) -> bool:
    return child != parent and parent in child.parents


def sidecars(out: Path) -> list[Path]:
    """The files a command writes beside a file output: its manifest and its resume checkpoint."""
    return [out.with_name(out.name + ".manifest.json"), checkpoint_path(out)]


def input_paths(values: Iterable[Any]) -> list[Path]:
    """The existing paths among a command's input settings (a judge spec ``tfidf:DIR`` names DIR)."""
    found = []
    for value in values:
        if value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(item, str) or not item:
                continue
            for candidate in (item, item.split(":", 1)[-1]):
                if os.path.lexists(candidate):
                    found.append(Path(candidate))
                    break
    return found


SIDE_SUFFIXES = (".manifest.json", ".partial.jsonl")  # a file output's manifest and checkpoint: OUT + suffix


def check_not_side_file(out: str | Path) -> None:
    """Refuse an ``--out`` named as another output's side file: its manifest (``X.manifest.json``), its checkpoint
    (``X.partial.jsonl``), its lock (``.X.lock``) or a staging folder or temporary file (``.X.*.tmp``). Two runs
    would otherwise share a file, and the first one's last write would replace the second one's output."""
    name = Path(out).name
    if name.endswith(SIDE_SUFFIXES) or (name.startswith(".") and name.endswith((".lock", ".tmp"))):
        raise UserError(
            f"--out {cut(name, 60)} is named like another output's side file (its manifest, checkpoint, lock or "
            "staging folder); choose a name that does not end in .manifest.json, .partial.jsonl, .lock or .tmp"
        )


def check_apart(out: str | Path, inputs: Iterable[str | Path], *, directory: bool) -> None:
    """Refuse an output that is, contains or lies inside an input (links resolved)."""
    target = _resolved(out)
    written = [target] + ([] if directory else [_resolved(p) for p in sidecars(Path(out))])
    for given in inputs:
        source = _resolved(given)
        if source in written:
            raise UserError(f"--out {out} is also an input ({Path(given).name}); write to another path")
        if directory and _inside(source, target):
            raise UserError(
                f"--out {out} contains the input {Path(given).name}; choose an --out outside the inputs' folders"
            )
        if source.is_dir() and _inside(target, source):
            raise UserError(f"--out {out} lies inside the input folder {given}; choose an --out outside it")


def _manifest_of(out: Path, *, directory: bool) -> dict | None:
    path = out / MANIFEST if directory else out.with_name(out.name + ".manifest.json")
    return read_manifest(path.parent if directory else out) if path.is_file() else None


def check_replaceable(out: str | Path, command: str, *, directory: bool) -> None:
    """With --overwrite: refuse unless ``out`` is absent, empty, or entirely what ``command`` wrote."""

    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if out.is_symlink():
        raise UserError(f"--out {out} is a symbolic link; --overwrite never replaces a link: give the real path")
    if directory and not out.is_dir():
        raise UserError(f"--out {out} is a file; this command writes a directory: choose another --out")
    if not directory and out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name for the output")
    if directory and not any(out.iterdir()):
        return
    manifest = _manifest_of(out, directory=directory)
    where = f"{out}/{MANIFEST}" if directory else f"{out.name}.manifest.json"
    if manifest is None or manifest.get("command") != command:
        if directory:
            stranger = next(
                (p for p in sorted(out.rglob("*")) if not p.is_dir() or p.is_symlink()), next(out.iterdir())
            )
            raise UserError(
                f"{out}/{stranger.relative_to(out).as_posix()} was not written by {command}; --overwrite replaces only "
                "its own files: move it away or choose another --out"
            )
        whose = f"written by {manifest.get('command')}" if manifest else f"no {where} beside it"
        raise UserError(
            f"--overwrite replaces only what {command} wrote, and {out} is not ({whose}); move it away or choose "
            "another --out"
        )
    if not directory:
        digest = manifest.get(OUTPUT_DIGEST_KEY)
        if digest is not None and file_sha256(out) != digest:
            raise UserError(
                f"{out} was changed after {command} wrote it; --overwrite will not replace it: move it away or choose "
                "another --out"
            )
        return
    listed = manifest.get(OUTPUTS_KEY)
    if not isinstance(listed, dict):
        raise UserError(
            f"{where} does not list the files {command} wrote (an older version made it); remove {out} yourself or "
            "choose another --out"
        )
    for path in sorted(out.rglob("*")):
        name = path.relative_to(out).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        if name == MANIFEST:
            continue
        if name not in listed or path.is_symlink() or file_sha256(path) != listed[name]:
            what = "was not written by" if name not in listed else "was changed after"
            raise UserError(
                f"{out}/{name} {what} {command}; --overwrite replaces only its own files: move it away or choose "
                "another --out"
            )


def record_outputs(directory: str | Path) -> None:
    """List every file of a finished output directory, with its sha256, in its manifest.json."""

    directory = Path(directory)
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return
    data = json.loads(manifest.read_text(encoding="utf-8"))
    files = [p for p in sorted(directory.rglob("*")) if p.is_file() and p != manifest]
    data[OUTPUTS_KEY] = {p.relative_to(directory).as_posix(): file_sha256(p) for p in files}
    replace_text(manifest, json.dumps(data, indent=2, default=str, allow_nan=False) + "\n")


def lock_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(f".{out.name}.lock")


def _open_lock(path: Path, created: list[Path]) -> int:
    """Open (or create) the lock file itself, never a link's target nor anything but a regular file."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        _remove_created(created)
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise UserError(
                f"the lock file {path} is a symbolic link; remove it (a lock file is never followed) and run again"
            ) from None
        if exc.errno in (errno.EISDIR, errno.ENXIO):  # a folder or a socket there; a read-only folder stays EACCES
            raise UserError(
                f"the lock file {path} is not a regular file this run can open; remove it or choose another --out"
            ) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        _remove_created(created)
        raise UserError(f"the lock file {path} is not a regular file; remove it or choose another --out")
    return fd


def _remove_created(created: list[Path]) -> None:
    for folder in created:  # innermost first: a refused run leaves no empty folders behind
        try:
            folder.rmdir()
        except OSError:
            break


_HELD: set[str] = set()  # the outputs (absolute paths) whose lock this process holds now


@contextmanager
def output_lock(out: str | Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``out`` for the block, or refuse at once naming the holder."""
    path = lock_path(out)
    created = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = _open_lock(path, created)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UserError(
                    f"another run (pid {holder}) is writing {out}; wait for it to finish or choose another --out"
                ) from None
            raise
        # A holder that finished may have unlinked the file we opened: lock the file now at the path.
        try:
            same = os.fstat(fd).st_ino == os.lstat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    held = os.path.abspath(out)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        _HELD.add(held)
        yield
    finally:
        _HELD.discard(held)
        # Unlinked while still held, so a run that opened it meanwhile sees a stale inode and retries.
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        os.close(fd)
        _remove_created(created)


@contextmanager
def claim_output(
    out: str | Path, *, command: str, inputs: Iterable[Any] = (), overwrite: bool, directory: bool
) -> Iterator[Path]:
    """The three rules (module docstring) for one run's output, held for the whole block."""
    out = Path(out)
    check_not_side_file(out)
    check_apart(out, input_paths(inputs), directory=directory)
    with output_lock(out):
        if overwrite:
            check_replaceable(out, command, directory=directory)
        yield out


def claim_for(config: Any, command: str, *, inputs: Iterable[str], directory: bool, out_field: str = "out"):
    """``claim_output`` for a command's Config: ``inputs`` names the fields that hold input paths."""
    return claim_output(
        getattr(config, out_field),
        command=command,
        inputs=[getattr(config, name, None) for name in inputs],
        overwrite=bool(getattr(config, "overwrite", False)),
        directory=directory,
    )


@contextmanager
def staged_directory(out: str | Path, *, overwrite: bool):
    """Yield a temporary folder beside ``out``; on success it replaces ``out`` whole (one atomic swap,
    judge.core.files), on failure it is removed; one that a killed run of ``out`` left is removed first. A
    report or judge directory is never left with a mix of new and stale files, nor missing."""

    out = check_output_directory(out, overwrite=overwrite)
    # Holding the output's lock, this run may clear the staging folders a killed run of it left (issue 31, 1e).
    with build_aside(out, replace=True, owned=os.path.abspath(out) in _HELD) as tmp:
        yield tmp

        record_outputs(tmp)  # what a later --overwrite may replace
        normal_permissions(tmp)
