"""Time Prototype Memory Filtering on a YouTube-VIS-sized pseudo-label set.

Usage: ``python benchmarks/bench_pmf.py [--instances 300000] [--classes 40] [--dim 1280]``.
The embeddings are float32 with ViT-bigG CLIP's width (1280); each class is a few blobs on the
unit sphere, class sizes fall off like Zipf's law, as YouTube-VIS's do (person dominates), and
10% of the labels are wrong.
Prints the seconds and instances/s of ``build_prototypes`` (all rows), ``pmf_similarity`` (all
rows) and ``filter_instances`` (prototypes from the rows passing both score thresholds), and
the process's peak resident memory before and after.
"""

from __future__ import annotations

import argparse
import resource
import time

import faiss
import numpy as np

from uvis.prototypes import PMFConfig, build_prototypes, filter_instances, pmf_similarity
from uvis.pseudo.levels import select


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def synthetic_set(
    rng: np.random.Generator, instances: int, classes: int, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(embeddings (N, dim) float32, labels (N,))``: 4 blobs per class, Zipf class sizes.

    10% of the labels are then changed to another class at random.
    """
    weights = 1.0 / np.arange(1, classes + 1)
    labels = rng.choice(classes, size=instances, p=weights / weights.sum())
    centres = rng.standard_normal((classes * 4, dim), dtype=np.float32)
    blob = labels * 4 + rng.integers(0, 4, instances)
    embeddings = np.empty((instances, dim), np.float32)
    for start in range(0, instances, 50_000):  # in chunks, to bound the temporaries
        rows = slice(start, start + 50_000)
        noise = rng.standard_normal((len(blob[rows]), dim), dtype=np.float32)
        embeddings[rows] = centres[blob[rows]] + 0.8 * noise
    wrong = rng.uniform(size=instances) < 0.1  # CLIP's mistakes: what PMF should catch
    labels[wrong] = (labels[wrong] + rng.integers(1, classes, wrong.sum())) % classes
    return embeddings, labels


def timed(name: str, instances: int, fn, *args, **kwargs):
    """Run ``fn``, print its time and throughput, return its result."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    seconds = time.perf_counter() - start
    print(f"{name:>17}: {seconds:7.2f} s  {instances / seconds:10,.0f} instances/s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=300_000)
    parser.add_argument("--classes", type=int, default=40)
    parser.add_argument("--dim", type=int, default=1280)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    embeddings, labels = synthetic_set(rng, args.instances, args.classes, args.dim)
    objectness, clip_score = rng.uniform(0.4, 1.0, (2, args.instances))
    cfg = PMFConfig()
    sizes = np.bincount(labels, minlength=args.classes)
    print(
        f"{args.instances:,} instances, {args.classes} classes (sizes {sizes.max():,} to "
        f"{sizes.min():,}), D={args.dim}, {embeddings.nbytes / 2**30:.2f} GiB float32; "
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, "
        f"{faiss.get_num_gpus()} GPUs; peak RSS {peak_rss_gib():.2f} GiB"
    )
    protos = timed(
        "build_prototypes",
        args.instances,
        build_prototypes,
        embeddings,
        labels,
        k_ratio=cfg.k_ratio,
        k_min=cfg.k_min,
        k_max=cfg.k_max,
        niter=cfg.niter,
        seed=cfg.seed,
    )
    similarity = timed("pmf_similarity", args.instances, pmf_similarity, embeddings, labels, protos)
    result = timed(
        "filter_instances",
        args.instances,
        filter_instances,
        objectness,
        clip_score,
        labels,
        embeddings,
        cfg,
    )
    k_total = sum(len(p) for p in protos.values())
    members = int(np.count_nonzero(result.pass_objectness & result.pass_clip))
    print(
        f"{k_total} prototypes over all rows; median similarity {np.median(similarity):.3f}; "
        f"filter_instances: {members:,} prototype members, {int(result.pass_pmf.sum()):,} pass "
        f"PMF, {int(select(result, 'pmf').sum()):,} kept; peak RSS {peak_rss_gib():.2f} GiB"
    )


if __name__ == "__main__":
    main()
