"""Spherical k-means and nearest-prototype search on unit vectors, with faiss.

Both operations run on the GPU when faiss sees one (``use_gpu=None``) and on the CPU otherwise;
the GPU branch only changes which faiss index does the inner products.
"""

from __future__ import annotations

import logging

# faiss logs which SIMD build it loaded at INFO on import; keep the CLI's output readable.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)

import faiss  # noqa: E402
import numpy as np  # noqa: E402


def resolve_gpu(use_gpu: bool | None) -> bool:
    """Whether to use the GPU: ``None`` means "if faiss sees one"; ``True`` demands one."""
    available = faiss.get_num_gpus() > 0
    if use_gpu is None:
        return available
    if use_gpu and not available:
        raise ValueError("use_gpu=True, but faiss sees no GPU (is faiss-gpu installed?)")
    return use_gpu


def unit_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalise the rows of ``x`` (as float32, since faiss works in float32).

    Returns ``(unit, valid)``. A row is valid when its norm is finite and non-zero; a row with
    NaN or inf entries, of zero norm, or whose norm under- or overflows float32 has no direction,
    so its cosine similarity is undefined: it comes back as zeros with ``valid`` False.
    """
    unit = np.array(x, dtype=np.float32, order="C", copy=True)
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.sqrt(np.einsum("ij,ij->i", unit, unit))  # no (n, D) temporary
    valid = np.isfinite(norms) & (norms > 0)
    unit /= np.where(valid, norms, 1.0)[:, None]
    unit[~valid] = 0.0
    return unit, valid


def spherical_kmeans(
    unit: np.ndarray, k: int, *, niter: int, seed: int, use_gpu: bool
) -> np.ndarray:
    """``k`` unit-norm centroids of the unit rows ``unit`` (n, D), 1 <= k <= n; shape (k, D).

    Cosine (spherical) k-means: points go to the centroid of largest inner product and each
    centroid is the normalised mean of its points. Seeding is k-means++ (the clusters of one
    class are far apart compared to their spread, where uniform seeding often puts two seeds
    in one cluster). Every point is used (faiss would otherwise subsample to 256 per centroid).
    With ``k == n`` every point is its own centroid.
    """
    n, dim = unit.shape
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}] for {n} points, got {k}")
    if k == n:
        return unit.copy()
    kmeans = faiss.Kmeans(
        dim,
        k,
        niter=niter,
        seed=seed,
        spherical=True,
        init_method=faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS,
        min_points_per_centroid=1,
        max_points_per_centroid=-(-n // k),
        gpu=use_gpu,
    )
    kmeans.train(unit)
    return np.asarray(kmeans.centroids, dtype=np.float32)


def max_inner_product(queries: np.ndarray, keys: np.ndarray, *, use_gpu: bool) -> np.ndarray:
    """For each row of ``queries`` (n, D), its largest inner product with a row of ``keys``.

    On unit rows this is the cosine similarity to the nearest key. Shape (n,), float32.
    """
    index = faiss.IndexFlatIP(keys.shape[1])
    if use_gpu:
        index = faiss.index_cpu_to_all_gpus(index)
    index.add(np.ascontiguousarray(keys, dtype=np.float32))
    similarity, _ = index.search(np.ascontiguousarray(queries, dtype=np.float32), 1)
    return similarity[:, 0]
