"""A dataset category: one name of the vocabulary and its id, as every format stores it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    """One category: ``id`` as the dataset's annotations use it (YouTube-VIS: 1-based),
    ``name``, and the YouTube-VIS ``supercategory`` where a dataset gives one."""

    id: int
    name: str
    supercategory: str = ""
