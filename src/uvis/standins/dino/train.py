"""Training the DINO stand-in: :func:`fit_dino` (the loop, on the engine's
:class:`~uvis.engine.trainer.Trainer`) and :func:`train_dino` (corpus to checkpoint and report)."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uvis import __version__
from uvis.devices import resolve_device
from uvis.engine.schedules import cosine_schedule
from uvis.engine.trainer import Window, train_epochs
from uvis.errors import UvisError
from uvis.foundation.ssl import (
    cls_features,
    describe_arch,
    pooled_feature_name,
)
from uvis.io import atomic_path, atomic_write_json
from uvis.standins.dino.augment import multi_crop
from uvis.standins.dino.config import DinoConfig
from uvis.standins.dino.corpus import (
    Corpus,
    knn_accuracy,
    load_unlabeled_corpus,
    probe_inputs,
    probe_split,
)
from uvis.standins.dino.model import (
    DinoNetwork,
    build_dino_network,
    dino_loss,
    ema_update,
    teacher_entropies,
    teacher_temp_schedule,
    update_center,
)

logger = logging.getLogger(__name__)


def param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """AdamW groups as DINO: weights decayed; biases and 1-d parameters (norms) not."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name.endswith(".bias") or param.ndim == 1 else decay).append(param)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def clip_gradients(model: nn.Module, clip: float) -> None:
    """Scale each parameter's gradient down to norm ``clip`` when larger (DINO's rule)."""
    for param in model.parameters():
        if param.grad is not None:
            norm = param.grad.norm()
            param.grad.mul_(torch.clamp(clip / (norm + 1e-6), max=1.0))


def steps_per_epoch(num_images: int, cfg: DinoConfig) -> tuple[int, int]:
    """``(batch size, steps per epoch)``: full batches only (DINO drops the last partial one);
    a corpus smaller than ``cfg.batch_size`` gives one batch of all its images."""
    batch = min(cfg.batch_size, num_images)
    steps = num_images // batch
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    return batch, steps


def initial_network(cfg: DinoConfig) -> DinoNetwork:
    """The student at step 0: built under ``torch.manual_seed(cfg.seed)``, so the same each time
    (the teacher starts as its copy; the k-NN baseline probes its backbone)."""
    torch.manual_seed(cfg.seed)
    return build_dino_network(cfg, drop_path_rate=cfg.drop_path_rate)


@dataclass(frozen=True, eq=False)
class DinoRun:
    """What :func:`fit_dino` returns: the trained teacher (eval mode), the per-epoch log, and
    the batch size and steps per epoch actually used."""

    teacher: DinoNetwork
    epochs: list[dict[str, Any]]
    batch_size: int
    steps_per_epoch: int


def fit_dino(
    images: torch.Tensor,
    cfg: DinoConfig,
    *,
    progress: bool = True,
    device: str | torch.device | None = None,
    student: DinoNetwork | None = None,
    on_epoch: Callable[[dict[str, Any], DinoNetwork], None] | None = None,
) -> DinoRun:
    """Train student and teacher with DINO on ``uint8`` images ``(N, 3, H, W)``.

    Deterministic for a given ``cfg`` (the seed included), device and thread count.
    ``student`` replaces the network :func:`initial_network` builds (e.g. another backbone in a
    benchmark; the teacher starts as its copy); ``on_epoch(record, teacher)`` is called after
    each epoch with the epoch's log record (a probe, a plot).

    Raises:
        UvisError: the loss became NaN or infinite (lower ``lr``).
    """
    dev = torch.device(device or resolve_device("auto", "dino"))
    images = images.to(dev)
    batch, steps = steps_per_epoch(len(images), cfg)
    if student is None:
        student = initial_network(cfg).to(dev)
        teacher = build_dino_network(cfg, drop_path_rate=0.0).to(dev)
        teacher.load_state_dict(student.state_dict())
    else:
        student = student.to(dev)
        teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)

    total = cfg.epochs * steps
    lr = cosine_schedule(cfg.lr, cfg.min_lr, total, cfg.warmup_epochs * steps)
    wd = cosine_schedule(cfg.weight_decay, cfg.weight_decay_end, total)
    momentum = cosine_schedule(cfg.momentum_teacher, 1.0, total)
    temps = teacher_temp_schedule(cfg)
    optimizer = torch.optim.AdamW(param_groups(student))
    center = torch.zeros(cfg.out_dim, device=dev)
    gen = torch.Generator().manual_seed(cfg.seed)

    epochs_log: list[dict[str, Any]] = []

    def batches() -> Iterator[tuple[int, torch.Tensor]]:
        for epoch in range(cfg.epochs):
            order = torch.randperm(len(images), generator=gen)
            for i in range(steps):
                yield epoch, order[i * batch : (i + 1) * batch]

    def step(iteration: int, item: tuple[int, torch.Tensor]) -> torch.Tensor:
        nonlocal center
        epoch, idx = item
        it = iteration - 1
        optimizer.param_groups[0].update(lr=lr[it], weight_decay=wd[it])
        optimizer.param_groups[1].update(lr=lr[it])
        crops = multi_crop(images[idx.to(dev)], cfg, gen)
        with torch.no_grad():
            teacher_out = teacher(crops[:1], batch)
        loss = dino_loss(
            student(crops, batch),
            teacher_out,
            center,
            student_temp=cfg.student_temp,
            teacher_temp=float(temps[epoch]),
            centering=cfg.centering,
        )
        if not torch.isfinite(loss):
            raise UvisError(
                f"DINO loss is {loss.item()} at epoch {epoch + 1} step {it - epoch * steps + 1}: "
                f"training diverged, lower lr (now {cfg.lr})"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad:
            clip_gradients(student, cfg.clip_grad)
        if epoch < cfg.freeze_last_layer:
            for param in student.head.last_layer.parameters():
                param.grad = None
        optimizer.step()
        ema_update(teacher, student, float(momentum[it]))
        entropy = teacher_entropies(teacher_out, center, float(temps[epoch]), cfg.centering)
        center = update_center(center, teacher_out, cfg.center_momentum)
        return torch.tensor([loss.item(), *entropy], dtype=torch.float64)

    def end_of_epoch(window: Window) -> None:
        epoch, last = window.iteration // steps, window.iteration - 1
        record = {
            "epoch": epoch,
            "loss": window.means[0],
            "lr": float(lr[last]),
            "weight_decay": float(wd[last]),
            "teacher_momentum": float(momentum[last]),
            "teacher_temp": float(temps[epoch - 1]),
            "teacher_entropy": window.means[1],
            "teacher_batch_entropy": window.means[2],
            "seconds": round(window.seconds, 2),
        }
        epochs_log.append(record)
        if on_epoch is not None:
            on_epoch(record, teacher)
        logger.info(
            "dino epoch %d/%d: loss %.4f, lr %.2e, teacher momentum %.4f, temp %.3f, teacher "
            "entropy %.2f (batch mean %.2f, uniform %.2f), %.1f s",
            epoch, cfg.epochs, record["loss"], record["lr"], record["teacher_momentum"],
            record["teacher_temp"], record["teacher_entropy"], record["teacher_batch_entropy"],
            math.log(cfg.out_dim), record["seconds"],
        )  # fmt: skip

    train_epochs(step, batches(), cfg.epochs, steps, end_of_epoch, desc="dino", progress=progress)
    return DinoRun(teacher.eval(), epochs_log, batch, steps)


def save_dino_checkpoint(backbone: nn.Module, path: Path) -> None:
    """Write ``backbone``'s ``state_dict`` as the official DINO release does (a plain dict of
    CPU tensors, timm/DINO key names), atomically."""
    state = {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train_dino(
    corpus_dir: Path,
    out_path: Path,
    cfg: DinoConfig,
    *,
    progress: bool = True,
    device: str | torch.device | None = None,
    on_epoch: Callable[[dict[str, Any], DinoNetwork], None] | None = None,
) -> dict[str, Any]:
    """Train a ViT with DINO on the unlabeled corpus; save the teacher backbone and a report.

    Writes ``out_path`` (the teacher backbone in the official DINO checkpoint format, readable
    by ``create_ssl_vit(cfg.arch, weights=out_path, arch_kwargs=cfg.arch_kwargs)``) and
    ``out_path.with_suffix(".json")``: the resolved config, the per-epoch training log, and the
    k-NN probe accuracy of the trained teacher and of the same network at initialisation (when
    the corpus has category labels). Both files are written atomically. Returns the report.
    ``on_epoch`` is passed to :func:`fit_dino` (e.g. to save the teacher along the run).

    Raises:
        DataError: the corpus cannot be read (see :func:`load_unlabeled_corpus`).
        UvisError: the loss became NaN or infinite (lower ``lr``).
    """
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    corpus = load_unlabeled_corpus(Path(corpus_dir))
    n, _, height, width = corpus.images.shape
    logger.info(
        "dino: %d images %dx%d from %s; %s, %d epochs",
        n, width, height, corpus.index_path, describe_arch(cfg.arch, cfg.arch_kwargs), cfg.epochs,
    )  # fmt: skip
    run = fit_dino(corpus.images, cfg, progress=progress, device=device, on_epoch=on_epoch)
    train_wall, train_cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    save_dino_checkpoint(run.teacher.backbone, out_path)

    probe = None
    if corpus.labels is not None and len(corpus.labels) >= 2:
        device_of = next(run.teacher.parameters()).device
        inputs = probe_inputs(corpus.images.to(device_of), cfg.global_crop_size)
        initial = initial_network(cfg).backbone.to(device_of)
        probe = knn_report(cfg, corpus.labels, initial, run.teacher.backbone, inputs)
    report = _report(cfg, corpus, run, probe)
    report["training"]["seconds"] = round(train_wall, 2)
    report["training"]["cpu_seconds"] = round(train_cpu, 2)
    report["seconds"] = round(time.perf_counter() - start_wall, 2)
    atomic_write_json(Path(out_path).with_suffix(".json"), report, indent=1)
    return report


def knn_report(
    cfg: DinoConfig,
    labels: torch.Tensor,
    initial: nn.Module,
    trained: nn.Module,
    inputs: torch.Tensor,
) -> dict[str, Any]:
    """The k-NN probe of the trained backbone and, for contrast, of its initialisation."""
    train, test = probe_split(len(labels), cfg.probe_test_fraction, cfg.seed)
    num_classes = len(torch.unique(labels))
    return {
        "features": pooled_feature_name(trained),
        "image_size": cfg.global_crop_size,
        "k": cfg.probe_k,
        "temperature": cfg.probe_temperature,
        "num_train": len(train),
        "num_test": len(test),
        "num_classes": num_classes,
        "chance_accuracy": 1.0 / num_classes,
        "accuracy_trained": knn_accuracy(cls_features(trained, inputs).cpu(), labels, cfg),
        "accuracy_random_init": knn_accuracy(cls_features(initial, inputs).cpu(), labels, cfg),
    }


def _report(
    cfg: DinoConfig, corpus: Corpus, run: DinoRun, probe: dict[str, Any] | None
) -> dict[str, Any]:
    """The ``.json`` written next to the checkpoint (timings are added by the caller)."""
    import timm

    n, _, height, width = corpus.images.shape
    return {
        "format": "dino",
        "arch": cfg.arch,
        "arch_kwargs": cfg.arch_kwargs,
        "config": cfg.to_dict(),
        "corpus": {"index": str(corpus.index_path), "images": n, "size_hw": [height, width]},
        "training": {
            "batch_size": run.batch_size,
            "steps_per_epoch": run.steps_per_epoch,
            "steps": run.steps_per_epoch * cfg.epochs,
            "threads": torch.get_num_threads(),
            "device": str(next(run.teacher.parameters()).device),
            "epochs": run.epochs,
        },
        "knn_probe": probe,
        "versions": {"uvis": __version__, "torch": torch.__version__, "timm": timm.__version__},
    }
