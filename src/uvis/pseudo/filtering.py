"""The ``filter`` stage: proposals + CLIP scores -> pseudo-labels with the three filter flags.

Rows are joined on (video_id, frame_index, proposal_id). Every proposal is kept in the output
with its flags, so the denoising levels of UVIS Table 2 and the tau sweep of Table 3 are
selections of one file (:func:`uvis.pseudo.levels.select`). A proposal without CLIP scores (or the
reverse) means the shards do not belong together: that is an error naming the files.
Proposals without an objectness score (raw MaskCut masks) never pass a positive objectness
threshold; their count is logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from uvis.errors import DataError
from uvis.io import atomic_path
from uvis.prototypes import PMFConfig, PMFResult, filter_instances
from uvis.schemas import CLIP_SCORES, PROPOSALS, PSEUDO_LABELS, Artefact

logger = logging.getLogger(__name__)

KEYS = ["video_id", "frame_index", "proposal_id"]


def read_shards(paths: Sequence[str | os.PathLike[str]], artefact: Artefact) -> pa.Table:
    """Concatenate Parquet shards of one artefact, checking each one's columns."""
    tables = []
    for path in paths:
        table = artefact.read(path)
        tables.append(table.select([f.name for f in artefact.schema]))
    if not tables:
        return artefact.schema.empty_table()
    return pa.concat_tables(tables, promote_options="permissive")


def embedding_matrix(column: pa.ChunkedArray, source: str) -> np.ndarray:
    """The embedding list column as an (N, D) float32 array; all rows must have one length."""
    if len(column) == 0:
        return np.zeros((0, 0), np.float32)
    flat = column.combine_chunks()
    lengths = pc.list_value_length(flat).to_numpy(zero_copy_only=False)
    if lengths.min() != lengths.max():
        raise DataError(
            source, f"CLIP embeddings of different lengths ({lengths.min()}, {lengths.max()})"
        )
    values = flat.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return values.reshape(len(flat), int(lengths[0]))


def _key_array(table: pa.Table) -> np.ndarray:
    return np.stack([table.column(k).to_numpy(zero_copy_only=False) for k in KEYS], axis=1)


def _align(proposals: pa.Table, clip: pa.Table, source: str) -> pa.Table:
    """Proposals and their CLIP scores side by side, row for row, sorted by key.

    (A hash join would do, but Arrow's cannot carry the list columns.)
    """
    order = [(k, "ascending") for k in KEYS]
    p, c = proposals.sort_by(order), clip.sort_by(order)
    pk, ck = _key_array(p), _key_array(c)
    if pk.shape != ck.shape or not np.array_equal(pk, ck):
        common = len({tuple(r) for r in pk} & {tuple(r) for r in ck})
        raise DataError(
            source,
            f"proposals ({p.num_rows} rows) and CLIP scores ({c.num_rows} rows) do not match row "
            f"for row ({common} keys in common): were they made from the same proposal shards?",
        )
    if len(pk) and len(np.unique(pk, axis=0)) != len(pk):
        raise DataError(source, "duplicate (video_id, frame_index, proposal_id) keys in proposals")
    for name in c.column_names:
        if name not in KEYS:
            p = p.append_column(name, c.column(name))
    return p


def build_pseudo_labels(
    proposals: pa.Table, clip: pa.Table, cfg: PMFConfig, *, source: str = "shards"
) -> tuple[pa.Table, PMFResult]:
    """Join proposals with their CLIP scores and apply the three filters (UVIS §3.1)."""
    joined = _align(proposals, clip, source)
    objectness = joined.column("objectness").to_numpy(zero_copy_only=False).astype(np.float64)
    missing = int(np.isnan(objectness).sum())
    if missing:
        logger.warning(
            "%s: %d of %d proposals have no objectness score; they fail the objectness "
            "threshold %.2f",
            source,
            missing,
            len(objectness),
            cfg.objectness_threshold,
        )
    # The stored column keeps the nulls; for the flag, a missing score counts as 0, which fails
    # any positive threshold and passes a threshold of 0 (no objectness filtering).
    result = filter_instances(
        np.nan_to_num(objectness, nan=0.0),
        joined.column("class_score").to_numpy(zero_copy_only=False).astype(np.float64),
        joined.column("class_id").to_numpy(zero_copy_only=False).astype(np.int64),
        embedding_matrix(joined.column("embedding"), source),
        cfg,
        source=source,
    )
    columns = {name: joined.column(name) for name in joined.column_names if name != "embedding"}
    for name, values in result.columns().items():
        columns[name] = pa.array(values)
    table = pa.table({f.name: columns[f.name] for f in PSEUDO_LABELS.schema})
    return table.cast(PSEUDO_LABELS.schema), result


def _shards_source(proposal_paths: Sequence[Path], clip_paths: Sequence[Path]) -> str:
    """The input shards, as error messages name them (not the output, which is not the cause)."""

    def names(paths: Sequence[Path]) -> str:
        paths = [Path(p) for p in paths]
        if len(paths) <= 2:
            return ", ".join(map(str, paths)) or "none"
        return f"{paths[0]} (+{len(paths) - 1} more shards)"

    return f"proposals {names(proposal_paths)} with CLIP scores {names(clip_paths)}"


def filter_files(
    proposal_paths: Sequence[Path],
    clip_paths: Sequence[Path],
    out_path: Path,
    cfg: PMFConfig,
) -> dict[str, int]:
    """Run the filter stage on shard files and write the pseudo-label Parquet atomically.

    Returns the number of rows kept at each level (for the log line and tests).
    """
    from uvis.pseudo.levels import select

    proposals = read_shards(proposal_paths, PROPOSALS)
    clip = read_shards(clip_paths, CLIP_SCORES)
    source = _shards_source(proposal_paths, clip_paths)
    table, result = build_pseudo_labels(proposals, clip, cfg, source=source)
    with atomic_path(out_path) as tmp:
        pq.write_table(table, tmp)
    counts = {lvl: int(select(table, lvl).sum()) for lvl in ("none", "objectness", "clip", "pmf")}
    counts["classes_with_prototypes"] = len(result.prototypes)
    counts["invalid_embeddings"] = result.n_invalid
    return counts
