"""Where UVIS's tracking memory (eq. 2) helps: plain MinVIS matching against the memory, one
trained model, on worlds from easy to crowded and occluded.

Usage::

    python benchmarks/bench_tracking_memory.py CKPT [--seeds 1 2 3] [--videos 48]
        [--lam 0.5] [--settings NAME ...] [--out-dir /tmp/bench_tracking_memory]
        [--config config.yaml]

``CKPT`` is a ``model_final.pth`` of a finished run (e.g. ``results/synth/vis/supervised``).
For each setting below and each world seed, the script generates only the valid split of a world
(``uvis synth --set num_train_videos=0``; the valid videos do not depend on the train split),
indexes its frames, tracks them with ``--lam 1`` (plain matching to the previous frame's
queries, MinVIS) and ``--lam LAM`` (the tracking memory), the other tracking options as
``config.yaml`` gives them to the ``track_vis`` rule, and evaluates both with the official
YouTube-VIS metric, through the same ``uvis`` subcommands the rules run. It prints AP per run
and the memory's gain, then the mean and range over seeds per setting. The UVIS paper argues the
memory helps where objects are occluded or cross; the settings raise occlusion, crowding and
same-category pairs (so that appearance, not class, must tell objects apart). Use world seeds
other than the run's own (0) so the figures are not those of the run's eval split.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

from uvis.workflow.runs import track_vis_options

#: A world of the valid split alone: no train videos, no corpora.
NO_TRAIN_SPLIT = {"num_train_videos": "0", "num_unlabeled_images": "0", "num_captioned_images": "0"}

#: name -> ``uvis synth --set`` overrides of the default world (valid split only).
SETTINGS: dict[str, dict[str, str]] = {
    "default": {},
    "occluded": {"occlusion_rate": "1.0", "objects_per_video": "[3, 5]"},
    "crowded, same category": {
        "occlusion_rate": "1.0",
        "objects_per_video": "[4, 6]",
        "same_category_rate": "1.0",
    },
    # Crossing paths at a third of the default speed: the object behind stays hidden for
    # several frames instead of one or two.
    "slow crossings, same category": {
        "occlusion_rate": "1.0",
        "speed": "[0.002, 0.01]",
        "same_category_rate": "1.0",
    },
    # A static pillar in front of every object, across one object's path: that object is hidden
    # whole for 3-6 frames mid-video and comes out on the other side (`pillar_rate`).
    "pillar": {"pillar_rate": "1.0"},
    "pillar, same category": {"pillar_rate": "1.0", "same_category_rate": "1.0"},
}


def uvis(*args: str) -> None:
    """One ``uvis`` subcommand, as a rule runs it; stops with its output on failure."""
    proc = subprocess.run(
        [sys.executable, "-m", "uvis", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"uvis {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")


def world(out: Path, seed: int, videos: int, overrides: dict[str, str]) -> Path:
    """The valid split of a world and its frame index; returns the world folder."""
    sets = [f"--set={k}={v}" for k, v in {**NO_TRAIN_SPLIT, **overrides}.items()]
    folder = out / "world"
    uvis("synth", str(folder), "--preset", "default", "--seed", str(seed),
         f"--set=num_valid_videos={videos}", *sets)  # fmt: skip
    ytvis = folder / "ytvis"
    uvis("data", "index", "--format", "ytvis", "--json", str(ytvis / "valid.json"),
         "--images", str(ytvis / "valid" / "JPEGImages"), "--out", str(out / "frames.parquet"))  # fmt: skip
    return folder


def tracking_options(config: Path) -> list[str]:
    """``uvis track vis`` options other than ``--lam`` as the ``track_vis`` rule passes them
    from ``config`` (:func:`uvis.workflow.runs.track_vis_options`)."""
    return track_vis_options(yaml.safe_load(config.read_text()))


def track_ap(
    ckpt: Path, out: Path, gt: Path, lam: float, threads: int, options: list[str]
) -> float:
    """Track the indexed frames with ``lam`` and return the official AP."""
    results = out / f"lam{lam}" / "results.json"
    uvis("track", "vis", "--checkpoint", str(ckpt), "--frames", str(out / "frames.parquet"),
         "--lam", str(lam), "--threads", str(threads), "--no-progress", "--out", str(results),
         *options)  # fmt: skip
    metrics = results.with_name("metrics.json")
    uvis("eval", "ytvis", str(gt), str(results), "--out", str(metrics))
    return float(json.loads(metrics.read_text())["AP"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--videos", type=int, default=48, help="valid videos per world")
    parser.add_argument("--lam", type=float, default=0.5, help="the memory's lambda (paper 0.5)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS), metavar="NAME"
    )
    parser.add_argument("--out-dir", type=Path, default=Path("/tmp/bench_tracking_memory"))
    parser.add_argument(
        "--config",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "config.yaml",
        help="the other tracking options are this config's, as the rules pass them",
    )
    args = parser.parse_args()
    options = tracking_options(args.config)

    print(f"checkpoint {args.checkpoint}, {args.videos} valid videos per world, lam {args.lam}")
    print(f"tracking options ({args.config}): {' '.join(options)}")
    print("| setting | seed | AP, MinVIS matching | AP, tracking memory | memory - matching |")
    print("|---|---:|---:|---:|---:|")
    gains: dict[str, list[float]] = {}
    start = time.perf_counter()
    for name in args.settings:
        overrides = SETTINGS[name]
        for seed in args.seeds:
            out = args.out_dir / name.replace(" ", "_").replace(",", "") / f"seed{seed}"
            folder = world(out, seed, args.videos, overrides)
            gt = folder / "ytvis" / "valid.json"
            plain = track_ap(args.checkpoint, out, gt, 1.0, args.threads, options)
            memory = track_ap(args.checkpoint, out, gt, args.lam, args.threads, options)
            gains.setdefault(name, []).append(memory - plain)
            print(f"| {name} | {seed} | {plain:.1f} | {memory:.1f} | {memory - plain:+.1f} |",
                  flush=True)  # fmt: skip
    print("\n| setting | memory - matching, mean | range |")
    print("|---|---:|---|")
    for name, values in gains.items():
        mean = sum(values) / len(values)
        print(f"| {name} | {mean:+.1f} | {min(values):+.1f} .. {max(values):+.1f} |")
    print(f"\n{time.perf_counter() - start:.0f} s wall")


if __name__ == "__main__":
    main()
