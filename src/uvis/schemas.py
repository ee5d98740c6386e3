"""The artefacts that flow between stages: Parquet schemas and their column meanings.

This module is the one place where each artefact's columns are defined and documented;
``docs/ARTEFACTS.md`` is generated from it (``uvis schemas``), and readers and writers use
the schemas here to validate what they read and write.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Artefact:
    """A named Parquet artefact: its schema, one line of meaning per column, and the range of
    values each numeric column may hold (``ranges``: column -> (lowest, highest), None for
    unbounded; NaN is out of every range unless the column is listed in ``nan_ok``).

    Readers go through :meth:`read`, which checks columns, types, nulls, ranges and, where the
    artefact has ``rle``/``height``/``width`` columns, that every mask is a valid RLE of its
    frame size; so a file damaged or written by another tool fails with one line naming the
    file, the column and the first bad row, never later inside a stage.
    """

    name: str
    description: str
    schema: pa.Schema
    columns: dict[str, str]
    ranges: dict[str, tuple[float | None, float | None]] = dataclasses.field(default_factory=dict)
    nan_ok: frozenset[str] = frozenset()

    def read(self, path: str | os.PathLike[str]) -> pa.Table:
        """Read a Parquet file of this artefact, checked (:meth:`check`) and cast to the schema's
        types; DataError naming the file if it is not one."""
        import pyarrow.parquet as pq

        from uvis.errors import DataError

        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(path, f"cannot read {self.name}: {exc}") from exc
        return self.check(table, str(path))

    def check(self, table: pa.Table, path: str) -> pa.Table:
        """``table`` with this artefact's columns cast to the schema's types (other columns
        kept); :class:`uvis.errors.DataError` naming ``path`` and the first problem found."""
        from uvis.errors import DataError

        missing = [f.name for f in self.schema if f.name not in table.column_names]
        if missing:
            raise DataError(path, f"not a {self.name} artefact: missing columns {missing}")
        for f in self.schema:
            column = table.column(f.name)
            if column.type != f.type:
                column = _cast_column(column, f, self.name, path)
                table = table.set_column(table.column_names.index(f.name), f.name, column)
            if not f.nullable and column.null_count:
                first = _first_true(column.is_null())
                raise DataError(
                    path,
                    f"{self.name}: column '{f.name}' has {column.null_count} null values "
                    f"(first: row {first}); it may not have any",
                )
            if f.name in self.ranges:
                _check_range(column, f.name, self.ranges[f.name], f.name in self.nan_ok, self, path)
        if {"rle", "height", "width"} <= set(self.schema.names):
            _check_rles(table, self.name, path)
        return table


def _first_true(mask: pa.ChunkedArray | pa.Array) -> int:
    """Row number of the first true value of a boolean column (nulls count as false)."""
    import pyarrow.compute as pc

    return int(pc.index(pc.fill_null(mask, False), True).as_py())


def _cast_column(column: pa.ChunkedArray, f: pa.Field, name: str, path: str) -> pa.ChunkedArray:
    """``column`` cast to ``f``'s type where the values mean the same (a number to a wider or
    narrower number that holds it); a DataError for anything else (e.g. numbers as strings)."""
    from uvis.errors import DataError

    def numeric(t: pa.DataType) -> bool:
        while pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t):
            t = t.value_type
        return pa.types.is_integer(t) or pa.types.is_floating(t)

    def kind(t: pa.DataType) -> str:
        if pa.types.is_list(t) or pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t):
            return "list"
        return "bool" if pa.types.is_boolean(t) else "number" if numeric(t) else str(t)

    same_kind = kind(column.type) == kind(f.type) and (
        kind(f.type) != "list" or numeric(column.type) == numeric(f.type)
    )
    string_like = pa.types.is_string(f.type) and pa.types.is_large_string(column.type)
    if same_kind or string_like:
        try:
            return column.cast(f.type, safe=True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise DataError(
                path,
                f"{name}: column '{f.name}' of type {column.type} does not fit {f.type}: {exc}",
            ) from None
    raise DataError(path, f"{name}: column '{f.name}' has type {column.type}, expected {f.type}")


def _check_range(
    column: pa.ChunkedArray,
    name: str,
    bounds: tuple[float | None, float | None],
    nan_ok: bool,
    artefact: Artefact,
    path: str,
) -> None:
    """DataError naming the first value of ``column`` outside ``bounds`` (or NaN)."""
    import numpy as np

    from uvis.errors import DataError

    present = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), bool)
    values = np.asarray(column.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.float64)
    lo, hi = bounds
    bad = np.zeros(values.shape, bool)
    if not nan_ok:
        bad |= np.isnan(values) & present
    with np.errstate(invalid="ignore"):
        if lo is not None:
            bad |= values < lo
        if hi is not None:
            bad |= values > hi
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        span = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
        raise DataError(
            path,
            f"{artefact.name}: column '{name}' has {int(bad.sum())} values outside {span} "
            f"(first: row {first}, value {values[first]})",
        )


def _check_rles(table: pa.Table, name: str, path: str) -> None:
    """DataError naming the first row whose ``rle`` is not a valid mask of its frame size."""
    from uvis import masks
    from uvis.errors import DataError

    cols = table.select(["rle", "height", "width"]).to_pydict()
    keys = [k for k in ("video_id", "frame_index") if k in table.column_names]
    for row, (counts, h, w) in enumerate(
        zip(cols["rle"], cols["height"], cols["width"], strict=True)
    ):
        if counts is None:
            continue
        problem = masks.rle_problem({"size": [h, w], "counts": counts}, h, w)
        if problem is not None:
            where = ", ".join(f"{k} {table.column(k)[row].as_py()}" for k in keys)
            raise DataError(path, f"{name}: row {row} ({where}): {problem}")


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
    ranges={
        "video_id": (0, None),
        "frame_index": (0, None),
        "height": (1, None),
        "width": (1, None),
    },
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
_KEY_RANGES: dict[str, tuple[float | None, float | None]] = {
    "video_id": (0, None),
    "frame_index": (0, None),
    "proposal_id": (0, None),
}
_MASK_RANGES: dict[str, tuple[float | None, float | None]] = {
    "area": (0, None),
    "height": (1, None),
    "width": (1, None),
}
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
    ranges={**_KEY_RANGES, **_MASK_RANGES, "objectness": (0.0, 1.0)},
    nan_ok=frozenset({"objectness"}),  # NaN, like null: no score (raw MaskCut masks)
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
    ranges={**_KEY_RANGES, "class_id": (0, None), "class_score": (0.0, 1.0)},
    columns={
        **_KEY_DOCS,
        "class_id": "Category id (dataset vocabulary) whose prompt embedding has the highest "
        "cosine similarity with the crop's image embedding: argmax of UVIS eq. 1.",
        "class_score": "Softmax probability of that class over the vocabulary at CLIP's logit "
        "scale (the quantity thresholded at 0.7; raw CLIP cosines are ~0.2-0.35).",
        "embedding": "L2-normalised CLIP image embedding of the crop, float16, fixed length D "
        "(the model's embedding width; for an ensemble of K checkpoints, the members' "
        "normalised embeddings concatenated and divided by sqrt(K)) in a file.",
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
    ranges={
        **_KEY_RANGES,
        **_MASK_RANGES,
        "class_id": (0, None),
        "objectness": (0.0, 1.0),
        "class_score": (0.0, 1.0),
        # A cosine (float32 rounding allowed); -inf where the class has no prototype.
        "pmf_similarity": (None, 1.001),
    },
    nan_ok=frozenset({"pmf_similarity", "objectness"}),
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
    ranges={
        "video_id": (0, None),
        "result_id": (0, None),
        "track_id": (0, None),
        "category_id": (0, None),
        "score": (None, None),
        "frame_index": (0, None),
        "source_id": (0, None),
        "height": (1, None),
        "width": (1, None),
    },
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
