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


def counts_from_string(counts: str | bytes) -> np.ndarray:
    """The run lengths of a compressed RLE string, as ``int64``; ValueError if it is malformed.

    The compressed form (pycocotools' ``rleToString``) stores each run as a little-endian
    sequence of 6-bit digits (characters ``'0'`` + 0..63): 5 value bits, and bit 0x20 set on
    every digit but the value's last; the last digit's bit 0x10 is the sign. From the third run
    on, each value is stored as the difference to the run two places before it. pycocotools
    decodes any string without checking it, and a garbage string can make its decoder run for
    ever, so every mask read from a file goes through :func:`rle_problem` first.
    """
    raw = np.frombuffer(counts.encode("latin-1") if isinstance(counts, str) else counts, np.uint8)
    digits = raw.astype(np.int64) - 48
    if digits.size and (digits.min() < 0 or digits.max() > 63):
        bad = int(np.flatnonzero((digits < 0) | (digits > 63))[0])
        raise ValueError(
            f"character {bytes(raw[bad : bad + 1])!r} at position {bad} is not an RLE digit"
        )
    more = (digits & 0x20) != 0
    if digits.size and more[-1]:
        raise ValueError("the string ends in the middle of a run length (truncated)")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1)) if ends.size else ends
    if ends.size and int((ends - starts).max()) >= 12:
        raise ValueError("a run length has more digits than any 64-bit count")
    group = np.repeat(np.arange(ends.size), ends - starts + 1)
    position = np.arange(digits.size) - starts[group]
    values = np.zeros(ends.size, np.int64)
    np.add.at(values, group, (digits & 0x1F) << (5 * position))
    negative = (digits[ends] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * (ends[negative] - starts[negative] + 1))
    # Undo the delta coding: run m (m > 2) is stored minus run m - 2, so runs 2, 4, 6, ... and
    # 1, 3, 5, ... are running sums of the stored values (run 0 is stored as is).
    out = values.copy()
    out[2::2] = np.cumsum(values[2::2])
    out[1::2] = np.cumsum(values[1::2])
    return out


def rle_problem(rle: Any, height: int | None = None, width: int | None = None) -> str | None:
    """What is wrong with a JSON RLE, or None if it is a valid mask of ``height`` x ``width``.

    Checks that it is a ``{"size", "counts"}`` mapping, that ``size`` is two integers >= 0 (equal
    to ``height``, ``width`` where given), that ``counts`` is a decodable compressed string (or
    a list of integers) of runs >= 0 that add up to exactly ``height * width`` pixels. The
    message is a phrase to put after the file, entry and frame it was read from.
    """
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        return "a mask must be an RLE with 'size' and 'counts'"
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
        or min(size) < 0
    ):
        return f"RLE size must be two integers >= 0 (height, width), got {size!r}"
    h, w = int(size[0]), int(size[1])
    if height is not None and width is not None and (h, w) != (int(height), int(width)):
        return f"RLE size [{h}, {w}] differs from the frame size [{height}, {width}]"
    counts = rle["counts"]
    if isinstance(counts, list):
        if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in counts):
            return "uncompressed RLE counts must be integers"
        runs = np.asarray(counts, dtype=np.int64)
    elif isinstance(counts, (str, bytes)):
        if isinstance(counts, str) and not counts.isascii():
            return "RLE counts must be an ASCII string"
        try:
            runs = counts_from_string(counts)
        except ValueError as exc:
            return f"RLE counts cannot be decoded: {exc}"
    else:
        return f"RLE counts must be a string or a list of integers, got {type(counts).__name__}"
    if runs.size and runs.min() < 0:
        return f"RLE counts hold a negative run length ({int(runs.min())})"
    total = int(runs.sum())
    if total != h * w:
        return f"RLE counts cover {total} pixels, not height*width = {h}*{w} = {h * w}"
    return None


def decode(rle: RLE) -> np.ndarray:
    """Decode an RLE to a ``uint8`` mask of shape ``(H, W)`` with values 0/1."""
    return mask_utils.decode(to_coco(rle))


def area(rle: RLE) -> int:
    """Number of foreground pixels of an RLE."""
    return int(mask_utils.area(to_coco(rle)))


def bbox_xywh(rle: RLE) -> list[float]:
    """Tight box ``[x, y, w, h]`` of an RLE (zeros for an empty mask)."""
    return [float(v) for v in mask_utils.toBbox(to_coco(rle))]
