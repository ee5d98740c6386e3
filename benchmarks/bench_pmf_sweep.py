"""Prototype memory filtering settings against ground truth, on a split you may tune on.

Usage::

    python benchmarks/bench_pmf_sweep.py RESULTS [--split train] [--k-ratio 0.005 ...]
        [--k-max 1] [--prototype-fraction 1.0 ...] [--tau 0.7 ...] [--video-stride 1]

``RESULTS`` is a finished run's ``results/synth`` folder. For each ``--k-ratio`` the filter stage
(and each ``--prototype-fraction``, :func:`uvis.prototypes.confident_members`)
runs in-process on the split's proposal and CLIP-score shards (objectness and CLIP thresholds
from ``config.yaml``); each ``--tau`` is then read off the stored PMF similarity with the same
prototypes (as Table 3 is), and the pseudo-labels' quality at the PMF level is printed
(:func:`uvis.pseudo.quality.measure_quality`: IoU 0.5, one-to-one per frame), with the levels
before PMF once for reference. Tune on the **train** split (or another world's), never on the
evaluation split of the world you report.

Each row also gives how many of the split's ground-truth *tracks* keep no pseudo-label at all
in any frame ("tracks unlabelled"): an object the filters take out everywhere is taught to the
VIS model as background, which costs more than a few frames lost here and there. ``--k-max``
overrides ``config.yaml``'s cap on prototypes per class (the default cap of 1 makes every
``--k-ratio`` alike); ``--video-stride N`` measures every N-th video only.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from uvis.data.frames import VideoDataset
from uvis.data.ytvis import load_ytvis
from uvis.masks import to_coco
from uvis.prototypes.pmf import PMFConfig
from uvis.pseudo.filtering import build_pseudo_labels, read_shards
from uvis.pseudo.levels import select
from uvis.pseudo.quality import match_rows, measure_quality
from uvis.schemas import CLIP_SCORES, PROPOSALS


def _row(name: str, q: object) -> str:
    return (
        f"{name:<42} kept {q.proposals:>6}  recall {q.recall:.3f}  precision {q.precision:.3f}  "
        f"label acc. {q.label_accuracy:.3f}  class precision {q.class_precision:.3f}"
    )


def track_matches(table: pa.Table, gt: VideoDataset) -> tuple[np.ndarray, np.ndarray, int]:
    """Each frame's proposals matched one-to-one to its ground-truth masks (IoU >= 0.5, as
    :func:`measure_quality` matches them): the matched rows, their ground-truth instance ids,
    and the number of ground-truth tracks (non-crowd instances with an annotated frame)."""
    masks_by_frame: dict[tuple[int, int], list[dict]] = {}
    ids_by_frame: dict[tuple[int, int], list[int]] = {}
    for inst in gt.instances or ():
        for t, seg in enumerate(inst.segmentations):
            if seg is not None and not inst.iscrowd:
                masks_by_frame.setdefault((inst.video_id, t), []).append(to_coco(seg))
                ids_by_frame.setdefault((inst.video_id, t), []).append(inst.id)
    pairs = match_rows(table, masks_by_frame)
    rows = np.asarray([row for _, _, row in pairs], np.int64)
    ids = np.asarray([ids_by_frame[key][g] for key, g, _ in pairs], np.int64)
    return rows, ids, len({i for found in ids_by_frame.values() for i in found})


def unlabelled_tracks(keep: np.ndarray, matches: tuple[np.ndarray, np.ndarray, int]) -> float:
    """The fraction of ground-truth tracks none of whose matched proposals ``keep`` keeps."""
    rows, ids, n_tracks = matches
    return 1 - len(np.unique(ids[keep[rows]])) / max(n_tracks, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results")
    parser.add_argument("--split", default="train")
    parser.add_argument("--k-ratio", type=float, nargs="+", default=[0.005, 0.02, 0.05])
    parser.add_argument("--k-max", type=int, default=None, help="default: config.yaml's")
    parser.add_argument(
        "--prototype-fraction", type=float, nargs="+", default=None, help="default: config.yaml's"
    )
    parser.add_argument("--tau", type=float, nargs="+", default=[0.7, 0.8, 0.85, 0.9, 0.95])
    parser.add_argument("--video-stride", type=int, default=1)
    args = parser.parse_args()
    results = Path(args.results)
    root = Path(__file__).resolve().parents[1]
    filt = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8"))["filter"]
    proposals = read_shards(
        sorted((results / "pseudo" / "proposals" / args.split).glob("shard-*.parquet")), PROPOSALS
    )
    clip = read_shards(
        sorted((results / "pseudo" / "clip" / args.split).glob("shard-*.parquet")), CLIP_SCORES
    )
    ytvis = results / "world" / "ytvis"
    gt = load_ytvis(ytvis / f"{args.split}.json", ytvis / args.split / "JPEGImages")
    all_ids = sorted(v.id for v in gt.videos)
    gt = gt.drop_videos(set(all_ids) - set(all_ids[:: args.video_stride]))
    print(f"{args.split}: {proposals.num_rows} proposals, {len(gt.videos)} videos")
    fractions = args.prototype_fraction or [filt["prototype_fraction"]]
    for i, (fraction, k_ratio) in enumerate(itertools.product(fractions, args.k_ratio)):
        cfg = PMFConfig(
            objectness_threshold=filt["objectness_threshold"],
            clip_threshold=filt["clip_threshold"],
            tau=max(args.tau),
            k_ratio=k_ratio,
            k_min=filt["k_min"],
            k_max=filt["k_max"] if args.k_max is None else args.k_max,
            prototype_fraction=fraction,
        )
        table, result = build_pseudo_labels(proposals, clip, cfg)
        if i == 0:
            matches = track_matches(table, gt)
            for q in measure_quality(table, gt)[:3]:
                lost = unlabelled_tracks(select(table, q.level), matches)
                print(_row(q.level, q) + f"  tracks unlabelled {lost:.3f}")
        for tau in args.tau:
            keep = select(table, "pmf", tau=tau)
            flagged = table.set_column(
                table.schema.get_field_index("pass_pmf"), "pass_pmf", pa.array(np.asarray(keep))
            )
            q = measure_quality(flagged, gt)[3]
            name = f"pmf fraction {fraction} k_ratio {k_ratio} tau {tau}"
            lost = unlabelled_tracks(keep, matches)
            ks = sorted(len(p) for p in result.prototypes.values())
            print(
                _row(name, q) + f"  tracks unlabelled {lost:.3f}  prototypes per class {ks}",
                flush=True,
            )


if __name__ == "__main__":
    main()
