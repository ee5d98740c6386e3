"""Progress of long work: a live bar on a terminal, a dated line now and then in a log file.

``progress_bar`` takes tqdm's arguments (the ones uvis uses). When stderr is a terminal it is
tqdm's bar. Otherwise (a Snakemake job's log, a SLURM output file) a bar's hundreds of
carriage-return redraws would fill the file, so :class:`LogProgress` logs one line instead at
most every :data:`LOG_INTERVAL_S` seconds, and at the end: done / total, the percentage, the
rate, the time left, and the bar's postfix (e.g. the loss).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

from tqdm import tqdm

logger = logging.getLogger("uvis.progress")

LOG_INTERVAL_S = 30.0
"""Seconds between two progress lines in a log."""


def _duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class LogProgress:
    """tqdm's interface (iteration, ``update``, ``set_postfix``, ``close``, a context manager)
    reporting by log lines. ``clock`` is injectable for tests."""

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: float | None = None,
        initial: float = 0,
        desc: str | None = None,
        unit: str = "it",
        interval: float = LOG_INTERVAL_S,
        clock: Any = time.monotonic,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc or "", unit
        self.interval, self._clock = interval, clock
        self.n = self.initial = initial
        self._start = self._last = clock()
        self._postfix = ""
        self._logged_n: float | None = None
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("LogProgress was built without an iterable")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        now = self._clock()
        if now - self._last >= self.interval:
            self._log(now)

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self._postfix = s

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.n > self.initial and self._logged_n != self.n:
            self._log(self._clock())

    def line(self, now: float) -> str:
        """The progress line at time ``now``."""
        elapsed = max(now - self._start, 1e-9)
        rate = (self.n - self.initial) / elapsed
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            done = f"{self.n:g}/{self.total:g} {self.unit} ({100.0 * self.n / self.total:.0f} %)"
            left = (self.total - self.n) / rate if rate > 0 else math.inf
            eta = f", {_duration(left)} left" if math.isfinite(left) else ""
        else:
            done, eta = f"{self.n:g} {self.unit}", ""
        text = f"{head}{done}, {rate:.3g} {self.unit}/s, {_duration(elapsed)} elapsed{eta}"
        return f"{text}; {self._postfix}" if self._postfix else text

    def _log(self, now: float) -> None:
        logger.info("%s", self.line(now))
        self._last, self._logged_n = now, self.n


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: float | None = None,
    initial: float = 0,
    desc: str | None = None,
    unit: str = "it",
    disable: bool = False,
    leave: bool = True,
) -> Any:
    """tqdm's bar on a terminal; :class:`LogProgress` when stderr is not one; a silent
    pass-through (tqdm's) when ``disable``. ``initial``: where a resumed run starts."""
    if disable or sys.stderr.isatty():
        return tqdm(
            iterable,
            total=total,
            initial=initial,
            desc=desc,
            unit=unit,
            disable=disable,
            leave=leave,
        )
    return LogProgress(iterable, total=total, initial=initial, desc=desc, unit=unit)
