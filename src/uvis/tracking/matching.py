"""Query matching across frames (MinVIS) and the tracking memory (UVIS §3.3, eqs. 2 and 3).

Notation of the paper: ``Q^t`` are the N_q query embeddings of frame ``t``; ``P^t[Q^t]`` are
those queries permuted into track order by the Hungarian matching. Rows of every array here are
in *track order*: row ``i`` is track ``i``, which started as query ``i`` of the first frame.

- :func:`match_queries`: MinVIS's rule, Hungarian matching maximising the cosine similarity of
  L2-normalised embeddings between a reference (one row per track) and the current frame.
- :func:`memory_reference`: eq. 2, the reference that frame ``t + 1`` is matched against,
  ``Q*_t = lam * P[Q^t] + (1 - lam) * mu_{t-1}``; ``lam = 1`` is plain MinVIS.
- :func:`update_memory_mean`: eq. 3 computed incrementally, ``mu`` the mean of the matched
  queries of all earlier frames, in O(N_q * d) memory whatever the video length.

Embeddings are L2-normalised once, when a frame arrives (:func:`normalise_queries`), and the
memory averages those unit vectors, so every frame weighs the same in the mean whatever the
norm of its raw decoder outputs (MinVIS also compares normalised embeddings only).

When ``mu`` is undefined -- matching the second frame, eq. 3 being a mean over zero frames --
the memory holds nothing yet and the reference is the first frame's queries alone
(``Q*_1 = Q^1``, as if ``mu_0 = Q^1``): both terms of eq. 2 then describe the same, only,
observation. :class:`TrackingMemory` applies these rules frame by frame.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from uvis.prototypes.kmeans import unit_rows


def normalise_queries(embeddings: np.ndarray) -> np.ndarray:
    """L2-normalised rows of ``embeddings`` (Q, D) as float64; a zero row stays zero.

    Raises ValueError for non-finite entries (a model that produced NaN must not be tracked
    silently).
    """
    if not np.isfinite(embeddings).all():
        raise ValueError("query embeddings contain NaN or inf")
    unit, _ = unit_rows(embeddings)
    return unit.astype(np.float64)


def match_queries(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """MinVIS matching: ``perm[i]`` is the query of ``current`` assigned to reference row ``i``.

    Hungarian matching (one-to-one) maximising the sum of cosine similarities between the rows
    of ``reference`` (Q, D) and ``current`` (Q, D); both are L2-normalised here, so the
    reference may be an unnormalised mixture (eq. 2). ``current[perm]`` is the current frame's
    queries in track order, ``P^t[Q^t]`` in the paper.
    """
    if reference.ndim != 2 or reference.shape != current.shape:
        raise ValueError(
            f"reference {reference.shape} and current {current.shape} must both be (Q, D)"
        )
    ref, _ = unit_rows(reference)
    cur, _ = unit_rows(current)
    similarity = ref.astype(np.float64) @ cur.astype(np.float64).T
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    perm = np.empty(len(rows), dtype=np.int64)
    perm[rows] = cols
    return perm


def memory_reference(
    prev_matched: np.ndarray, memory_mean: np.ndarray | None, lam: float
) -> np.ndarray:
    """UVIS eq. 2: ``Q*_t = lam * P[Q^t] + (1 - lam) * mu_{t-1}``, the reference for frame t+1.

    ``prev_matched`` (Q, D) is the last frame's queries in track order, ``memory_mean`` (Q, D)
    the mean ``mu_{t-1}`` of the matched queries of the frames before it, or None when there
    are none (matching the second frame), in which case the reference is ``prev_matched``.
    With ``lam = 1`` the result equals ``prev_matched`` exactly (plain MinVIS).
    """
    check_lambda(lam)
    if memory_mean is None:
        return prev_matched
    return lam * prev_matched + (1.0 - lam) * memory_mean


def update_memory_mean(
    memory_mean: np.ndarray | None, count: int, matched: np.ndarray
) -> np.ndarray:
    """UVIS eq. 3, incrementally: the mean of ``count`` matched frames extended by ``matched``.

    ``memory_mean`` is the mean of the first ``count`` frames' matched queries (None when
    ``count`` is 0); the result is the mean over ``count + 1`` frames,
    ``mu + (matched - mu) / (count + 1)``, equal to the explicit mean of eq. 3.
    """
    if memory_mean is None or count == 0:
        return matched.astype(np.float64, copy=True)
    return memory_mean + (matched - memory_mean) / (count + 1)


def check_lambda(lam: float) -> None:
    """Raise ValueError unless ``0 <= lam <= 1`` (eq. 2 is a convex combination)."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"the tracking memory weight lambda must be in [0, 1], got {lam}")


class TrackingMemory:
    """The state of query tracking with memory for one video: eqs. 2 and 3 frame by frame.

    :meth:`match` takes the normalised queries of the next frame and returns the permutation
    that puts them in track order; the memory keeps the last matched frame and the running
    mean of the ones before it (two (Q, D) arrays, whatever the video length).
    """

    def __init__(self, lam: float) -> None:
        check_lambda(lam)
        self.lam = lam
        self.prev_matched: np.ndarray | None = None
        self.memory_mean: np.ndarray | None = None
        self.memory_count = 0

    def match(self, queries: np.ndarray) -> np.ndarray:
        """Track order of ``queries`` (Q, D): ``perm`` with ``queries[perm]`` row i = track i.

        The first frame defines the tracks (identity permutation). Each later frame is matched
        against :func:`memory_reference`; then the previous frame joins the mean
        (:func:`update_memory_mean`) and this frame becomes the previous one.
        """
        if self.prev_matched is None:
            perm = np.arange(len(queries), dtype=np.int64)
        else:
            if queries.shape != self.prev_matched.shape:
                raise ValueError(
                    f"queries of shape {queries.shape} after frames of shape "
                    f"{self.prev_matched.shape}: the number of queries and their width must "
                    "stay the same within a video"
                )
            reference = memory_reference(self.prev_matched, self.memory_mean, self.lam)
            perm = match_queries(reference, queries)
            self.memory_mean = update_memory_mean(
                self.memory_mean, self.memory_count, self.prev_matched
            )
            self.memory_count += 1
        self.prev_matched = queries[perm]
        return perm
