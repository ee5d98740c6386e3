"""The pseudo-label levels of UVIS Table 2 and the selection of one level's rows.

The ``filter`` stage stores every proposal with its ``pass_objectness``, ``pass_clip``,
``pass_pmf`` flags and ``pmf_similarity`` (:data:`uvis.prototypes.ROW_COLUMNS`); training,
DeepSORT and the quality report each read one level of that one file through :func:`select`.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import numpy as np

from uvis.prototypes import ROW_COLUMNS, PMFResult, passes_threshold

Level = Literal["none", "objectness", "clip", "pmf"]
LEVELS: tuple[Level, ...] = ("none", "objectness", "clip", "pmf")
"""Table 2's label-denoising rows: no filter, +mask score, +CLIP score, +PMF (cumulative)."""


class ColumnTable(Protocol):
    """Anything indexable by column name: a dict of arrays, a ``pyarrow.Table``."""

    def __getitem__(self, key: str, /) -> Any: ...


def select(result: PMFResult | ColumnTable, level: Level, tau: float | None = None) -> np.ndarray:
    """The rows kept at one of Table 2's denoising levels, as a boolean mask (N,).

    Levels are cumulative: ``"none"`` keeps every row, ``"objectness"`` adds the mask-score
    filter, ``"clip"`` the CLIP-score filter and ``"pmf"`` the prototype filter, so each mask is
    a subset of the previous one. ``result`` is a :class:`PMFResult` or a table holding its
    :data:`ROW_COLUMNS` (as stored by a later stage). With ``tau`` (only for ``"pmf"``), the PMF
    flag is recomputed as ``pmf_similarity >= tau`` from the stored similarity and the *same*
    prototypes, which is how Table 3's sweep is read off one result; ``tau=None`` uses the
    stored ``pass_pmf``. Raising ``tau`` never keeps more rows.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if tau is not None and level != "pmf":
        raise ValueError(f"tau only applies to level 'pmf', not {level!r}")
    if tau is not None and not -1.0 <= tau <= 1.0:
        raise ValueError(f"tau is a cosine similarity threshold in [-1, 1], got {tau}")
    table = result.columns() if isinstance(result, PMFResult) else result
    keep = _flags(table, "pass_objectness")
    if level == "none":
        return np.ones_like(keep)
    if level == "objectness":
        return keep
    keep &= _flags(table, "pass_clip")
    if level == "clip":
        return keep
    if tau is None:
        return keep & _flags(table, "pass_pmf")
    return keep & passes_threshold(_column(table, "pmf_similarity", np.float64), tau)


def _column(table: ColumnTable, name: str, dtype: type) -> np.ndarray:
    """Column ``name`` of ``table`` as an array of ``dtype``; ValueError if it is missing."""
    try:
        column = table[name]
    except KeyError:
        raise ValueError(f"table has no column {name!r}; PMF columns are {ROW_COLUMNS}") from None
    return np.asarray(column, dtype=dtype)


def _flags(table: ColumnTable, name: str) -> np.ndarray:
    """Boolean column ``name`` of ``table`` (a fresh array, safe to update in place)."""
    return _column(table, name, bool).copy()
