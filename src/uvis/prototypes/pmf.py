"""Prototype Memory Filtering (PMF), UVIS §3.1: drop pseudo-labels unlike their class's prototypes.

Every pseudo-label instance has a CutLER objectness score ``o``, a CLIP class (eq. 1), the CLIP
score ``u`` of that class and a CLIP image embedding of its crop. The paper's filters, applied in
this order in its Table 2, are:

1. mask score: keep ``o >= objectness_threshold`` (0.7 in the paper, §4.1);
2. CLIP score: keep ``u >= clip_threshold`` (0.7);
3. PMF: per class, k-means over the CLIP embeddings gives ``k^l`` prototypes, ``k^l``
   "proportional to the number of instances in class l" (our rule: :func:`class_k`); an
   instance is kept when its largest cosine similarity to a prototype of its own class is at
   least ``tau`` (0.7; Table 3 sweeps 0, 0.5, 0.7, 0.9).

What we decided where the paper is silent, so that every row of Tables 2 and 3 is a *selection*
of one stored :class:`PMFResult`, never a recomputation:

- The prototypes are built once, from the instances that pass filters 1 and 2 (the paper:
  "together with objectness score and CLIP score, tau determines the final instances we retain
  for each prototype"). uvis's option ``prototype_fraction`` (1.0, the paper's rule, by default)
  builds each class's prototypes from only that fraction of them, highest CLIP score first
  (:func:`confident_members`): where the score filters let through more non-objects of a class
  than objects, the mean of its members points at the non-objects, and PMF keeps them and drops
  the objects; the members CLIP is surest of are more often objects (``benchmarks/RESULTS.md``).
  ``tau`` does not change the prototypes and k-means is not re-run on the instances that
  ``tau`` retains; ``tau`` only thresholds the stored similarity, which
  :func:`uvis.pseudo.levels.select` does for any ``tau``.
- Every threshold keeps scores *at or above* it (:func:`passes_threshold`); the paper discards
  similarities "less than tau", and we read its objectness and CLIP thresholds the same way.
- The similarity of every row is stored, including rows that fail filter 1 or 2, so the PMF
  flag is defined for each row; :func:`uvis.pseudo.levels.select` combines the flags cumulatively.
- A row whose class has no prototype (no instance of that class passed filters 1 and 2) has
  similarity ``-inf`` (:data:`NO_PROTOTYPE`): it fails PMF at every ``tau``.
- A row whose embedding has NaN or inf entries or zero norm has no direction: it is flagged
  (``valid_embedding`` False), counted and logged, builds no prototype, has similarity NaN and
  fails PMF. It is never dropped, so row indices still match the caller's table.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from uvis.errors import ConfigError, DataError
from uvis.prototypes.kmeans import max_inner_product, resolve_gpu, spherical_kmeans, unit_rows

logger = logging.getLogger(__name__)

NO_PROTOTYPE = -math.inf
"""Similarity of a row whose class has no prototype: below every ``tau``."""

# Column names as stored in the pseudo-label artefact (uvis.schemas.PSEUDO_LABELS).
ROW_COLUMNS = ("pass_objectness", "pass_clip", "pass_pmf", "pmf_similarity", "valid_embedding")
"""The per-row columns of a :class:`PMFResult`, as :meth:`PMFResult.columns` returns them."""


@dataclass(frozen=True)
class PMFConfig:
    """Thresholds (the paper's values, §4.1) and the prototype count rule (:func:`class_k`).

    ``niter`` and ``seed`` are the k-means iterations and random seed; the same seed is used
    for every class, so results are a function of the inputs and the config.
    ``prototype_fraction`` is the share of a class's members that build its prototypes,
    highest CLIP score first (:func:`confident_members`); 1.0 is the paper's rule.
    """

    objectness_threshold: float = 0.7
    clip_threshold: float = 0.7
    tau: float = 0.7
    k_ratio: float = 0.05
    k_min: int = 1
    k_max: int = 64
    niter: int = 25
    seed: int = 0
    prototype_fraction: float = 1.0

    def __post_init__(self) -> None:
        for key in (
            "objectness_threshold",
            "clip_threshold",
            "tau",
            "k_ratio",
            "prototype_fraction",
        ):
            if not math.isfinite(getattr(self, key)):
                raise ConfigError(f"{key} must be a finite number, got {getattr(self, key)}")
        for key in ("objectness_threshold", "clip_threshold"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{key} is a score threshold in [0, 1], got {getattr(self, key)}")
        if not -1.0 <= self.tau <= 1.0:
            raise ConfigError(f"tau is a cosine similarity threshold in [-1, 1], got {self.tau}")
        if self.k_ratio <= 0:
            raise ConfigError(f"k_ratio must be > 0, got {self.k_ratio}")
        if self.k_min < 1:
            raise ConfigError(f"k_min must be >= 1, got {self.k_min}")
        if self.k_max < self.k_min:
            raise ConfigError(f"k_max must be >= k_min ({self.k_min}), got {self.k_max}")
        if self.niter < 1:
            raise ConfigError(f"niter must be >= 1, got {self.niter}")
        if not 0.0 < self.prototype_fraction <= 1.0:
            raise ConfigError(
                f"prototype_fraction must be in (0, 1], got {self.prototype_fraction}"
            )


@dataclass(frozen=True, eq=False)
class PMFResult:
    """The three filter flags of each input row, its PMF similarity and the prototypes.

    ``pass_pmf`` is ``similarity >= tau`` for the config's ``tau``; :func:`select` re-thresholds
    ``similarity`` for any other ``tau``. ``prototypes`` maps a class label to its unit-norm
    prototypes, shape (k, D), for every class with at least one instance passing objectness and
    CLIP score.
    """

    pass_objectness: np.ndarray
    pass_clip: np.ndarray
    pass_pmf: np.ndarray
    similarity: np.ndarray
    valid_embedding: np.ndarray
    prototypes: dict[int, np.ndarray]
    tau: float

    @property
    def n_invalid(self) -> int:
        """How many rows have an embedding with NaN or inf entries or zero norm."""
        return int(np.count_nonzero(~self.valid_embedding))

    def columns(self) -> dict[str, np.ndarray]:
        """The per-row columns (:data:`ROW_COLUMNS`), ready to be stored next to the instances."""
        return {
            "pass_objectness": self.pass_objectness,
            "pass_clip": self.pass_clip,
            "pass_pmf": self.pass_pmf,
            "pmf_similarity": self.similarity,
            "valid_embedding": self.valid_embedding,
        }


def passes_threshold(score: np.ndarray, threshold: float) -> np.ndarray:
    """The paper's thresholding rule: keep scores at or above ``threshold`` (NaN never passes)."""
    return np.asarray(score) >= threshold


def class_k(n: int, cfg: PMFConfig) -> int:
    """How many prototypes a class with ``n`` instances gets: ``k^l`` of §3.1.

    ``clamp(round(k_ratio * n), k_min, k_max)``, rounding halves up, and never more than ``n``
    (k-means needs at least one point per centroid); 0 for an empty class, which has no
    prototypes. The paper only says ``k^l`` is proportional to ``n``; the bounds keep rare
    classes represented and k-means affordable for frequent ones.
    """
    if n < 0:
        raise ValueError(f"a class cannot have {n} instances")
    proportional = math.floor(cfg.k_ratio * n + 0.5)
    return min(n, max(cfg.k_min, min(cfg.k_max, proportional)))


def prototype_members(
    pass_objectness: np.ndarray, pass_clip: np.ndarray, valid_embedding: np.ndarray
) -> np.ndarray:
    """The rows that may build the prototypes: those passing both score filters."""
    return pass_objectness & pass_clip & valid_embedding


def confident_members(
    members: np.ndarray, labels: np.ndarray, clip_score: np.ndarray, fraction: float
) -> np.ndarray:
    """Per class, the ``ceil(fraction * n)`` of its ``n`` ``members`` with the highest CLIP score.

    ``members`` (N,) marks the candidate rows (:func:`prototype_members`), ``labels`` (N,) their
    classes and ``clip_score`` (N,) their CLIP score ``u``. Returns a boolean mask (N,), a
    subset of ``members`` holding at least one row of every class that has members; ties in
    score go to the earlier row. ``fraction`` 1.0 returns ``members`` unchanged.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    members = np.asarray(members, dtype=bool)
    if fraction == 1.0:
        return members.copy()
    labels, clip_score = np.asarray(labels), np.asarray(clip_score)
    keep = np.zeros_like(members)
    rows = np.flatnonzero(members)
    for _, class_rows in _class_rows(labels[rows]):
        candidates = rows[class_rows]
        # The tolerance keeps a product such as 0.3 * 10 = 3.0000000000000004 at 3.
        n = max(1, math.ceil(fraction * len(candidates) - 1e-9))
        order = np.argsort(-clip_score[candidates], kind="stable")
        keep[candidates[order[:n]]] = True
    return keep


def build_prototypes(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    k_ratio: float,
    k_min: int,
    k_max: int,
    niter: int,
    seed: int,
    use_gpu: bool | None = None,
) -> dict[int, np.ndarray]:
    """Per-class spherical k-means prototypes of ``embeddings`` (N, D) grouped by ``labels`` (N,).

    Returns ``{label: (k, D) float32 unit rows}`` for each label present, with ``k`` from
    :func:`class_k`; a class with one instance has that instance (normalised) as prototype, and
    a label absent from ``labels`` has no entry. Inputs are L2-normalised first, since
    prototypes are compared by cosine. Deterministic for a given ``seed``. Raises
    :class:`DataError` if a row has NaN or inf entries or zero norm.
    """
    cfg = PMFConfig(k_ratio=k_ratio, k_min=k_min, k_max=k_max, niter=niter, seed=seed)
    embeddings, labels = _check_rows(embeddings, labels)
    unit, valid = unit_rows(embeddings)
    if not valid.all():
        raise DataError(None, _invalid_rows_message(valid))
    return _prototypes_of_unit_rows(unit, labels, cfg, resolve_gpu(use_gpu))


def pmf_similarity(
    embeddings: np.ndarray,
    labels: np.ndarray,
    prototypes: dict[int, np.ndarray],
    *,
    use_gpu: bool | None = None,
) -> np.ndarray:
    """Each row's largest cosine similarity to a prototype of its own class; shape (N,), float32.

    Rows whose class has no prototypes get :data:`NO_PROTOTYPE` (``-inf``); rows with NaN or inf
    entries or zero norm get NaN. Both fail :func:`passes_threshold` at every ``tau``.
    """
    embeddings, labels = _check_rows(embeddings, labels)
    unit, valid = unit_rows(embeddings)
    return _similarity_of_unit_rows(unit, valid, labels, prototypes, resolve_gpu(use_gpu))


def filter_instances(
    objectness: np.ndarray,
    clip_score: np.ndarray,
    labels: np.ndarray,
    embeddings: np.ndarray,
    cfg: PMFConfig,
    *,
    source: str | os.PathLike[str] | None = None,
    use_gpu: bool | None = None,
) -> PMFResult:
    """Apply the three label-denoising filters of §3.1 to N instances; see the module docstring.

    ``objectness`` (N,) and ``clip_score`` (N,) are the scores ``o`` and ``u``, ``labels`` (N,)
    the CLIP classes of eq. 1 and ``embeddings`` (N, D) the CLIP image embeddings of the crops.
    ``source`` names the file the rows came from, for error messages. Non-finite scores raise
    :class:`DataError`; rows with unusable embeddings are flagged and counted (and logged).
    """
    embeddings, labels = _check_rows(embeddings, labels)
    objectness = _check_scores(objectness, "objectness", len(labels), source)
    clip_score = _check_scores(clip_score, "clip_score", len(labels), source)
    gpu = resolve_gpu(use_gpu)

    unit, valid = unit_rows(embeddings)
    if not valid.all():
        logger.warning(
            "%s: %s; they fail PMF and build no prototype",
            source or "embeddings",
            _invalid_rows_message(valid),
        )
    pass_objectness = passes_threshold(objectness, cfg.objectness_threshold)
    pass_clip = passes_threshold(clip_score, cfg.clip_threshold)
    members = confident_members(
        prototype_members(pass_objectness, pass_clip, valid),
        labels,
        clip_score,
        cfg.prototype_fraction,
    )
    prototypes = _prototypes_of_unit_rows(unit[members], labels[members], cfg, gpu)
    similarity = _similarity_of_unit_rows(unit, valid, labels, prototypes, gpu)
    return PMFResult(
        pass_objectness=pass_objectness,
        pass_clip=pass_clip,
        pass_pmf=passes_threshold(similarity, cfg.tau),
        similarity=similarity,
        valid_embedding=valid,
        prototypes=prototypes,
        tau=cfg.tau,
    )


def _prototypes_of_unit_rows(
    unit: np.ndarray, labels: np.ndarray, cfg: PMFConfig, use_gpu: bool
) -> dict[int, np.ndarray]:
    """:func:`build_prototypes` on rows already normalised and valid."""
    return {
        label: spherical_kmeans(
            unit[rows], class_k(len(rows), cfg), niter=cfg.niter, seed=cfg.seed, use_gpu=use_gpu
        )
        for label, rows in _class_rows(labels)
    }


def _similarity_of_unit_rows(
    unit: np.ndarray,
    valid: np.ndarray,
    labels: np.ndarray,
    prototypes: dict[int, np.ndarray],
    use_gpu: bool,
) -> np.ndarray:
    """:func:`pmf_similarity` on normalised rows; ``valid`` marks rows that have a direction."""
    similarity = np.full(len(labels), NO_PROTOTYPE, dtype=np.float32)
    similarity[~valid] = np.nan
    for label, rows in _class_rows(labels):
        if label not in prototypes:
            continue
        keys = prototypes[label]
        if keys.ndim != 2 or keys.shape[1] != unit.shape[1]:
            raise ValueError(
                f"prototypes of class {label} have shape {keys.shape}; "
                f"expected (k, {unit.shape[1]})"
            )
        keys, keys_valid = unit_rows(keys)
        if not keys_valid.all():
            raise ValueError(f"prototypes of class {label} have NaN/inf or zero-norm rows")
        rows = rows[valid[rows]]
        similarity[rows] = max_inner_product(unit[rows], keys, use_gpu=use_gpu)
    return similarity


def _class_rows(labels: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(label, row indices)`` for each distinct label, in increasing label order."""
    if len(labels) == 0:
        return
    order = np.argsort(labels, kind="stable")
    classes, starts = np.unique(labels[order], return_index=True)
    ends = [*starts[1:], len(order)]
    for label, start, end in zip(classes, starts, ends, strict=True):
        yield int(label), order[start:end]


def _check_rows(embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as arrays; ValueError unless ``embeddings`` is (N, D) floating, ``labels`` (N,) int."""
    embeddings, labels = np.asarray(embeddings), np.asarray(labels)
    if embeddings.ndim != 2 or not np.issubdtype(embeddings.dtype, np.floating):
        raise ValueError(
            f"embeddings must be a 2-D float array, got shape {embeddings.shape}, "
            f"dtype {embeddings.dtype}"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"labels must be a 1-D integer array, got shape {labels.shape}, dtype {labels.dtype}"
        )
    if len(labels) != len(embeddings):
        raise ValueError(
            f"labels {labels.shape} and embeddings {embeddings.shape} differ in length"
        )
    return embeddings, labels


def _check_scores(
    scores: np.ndarray, name: str, n: int, source: str | os.PathLike[str] | None
) -> np.ndarray:
    """``scores`` as a float array of shape (n,); DataError naming ``source`` if non-finite."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (n,):
        raise ValueError(f"{name} has shape {scores.shape}; expected ({n},) like labels")
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise DataError(
            source, f"{bad.size} rows have non-finite {name} scores (first: row {bad[0]})"
        )
    return scores


def _invalid_rows_message(valid: np.ndarray) -> str:
    """The count and first index of rows with unusable embeddings, for messages."""
    bad = np.flatnonzero(~valid)
    return (
        f"{bad.size} of {valid.size} rows have NaN/inf or zero-norm embeddings "
        f"(first: row {bad[0]})"
    )
