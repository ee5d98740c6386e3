"""What the training engine costs per step on the CPU, against a bare loop and Hugging Face
Accelerate.

    python benchmarks/bench_engine.py [--steps 40] [--repeats 3] [--model uvis-tiny]

Trains the VIS model (``uvis-tiny``, random weights) on constructed batches (4 frames of
96 x 128 with two square masks each, the same batches for every variant) at one thread and
prints CPU milliseconds per step for:

* ``bare``: a plain ``for`` loop around the step (forward, MinVIS losses, backward, AdamW);
* ``engine``: the same step run by :class:`uvis.engine.trainer.Trainer` with a loss window,
  a periodic call and SIGTERM deferral, as ``train vis`` runs it;
* ``accelerate``: the bare loop with the model and optimiser prepared by
  ``accelerate.Accelerator(cpu=True)`` and ``accelerator.backward`` (only when accelerate is
  installed; it is not a uvis dependency).

Each variant starts from the same seed; the figures are medians over ``--repeats`` runs of
``--steps`` steps after two warm-up steps.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from uvis.engine.trainer import LossWindow, PeriodicCall, Trainer
from uvis.model.mask2former import create_vis_model


def batches(n: int, seed: int = 0) -> list[tuple[torch.Tensor, list[torch.Tensor], list]]:
    """``n`` batches of 4 uint8 frames with two square masks each (classes 0 and 1)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        images, masks, labels = [], [], []
        for _ in range(4):
            images.append(torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8, generator=gen))
            m = torch.zeros(2, 96, 128)
            y, x = (int(v) for v in torch.randint(0, 60, (2,), generator=gen))
            m[0, y : y + 30, x : x + 30] = 1
            m[1, 60:90, 90:120] = 1
            masks.append(m)
            labels.append(torch.tensor([0, 1]))
        out.append((images, masks, labels))
    return out


def run(variant: str, model_name: str, steps: int) -> float:
    """CPU ms per step of ``steps`` steps after two warm-up steps."""
    torch.manual_seed(0)
    model = create_vis_model(model_name, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward
    if variant == "accelerate":
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=True)
        model, optimizer = accelerator.prepare(model, optimizer)
        backward = accelerator.backward
    data = batches(steps + 2)
    model.train()

    def step(iteration: int, batch) -> torch.Tensor:
        images, masks, labels = batch
        pixels = model.pixel_batch(images)
        h, w = pixels.shape[-2:]
        padded = [torch.nn.functional.pad(m, (0, w - m.shape[2], 0, h - m.shape[1])) for m in masks]
        losses = model.losses(model(pixels), padded, labels)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        backward(loss)
        optimizer.step()
        return torch.stack([loss.detach(), *(v.detach() for v in losses.values())][:4])

    for i, batch in enumerate(data[:2], 1):
        step(i, batch)
    began = time.process_time()
    if variant == "engine":
        hooks = [LossWindow(20, lambda window: None), PeriodicCall(10, lambda it: None)]
        Trainer(step, data[2:], iterations=steps, hooks=hooks, progress=False).train()
    else:
        for i, batch in enumerate(data[2:], 1):
            step(i, batch)
    return 1000 * (time.process_time() - began) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="uvis-tiny")
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = ["bare", "engine"]
    try:
        import accelerate

        variants.append("accelerate")
        print(f"accelerate {accelerate.__version__}")
    except ImportError:
        print("accelerate not installed: its row is left out")
    results: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for variant in variants:  # interleaved, so load drifts hit every variant alike
            results[variant].append(run(variant, args.model, args.steps))
    print(f"{args.model}, {args.steps} steps x {args.repeats}, torch {torch.__version__}, 1 thread")
    print("| loop | CPU ms per step (median) | runs |")
    print("|---|---:|---|")
    for variant, values in results.items():
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {variant} | {statistics.median(values):.1f} | {runs} |")


if __name__ == "__main__":
    main()
