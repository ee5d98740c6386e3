"""Masks -> rows of the proposals artefact (schema ``uvis.schemas.PROPOSALS``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from uvis import masks as rle
from uvis.schemas import PROPOSALS


class ProposalRows:
    """Accumulates proposals frame by frame and turns them into one Arrow table."""

    def __init__(self) -> None:
        self._cols: dict[str, list] = {f.name: [] for f in PROPOSALS.schema}
        self.frames = 0
        self.empty_frames = 0

    def add_frame(
        self,
        video_id: int,
        frame_index: int,
        frame_masks: Sequence[np.ndarray],
        scores: Sequence[float] | None,
        source: str,
    ) -> None:
        """Add one frame's masks (bool ``(H, W)``), in proposal-id order; empty masks skipped."""
        self.frames += 1
        kept = 0
        for i, mask in enumerate(frame_masks):
            if not mask.any():
                continue
            enc = rle.encode(mask)
            c = self._cols
            c["video_id"].append(int(video_id))
            c["frame_index"].append(int(frame_index))
            c["proposal_id"].append(kept)
            c["box"].append(rle.bbox_xywh(enc))
            c["area"].append(int(mask.sum()))
            c["height"].append(int(mask.shape[0]))
            c["width"].append(int(mask.shape[1]))
            c["rle"].append(enc["counts"])
            c["objectness"].append(None if scores is None else float(scores[i]))
            c["source"].append(source)
            kept += 1
        if kept == 0:
            self.empty_frames += 1

    def __len__(self) -> int:
        return len(self._cols["video_id"])

    def table(self) -> pa.Table:
        return pa.table(self._cols, schema=PROPOSALS.schema)
