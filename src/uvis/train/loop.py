"""Training the VIS model as MinVIS does, with checkpoints, resume and multi-process DDP.

:func:`train_vis` runs ``TrainConfig.iterations`` optimiser steps on a :class:`TrainingSet`
and writes into its output folder:

* ``checkpoint_<iteration>.pth`` every ``checkpoint_period`` iterations (the latest
  ``keep_checkpoints`` are kept), each a full VIS checkpoint (:mod:`uvis.model.checkpoint`)
  plus ``training``: optimizer, scheduler and gradient-scaler states and a summary of the data;
* ``model_final.pth``: the trained model without training state (read by
  :func:`uvis.model.load_vis_model`);
* ``config.json`` (resolved train and model settings, vocabulary, data, environment),
  ``metrics.csv`` (the loss curve: means over ``log_period`` iterations) and TensorBoard event
  files under ``tensorboard/``.

Every file is written atomically. A run started in a folder holding checkpoints continues
from the latest one and ends with exactly the weights of an uninterrupted run: sampling and
augmentation are functions of the seed and the sample position (:mod:`uvis.train.data`), and
the torch random generator (used by the loss's point sampling) is re-seeded from ``(seed,
iteration, rank)`` before every step, so no random state needs saving.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in ``DistributedDataParallel``
(NCCL on CUDA, gloo on CPU); every process takes a disjoint part of each batch, the mask
losses are normalised by the masks of all processes, and only rank 0 writes. A non-finite loss
on any process stops all of them with a :class:`UvisError` naming the iteration and the last
good checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import transformers
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from uvis import __version__
from uvis.checkpoints import save_checkpoint
from uvis.engine.optim import WeightAverage, amp_step, weight_average
from uvis.engine.processes import ProcessContext, barrier, process_context
from uvis.engine.run_folder import (
    CONFIG_NAME,
    METRICS_NAME,
    TENSORBOARD_DIR,
    MetricsLog,
    RunFolder,
    checkpoint_to_resume,
    resume_problem,
)
from uvis.engine.schedules import LRSchedule
from uvis.engine.trainer import LossWindow, PeriodicCall, PeriodicCheckpoint, Trainer, Window
from uvis.errors import ConfigError, DataError, UvisError
from uvis.io import atomic_write_json, exclusive_lock
from uvis.model.checkpoint import checkpoint_dict, read_checkpoint
from uvis.model.mask2former import VisModel, create_vis_model
from uvis.train.config import TrainConfig
from uvis.train.data import FrameSamples, PositionBatches, TrainingSample, as_list
from uvis.train.targets import FrameTargets, TrainingSet

logger = logging.getLogger(__name__)

FINAL_NAME = "model_final.pth"
VALIDATION_NAME = "validation.csv"
#: Columns of the periodic validation's log (``validation.csv``).
VALIDATION_COLUMNS = ("iteration", "AP", "AP50", "seconds")
Validate = Callable[[VisModel, int], Mapping[str, float]]
"""A periodic validation: the model (eval mode, no gradients) and the iteration in, metrics with
``AP`` and ``AP50`` out."""
#: Loss terms of the last decoder layer, logged next to the total (all layers).
LOGGED_TERMS = ("loss_cross_entropy", "loss_mask", "loss_dice")
METRIC_COLUMNS = ("iteration", "loss", *LOGGED_TERMS, "lr", "seconds_per_iteration")
#: Parameters of these modules get no weight decay (Mask2Former's WEIGHT_DECAY_NORM = 0).
_NORM_TYPES = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.InstanceNorm2d,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)


@dataclass(frozen=True, eq=False)
class TrainResult:
    """What :func:`train_vis` did.

    ``final`` is ``model_final.pth`` (``None`` when stopped early by ``stop_after``),
    ``start_iteration`` the iteration resumed from (0 for a fresh run), ``metrics`` the loss
    curve rows (as in ``metrics.csv``), ``model`` this process's trained model.
    """

    final: Path | None
    start_iteration: int
    iteration: int
    seconds: float
    metrics: list[dict[str, float]]
    model: VisModel


# --------------------------------------------------------------------------------------------
# The MinVIS optimisation rules


def minvis_param_groups(model: VisModel, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW parameter groups as Mask2Former's ``build_optimizer`` makes them.

    Backbone parameters train at ``lr * backbone_lr_factor``; parameters of normalisation
    layers and of embeddings (queries, level embeddings) get no weight decay
    (``WEIGHT_DECAY_NORM`` = ``WEIGHT_DECAY_EMBED`` = 0); everything else ``weight_decay``.
    Frozen parameters are left out.
    """
    backbone = {id(p) for p in model.backbone.parameters()}
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            lr = cfg.lr * (cfg.backbone_lr_factor if id(param) in backbone else 1.0)
            no_decay = isinstance(module, (*_NORM_TYPES, nn.Embedding))
            groups.setdefault((lr, 0.0 if no_decay else cfg.weight_decay), []).append(param)
    return [{"params": ps, "lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def lr_schedule(cfg: TrainConfig) -> LRSchedule:
    """MinVIS's step schedule: the learning rate times ``lr_drop_factor`` from step
    ``lr_drop_fraction * iterations`` on (MinVIS: x 0.1 at 4000 of 6000; no warm-up), times
    ``(step + 1) / warmup_iterations`` during a linear warm-up of ``warmup_iterations`` steps
    (0-based ``step``: the first step trains at ``lr / warmup_iterations``)."""
    return LRSchedule(
        total=cfg.iterations,
        warmup=cfg.warmup_iterations,
        decay="step",
        drop_at=cfg.lr_drop_fraction * cfg.iterations,
        drop_factor=cfg.lr_drop_factor,
    )


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """The factor of the learning rate at 0-based ``step`` (:func:`lr_schedule`)."""
    return lr_schedule(cfg)(step)


def step_seed(seed: int, iteration: int, rank: int) -> int:
    """Seed of the torch generator for one step of one process (see the module docstring)."""
    return int(np.random.SeedSequence([seed, iteration, rank]).generate_state(1)[0])


def training_short_sides(cfg: TrainConfig, test_short_side: int) -> tuple[int, ...]:
    """Short sides training images are resized to: ``cfg.scales`` times the test size."""
    return tuple(max(1, round(s * test_short_side)) for s in cfg.scales)


# --------------------------------------------------------------------------------------------
# Checkpoints and logs


def _resume_problem(checkpoint: dict[str, Any], cfg: TrainConfig, data: TrainingSet) -> str | None:
    """Why this run cannot resume from ``checkpoint`` (another run's settings or data)."""
    return resume_problem(
        checkpoint,
        conflicts=cfg.resume_conflicts(checkpoint.get("train_config", {})),
        what="train",
        categories=[{"id": c.id, "name": c.name} for c in data.categories],
        data_summary=data.summary(),
    )


def _run_description(
    cfg: TrainConfig, model: VisModel, data: TrainingSet, ctx: ProcessContext, start: int
) -> dict[str, Any]:
    return {
        "train": cfg.to_dict(),
        "model": model.config.to_dict(),
        "categories": [{"id": c.id, "name": c.name} for c in data.categories],
        "data": {**data.source, **data.summary()},
        "processes": ctx.world_size,
        "device": str(ctx.device),
        "resumed_from_iteration": start,
        "versions": {
            "uvis": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }


# --------------------------------------------------------------------------------------------
# Training


def _targets(
    batch: list[TrainingSample], pixel_values: torch.Tensor, device: torch.device
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Masks padded like the input batch (float 0/1) and class labels, on ``device``."""
    height, width = pixel_values.shape[-2:]
    masks = [
        F.pad(
            s.masks.to(device).float(), (0, width - s.masks.shape[2], 0, height - s.masks.shape[1])
        )
        for s in batch
    ]
    return masks, [s.labels.to(device) for s in batch]


@dataclass(eq=False)
class _TrainingState:
    """The model and what steps it: everything a checkpoint restores, and where it stands."""

    model: VisModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    iteration: int
    last_checkpoint: Path | None
    ema: WeightAverage | None = None

    @property
    def final_model(self) -> VisModel:
        """What the run saves as its final model: the weights' average when kept, else the
        trained weights."""
        return self.model if self.ema is None else self.ema.module


def _set_aside(out: Path, ctx: ProcessContext) -> None:
    """Move another run's checkpoints and logs to ``out/superseded/`` (rank 0 only)."""
    if ctx.is_main:
        RunFolder(out).set_aside()
    barrier(ctx)


def _training_state(
    cfg: TrainConfig, data: TrainingSet, out: Path, ctx: ProcessContext, stale: str = "error"
) -> _TrainingState:
    """A fresh model and optimiser, or those of the latest checkpoint in ``out``.

    A latest checkpoint of another run is an error, or with ``stale="restart"`` is set aside
    (:func:`_set_aside`) and training starts afresh.
    """
    resume = checkpoint_to_resume(
        RunFolder(out),
        read_checkpoint,
        lambda checkpoint: _resume_problem(checkpoint, cfg, data),
        stale,
        set_aside=lambda: _set_aside(out, ctx),
    )
    torch.manual_seed(cfg.seed)
    model = create_vis_model(
        cfg.model,
        len(data.categories),
        backbone_weights=None if resume else cfg.backbone_weights,
        **cfg.model_overrides,
    ).to(ctx.device)
    optimizer = torch.optim.AdamW(minvis_param_groups(model, cfg), lr=cfg.lr)
    state = _TrainingState(
        model=model,
        optimizer=optimizer,
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(cfg)),
        scaler=torch.amp.GradScaler("cuda", enabled=cfg.amp and ctx.device.type == "cuda"),
        iteration=0,
        last_checkpoint=None,
        ema=weight_average(model, cfg.ema_decay),
    )
    if resume is not None:
        obj, path = resume
        training = obj["training"]
        model.load_state_dict(obj["model"])
        state.optimizer.load_state_dict(training["optimizer"])
        state.scheduler.load_state_dict(training["scheduler"])
        state.scaler.load_state_dict(training["scaler"])
        if state.ema is not None:
            state.ema.load_state_dict(training["ema"])
        state.iteration, state.last_checkpoint = int(obj["iteration"]), path
        logger.info("resuming from %s (iteration %d)", path, state.iteration)
    return state


def train_vis(
    data: TrainingSet,
    cfg: TrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
    stop_after: int | None = None,
    stale: str = "error",
    validate: Validate | None = None,
) -> TrainResult:
    """Train ``cfg.model`` on ``data`` into ``out_dir``, resuming from its latest checkpoint.

    ``validate(model, iteration)`` (e.g. :class:`uvis.inference.validation.HeldOutVideos`)
    is called on the main process every ``cfg.eval_period`` iterations and at the end; its
    ``AP`` and ``AP50`` are logged to ``validation.csv`` and TensorBoard (``val/...``). It
    runs the model in eval mode without gradients and leaves the weights unchanged.

    A latest checkpoint of another run (other settings or targets) is an error, or with
    ``stale="restart"`` (what the ``train_vis`` rule uses: Snakemake re-runs training exactly
    when its settings or inputs changed) is set aside and training starts afresh.

    ``stop_after`` (a debugging aid) stops after that many iterations as an interrupted run
    would: no final model, nothing written beyond the checkpoints due by then.

    Raises:
        DataError: when no frame is left to train on (``empty_frames="drop"`` with no
            targets), a frame file is unreadable, or the checkpoint to resume from belongs to
            another run.
        ConfigError: for a batch size not divisible by the number of processes.
        UvisError: when the loss becomes NaN or infinite.
    """
    out = Path(out_dir)
    frames = [f for f in data.frames if f.rles or cfg.empty_frames == "keep"]
    if not frames:
        raise DataError(
            data.origin, f"none of the {len(data.frames)} frames has a target to train on"
        )
    with process_context(cfg.device, "train", cfg.num_threads) as ctx:
        if cfg.batch_size % ctx.world_size:
            raise ConfigError(
                f"train setting batch_size={cfg.batch_size} is not a multiple of the "
                f"{ctx.world_size} processes"
            )
        lock = exclusive_lock(out, "a VIS training") if ctx.is_main else contextlib.nullcontext()
        with lock:
            state = _training_state(cfg, data, out, ctx, stale)
            return _train(
                state,
                data,
                frames,
                cfg,
                out,
                ctx,
                progress=progress,
                stop_after=stop_after,
                validate=validate if cfg.eval_period else None,
            )


def _train(
    state: _TrainingState,
    data: TrainingSet,
    frames: list[FrameTargets],
    cfg: TrainConfig,
    out: Path,
    ctx: ProcessContext,
    *,
    progress: bool,
    stop_after: int | None,
    validate: Validate | None,
) -> TrainResult:
    """The training loop of :func:`train_vis`, from ``state.iteration`` on."""
    model, start = state.model, state.iteration
    began = time.perf_counter()
    samples = FrameSamples(
        frames,
        seed=cfg.seed,
        short_sides=training_short_sides(cfg, model.config.test_short_side),
        max_size=model.config.max_size,
        flip=cfg.flip,
        channel_shuffle=cfg.channel_shuffle,
    )
    positions = PositionBatches(
        start=start,
        iterations=cfg.iterations,
        batch_size=cfg.batch_size,
        world_size=ctx.world_size,
        rank=ctx.rank,
    )
    loader = DataLoader(
        samples, batch_sampler=positions, num_workers=cfg.num_workers, collate_fn=as_list
    )
    net: nn.Module = model
    if ctx.world_size > 1:
        net = DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None
        )
    folder = RunFolder(out)
    metrics = validations = None
    writer = None
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            out / CONFIG_NAME, _run_description(cfg, model, data, ctx, start), indent=1
        )
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / TENSORBOARD_DIR), purge_step=start + 1 if start else None)
        tags = {k: f"loss/{k}" for k in ("loss", *LOGGED_TERMS)}
        tags |= {"lr": "lr", "seconds_per_iteration": "seconds_per_iteration"}
        metrics = MetricsLog(
            out / METRICS_NAME, METRIC_COLUMNS, resume_from=start, writer=writer, tags=tags
        )
        if validate:
            validations = MetricsLog(
                out / VALIDATION_NAME,
                VALIDATION_COLUMNS,
                resume_from=start,
                writer=writer,
                tags={"AP": "val/AP", "AP50": "val/AP50"},
            )
    schedule = lr_schedule(cfg)

    def log_window(window: Window) -> None:
        assert metrics is not None
        row = {
            "iteration": window.iteration,
            **dict(zip(("loss", *LOGGED_TERMS), window.means, strict=True)),
            "lr": cfg.lr * schedule(window.iteration - 1),
            "seconds_per_iteration": window.seconds_per_iteration,
        }
        metrics.append(row)
        logger.info(
            "iteration %d/%d: loss %.4f (class %.4f mask %.4f dice %.4f) lr %.2e, %.3f s/it",
            window.iteration,
            cfg.iterations,
            *window.means,
            row["lr"],
            window.seconds_per_iteration,
        )

    def validate_at(iteration: int) -> None:
        assert validate is not None and validations is not None
        validations.append(_validate(validate, state.final_model, iteration))

    def save(iteration: int) -> Path:
        checkpoint = _training_checkpoint(state, data, cfg)
        state.last_checkpoint = folder.save_checkpoint(iteration, checkpoint, cfg.keep_checkpoints)
        return state.last_checkpoint

    main = ctx.is_main
    trainer = Trainer(
        lambda iteration, batch: _step(state, net, batch, cfg, ctx, iteration),
        loader,
        iterations=cfg.iterations,
        start=start,
        hooks=[
            LossWindow(cfg.log_period, log_window, enabled=main),
            PeriodicCall(cfg.eval_period, validate_at, enabled=main and validate is not None),
            PeriodicCheckpoint(cfg.checkpoint_period, save, enabled=main),
        ],
        ctx=ctx,
        desc=f"train {model.config.name}",
        progress=progress,
        stop_after=stop_after,
    )
    model.train()
    try:
        trainer.train()
    finally:
        if writer is not None:
            writer.close()
    final = None
    if state.iteration >= cfg.iterations:
        final = out / FINAL_NAME
        if ctx.is_main:
            ckpt = checkpoint_dict(
                state.final_model,
                data.categories,
                iteration=state.iteration,
                train_config=cfg.to_dict(),
            )
            save_checkpoint(final, ckpt)
    barrier(ctx)
    return TrainResult(
        final=final,
        start_iteration=start,
        iteration=state.iteration,
        seconds=round(time.perf_counter() - began, 2),
        metrics=metrics.rows if metrics is not None else [],
        model=state.final_model,
    )


def _validate(validate: Validate, model: VisModel, iteration: int) -> dict[str, float]:
    """One periodic validation: ``validate``'s AP and AP50 at ``iteration``, the model back in
    training mode afterwards."""
    began = time.perf_counter()
    model.eval()
    try:
        with torch.no_grad():
            found = validate(model, iteration)
    finally:
        model.train()
    row = {
        "iteration": iteration,
        "AP": math.nan if found["AP"] is None else found["AP"],
        "AP50": math.nan if found["AP50"] is None else found["AP50"],
        "seconds": round(time.perf_counter() - began, 2),
    }
    logger.info("validation at iteration %d: AP %.1f, AP50 %.1f", iteration, row["AP"], row["AP50"])
    return row


def _step(
    state: _TrainingState,
    net: nn.Module,
    batch: list[TrainingSample],
    cfg: TrainConfig,
    ctx: ProcessContext,
    iteration: int,
) -> torch.Tensor:
    """One optimiser step on ``batch``; returns the loss and :data:`LOGGED_TERMS` (CPU),
    averaged over processes.

    Raises:
        UvisError: when a loss is NaN or infinite on any process (every process raises).
    """
    model = state.model
    torch.manual_seed(step_seed(cfg.seed, iteration, ctx.rank))
    pixel_values = model.pixel_batch([s.image for s in batch])
    mask_labels, class_labels = _targets(batch, pixel_values, ctx.device)
    with torch.autocast(ctx.device.type, dtype=torch.float16, enabled=state.scaler.is_enabled()):
        losses = model.losses(net(pixel_values), mask_labels, class_labels)
        loss = sum(losses.values())
    values = torch.stack([loss.detach(), *(losses[k].detach() for k in LOGGED_TERMS)]).float()
    if ctx.world_size > 1:
        dist.all_reduce(values)  # a NaN on any process reaches every process
        values /= ctx.world_size
    if not torch.isfinite(values).all():
        raise UvisError(
            f"training diverged: the loss is {values[0].item()} at iteration {iteration}; "
            f"last good checkpoint: {state.last_checkpoint or 'none written yet'}"
        )
    amp_step(
        loss,
        state.optimizer,
        state.scaler,
        state.scheduler,
        clip_params=model.parameters(),
        grad_clip=cfg.grad_clip,
    )
    if state.ema is not None:
        state.ema.update_parameters(model)
    state.iteration = iteration
    return values.cpu()


def _training_checkpoint(
    state: _TrainingState, data: TrainingSet, cfg: TrainConfig
) -> dict[str, Any]:
    """The checkpoint of the step just run, with everything a resumed run restores."""
    training = {
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "scaler": state.scaler.state_dict(),
        "data": data.summary(),
    }
    if state.ema is not None:
        training["ema"] = state.ema.state_dict()
    return checkpoint_dict(
        state.model,
        data.categories,
        iteration=state.iteration,
        train_config=cfg.to_dict(),
        training=training,
    )
