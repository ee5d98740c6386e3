"""Peak memory and speed of ``uvis track vis`` with a real model versus video length (issue 4).

Usage: ``python benchmarks/bench_track_model.py CHECKPOINT FRAME_INDEX [--frames 100 300 1000]
[--batch-size 8] [--threads 1]``, e.g. ``results/synth/vis/uvis/model_final.pth
results/synth/frames/valid.parquet`` after the default ``snakemake --cores N``.

Where ``bench_tracking.py`` feeds constructed model outputs to the tracker, this runs the whole
inference path of the ``track_vis`` rule -- frames read from disk, the trained model,
tracking with the tracking memory, masks resized and written as RLE, the results JSON and the
tracks Parquet -- on one long video made by repeating the frames of the frame index's first
video (forwards, then backwards, so motion stays continuous) up to the requested length.
Each length runs in a fresh process; printed per length: frames/s and the process's peak
resident memory, which must not grow with the length.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from uvis.inference.videos import VideoFrames, frame_index_videos, track_videos
from uvis.model import load_vis_model


def long_video(frame_index: Path, num_frames: int) -> VideoFrames:
    """The first video of ``frame_index`` played forwards and backwards to ``num_frames``."""
    video = frame_index_videos(frame_index)[0]
    cycle = video.paths + video.paths[-2:0:-1]
    paths = tuple(cycle[t % len(cycle)] for t in range(num_frames))
    return VideoFrames(
        video_id=video.video_id, name="long", paths=paths, height=video.height, width=video.width
    )


def run_one(checkpoint: Path, frame_index: Path, num_frames: int, batch_size: int) -> dict:
    """Track one long video; the figures of one line of the table."""
    model, meta = load_vis_model(checkpoint)
    video = long_video(frame_index, num_frames)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        results = track_videos(
            model,
            [video],
            Path(tmp) / "results.json",
            category_ids=meta.category_ids,
            lam=0.5,
            top_k=10,
            batch_size=batch_size,
            tracks_path=Path(tmp) / "tracks.parquet",
            progress=False,
        )
        seconds = time.perf_counter() - start
    return {
        "frames": num_frames,
        "size": f"{video.height}x{video.width}",
        "results": results,
        "frames_per_s": num_frames / seconds,
        "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("frame_index", type=Path)
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one length
    args = parser.parse_args()
    if args.one is not None:
        torch.set_num_threads(args.threads)
        row = run_one(args.checkpoint, args.frame_index, args.one, args.batch_size)
        print(json.dumps(row))
        return
    print(f"{args.checkpoint}, batch {args.batch_size}, {args.threads} thread(s), lambda 0.5")
    print("frames  frame size  results  frames/s  RSS peak MiB")
    for n in args.frames:
        cmd = [
            sys.executable,
            __file__,
            str(args.checkpoint),
            str(args.frame_index),
            "--one",
            str(n),
            "--batch-size",
            str(args.batch_size),
            "--threads",
            str(args.threads),
        ]
        row = json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)
        print(
            f"{row['frames']:>6}  {row['size']:>10}  {row['results']:>7}  "
            f"{row['frames_per_s']:8.1f}  {row['rss_peak_mib']:12.1f}"
        )


if __name__ == "__main__":
    main()
