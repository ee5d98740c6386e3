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
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
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

from uvis import __version__, interrupt
from uvis.checkpoints import save_checkpoint
from uvis.errors import ConfigError, DataError, UvisError
from uvis.io import atomic_write_json, atomic_write_text, exclusive_lock
from uvis.model.checkpoint import checkpoint_dict, read_checkpoint
from uvis.model.mask2former import VisModel, create_vis_model
from uvis.progress import progress_bar
from uvis.train.config import TrainConfig
from uvis.train.curves import metrics_csv, read_metrics
from uvis.train.data import FrameSamples, PositionBatches, TrainingSample, as_list
from uvis.train.targets import FrameTargets, TrainingSet

logger = logging.getLogger(__name__)

FINAL_NAME = "model_final.pth"
CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.csv"
VALIDATION_NAME = "validation.csv"
#: Columns of the periodic validation's log (``validation.csv``).
VALIDATION_COLUMNS = ("iteration", "AP", "AP50", "seconds")
TENSORBOARD_DIR = "tensorboard"
Validate = Callable[[VisModel, int], Mapping[str, float]]
"""A periodic validation: the model (eval mode, no gradients) and the iteration in, metrics with
``AP`` and ``AP50`` out."""
_CHECKPOINT_RE = re.compile(r"^checkpoint_(\d+)\.pth$")
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


@dataclass(frozen=True)
class ProcessContext:
    """This process's place in a (possibly single-process) run and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


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


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """MinVIS's step schedule: the learning rate times ``lr_drop_factor`` from step
    ``lr_drop_fraction * iterations`` on (MinVIS: x 0.1 at 4000 of 6000; no warm-up), times
    ``(step + 1) / warmup_iterations`` during a linear warm-up of ``warmup_iterations`` steps
    (0-based ``step``: the first step trains at ``lr / warmup_iterations``)."""
    drop = cfg.lr_drop_factor if step >= cfg.lr_drop_fraction * cfg.iterations else 1.0
    if step < cfg.warmup_iterations:
        return drop * (step + 1) / cfg.warmup_iterations
    return drop


def step_seed(seed: int, iteration: int, rank: int) -> int:
    """Seed of the torch generator for one step of one process (see the module docstring)."""
    return int(np.random.SeedSequence([seed, iteration, rank]).generate_state(1)[0])


def training_short_sides(cfg: TrainConfig, test_short_side: int) -> tuple[int, ...]:
    """Short sides training images are resized to: ``cfg.scales`` times the test size."""
    return tuple(max(1, round(s * test_short_side)) for s in cfg.scales)


# --------------------------------------------------------------------------------------------
# Processes and devices


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    cuda = torch.cuda.is_available()
    if cfg.device == "cuda" and not cuda:
        raise ConfigError("train setting device='cuda': no CUDA device is available")
    if cfg.device == "cpu" or not cuda:
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


@contextlib.contextmanager
def process_context(cfg: TrainConfig) -> Iterator[ProcessContext]:
    """This process's rank and device; sets up ``torch.distributed`` under ``torchrun``.

    ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` are torchrun's environment variables. A process
    group set up here (NCCL on CUDA, gloo on CPU) is torn down on exit; one set up by the
    caller is used as it is.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(cfg, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(cfg.num_threads)
    created = False
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        created = True
    rank = dist.get_rank() if dist.is_initialized() else 0
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    try:
        yield ProcessContext(rank=rank, world_size=world_size, device=device)
    finally:
        if created:
            dist.destroy_process_group()


# --------------------------------------------------------------------------------------------
# Checkpoints and logs


def checkpoint_path(out_dir: Path, iteration: int) -> Path:
    return out_dir / f"checkpoint_{iteration:07d}.pth"


def checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of the intermediate checkpoints in ``out_dir``, oldest first."""
    if not out_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out_dir.iterdir() if (m := _CHECKPOINT_RE.match(p.name))]
    return sorted(found)


def _prune_checkpoints(out_dir: Path, keep: int) -> None:
    if keep:
        for _, path in checkpoints(out_dir)[:-keep]:
            path.unlink(missing_ok=True)


class StaleCheckpointError(DataError):
    """The latest checkpoint in the output folder belongs to another run (settings or data)."""


#: What :func:`train_vis` does with a checkpoint of another run in its output folder.
STALE_POLICIES = ("error", "restart")


def _resume_state(
    path: Path, cfg: TrainConfig, data: TrainingSet
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A checkpoint to resume from, checked against this run: ``(checkpoint, training state)``.

    Raises:
        DataError: naming the checkpoint when its settings, vocabulary or data summary differ
            from this run's (a resumed run must be the same run).
    """
    obj = read_checkpoint(path)
    training = obj.get("training")
    if not isinstance(training, dict):
        raise DataError(path, "checkpoint has no training state to resume from")
    conflicts = cfg.resume_conflicts(obj.get("train_config", {}))
    if conflicts:
        raise StaleCheckpointError(
            path,
            f"cannot resume: train settings {conflicts} differ from this run's (use another "
            "output folder for another run)",
        )
    categories = [{"id": c.id, "name": c.name} for c in data.categories]
    if obj["categories"] != categories or training.get("data") != data.summary():
        raise StaleCheckpointError(
            path, "cannot resume: the checkpoint was trained on other data or classes"
        )
    return obj, training


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


def _set_aside(out: Path, found: list[tuple[int, Path]], ctx: ProcessContext) -> None:
    """Move another run's checkpoints and loss curve to ``out/superseded/`` (rank 0 only).

    The folder holds the last superseded run only; its final model, if any, stays where it is
    (the caller's workflow decides whether it is outdated).
    """
    if ctx.rank == 0:
        aside = out / "superseded"
        if aside.exists():
            shutil.rmtree(aside)
        aside.mkdir(parents=True)
        for _, path in found:
            path.rename(aside / path.name)
        for name in ("metrics.csv", "config.json"):
            if (out / name).exists():
                (out / name).rename(aside / name)
        logger.warning("%d checkpoints of another run moved to %s", len(found), aside)
    if ctx.world_size > 1:
        dist.barrier()


def _training_state(
    cfg: TrainConfig, data: TrainingSet, out: Path, ctx: ProcessContext, stale: str = "error"
) -> _TrainingState:
    """A fresh model and optimiser, or those of the latest checkpoint in ``out``.

    A latest checkpoint of another run is an error, or with ``stale="restart"`` is set aside
    (:func:`_set_aside`) and training starts afresh.
    """
    found = checkpoints(out)
    try:
        resume = _resume_state(found[-1][1], cfg, data) if found else None
    except StaleCheckpointError:
        if stale != "restart":
            raise
        _set_aside(out, found, ctx)
        resume = None
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
        scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg)),
        scaler=torch.amp.GradScaler("cuda", enabled=cfg.amp and ctx.device.type == "cuda"),
        iteration=0,
        last_checkpoint=None,
    )
    if resume is not None:
        obj, training = resume
        model.load_state_dict(obj["model"])
        state.optimizer.load_state_dict(training["optimizer"])
        state.scheduler.load_state_dict(training["scheduler"])
        state.scaler.load_state_dict(training["scaler"])
        state.iteration, state.last_checkpoint = int(obj["iteration"]), found[-1][1]
        logger.info("resuming from %s (iteration %d)", found[-1][1], state.iteration)
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
    with process_context(cfg) as ctx:
        if cfg.batch_size % ctx.world_size:
            raise ConfigError(
                f"train setting batch_size={cfg.batch_size} is not a multiple of the "
                f"{ctx.world_size} processes"
            )
        if stale not in STALE_POLICIES:
            raise ConfigError(f"stale must be one of {STALE_POLICIES}, got {stale!r}")
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
    metrics: list[dict[str, float]] = []
    validations: list[dict[str, float]] = []
    writer = None
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            out / CONFIG_NAME, _run_description(cfg, model, data, ctx, start), indent=1
        )
        metrics = read_metrics(out / METRICS_NAME, start)
        validations = read_metrics(out / VALIDATION_NAME, start) if validate else []
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / TENSORBOARD_DIR), purge_step=start + 1 if start else None)
    bar = progress_bar(
        total=cfg.iterations,
        initial=start,
        desc=f"train {model.config.name}",
        unit="it",
        disable=not (progress and ctx.is_main),
    )
    window: list[torch.Tensor] = []
    window_start = time.perf_counter()
    model.train()
    with interrupt.deferred() as term:
        try:
            for iteration, batch in enumerate(loader, start + 1):
                values = _step(state, net, batch, cfg, ctx, iteration)
                window.append(values)
                bar.update()
                if ctx.is_main and (iteration % cfg.log_period == 0 or iteration == cfg.iterations):
                    lr = cfg.lr * lr_factor(iteration - 1, cfg)
                    row = _log_row(iteration, window, lr, time.perf_counter() - window_start)
                    metrics.append(row)
                    _write_logs(out, metrics, row, writer)
                    bar.set_postfix(loss=f"{row['loss']:.3f}")
                    window, window_start = [], time.perf_counter()
                last = iteration == cfg.iterations
                if ctx.is_main and validate and (iteration % cfg.eval_period == 0 or last):
                    validations.append(_validate(validate, model, iteration))
                    _write_validation(out, validations, writer)
                due = iteration % cfg.checkpoint_period == 0 or iteration == cfg.iterations
                if ctx.is_main and due:
                    state.last_checkpoint = _save_training_checkpoint(state, data, cfg, out)
                if stop_after is not None and iteration >= stop_after:
                    break
                if _any_process(term.requested, ctx) and iteration < cfg.iterations:
                    _stop_on_sigterm(state, data, cfg, out, ctx, due)
        finally:
            bar.close()
            if writer is not None:
                writer.close()
    final = None
    if state.iteration >= cfg.iterations:
        final = out / FINAL_NAME
        if ctx.is_main:
            ckpt = checkpoint_dict(
                model, data.categories, iteration=state.iteration, train_config=cfg.to_dict()
            )
            save_checkpoint(final, ckpt)
    if ctx.world_size > 1:
        dist.barrier()
    return TrainResult(
        final=final,
        start_iteration=start,
        iteration=state.iteration,
        seconds=round(time.perf_counter() - began, 2),
        metrics=metrics,
        model=model,
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


def _write_validation(out: Path, rows: list[dict[str, float]], writer) -> None:
    atomic_write_text(out / VALIDATION_NAME, metrics_csv(rows, VALIDATION_COLUMNS))
    if writer is not None:
        for key in ("AP", "AP50"):
            writer.add_scalar(f"val/{key}", rows[-1][key], int(rows[-1]["iteration"]))


def _any_process(flag: bool, ctx: ProcessContext) -> bool:
    """``flag`` or-ed over the processes (each may get SIGTERM at another step)."""
    if ctx.world_size == 1:
        return flag
    value = torch.tensor([float(flag)], device=ctx.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _stop_on_sigterm(
    state: _TrainingState,
    data: TrainingSet,
    cfg: TrainConfig,
    out: Path,
    ctx: ProcessContext,
    saved: bool,
) -> None:
    """Write a checkpoint of the step just finished (unless one was due anyway) and raise
    :class:`uvis.interrupt.Terminated`: a requeued job resumes from this very step."""
    if ctx.is_main and not saved:
        state.last_checkpoint = _save_training_checkpoint(state, data, cfg, out)
    logger.warning(
        "SIGTERM: stopped after iteration %d; checkpoint %s", state.iteration, state.last_checkpoint
    )
    raise interrupt.Terminated(f"stopped after iteration {state.iteration}")


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
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    if cfg.grad_clip > 0:
        state.scaler.unscale_(state.optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    state.iteration = iteration
    return values.cpu()


def _log_row(
    iteration: int, window: list[torch.Tensor], lr: float, seconds: float
) -> dict[str, float]:
    """One point of the loss curve: the window's mean losses, the (non-backbone) learning
    rate of its last step, and seconds per iteration."""
    means = torch.stack(window).mean(dim=0).tolist()
    return {
        "iteration": iteration,
        **dict(zip(("loss", *LOGGED_TERMS), means, strict=True)),
        "lr": lr,
        "seconds_per_iteration": seconds / len(window),
    }


def _write_logs(
    out: Path, metrics: list[dict[str, float]], row: Mapping[str, float], writer
) -> None:
    atomic_write_text(out / METRICS_NAME, metrics_csv(metrics, METRIC_COLUMNS))
    step = int(row["iteration"])
    for key in ("loss", *LOGGED_TERMS):
        writer.add_scalar(f"loss/{key}", row[key], step)
    writer.add_scalar("lr", row["lr"], step)
    writer.add_scalar("seconds_per_iteration", row["seconds_per_iteration"], step)
    writer.flush()
    logger.info(
        "iteration %d: loss %.4f (class %.4f mask %.4f dice %.4f) lr %.2e, %.3f s/it",
        step,
        row["loss"],
        row["loss_cross_entropy"],
        row["loss_mask"],
        row["loss_dice"],
        row["lr"],
        row["seconds_per_iteration"],
    )


def _save_training_checkpoint(
    state: _TrainingState, data: TrainingSet, cfg: TrainConfig, out: Path
) -> Path:
    """Write ``checkpoint_<iteration>.pth`` atomically, prune old ones; returns its path."""
    path = checkpoint_path(out, state.iteration)
    training = {
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "scaler": state.scaler.state_dict(),
        "data": data.summary(),
    }
    ckpt = checkpoint_dict(
        state.model,
        data.categories,
        iteration=state.iteration,
        train_config=cfg.to_dict(),
        training=training,
    )
    save_checkpoint(path, ckpt)
    _prune_checkpoints(out, cfg.keep_checkpoints)
    return path
