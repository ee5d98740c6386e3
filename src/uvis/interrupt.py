"""SIGTERM as an exception, and a way for training loops to stop at a step boundary.

SLURM (on preemption or at the time limit) and Snakemake (when it is stopped) end jobs with
SIGTERM, whose default action kills the process at once: no ``finally`` block runs, so
temporary files stay and a training loses everything since its last checkpoint.

* :func:`install` (the CLI calls it) turns SIGTERM into a :class:`Terminated` exception, so
  every ``finally``/``except BaseException`` clean-up runs (e.g. :func:`uvis.io.atomic_path`
  removes its temporary file).
* :func:`deferred` holds SIGTERM back inside a training loop: the loop asks
  :meth:`Deferred.requested` after each step, writes a checkpoint and raises
  :class:`Terminated` itself, so a requeued job resumes from the step it was stopped at.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

#: Exit status of a process ended by SIGTERM (128 + 15), as shells report it.
EXIT_STATUS = 143


class Terminated(BaseException):
    """The process received SIGTERM (raised from the signal handler or by a training loop)."""


class Deferred:
    """Whether SIGTERM arrived while termination was deferred (see :func:`deferred`)."""

    def __init__(self) -> None:
        self.requested = False


_active: list[Deferred] = []


def _handler(signum: int, frame: FrameType | None) -> None:
    if _active:
        _active[-1].requested = True
        return
    raise Terminated(f"terminated by signal {signum}")


def install() -> bool:
    """Make SIGTERM raise :class:`Terminated` in the main thread; False where it cannot
    (another thread, or a platform without SIGTERM)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGTERM, _handler)
    return True


@contextlib.contextmanager
def deferred() -> Iterator[Deferred]:
    """Inside the block SIGTERM only sets ``requested`` (when :func:`install` is in force);
    the block decides where to stop. Nested blocks: the innermost one is told."""
    state = Deferred()
    _active.append(state)
    try:
        yield state
    finally:
        _active.remove(state)
