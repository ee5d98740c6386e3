"""Query tracking memory and speed versus video length (bounded memory, issue 4).

Usage: ``python benchmarks/bench_tracking.py [--frames 100 300 1000] [--queries 100]``.

Each length runs in a fresh process, which feeds constructed model outputs -- Q queries with
D = 256 embeddings, 101 class logits, mask logits at 1/4 of 720p (180x320) for 720x1280
frames -- one frame at a time to :func:`uvis.tracking.query_tracker.write_vis_results`, which
tracks them with the tracking memory and streams the top-10 results to a results JSON and a
tracks Parquet in a temporary folder. Every query has a moving blob of positive logits (radius
5-40 logit pixels), so every query's mask is resized and encoded in every frame.

Prints, per length: tracking frames/s (the time spent making the inputs left out), the peak of
Python-traced memory (tracemalloc: numpy arrays included, so one frame of inputs too) while
tracking, the process's peak resident memory (mostly the libraries imported: importing
``uvis.model`` loads torch and transformers), and the sizes of the outputs. The peaks must not
grow with the length.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from uvis.model.outputs import FrameQueries
from uvis.tracking.query_tracker import write_vis_results

FRAME_SIZE = (720, 1280)
LOGITS_SIZE = (180, 320)
DIM = 256
CLASSES = 100


def constructed_frames(
    num_frames: int, queries: int, clock: list[float], seed: int = 0
) -> Iterator[FrameQueries]:
    """Model outputs of one video, made lazily (only the current frame exists at a time).

    The seconds spent making them are added to ``clock[0]``, so they can be left out of the
    tracking speed.
    """
    rng = np.random.default_rng(seed)
    identities = rng.standard_normal((queries, DIM)).astype(np.float32)
    class_logits = rng.standard_normal((queries, CLASSES + 1)).astype(np.float32)
    radius = rng.uniform(5, 40, queries)
    start = rng.uniform(0, 1, (queries, 2)) * LOGITS_SIZE
    velocity = rng.uniform(-1.5, 1.5, (queries, 2))
    blobs = []
    for r in radius:  # a logit map that is positive inside the disk of radius r
        size = int(np.ceil(r)) * 2 + 1
        yy, xx = np.mgrid[:size, :size] - size // 2
        blobs.append((4.0 * (r - np.hypot(yy, xx)) / r).astype(np.float32))
    for t in range(num_frames):
        made = time.perf_counter()
        masks = np.full((queries, *LOGITS_SIZE), -5.0, np.float32)
        centre = (start + velocity * t) % LOGITS_SIZE
        for q, blob in enumerate(blobs):
            _paste(masks[q], blob, centre[q])
        order = rng.permutation(queries)
        embeddings = identities + 0.2 * rng.standard_normal(identities.shape, dtype=np.float32)
        logits = class_logits + 0.5 * rng.standard_normal(class_logits.shape, dtype=np.float32)
        frame = FrameQueries(embeddings[order], logits[order], masks[order], FRAME_SIZE)
        del masks
        clock[0] += time.perf_counter() - made
        yield frame


def _paste(target: np.ndarray, blob: np.ndarray, centre: np.ndarray) -> None:
    """Write ``blob`` centred at ``centre`` into ``target``, clipped at the borders."""
    half = blob.shape[0] // 2
    y0, x0 = (int(c) - half for c in centre)
    ty, tx = (
        slice(max(y0, 0), min(y0 + blob.shape[0], target.shape[0])),
        slice(max(x0, 0), min(x0 + blob.shape[1], target.shape[1])),
    )
    target[ty, tx] = blob[ty.start - y0 : ty.stop - y0, tx.start - x0 : tx.stop - x0]


def run_one(num_frames: int, queries: int) -> dict[str, float]:
    """Track one video of ``num_frames`` frames; the figures of one line of the table."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        tracks = Path(tmp) / "tracks.parquet"
        clock = [0.0]
        tracemalloc.start()
        start = time.perf_counter()
        write_vis_results(
            [(1, constructed_frames(num_frames, queries, clock))],
            out,
            category_ids=list(range(1, CLASSES + 1)),
            tracks_path=tracks,
            spool_dir=tmp,
        )
        seconds = time.perf_counter() - start - clock[0]
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return {
            "frames": num_frames,
            "seconds": seconds,
            "frames_per_s": num_frames / seconds,
            "traced_peak_mib": peak / 2**20,
            "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,
            "results_json_mib": out.stat().st_size / 2**20,
            "tracks_parquet_mib": tracks.stat().st_size / 2**20,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one length
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.queries)))
        return
    print(
        f"Q={args.queries}, D={DIM}, C={CLASSES}, mask logits {LOGITS_SIZE} -> frames "
        f"{FRAME_SIZE}, top-10, lambda 0.5"
    )
    print("frames  tracking s  frames/s  traced peak MiB  RSS peak MiB  JSON MiB  Parquet MiB")
    for n in args.frames:
        cmd = [sys.executable, __file__, "--one", str(n), "--queries", str(args.queries)]
        row = json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)
        print(
            f"{row['frames']:>6}  {row['seconds']:10.1f}  {row['frames_per_s']:8.1f}  "
            f"{row['traced_peak_mib']:15.1f}  {row['rss_peak_mib']:12.1f}  "
            f"{row['results_json_mib']:8.2f}  {row['tracks_parquet_mib']:11.2f}"
        )


if __name__ == "__main__":
    main()
