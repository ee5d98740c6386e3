"""Atomic file output.

Every artefact is written to a temporary file in the destination folder and renamed into
place, so an interrupted job never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    The temporary file keeps the destination's suffix (or ``suffix``) so libraries that pick a
    format from the extension (PIL, pyarrow, PyAV) behave as for the final name.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sfx = dest.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{sfx}", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


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
