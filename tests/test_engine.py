"""The training engine: schedules, the loop and its hooks, run folders, resuming."""

from __future__ import annotations

import itertools
import math
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from uvis import interrupt
from uvis.engine.run_folder import (
    MetricsLog,
    RunFolder,
    StaleCheckpointError,
    checkpoint_to_resume,
    read_metrics,
    resume_problem,
)
from uvis.engine.schedules import LRSchedule, cosine_factor, cosine_schedule, warmup_factor
from uvis.engine.trainer import HookBase, LossWindow, PeriodicCall, PeriodicCheckpoint, Trainer
from uvis.errors import ConfigError

# --------------------------------------------------------------------------------------------
# Schedules


def test_the_two_warmup_conventions() -> None:
    # (step + 1) / warmup: the first step already trains; step warmup - 1 at the full rate
    assert [warmup_factor(s, 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    # detectron2 / DINO: from `start` at step 0, reaching 1 at step `warmup`
    assert [warmup_factor(s, 4, 0.0) for s in range(4)] == [0.0, 0.25, 0.5, 0.75]
    assert warmup_factor(0, 10, 0.001) == 0.001
    assert warmup_factor(5, 10, 0.001) == pytest.approx(0.001 + 0.999 * 0.5)


def test_step_decay_drops_once_and_scales_the_warmup() -> None:
    schedule = LRSchedule(total=6, decay="step", drop_at=4, drop_factor=0.1)
    assert [schedule(s) for s in range(6)] == [1, 1, 1, 1, 0.1, 0.1]
    warm = LRSchedule(total=6, warmup=4, decay="step", drop_at=2, drop_factor=0.5)
    assert [warm(s) for s in range(5)] == pytest.approx([0.25, 0.5, 0.375, 0.5, 0.5])


def test_cosine_decay_runs_from_one_to_final_and_holds() -> None:
    schedule = LRSchedule(total=12, warmup=2, decay="cosine", final=0.2)
    assert schedule(2) == 1.0
    assert schedule(7) == pytest.approx(0.2 + 0.8 * 0.5)  # half-way: the cosine's middle
    assert schedule(12) == pytest.approx(0.2)
    assert schedule(20) == pytest.approx(0.2)
    values = [schedule(s) for s in range(2, 13)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert cosine_factor(5, 0, 10) == pytest.approx(0.5)


def test_constant_after_warmup_and_an_unknown_decay() -> None:
    schedule = LRSchedule(total=10, warmup=2, warmup_start=0.0)
    assert [schedule(s) for s in (0, 1, 2, 9)] == [0.0, 0.5, 1.0, 1.0]
    with pytest.raises(ValueError, match="decay must be one of"):
        LRSchedule(total=10, decay="poly")


@pytest.mark.parametrize("warmup", [1, 7, 20, 50])
def test_rates_keep_each_trainings_order_of_operations_to_the_last_bit(warmup: int) -> None:
    total, lr = 600, 7e-4
    # the tag-based model: 1-based steps, lr * step / warmup up to `warmup`, then a cosine
    cosine = LRSchedule(total=total, warmup=warmup, warmup_start=0.0, decay="cosine")
    for step in range(1, total + 1):
        if step <= warmup:
            want = lr * step / warmup
        else:
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            want = 0.5 * lr * (1 + math.cos(math.pi * progress))
        assert cosine.rate(step, lr) == want, step
    # MinVIS: drop * (step + 1) / warmup during the warm-up, the drop at 2/3
    minvis = LRSchedule(total=total, warmup=warmup, decay="step", drop_at=total * 2 / 3)
    for step in range(total):
        drop = 0.1 if step >= total * 2 / 3 else 1.0
        want = drop * (step + 1) / warmup if step < warmup else drop
        assert minvis(step) == want, step


def test_dino_cosine_schedule_values() -> None:
    # 2 warm-up steps 0 -> 1, then 8 cosine steps 1 -> 0: step i gives (1 + cos(pi i / 8)) / 2.
    got = cosine_schedule(1.0, 0.0, 10, warmup_steps=2)
    want = [0.0, 0.5] + [(1 + math.cos(math.pi * i / 8)) / 2 for i in range(8)]
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert got[6] == pytest.approx(0.5)
    started = cosine_schedule(1.0, 0.0, 6, warmup_steps=2, warmup_start=0.5)
    assert started.tolist()[:3] == [0.5, 0.75, 1.0]


# --------------------------------------------------------------------------------------------
# The loop


class Recorder(HookBase):
    def __init__(self) -> None:
        self.events: list[str] = []

    def before_train(self, trainer: Trainer) -> None:
        self.events.append("before")

    def after_step(self, trainer: Trainer) -> None:
        self.events.append(f"step {trainer.iteration}")

    def on_terminate(self, trainer: Trainer) -> None:
        self.events.append(f"terminate {trainer.iteration}")

    def after_train(self, trainer: Trainer) -> None:
        self.events.append("after")


def value_step(iteration: int, batch: float) -> torch.Tensor:
    return torch.tensor([float(iteration), batch])


def test_the_loop_numbers_steps_from_the_resumed_one() -> None:
    seen: list[tuple[int, float]] = []

    def step(iteration: int, batch: float) -> torch.Tensor:
        seen.append((iteration, batch))
        return value_step(iteration, batch)

    recorder = Recorder()
    trainer = Trainer(step, [10.0, 20.0, 30.0], iterations=5, start=2, hooks=[recorder])
    assert trainer.train() == 5
    assert seen == [(3, 10.0), (4, 20.0), (5, 30.0)]
    assert recorder.events == ["before", "step 3", "step 4", "step 5", "after"]


def test_loss_windows_are_means_over_each_period_and_the_last() -> None:
    windows = []
    trainer = Trainer(
        value_step,
        [1.0, 2.0, 3.0, 4.0, 5.0],
        iterations=5,
        hooks=[LossWindow(2, windows.append)],
    )
    trainer.train()
    assert [w.iteration for w in windows] == [2, 4, 5]
    assert [w.means for w in windows] == [[1.5, 1.5], [3.5, 3.5], [5.0, 5.0]]
    assert [w.steps for w in windows] == [2, 2, 1]
    assert all(w.seconds_per_iteration >= 0 for w in windows)


def test_periodic_hooks_fire_every_period_and_at_the_end(tmp_path: Path) -> None:
    saved: list[int] = []
    called: list[int] = []

    def save(iteration: int) -> Path:
        saved.append(iteration)
        return tmp_path / f"{iteration}.pth"

    checkpoint = PeriodicCheckpoint(3, save)
    hooks = [checkpoint, PeriodicCall(2, called.append), PeriodicCall(0, called.append)]
    Trainer(value_step, [0.0] * 7, iterations=7, hooks=hooks).train()
    assert saved == [3, 6, 7]
    assert called == [2, 4, 6, 7]
    assert checkpoint.last == tmp_path / "7.pth"


def test_stop_after_ends_like_an_interrupted_run() -> None:
    recorder = Recorder()
    trainer = Trainer(value_step, [0.0] * 6, iterations=6, hooks=[recorder], stop_after=2)
    assert trainer.train() == 2
    assert recorder.events[-2:] == ["step 2", "after"]


@pytest.mark.parametrize(("period", "noun"), [(4, "step"), (2, "iteration")])
def test_sigterm_saves_the_step_it_arrived_in_once_and_stops(
    tmp_path: Path, period: int, noun: str
) -> None:
    saved: list[int] = []

    def step(iteration: int, batch: float) -> torch.Tensor:
        if iteration == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return value_step(iteration, batch)

    def save(iteration: int) -> Path:
        saved.append(iteration)
        return tmp_path / f"{iteration}.pth"

    recorder = Recorder()
    previous = signal.getsignal(signal.SIGTERM)
    interrupt.install()
    try:
        hooks = [PeriodicCheckpoint(period, save), recorder]
        trainer = Trainer(step, [0.0] * 5, iterations=5, hooks=hooks, noun=noun)
        with pytest.raises(interrupt.Terminated, match=f"stopped after {noun} 2"):
            trainer.train()
    finally:
        signal.signal(signal.SIGTERM, previous)
    # step 2 is saved once: by the period when it is due (period 2), else on SIGTERM (period 4)
    assert saved == [2]
    assert recorder.events == ["before", "step 1", "step 2", "terminate 2", "after"]


# --------------------------------------------------------------------------------------------
# Run folders


def test_checkpoints_are_listed_in_order_and_pruned(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    for iteration in (10, 2, 300):
        folder.checkpoint_path(iteration).write_bytes(b"x")
    (tmp_path / "model_final.pth").write_bytes(b"x")
    (tmp_path / "checkpoint_x.pth").write_bytes(b"x")
    assert [it for it, _ in folder.checkpoints()] == [2, 10, 300]
    assert folder.checkpoint_path(2).name == "checkpoint_0000002.pth"
    folder.prune(0)
    assert len(folder.checkpoints()) == 3
    folder.prune(2)
    assert [it for it, _ in folder.checkpoints()] == [10, 300]
    assert RunFolder(tmp_path / "missing").checkpoints() == []


def test_another_run_is_set_aside_and_its_final_model_stays(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    folder.checkpoint_path(4).write_bytes(b"old")
    (tmp_path / "metrics.csv").write_text("iteration,loss\n4,1.0\n")
    (tmp_path / "model_final.pth").write_bytes(b"final")
    aside = folder.set_aside()
    assert sorted(p.name for p in aside.iterdir()) == ["checkpoint_0000004.pth", "metrics.csv"]
    assert folder.checkpoints() == []
    assert (tmp_path / "model_final.pth").exists()
    folder.checkpoint_path(8).write_bytes(b"newer")
    folder.set_aside()  # keeps the last superseded run only
    assert sorted(p.name for p in aside.iterdir()) == ["checkpoint_0000008.pth"]


def test_the_metrics_log_is_rewritten_whole_and_read_back_up_to_a_step(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    log = MetricsLog(path, ("iteration", "loss"))
    for iteration, loss in ((2, 1.5), (4, 1.25), (6, 1.0)):
        log.append({"iteration": iteration, "loss": loss})
    assert path.read_text() == "iteration,loss\n2,1.5\n4,1.25\n6,1.0\n"
    assert read_metrics(path, 4) == [{"iteration": 2, "loss": 1.5}, {"iteration": 4, "loss": 1.25}]
    resumed = MetricsLog(path, ("iteration", "loss"), resume_from=2)
    resumed.append({"iteration": 4, "loss": 0.5})
    assert read_metrics(path) == [{"iteration": 2, "loss": 1.5}, {"iteration": 4, "loss": 0.5}]
    assert read_metrics(tmp_path / "none.csv") == []
    (tmp_path / "bad.csv").write_text("iteration,loss\ntwo,1\n")
    with pytest.raises(Exception, match=r"bad\.csv: cannot read it as a training curve"):
        read_metrics(tmp_path / "bad.csv")


CATEGORIES = [{"id": 1, "name": "square"}]


def saved_run(**changes: object) -> dict[str, object]:
    run: dict[str, object] = {"categories": CATEGORIES, "training": {"data": {"frames": 3}}}
    run.update(changes)
    return run


def problem(checkpoint: dict[str, object], conflicts: tuple[str, ...] = ()) -> str | None:
    return resume_problem(
        checkpoint,
        conflicts=conflicts,
        what="train",
        categories=CATEGORIES,
        data_summary={"frames": 3},
    )


def test_why_a_checkpoint_cannot_be_resumed() -> None:
    assert problem(saved_run()) is None
    assert problem(saved_run(), ("lr",)) == "train settings ['lr'] differ from this run's"
    assert problem(saved_run(training=None)) == "it has no training state to resume from"
    assert problem(saved_run(categories=[])) == "it was trained on other data or classes"
    assert problem(saved_run(training={"data": {"frames": 4}})) == (
        "it was trained on other data or classes"
    )


def test_resume_restart_or_error(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path)
    runs = {folder.checkpoint_path(2): saved_run(), folder.checkpoint_path(4): saved_run()}
    for path in runs:
        path.write_bytes(b"x")

    def read(path: Path) -> dict[str, object]:
        return runs[path]

    found = checkpoint_to_resume(folder, read, problem, "error")
    assert found is not None and found[1] == folder.checkpoint_path(4)
    runs[folder.checkpoint_path(4)] = saved_run(categories=[])
    with pytest.raises(StaleCheckpointError, match=r"checkpoint_0000004\.pth: cannot resume: it"):
        checkpoint_to_resume(folder, read, problem, "error")
    with pytest.raises(ConfigError, match="stale must be one of"):
        checkpoint_to_resume(folder, read, problem, "ignore")
    assert checkpoint_to_resume(folder, read, problem, "restart") is None
    assert folder.checkpoints() == []
    assert checkpoint_to_resume(folder, read, problem, "error") is None
