"""Time ``evaluate_folders`` on a synthetic DAVIS-sized sequence (480x854).

Usage: ``python benchmarks/bench_davis_eval.py [--frames 50] [--objects 3] [--predictions 20]``.
Prints seconds per frame; DAVIS 2017 val has about 2,000 frames.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from uvis.evaluation.davis import evaluate_folders

HEIGHT, WIDTH = 480, 854


def _ellipses(rng: np.random.Generator, count: int, frames: int) -> list[np.ndarray]:
    """``frames`` id images with ``count`` drifting ellipses of random size."""
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    params = [
        (rng.uniform(0, HEIGHT), rng.uniform(0, WIDTH), rng.uniform(20, 150), rng.uniform(20, 250))
        for _ in range(count)
    ]
    drift = rng.normal(0, 3, (count, 2))
    out = []
    for t in range(frames):
        ids = np.zeros((HEIGHT, WIDTH), np.uint8)
        for k, (cy, cx, ry, rx) in enumerate(params):
            dy, dx = t * drift[k]
            ids[((yy - cy - dy) / ry) ** 2 + ((xx - cx - dx) / rx) ** 2 <= 1] = k + 1
        out.append(ids)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--predictions", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        gt_dir, pred_dir = Path(tmp) / "gt" / "seq", Path(tmp) / "pred" / "seq"
        gt_dir.mkdir(parents=True)
        pred_dir.mkdir(parents=True)
        gt = _ellipses(rng, args.objects, args.frames)
        pred = _ellipses(rng, args.predictions, args.frames)
        for t in range(args.frames):
            Image.fromarray(gt[t]).save(gt_dir / f"{t:05d}.png")
            Image.fromarray(pred[t]).save(pred_dir / f"{t:05d}.png")
        start = time.perf_counter()
        metrics = evaluate_folders(gt_dir.parent, pred_dir.parent)
        seconds = time.perf_counter() - start
    print(
        f"{args.frames} frames, {args.objects} objects, {args.predictions} predictions: "
        f"{seconds:.2f} s ({1000 * seconds / args.frames:.1f} ms/frame), J&F = {metrics['JF']:.3f}"
    )


if __name__ == "__main__":
    main()
