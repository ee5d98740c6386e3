"""Time MaskCut's eigen-solves on CPU: batched ``torch.linalg.eigh`` vs CutLER's per-image scipy.

Usage: ``python benchmarks/bench_maskcut.py [--grids 28 40] [--batch 8] [--dim 384] [--threads 1]``.
On CPU the batch does not run images in parallel: it pays off on a GPU.

For each ``g x g`` patch grid (28 x 28 = 784 patches is ViT-S/8 at 224 px, 40 x 40 = 1600 at
320 px; CutLER's 480 px ViT-B/8 gives 60 x 60 = 3600), prints frames per second of

* ``torch``: :func:`second_smallest_eigenvector` on a batch (float64 ``eigh`` of the normalised
  Laplacian, all eigenpairs);
* ``scipy``: CutLER's solve, ``scipy.linalg.eigh(D - A, D, subset_by_index=[1, 2])``, one image
  at a time;
* ``scipy sym``: the same normalised Laplacian as ``torch``, but only eigenpair 1 and one image
  at a time (``scipy.linalg.eigh(L, subset_by_index=[1, 1])``), the cheapest exact CPU solve;
* ``maskcut_patches``: the three cuts of MaskCut (three batched solves plus bipartitions);

and, once, the bilateral refinement of three masks on a 480 x 480 image. The features are
clustered (a background and three blobs, plus noise) like ViT keys, though the solve's cost does
not depend on them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import scipy.linalg
import torch

from uvis.proposals.maskcut import (
    MaskCutConfig,
    affinity,
    maskcut_patches,
    second_smallest_eigenvector,
)
from uvis.proposals.refine import bilateral_refine


def clustered_feats(batch: int, grid: int, dim: int, rng: np.random.Generator) -> torch.Tensor:
    """``(batch, grid*grid, dim)`` features: three random rectangles on a background, plus noise."""
    out = np.empty((batch, grid * grid, dim), np.float32)
    for b in range(batch):
        labels = np.zeros((grid, grid), int)
        for k in range(1, 4):
            y, x = rng.integers(0, grid * 3 // 4, 2)
            h, w = rng.integers(grid // 8, grid // 3, 2)
            labels[y : y + h, x : x + w] = k
        centres = rng.normal(size=(4, dim))
        out[b] = centres[labels.reshape(-1)] + 0.5 * rng.normal(size=(grid * grid, dim))
    return torch.from_numpy(out)


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` timed calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def scipy_solves(graphs: np.ndarray) -> None:
    """CutLER's per-image generalised solve for each graph of a batch."""
    for graph in graphs:
        degree = np.diag(graph.sum(axis=1))
        scipy.linalg.eigh(degree - graph, degree, subset_by_index=[1, 2])


def scipy_symmetric_solves(graphs: np.ndarray) -> None:
    """Per-image solve of the normalised Laplacian for eigenpair 1 only."""
    for graph in graphs:
        inv_sqrt = 1.0 / np.sqrt(graph.sum(axis=1))
        laplacian = np.eye(len(graph)) - inv_sqrt[:, None] * graph * inv_sqrt[None, :]
        scipy.linalg.eigh(laplacian, subset_by_index=[1, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grids", type=int, nargs="+", default=[28, 40])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    cfg = MaskCutConfig()
    print(f"CPU, torch threads: {torch.get_num_threads()}, batch {args.batch}, D = {args.dim}")
    for grid in args.grids:
        feats = clustered_feats(args.batch, grid, args.dim, rng)
        graphs = affinity(feats, None, cfg.tau, cfg.eps)
        graphs_np = graphs.numpy()
        t_torch = best_seconds(lambda g=graphs: second_smallest_eigenvector(g), args.repeats)
        t_scipy = best_seconds(lambda g=graphs_np: scipy_solves(g), args.repeats)
        t_sym = best_seconds(lambda g=graphs_np: scipy_symmetric_solves(g), args.repeats)
        t_cut = best_seconds(
            lambda f=feats, g=grid: maskcut_patches(f, (g, g), cfg), max(1, args.repeats - 1)
        )
        n = grid * grid
        print(
            f"grid {grid}x{grid} (N={n}), one solve, frames/s: torch batched "
            f"{args.batch / t_torch:.2f}, scipy (CutLER) {args.batch / t_scipy:.2f}, "
            f"scipy sym {args.batch / t_sym:.2f}; maskcut_patches (3 cuts) "
            f"{args.batch / t_cut:.2f} frames/s"
        )
    image = rng.integers(0, 256, (480, 480, 3), dtype=np.uint8)
    masks = np.zeros((3, 480, 480), bool)
    masks[:, 100:340, 120:300] = True
    t_refine = best_seconds(lambda: bilateral_refine(image, masks), args.repeats)
    print(f"bilateral refinement, 3 masks on 480x480: {t_refine:.2f} s per image")


if __name__ == "__main__":
    main()
