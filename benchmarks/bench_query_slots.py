"""How often query matching moves a track to another query: why the tracking memory has little
to change on a model whose queries behave as fixed slots.

Usage::

    python benchmarks/bench_query_slots.py CKPT FRAMES [--videos 16] [--lam 0.5]

``CKPT`` is a ``model_final.pth`` of ``uvis train vis``; ``FRAMES`` a frame index
(``frames.parquet``, e.g. one that ``bench_tracking_memory.py`` wrote for a world). For the first
``--videos`` videos, the model's per-frame queries are linked by plain MinVIS matching (λ 1)
and by the tracking memory (λ ``--lam``, UVIS eq. 2), through the library's ``TrackingMemory``.
Printed: the number of (frame, track) links; how many times a track is matched to a different
query index than in the frame before, under each rule; on how many links the two rules
disagree; and the frame-to-frame margin of the same query index (its cosine similarity to
itself in the next frame minus the best cosine to any other query). When tracks almost never
change index, both rules link the same queries and the memory cannot change AP.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch

from uvis.inference.videos import frame_index_videos, iter_frame_queries
from uvis.model.checkpoint import load_vis_model
from uvis.tracking.matching import TrackingMemory, normalise_queries


def index_changes(perms: list[np.ndarray]) -> int:
    """How many (frame, track) entries are matched to another query than in the frame before."""
    return sum(int((perms[t] != perms[t - 1]).sum()) for t in range(1, len(perms)))


def self_margins(queries: list[np.ndarray]) -> np.ndarray:
    """For each frame after the first and each query index: cosine to the same index in the
    previous frame minus the best cosine to any other index of the previous frame."""
    margins = []
    for prev, cur in itertools.pairwise(queries):
        sim = cur @ prev.T
        same = np.diag(sim).copy()
        np.fill_diagonal(sim, -np.inf)
        margins.append(same - sim.max(axis=1))
    return np.concatenate(margins) if margins else np.zeros(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("frames", type=Path, help="a frame index (frames.parquet)")
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--lam", type=float, default=0.5, help="the memory's lambda (paper 0.5)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_vis_model(args.checkpoint)
    videos = frame_index_videos(args.frames)[: args.videos]
    changes = {1.0: 0, args.lam: 0}
    disagree = links = 0
    margins = []
    for video in videos:
        queries = [normalise_queries(f.embeddings) for f in iter_frame_queries(model, video)]
        perms = {}
        for lam in changes:
            memory = TrackingMemory(lam)
            perms[lam] = [memory.match(q) for q in queries]
            changes[lam] += index_changes(perms[lam])
        disagree += sum(
            int((a != b).sum()) for a, b in zip(perms[1.0], perms[args.lam], strict=True)
        )
        links += (len(queries) - 1) * len(queries[0])
        margins.append(self_margins(queries))
    m = np.concatenate(margins)
    print(f"{args.checkpoint}: {len(videos)} videos of {args.frames}")
    print(f"(frame, track) links after the first frame: {links}")
    for lam, n in changes.items():
        print(f"tracks matched to another query index than the frame before, λ {lam}: {n}")
    print(f"links where λ 1 and λ {args.lam} disagree: {disagree}")
    print(
        f"same-index margin (cosine), frame to frame: median {np.median(m):.3f}, "
        f"1st percentile {np.percentile(m, 1):.3f}, negative on {(m < 0).mean():.1%} of entries"
    )


if __name__ == "__main__":
    main()
