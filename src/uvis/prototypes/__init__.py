"""Class prototypes of CLIP instance embeddings and Prototype Memory Filtering (UVIS §3.1)."""

from uvis.prototypes.pmf import (
    NO_PROTOTYPE,
    ROW_COLUMNS,
    PMFConfig,
    PMFResult,
    build_prototypes,
    class_k,
    confident_members,
    filter_instances,
    passes_threshold,
    pmf_similarity,
    prototype_members,
)

__all__ = [
    "NO_PROTOTYPE",
    "ROW_COLUMNS",
    "PMFConfig",
    "PMFResult",
    "build_prototypes",
    "class_k",
    "confident_members",
    "filter_instances",
    "passes_threshold",
    "pmf_similarity",
    "prototype_members",
]
