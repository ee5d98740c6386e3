"""A trained VIS model as a Python object: frames or a video file in, tracks out.

For notebooks and scripts, in the style of SAM 2's video predictor::

    from uvis.inference.predictor import VideoPredictor

    predictor = VideoPredictor.from_checkpoint("results/synth/vis/uvis/model_final.pth")
    tracks = predictor.predict_video("my_video.mp4")     # or predictor.predict(frames)
    for track in tracks:
        print(track.category, round(track.score, 2), track.mask(0).sum())

``uvis segment`` runs the same object. Frames are run through the model a batch at a time and
tracked as they come (UVIS eq. 2's tracking memory with weight ``lam``; ``lam=1`` is plain
MinVIS matching); the ``top_k`` best (query, class) pairs of the video are returned, best first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from uvis import masks as rle_masks
from uvis.data.frames import extract_frames, read_frame
from uvis.errors import DataError
from uvis.inference.videos import image_queries
from uvis.masks import RLE
from uvis.model import VisModel, VisModelMeta, load_vis_model
from uvis.progress import progress_bar
from uvis.proposals.refine import BilateralParams, RefineMethod
from uvis.tracking.query_tracker import DEFAULT_LAMBDA, DEFAULT_TOP_K, track_video
from uvis.tracking.results import TrackResult

Frame = str | os.PathLike[str] | np.ndarray
"""A frame: an image file, or an ``(H, W, 3)`` uint8 RGB array."""


@dataclass(frozen=True)
class Track:
    """One tracked object of a video: its class, score and a mask in every frame.

    ``masks[t]`` is frame ``t``'s mask as a COCO RLE, ``None`` where the object is absent;
    :meth:`mask` decodes it. ``frame_size`` is ``(height, width)``.
    """

    track_id: int
    category_id: int
    category: str
    score: float
    frame_size: tuple[int, int]
    masks: tuple[RLE | None, ...]

    @property
    def num_frames(self) -> int:
        return len(self.masks)

    def mask(self, t: int) -> np.ndarray:
        """Frame ``t``'s mask as a boolean ``(H, W)`` array (all False where absent)."""
        rle = self.masks[t]
        if rle is None:
            return np.zeros(self.frame_size, dtype=bool)
        return rle_masks.decode(rle).astype(bool)

    def ytvis(self, video_id: int = 1) -> dict:
        """The YouTube-VIS result object of this track."""
        return {
            "video_id": video_id,
            "category_id": self.category_id,
            "score": self.score,
            "segmentations": list(self.masks),
        }


class VideoPredictor:
    """Segment, classify and track the objects of a video with a trained VIS model.

    Args:
        model, meta: a model in eval mode and its checkpoint's metadata
            (:func:`uvis.model.load_vis_model`; or use :meth:`from_checkpoint`).
        lam: weight of the tracking memory (UVIS eq. 2); 1 is MinVIS's frame-to-frame matching.
        top_k: (query, class) pairs kept per video.
        batch_size: frames per forward pass.
        refine: output-mask post-processing (``"none"``: the model's masks; see
            :func:`uvis.inference.refine_frame_queries`).
        refine_params: the refinement CRF's constants (CutLER's by default).
        mask_score: rank tracks by class score times mask confidence (Mask2Former's instance
            score; :class:`~uvis.tracking.QueryTracker`), not by class score alone (MinVIS).
    """

    def __init__(
        self,
        model: VisModel,
        meta: VisModelMeta,
        *,
        lam: float = DEFAULT_LAMBDA,
        top_k: int = DEFAULT_TOP_K,
        batch_size: int = 8,
        refine: RefineMethod = "none",
        refine_params: BilateralParams | None = None,
        mask_score: bool = False,
    ) -> None:
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must lie in [0, 1], got {lam}")
        if top_k < 1 or batch_size < 1:
            raise ValueError(f"top_k and batch_size must be >= 1, got {top_k}, {batch_size}")
        self.model, self.meta = model, meta
        self.lam, self.top_k, self.batch_size, self.refine = lam, top_k, batch_size, refine
        self.refine_params = refine_params
        self.mask_score = mask_score
        self._names = {c.id: c.name for c in meta.categories}

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | os.PathLike[str],
        *,
        vocabulary: Sequence[str] | None = None,
        device: str | torch.device = "cpu",
        **options: object,
    ) -> VideoPredictor:
        """Load a trained model (``model_final.pth`` or an intermediate checkpoint of
        ``uvis train vis``); ``options`` are the constructor's keyword arguments.

        Raises:
            DataError: naming the file when it is not a VIS checkpoint (or, with
                ``vocabulary``, was trained on other class names).
        """
        model, meta = load_vis_model(checkpoint, vocabulary=vocabulary, device=device)
        return cls(model, meta, **options)  # type: ignore[arg-type]

    @property
    def categories(self) -> dict[int, str]:
        """Category id -> name of the model's vocabulary."""
        return dict(self._names)

    def predict(self, frames: Iterable[Frame], *, progress: bool = False) -> list[Track]:
        """The video's tracks, best first, from its frames in order (image files or RGB
        arrays, all of one size). Frames are read as they are needed; ``progress`` shows a
        bar on stderr.

        Raises:
            DataError: naming the frame that cannot be read or differs in size.
        """
        total = len(frames) if isinstance(frames, Sized) else None
        images = progress_bar(
            self._images(frames), total=total, desc="segment", unit="frame", disable=not progress
        )
        results = track_video(
            image_queries(
                self.model,
                images,
                batch_size=self.batch_size,
                refine=self.refine,
                refine_params=self.refine_params,
            ),
            video_id=1,
            category_ids=self.meta.category_ids,
            lam=self.lam,
            top_k=self.top_k,
            mask_score=self.mask_score,
        )
        return [self._track(i, r) for i, r in enumerate(results)]

    def predict_video(
        self,
        video: str | os.PathLike[str],
        frames_dir: str | os.PathLike[str],
        *,
        stride: int = 1,
        resize_short: int | None = None,
        progress: bool = False,
    ) -> list[Track]:
        """The tracks of a video file, decoded to JPEG frames in ``frames_dir`` first
        (resumable; every ``stride``-th frame, optionally resized: see
        :func:`uvis.data.extract_frames`)."""
        paths = extract_frames(
            Path(video), Path(frames_dir), stride=stride, resize_short=resize_short
        )
        return self.predict(paths, progress=progress)

    def _images(self, frames: Iterable[Frame]) -> Iterator[np.ndarray]:
        size = None
        for t, frame in enumerate(frames):
            if isinstance(frame, np.ndarray):
                image = frame
                if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                    raise DataError(
                        None,
                        f"frame {t}: expected an (H, W, 3) uint8 RGB array, got "
                        f"{image.dtype} {image.shape}",
                    )
            else:
                image = read_frame(os.fspath(frame))
            if size is None:
                size = image.shape[:2]
            elif image.shape[:2] != size:
                where = os.fspath(frame) if not isinstance(frame, np.ndarray) else None
                raise DataError(
                    where, f"frame {t} is {image.shape[:2]}, the video's first frame {size}"
                )
            yield image

    def _track(self, index: int, result: TrackResult) -> Track:
        return Track(
            track_id=index,
            category_id=result.category_id,
            category=self._names[result.category_id],
            score=result.score,
            frame_size=result.frame_size,
            masks=tuple(frame.rle for frame in result.frames),
        )
