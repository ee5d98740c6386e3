"""Benchmark: CLIP image embeddings of proposal crops, batched versus one crop at a time.

Cuts ``--crops`` boxes (seeded, 12-64 px sides, 10 % context) out of a seeded random 96x128
frame with :func:`uvis.foundation.clip.crop_regions`, then times
:func:`uvis.foundation.clip.image_embeddings` on all of them in batches of ``--batch-size``
against calling it once per crop on the first ``--single`` crops (the rate of the one-at-a-time
loop is measured on that subset). Weights are random (speed does not depend on them); the
models are ``uvis-clip-tiny`` (the embedded stand-in) and, unless ``--models`` says otherwise,
open_clip's ViT-B-32 at 224 px. Also checks that both ways give the same embeddings.

Run: ``python benchmarks/bench_clip_crops.py [--crops 256] [--single 32] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from uvis.foundation.clip import create_clip, crop_regions, image_embeddings


def make_crops(count: int, seed: int) -> tuple[list[np.ndarray], float]:
    """``count`` crops of a random frame and the seconds ``crop_regions`` took to cut them."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    sizes = rng.integers(12, 65, (count, 2))
    xy = rng.uniform(0, 1, (count, 2)) * (np.array([128, 96]) - sizes)
    boxes = np.concatenate([xy, sizes], axis=1)
    start = time.perf_counter()
    crops = crop_regions(frame, boxes, context=0.1)
    return crops, time.perf_counter() - start


def bench_model(
    name: str, crops: list[np.ndarray], single: int, batch_size: int, device: str
) -> dict[str, float | str]:
    """Crops/s batched and one at a time for one architecture (random weights)."""
    torch.manual_seed(0)
    bundle = create_clip(name, weights=None, device=device)
    image_embeddings(bundle, crops[:2])  # warm-up (allocations, kernels)
    start = time.perf_counter()
    batched = image_embeddings(bundle, crops, batch_size=batch_size)
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    one_by_one = torch.cat([image_embeddings(bundle, [crop]) for crop in crops[:single]])
    single_s = time.perf_counter() - start
    return {
        "model": name,
        "image_size": bundle.image_size[0],
        "crops_per_s_batched": len(crops) / batched_s,
        "crops_per_s_single": single / single_s,
        "speedup": (len(crops) / batched_s) / (single / single_s),
        "max_abs_diff": float((batched[:single] - one_by_one).abs().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["uvis-clip-tiny", "ViT-B-32"])
    parser.add_argument("--crops", type=int, default=256, help="crops embedded in batches")
    parser.add_argument("--single", type=int, default=32, help="crops embedded one at a time")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    crops, cut_s = make_crops(args.crops, args.seed)
    print(
        f"device {args.device}, {args.threads} threads; cut {len(crops)} crops in "
        f"{cut_s * 1e3:.1f} ms ({len(crops) / cut_s:,.0f} crops/s)"
    )
    results = []
    for name in args.models:
        row = bench_model(name, crops, min(args.single, len(crops)), args.batch_size, args.device)
        results.append(row)
        print(
            f"{name:>16} ({row['image_size']} px): batched {row['crops_per_s_batched']:8.1f} "
            f"crops/s, one at a time {row['crops_per_s_single']:8.1f} crops/s, "
            f"speed-up {row['speedup']:.1f}x (max |diff| {row['max_abs_diff']:.1e})"
        )
    print(json.dumps({"device": args.device, "threads": args.threads, "results": results}))


if __name__ == "__main__":
    main()
