"""Train the tag-based model on ground truth, evaluate it and measure what its tags learned.

Usage: ``python benchmarks/bench_tagvis.py WORLD [WORLD ...] [--preset default]
[--variant full ...] [--set key=value ...] [--infer key=value ...] [--out DIR]
[--threads 1]``, each ``WORLD`` made by ``uvis synth WORLD --seed S`` (``--preset default``).

For every world and variant (``--variant`` names a Table III row of ``config.yaml``'s
``tagvis.variants``; default ``full``): trains on ``WORLD/ytvis/train``'s ground truth (as the
paper), runs inference on ``WORLD/ytvis/valid`` twice - the paper's (tags clustered, no
space-time split) and with ``split_components`` - and prints per run:

* training CPU seconds (process time of the training, one thread) and wall seconds;
* YouTube-VIS AP (``uvis.evaluation.ytvis``) and DAVIS J&F (``uvis.evaluation.davis``) of both
  inferences;
* **tag separation** on the valid videos' inference clips, from the ground-truth instance maps:
  for each video the smallest gap between two objects' mean tags (median over videos), and
  the share of object pairs at least ``margin`` apart; and the **spread** (mean standard
  deviation of an object's pixel tags);
* **class accuracy**: share of ground-truth object pixels whose most probable non-background
  class is their class, and the mean probability of the true class on object pixels; and per
  instance (``instances``): share of ground-truth instances whose whole region (in the clip)
  the model names right, with the classifier the inference uses (the instance class head, or
  the mean of the pixel probabilities).

With ``full`` and other variants, a table follows: each ablation's J&F (paper's inference)
minus ``full``'s on every world, and the mean and range of that gap over the worlds (Table
III's ordering; one training per world and variant, so the range across worlds is the spread
to compare the gap with).

``WORLD/{train,valid}.parquet`` (frame indexes) are written if missing. The last line is all
figures as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from uvis.data.ytvis import load_ytvis
from uvis.evaluation.davis import evaluate_folders
from uvis.evaluation.ytvis import evaluate_files
from uvis.inference.videos import frame_index_videos
from uvis.presets import config_from_dict, parse_overrides
from uvis.schemas import FRAME_INDEX
from uvis.tagvis.checkpoint import load_tagvis_model
from uvis.tagvis.clips import inference_frame_indices, read_clip, resize_labels
from uvis.tagvis.config import TagVisConfig
from uvis.tagvis.data import paint_targets, video_targets
from uvis.tagvis.infer import (
    InferenceConfig,
    infer_videos,
    instance_class_scores,
    predict_clip,
)
from uvis.tagvis.train import train_tagvis
from uvis.train import targets_from_ground_truth

ROOT = Path(__file__).resolve().parents[1]


def _frame_index(world: Path, split: str) -> Path:
    path = world / f"{split}.parquet"
    if not path.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "uvis",
                "data",
                "index",
                "--format",
                "ytvis",
                "--json",
                str(world / f"ytvis/{split}.json"),
                "--images",
                str(world / f"ytvis/{split}/JPEGImages"),
                "--out",
                str(path),
            ],
            check=True,
            capture_output=True,
        )
    return path


def _training_set(world: Path, split: str):
    frames = _frame_index(world, split)
    return targets_from_ground_truth(
        FRAME_INDEX.read(frames),
        load_ytvis(world / f"ytvis/{split}.json", world / f"ytvis/{split}/JPEGImages"),
        frames_path=str(frames),
    )


def tag_diagnostics(model: torch.nn.Module, cfg: TagVisConfig, world: Path) -> dict[str, float]:
    """Tag separation and class accuracy on the valid videos' inference clips (see above)."""
    data = _training_set(world, "valid")
    size = (int(cfg.input_size[0]), int(cfg.input_size[1]))
    min_gaps, pairs_ok, pairs, spreads = [], 0, 0, []
    correct, total, true_prob = 0, 0, 0.0
    named, instances = 0, 0  # ground-truth instances whose region the model classifies right
    for video in video_targets(data, cfg.link_iou, cfg.link_gap):
        first = video.frames[0]
        idx = inference_frame_indices(video.length, cfg.clip_frames)
        frames = [video.frames[t] for t in idx]
        clip = read_clip([f.path for f in frames], first.height, first.width, size)
        pred = predict_clip(model, clip)
        inst, sem, tracks = paint_targets(
            frames, [video.tracks[t] for t in idx], (0, first.height, 0, first.width)
        )
        inst, sem = resize_labels(inst, size), resize_labels(sem, size)
        means = []
        for n in range(1, len(tracks) + 1):
            region = inst == n
            values = pred.tags[region]
            if values.size:
                means.append(values.mean())
                spreads.append(values.std())
            if values.size and pred.probs is not None:
                scores = instance_class_scores(pred, region)
                named += int(np.argmax(scores) + 1 == np.bincount(sem[region]).argmax())
                instances += 1
        gaps = [abs(a - b) for a, b in itertools.combinations(means, 2)]
        if gaps:
            min_gaps.append(min(gaps))
            pairs += len(gaps)
            pairs_ok += sum(g >= cfg.margin for g in gaps)
        if pred.probs is not None:
            objects = sem > 0
            best = pred.probs[1:].argmax(axis=0) + 1
            correct += int((best[objects] == sem[objects]).sum())
            total += int(objects.sum())
            true_prob += float(np.take_along_axis(pred.probs, sem[None], 0)[0][objects].sum())
    return {
        "min_gap_median": float(np.median(min_gaps)) if min_gaps else float("nan"),
        "pairs_at_margin": pairs_ok / max(pairs, 1),
        "tag_spread": float(np.mean(spreads)) if spreads else float("nan"),
        "class_accuracy": correct / total if total else float("nan"),
        "true_class_prob": true_prob / total if total else float("nan"),
        "instance_class_accuracy": named / instances if instances else float("nan"),
    }


def evaluate(ckpt: Path, world: Path, out: Path, infer: dict[str, Any]) -> dict[str, float]:
    """AP and J&F of one inference setting."""
    model, meta = load_tagvis_model(ckpt)
    results, davis = out / "results.json", out / "davis"
    infer_videos(
        model,
        meta,
        frame_index_videos(_frame_index(world, "valid")),
        config_from_dict(InferenceConfig, infer, what="tagvis inference"),
        results_path=results,
        davis_dir=davis,
        progress=False,
    )
    ap = evaluate_files(world / "ytvis/valid.json", results)
    jf = evaluate_folders(world / "davis/Annotations_unsupervised/480p", davis)
    return {"AP": ap["AP"], "AP50": ap["AP50"], "JF": jf["JF"]}


def run(
    world: Path, variant: str, preset: str, sets: dict[str, Any], infer: dict[str, Any], out: Path
) -> dict[str, Any]:
    variants = yaml.safe_load((ROOT / "config.yaml").read_text())["tagvis"]["variants"]
    cfg = TagVisConfig.preset(preset, **{**sets, **(variants[variant] or {})})
    data = _training_set(world, "train")
    began, cpu = time.perf_counter(), time.process_time()
    result = train_tagvis(data, cfg, out / "model", progress=False, stale="restart")
    row: dict[str, Any] = {
        "world": world.name,
        "variant": variant,
        "steps": result.iteration,
        "train_cpu_s": round(time.process_time() - cpu, 1),
        "train_wall_s": round(time.perf_counter() - began, 1),
        "loss_end": {k: round(v, 3) for k, v in result.metrics[-1].items()},
    }
    model, _ = load_tagvis_model(result.final or out / "model/model_final.pth")
    row.update(tag_diagnostics(model, cfg, world))
    for name, split in (("tags", False), ("split", True)):
        figures = evaluate(
            out / "model/model_final.pth", world, out / name, {**infer, "split_components": split}
        )
        row.update({f"{k}_{name}": round(v, 2) for k, v in figures.items()})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("worlds", nargs="+", type=Path)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--variant", action="append", default=None)
    parser.add_argument("--set", action="append", default=[], help="TagVisConfig override")
    parser.add_argument("--infer", action="append", default=[], help="InferenceConfig override")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_tagvis"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sets = {**parse_overrides(args.set), "num_threads": args.threads}
    infer = parse_overrides(args.infer)
    rows = []
    for world, variant in itertools.product(args.worlds, args.variant or ["full"]):
        row = run(world, variant, args.preset, sets, infer, args.out / world.name / variant)
        rows.append(row)
        print(
            f"{world.name} {variant}: {row['steps']} steps, train {row['train_cpu_s']} CPU-s "
            f"({row['train_wall_s']} s wall) | tags only: J&F {row['JF_tags']:.1f} AP "
            f"{row['AP_tags']:.1f} | split: J&F {row['JF_split']:.1f} AP {row['AP_split']:.1f} | "
            f"min gap {row['min_gap_median']:.2f}, pairs >= G {row['pairs_at_margin']:.2f}, "
            f"spread {row['tag_spread']:.2f} | class acc {row['class_accuracy']:.2f}, "
            f"p(true) {row['true_class_prob']:.2f}, instances {row['instance_class_accuracy']:.2f}",
            flush=True,
        )
    gaps = ablation_gaps(rows)
    if gaps:
        print("ablation | J&F minus full per world | mean gap | range")
        for variant, per_world in gaps.items():
            values = list(per_world.values())
            cells = ", ".join(f"{w} {g:+.1f}" for w, g in per_world.items())
            print(
                f"{variant} | {cells} | {np.mean(values):+.1f} | "
                f"{min(values):+.1f} .. {max(values):+.1f}"
            )
    print(json.dumps(rows))


def ablation_gaps(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """J&F (paper's inference) of each non-``full`` variant minus ``full``'s, per world."""
    full = {r["world"]: r["JF_tags"] for r in rows if r["variant"] == "full"}
    gaps: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["variant"] != "full" and r["world"] in full:
            gaps.setdefault(r["variant"], {})[r["world"]] = r["JF_tags"] - full[r["world"]]
    return gaps


if __name__ == "__main__":
    main()
