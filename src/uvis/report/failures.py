"""Per-video error analysis of a run against ground truth, and the failure cases to show.

UVIS Figure 4 shows three kinds of failure; :func:`analyse_video` counts each per video:

* **wrong class** (CLIP labelling failures): a ground-truth object found by a predicted track
  (class-agnostic video IoU >= ``iou_threshold``, one-to-one Hungarian matching) that carries
  another category;
* **merged instances** (several instances predicted as one): a track whose mask, in one frame,
  covers at least ``cover`` of each of two or more ground-truth objects; counted per
  (track, frame);
* **flicker** (temporal inconsistency): *dropouts*, frames where a matched track loses its
  object (no mask) while the object is visible, between the track's first and last mask; plus
  *identity switches*, frames where the track holding an object (frame IoU >=
  ``iou_threshold``) loses it to another track.

Which tracks are analysed: a tracker may report one track several times with different classes
(MinVIS-style top-k (query, class) pairs), so each track keeps its best-scoring result; then the
highest-scoring tracks are kept, as many as the video has ground-truth objects. The analysis asks
how the model's best hypotheses go wrong, not how many low-scoring extras it lists (that is what
AP measures). :func:`pick_failures` ranks videos by each kind's count, as candidates for strips.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from uvis import masks
from uvis.data.frames import Category, VideoRecord
from uvis.data.ytvis import load_ytvis
from uvis.errors import DataError
from uvis.io import atomic_write_json, atomic_write_text
from uvis.masks import RLE
from uvis.progress import progress_bar
from uvis.schemas import TRACKS

ERROR_KINDS = ("wrong_class", "merged", "flicker")
"""The failure kinds of UVIS Figure 4, in its order (left to right)."""


@dataclass(frozen=True)
class MaskTrack:
    """One object through a video: a predicted track or a ground-truth instance.

    ``masks[t]`` is the mask in frame ``t`` (``None`` where absent); ``track_id`` is the
    tracker's id (predictions) or the annotation id (ground truth).
    """

    track_id: int
    category_id: int
    score: float
    masks: tuple[RLE | None, ...]


@dataclass(frozen=True)
class Overlaps:
    """Pixel overlaps of G ground-truth objects and P tracks in each of T frames.

    ``inter[t, g, p]`` is the intersection area; ``gt_area[t, g]`` / ``pred_area[t, p]`` the
    mask areas (0 where absent).
    """

    inter: np.ndarray
    gt_area: np.ndarray
    pred_area: np.ndarray


@dataclass(frozen=True)
class VideoErrors:
    """Error counts of one video (see the module docstring) and the frames they happen in."""

    video_id: int
    video_name: str
    gt_objects: int
    tracks: int
    matched: int
    wrong_class: int
    merged: int
    dropouts: int
    id_switches: int
    merged_frames: tuple[int, ...]
    flicker_frames: tuple[int, ...]

    @property
    def flicker(self) -> int:
        """Dropouts plus identity switches."""
        return self.dropouts + self.id_switches

    def count(self, kind: str) -> int:
        """The count of one of :data:`ERROR_KINDS`."""
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown error kind {kind!r} (kinds: {', '.join(ERROR_KINDS)})")
        return int(getattr(self, kind))

    def event_frames(self, kind: str) -> tuple[int, ...]:
        """Frames where errors of ``kind`` happen (empty for wrong class: a whole track)."""
        return {"merged": self.merged_frames, "flicker": self.flicker_frames}.get(kind, ())


# ---------------------------------------------------------------------------------------------
# Reading


def read_tracks(path: str | os.PathLike[str]) -> dict[int, list[MaskTrack]]:
    """The results of a tracks Parquet (:data:`uvis.schemas.TRACKS`) per video, one
    :class:`MaskTrack` per result, with its tracker id."""
    cols = TRACKS.read(path).to_pydict()
    rows: dict[tuple[int, int], list[int]] = defaultdict(list)
    for k, key in enumerate(zip(cols["video_id"], cols["result_id"], strict=True)):
        rows[key].append(k)
    out: dict[int, list[MaskTrack]] = defaultdict(list)
    for (video_id, result_id), ks in sorted(rows.items()):
        ks.sort(key=lambda k: cols["frame_index"][k])
        if [cols["frame_index"][k] for k in ks] != list(range(len(ks))):
            raise DataError(path, f"video {video_id}, result {result_id}: frames are not 0..n-1")
        first = ks[0]
        track_masks = tuple(
            None
            if cols["rle"][k] is None
            else {"size": [cols["height"][k], cols["width"][k]], "counts": cols["rle"][k]}
            for k in ks
        )
        out[video_id].append(
            MaskTrack(
                track_id=cols["track_id"][first],
                category_id=cols["category_id"][first],
                score=float(cols["score"][first]),
                masks=track_masks,
            )
        )
    return dict(out)


@dataclass(frozen=True)
class GroundTruth:
    """Ground-truth videos, categories and objects of a YouTube-VIS JSON."""

    videos: dict[int, VideoRecord]
    categories: tuple[Category, ...]
    objects: dict[int, list[MaskTrack]]


def read_ground_truth(gt_json: str | os.PathLike[str]) -> GroundTruth:
    """A YouTube-VIS JSON's videos, categories and annotated objects (crowd ones left out);
    DataError if the split has no annotations."""
    # Frame files are not needed here (the frame index has them): the folder is a placeholder.
    dataset = load_ytvis(Path(gt_json), Path(gt_json).parent, check_files=False)
    if dataset.instances is None:
        raise DataError(gt_json, "has no annotations: failure analysis needs ground truth")
    objects: dict[int, list[MaskTrack]] = {v.id: [] for v in dataset.videos}
    for inst in dataset.instances:
        if not inst.iscrowd:
            objects[inst.video_id].append(
                MaskTrack(inst.id, inst.category_id, 1.0, tuple(inst.segmentations))
            )
    return GroundTruth(
        videos={v.id: v for v in dataset.videos}, categories=dataset.categories, objects=objects
    )


# ---------------------------------------------------------------------------------------------
# Analysis


def shown_tracks(tracks: Sequence[MaskTrack], limit: int) -> list[MaskTrack]:
    """Each tracker id's best-scoring result, the ``limit`` highest-scoring first."""
    best: dict[int, MaskTrack] = {}
    for track in tracks:
        if track.track_id not in best or track.score > best[track.track_id].score:
            best[track.track_id] = track
    ranked = sorted(best.values(), key=lambda t: (-t.score, t.track_id))
    return ranked[:limit]


def overlaps(gt: Sequence[MaskTrack], tracks: Sequence[MaskTrack], num_frames: int) -> Overlaps:
    """Decode the masks frame by frame and measure every (object, track) intersection."""
    inter = np.zeros((num_frames, len(gt), len(tracks)))
    gt_area = np.zeros((num_frames, len(gt)))
    pred_area = np.zeros((num_frames, len(tracks)))
    for t in range(num_frames):
        g = _stack([o.masks[t] for o in gt])
        p = _stack([o.masks[t] for o in tracks])
        if g is not None:
            gt_area[t] = g.sum(axis=1)
        if p is not None:
            pred_area[t] = p.sum(axis=1)
        if g is not None and p is not None:
            inter[t] = g @ p.T
    return Overlaps(inter=inter, gt_area=gt_area, pred_area=pred_area)


def _stack(frame_masks: Sequence[RLE | None]) -> np.ndarray | None:
    """Masks of one frame as rows of a float32 matrix (zeros where absent), or None if none.

    Pixel counts are exact in float32 up to 2^24 pixels per frame.
    """
    present = [m for m in frame_masks if m is not None]
    if not present:
        return None
    h, w = (int(v) for v in present[0]["size"])
    out = np.zeros((len(frame_masks), h * w), np.float32)
    for k, m in enumerate(frame_masks):
        if m is not None:
            out[k] = masks.decode(m).reshape(-1)
    return out


def video_iou(ov: Overlaps) -> np.ndarray:
    """Class-agnostic video IoU of every (object, track): intersections summed over frames
    divided by unions summed over frames (the YouTube-VIS definition)."""
    inter = ov.inter.sum(axis=0)
    union = ov.gt_area.sum(axis=0)[:, None] + ov.pred_area.sum(axis=0)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def frame_iou(ov: Overlaps) -> np.ndarray:
    """IoU of every (object, track) in every frame, ``(T, G, P)``; 0 where both are absent."""
    union = ov.gt_area[:, :, None] + ov.pred_area[:, None, :] - ov.inter
    return np.divide(ov.inter, union, out=np.zeros_like(ov.inter), where=union > 0)


def match_objects(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """One-to-one (object, track) pairs maximising the total video IoU, kept if >= threshold."""
    if iou.size == 0:
        return []
    rows, cols = linear_sum_assignment(iou, maximize=True)
    return [(int(g), int(p)) for g, p in zip(rows, cols, strict=True) if iou[g, p] >= threshold]


def merged_frames(ov: Overlaps, cover: float) -> list[tuple[int, int]]:
    """(frame, track) where the track covers at least ``cover`` of two or more objects."""
    covered = (ov.inter >= cover * ov.gt_area[:, :, None]) & (ov.gt_area[:, :, None] > 0)
    counts = covered.sum(axis=1)  # (T, P)
    return [(int(t), int(p)) for t, p in zip(*np.nonzero(counts >= 2), strict=True)]


def dropout_frames(ov: Overlaps, pairs: Sequence[tuple[int, int]]) -> list[int]:
    """Frames where a matched track has no mask while its object is visible, between the
    track's first and last mask (one entry per (pair, frame))."""
    frames = []
    for g, p in pairs:
        present = np.nonzero(ov.pred_area[:, p] > 0)[0]
        if present.size == 0:
            continue
        for t in range(int(present[0]) + 1, int(present[-1])):
            if ov.pred_area[t, p] == 0 and ov.gt_area[t, g] > 0:
                frames.append(t)
    return frames


def identity_switch_frames(ov: Overlaps, threshold: float) -> list[int]:
    """Frames where an object changes track: the track that held it (frame IoU >= threshold)
    no longer does, and another one does. An object seen by two overlapping tracks at once is
    no switch however their IoUs alternate; a frame where no track holds it is a gap, not a
    switch (the holder may come back)."""
    iou = frame_iou(ov)
    frames: list[int] = []
    if iou.shape[2] == 0:
        return frames
    for g in range(iou.shape[1]):
        holder = None
        for t in range(iou.shape[0]):
            if ov.gt_area[t, g] == 0 or (holder is not None and iou[t, g, holder] >= threshold):
                continue
            p = int(np.argmax(iou[t, g]))
            if iou[t, g, p] < threshold:
                continue
            if holder is not None:
                frames.append(t)
            holder = p
    return frames


def analyse_video(
    video: VideoRecord,
    gt: Sequence[MaskTrack],
    tracks: Sequence[MaskTrack],
    *,
    iou_threshold: float = 0.5,
    cover: float = 0.5,
) -> tuple[VideoErrors, list[MaskTrack], list[tuple[int, int]]]:
    """Count one video's errors; also returns the analysed tracks and the (object, track) pairs
    matched (indices into ``gt`` and the analysed tracks)."""
    num_frames = len(video.frame_paths)
    shown = shown_tracks(tracks, len(gt))
    ov = overlaps(gt, shown, num_frames)
    pairs = match_objects(video_iou(ov), iou_threshold)
    merges = merged_frames(ov, cover)
    dropouts = dropout_frames(ov, pairs)
    switches = identity_switch_frames(ov, iou_threshold)
    errors = VideoErrors(
        video_id=video.id,
        video_name=video.name,
        gt_objects=len(gt),
        tracks=len(shown),
        matched=len(pairs),
        wrong_class=sum(gt[g].category_id != shown[p].category_id for g, p in pairs),
        merged=len(merges),
        dropouts=len(dropouts),
        id_switches=len(switches),
        merged_frames=tuple(sorted({t for t, _ in merges})),
        flicker_frames=tuple(sorted(set(dropouts) | set(switches))),
    )
    return errors, shown, pairs


def check_tracks(
    video: VideoRecord, tracks: Sequence[MaskTrack], tracks_path: str | os.PathLike[str]
) -> None:
    """DataError naming the tracks file when a track's frame count or mask size differs from
    its ground-truth video's."""
    size = [video.height, video.width]
    for track in tracks:
        if len(track.masks) != len(video.frame_paths):
            raise DataError(
                tracks_path,
                f"video {video.id}: track {track.track_id} has {len(track.masks)} frames, the "
                f"ground truth {len(video.frame_paths)}",
            )
        for t, m in enumerate(track.masks):
            if m is not None and list(m["size"]) != size:
                raise DataError(
                    tracks_path,
                    f"video {video.id}, track {track.track_id}, frame {t}: mask size "
                    f"{list(m['size'])} differs from the video size {size}",
                )


def analyse_run(
    gt: GroundTruth,
    tracks: dict[int, list[MaskTrack]],
    tracks_path: str | os.PathLike[str],
    *,
    iou_threshold: float = 0.5,
    cover: float = 0.5,
) -> Iterator[VideoErrors]:
    """:func:`analyse_video` for every ground-truth video, in id order."""
    unknown = sorted(set(tracks) - set(gt.videos))
    if unknown:
        raise DataError(tracks_path, f"video {unknown[0]} is not in the ground truth")
    for video_id, video in sorted(gt.videos.items()):
        video_tracks = tracks.get(video_id, [])
        check_tracks(video, video_tracks, tracks_path)
        errors, _, _ = analyse_video(
            video, gt.objects[video_id], video_tracks, iou_threshold=iou_threshold, cover=cover
        )
        yield errors


def pick_failures(errors: Sequence[VideoErrors], per_kind: int) -> dict[str, list[int]]:
    """For each kind, the ids of the ``per_kind`` videos with the most errors of that kind
    (videos without any left out; ties go to the lower video id)."""
    picks = {}
    for kind in ERROR_KINDS:
        ranked = sorted(
            (e for e in errors if e.count(kind) > 0), key=lambda e: (-e.count(kind), e.video_id)
        )
        picks[kind] = [e.video_id for e in ranked[:per_kind]]
    return picks


# ---------------------------------------------------------------------------------------------
# Output


def failures_document(
    errors: Sequence[VideoErrors], picks: dict[str, list[int]], settings: dict[str, Any]
) -> dict[str, Any]:
    """The JSON document of a run's analysis: settings, per-video errors, totals and picks."""
    return {
        "settings": settings,
        "totals": {k: sum(e.count(k) for e in errors) for k in ERROR_KINDS},
        "picks": picks,
        "videos": [{**asdict(e), "flicker": e.flicker} for e in errors],
    }


def failures_markdown(title: str, document: dict[str, Any]) -> str:
    """A short Markdown summary: totals per kind and the picked videos with their counts."""
    videos = {v["video_id"]: v for v in document["videos"]}
    lines = [f"# {title}", "", "| kind | total | picked videos |", "|---|---:|---|"]
    for kind in ERROR_KINDS:
        picked = ", ".join(
            f"`{videos[v]['video_name']}` ({videos[v][kind]})" for v in document["picks"][kind]
        )
        lines.append(f"| {kind.replace('_', ' ')} | {document['totals'][kind]} | {picked or '–'} |")
    s = document["settings"]
    lines += [
        "",
        f"Per video, each track's best-scoring result, as many tracks as ground-truth objects; "
        f"matched at video IoU >= {s['iou_threshold']}, merged when a mask covers >= "
        f"{s['cover']} of two objects in a frame.",
    ]
    return "\n".join(lines) + "\n"


def write_failures(
    gt_json: str | os.PathLike[str],
    tracks_path: str | os.PathLike[str],
    out_json: str | os.PathLike[str],
    *,
    per_kind: int = 2,
    iou_threshold: float = 0.5,
    cover: float = 0.5,
    title: str = "Failure cases",
    progress: bool = True,
) -> dict[str, Any]:
    """Analyse a run, pick its failure cases, write the JSON and a Markdown summary beside it
    (same name, ``.md``); returns the JSON document."""
    gt = read_ground_truth(gt_json)
    videos = analyse_run(
        gt, read_tracks(tracks_path), tracks_path, iou_threshold=iou_threshold, cover=cover
    )
    errors = list(
        progress_bar(
            videos, total=len(gt.videos), desc="failures", unit="video", disable=not progress
        )
    )
    settings = {"iou_threshold": iou_threshold, "cover": cover, "per_kind": per_kind}
    document = failures_document(errors, pick_failures(errors, per_kind), settings)
    atomic_write_json(out_json, document, indent=1)
    atomic_write_text(Path(out_json).with_suffix(".md"), failures_markdown(title, document))
    return document


def read_failures(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A document written by :func:`write_failures` (DataError naming the file otherwise)."""
    try:
        document = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(path, "failure analysis file does not exist") from None
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read the failure analysis: {exc}") from None
    if not isinstance(document, dict) or not {"picks", "settings"} <= set(document):
        raise DataError(path, "not a failure analysis (no 'picks' or 'settings')")
    return document
