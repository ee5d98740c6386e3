"""Quality and cost of the embedded foundation-model stand-ins (issue 12).

Usage (one thread; the world is any ``uvis synth`` output folder)::

    python benchmarks/bench_standins.py dino WORLD [--set KEY=VALUE ...] [--out CKPT.pth]
        [--save-every EPOCHS]
    python benchmarks/bench_standins.py maskcut WORLD --weights CKPT.pth ... [--split train]
        [--tau 0.15] [--num-masks 3] [--input-short N] [--frame-stride 4]
    python benchmarks/bench_standins.py keys WORLD --weights CKPT.pth ... [--split train]
        [--input-short N] [--frame-stride 4]
    python benchmarks/bench_standins.py knn WORLD --weights CKPT.pth ...
    python benchmarks/bench_standins.py clip WORLD [--set KEY=VALUE ...] [--out CKPT.pt]
    python benchmarks/bench_standins.py detector RESULTS [--set KEY=VALUE ...] [--out CKPT.pth]
        [--video-stride 25]
    python benchmarks/bench_standins.py score RESULTS [--stage maskcut] [--split train]
        [--frame-stride 8] [--min-objectness 0.7]

``dino`` trains the DINO stand-in exactly as the ``pretrain_ssl`` rule does (the ``--preset``, the
pipeline config's ``arch``/``arch_kwargs`` unless the preset or ``--set`` names them) on
``WORLD/corpora/unlabeled`` and prints the k-NN shape accuracy of the trained teacher and of its
random initialisation (on held-out corpus images) and the CPU time. ``--save-every N`` also saves
the teacher backbone every ``N`` epochs next to ``--out`` (``CKPT_e016.pth``, ...), for MaskCut
along the run.

``maskcut`` runs MaskCut on every ``--frame-stride``-th frame of a split with the keys of each
given checkpoint and, for contrast (unless ``--no-random-init``), of the first one's
architecture at its random initialisation, and prints class-agnostic recall and precision at
IoU 0.5 (one-to-one per frame, as :mod:`uvis.pseudo.quality`). Tune MaskCut on the train
split only. ``keys`` prints, for the same checkpoints and frames, the mean cosine similarity
of the keys between object patches, interior background patches and the grid's border ring
(:func:`key_cosines`): what MaskCut's affinity graph sees. ``knn`` prints the k-NN shape
accuracy of each checkpoint as ``pretrain_ssl``'s report does (held-out corpus images).

``detector`` trains the class-agnostic detector (the default preset with ``--set`` overrides) on
the MaskCut train-split shards of a finished run (``RESULTS`` is its ``results/synth`` folder),
as the ``train_detector`` rule does, then detects on every ``--video-stride``-th *train* video
and prints class-agnostic recall and precision at IoU 0.5 for several objectness thresholds
(the ``filter`` stage keeps objectness >= 0.7). An existing ``--out`` checkpoint is evaluated
without retraining.

``score`` reads a finished run's MaskCut masks (``--stage maskcut``) or detections
(``--stage proposals``) of one split and prints their class-agnostic recall and precision on
every ``--frame-stride``-th frame of each video (the frames MaskCut segmented when the run's
``proposals.maskcut.frame_stride`` is given), keeping detections with objectness >=
``--min-objectness``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from uvis.data.frames import read_frame
from uvis.data.ytvis import load_ytvis
from uvis.foundation.ssl import cls_features, last_block_keys, normalise_images, patch_size_of
from uvis.io import atomic_write_json
from uvis.masks import to_coco
from uvis.presets import parse_overrides
from uvis.proposals.maskcut import MaskCutConfig, maskcut
from uvis.proposals.stage import model_input_size
from uvis.pseudo.quality import match_frame
from uvis.standins.dino import (
    DinoConfig,
    DinoNetwork,
    initial_network,
    knn_accuracy,
    load_unlabeled_corpus,
    probe_inputs,
    save_dino_checkpoint,
    train_dino,
)
from uvis.standins.dino.config import PRESETS as DINO_PRESETS


def _pipeline_arch() -> dict[str, Any]:
    """The pipeline's ``ssl`` block (config.yaml): the architecture ``pretrain_ssl`` trains and
    MaskCut loads, as ``{"arch": ..., "arch_kwargs": ...}``."""
    import yaml

    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8"))
    return {"arch": cfg["ssl"]["arch"], "arch_kwargs": dict(cfg["ssl"]["arch_kwargs"])}


def run_dino(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if "arch" not in DINO_PRESETS.get(args.preset, {}):  # the preset's own architecture, if any
        overrides = _pipeline_arch()
    overrides.update(parse_overrides(args.set))
    cfg = DinoConfig.preset(args.preset, **overrides)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save_along(record: dict[str, Any], teacher: DinoNetwork) -> None:
        if args.save_every and record["epoch"] % args.save_every == 0:
            path = out.with_name(f"{out.stem}_e{record['epoch']:03d}.pth")
            save_dino_checkpoint(teacher.backbone, path)
            sidecar = {"arch": cfg.arch, "arch_kwargs": cfg.arch_kwargs, "config": cfg.to_dict()}
            atomic_write_json(path.with_suffix(".json"), {**sidecar, "epoch": record["epoch"]})

    cpu = time.process_time()
    report = train_dino(
        Path(args.world) / "corpora" / "unlabeled", out, cfg, progress=False, on_epoch=save_along
    )
    cpu = time.process_time() - cpu
    probe = report["knn_probe"]
    losses = " ".join(f"{e['loss']:.3f}" for e in report["training"]["epochs"])
    print(
        f"dino {args.world}: k-NN shape accuracy trained {probe['accuracy_trained']:.3f}, "
        f"random init {probe['accuracy_random_init']:.3f} (chance {probe['chance_accuracy']:.2f}); "
        f"training {report['training']['cpu_seconds']:.0f} CPU-s, total {cpu:.0f} CPU-s "
        f"({torch.get_num_threads()} thread); losses {losses}"
    )
    return report


def _gt_by_frame(world: Path, split: str) -> tuple[Any, dict[tuple[int, int], list[dict]]]:
    data = load_ytvis(world / "ytvis" / f"{split}.json", world / "ytvis" / split / "JPEGImages")
    gts: dict[tuple[int, int], list[dict]] = {}
    for inst in data.instances or ():
        for t, seg in enumerate(inst.segmentations):
            if seg is not None and not inst.iscrowd:
                gts.setdefault((inst.video_id, t), []).append(to_coco(seg))
    return data, gts


#: Object-size buckets of the recall breakdown: upper bounds on the object's share of its frame.
SIZE_BUCKETS = ((0.01, "< 1 %"), (0.03, "1-3 %"), (0.1, "3-10 %"), (1.0, ">= 10 %"))


@dataclass
class Tally:
    """Counts of one scoring: GT masks, proposals, one-to-one matches at IoU 0.5, per object-size
    bucket ``[GT, matched, best IoU with any proposal in 0.3-0.5]``."""

    n_gt: int = 0
    n_prop: int = 0
    n_match: int = 0
    by_size: dict[str, list[int]] = field(
        default_factory=lambda: {name: [0, 0, 0] for _, name in SIZE_BUCKETS}
    )

    def lines(self) -> list[str]:
        """The per-size breakdown, one line per bucket that holds objects."""
        return [
            f"  objects {name} of the frame: {gt} GT, recall {hit / gt:.3f}, "
            f"{near / gt:.3f} of them best matched at IoU 0.3-0.5 only"
            for name, (gt, hit, near) in self.by_size.items()
            if gt
        ]


def _score_frames(
    props: dict[str, list], frames: set[tuple[int, int]], gts: dict, min_objectness: float
) -> Tally:
    """The :class:`Tally` of the proposal rows (a ``PROPOSALS`` table as a dict of columns) with
    objectness >= ``min_objectness`` over ``frames``; rows without objectness (raw MaskCut
    masks) always count."""
    rows_of: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(zip(props["video_id"], props["frame_index"], strict=True)):
        score = props["objectness"][i]
        if score is None or score >= min_objectness:
            rows_of.setdefault(key, []).append(i)
    tally = Tally()
    for key in frames:
        rles = [
            {"size": [props["height"][i], props["width"][i]], "counts": props["rle"][i]}
            for i in rows_of.get(key, [])
        ]
        frame_gts = gts.get(key, [])
        tally.n_gt, tally.n_prop = tally.n_gt + len(frame_gts), tally.n_prop + len(rles)
        matched = {g for g, _ in match_frame(frame_gts, rles, 0.5)}
        tally.n_match += len(matched)
        best = np.zeros(len(frame_gts))
        if rles and frame_gts:
            iou = np.asarray(mask_utils.iou(rles, frame_gts, [0] * len(frame_gts)))
            best = iou.reshape(len(rles), len(frame_gts)).max(0)
        for g, gt in enumerate(frame_gts):
            share = mask_utils.area(gt) / float(gt["size"][0] * gt["size"][1])
            name = next(n for bound, n in SIZE_BUCKETS if share < bound or bound == 1.0)
            counts = tally.by_size[name]
            counts[0] += 1
            counts[1] += g in matched
            counts[2] += g not in matched and 0.3 <= best[g] < 0.5
    return tally


def _frame_keys(
    model: torch.nn.Module, video: Any, paths: list[Path], input_short: int | None
) -> tuple[np.ndarray, Any]:
    """The frames at MaskCut's input size ``(T, h, w, 3)`` and the model's last-block keys."""
    in_h, in_w = model_input_size(video.height, video.width, patch_size_of(model)[0], input_short)
    resized = []
    for path in paths:
        img = read_frame(path, video.height, video.width)
        if img.shape[:2] != (in_h, in_w):
            img = np.asarray(Image.fromarray(img).resize((in_w, in_h), Image.BICUBIC))
        resized.append(img)
    stack = np.stack(resized)
    with torch.no_grad():
        keys = last_block_keys(model, normalise_images(torch.from_numpy(stack).permute(0, 3, 1, 2)))
    return stack, keys


def key_cosines(
    model: torch.nn.Module, world: Path, split: str, *, frame_stride: int, input_short: int | None
) -> dict[str, float]:
    """Mean cosine similarity of last-block keys between groups of patches, over every
    ``frame_stride``-th frame: object patches (GT masks, any instance), background patches
    inside the grid, and background patches on the grid's border ring. MaskCut needs objects
    apart from background (``object-background`` low) and the background in one piece
    (``ring-interior`` as high as ``interior-interior``)."""
    data, gts = _gt_by_frame(world, split)
    sums: dict[str, list[float]] = {}
    for video in data.videos:
        frames = list(enumerate(video.frame_paths))[::frame_stride]
        _, keys = _frame_keys(model, video, [p for _, p in frames], input_short)
        h, w = keys.grid_hw
        ring = np.zeros((h, w), bool)
        ring[[0, -1]] = ring[:, [0, -1]] = True
        for (t, _), k in zip(frames, keys.keys.float(), strict=True):
            obj = np.zeros((h, w), bool)
            for g in gts.get((video.id, t), []):
                m = Image.fromarray(mask_utils.decode(g).astype(np.float32)).resize((w, h))
                obj |= np.asarray(m) > 0.5
            groups = {
                "object": obj.ravel(),
                "interior": (~obj & ~ring).ravel(),
                "ring": (~obj & ring).ravel(),
            }
            if min(int(g.sum()) for g in groups.values()) < 2:
                continue
            k = torch.nn.functional.normalize(k, dim=-1)
            cos = (k @ k.T).numpy()
            for a, b in (("object", "object"), ("object", "interior"), ("interior", "interior"),
                         ("ring", "ring"), ("ring", "interior")):  # fmt: skip
                value = float(cos[groups[a]][:, groups[b]].mean())
                sums.setdefault(f"{a}-{b}", []).append(value)
    return {name: float(np.mean(v)) for name, v in sums.items()} | {
        "frames": len(next(iter(sums.values()), []))
    }


def maskcut_quality(
    model: torch.nn.Module,
    world: Path,
    split: str,
    cfg: MaskCutConfig,
    *,
    frame_stride: int,
    input_short: int | None,
) -> dict[str, float]:
    """Class-agnostic recall/precision at IoU 0.5 of MaskCut on every ``frame_stride``-th frame."""
    data, gts = _gt_by_frame(world, split)
    n_gt = n_prop = n_match = 0
    for video in data.videos:
        frames = list(enumerate(video.frame_paths))[::frame_stride]
        stack, keys = _frame_keys(model, video, [p for _, p in frames], input_short)
        per_image = maskcut(stack, keys.keys.float(), keys.grid_hw, cfg)
        for (t, _), masks in zip(frames, per_image, strict=True):
            props = []
            for m in masks:
                if m.shape != (video.height, video.width):
                    m = (
                        np.asarray(
                            Image.fromarray(m.astype(np.uint8) * 255).resize(
                                (video.width, video.height), Image.NEAREST
                            )
                        )
                        > 127
                    )
                props.append(mask_utils.encode(np.asfortranarray(m.astype(np.uint8))))
            frame_gts = gts.get((video.id, t), [])
            n_gt += len(frame_gts)
            n_prop += len(props)
            n_match += len(match_frame(frame_gts, props, 0.5))
    return {
        "gt_masks": n_gt,
        "proposals": n_prop,
        "recall": n_match / max(n_gt, 1),
        "precision": n_match / max(n_prop, 1),
    }


def _models(args: argparse.Namespace) -> list[tuple[str, torch.nn.Module, DinoConfig]]:
    """The ``--weights`` checkpoints and, unless ``--no-random-init``, the first one's
    architecture at its random initialisation, each with its training config."""
    from uvis.standins.dino import load_trained_ssl_vit

    models = []
    for weights in args.weights:
        report = json.loads(Path(weights).with_suffix(".json").read_text(encoding="utf-8"))
        cfg = DinoConfig.from_dict(report["config"])
        models.append((weights, load_trained_ssl_vit(Path(weights)), cfg))
    if not args.no_random_init:
        cfg = models[0][2]
        models.append(("random init", initial_network(cfg).backbone.eval(), cfg))
    return models


def run_keys(args: argparse.Namespace) -> None:
    for name, model, _ in _models(args):
        stats = key_cosines(
            model, Path(args.world), args.split,
            frame_stride=args.frame_stride, input_short=args.input_short,
        )  # fmt: skip
        pairs = ", ".join(f"{k} {v:.3f}" for k, v in stats.items() if k != "frames")
        print(
            f"keys {args.split} ({stats['frames']} frames) {name}: mean cosine {pairs}", flush=True
        )


def run_knn(args: argparse.Namespace) -> None:
    """The ``pretrain_ssl`` report's k-NN probe, for checkpoints saved along a run."""
    corpus = load_unlabeled_corpus(Path(args.world) / "corpora" / "unlabeled")
    if corpus.labels is None:
        raise SystemExit(f"{corpus.index_path}: the corpus has no category labels to probe")
    for name, model, cfg in _models(args):
        feats = cls_features(model, probe_inputs(corpus.images, cfg.global_crop_size))
        print(f"knn {name}: {knn_accuracy(feats, corpus.labels, cfg):.3f}", flush=True)


def run_maskcut(args: argparse.Namespace) -> None:
    cfg = MaskCutConfig(
        tau=args.tau,
        num_masks=args.num_masks,
        refine=args.refine,
        min_area_frac=args.min_area_frac,
        max_area_frac=args.max_area_frac,
        split_area_frac=args.split_area_frac,
    )
    for name, model, _ in _models(args):
        cpu = time.process_time()
        q = maskcut_quality(
            model, Path(args.world), args.split, cfg,
            frame_stride=args.frame_stride, input_short=args.input_short,
        )  # fmt: skip
        cpu = time.process_time() - cpu
        print(
            f"maskcut {args.split} ({args.world}, every {args.frame_stride}th frame, "
            f"tau {args.tau}, N {args.num_masks}, input_short {args.input_short}, "
            f"cap {args.max_area_frac}, split {args.split_area_frac}) {name} keys: "
            f"recall {q['recall']:.3f}, precision {q['precision']:.3f} "
            f"({q['proposals']} masks, {q['gt_masks']} GT masks), {cpu:.0f} CPU-s",
            flush=True,
        )


def run_clip(args: argparse.Namespace) -> None:
    from uvis.standins.clip import ClipTrainConfig, train_clip

    cfg = ClipTrainConfig.preset(args.preset, **parse_overrides(args.set))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    world = Path(args.world)
    report = train_clip(world / "corpora" / "captioned", out, cfg, eval_world=world, progress=False)
    q = report["quality"]
    print(
        f"clip {args.world}: zero-shot accuracy held-out corpus {q['heldout_corpus']['accuracy']:.3f}, "
        f"valid video crops {q['video_crops']['accuracy']:.3f} (box), "
        f"{q['video_crops_masked_mean']['accuracy']:.3f} (mean-filled background); "
        f"{report['cpu_seconds']:.0f} CPU-s ({report['torch_threads']} thread)"
    )


def run_detector(args: argparse.Namespace) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    from uvis.data.frame_index import FrameIndex
    from uvis.proposals.detector import (
        DetectorConfig,
        detect_frames,
        load_detector,
        targets_from_proposals,
        train_detector,
    )
    from uvis.pseudo.filtering import read_shards
    from uvis.schemas import PROPOSALS

    results, out = Path(args.results), Path(args.out)
    frames = FrameIndex.read(results / "frames" / "train.parquet").table
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        shards = sorted((results / "pseudo" / "maskcut" / "train").glob("shard-*.parquet"))
        targets = targets_from_proposals(frames, read_shards(shards, PROPOSALS))
        cfg = DetectorConfig.preset("default", **parse_overrides(args.set))
        cpu = time.process_time()
        report = train_detector(targets, cfg, out, progress=False)
        print(
            f"detector trained: {report['masks']} MaskCut masks, final loss "
            f"{report['final_loss']:.3f}, {time.process_time() - cpu:.0f} CPU-s"
        )
    model, cfg = load_detector(out)
    videos = sorted(set(frames.column("video_id").to_pylist()))[:: args.video_stride]
    subset = frames.filter(pc.is_in(frames.column("video_id"), pa.array(videos)))
    props = detect_frames(model, subset, cfg, progress=False).to_pydict()
    _, gts = _gt_by_frame(results / "world", "train")
    ids, times = (subset.column(c).to_pylist() for c in ("video_id", "frame_index"))
    keys = set(zip(ids, times, strict=True))
    for threshold in (0.0, 0.5, 0.6, 0.7, 0.8):
        t = _score_frames(props, keys, gts, threshold)
        print(
            f"detector {out.name} on {subset.num_rows} train frames of {len(videos)} videos, "
            f"objectness >= {threshold}: recall {t.n_match / max(t.n_gt, 1):.3f}, precision "
            f"{t.n_match / max(t.n_prop, 1):.3f} ({t.n_prop} detections, {t.n_gt} GT masks)"
        )
        if threshold == 0.7:
            print("\n".join(t.lines()))


def run_score(args: argparse.Namespace) -> None:
    """A finished run's MaskCut masks (or detections) of one split, against its ground truth."""
    from uvis.data.frame_index import FrameIndex
    from uvis.pseudo.filtering import read_shards
    from uvis.schemas import PROPOSALS

    results = Path(args.results)
    stage = results / "pseudo" / args.stage / args.split
    shards = sorted(stage.glob("shard-*.parquet"))
    if not shards:
        raise SystemExit(f"{stage}: no shard-*.parquet to score")
    props = read_shards(shards, PROPOSALS).to_pydict()
    index = FrameIndex.read(results / "frames" / f"{args.split}.parquet")
    frames = index.every_nth_frame(args.frame_stride).table
    ids, times = (frames.column(c).to_pylist() for c in ("video_id", "frame_index"))
    _, gts = _gt_by_frame(results / "world", args.split)
    t = _score_frames(props, set(zip(ids, times, strict=True)), gts, args.min_objectness)
    print(
        f"{args.stage} {args.split} ({results}, every {args.frame_stride}th frame, objectness >= "
        f"{args.min_objectness}): recall {t.n_match / max(t.n_gt, 1):.3f}, precision "
        f"{t.n_match / max(t.n_prop, 1):.3f} ({t.n_prop} masks, {t.n_gt} GT masks)"
    )
    print("\n".join(t.lines()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    sub = parser.add_subparsers(dest="what", required=True)
    for name, checkpoint in (("dino", "ssl_vit.pth"), ("clip", "clip.pt")):
        trainer = sub.add_parser(name)
        trainer.add_argument("world")
        trainer.add_argument("--preset", default="default")
        trainer.add_argument("--set", action="append", default=[])
        trainer.add_argument("--out", default=f"/tmp/bench_standins/{checkpoint}")
    sub.choices["dino"].add_argument("--save-every", type=int, default=0, metavar="EPOCHS")
    for name in ("maskcut", "keys", "knn"):
        m = sub.add_parser(name)
        m.add_argument("world")
        m.add_argument("--weights", nargs="+", required=True)
        m.add_argument("--no-random-init", action="store_true")
        m.add_argument("--split", default="train")
        m.add_argument("--input-short", type=int, default=None)
        m.add_argument("--frame-stride", type=int, default=4)
    m = sub.choices["maskcut"]
    m.add_argument("--tau", type=float, default=0.15)
    m.add_argument("--num-masks", type=int, default=3)
    m.add_argument("--refine", default="bilateral")
    m.add_argument("--min-area-frac", type=float, default=0.01)
    m.add_argument("--max-area-frac", type=float, default=1.0)
    m.add_argument("--split-area-frac", type=float, default=1.0)
    t = sub.add_parser("detector")
    t.add_argument("results")
    t.add_argument("--set", action="append", default=[])
    t.add_argument("--out", default="/tmp/bench_standins/objectness.pth")
    t.add_argument("--video-stride", type=int, default=25)
    sc = sub.add_parser("score")
    sc.add_argument("results")
    sc.add_argument("--stage", default="maskcut", choices=("maskcut", "proposals"))
    sc.add_argument("--split", default="train")
    sc.add_argument("--frame-stride", type=int, default=1)
    sc.add_argument("--min-objectness", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = {
        "dino": run_dino,
        "maskcut": run_maskcut,
        "keys": run_keys,
        "knn": run_knn,
        "clip": run_clip,
        "detector": run_detector,
        "score": run_score,
    }
    runs[args.what](args)


if __name__ == "__main__":
    main()
