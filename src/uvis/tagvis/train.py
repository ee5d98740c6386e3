"""Training the tag-based model (Kini & Shah, §IV): Adam, clips, eq. 7's loss, resumable.

:func:`train_tagvis` runs ``ceil(epochs * videos / batch_size)`` steps of Adam (the paper's
optimiser; its learning rate 1e-4 is the ``paper`` preset's) on clips of a
:class:`~uvis.train.targets.TrainingSet` and writes into its output folder:

* ``checkpoint_<step>.pth`` every ``checkpoint_period`` steps and at the end (the latest
  ``keep_checkpoints`` are kept): a full checkpoint (:mod:`uvis.tagvis.checkpoint`) plus the
  optimizer state and a summary of the data;
* ``model_final.pth``: the trained model without training state;
* ``config.json`` (settings, vocabulary, data, environment) and ``metrics.csv`` (the loss
  curve: the optimised total, the cross-entropy, the instance class head's cross-entropy and
  the four tagging terms, means over ``log_period`` steps, with the learning rate and seconds
  per step).

The loss of a batch is the mean over its clips of ``L_tag + L_crossentropy`` (eq. 7), the
tagging terms on the sampled pixels of every instance (background included) and the
cross-entropy over every pixel; with the instance class head (``class_head="rois"``, uvis's
addition) plus :func:`instance_cross_entropy` over the clips' ground-truth instances. Every
file is written atomically. A run started in a folder
holding checkpoints continues from the latest and ends with the weights of an uninterrupted
run: clips are functions of the seed and their position (:mod:`uvis.tagvis.data`) and nothing
else in a step is random.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from uvis import __version__
from uvis.checkpoints import save_checkpoint
from uvis.engine.processes import training_device
from uvis.engine.run_folder import (
    CONFIG_NAME,
    METRICS_NAME,
    MetricsLog,
    RunFolder,
    checkpoint_to_resume,
    resume_problem,
)
from uvis.engine.trainer import LossWindow, PeriodicCheckpoint, Trainer, Window
from uvis.errors import UvisError
from uvis.io import atomic_write_json, exclusive_lock
from uvis.tagvis.checkpoint import checkpoint_dict, model_from_checkpoint, read_checkpoint
from uvis.tagvis.config import SEMANTIC_WEIGHTINGS, TagVisConfig
from uvis.tagvis.data import ClipSample, ClipSamples, VideoTargets, class_counts, video_targets
from uvis.tagvis.losses import TERMS, gather_tags, tagging_loss
from uvis.tagvis.model import TagVisNet, TagVisOutput, create_tagvis_model
from uvis.train.data import PositionBatches
from uvis.train.targets import TrainingSet

logger = logging.getLogger(__name__)

FINAL_NAME = "model_final.pth"
LOSS_COLUMNS = ("loss", "cross_entropy", "instance_cross_entropy", *TERMS)
METRIC_COLUMNS = ("iteration", *LOSS_COLUMNS, "lr", "seconds_per_iteration")


@dataclass(frozen=True, eq=False)
class TagVisTrainResult:
    """What :func:`train_tagvis` did: ``final`` is ``model_final.pth`` (``None`` when stopped
    early by ``stop_after``), ``start_iteration`` the step resumed from, ``metrics`` the loss
    curve rows (as in ``metrics.csv``), ``model`` the trained network."""

    final: Path | None
    start_iteration: int
    iteration: int
    seconds: float
    metrics: list[dict[str, float]]
    model: TagVisNet


def total_iterations(cfg: TagVisConfig, num_videos: int) -> int:
    """Adam steps of a run: ``epochs`` passes of one clip per video, ``batch_size`` per step,
    at most ``max_steps`` (when > 0)."""
    steps = math.ceil(cfg.epochs * num_videos / cfg.batch_size)
    return min(steps, cfg.max_steps) if cfg.max_steps > 0 else steps


def semantic_cross_entropy(
    logits: torch.Tensor, semantic: torch.Tensor, weighting: str = "pixels"
) -> torch.Tensor:
    """Eq. 7's ``L_crossentropy`` over every pixel: ``logits`` ``(B, 1 + C, T, H, W)``,
    ``semantic`` ``(B, T, H, W)`` (0 background).

    ``weighting="pixels"`` is the plain mean over pixels. The paper does not say how pixels
    are weighted; on small objects the plain mean is mostly background (objects cover about a
    tenth of the embedded world's frames), so the classes get a tenth of the gradient.
    ``"foreground"`` (the ``default`` preset's) is the mean of the background pixels' mean and
    the object pixels' mean, so both count half (the plain mean where either is missing).
    """
    if weighting not in SEMANTIC_WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; known: {SEMANTIC_WEIGHTINGS}")
    if weighting == "pixels":
        return F.cross_entropy(logits, semantic)
    per_pixel = F.cross_entropy(logits, semantic, reduction="none")
    objects = semantic > 0
    if objects.all() or not objects.any():
        return per_pixel.mean()
    return 0.5 * (per_pixel[objects].mean() + per_pixel[~objects].mean())


def instance_cross_entropy(
    class_logits: torch.Tensor,
    semantic: torch.Tensor,
    pixels: torch.Tensor,
    present: torch.Tensor,
) -> tuple[torch.Tensor, int]:
    """The instance class head's summed cross-entropy over one clip's instances, and their
    number: ``class_logits`` ``(N, C)`` of the instances of ``pixels`` / ``present`` (instance 0,
    the background, and instances absent from every frame left out), each instance's class read
    from ``semantic`` ``(T, H, W)`` (``c + 1``) at its first sampled pixel."""
    visible = present.any(dim=1)
    visible[0] = False
    if not visible.any():
        return class_logits.sum() * 0.0, 0
    first = present.to(torch.int64).argmax(dim=1)  # the first frame each instance is in
    index = torch.arange(len(first), device=pixels.device)
    labels = semantic.reshape(semantic.shape[0], -1)[first, pixels[index, first, 0]] - 1
    loss = F.cross_entropy(class_logits[visible], labels[visible], reduction="sum")
    return loss, int(visible.sum())


def clip_losses(
    output: TagVisOutput,
    batch: list[ClipSample],
    cfg: TagVisConfig,
    class_head: nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """Eq. 7 for a batch: ``loss`` (the optimised total) and every term of
    :data:`LOSS_COLUMNS`, each the mean over the batch's clips (disabled terms detached).

    With the instance class head (``output.class_features`` set; pass the model's
    ``class_head``), ``loss`` also holds :func:`instance_cross_entropy`, the mean over the
    batch's instances (``instance_cross_entropy``; 0 without the head)."""
    if output.class_features is not None and class_head is None:
        raise ValueError("the output has class features: pass the model's class_head")
    device = output.tags.device
    enabled = frozenset(name for name in TERMS if getattr(cfg, name))
    sums = dict.fromkeys(TERMS, torch.zeros((), device=device))
    tag_total = torch.zeros((), device=device)
    for i, sample in enumerate(batch):
        tags = gather_tags(output.tags[i], sample.pixels.to(device))
        result = tagging_loss(
            tags,
            sample.present.to(device),
            margin=cfg.margin,
            enabled=enabled,
            reduction=cfg.loss_reduction,
        )
        tag_total = tag_total + result.total
        sums = {name: sums[name] + result.terms[name] for name in TERMS}
    n = len(batch)
    losses = {name: value / n for name, value in sums.items()}
    cross_entropy = torch.zeros((), device=device)
    instance_ce = torch.zeros((), device=device)
    if output.logits is not None:
        semantic = torch.stack([s.semantic for s in batch]).to(device)
        cross_entropy = semantic_cross_entropy(output.logits, semantic, cfg.semantic_weighting)
    if output.class_features is not None and class_head is not None:
        count = 0
        for i, sample in enumerate(batch):
            if sample.instances is None:
                raise ValueError("the instance class head needs each clip's instance map")
            pixels, present = sample.pixels.to(device), sample.present.to(device)
            ids = torch.arange(len(pixels), device=device)[:, None, None, None]
            masks = sample.instances.to(device)[None] == ids
            class_logits = class_head(output.class_features[i], masks)
            loss, k = instance_cross_entropy(
                class_logits, sample.semantic.to(device), pixels, present
            )
            instance_ce, count = instance_ce + loss, count + k
        instance_ce = instance_ce / max(count, 1)
    return {
        "loss": tag_total / n + cross_entropy + instance_ce,
        "cross_entropy": cross_entropy,
        "instance_cross_entropy": instance_ce,
        **losses,
    }


@dataclass(eq=False)
class _State:
    """The network and its optimiser, and where training stands."""

    model: TagVisNet
    optimizer: torch.optim.Optimizer
    iteration: int
    last_checkpoint: Path | None


def _resume_problem(obj: dict[str, Any], cfg: TagVisConfig, data: TrainingSet) -> str | None:
    """Why a checkpoint cannot be resumed by this run, or ``None``."""
    return resume_problem(
        obj,
        conflicts=cfg.resume_conflicts(obj["config"]),
        what="tagvis",
        categories=[{"id": c.id, "name": c.name} for c in data.categories],
        data_summary=data.summary(),
    )


def _state(
    cfg: TagVisConfig, data: TrainingSet, out: Path, device: torch.device, stale: str
) -> _State:
    """A fresh network and optimiser, or those of the latest checkpoint in ``out``."""
    resume = checkpoint_to_resume(
        RunFolder(out), read_checkpoint, lambda obj: _resume_problem(obj, cfg, data), stale
    )
    torch.manual_seed(cfg.seed)
    if resume is None:
        model = create_tagvis_model(cfg, len(data.categories)).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        return _State(model=model, optimizer=optimizer, iteration=0, last_checkpoint=None)
    obj, path = resume
    model = model_from_checkpoint(obj, path).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    optimizer.load_state_dict(obj["training"]["optimizer"])
    logger.info("resuming from %s (step %d)", path, obj["iteration"])
    return _State(
        model=model, optimizer=optimizer, iteration=int(obj["iteration"]), last_checkpoint=path
    )


def train_tagvis(
    data: TrainingSet,
    cfg: TagVisConfig,
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
    stop_after: int | None = None,
    stale: str = "error",
) -> TagVisTrainResult:
    """Train the tag-based model on ``data`` into ``out_dir``, resuming from its latest
    checkpoint.

    A latest checkpoint of another run (other settings or targets) is an error, or with
    ``stale="restart"`` (what the ``train_tagvis`` rule uses) is set aside and training starts
    afresh. ``stop_after`` (a debugging aid) stops after that many steps as an interrupted run
    would: no final model.

    Raises:
        DataError: for unreadable frames, a video whose frames are not contiguous, or a
            checkpoint of another run.
        ConfigError: for an unknown ``stale`` policy or an unavailable device.
        UvisError: when the loss becomes NaN or infinite.
    """
    out = Path(out_dir)
    videos = video_targets(data, cfg.link_iou, cfg.link_gap)
    counts = class_counts(videos, len(data.categories))
    device = training_device(cfg.device, "tagvis")
    if device.type == "cpu":
        torch.set_num_threads(cfg.num_threads)
    with exclusive_lock(out, "a tag-based training"):
        state = _state(cfg, data, out, device, stale)
        return _train(
            state, data, videos, counts, cfg, out, progress=progress, stop_after=stop_after
        )


def _train(
    state: _State,
    data: TrainingSet,
    videos: list[VideoTargets],
    counts: list[int],
    cfg: TagVisConfig,
    out: Path,
    *,
    progress: bool,
    stop_after: int | None,
) -> TagVisTrainResult:
    """The loop of :func:`train_tagvis`, from ``state.iteration`` on."""
    model, start = state.model, state.iteration
    device = next(model.parameters()).device
    iterations = total_iterations(cfg, len(videos))
    began = time.perf_counter()
    positions = PositionBatches(
        start=start, iterations=iterations, batch_size=cfg.batch_size, world_size=1, rank=0
    )
    loader = DataLoader(
        ClipSamples(videos, cfg),
        batch_sampler=positions,
        num_workers=cfg.num_workers,
        collate_fn=list,
    )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out / CONFIG_NAME, _run_description(cfg, data, videos, device, start, iterations), indent=1
    )
    metrics = MetricsLog(out / METRICS_NAME, METRIC_COLUMNS, resume_from=start)
    folder = RunFolder(out)
    schedule = cfg.schedule(iterations)

    def log_window(window: Window) -> None:
        row = {
            "iteration": window.iteration,
            **dict(zip(LOSS_COLUMNS, window.means, strict=True)),
            "lr": schedule.rate(window.iteration, cfg.lr),
            "seconds_per_iteration": window.seconds_per_iteration,
        }
        metrics.append(row)
        logger.info(
            "step %d/%d: %s",
            window.iteration,
            iterations,
            ", ".join(f"{k} {row[k]:.4f}" for k in LOSS_COLUMNS),
        )

    def save(iteration: int) -> Path:
        checkpoint = _training_checkpoint(state, data, counts)
        state.last_checkpoint = folder.save_checkpoint(iteration, checkpoint, cfg.keep_checkpoints)
        return state.last_checkpoint

    trainer = Trainer(
        lambda iteration, batch: _step(
            state, batch, cfg, schedule.rate(iteration, cfg.lr), iteration
        ),
        loader,
        iterations=iterations,
        start=start,
        hooks=[
            LossWindow(cfg.log_period, log_window),
            PeriodicCheckpoint(cfg.checkpoint_period, save),
        ],
        desc="train tagvis",
        unit="step",
        noun="step",
        progress=progress,
        stop_after=stop_after,
    )
    model.train()
    trainer.train()
    final = None
    if state.iteration >= iterations:
        final = out / FINAL_NAME
        save_checkpoint(
            final, checkpoint_dict(model, data.categories, counts, iteration=state.iteration)
        )
    return TagVisTrainResult(
        final=final,
        start_iteration=start,
        iteration=state.iteration,
        seconds=round(time.perf_counter() - began, 2),
        metrics=metrics.rows,
        model=model,
    )


def _step(
    state: _State, batch: list[ClipSample], cfg: TagVisConfig, lr: float, iteration: int
) -> torch.Tensor:
    """Step ``iteration`` of Adam at learning rate ``lr``; returns the batch's
    :data:`LOSS_COLUMNS` (CPU).

    Raises:
        UvisError: when the loss is NaN or infinite.
    """
    device = next(state.model.parameters()).device
    video = torch.stack([s.video for s in batch]).to(device)
    losses = clip_losses(state.model(video), batch, cfg, state.model.class_head)
    values = torch.stack([losses[k].detach() for k in LOSS_COLUMNS]).float().cpu()
    if not torch.isfinite(values).all():
        raise UvisError(
            f"training diverged: the loss is {values[0].item()} at step {iteration}; last good "
            f"checkpoint: {state.last_checkpoint or 'none written yet'}"
        )
    state.optimizer.zero_grad(set_to_none=True)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    losses["loss"].backward()
    state.optimizer.step()
    state.iteration = iteration
    return values


def _training_checkpoint(state: _State, data: TrainingSet, counts: list[int]) -> dict[str, Any]:
    """The checkpoint of the step just run, with everything a resumed run restores."""
    training = {"optimizer": state.optimizer.state_dict(), "data": data.summary()}
    return checkpoint_dict(
        state.model, data.categories, counts, iteration=state.iteration, training=training
    )


def _run_description(
    cfg: TagVisConfig,
    data: TrainingSet,
    videos: list[VideoTargets],
    device: torch.device,
    start: int,
    iterations: int,
) -> dict[str, Any]:
    return {
        "tagvis": cfg.to_dict(),
        "categories": [{"id": c.id, "name": c.name} for c in data.categories],
        "data": {
            **data.source,
            **data.summary(),
            "videos": len(videos),
            "tracks": sum(len({i for f in v.tracks for i in f}) for v in videos),
        },
        "iterations": iterations,
        "device": str(device),
        "resumed_from_iteration": start,
        "versions": {"uvis": __version__, "torch": torch.__version__},
    }
