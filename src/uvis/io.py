"""Atomic file output.

Every artefact is written to a temporary file in the destination folder and renamed into
place, so an interrupted job never leaves a half-written file that looks finished.

* The temporary file is named ``.<name>.<host>-<pid>.<random>.tmp<suffix>``; those left behind
  by a process that was killed (SIGKILL, a node failure) are removed by the next process on the
  same host that writes into the folder, once the killed process no longer exists.
* Files get the permissions any other tool's output would get (``0666`` less the umask), not
  the ``0600`` of :func:`tempfile.mkstemp`: on a shared cluster the group can read results.
* A destination that cannot be written (a folder, a parent that is a file, no permission, a
  read-only or full disk) is a :class:`~uvis.errors.DataError` naming it, never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from uvis.errors import DataError

#: errno values that only writing can cause: inside the block, reported as "cannot write <dest>"
#: (a permission error there may come from reading an input, so it is left as it is).
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


#: What torch.save's writer says when the file system refuses bytes (e.g. a full disk).
_TORCH_WRITE_FAILURES = ("unexpected pos", "PytorchStreamWriter failed")


def current_umask() -> int:
    """The process's file-creation mask (read without changing it for long)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _host() -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname()) or "host"


def _temp_prefix(dest: Path) -> str:
    """The name prefix of this host's temporaries for ``dest`` (the pid follows)."""
    return f".{dest.name}.{_host()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries in ``folder`` left by dead processes of this host (of any
    destination); returns them."""
    marker = re.compile(rf"^\..+\.{re.escape(_host())}-(\d+)\.[^/]*\.tmp")
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = marker.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


#: Folders this process has already cleared of dead writers' temporaries (once is enough: the
#: scan lists the whole folder, and a folder of thousands of frames gets thousands of writes).
_cleared: set[Path] = set()


def prepare_output(path: str | os.PathLike[str]) -> Path:
    """``path`` as a file destination whose folder exists; DataError naming it otherwise."""
    dest = Path(path)
    if dest.is_dir():
        raise DataError(dest, "is a folder; give the path of a file to write")
    parent = dest.parent
    for folder in (parent, *parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise DataError(dest, f"cannot write: {folder} is a file, not a folder")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(dest, f"cannot create its folder: {exc.strerror or exc}") from None
    return dest


@contextlib.contextmanager
def exclusive_lock(folder: str | os.PathLike[str], what: str) -> Iterator[None]:
    """Hold ``folder/.lock`` for the block, so two processes never write one run at once.

    The lock (``flock``) is released when the block ends or the process dies, whatever kills
    it. The file holds the holder's host and pid (for the error message) and is removed when
    the block ends; one left by a killed process is simply locked again by the next one.

    Raises:
        DataError: naming the folder when another process holds the lock (its host and pid).
    """
    import fcntl

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / ".lock", "a+")
    except OSError as exc:
        raise DataError(folder, f"cannot create its lock file: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise DataError(
                folder,
                f"{holder} is already running {what} in this folder; wait for it to finish "
                "or give another output folder",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{_host()} pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            # No lock file left among the results. Removed while still held; a process that
            # opened the file before the removal could still lock the old file once this one
            # closes it, beside a newcomer's new file: a race of three trainings on one folder
            # that this does not guard against.
            with contextlib.suppress(OSError):
                (folder / ".lock").unlink()
    finally:
        handle.close()


def write_error(dest: Path, exc: OSError) -> DataError:
    """The one-line error for a write to ``dest`` that failed with ``exc``."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = f"{reason} (the disk or quota of {dest.parent} is full)"
    return DataError(dest, f"cannot write: {reason}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    The temporary file keeps the destination's suffix (or ``suffix``) so libraries that pick a
    format from the extension (PIL, pyarrow, PyAV) behave as for the final name. It is removed
    if the block raises (also on SIGTERM, which the CLI turns into an exception).

    Raises:
        DataError: naming ``path`` when it cannot be written (see the module docstring), also
            when the block fails with an error only writing can cause (disk full, read-only).
    """
    dest = prepare_output(path)
    if dest.parent not in _cleared:
        remove_stale_temporaries(dest.parent)
        _cleared.add(dest.parent)
    sfx = dest.suffix if suffix is None else suffix
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f"{_temp_prefix(dest)}{os.getpid()}.", suffix=f".tmp{sfx}", dir=dest.parent
        )
    except OSError as exc:
        raise write_error(dest, exc) from None
    tmp_path = Path(tmp)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
            raise write_error(dest, exc) from exc
        # torch.save's zip writer reports a failed write (a full disk) as a RuntimeError.
        if isinstance(exc, RuntimeError) and any(m in str(exc) for m in _TORCH_WRITE_FAILURES):
            raise DataError(
                dest, "cannot write: the file was cut short (is the disk or quota full?)"
            ) from exc
        raise


def temporary_dir(dest: str | os.PathLike[str]) -> Path:
    """A new hidden folder next to ``dest`` to fill and then rename to ``dest``, with the
    permissions of an ordinary new folder (``0777`` less the umask, not ``mkdtemp``'s 0700)."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_temp_prefix(dest)}{os.getpid()}.", dir=dest.parent))
    except OSError as exc:
        raise write_error(dest, exc) from None
    os.chmod(tmp, 0o777 & ~current_umask())
    return tmp


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = None) -> None:
    """Serialise ``obj`` as JSON and write it to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    """Load a JSON file; a missing, unreadable or non-JSON file is a :class:`DataError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, "is a directory, expected a JSON file") from None
    except OSError as exc:
        raise DataError(path, f"cannot read: {exc.strerror or exc}") from None
    return parse_json(path, data)


def parse_json(path: Path, data: bytes, member: str | None = None) -> Any:
    """Parse JSON ``data`` read from ``path`` (``member``: the file inside an archive), or a
    :class:`DataError` naming where it came from."""
    where = path if member is None else f"{path}!{member}"
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise DataError(where, "not a UTF-8 text file, expected JSON") from None
    except json.JSONDecodeError as exc:
        raise DataError(where, f"not valid JSON ({exc})") from None


_C = TypeVar("_C", bound="Closing")


class Closing:
    """A context manager that calls ``self.close()`` on leaving the block, whatever ends it."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
