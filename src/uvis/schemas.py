"""The artefacts that flow between stages: Parquet schemas and their column meanings.

This module is the one place where each artefact's columns are defined and documented;
``docs/ARTEFACTS.md`` is generated from it (``uvis schemas``), and readers and writers use
the schemas here to validate what they read and write.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Artefact:
    """A named Parquet artefact: its schema and one line of meaning per column."""

    name: str
    description: str
    schema: pa.Schema
    columns: dict[str, str]

    def read(self, path: str | os.PathLike[str]) -> pa.Table:
        """Read a Parquet file of this artefact; DataError naming the file if it is not one."""
        import pyarrow.parquet as pq

        from uvis.errors import DataError

        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise DataError(path, f"cannot read {self.name}: {exc}") from exc
        self.check(table, str(path))
        return table

    def check(self, table: pa.Table, path: str) -> None:
        """Raise :class:`uvis.errors.DataError` if ``table`` lacks a column of this artefact."""
        from uvis.errors import DataError

        missing = [f.name for f in self.schema if f.name not in table.column_names]
        if missing:
            raise DataError(path, f"not a {self.name} artefact: missing columns {missing}")


FRAME_INDEX = Artefact(
    name="frame index",
    description=(
        "One row per frame of one split of a dataset, in video order. Written by the "
        "`frames` rule (`uvis data index` / `uvis data extract`); the one view of frames that "
        "every later stage reads, whatever the dataset format."
    ),
    schema=pa.schema(
        [
            pa.field("video_id", pa.int64(), nullable=False),
            pa.field("video_name", pa.string(), nullable=False),
            pa.field("frame_index", pa.int32(), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            pa.field("height", pa.int32(), nullable=False),
            pa.field("width", pa.int32(), nullable=False),
        ]
    ),
    columns={
        "video_id": "Video id: the YouTube-VIS `videos[].id`; for DAVIS and video folders, "
        "1-based position of the sequence in sorted name order.",
        "video_name": "Folder name of the video (YouTube-VIS `file_names` folder, DAVIS "
        "sequence, or video file stem).",
        "frame_index": "0-based position of the frame within the (strided) video; the index "
        "into YouTube-VIS `segmentations` lists.",
        "path": "Absolute path of the JPEG frame (in place for JPEG datasets; the extracted "
        "file for video files).",
        "height": "Frame height in pixels, as stored on disk.",
        "width": "Frame width in pixels, as stored on disk.",
    },
)

_KEY_FIELDS = [
    pa.field("video_id", pa.int64(), nullable=False),
    pa.field("frame_index", pa.int32(), nullable=False),
    pa.field("proposal_id", pa.int32(), nullable=False),
]
_KEY_DOCS = {
    "video_id": "Video id, as in the frame index.",
    "frame_index": "Frame position, as in the frame index.",
    "proposal_id": "0-based id of the proposal within its frame; (video_id, frame_index, "
    "proposal_id) is the key shared by proposals, CLIP scores and pseudo-labels.",
}
_MASK_FIELDS = [
    pa.field("box", pa.list_(pa.float32(), 4), nullable=False),
    pa.field("area", pa.int64(), nullable=False),
    pa.field("height", pa.int32(), nullable=False),
    pa.field("width", pa.int32(), nullable=False),
    pa.field("rle", pa.string(), nullable=False),
]
_MASK_DOCS = {
    "box": "Tight box [x, y, w, h] of the mask, in pixels of the frame.",
    "area": "Mask area in pixels.",
    "height": "Frame height (the RLE's size).",
    "width": "Frame width (the RLE's size).",
    "rle": "Mask as compressed COCO RLE counts (column-major, pycocotools), with size "
    "[height, width]; `uvis.masks.decode({'size': [h, w], 'counts': rle})`.",
}

PROPOSALS = Artefact(
    name="proposals",
    description=(
        "Class-agnostic mask proposals, one row per mask, one file per shard of videos. "
        "Written by the `proposals` rule (MaskCut masks scored by the class-agnostic detector "
        "trained on them, as CutLER's learn step; or the CutLER checkpoint through detectron2)."
    ),
    schema=pa.schema(
        [
            *_KEY_FIELDS,
            *_MASK_FIELDS,
            pa.field("objectness", pa.float32(), nullable=True),
            pa.field("source", pa.string(), nullable=False),
        ]
    ),
    columns={
        **_KEY_DOCS,
        **_MASK_DOCS,
        "objectness": "Objectness score in [0, 1] of the class-agnostic detector (null for raw "
        "MaskCut masks, which have none).",
        "source": "Which backend made the mask: `maskcut`, `learned` (detector trained on "
        "MaskCut masks) or `cutler` (official checkpoint).",
    },
)

CLIP_SCORES = Artefact(
    name="CLIP scores",
    description=(
        "CLIP labels of proposals (UVIS eq. 1), one row per proposal, one file per shard. "
        "Written by the `clip_scores` rule."
    ),
    schema=pa.schema(
        [
            *_KEY_FIELDS,
            pa.field("class_id", pa.int32(), nullable=False),
            pa.field("class_score", pa.float32(), nullable=False),
            pa.field("embedding", pa.list_(pa.float16()), nullable=False),
        ]
    ),
    columns={
        **_KEY_DOCS,
        "class_id": "Category id (dataset vocabulary) whose prompt embedding has the highest "
        "cosine similarity with the crop's image embedding: argmax of UVIS eq. 1.",
        "class_score": "Softmax probability of that class over the vocabulary at CLIP's logit "
        "scale (the quantity thresholded at 0.7; raw CLIP cosines are ~0.2-0.35).",
        "embedding": "L2-normalised CLIP image embedding of the crop, float16, fixed length D "
        "(the model's embedding width) in a file.",
    },
)

PSEUDO_LABELS = Artefact(
    name="pseudo-labels",
    description=(
        "Every proposal with its CLIP label and the three filter flags, one file per split. "
        "Written by the `filter` rule (prototype memory filtering). UVIS Table 2's rows are "
        "selections: no filter (all rows), + mask score (`pass_objectness`), + CLIP score "
        "(`& pass_clip`), + PMF (`& pass_pmf`); Table 3's tau sweep re-thresholds "
        "`pmf_similarity`."
    ),
    schema=pa.schema(
        [
            *_KEY_FIELDS,
            *_MASK_FIELDS,
            pa.field("class_id", pa.int32(), nullable=False),
            pa.field("objectness", pa.float32(), nullable=True),
            pa.field("class_score", pa.float32(), nullable=False),
            pa.field("pmf_similarity", pa.float32(), nullable=False),
            pa.field("pass_objectness", pa.bool_(), nullable=False),
            pa.field("pass_clip", pa.bool_(), nullable=False),
            pa.field("pass_pmf", pa.bool_(), nullable=False),
            pa.field("valid_embedding", pa.bool_(), nullable=False),
        ]
    ),
    columns={
        **_KEY_DOCS,
        **_MASK_DOCS,
        "class_id": "CLIP-assigned category id (see CLIP scores).",
        "objectness": "Objectness score (see proposals).",
        "class_score": "CLIP class score (see CLIP scores).",
        "pmf_similarity": "Largest cosine similarity between the row's CLIP embedding and the "
        "prototypes (k-means centroids) of its class; -inf where the class has no prototype, "
        "NaN where the embedding is unusable (both fail every tau).",
        "pass_objectness": "objectness >= the objectness threshold (0.7 in the paper).",
        "pass_clip": "class_score >= the CLIP score threshold (0.7 in the paper).",
        "pass_pmf": "pmf_similarity >= tau (0.7 in the paper).",
        "valid_embedding": "False where the CLIP embedding had NaN/inf values or zero norm (such "
        "rows are kept in the file, flagged, counted and fail PMF; never silently dropped).",
    },
)

TRACKS = Artefact(
    name="tracks",
    description=(
        "Video instance segmentation results with their tracking provenance, one row per "
        "result and frame of its video (null masks included), so the YouTube-VIS results "
        "JSON written beside it can be rebuilt row for row. Written by the `track` rule "
        "(query tracking, `uvis.tracking.track_video`) and the `deepsort` rule (DeepSORT "
        "baseline on pseudo-labels)."
    ),
    schema=pa.schema(
        [
            pa.field("video_id", pa.int64(), nullable=False),
            pa.field("result_id", pa.int32(), nullable=False),
            pa.field("track_id", pa.int32(), nullable=False),
            pa.field("category_id", pa.int32(), nullable=False),
            pa.field("score", pa.float32(), nullable=False),
            pa.field("frame_index", pa.int32(), nullable=False),
            pa.field("source_id", pa.int32(), nullable=True),
            pa.field("height", pa.int32(), nullable=False),
            pa.field("width", pa.int32(), nullable=False),
            pa.field("rle", pa.string(), nullable=True),
        ]
    ),
    columns={
        "video_id": "Video id, as in the frame index and the results JSON.",
        "result_id": "0-based position of the result among its video's results in the results "
        "JSON (decreasing score); (video_id, result_id) identifies a result.",
        "track_id": "The tracker's identity of the track: for query tracking, the query index "
        "the track started from in the video's first frame (one track can give several "
        "results, one per class among the top-k pairs); for DeepSORT, the track number in "
        "order of birth (1-based).",
        "category_id": "Category id of the result (dataset vocabulary).",
        "score": "Score of the result, as in the results JSON.",
        "frame_index": "0-based frame position, the index into the result's `segmentations`.",
        "source_id": "What the track took in this frame: the model's query index (query "
        "tracking) or the pseudo-label's `proposal_id` (DeepSORT); null where it took nothing.",
        "height": "Frame height (the RLE's size).",
        "width": "Frame width (the RLE's size).",
        "rle": "Mask as compressed COCO RLE counts with size [height, width]; null where the "
        "result's segmentation is null in this frame (no or an empty mask).",
    },
)

ALL_ARTEFACTS: tuple[Artefact, ...] = (FRAME_INDEX, PROPOSALS, CLIP_SCORES, PSEUDO_LABELS, TRACKS)


def render_markdown() -> str:
    """Render every artefact's schema as Markdown (the content of docs/ARTEFACTS.md)."""
    lines = [
        "# Artefact schemas",
        "",
        "Generated by `uvis schemas` from `src/uvis/schemas.py`; do not edit by hand.",
        "",
    ]
    for art in ALL_ARTEFACTS:
        lines += [
            f"## {art.name}",
            "",
            art.description,
            "",
            "| column | type | meaning |",
            "|---|---|---|",
        ]
        for field in art.schema:
            lines.append(f"| `{field.name}` | `{field.type}` | {art.columns[field.name]} |")
        lines.append("")
    return "\n".join(lines)
