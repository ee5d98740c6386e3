"""What a per-frame query-based segmentation model hands to tracking.

The contract between the VIS model (:mod:`uvis.model`) and query tracking
(:mod:`uvis.tracking`): for every frame, the decoder's output query embeddings, their class
logits and their mask logits. Tracking only ever sees this container, so any model that
produces it (Mask2Former here, another per-frame query model later) can be tracked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrameQueries:
    """Per-frame outputs of a query-based model (MinVIS: the last decoder layer).

    Attributes:
        embeddings: (Q, D) float32 query embeddings of the last decoder layer, *not*
            normalised (matching normalises them for cosine similarity).
        class_logits: (Q, C + 1) float32 class logits; the last column is "no object".
        mask_logits: (Q, h, w) float32 mask logits at the model's output resolution, covering
            the resized input image (without padding).
        frame_size: (H, W) of the original frame, the size masks are resized to for output.
        mask_scores: optional (Q,) confidence of each query's mask, for tracking's
            ``mask_score`` ranking. None: tracking computes it from ``mask_logits``; set by a
            post-processing that replaces the model's logits (output refinement) to keep the
            model's confidence.
    """

    embeddings: np.ndarray
    class_logits: np.ndarray
    mask_logits: np.ndarray
    frame_size: tuple[int, int]
    mask_scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        q = self.embeddings.shape[0]
        if self.embeddings.ndim != 2:
            raise ValueError(f"embeddings must be (Q, D), got shape {self.embeddings.shape}")
        if self.class_logits.ndim != 2 or self.class_logits.shape[0] != q:
            raise ValueError(
                f"class_logits must be (Q={q}, C+1), got shape {self.class_logits.shape}"
            )
        if self.mask_logits.ndim != 3 or self.mask_logits.shape[0] != q:
            raise ValueError(
                f"mask_logits must be (Q={q}, h, w), got shape {self.mask_logits.shape}"
            )
        if self.mask_scores is not None and self.mask_scores.shape != (q,):
            raise ValueError(f"mask_scores must be (Q={q},), got shape {self.mask_scores.shape}")
        if len(self.frame_size) != 2 or min(self.frame_size) < 1:
            raise ValueError(f"frame_size must be (H, W) >= 1, got {self.frame_size}")

    @property
    def num_queries(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of real classes C (the no-object column excluded)."""
        return int(self.class_logits.shape[1] - 1)
