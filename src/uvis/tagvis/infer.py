"""Inference with the tag-based model: one clip per video, tags to instances, every frame filled.

For each video (Kini & Shah, §IV "Inference"):

1. **One clip.** ``T`` evenly spaced frames, first and last included, resized to the model's
   input size (:func:`~uvis.tagvis.clips.inference_frame_indices`); a shorter video repeats
   frames. ``T`` is the training clip's length unless ``clip_frames`` sets another (the
   network is convolutional in time and its attention spans any number of frames).
2. **Instances from tags** (:func:`clip_instances`). The semantic branch gives the foreground
   (pixels whose background probability is under one half; ``foreground``); the tags of the
   foreground pixels of all ``T`` frames are clustered together by 1-D mean-shift
   (:mod:`uvis.tagvis.clustering`; ``bandwidth``), so one cluster is one instance in every
   frame: no separate tracking. This is the paper's inference and the default (what Table
   III's rows measure). Tags alone cannot tell apart two objects whose tags came out alike;
   where they lie apart in space-time, the option ``split_components`` (uvis's addition, off
   by default) makes each connected part of a cluster (6-connectivity over the clip's frames)
   an instance of its own, as STEm-Seg's embeddings, which carry space-time coordinates,
   separate such objects. Clusters and parts under ``min_area`` of a frame are dropped.
   Without the semantic branch every pixel is clustered and the cluster holding most of the
   frames' border pixels is the background.
3. **Class and score.** With the semantic branch an instance's class is the class of highest
   mean probability over its pixels, and its **score is that mean probability** (in [0, 1];
   ``classes_per_instance`` > 1 reports the next classes too, as separate results with their
   own mean probabilities; ``top_k`` keeps the best of those per video). Without it the class
   is the most frequent training class and the score is the instance's tag compactness, the
   fraction of its pixels whose tag is within one bandwidth of its mode. At most
   ``max_instances`` instances (by score) are kept per video. With the instance class head
   (``class_head="rois"``, uvis's addition) the classes are the head's probabilities for the
   instance's pixels, and each score that probability times the instance's mean foreground
   probability (one minus the background's), which plays the part of the mean above.
4. **Every frame.** Instance masks are upsampled to the frame size (bilinear on the 0/1 mask,
   threshold 0.5). Frames between two clip frames ``a < f < b`` get the interpolation of the
   two masks (:func:`interpolate_masks`): each is shifted along the line between their
   centroids to where it would be at ``f``, blended with weights ``(b - f, f - a) / (b - a)``
   and thresholded at 0.5; where the instance is visible in only one of the two, the nearer
   clip frame's mask is kept (an instance appears or leaves half-way). With ``refine``
   (uvis's addition, off by default) every frame's masks are then snapped to its colour edges
   (:func:`refine_video_masks`).

Outputs: YouTube-VIS results (one per instance and class, one mask or ``null`` per frame;
``uvis eval ytvis``), DAVIS palette PNGs (``<video name>/<00000 + t>.png``, instance ids 1, 2,
... by decreasing score, a higher-scored instance on top where interpolated masks overlap;
``uvis eval davis``) and the inference speed.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from uvis import masks
from uvis.data.frames import read_frame
from uvis.errors import ConfigError, UvisError
from uvis.inference.videos import VideoFrames, refine_output_masks
from uvis.io import atomic_write_bytes, atomic_write_json
from uvis.presets import check_settings
from uvis.progress import progress_bar
from uvis.proposals.refine import REFINE_METHODS, BilateralParams
from uvis.synth.writers import davis_frame_name, encode_palette_png
from uvis.tagvis.checkpoint import TagVisMeta
from uvis.tagvis.clips import inference_frame_indices, read_clip
from uvis.tagvis.clustering import cluster_tags
from uvis.tagvis.config import TagVisConfig
from uvis.tagvis.model import TagVisNet
from uvis.tracking.results import ResultsWriter, TrackFrame, TrackResult

logger = logging.getLogger(__name__)

#: How the semantic branch gives the foreground (:class:`InferenceConfig`).
FOREGROUND_RULES = ("mass", "argmax")
#: The DAVIS benchmark rejects predictions with ids above this.
DAVIS_MAX_OBJECTS = 20


@dataclass(frozen=True)
class InferenceConfig:
    """Settings of tags-to-instances (not saved with the model: changing them needs no
    retraining).

    Attributes:
        bandwidth: standard deviation of mean-shift's Gaussian kernel, in tag units (the
            tagging loss keeps instances ``margin`` = 3 apart).
        min_area: clusters (and parts) with fewer pixels than this fraction of one frame (at
            the model's input size, summed over the clip) are dropped.
        split_components: a cluster whose pixels form several space-time connected parts
            becomes one instance per part (not in the paper; off by default).
        max_instances: instances kept per video, by score (DAVIS allows 20).
        classes_per_instance: results per instance in the YouTube-VIS output, one per class,
            the most probable first.
        top_k: when above 0, of those results only the ``top_k`` of highest score per video
            are written (YouTube-VIS output only): with ``classes_per_instance`` = the number of
            classes, the (instance, class) pairs UVIS's tracking reports (``tracking.top_k``,
            :func:`~uvis.tracking.query_tracker.top_k_pairs`). 0 (the default): all of them.
        foreground: which pixels are grouped: ``mass``, those whose background probability is
            under one half (the classes together are more probable), or ``argmax``, those
            whose single most probable class is not the background. While the classes are
            uncertain (ten classes at 0.07 each and background at 0.3: an object pixel with
            70 % object probability), ``argmax`` calls object pixels background.
        clip_frames: frames of the inference clip; 0 (the default): the training clip's
            ``clip_frames``. Any other value must be a multiple of the model's temporal stride.
            A clip of at least the video's length segments every frame (no interpolation).
        refine: ``none`` (the default: the paper's output) or ``bilateral``: every frame's
            instance masks snapped to the frame's colour edges (:func:`refine_video_masks`;
            not in the paper, the output post-processing UVIS's tracking offers too).
        refine_sigma_rgb: the refinement's colour bandwidth (CutLER's 5 by default).
    """

    bandwidth: float = 0.25
    min_area: float = 0.002
    split_components: bool = False
    foreground: str = "mass"
    max_instances: int = DAVIS_MAX_OBJECTS
    classes_per_instance: int = 1
    top_k: int = 0
    clip_frames: int = 0
    refine: str = "none"
    refine_sigma_rgb: float = 5.0

    def __post_init__(self) -> None:
        checks = {
            "bandwidth": self.bandwidth > 0,
            "min_area": 0 <= self.min_area < 1,
            "max_instances": 1 <= self.max_instances <= DAVIS_MAX_OBJECTS,
            "classes_per_instance": self.classes_per_instance >= 1,
            "top_k": self.top_k >= 0,
            "foreground": self.foreground in FOREGROUND_RULES,
            "clip_frames": self.clip_frames >= 0,
            "refine": self.refine in REFINE_METHODS,
            "refine_sigma_rgb": self.refine_sigma_rgb > 0,
        }
        check_settings(self, checks, "tagvis inference")

    def frames_for(self, model_config: TagVisConfig) -> int:
        """The inference clip's length for a model trained with ``model_config``.

        Raises:
            ConfigError: when ``clip_frames`` is not a multiple of the model's temporal stride.
        """
        if self.clip_frames == 0:
            return model_config.clip_frames
        stride = model_config.temporal_stride
        if self.clip_frames % stride:
            raise ConfigError(
                f"tagvis inference setting 'clip_frames' must be a multiple of the model's "
                f"temporal stride {stride}, got {self.clip_frames}"
            )
        return self.clip_frames


@dataclass(frozen=True, eq=False)
class ClipInstance:
    """One instance of a clip: its mask in every clip frame ``(T, h, w)`` at the input size, and
    ``(class index, score)`` pairs, the best first."""

    masks: np.ndarray
    classes: tuple[tuple[int, float], ...]

    @property
    def score(self) -> float:
        return self.classes[0][1]


def border_pixels(shape: tuple[int, ...]) -> np.ndarray:
    """Boolean ``(T, H, W)`` map of the pixels on each frame's outer border."""
    border = np.ones(shape, dtype=bool)
    border[:, 1:-1, 1:-1] = False
    return border


@dataclass(frozen=True, eq=False)
class ClipPrediction:
    """The network's output for one clip, on the CPU: ``tags`` ``(T, h, w)`` and class
    probabilities ``probs`` ``(1 + C, T, h, w)`` (background first; ``None`` without the
    semantic branch). ``classify`` (the instance class head's, ``None`` without it) maps an
    instance's pixels ``(T, h, w)`` (bool) to its class probabilities ``(C,)``."""

    tags: np.ndarray
    probs: np.ndarray | None
    classify: Callable[[np.ndarray], np.ndarray] | None = None


def predict_clip(model: TagVisNet, clip: torch.Tensor) -> ClipPrediction:
    """Run the network on one clip ``(3, T, H, W)`` (uint8, at the model's input size)."""
    device = next(model.parameters()).device
    with torch.no_grad():
        output = model(clip[None].to(device))
    probs = None
    if output.logits is not None:
        probs = torch.softmax(output.logits[0].float(), dim=0).cpu().numpy()
    classify = None
    if output.class_features is not None and model.class_head is not None:
        head, features = model.class_head, output.class_features[0].float()

        def classify(region: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                logits = head(features, torch.from_numpy(region).to(device)[None])[0]
                return torch.softmax(logits.float(), dim=0).cpu().numpy()

    tags = output.tags[0].float().cpu().numpy()
    return ClipPrediction(tags=tags, probs=probs, classify=classify)


def instance_class_scores(prediction: ClipPrediction, region: np.ndarray) -> np.ndarray:
    """The class scores ``(C,)`` of one instance whose pixels are ``region`` ``(T, h, w)``:
    with the instance class head its probabilities times the instance's mean foreground
    probability, else the mean of the per-pixel class probabilities (step 3 of the module
    docstring). Needs the semantic branch (``prediction.probs``)."""
    probs = prediction.probs
    if probs is None:
        raise ValueError("class scores need the semantic branch's probabilities")
    if prediction.classify is not None:
        return prediction.classify(region) * (1.0 - probs[0, region].mean())
    return probs[1:, region].mean(axis=1)


def space_time_components(region: np.ndarray, min_pixels: int) -> list[np.ndarray]:
    """The connected parts of a ``(T, H, W)`` region (6-connectivity: 4 neighbours in a frame,
    the same pixel in the neighbouring frames) with at least ``min_pixels`` pixels."""
    labels, count = ndimage.label(region)
    sizes = np.bincount(labels.reshape(-1), minlength=count + 1)
    return [labels == k for k in range(1, count + 1) if sizes[k] >= min_pixels]


def clip_instances(
    prediction: ClipPrediction, cfg: InferenceConfig, prior_class: int
) -> list[ClipInstance]:
    """The instances of a clip by decreasing score (see the module docstring); ``prior_class``
    labels them when there is no semantic branch."""
    tags, probs = prediction.tags, prediction.probs
    _, height, width = tags.shape
    min_pixels = max(1, round(cfg.min_area * height * width))
    foreground = np.ones(tags.shape, bool)
    if probs is not None:
        foreground = probs[0] < 0.5 if cfg.foreground == "mass" else probs.argmax(axis=0) != 0
    clusters = cluster_tags(tags, foreground, bandwidth=cfg.bandwidth, min_pixels=min_pixels)
    background = 0
    if probs is None:
        on_border = np.bincount(
            clusters.labels[border_pixels(tags.shape)], minlength=clusters.count + 1
        )
        background = int(np.argmax(on_border[1:])) + 1 if clusters.count else 0
    regions = [(k, clusters.labels == k) for k in range(1, clusters.count + 1) if k != background]
    if cfg.split_components:
        regions = [
            (k, part) for k, region in regions for part in space_time_components(region, min_pixels)
        ]
    found = []
    for k, region in regions:
        if probs is not None:
            mean = instance_class_scores(prediction, region)
            best = np.argsort(-mean, kind="stable")[: cfg.classes_per_instance]
            found.append(ClipInstance(region, tuple((int(c), float(mean[c])) for c in best)))
        else:
            near = np.abs(tags[region] - clusters.modes[k - 1]) <= cfg.bandwidth
            found.append(ClipInstance(region, ((prior_class, float(near.mean())),)))
    found.sort(key=lambda inst: -inst.score)
    return found[: cfg.max_instances]


def upsample_masks(masks_: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(T, h, w)`` 0/1 masks to ``(T, *size)`` booleans: bilinear on the mask, threshold 0.5."""
    if masks_.shape[1:] == tuple(size):
        return masks_.astype(bool)
    x = torch.from_numpy(masks_.astype(np.float32))[:, None]
    up = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return (up[:, 0] >= 0.5).numpy()


def shift_mask(mask: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """``mask`` moved by ``(dy, dx)`` pixels (rounded), emptied where it leaves the frame."""
    return ndimage.shift(mask.astype(np.uint8), (round(dy), round(dx)), order=0, cval=0) > 0


def interpolate_masks(key_frames: np.ndarray, key_masks: np.ndarray, length: int) -> np.ndarray:
    """An instance's masks in all ``length`` frames from those of the clip frames.

    ``key_frames`` ``(T,)`` are the clip's frame indices (increasing, first 0 and last
    ``length - 1``; repeated for short videos, where the repeats vote: mask where at least half
    say so); ``key_masks`` ``(T, H, W)`` their masks. Frames in between are filled as the module
    docstring says.
    """
    keys = np.unique(key_frames)
    masks_at = {int(f): key_masks[key_frames == f].mean(axis=0) >= 0.5 for f in keys}
    out = np.zeros((length, *key_masks.shape[1:]), dtype=bool)
    for f, mask in masks_at.items():
        out[f] = mask
    for a, b in itertools.pairwise(int(k) for k in keys):
        ma, mb = masks_at[a], masks_at[b]
        has_a, has_b = ma.any(), mb.any()
        if not (has_a or has_b):
            continue
        if has_a and has_b:
            ca = np.array(ndimage.center_of_mass(ma))
            cb = np.array(ndimage.center_of_mass(mb))
        for f in range(a + 1, b):
            alpha = (f - a) / (b - a)
            if has_a and has_b:
                moved_a = shift_mask(ma, *(alpha * (cb - ca)))
                moved_b = shift_mask(mb, *((alpha - 1) * (cb - ca)))
                out[f] = (1 - alpha) * moved_a + alpha * moved_b >= 0.5
            elif has_a and alpha < 0.5:
                out[f] = ma
            elif has_b and alpha >= 0.5:
                out[f] = mb
    return out


def refine_video_masks(
    masks_: list[np.ndarray], video: VideoFrames, method: str, sigma_rgb: float
) -> list[np.ndarray]:
    """Each instance's masks ``(L, H, W)`` snapped to the colour edges of every frame.

    Not in the tag paper: the masks come at the model's feature stride (4 by default), and
    upsampling leaves blocky edges. Each frame's masks are refined as UVIS's output masks
    are (:func:`~uvis.inference.videos.refine_output_masks`: CutLER's CRF constants but the
    colour bandwidth ``sigma_rgb``, no hole filling, a refined mask kept only where it agrees
    with its own). ``method="none"`` returns ``masks_`` unchanged.
    """
    if method == "none" or not masks_:
        return masks_
    stacked = np.stack(masks_)
    params = BilateralParams(bilateral_sigma_rgb=sigma_rgb)
    for f, path in enumerate(video.paths):
        if stacked[:, f].any():
            stacked[:, f] = refine_output_masks(
                read_frame(path, video.height, video.width),
                stacked[:, f],
                method,  # type: ignore[arg-type]  # checked against REFINE_METHODS
                params,
            )
    return list(stacked)


@dataclass(frozen=True, eq=False)
class VideoInstances:
    """One video's instances: ``masks[i]`` ``(L, H, W)`` in every frame, ``classes[i]`` its
    ``(class index, score)`` pairs."""

    video: VideoFrames
    masks: list[np.ndarray]
    classes: list[tuple[tuple[int, float], ...]]


def segment_video(
    model: TagVisNet, meta: TagVisMeta, video: VideoFrames, cfg: InferenceConfig
) -> tuple[VideoInstances, float]:
    """The instances of ``video`` in all its frames, and the seconds the model took."""
    config = meta.config
    size = (int(config.input_size[0]), int(config.input_size[1]))
    indices = inference_frame_indices(len(video.paths), cfg.frames_for(config))
    clip = read_clip([video.paths[i] for i in indices], video.height, video.width, size)
    began = time.perf_counter()
    prediction = predict_clip(model, clip)
    model_seconds = time.perf_counter() - began
    if not np.isfinite(prediction.tags).all():
        raise UvisError(
            f"video {video.name!r}: the model's tags are not finite (a diverged model?)"
        )
    found = clip_instances(prediction, cfg, meta.prior_class)
    masks_ = [
        interpolate_masks(
            indices, upsample_masks(inst.masks, (video.height, video.width)), len(video.paths)
        )
        for inst in found
    ]
    masks_ = refine_video_masks(masks_, video, cfg.refine, cfg.refine_sigma_rgb)
    return VideoInstances(video, masks_, [inst.classes for inst in found]), model_seconds


def davis_ids(instances: VideoInstances) -> np.ndarray:
    """``(L, H, W)`` uint8 id maps: instance ``i`` (by decreasing score) is id ``i + 1``, painted
    from the lowest score up so the higher-scored instance wins where masks overlap."""
    video = instances.video
    ids = np.zeros((len(video.paths), video.height, video.width), dtype=np.uint8)
    for i in reversed(range(min(len(instances.masks), DAVIS_MAX_OBJECTS))):
        ids[instances.masks[i]] = i + 1
    return ids


def _track_results(
    instances: VideoInstances, category_ids: Sequence[int], top_k: int = 0
) -> list[TrackResult]:
    """YouTube-VIS results of a video, one per (instance, class), by decreasing score; the
    first ``top_k`` of them when ``top_k`` > 0."""
    video = instances.video
    results = []
    for track, (stack, classes) in enumerate(zip(instances.masks, instances.classes, strict=True)):
        frames = tuple(TrackFrame(None, masks.encode(m) if m.any() else None) for m in stack)
        for class_index, score in classes:
            results.append(
                TrackResult(
                    video_id=video.video_id,
                    track_id=track,
                    category_id=int(category_ids[class_index]),
                    score=score,
                    frame_size=(video.height, video.width),
                    frames=frames,
                )
            )
    results.sort(key=lambda r: -r.score)
    return results[:top_k] if top_k > 0 else results


@dataclass(frozen=True)
class InferenceSummary:
    """What :func:`infer_videos` wrote and how fast: ``speed`` is also ``speed.json``."""

    videos: int
    results: int
    instances: int
    speed: dict[str, Any]


def infer_videos(
    model: TagVisNet,
    meta: TagVisMeta,
    videos: Sequence[VideoFrames],
    cfg: InferenceConfig,
    *,
    results_path: str | os.PathLike[str],
    davis_dir: str | os.PathLike[str] | None = None,
    speed_path: str | os.PathLike[str] | None = None,
    tracks_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> InferenceSummary:
    """Segment every video; write the YouTube-VIS results, the DAVIS PNGs and the speed
    (and the tracks Parquet, :data:`uvis.schemas.TRACKS`, one track per instance).

    Every output is written atomically: the results JSON and ``speed.json`` by rename, the
    DAVIS folder by writing ``.<name>.partial`` next to it and renaming it at the end
    (replacing an older folder).

    ``speed`` holds ``frames`` (all frames of all videos), ``seconds`` (wall time from reading
    the first frame to the last mask, writing included), ``fps`` = frames / seconds,
    ``model_seconds`` and ``model_fps`` = frames / model_seconds (the network's forward passes
    alone, outputs back on the CPU), ``device`` and ``threads``.
    """
    device = next(model.parameters()).device
    clip_frames = cfg.frames_for(meta.config)
    category_ids = [c.id for c in meta.categories]
    davis_tmp = None
    if davis_dir is not None:
        davis_dir = Path(davis_dir)
        davis_tmp = davis_dir.parent / f".{davis_dir.name}.partial"
        if davis_tmp.exists():
            shutil.rmtree(davis_tmp)
        davis_tmp.mkdir(parents=True)
    frames = sum(len(v.paths) for v in videos)
    bar = progress_bar(total=frames, desc="infer tagvis", unit="frame", disable=not progress)
    began, model_seconds, instances = time.perf_counter(), 0.0, 0
    try:
        with ResultsWriter(results_path, tracks_path=tracks_path) as writer:
            for video in videos:
                found, seconds = segment_video(model, meta, video, cfg)
                model_seconds += seconds
                instances += len(found.masks)
                for result in _track_results(found, category_ids, cfg.top_k):
                    writer.add(result)
                if davis_tmp is not None:
                    for t, ids in enumerate(davis_ids(found)):
                        atomic_write_bytes(
                            davis_tmp / video.name / f"{davis_frame_name(t)}.png",
                            encode_palette_png(ids),
                        )
                bar.update(len(video.paths))
        if davis_tmp is not None:
            if davis_dir.exists():
                shutil.rmtree(davis_dir)
            os.replace(davis_tmp, davis_dir)
    finally:
        bar.close()
        if davis_tmp is not None and davis_tmp.exists():
            shutil.rmtree(davis_tmp)
    seconds = time.perf_counter() - began
    speed = {
        "frames": frames,
        "videos": len(videos),
        "clip_frames": clip_frames,
        "seconds": round(seconds, 3),
        "fps": round(frames / seconds, 2) if seconds > 0 else None,
        "model_seconds": round(model_seconds, 3),
        "model_fps": round(frames / model_seconds, 2) if model_seconds > 0 else None,
        "device": str(device),
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
    }
    if speed_path is not None:
        atomic_write_json(speed_path, speed, indent=1)
    logger.info("%d videos, %d instances, %d results", len(videos), instances, writer.num_results)
    return InferenceSummary(
        videos=len(videos), results=writer.num_results, instances=instances, speed=speed
    )
