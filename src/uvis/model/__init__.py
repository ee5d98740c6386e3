"""The per-frame VIS model (UVIS §3.2): a MinVIS-style Mask2Former, its checkpoints and inference.

:func:`create_vis_model` builds a named configuration (``minvis_r50``, ``uvis-tiny``,
``uvis-smoke``); :mod:`uvis.train` trains it; :func:`load_vis_model` reads a trained checkpoint
and :func:`predict_frames` gives tracking its :class:`FrameQueries`.
"""

from uvis.model.checkpoint import CHECKPOINT_FORMAT, VisModelMeta, load_vis_model
from uvis.model.inference import predict_frames
from uvis.model.mask2former import (
    MODEL_CONFIGS,
    VisModel,
    VisModelConfig,
    create_vis_model,
    load_backbone_weights,
    model_config,
    shortest_edge_size,
)
from uvis.model.outputs import FrameQueries

__all__ = [
    "CHECKPOINT_FORMAT",
    "MODEL_CONFIGS",
    "FrameQueries",
    "VisModel",
    "VisModelConfig",
    "VisModelMeta",
    "create_vis_model",
    "load_backbone_weights",
    "load_vis_model",
    "model_config",
    "predict_frames",
    "shortest_edge_size",
]
