"""uvis.progress: a bar on a terminal, dated lines with rate and time left in a log."""

from __future__ import annotations

import logging

import pytest

from uvis.progress import LogProgress, progress_bar


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_log_lines_every_interval_and_at_the_end(caplog):
    clock = Clock()
    caplog.set_level(logging.INFO, logger="uvis.progress")
    with LogProgress(total=100, desc="train", unit="it", interval=30, clock=clock) as bar:
        for _ in range(50):
            clock.t += 1.0  # 1 it/s
            bar.update()
        bar.set_postfix(loss="0.512")
    lines = [r.getMessage() for r in caplog.records]
    # One line after 30 s, none at 31..50 s (interval not reached), one at close.
    assert lines == [
        "train: 30/100 it (30 %), 1 it/s, 0:30 elapsed, 1:10 left",
        "train: 50/100 it (50 %), 1 it/s, 0:50 elapsed, 0:50 left; loss=0.512",
    ]


def test_resumed_run_counts_its_rate_from_where_it_started(caplog):
    clock = Clock()
    caplog.set_level(logging.INFO, logger="uvis.progress")
    bar = LogProgress(total=1000, initial=900, desc="t", interval=10, clock=clock)
    clock.t = 10.0
    bar.update(50)  # 5 it/s since the resume, 50 left
    assert (
        caplog.records[-1].getMessage() == "t: 950/1000 it (95 %), 5 it/s, 0:10 elapsed, 0:10 left"
    )
    bar.close()
    bar.close()  # once only
    assert len(caplog.records) == 1


def test_iterating_without_a_total_and_nothing_logged_for_no_work(caplog):
    clock = Clock()
    caplog.set_level(logging.INFO, logger="uvis.progress")
    assert list(LogProgress(iter([1, 2, 3]), desc="x", unit="video", clock=clock)) == [1, 2, 3]
    assert caplog.records[-1].getMessage().startswith("x: 3 video, ")
    caplog.clear()
    assert list(LogProgress([], desc="y", clock=clock)) == []
    assert caplog.records == []


def test_progress_bar_picks_by_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert isinstance(progress_bar(total=3, desc="a"), LogProgress)
    assert not isinstance(progress_bar(total=3, desc="a", disable=True), LogProgress)
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert not isinstance(progress_bar(total=3, desc="a"), LogProgress)
    with pytest.raises(TypeError):
        list(LogProgress(total=3))
