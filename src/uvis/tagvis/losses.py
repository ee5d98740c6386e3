"""The spatio-temporal tagging loss (Kini & Shah, §III-E, eqs. 1-6), one function per equation.

Notation of the paper: instance ``n`` of ``N`` in a clip of ``T`` frames; ``h'_nm`` the tag of
its ``m``-th sampled pixel; ``h_n`` their mean (eq. 1); ``h_nt`` the mean of its sampled pixels
in frame ``t``; ``G`` the margin (3 in the paper). Tags are unbounded real numbers (a margin of
3 could not be met by tags in [0, 1]).

Sampled tags come as ``tags`` ``(N, T, K)``: ``K`` pixels of instance ``n`` sampled in every
frame ``t`` where it is visible (``present[n, t]``); entries of absent frames are ignored. So
the paper's ``M'`` pixels of an instance are ``K`` times the frames it is visible in. An
instance with no visible frame in the clip does not count in ``N``.

Choices where the paper leaves room, each stated where it applies:

* **Reduction** (``reduction``, :data:`REDUCTIONS`). ``"sum"`` is the equations as written:
  eq. 2 sums over an instance's ``M'`` sampled pixels, eqs. 3 and 5 over all pairs (eq. 5 also
  over frames), eqs. 2 and 4 divide by ``N``. The paper does not give ``M'``, ``T`` is a
  choice too, and their product sets the weights: with ``K = 16`` pixels in 8 frames the
  pull of eq. 2 and the push of eq. 5 are each hundreds of times the cross-entropy's gradient
  (measured on the untrained default model; benchmarks/RESULTS.md), so the shared encoder
  learns the tags only and the semantic branch's gradient is lost in theirs. ``"mean"``
  (the ``default`` preset's) makes every term a mean over what it sums: eq. 2 over an
  instance's sampled pixels then over instances, eq. 3 over the pairs of visible instances, eq. 4 over an
  instance's visible frames then over instances, eq. 5 over the (pair, frame) entries where
  both are visible. Each term is then O(1), like the cross-entropy, whatever ``K``, ``T`` and
  ``N``; a term is zero exactly when it is zero under ``"sum"``.
* Eq. 5 separates "an arbitrary subset N' of instances" per frame: here every pair of instances
  visible in the same frame.
* Eq. 6 is the sum of the terms that are switched on (``TagVisConfig.spatial_intra`` ...): the
  paper's ablation removes one term at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from uvis.tagvis.config import REDUCTIONS

#: Names of the four terms of eq. 6, in the paper's order (the keys of :class:`TaggingLoss`).
TERMS = ("spatial_intra", "spatial_inter", "temporal_grouping", "temporal_separation")


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; known: {REDUCTIONS}")


def gather_tags(tag_map: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Tags ``(N, T, K)`` of sampled pixels: ``tag_map`` ``(T, H, W)``, ``pixels`` ``(N, T, K)``
    flat indices ``y * W + x`` into frame ``t`` (entries of absent frames may be anything valid).
    """
    num, frames, k = pixels.shape
    flat = tag_map.reshape(frames, -1)
    per_frame = pixels.permute(1, 0, 2).reshape(frames, num * k)
    return flat.gather(1, per_frame).reshape(frames, num, k).permute(1, 0, 2)


def _visible(present: torch.Tensor) -> torch.Tensor:
    """Instances visible in at least one frame of the clip: the ``N`` of the paper."""
    return present.any(dim=1)


def instance_mean_tags(tags: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Eq. 1: ``h_n``, the mean tag of each instance's sampled pixels, ``(N,)`` (0 if absent)."""
    weight = present[:, :, None].to(tags.dtype).expand_as(tags)
    return (tags * weight).sum(dim=(1, 2)) / weight.sum(dim=(1, 2)).clamp(min=1)


def frame_mean_tags(tags: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``h_nt``: the mean tag of instance ``n``'s sampled pixels in frame ``t``, ``(N, T)``
    (0 where absent)."""
    return tags.mean(dim=2) * present.to(tags.dtype)


def spatial_intra_instance_loss(
    tags: torch.Tensor, present: torch.Tensor, means: torch.Tensor, reduction: str = "sum"
) -> torch.Tensor:
    """Eq. 2: ``L_spectra = 1/N sum_n sum_m (h_n - h'_nm)^2`` - pulls an instance's pixels
    together. ``reduction="mean"``: ``1/N sum_n 1/M'_n sum_m``."""
    _check_reduction(reduction)
    visible = _visible(present)
    if not visible.any():
        return tags.sum() * 0
    weight = present[:, :, None].to(tags.dtype).expand_as(tags)
    per_instance = ((tags - means[:, None, None]) ** 2 * weight).sum(dim=(1, 2))
    if reduction == "mean":
        per_instance = per_instance / weight.sum(dim=(1, 2)).clamp(min=1)
    return per_instance.sum() / visible.sum()


def spatial_inter_instance_loss(
    means: torch.Tensor, present: torch.Tensor, margin: float, reduction: str = "sum"
) -> torch.Tensor:
    """Eq. 3: ``L_specter = sum_{n < n'} max(0, G - |h_n - h_n'|)`` - pushes instances at least
    ``G`` apart. ``reduction="mean"``: the mean over the pairs (0 with fewer than two)."""
    _check_reduction(reduction)
    visible = _visible(present)
    pairs = torch.triu(visible[:, None] & visible[None, :], diagonal=1).to(means.dtype)
    gap = (means[:, None] - means[None, :]).abs()
    total = (torch.relu(margin - gap) * pairs).sum()
    return total / pairs.sum().clamp(min=1) if reduction == "mean" else total


def temporal_instance_grouping_loss(
    means: torch.Tensor, frame_means: torch.Tensor, present: torch.Tensor, reduction: str = "sum"
) -> torch.Tensor:
    """Eq. 4: ``L_tempra = 1/N sum_n sum_t (h_n - h_nt)^2`` over the frames where ``n`` is
    visible - keeps an instance's tag the same in every frame. ``reduction="mean"``:
    ``1/N sum_n 1/T_n sum_t`` (``T_n`` the frames where ``n`` is visible)."""
    _check_reduction(reduction)
    visible = _visible(present)
    if not visible.any():
        return frame_means.sum() * 0
    weight = present.to(frame_means.dtype)
    per_instance = ((means[:, None] - frame_means) ** 2 * weight).sum(dim=1)
    if reduction == "mean":
        per_instance = per_instance / weight.sum(dim=1).clamp(min=1)
    return per_instance.sum() / visible.sum()


def temporal_instance_separation_loss(
    frame_means: torch.Tensor, present: torch.Tensor, margin: float, reduction: str = "sum"
) -> torch.Tensor:
    """Eq. 5: ``L_temper = sum_{n < n'} sum_t max(0, G - |h_nt - h_n't|)`` over the pairs visible
    together in frame ``t`` - keeps instances apart in every frame. ``reduction="mean"``: the
    mean over those (pair, frame) entries."""
    _check_reduction(reduction)
    together = present[:, None, :] & present[None, :, :]  # (N, N, T)
    upper = torch.triu(torch.ones_like(together[:, :, 0]), diagonal=1)
    gap = (frame_means[:, None, :] - frame_means[None, :, :]).abs()
    mask = (together & upper[:, :, None]).to(frame_means.dtype)
    total = (torch.relu(margin - gap) * mask).sum()
    return total / mask.sum().clamp(min=1) if reduction == "mean" else total


@dataclass(frozen=True, eq=False)
class TaggingLoss:
    """Eq. 6 for one clip: ``total`` (the sum of the enabled terms) and every term by name
    (:data:`TERMS`; a disabled term is still computed, detached, for the loss curve)."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]


def tagging_loss(
    tags: torch.Tensor,
    present: torch.Tensor,
    *,
    margin: float,
    enabled: frozenset[str] = frozenset(TERMS),
    reduction: str = "sum",
) -> TaggingLoss:
    """Eq. 6: ``L_tag = L_spectra + L_specter + L_tempra + L_temper`` over the ``enabled`` terms.

    ``tags`` ``(N, T, K)`` are the sampled pixels' tags, ``present`` ``(N, T)`` where each
    instance is visible. A disabled term contributes no gradient. ``reduction``: ``"sum"``
    (the equations as written) or ``"mean"`` (every term a mean; see the module docstring).
    """
    unknown = set(enabled) - set(TERMS)
    if unknown:
        raise ValueError(f"unknown tagging loss terms {sorted(unknown)}; known: {TERMS}")
    means = instance_mean_tags(tags, present)
    frame_means = frame_mean_tags(tags, present)
    terms = {
        "spatial_intra": spatial_intra_instance_loss(tags, present, means, reduction),
        "spatial_inter": spatial_inter_instance_loss(means, present, margin, reduction),
        "temporal_grouping": temporal_instance_grouping_loss(
            means, frame_means, present, reduction
        ),
        "temporal_separation": temporal_instance_separation_loss(
            frame_means, present, margin, reduction
        ),
    }
    total = sum((terms[name] for name in TERMS if name in enabled), tags.sum() * 0)
    logged = {name: value if name in enabled else value.detach() for name, value in terms.items()}
    return TaggingLoss(total=total, terms=logged)
