"""The ``cutler`` proposal backend: CutLER's released detector, run through detectron2.

UVIS (§3.1, "Experimental Setup") takes its class-agnostic masks and objectness scores from
CutLER's ImageNet-trained Cascade Mask R-CNN (``cutler_cascade_final.pth``, a detectron2
checkpoint; the weight ``cutler_cascade`` of :mod:`uvis.foundation.weights`). This backend runs
that checkpoint on the frames of one shard and writes the same artefact as the ``learned``
backend (schema :data:`uvis.schemas.PROPOSALS`, rows from :class:`~uvis.proposals.table.
ProposalRows`): per frame, every detection above ``score_threshold``, ``proposal_id`` 0.. by
descending score, ``objectness`` the detector's score, ``box`` the tight box of the mask,
``source="cutler"``. The paper's 0.7 is applied later, by the filter stage.

The model is the one of CutLER's ``model_zoo/configs/CutLER-ImageNet/cascade_mask_rcnn_R_50_FPN
.yaml`` and its base ``Base-RCNN-FPN.yaml``; :func:`detectron2_config` lists every value set.
Two departures from building it with CutLER's own code, neither of which changes a prediction:

- ROI heads: CutLER registers ``CustomCascadeROIHeads``, which differ from detectron2's
  ``CascadeROIHeads`` only in the training loss (DropLoss); the inference path (scores averaged
  over the three stages, the last stage's boxes, per-class NMS) and the parameter names are the
  same. Using detectron2's class needs no CutLER checkout and nothing of CutLER's on the path.
- Normalisation: CutLER trains with SyncBN; at inference a batch norm uses its running
  statistics, so plain BN computes the same (CutLER's demo switches to BN on CPU too).

Frames are fed as detectron2's ``DefaultPredictor`` feeds an image (resized so the short side is
``min_size`` unless the long side would pass ``max_size``, RGB as the config's ``INPUT.FORMAT``),
but ``batch_size`` at a time; masks come back pasted at the frame's size and binarised at 0.5.

detectron2 is not on PyPI: it is imported only when the backend runs, and when it is missing
the stage stops with one message that says how to install it (``envs/detectron2.yaml``). Only
:func:`load_cutler_model` and :func:`predict` touch detectron2; everything else here is plain
PyTorch and tested without it. Speed: on a 2-core CPU one frame at the default 800 px takes
about 15 s (the three box heads score 1000 regions each): use a GPU, or a smaller ``min_size``
and fewer ``rpn_proposals`` for a quick look.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from uvis.checkpoints import load_torch_file
from uvis.data.frame_index import FrameIndex, FrameRef
from uvis.data.frames import read_frame
from uvis.devices import resolve_device
from uvis.errors import DataError, UvisError
from uvis.foundation.checkpoints import mismatch_parts, state_dict_mismatch
from uvis.foundation.weights import resolve_weights
from uvis.io import atomic_path
from uvis.presets import check_settings
from uvis.progress import progress_bar
from uvis.proposals.table import ProposalRows

logger = logging.getLogger(__name__)

#: ``source`` of the rows this backend writes.
SOURCE = "cutler"
#: Known weight name (:data:`uvis.foundation.weights.KNOWN_WEIGHTS`) of CutLER's checkpoint.
DEFAULT_WEIGHTS = "cutler_cascade"
#: Parquet key-value metadata entry holding the settings and weights a shard was made with.
METADATA_KEY = b"uvis.cutler"
#: What to do when detectron2 cannot be imported.
INSTALL_HINT = (
    "the cutler proposal backend needs detectron2, which is not on PyPI: create the conda "
    "environment of envs/detectron2.yaml and follow its header (torch first, then "
    "`pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'`)"
    ", or set proposals.backend to maskcut, which needs no detectron2"
)


@dataclass(frozen=True)
class CutlerSettings:
    """Test-time settings of the CutLER detector (the architecture is fixed by the checkpoint).

    ``score_threshold``: detections scoring above it are kept (detectron2's ``SCORE_THRESH_TEST``;
    CutLER evaluates at 0.0 and its demo shows 0.35; 0.05 keeps the ``learned`` backend's floor,
    the filter stage applies the paper's 0.7). ``nms_threshold``: box IoU of the per-class NMS
    (detectron2's default 0.5). ``detections_per_image``: CutLER's ``TEST.DETECTIONS_PER_IMAGE``
    (100). ``rpn_proposals``: RPN proposals per image after NMS, the regions the three box
    heads score (``RPN.POST_NMS_TOPK_TEST``, 1000; fewer is faster on a CPU and may miss
    objects). ``min_size``/``max_size``: test-time resize (detectron2's 800/1333, which CutLER
    keeps). ``batch_size``: frames per forward pass. ``device``: ``auto`` (CUDA when available), ``cpu``
    or ``cuda``.
    """

    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    detections_per_image: int = 100
    rpn_proposals: int = 1000
    min_size: int = 800
    max_size: int = 1333
    batch_size: int = 4
    device: str = "auto"

    def __post_init__(self) -> None:
        checks = {
            "score_threshold": 0 <= self.score_threshold < 1,
            "nms_threshold": 0 < self.nms_threshold <= 1,
            "detections_per_image": self.detections_per_image >= 1,
            "rpn_proposals": self.rpn_proposals >= 1,
            "min_size": 0 < self.min_size <= self.max_size,
            "batch_size": self.batch_size >= 1,
            "device": self.device in ("auto", "cpu", "cuda"),
        }
        check_settings(self, checks, "cutler")

    def resolved_device(self) -> str:
        """``device`` with ``auto`` resolved; ConfigError for ``cuda`` without a CUDA device."""
        return resolve_device(self.device, "cutler")


def detectron2_config(settings: CutlerSettings, device: str) -> dict[str, Any]:
    """Every detectron2 config value the backend sets, by dotted key, over ``get_cfg()``.

    Architecture: CutLER's ``cascade_mask_rcnn_R_50_FPN.yaml`` over ``Base-RCNN-FPN.yaml`` (one
    class, class-agnostic box regression, ResNet-50 with ``STRIDE_IN_1X1`` off and no frozen
    stage, RGB pixel statistics, 1000 RPN proposals per level before NMS at 0.65), with ``CascadeROIHeads`` and ``BN`` in place
    of CutLER's ``CustomCascadeROIHeads`` and ``SyncBN`` (see the module docstring). Test time:
    ``settings`` (cast, as yacs refuses an int where the default is a float). Cascade IoUs and
    box-regression weights are detectron2's defaults, as in CutLER's config.
    """
    return {
        "MODEL.DEVICE": device,
        "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
        "MODEL.MASK_ON": True,
        "MODEL.PIXEL_MEAN": [123.675, 116.280, 103.530],
        "MODEL.PIXEL_STD": [58.395, 57.120, 57.375],
        "MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone",
        "MODEL.BACKBONE.FREEZE_AT": 0,
        "MODEL.RESNETS.DEPTH": 50,
        "MODEL.RESNETS.NORM": "BN",
        "MODEL.RESNETS.STRIDE_IN_1X1": False,
        "MODEL.RESNETS.OUT_FEATURES": ["res2", "res3", "res4", "res5"],
        "MODEL.FPN.IN_FEATURES": ["res2", "res3", "res4", "res5"],
        "MODEL.FPN.NORM": "BN",
        "MODEL.ANCHOR_GENERATOR.SIZES": [[32], [64], [128], [256], [512]],
        "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [[0.5, 1.0, 2.0]],
        "MODEL.RPN.IN_FEATURES": ["p2", "p3", "p4", "p5", "p6"],
        "MODEL.RPN.PRE_NMS_TOPK_TEST": 1000,
        "MODEL.RPN.POST_NMS_TOPK_TEST": int(settings.rpn_proposals),
        "MODEL.RPN.NMS_THRESH": 0.65,
        "MODEL.ROI_HEADS.NAME": "CascadeROIHeads",
        "MODEL.ROI_HEADS.IN_FEATURES": ["p2", "p3", "p4", "p5"],
        "MODEL.ROI_HEADS.NUM_CLASSES": 1,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST": float(settings.score_threshold),
        "MODEL.ROI_HEADS.NMS_THRESH_TEST": float(settings.nms_threshold),
        "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNConvFCHead",
        "MODEL.ROI_BOX_HEAD.NUM_FC": 2,
        "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 7,
        "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": True,
        "MODEL.ROI_MASK_HEAD.NAME": "MaskRCNNConvUpsampleHead",
        "MODEL.ROI_MASK_HEAD.NUM_CONV": 4,
        "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": 14,
        "INPUT.FORMAT": "RGB",
        "INPUT.MIN_SIZE_TEST": int(settings.min_size),
        "INPUT.MAX_SIZE_TEST": int(settings.max_size),
        "TEST.DETECTIONS_PER_IMAGE": int(settings.detections_per_image),
    }


# --------------------------------------------------------------------------------------------
# Checkpoint


def _optional_key(key: str) -> bool:
    """Keys a checkpoint may lack: the pixel statistics (set from the config, as detectron2's
    checkpointer allows) and batch-norm step counters (unused at inference)."""
    return key in ("pixel_mean", "pixel_std") or key.endswith("num_batches_tracked")


def _ignored_key(key: str) -> bool:
    """Keys a checkpoint may have beyond the model's: anchors older detectron2 versions saved."""
    return "anchor_generator.cell_anchors" in key


def read_cutler_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The model state dict of a detectron2 checkpoint file (``{"model": state, ...}`` or a
    bare state dict), read as tensors only; DataError naming ``path`` otherwise."""
    obj = load_torch_file(path, what="a PyTorch checkpoint")
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, Mapping) or not state:
        raise DataError(path, "not a detectron2 checkpoint: no 'model' state dict")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise DataError(path, f"checkpoint entries are not tensors (e.g. {bad[0]!r})")
    return dict(state)


def check_cutler_state(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], path: str
) -> dict[str, torch.Tensor]:
    """``state`` without ignorable keys, after checking it fits the model's ``expected`` state.

    Raises:
        DataError: naming ``path`` and the missing, unexpected or reshaped keys, when the file
            is not a checkpoint of CutLER's architecture (e.g. the ``learned`` detector's).
    """
    kept = {k: v for k, v in state.items() if not _ignored_key(k)}
    problems = mismatch_parts(*state_dict_mismatch(kept, expected, optional=_optional_key))
    if problems:
        raise DataError(
            path,
            "weights do not fit CutLER's Cascade Mask R-CNN R50-FPN (one class): "
            + ", ".join(problems),
        )
    return kept


# --------------------------------------------------------------------------------------------
# Frames and predictions -> rows (no detectron2)


def add_predictions(
    rows: ProposalRows, frame: FrameRef, scores: torch.Tensor, masks: torch.Tensor
) -> int:
    """Add one frame's detections to ``rows``; returns how many empty masks were left out.

    ``scores`` ``(N,)`` are the detector's scores and ``masks`` ``(N, H, W)`` its binary masks
    at the frame's size (detectron2's ``Instances.scores`` and ``pred_masks``). Detections are
    ranked by descending score (stable), so ``proposal_id`` 0 is the best; the row's box and
    area are those of the mask. A frame without detections is counted by ``rows`` as an empty
    frame, never dropped from the counts.

    Raises:
        ValueError: when shapes disagree with each other or with the frame, or a score is not
            finite (a predictor bug, not bad input).
    """
    n = int(scores.shape[0]) if scores.ndim == 1 else -1
    if n < 0 or tuple(masks.shape) != (n, frame.height, frame.width):
        raise ValueError(
            f"video {frame.video_id} frame {frame.frame_index}: scores {tuple(scores.shape)} and "
            f"masks {tuple(masks.shape)} do not fit {n} detections on a "
            f"{frame.height}x{frame.width} frame"
        )
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(f"video {frame.video_id} frame {frame.frame_index}: non-finite score")
    order = torch.argsort(scores.detach().cpu(), descending=True, stable=True)
    ranked_scores = scores.detach().cpu()[order].tolist()
    ranked_masks = list(masks.detach().cpu()[order].bool().numpy())
    rows.add_frame(frame.video_id, frame.frame_index, ranked_masks, ranked_scores, SOURCE)
    return sum(1 for m in ranked_masks if not m.any())


# --------------------------------------------------------------------------------------------
# detectron2


@dataclass(frozen=True)
class _Detectron2:
    """The detectron2 entry points the backend uses."""

    get_cfg: Any
    build_model: Any
    resize_shortest_edge: Any


def _detectron2() -> _Detectron2:
    """detectron2's entry points, imported now; UvisError saying how to install it otherwise."""
    try:
        config = importlib.import_module("detectron2.config")
        modeling = importlib.import_module("detectron2.modeling")
        transforms = importlib.import_module("detectron2.data.transforms")
    except ImportError as exc:
        raise UvisError(f"{INSTALL_HINT} (import failed: {exc})") from exc
    return _Detectron2(config.get_cfg, modeling.build_model, transforms.ResizeShortestEdge)


def require_detectron2() -> None:
    """Stop with one clear UvisError when detectron2 cannot be imported."""
    _detectron2()


def load_cutler_model(weights: Path, settings: CutlerSettings) -> torch.nn.Module:
    """CutLER's Cascade Mask R-CNN with the weights of ``weights``, in eval mode.

    Raises:
        UvisError: when detectron2 is missing.
        DataError: naming ``weights`` when it is not a checkpoint of this architecture.
    """
    d2 = _detectron2()
    cfg = d2.get_cfg()
    values = detectron2_config(settings, settings.resolved_device())
    cfg.merge_from_list([item for pair in values.items() for item in pair])
    cfg.freeze()
    model = d2.build_model(cfg)
    state = check_cutler_state(read_cutler_state(weights), model.state_dict(), str(weights))
    model.load_state_dict(state, strict=False)
    return model.eval()


@torch.no_grad()
def predict(
    model: torch.nn.Module, images: Sequence[np.ndarray], settings: CutlerSettings
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(scores, masks)`` of each ``(H, W, 3)`` uint8 RGB image, in one forward pass.

    Each image is resized as detectron2's ``DefaultPredictor`` resizes it; the masks come back
    at the image's own size.
    """
    resize = _detectron2().resize_shortest_edge(
        [settings.min_size, settings.min_size], settings.max_size
    )
    inputs = [
        {
            "image": torch.as_tensor(
                resize.get_transform(img).apply_image(img).astype(np.float32).transpose(2, 0, 1)
            ),
            "height": img.shape[0],
            "width": img.shape[1],
        }
        for img in images
    ]
    outputs = []
    for out in model(inputs):
        instances = out["instances"].to("cpu")
        outputs.append((instances.scores, instances.pred_masks))
    return outputs


# --------------------------------------------------------------------------------------------
# The stage


def cutler_shard(
    frame_index: Path,
    weights: str | os.PathLike[str],
    *,
    out: Path,
    settings: CutlerSettings,
    shard: int = 0,
    num_shards: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Run CutLER's detector on one shard of a frame index and write its proposals atomically.

    ``weights`` is a checkpoint file or the known name ``cutler_cascade``. detectron2 and the
    weights are checked before any frame is read. The settings and the weights file are stored
    in the Parquet file's metadata (key :data:`METADATA_KEY`). Returns the counts: frames,
    proposals, frames without a proposal, and detections left out for an empty mask.
    """
    require_detectron2()
    weights_path = resolve_weights(weights, "cutler")
    frames = FrameIndex.read(frame_index).shard(num_shards, shard)
    model = load_cutler_model(weights_path, settings)
    rows = ProposalRows()
    empty_masks = 0
    bar = progress_bar(
        total=frames.num_frames, desc=f"cutler shard {shard}", disable=not progress, unit="frame"
    )
    # Frames of different sizes may share a batch: detectron2 pads each batch to its largest
    # image and pastes every mask back at its own frame's size.
    for batch in frames.batches(settings.batch_size, same_size=False):
        images = [read_frame(f.path, f.height, f.width) for f in batch]
        for frame, (scores, masks) in zip(batch, predict(model, images, settings), strict=True):
            empty_masks += add_predictions(rows, frame, scores, masks)
        bar.update(len(batch))
    bar.close()
    summary = {
        "frames": rows.frames,
        "proposals": len(rows),
        "empty_frames": rows.empty_frames,
        "empty_masks": empty_masks,
    }
    provenance = {"weights": str(weights_path), "settings": asdict(settings), **summary}
    table = rows.table().replace_schema_metadata({METADATA_KEY: json.dumps(provenance)})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    if rows.empty_frames or empty_masks:
        logger.info(
            "%s: %d of %d frames have no detection; %d detections with an empty mask left out",
            out,
            rows.empty_frames,
            rows.frames,
            empty_masks,
        )
    return summary
