"""Learning curve of the VIS model on ground truth: YouTube-VIS AP against iterations and time.

Usage: ``python benchmarks/bench_vis_curve.py WORLD [--train-videos N] [--preset default]
[--set key=value ...] [--iterations N] [--eval-every K] [--backbone-weights FILE]
[--lam 1.0] [--refine none|bilateral] [--out DIR]``, ``WORLD`` made by ``uvis synth`` (e.g.
``uvis synth w --seed 1 --set num_train_videos=600``: a world's videos do not change when more
are added, so its valid split is the same whatever ``num_train_videos``).

Trains the supervised run (:func:`uvis.train.train_vis` on the ground truth of the first
``--train-videos`` videos of ``WORLD/ytvis/train``, all by default; with ``--frame-stride k``
only every k-th frame of each) with a checkpoint every
``--eval-every`` iterations, then tracks ``WORLD/ytvis/valid`` with every checkpoint as the
pipeline's ``track_vis`` rule does (``--lam 1``: MinVIS matching, the upper bound's row of UVIS
Table 1; top-k 10) and evaluates it with ``uvis eval ytvis``. Prints one row per checkpoint:
iteration, training wall seconds so far (from the loss curve's seconds per iteration), CPU
seconds so far (the run's CPU time per iteration times the iteration: on a shared machine the
wall time says more about the other jobs than about the recipe), AP, AP50,
AP75, AR10 and the last-layer class loss of the training window ending there; with
``--set ema_decay=D`` a last row, iteration -1, is the final model (the weights' average), the
row before it the trained weights of the same step. Checkpoints
before the end are those of the same run before its learning-rate drop, so the curve is that of
one run of ``--iterations``, not of shorter runs.

Never tune on the default world's (seed 0) valid split: use a world of another seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from uvis.data.frames import write_frame_index
from uvis.data.ytvis import load_ytvis
from uvis.engine.run_folder import RunFolder
from uvis.evaluation.ytvis import evaluate_files
from uvis.inference import frame_index_videos, track_videos
from uvis.model import load_vis_model
from uvis.presets import parse_overrides
from uvis.proposals.refine import REFINE_METHODS, RefineMethod
from uvis.train import TrainConfig, targets_from_ground_truth, train_vis


def curve_rows(
    out: Path,
    world: Path,
    frames: Path,
    *,
    lam: float,
    top_k: int = 10,
    refine: RefineMethod = "none",
    final: bool = False,
) -> list[dict[str, float]]:
    """AP of every checkpoint in ``out`` on ``WORLD/ytvis/valid``; with ``final`` also of the
    final model (a run with ``ema_decay`` saves the weights' average there), as iteration -1."""
    metrics = {
        int(float(r["iteration"])): r for r in json.loads((out / "metrics.json").read_text())
    }
    seconds, elapsed = {}, 0.0
    previous = 0
    for it in sorted(metrics):
        elapsed += float(metrics[it]["seconds_per_iteration"]) * (it - previous)
        seconds[it] = elapsed
        previous = it
    rows = []
    videos = frame_index_videos(frames)
    models = RunFolder(out).checkpoints()
    if final:
        models.append((-1, out / "model_final.pth"))
    for iteration, path in models:
        model, meta = load_vis_model(path)
        results = out / f"results_{iteration}.json"
        track_videos(
            model,
            videos,
            results,
            category_ids=meta.category_ids,
            lam=lam,
            top_k=top_k,
            progress=False,
            refine=refine,
        )
        m = evaluate_files(world / "ytvis/valid.json", results)
        step = iteration if iteration >= 0 else max(metrics)  # the final model: the last step
        logged = metrics.get(step, {})
        rows.append(
            {
                "iteration": iteration,
                "seconds": seconds.get(step, float("nan")),
                "AP": m["AP"],
                "AP50": m["AP50"],
                "AP75": m["AP75"],
                "AR10": m["AR10"],
                "class_loss": float(logged.get("loss_cross_entropy", float("nan"))),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("world", type=Path)
    parser.add_argument("--train-videos", type=int, help="first N train videos (default: all)")
    parser.add_argument(
        "--frame-stride", type=int, default=1, help="train on every k-th frame of each video"
    )
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--iterations", type=int, help="default: the preset's")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--backbone-weights", help="backbone init (uvis pretrain backbone)")
    parser.add_argument("--lam", type=float, default=1.0, help="tracking memory weight")
    parser.add_argument(
        "--refine",
        choices=REFINE_METHODS,
        default="none",
        help="output mask refinement before tracking (the pipeline's tracking.refine)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="output folder (default: a temporary one)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    overrides = parse_overrides(args.set) | {"num_threads": args.threads}
    if args.iterations:
        overrides["iterations"] = args.iterations
    if args.backbone_weights:
        overrides["backbone_weights"] = args.backbone_weights
    overrides |= {
        "checkpoint_period": args.eval_every,
        "keep_checkpoints": 0,
        "log_period": args.eval_every,
    }
    cfg = TrainConfig.preset(args.preset, **overrides)
    world = args.world
    train = load_ytvis(world / "ytvis/train.json", world / "ytvis/train/JPEGImages")
    data = targets_from_ground_truth(train.frame_index(), train)
    video_ids = sorted({f.video_id for f in data.frames})
    keep = set(video_ids[: args.train_videos] if args.train_videos else video_ids)
    data = dataclasses.replace(
        data,
        frames=tuple(
            f for f in data.frames if f.video_id in keep and f.frame_index % args.frame_stride == 0
        ),
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        began, cpu_began = time.perf_counter(), time.process_time()
        result = train_vis(data, cfg, out, progress=False)
        train_seconds = time.perf_counter() - began
        cpu_per_iteration = (time.process_time() - cpu_began) / cfg.iterations
        (out / "metrics.json").write_text(json.dumps(result.metrics))
        frames = out / "valid_frames.parquet"
        write_frame_index(
            load_ytvis(world / "ytvis/valid.json", world / "ytvis/valid/JPEGImages"), frames
        )
        began = time.perf_counter()
        rows = curve_rows(
            out, world, frames, lam=args.lam, refine=args.refine, final=cfg.ema_decay > 0
        )
        eval_seconds = time.perf_counter() - began
    print(
        f"{cfg.model} {cfg.model_overrides or ''} on {world} ({len(keep)} train videos, "
        f"{len(data.frames)} frames), {cfg.iterations} iterations of {cfg.batch_size}, "
        f"lr {cfg.lr:g}; train {train_seconds:.0f} s wall, {cpu_per_iteration * 1000:.0f} ms CPU "
        f"per iteration; eval {eval_seconds:.0f} s"
    )
    print(f"settings: {json.dumps(overrides, default=str)}")
    print(
        f"{'iteration':>9s} {'seconds':>8s} {'AP':>6s} {'AP50':>6s} {'AP75':>6s} "
        f"{'AR10':>6s} {'cls loss':>8s}"
    )
    for r in rows:
        print(
            f"{r['iteration']:9d} {r['seconds']:8.0f} {r['AP']:6.1f} {r['AP50']:6.1f} "
            f"{r['AP75']:6.1f} {r['AR10']:6.1f} {r['class_loss']:8.3f}"
        )


if __name__ == "__main__":
    main()
