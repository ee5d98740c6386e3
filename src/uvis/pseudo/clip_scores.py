"""The ``clip_scores`` stage: label every proposal of a shard with CLIP (UVIS eq. 1).

Each proposal is cropped by its box with a context margin (optionally with the background
outside its mask filled), the crops go through the CLIP image encoder in batches, and each is
assigned the vocabulary class whose prompt embedding is closest (eq. 1); its class score is
the softmax probability of that class at CLIP's logit scale (see
:func:`uvis.foundation.clip.classify`). The L2-normalised image embedding is stored (float16)
for prototype memory filtering.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from uvis.data.frame_index import FrameIndex
from uvis.data.frames import Category, read_frame
from uvis.errors import DataError
from uvis.io import atomic_path
from uvis.progress import progress_bar
from uvis.schemas import CLIP_SCORES, PROPOSALS

logger = logging.getLogger(__name__)


def read_proposals(path: str | Path) -> pa.Table:
    """A proposals shard, checked against its schema."""
    return PROPOSALS.read(path)


def _embedding_column(emb: np.ndarray) -> pa.Array:
    """(N, D) -> a fixed-size list<float16>[D] column."""
    flat = pa.array(emb.astype(np.float16).reshape(-1), pa.float16())
    return pa.FixedSizeListArray.from_arrays(flat, emb.shape[1])


def score_proposals(
    frame_index: Path,
    proposals_path: Path,
    out_path: Path,
    bundle,
    categories: Sequence[Category],
    *,
    templates: Sequence[str] = ("a photo of a {}.",),
    context: float = 0.1,
    mask_background: str | None = None,
    flip: bool = False,
    batch_size: int = 256,
    progress: bool = True,
) -> dict[str, int]:
    """Label one shard of proposals with CLIP and write the CLIP-scores Parquet atomically.

    ``flip``: embed each crop with its horizontal mirror (test-time flip averaging).
    """
    from uvis.foundation.clip import classify, crop_regions, image_embeddings, text_embeddings

    if not categories:
        raise DataError(proposals_path, "the vocabulary is empty")
    props = read_proposals(proposals_path)
    paths = {key: path for key, (path, _, _) in FrameIndex.read(frame_index).frame_files().items()}
    text = text_embeddings(bundle, [c.name for c in categories], templates)
    by_frame: dict[tuple[int, int], list[int]] = defaultdict(list)
    data = props.select(["video_id", "frame_index", "box", "rle", "height", "width"]).to_pydict()
    for i, key in enumerate(zip(data["video_id"], data["frame_index"], strict=True)):
        by_frame[key].append(i)

    order: list[int] = []
    embeddings: list[torch.Tensor] = []
    pending_rows: list[int] = []
    pending_crops: list[np.ndarray] = []

    def flush() -> None:
        if pending_crops:
            embeddings.append(
                image_embeddings(bundle, pending_crops, batch_size=batch_size, flip=flip)
            )
            order.extend(pending_rows)
            pending_rows.clear()
            pending_crops.clear()

    for key, rows in progress_bar(
        by_frame.items(), desc="clip crops", disable=not progress, unit="frame"
    ):
        if key not in paths:
            raise DataError(
                proposals_path, f"proposal for video {key[0]} frame {key[1]} not in {frame_index}"
            )
        image = read_frame(paths[key])
        h, w = image.shape[:2]
        rles = []
        for i in rows:
            if (data["height"][i], data["width"][i]) != (h, w):
                raise DataError(
                    proposals_path,
                    f"mask of video {key[0]} frame {key[1]} is {data['width'][i]}x{data['height'][i]}, "
                    f"frame {paths[key]} is {w}x{h}",
                )
            rles.append({"size": [h, w], "counts": data["rle"][i]})
        boxes = np.asarray([data["box"][i] for i in rows], dtype=np.float64)
        crops = crop_regions(
            image,
            boxes,
            rles if mask_background else None,
            context=context,
            mask_background=mask_background,
        )
        pending_rows.extend(rows)
        pending_crops.extend(crops)
        if len(pending_crops) >= batch_size:
            flush()
    flush()

    n = props.num_rows
    if n == 0:
        logger.warning("%s: no proposals in this shard; writing an empty table", proposals_path)
        with atomic_path(out_path) as tmp:
            pq.write_table(CLIP_SCORES.schema.empty_table(), tmp)
        return {"proposals": 0, "frames": 0, "nan_embeddings": 0}
    dim = int(text.shape[1])
    emb = torch.cat(embeddings).numpy()
    if emb.shape[1] != dim:
        raise DataError(bundle.weights, f"image embeddings have width {emb.shape[1]}, text {dim}")
    inverse = np.empty(n, dtype=np.int64)
    inverse[np.asarray(order, dtype=np.int64)] = np.arange(n)
    emb = emb[inverse]
    labels = classify(torch.from_numpy(emb), text, bundle.logit_scale)
    nan_rows = int(np.isnan(emb).any(axis=1).sum())
    if nan_rows:
        logger.warning(
            "%s: %d crops have NaN embeddings (kept, flagged by the filter)", out_path, nan_rows
        )
    ids = np.asarray([c.id for c in categories], dtype=np.int32)
    table = pa.table(
        {
            "video_id": props.column("video_id"),
            "frame_index": props.column("frame_index"),
            "proposal_id": props.column("proposal_id"),
            "class_id": pa.array(ids[labels.class_index.numpy()], pa.int32()),
            "class_score": pa.array(labels.class_score.numpy().astype(np.float32), pa.float32()),
            "embedding": _embedding_column(emb),
        }
    )
    CLIP_SCORES.check(table, str(out_path))
    with atomic_path(out_path) as tmp:
        pq.write_table(table, tmp)
    return {"proposals": n, "frames": len(by_frame), "nan_embeddings": nan_rows}
