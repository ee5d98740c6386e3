"""Time the VIS model's training and sanity-check what it learned, on a synthetic world.

Usage: ``python benchmarks/bench_train.py WORLD [--model uvis-tiny] [--preset default]
[--set key=value ...] [--iterations N] [--threads 1] [--out DIR] [--eval-frames 64]``, with
``WORLD`` made by ``uvis synth WORLD --preset default``.

Trains on the ground truth of ``WORLD/ytvis/train`` (the supervised setting, so this measures
the model and the recipe, not the pseudo-labels) and prints: seconds per iteration (the mean
after the first logged window, which includes warm-up), the loss curve's first and last
points, peak resident memory of the process (and peak CUDA memory on a GPU).

Then, on ``--eval-frames`` frames of ``WORLD/ytvis/valid`` spread over its videos (0: skip),
a quick check that needs no tracking: for every visible ground-truth mask, the best IoU of any
query's mask (sigmoid > 0.5, resized to the frame) - the *oracle* mean IoU, which says whether
the queries segment the objects at all - the share of ground-truth masks whose best query
predicts the right class, and the recall and precision at IoU 0.5 of the *confident* queries
(top class probability >= 0.5), matched one-to-one per frame (Hungarian on IoU).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from uvis import masks
from uvis.data.frames import read_frame
from uvis.data.ytvis import load_ytvis
from uvis.model import load_vis_model, predict_frames
from uvis.presets import parse_overrides
from uvis.train import TrainConfig, targets_from_ground_truth, train_vis


def _valid_frames(world: Path, count: int) -> list[tuple[np.ndarray, list[np.ndarray], list[int]]]:
    """``count`` valid frames spread over the videos: image, GT masks, GT category ids."""
    data = load_ytvis(world / "ytvis/valid.json", world / "ytvis/valid/JPEGImages")
    keys = [(v.id, t) for v in data.videos for t in range(len(v.frame_paths))]
    picked = [keys[i] for i in np.linspace(0, len(keys) - 1, count).round().astype(int)]
    videos = {v.id: v for v in data.videos}
    frames = []
    for vid, t in picked:
        video = videos[vid]
        gts = [
            (masks.decode(inst.segmentations[t]), inst.category_id)
            for inst in data.instances or ()
            if inst.video_id == vid and inst.segmentations[t] is not None
        ]
        image = read_frame(video.frame_paths[t], video.height, video.width)
        frames.append((image, [m for m, _ in gts], [c for _, c in gts]))
    return frames


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boolean masks ``a`` (N, HW) and ``b`` (M, HW)."""
    inter = a.astype(np.float32) @ b.astype(np.float32).T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def sanity(checkpoint: Path, world: Path, count: int) -> dict[str, float]:
    """The no-tracking quality numbers described in the module docstring."""
    model, meta = load_vis_model(checkpoint)
    frames = _valid_frames(world, count)
    outputs = predict_frames(model, [f[0] for f in frames], batch_size=8)
    best_ious, right_class, matched, confident, gt_total = [], [], 0, 0, 0
    for (image, gt_masks, gt_classes), out in zip(frames, outputs, strict=True):
        if not gt_masks:
            continue
        logits = torch.from_numpy(out.mask_logits)[None]
        full = F.interpolate(logits, size=image.shape[:2], mode="bilinear", align_corners=False)
        pred = (full[0] > 0).numpy().reshape(out.num_queries, -1)
        gt = np.stack(gt_masks).reshape(len(gt_masks), -1).astype(bool)
        iou = _iou(gt, pred)
        best = iou.argmax(axis=1)
        best_ious += iou.max(axis=1).tolist()
        probs = torch.from_numpy(out.class_logits).softmax(-1)[:, :-1].numpy()
        classes = np.asarray(meta.category_ids)[probs.argmax(1)]
        right_class += (classes[best] == np.asarray(gt_classes)).tolist()
        sure = np.flatnonzero(probs.max(1) >= 0.5)
        confident += len(sure)
        gt_total += len(gt_masks)
        if len(sure):
            rows, cols = linear_sum_assignment(-iou[:, sure])
            matched += int((iou[rows, sure[cols]] >= 0.5).sum())
    return {
        "frames": len(frames),
        "gt_masks": gt_total,
        "oracle_mean_iou": float(np.mean(best_ious)),
        "best_query_class_accuracy": float(np.mean(right_class)),
        "confident_queries_per_frame": confident / len(frames),
        "recall_at_0.5": matched / max(gt_total, 1),
        "precision_at_0.5": matched / max(confident, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("world", type=Path)
    parser.add_argument("--model", default=None, help="default: the preset's")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--iterations", type=int, help="default: the preset's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="output folder (default: a temporary one)")
    parser.add_argument("--eval-frames", type=int, default=64)
    args = parser.parse_args()

    overrides = parse_overrides(args.set) | {"num_threads": args.threads}
    if args.model:
        overrides["model"] = args.model
    if args.iterations:
        overrides["iterations"] = args.iterations
    cfg = TrainConfig.preset(args.preset, **overrides)
    world = args.world
    dataset = load_ytvis(world / "ytvis/train.json", world / "ytvis/train/JPEGImages")
    data = targets_from_ground_truth(dataset.frame_index(), dataset)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        result = train_vis(data, cfg, out, progress=False)
        rows = result.metrics
        steady = rows[1:] or rows
        spi = sum(r["seconds_per_iteration"] for r in steady) / len(steady)
        print(
            f"{cfg.model} preset {args.preset}: {cfg.iterations} iterations of "
            f"{cfg.batch_size} images, {torch.get_num_threads()} thread(s), "
            f"{result.seconds:.1f} s in all, {spi:.3f} s/iteration"
        )
        print(
            f"loss {rows[0]['loss']:.3f} (first {cfg.log_period} iterations) -> "
            f"{rows[-1]['loss']:.3f} (last {cfg.log_period}); class "
            f"{rows[0]['loss_cross_entropy']:.3f} -> {rows[-1]['loss_cross_entropy']:.3f}, "
            f"mask {rows[0]['loss_mask']:.3f} -> {rows[-1]['loss_mask']:.3f}, "
            f"dice {rows[0]['loss_dice']:.3f} -> {rows[-1]['loss_dice']:.3f}"
        )
        peak = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
        if torch.cuda.is_available():
            peak += f", peak CUDA {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
        print(peak)
        if args.eval_frames and result.final is not None:
            numbers = sanity(result.final, world, args.eval_frames)
            print(
                ", ".join(
                    f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in numbers.items()
                )
            )


if __name__ == "__main__":
    main()
