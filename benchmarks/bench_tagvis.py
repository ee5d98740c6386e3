"""Train the tag-based model on ground truth, evaluate it and measure what its tags learned.

Usage: ``python benchmarks/bench_tagvis.py WORLD [WORLD ...] [--preset default]
[--variant full ...] [--seeds 0 [1 ...]] [--jobs 1] [--set key=value ...]
[--infer key=value ...] [--no-split] [--out DIR] [--threads 1] [--report-only]``, each
``WORLD`` made by ``uvis synth WORLD --seed S`` (``--preset default``).

For every world, variant (``--variant`` names a Table III row of ``config.yaml``'s
``tagvis.variants``; default ``full``) and training seed (``--seeds``, the ``seed`` of
:class:`~uvis.tagvis.config.TagVisConfig`; default 0): trains on ``WORLD/ytvis/train``'s ground
truth (as the paper), runs inference on ``WORLD/ytvis/valid`` twice - the paper's (tags
clustered, no space-time split) and with ``split_components`` (``--no-split``: only the first) -
with ``config.yaml``'s ``tagvis.inference`` updated by ``--infer``, and prints per run:

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

``--jobs N`` runs N trainings at once in separate processes (``--threads`` each), seed by seed,
so that a stopped run has whole rounds. Each finished run is appended to ``OUT/runs.jsonl``; a
rerun with the same ``OUT`` skips the (world, variant, seed) runs found there and reports them
(``--report-only``: reports them and trains nothing).

With ``full`` and other variants, Table III follows (:func:`table3`): per world, each row's
J&F (paper's inference) as the mean and range over its training seeds, and each ablation's gap
to ``full`` (difference of the means). An ablation is below ``full`` **beyond the spread** on
a world when ``full``'s mean exceeds its mean by more than the larger of the two rows' ranges
over training seeds (the issue's bar; it needs at least two seeds per row). The standard error
of the gap (from the pooled per-row standard deviation) is printed beside it.

``WORLD/{train,valid}.parquet`` (frame indexes) are written if missing. The last line is all
figures as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
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
    world: Path,
    variant: str,
    seed: int,
    preset: str,
    sets: dict[str, Any],
    variant_sets: dict[str, Any],
    infer: dict[str, Any],
    split: bool,
    out: Path,
) -> dict[str, Any]:
    """Train one (world, variant, training seed) and measure it; the figures as a row.

    ``variant_sets`` are the variant's settings (``config.yaml``'s ``tagvis.variants``).
    """
    torch.set_num_threads(int(sets.get("num_threads", 1)))
    cfg = TagVisConfig.preset(preset, **{**sets, "seed": seed, **variant_sets})
    data = _training_set(world, "train")
    began, cpu = time.perf_counter(), time.process_time()
    result = train_tagvis(data, cfg, out / "model", progress=False, stale="restart")
    row: dict[str, Any] = {
        "world": world.name,
        "variant": variant,
        "seed": seed,
        "steps": result.iteration,
        "train_cpu_s": round(time.process_time() - cpu, 1),
        "train_wall_s": round(time.perf_counter() - began, 1),
        "loss_end": {k: round(v, 3) for k, v in result.metrics[-1].items()},
    }
    model, _ = load_tagvis_model(result.final or out / "model/model_final.pth")
    row.update(tag_diagnostics(model, cfg, world))
    for name, split_components in (("tags", False), ("split", True))[: 2 if split else 1]:
        figures = evaluate(
            out / "model/model_final.pth",
            world,
            out / name,
            {**infer, "split_components": split_components},
        )
        row.update({f"{k}_{name}": round(v, 2) for k, v in figures.items()})
    return row


def _describe(row: dict[str, Any]) -> str:
    split = (
        f" | split: J&F {row['JF_split']:.1f} AP {row['AP_split']:.1f}" if "JF_split" in row else ""
    )
    return (
        f"{row['world']} {row['variant']} seed {row['seed']}: {row['steps']} steps, train "
        f"{row['train_cpu_s']} CPU-s ({row['train_wall_s']} s wall) | tags only: J&F "
        f"{row['JF_tags']:.1f} AP {row['AP_tags']:.1f}{split} | min gap "
        f"{row['min_gap_median']:.2f}, pairs >= G {row['pairs_at_margin']:.2f}, spread "
        f"{row['tag_spread']:.2f} | class acc {row['class_accuracy']:.2f}, p(true) "
        f"{row['true_class_prob']:.2f}, instances {row['instance_class_accuracy']:.2f}"
    )


def _done_runs(path: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Rows of an earlier run with the same ``--out`` (``runs.jsonl``), by (world, variant, seed).

    A line that is not a whole row (a run killed while writing it) is reported and skipped: that
    run is trained again.
    """
    done: dict[tuple[str, str, int], dict[str, Any]] = {}
    if path.exists():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                done[(row["world"], row["variant"], int(row.get("seed", 0)))] = row
            except (ValueError, KeyError, TypeError):
                print(f"{path}:{number}: not a whole run, skipped (it runs again)", flush=True)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("worlds", nargs="+", type=Path)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--variant", action="append", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once")
    parser.add_argument("--set", action="append", default=[], help="TagVisConfig override")
    parser.add_argument("--infer", action="append", default=[], help="InferenceConfig override")
    parser.add_argument("--split", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_tagvis"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--report-only", action="store_true", help="no training: the runs in OUT/runs.jsonl"
    )
    args = parser.parse_args()
    sets = {**parse_overrides(args.set), "num_threads": args.threads}
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    unknown = sorted(set(args.variant or []) - set(config["tagvis"]["variants"]))
    if unknown:
        parser.error(f"--variant {', '.join(unknown)}: not in config.yaml's tagvis.variants")
    infer = {**(config["tagvis"].get("inference") or {}), **parse_overrides(args.infer)}
    for world in args.worlds:  # made once here, not by the workers at the same time
        _frame_index(world, "train")
        _frame_index(world, "valid")
    log = args.out / "runs.jsonl"
    done = _done_runs(log)
    plan = [
        (world, variant, seed)
        for seed in args.seeds
        for world in args.worlds
        for variant in args.variant or ["full"]
    ]
    rows, todo = [], []
    for world, variant, seed in plan:
        row = done.get((world.name, variant, seed))
        if row is not None:
            rows.append(row)
            print(f"(from {log}) {_describe(row)}", flush=True)
        elif not args.report_only:
            todo.append((world, variant, seed))
    log.parent.mkdir(parents=True, exist_ok=True)
    if log.exists() and not log.read_bytes().endswith(b"\n") and log.stat().st_size:
        with log.open("a") as f:  # a partial last line stays a line of its own
            f.write("\n")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(args.jobs, 1), mp_context=context) as pool:
        futures = {
            pool.submit(
                run,
                world,
                variant,
                seed,
                args.preset,
                sets,
                config["tagvis"]["variants"][variant] or {},
                infer,
                args.split,
                args.out / world.name / variant / f"seed{seed}",
            ): (world, variant, seed)
            for world, variant, seed in todo
        }
        for future in as_completed(futures):
            row = future.result()
            rows.append(row)
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(_describe(row), flush=True)
    summary = table3(rows)
    if summary:
        print(
            "world | ablation | J&F mean (range) over seeds | full's | gap of means +- s.e. | "
            "beyond spread"
        )
        for line in summary:
            print(
                f"{line['world']} | {line['variant']} | {line['mean']:.1f} "
                f"({line['min']:.1f}..{line['max']:.1f}, n={line['n']}) | "
                f"{line['full_mean']:.1f} ({line['full_min']:.1f}..{line['full_max']:.1f}, "
                f"n={line['full_n']}) | {line['gap']:+.1f} +- {line['se']:.1f} | "
                f"{'yes' if line['beyond_spread'] else 'no'}"
            )
    print(json.dumps({"runs": rows, "table3": summary}))


def table3(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table III per world: each ablation's J&F over training seeds against ``full``'s.

    ``gap`` is the ablation's mean J&F (paper's inference) minus ``full``'s; ``se`` its standard
    error from the pooled standard deviation of one training (over every (world, variant) with
    two or more seeds; NaN if none has); ``beyond_spread``: ``full``'s mean exceeds the
    ablation's by more than the larger of the two rows' ranges, with two or more seeds in each.
    """
    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        groups.setdefault((r["world"], r["variant"]), []).append(float(r["JF_tags"]))
    squares = sum(float(np.sum((np.array(v) - np.mean(v)) ** 2)) for v in groups.values())
    dof = sum(len(v) - 1 for v in groups.values())
    sd = float(np.sqrt(squares / dof)) if dof else float("nan")
    lines = []
    for (world, variant), values in groups.items():
        full = groups.get((world, "full"))
        if variant == "full" or not full:
            continue
        spread = max(max(values) - min(values), max(full) - min(full))
        gap = float(np.mean(values) - np.mean(full))
        lines.append(
            {
                "world": world,
                "variant": variant,
                "n": len(values),
                "mean": float(np.mean(values)),
                "min": min(values),
                "max": max(values),
                "full_n": len(full),
                "full_mean": float(np.mean(full)),
                "full_min": min(full),
                "full_max": max(full),
                "gap": gap,
                "se": sd * float(np.sqrt(1 / len(values) + 1 / len(full))),
                "beyond_spread": len(values) >= 2 and len(full) >= 2 and -gap > spread,
            }
        )
    return lines


if __name__ == "__main__":
    main()
