"""Benchmark: YouTube-VIS evaluation, vectorised implementation versus the plain reference.

Generates a seeded, YouTube-VIS-sized synthetic ground truth and results (default: 300 videos,
40 categories, 30 frames of 180x320, 1-4 instances per video, 10 results per video: noisy
copies of the instances, some with a wrong category, and random tracks), then times
``uvis.evaluation.ytvis.evaluate`` and the reference in ``tests/ytvis_reference.py``. The
reference decodes every mask and is slow, so by default it runs on the first
``--reference-videos`` videos only and its time is extrapolated linearly to all videos (the
output says so); the fast implementation is also run on that subset to check that both agree.
With ``--official DIR`` (a folder holding the official ``ytvos.py`` and ``ytvoseval.py``) the
official code is timed on the full input as well and its stats compared.

Run: ``python benchmarks/bench_ytvis_eval.py [--videos 300] [--reference-videos 30]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from uvis.evaluation.ytvis import SUMMARY_METRICS, evaluate
from ytvis_reference import reference_evaluate


def _ellipse_track(
    rng: np.random.Generator, num_frames: int, height: int, width: int, *, like: dict | None = None
) -> tuple[list[dict | None], dict]:
    """A moving, growing ellipse (absent before ``start`` / after ``end``), as RLEs per frame.

    ``like`` (the parameters of another track) makes a noisy copy of that track.
    """
    if like is None:
        params = {
            "cy": rng.uniform(0.2, 0.8) * height,
            "cx": rng.uniform(0.2, 0.8) * width,
            "vy": rng.normal(0, 1.5),
            "vx": rng.normal(0, 2.5),
            "ry": rng.uniform(0.08, 0.3) * height,
            "rx": rng.uniform(0.08, 0.3) * width,
            "grow": rng.uniform(-0.01, 0.01),
            "start": int(rng.integers(0, num_frames // 3)),
            "end": int(rng.integers(2 * num_frames // 3, num_frames + 1)),
        }
    else:
        jitter = rng.uniform(0.0, 0.25)
        params = dict(like)
        for key in ("cy", "ry"):
            params[key] = like[key] + rng.normal(0, jitter * like["ry"])
        for key in ("cx", "rx"):
            params[key] = like[key] + rng.normal(0, jitter * like["rx"])
        params["ry"], params["rx"] = abs(params["ry"]) + 1, abs(params["rx"]) + 1
    # Built as (frames, width, height) in C order, which is the (height, width, frames)
    # Fortran-order array pycocotools encodes, without a copy.
    t = np.arange(num_frames, dtype=np.float32)[:, None, None]
    scale = 1 + params["grow"] * t
    cy, cx = params["cy"] + params["vy"] * t, params["cx"] + params["vx"] * t
    yy = np.arange(height, dtype=np.float32)[None, None, :]
    xx = np.arange(width, dtype=np.float32)[None, :, None]
    inside = ((yy - cy) / (params["ry"] * scale)) ** 2 + ((xx - cx) / (params["rx"] * scale)) ** 2
    rles = mask_utils.encode((inside <= 1).astype(np.uint8).transpose(2, 1, 0))
    out: list[dict | None] = []
    for f, rle in enumerate(rles):
        present = params["start"] <= f < params["end"]
        out.append({"size": [height, width], "counts": rle["counts"].decode()} if present else None)
    return out, params


def make_dataset(
    seed: int, num_videos: int, num_categories: int, num_frames: int, height: int, width: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Seeded synthetic YouTube-VIS ground truth and results of the requested size."""
    rng = np.random.default_rng(seed)
    videos, annotations, results = [], [], []
    for v in range(1, num_videos + 1):
        videos.append(
            {
                "id": v,
                "height": height,
                "width": width,
                "length": num_frames,
                "file_names": [f"{v:04d}/{f * 5:05d}.jpg" for f in range(num_frames)],
            }
        )
        tracks = []
        for _ in range(int(rng.integers(1, 5))):
            segs, params = _ellipse_track(rng, num_frames, height, width)
            cat = int(rng.integers(1, num_categories + 1))
            areas = [None if s is None else int(mask_utils.area(s)) for s in segs]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "video_id": v,
                    "category_id": cat,
                    "iscrowd": int(rng.random() < 0.02),
                    "height": height,
                    "width": width,
                    "segmentations": segs,
                    "areas": areas,
                }
            )
            tracks.append((params, cat))
        for _ in range(10):
            if rng.random() < 0.6:
                params, cat = tracks[int(rng.integers(len(tracks)))]
                segs, _ = _ellipse_track(rng, num_frames, height, width, like=params)
                if rng.random() < 0.3:
                    cat = int(rng.integers(1, num_categories + 1))
            else:
                segs, _ = _ellipse_track(rng, num_frames, height, width)
                cat = int(rng.integers(1, num_categories + 1))
            results.append(
                {
                    "video_id": v,
                    "category_id": cat,
                    "score": float(rng.random()),
                    "segmentations": segs,
                }
            )
    categories = [{"id": c, "name": f"category_{c:02d}"} for c in range(1, num_categories + 1)]
    return {"videos": videos, "categories": categories, "annotations": annotations}, results


def subset(gt: dict, results: list, num_videos: int) -> tuple[dict, list]:
    """The first ``num_videos`` videos with their annotations and results."""
    keep = {v["id"] for v in gt["videos"][:num_videos]}
    return (
        {
            **gt,
            "videos": [v for v in gt["videos"] if v["id"] in keep],
            "annotations": [a for a in gt["annotations"] if a["video_id"] in keep],
        },
        [r for r in results if r["video_id"] in keep],
    )


def max_difference(a: dict, b: dict) -> float:
    """Largest absolute difference over the summary metrics (inf if one is None and not both)."""
    worst = 0.0
    for m in SUMMARY_METRICS:
        x, y = a[m.key], b[m.key]
        if (x is None) != (y is None):
            return float("inf")
        if x is not None:
            worst = max(worst, abs(x - y))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=300)
    parser.add_argument("--categories", type=int, default=40)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="fast runs; the best is reported")
    parser.add_argument(
        "--reference-videos", type=int, default=30, help="videos the reference runs on (0: all)"
    )
    parser.add_argument("--official", type=Path, help="folder with official ytvos(eval).py")
    args = parser.parse_args()

    t0 = time.perf_counter()
    gt, results = make_dataset(
        args.seed, args.videos, args.categories, args.frames, args.height, args.width
    )
    gen_s = time.perf_counter() - t0
    size_mb = (len(json.dumps(gt)) + len(json.dumps(results))) / 1e6
    print(
        f"input: {args.videos} videos x {args.frames} frames of {args.height}x{args.width}, "
        f"{args.categories} categories, {len(gt['annotations'])} GT instances, "
        f"{len(results)} results ({size_mb:.1f} MB of JSON; generated in {gen_s:.1f} s)"
    )

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        metrics = evaluate(gt, results)
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    evaluate(gt, results)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    fast_s = min(times)
    print(
        f"fast:      {fast_s:8.2f} s  (best of {args.repeats}: "
        f"{', '.join(f'{t:.2f}' for t in times)}), peak traced memory {peak / 2**20:.1f} MiB, "
        f"AP {metrics['AP']:.3f}, AP50 {metrics['AP50']:.3f}, AR10 {metrics['AR10']:.3f}"
    )

    n_ref = args.videos if args.reference_videos <= 0 else min(args.reference_videos, args.videos)
    sub_gt, sub_res = subset(gt, results, n_ref)
    t0 = time.perf_counter()
    fast_sub = evaluate(sub_gt, sub_res)
    fast_sub_s = time.perf_counter() - t0
    tracemalloc.start()
    t0 = time.perf_counter()
    ref_sub = reference_evaluate(sub_gt, sub_res)
    ref_sub_s = time.perf_counter() - t0
    _, ref_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    ref_s = ref_sub_s * args.videos / n_ref
    how = (
        "measured"
        if n_ref == args.videos
        else (f"extrapolated linearly from {ref_sub_s:.2f} s on the first {n_ref} videos")
    )
    print(
        f"reference: {ref_s:8.2f} s  ({how}; traced peak {ref_peak / 2**20:.1f} MiB "
        f"with tracemalloc on)"
    )
    print(
        f"speed-up:  {ref_s / fast_s:8.1f} x   (on the {n_ref}-video subset: fast "
        f"{fast_sub_s:.3f} s vs reference {ref_sub_s:.2f} s = {ref_sub_s / fast_sub_s:.1f} x; "
        f"max |fast - reference| = {max_difference(fast_sub, ref_sub):.2e})"
    )

    if args.official is not None:
        from test_eval_ytvis_official import load_official, official_metrics

        classes = load_official(args.official)
        t0 = time.perf_counter()
        theirs = official_metrics(classes, gt, results)
        off_s = time.perf_counter() - t0
        print(
            f"official:  {off_s:8.2f} s  (full input; fast is {off_s / fast_s:.1f} x faster; "
            f"max |fast - official| = {max_difference(metrics, theirs):.2e})"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS {rss:.0f} MiB (includes the generated input and the reference)")


if __name__ == "__main__":
    main()
