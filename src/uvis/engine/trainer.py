"""One training loop for every training in uvis, with hooks in detectron2's manner.

A :class:`Trainer` runs a step function over batches and calls its hooks after each step. The
step does the model's work (forward, loss, backward, optimiser) and returns the step's logged
values as a 1-D tensor; the hooks do the rest:

* :class:`LossWindow`: means of the values over ``period`` steps, handed to a sink (a
  :class:`~uvis.engine.run_folder.MetricsLog`, a list, a log line);
* :class:`PeriodicCheckpoint`: a checkpoint every ``period`` steps and at the end;
* :class:`PeriodicCall`: any other periodic work (a validation, an epoch's probe).

SIGTERM (SLURM's preemption, Snakemake's stop) is held back while the loop runs
(:func:`uvis.interrupt.deferred`): after the step it arrived in, the checkpoint hooks save that
step (unless they just did) and the loop raises :class:`uvis.interrupt.Terminated`, so a
requeued job resumes from the step it was stopped at.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from uvis import interrupt
from uvis.engine.processes import ProcessContext, any_process
from uvis.progress import progress_bar

logger = logging.getLogger(__name__)

Step = Callable[[int, Any], torch.Tensor]
"""One optimiser step: ``(iteration, batch) -> values`` (1-D, on the CPU)."""


class HookBase:
    """Something done around the loop's steps; every method is optional."""

    def before_train(self, trainer: Trainer) -> None:
        """Called once before the first step."""

    def after_step(self, trainer: Trainer) -> None:
        """Called after each step; ``trainer.iteration`` and ``trainer.values`` are the step's."""

    def on_terminate(self, trainer: Trainer) -> None:
        """Called when SIGTERM stops the loop after ``trainer.iteration``."""

    def after_train(self, trainer: Trainer) -> None:
        """Called once when the loop ends, however it ends."""


class Trainer:
    """Runs ``step`` for iterations ``start + 1 .. iterations`` over ``batches``.

    ``batches`` yields exactly the batches of those iterations (a resumed run's loader starts at
    ``start``); ``noun`` names a step in messages. ``stop_after`` (a debugging aid) ends the loop after that iteration as an
    interrupted run would. ``ctx`` is this process's place in a distributed run: SIGTERM on
    any process stops every process after the same step; the progress bar is the main
    process's.
    """

    def __init__(
        self,
        step: Step,
        batches: Iterable[Any],
        *,
        iterations: int,
        start: int = 0,
        hooks: Iterable[HookBase] = (),
        ctx: ProcessContext | None = None,
        desc: str = "train",
        unit: str = "it",
        noun: str = "iteration",
        progress: bool = True,
        stop_after: int | None = None,
    ) -> None:
        self.step = step
        self.batches = batches
        self.iterations = iterations
        self.start = start
        self.hooks = list(hooks)
        self.ctx = ctx
        self.stop_after = stop_after
        self.noun = noun
        self.iteration = start
        self.values: torch.Tensor | None = None
        self._bar_args = {
            "total": iterations,
            "initial": start,
            "desc": desc,
            "unit": unit,
            "disable": not (progress and (ctx is None or ctx.is_main)),
        }
        self.bar: Any = None  # the progress bar while train() runs

    @property
    def last(self) -> bool:
        """Whether the step just run is the run's last."""
        return self.iteration == self.iterations

    def due(self, period: int) -> bool:
        """Whether the step just run ends a period of ``period`` steps, or the run."""
        return self.iteration % period == 0 or self.last

    def train(self) -> int:
        """Run the loop; returns the last iteration run.

        Raises:
            uvis.interrupt.Terminated: after SIGTERM, once the hooks have saved the step.
        """
        self.bar = progress_bar(**self._bar_args)
        with interrupt.deferred() as term:
            try:
                for hook in self.hooks:
                    hook.before_train(self)
                for iteration, batch in enumerate(self.batches, self.start + 1):
                    self.values = self.step(iteration, batch)
                    self.iteration = iteration
                    self.bar.update()
                    for hook in self.hooks:
                        hook.after_step(self)
                    if self.stop_after is not None and iteration >= self.stop_after:
                        break
                    stop = term.requested
                    if self.ctx is not None:
                        stop = any_process(stop, self.ctx)
                    if stop and iteration < self.iterations:
                        for hook in self.hooks:
                            hook.on_terminate(self)
                        stopped = f"stopped after {self.noun} {iteration}"
                        logger.warning("SIGTERM: %s", stopped)
                        raise interrupt.Terminated(stopped)
            finally:
                self.bar.close()
                for hook in self.hooks:
                    hook.after_train(self)
        return self.iteration


@dataclass(frozen=True)
class Window:
    """The logged steps up to ``iteration``: the means of their values, their count and wall
    seconds."""

    iteration: int
    means: list[float]
    steps: int
    seconds: float

    @property
    def seconds_per_iteration(self) -> float:
        return self.seconds / self.steps


class LossWindow(HookBase):
    """Means of the steps' values over every ``period`` steps (and the last window), handed to
    ``sink`` as a :class:`Window`; the first mean is shown on the progress bar."""

    def __init__(
        self,
        period: int,
        sink: Callable[[Window], None],
        *,
        enabled: bool = True,
    ) -> None:
        self.period = period
        self.sink = sink
        self.enabled = enabled
        self.window: list[torch.Tensor] = []
        self.began = 0.0  # set when training starts

    def before_train(self, trainer: Trainer) -> None:
        self.began = time.perf_counter()

    def after_step(self, trainer: Trainer) -> None:
        if not self.enabled:
            return
        assert trainer.values is not None
        self.window.append(trainer.values)
        if trainer.due(self.period):
            means = torch.stack(self.window).mean(dim=0).tolist()
            seconds = time.perf_counter() - self.began
            self.sink(Window(trainer.iteration, means, len(self.window), seconds))
            trainer.bar.set_postfix(loss=f"{means[0]:.3f}")
            self.window, self.began = [], time.perf_counter()


class PeriodicCheckpoint(HookBase):
    """``save(iteration) -> path`` every ``period`` steps, at the end, and after the step SIGTERM
    stopped the run at (unless just saved). ``last`` is the latest checkpoint written."""

    def __init__(self, period: int, save: Callable[[int], Path], *, enabled: bool = True) -> None:
        self.period = period
        self.save = save
        self.enabled = enabled
        self.last: Path | None = None
        self.saved_at = -1

    def _save(self, iteration: int) -> None:
        self.last = self.save(iteration)
        self.saved_at = iteration

    def after_step(self, trainer: Trainer) -> None:
        if self.enabled and trainer.due(self.period):
            self._save(trainer.iteration)

    def on_terminate(self, trainer: Trainer) -> None:
        if not self.enabled:
            return
        if self.saved_at != trainer.iteration:
            self._save(trainer.iteration)
        logger.warning("the step was saved in %s", self.last)


class PeriodicCall(HookBase):
    """``call(iteration)`` every ``period`` steps and at the end (``period`` 0: never)."""

    def __init__(self, period: int, call: Callable[[int], None], *, enabled: bool = True) -> None:
        self.period = period
        self.call = call
        self.enabled = enabled and period > 0

    def after_step(self, trainer: Trainer) -> None:
        if self.enabled and trainer.due(self.period):
            self.call(trainer.iteration)


def train_epochs(
    step: Step,
    batches: Iterable[Any],
    epochs: int,
    steps_per_epoch: int,
    end_of_epoch: Callable[[Window], None],
    *,
    desc: str,
    progress: bool = True,
) -> int:
    """An epoch-based training (the stand-ins'): ``step`` over ``batches`` for ``epochs`` x
    ``steps_per_epoch`` steps, ``end_of_epoch`` called after each epoch with the means of its
    steps' values (``window.iteration // steps_per_epoch`` is the epoch, 1-based)."""
    return Trainer(
        step,
        batches,
        iterations=epochs * steps_per_epoch,
        hooks=[LossWindow(steps_per_epoch, end_of_epoch)],
        desc=desc,
        unit="step",
        noun="step",
        progress=progress,
    ).train()
