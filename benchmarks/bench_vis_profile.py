"""Where one training step of the VIS model spends its time, on CPU.

Usage: ``python benchmarks/bench_vis_profile.py WORLD [--model uvis-tiny] [--set key=value ...]
[--steps 20] [--threads 1]``, ``WORLD`` made by ``uvis synth``; ``--set`` takes
:class:`~uvis.train.TrainConfig` fields (``model_overrides={...}`` for the architecture).

Runs ``--steps`` optimiser steps on ground-truth training frames exactly as
:func:`uvis.train.train_vis` does (its sampling, augmentation, loss and optimiser), after two
warm-up steps, and prints the mean milliseconds per step of each part:

* data: reading, decoding and augmenting the frames (``FrameSamples``);
* forward of the backbone, the pixel decoder (multi-scale deformable attention and the FPN
  lateral layers), the transformer decoder (masked attention layers and the per-layer
  class/mask predictions);
* loss: the Hungarian matcher (its point sampling, cost matrices and ``linear_sum_assignment``,
  once per decoder layer) and the mask losses' uncertainty point sampling, the rest of the loss;
* backward, and the optimiser step (gradient clipping and AdamW).

Forward parts are timed with module hooks. Times are this process's CPU time
(``time.process_time``), not wall time, so that a machine shared with other jobs changes them
less (with one thread, CPU time is the time the step needs on an idle core, give or take cache
contention).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from uvis.data.ytvis import load_ytvis
from uvis.model import create_vis_model
from uvis.presets import parse_overrides
from uvis.train import TrainConfig, targets_from_ground_truth
from uvis.train.data import FrameSamples
from uvis.train.loop import (
    _targets,
    minvis_param_groups,
    step_seed,
    training_short_sides,
)


class Timer:
    """Accumulated CPU seconds of this process per named part."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._open: dict[str, float] = {}

    def start(self, name: str) -> None:
        self._open[name] = time.process_time()

    def stop(self, name: str) -> None:
        self.seconds[name] += time.process_time() - self._open.pop(name)

    def hook(self, module: torch.nn.Module, name: str) -> None:
        """Time ``module``'s forward as ``name``."""
        module.register_forward_pre_hook(lambda *_: self.start(name))
        module.register_forward_hook(lambda *_: self.stop(name))

    def wrap(self, owner: Any, attribute: str, name: str) -> None:
        """Time calls of ``owner.attribute`` as ``name``."""
        inner: Callable[..., Any] = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self.start(name)
            try:
                return inner(*args, **kwargs)
            finally:
                self.stop(name)

        setattr(owner, attribute, timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("world", type=Path)
    parser.add_argument("--model", default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set)
    if args.model:
        overrides["model"] = args.model
    cfg = TrainConfig.preset("default", **overrides)
    dataset = load_ytvis(args.world / "ytvis/train.json", args.world / "ytvis/train/JPEGImages")
    data = targets_from_ground_truth(dataset.frame_index(), dataset)
    torch.manual_seed(cfg.seed)
    model = create_vis_model(
        cfg.model,
        len(data.categories),
        backbone_weights=cfg.backbone_weights,
        **cfg.model_overrides,
    )
    optimizer = torch.optim.AdamW(minvis_param_groups(model, cfg), lr=cfg.lr)
    samples = FrameSamples(
        data.frames,
        seed=cfg.seed,
        short_sides=training_short_sides(cfg, model.config.test_short_side),
        max_size=model.config.max_size,
        flip=cfg.flip,
    )
    timer = Timer()
    m2f = model.mask2former
    timer.hook(m2f.model.pixel_level_module.encoder, "forward: backbone")
    timer.hook(m2f.model.pixel_level_module.decoder, "forward: pixel decoder")
    timer.hook(m2f.model.transformer_module, "forward: transformer decoder")
    criterion = m2f.criterion
    timer.wrap(criterion.matcher, "forward", "loss: Hungarian matcher")
    timer.wrap(criterion, "sample_points_using_uncertainty", "loss: uncertainty point sampling")
    timer.hook(criterion, "loss: all")
    model.train()
    total = defaultdict(float)
    warmup = 2
    for step in range(warmup + args.steps):
        timer.seconds.clear()
        began = time.process_time()
        timer.start("data")
        batch = [samples[step * cfg.batch_size + i] for i in range(cfg.batch_size)]
        timer.stop("data")
        torch.manual_seed(step_seed(cfg.seed, step + 1, 0))
        timer.start("forward + loss")
        pixel_values = model.pixel_batch([s.image for s in batch])
        masks, labels = _targets(batch, pixel_values, torch.device("cpu"))
        losses = model.losses(model(pixel_values), masks, labels)
        loss = sum(losses.values())
        timer.stop("forward + loss")
        timer.start("backward")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        timer.stop("backward")
        timer.start("optimiser step")
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        timer.stop("optimiser step")
        timer.seconds["step"] = time.process_time() - began
        if step >= warmup:
            for key, value in timer.seconds.items():
                total[key] += value / args.steps
    shape = tuple(pixel_values.shape[-2:])
    params = sum(p.numel() for p in model.parameters())
    print(
        f"{cfg.model} {cfg.model_overrides or ''}: {params / 1e6:.2f} M parameters, batch "
        f"{cfg.batch_size}, last input {shape}, {torch.get_num_threads()} thread(s), "
        f"{args.steps} steps after {warmup} warm-up"
    )
    forward = sum(v for k, v in total.items() if k.startswith("forward:"))
    loss_all = total["loss: all"]
    rows = [
        ("data (read + augment)", total["data"]),
        ("forward: backbone", total["forward: backbone"]),
        ("forward: pixel decoder", total["forward: pixel decoder"]),
        ("forward: transformer decoder + heads", total["forward: transformer decoder"]),
        ("forward: rest", total["forward + loss"] - forward - loss_all),
        ("loss: Hungarian matcher (all layers)", total["loss: Hungarian matcher"]),
        ("loss: uncertainty point sampling", total["loss: uncertainty point sampling"]),
        (
            "loss: rest",
            loss_all - total["loss: Hungarian matcher"] - total["loss: uncertainty point sampling"],
        ),
        ("backward", total["backward"]),
        ("optimiser step (clip + AdamW)", total["optimiser step"]),
    ]
    step = total["step"]
    print(f"{'part':40s} {'CPU ms':>8s} {'share':>6s}")
    for name, value in rows:
        print(f"{name:40s} {1000 * value:8.1f} {100 * value / step:5.1f}%")
    print(f"{'step':40s} {1000 * step:8.1f}")


if __name__ == "__main__":
    main()
