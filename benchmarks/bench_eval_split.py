"""How noisy is a valid split? One tracked result's AP on the whole split and on disjoint
subsets of it, and, given a second result, the paired difference per subset.

Usage::

    python benchmarks/bench_eval_split.py GT.json RESULTS.json [OTHER_RESULTS.json] [--size 16]

``GT.json`` is a YouTube-VIS ground truth (e.g. the valid split of ``uvis synth --set
num_valid_videos=96``, whose first 16 videos are the preset's valid split) and ``RESULTS.json``
a ``uvis track`` output on it. The videos, in id order, are cut into consecutive sets of
``--size``; each set is scored with the official YouTube-VIS metric (``uvis eval ytvis``'s
:func:`uvis.evaluation.ytvis.evaluate`). The spread over the sets is the noise of a valid split
of that size: differences between two tables' rows smaller than it are not evidence.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from uvis.evaluation.ytvis import evaluate, read_results_file
from uvis.io import read_json


def subset_aps(gt: dict, results: list[dict], size: int) -> tuple[float, list[float]]:
    """AP on all of ``gt``'s videos, and on each consecutive ``size``-video set (id order)."""
    ids = sorted(v["id"] for v in gt["videos"])
    aps = []
    for start in range(0, len(ids) - size + 1, size):
        keep = set(ids[start : start + size])
        sub = dict(
            gt,
            videos=[v for v in gt["videos"] if v["id"] in keep],
            annotations=[a for a in gt["annotations"] if a["video_id"] in keep],
        )
        aps.append(evaluate(sub, [r for r in results if r["video_id"] in keep])["AP"])
    return evaluate(gt, results)["AP"], aps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gt", type=Path)
    parser.add_argument("results", type=Path, nargs="+", help="one or two results files")
    parser.add_argument("--size", type=int, default=16, help="videos per set")
    args = parser.parse_args()
    if len(args.results) > 2:
        parser.error("give one or two results files")
    gt = read_json(args.gt)
    per_file = []
    for path in args.results:
        whole, aps = subset_aps(gt, read_results_file(path), args.size)
        per_file.append(np.asarray(aps))
        print(f"{path}: AP {whole:.1f} on {len(gt['videos'])} videos; on {len(aps)} sets of "
              f"{args.size}: {' '.join(f'{a:.1f}' for a in aps)} (mean {np.mean(aps):.1f}, "
              f"std {np.std(aps, ddof=1):.1f})")  # fmt: skip
    if len(per_file) == 2:
        diff = per_file[0] - per_file[1]
        print(f"paired difference per set: {' '.join(f'{d:+.1f}' for d in diff)} "
              f"(mean {diff.mean():+.1f}, std {diff.std(ddof=1):.1f})")  # fmt: skip


if __name__ == "__main__":
    main()
