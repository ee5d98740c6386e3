"""Prototype memory filtering settings against ground truth, on a split you may tune on.

Usage::

    python benchmarks/bench_pmf_sweep.py RESULTS [--split train] [--k-ratio 0.005 ...]
        [--tau 0.7 ...]

``RESULTS`` is a finished run's ``results/synth`` folder. For each ``--k-ratio`` the filter stage
runs in-process on the split's proposal and CLIP-score shards (objectness and CLIP thresholds
from ``config.yaml``); each ``--tau`` is then read off the stored PMF similarity with the same
prototypes (as Table 3 is), and the pseudo-labels' quality at the PMF level is printed
(:func:`uvis.pseudo.quality.measure_quality`: IoU 0.5, one-to-one per frame), with the levels
before PMF once for reference. Tune on the **train** split (or another world's), never on the
evaluation split of the world you report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from uvis.data.ytvis import load_ytvis
from uvis.prototypes.pmf import PMFConfig
from uvis.pseudo.filtering import build_pseudo_labels, read_shards
from uvis.pseudo.levels import select
from uvis.pseudo.quality import measure_quality
from uvis.schemas import CLIP_SCORES, PROPOSALS


def _row(name: str, q: object) -> str:
    return (
        f"{name:<28} kept {q.proposals:>6}  recall {q.recall:.3f}  precision {q.precision:.3f}  "
        f"label acc. {q.label_accuracy:.3f}  class precision {q.class_precision:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results")
    parser.add_argument("--split", default="train")
    parser.add_argument("--k-ratio", type=float, nargs="+", default=[0.005, 0.02, 0.05])
    parser.add_argument("--tau", type=float, nargs="+", default=[0.7, 0.8, 0.85, 0.9, 0.95])
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
    print(f"{args.split}: {proposals.num_rows} proposals, {len(gt.videos)} videos")
    for i, k_ratio in enumerate(args.k_ratio):
        cfg = PMFConfig(
            objectness_threshold=filt["objectness_threshold"],
            clip_threshold=filt["clip_threshold"],
            tau=max(args.tau),
            k_ratio=k_ratio,
            k_min=filt["k_min"],
            k_max=filt["k_max"],
        )
        table, result = build_pseudo_labels(proposals, clip, cfg)
        if i == 0:
            for q in measure_quality(table, gt)[:3]:
                print(_row(q.level, q))
        for tau in args.tau:
            keep = select(table, "pmf", tau=tau)
            flagged = table.set_column(
                table.schema.get_field_index("pass_pmf"), "pass_pmf", pa.array(np.asarray(keep))
            )
            q = measure_quality(flagged, gt)[3]
            name = f"pmf k_ratio {k_ratio} tau {tau}"
            print(_row(name, q) + f"  ({len(result.prototypes)} classes)", flush=True)


if __name__ == "__main__":
    main()
