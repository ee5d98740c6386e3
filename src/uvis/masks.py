"""Binary masks and COCO run-length encoding (RLE), as the YouTube-VIS and COCO formats use.

An RLE here is the JSON-ready dict ``{"size": [height, width], "counts": str}`` (compressed,
column-major, the format of pycocotools). Uncompressed RLEs (``counts`` a list of ints), which
some ground-truth files contain, are accepted on input and converted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

RLE = dict[str, Any]


def encode(mask: np.ndarray) -> RLE:
    """Encode one binary mask ``(H, W)`` as a compressed, JSON-ready RLE."""
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": rle["counts"].decode("ascii"),
    }


def to_coco(rle: RLE) -> dict[str, Any]:
    """Convert a JSON RLE (compressed string or uncompressed list counts) to pycocotools' form."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    if isinstance(counts, str):
        return {"size": [h, w], "counts": counts.encode("ascii")}
    return {"size": [h, w], "counts": counts}


def decode(rle: RLE) -> np.ndarray:
    """Decode an RLE to a ``uint8`` mask of shape ``(H, W)`` with values 0/1."""
    return mask_utils.decode(to_coco(rle))


def area(rle: RLE) -> int:
    """Number of foreground pixels of an RLE."""
    return int(mask_utils.area(to_coco(rle)))


def bbox_xywh(rle: RLE) -> list[float]:
    """Tight box ``[x, y, w, h]`` of an RLE (zeros for an empty mask)."""
    return [float(v) for v in mask_utils.toBbox(to_coco(rle))]
