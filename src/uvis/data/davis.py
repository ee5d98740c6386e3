"""Reader of the DAVIS 2017/2019 folder layout.

::

    ROOT/JPEGImages/480p/<sequence>/00000.jpg ...
    ROOT/Annotations_unsupervised/480p/<sequence>/00000.png ...   (task "unsupervised")
    ROOT/Annotations/480p/<sequence>/00000.png ...                (task "semi-supervised")
    ROOT/ImageSets/2019/val.txt                                   (one sequence per line)

Annotation PNGs (palette or grayscale) store one object id per pixel: 0 is background and 255
the "void" label that the DAVIS evaluation ignores; every other value is one object. DAVIS has
no categories, so every object gets category 1, ``"object"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from uvis import masks
from uvis.data.frames import Category, Instance, VideoDataset, VideoRecord
from uvis.errors import ConfigError, DataError
from uvis.masks import RLE

#: Annotation folder of each DAVIS task.
ANNOTATION_FOLDERS = {"unsupervised": "Annotations_unsupervised", "semi-supervised": "Annotations"}
#: Pixel value of DAVIS "void" regions (object borders, ignored by the evaluation): not an object.
VOID_LABEL = 255
#: The single category of DAVIS objects.
DAVIS_CATEGORY = Category(id=1, name="object")


def load_davis(
    root: Path,
    *,
    imageset: str | None = None,
    resolution: str = "480p",
    task: str = "unsupervised",
    annotations: bool = True,
) -> VideoDataset:
    """Load the DAVIS sequences of ``imageset`` (e.g. ``"2019/val"``), or all of them if ``None``.

    Video ids are 1-based positions in sorted sequence-name order. With ``annotations`` the
    task's annotation PNGs are read into instances, numbered from 1 in (video, PNG object id)
    order; ``annotations=False`` is for splits without public masks (``instances=None``).
    """
    if task not in ANNOTATION_FOLDERS:
        raise ConfigError(f"task: must be one of {sorted(ANNOTATION_FOLDERS)}, got {task!r}")
    root = Path(root).absolute()
    images_dir = root / "JPEGImages" / resolution
    if not images_dir.is_dir():
        raise DataError(images_dir, "DAVIS frame folder does not exist")
    names = _sequence_names(root, images_dir, imageset)
    videos = []
    for video_id, name in enumerate(sorted(names), start=1):
        seq_dir = images_dir / name
        if not seq_dir.is_dir():
            listed = f"listed in ImageSets/{imageset}.txt " if imageset else ""
            raise DataError(seq_dir, f"sequence '{name}' {listed}has no frame folder")
        frames = tuple(sorted(seq_dir.glob("*.jpg")))
        if not frames:
            raise DataError(seq_dir, "sequence folder has no JPEG frames")
        width, height = _image_size(frames[0])
        videos.append(
            VideoRecord(id=video_id, name=name, height=height, width=width, frame_paths=frames)
        )

    instances = None
    if annotations:
        ann_dir = root / ANNOTATION_FOLDERS[task] / resolution
        if not ann_dir.is_dir():
            raise DataError(ann_dir, f"annotation folder of the {task} task does not exist")
        found: list[Instance] = []
        for video in videos:
            found += _sequence_instances(video, ann_dir / video.name, first_id=len(found) + 1)
        instances = tuple(found)
    label = f"davis:{imageset}" if imageset else "davis"
    return VideoDataset(
        name=label,
        categories=(DAVIS_CATEGORY,),
        videos=tuple(videos),
        instances=instances,
        root=root,
    )


def _sequence_names(root: Path, images_dir: Path, imageset: str | None) -> list[str]:
    """Sequences listed in ``ImageSets/<imageset>.txt``, or every folder of ``images_dir``."""
    if imageset is None:
        return [p.name for p in images_dir.iterdir() if p.is_dir()]
    list_path = root / "ImageSets" / f"{imageset}.txt"
    try:
        lines = list_path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(list_path, f"image set '{imageset}' does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(list_path, f"cannot read image set: {exc}") from None
    names = [line.strip() for line in lines if line.strip()]
    if not names:
        raise DataError(list_path, "image set lists no sequences")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(list_path, f"sequences listed twice: {duplicates}")
    return names


def _image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the image header."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read image: {exc}") from None


def _label_map(path: Path, frame: Path) -> np.ndarray:
    """The object-id map of one annotation PNG, which must have the size of its frame."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise DataError(
                    path,
                    f"expected a palette or grayscale PNG of object ids, got mode {image.mode}",
                )
            labels = np.asarray(image)
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read annotation: {exc}") from None
    frame_size = _image_size(frame)
    if labels.shape != (frame_size[1], frame_size[0]):
        raise DataError(
            path,
            f"annotation is {labels.shape[1]}x{labels.shape[0]} but its frame {frame.name} is "
            f"{frame_size[0]}x{frame_size[1]} (WxH)",
        )
    return labels


def _sequence_instances(video: VideoRecord, ann_dir: Path, first_id: int) -> list[Instance]:
    """One instance per object id found in the sequence's PNGs (void and background excluded)."""
    if not ann_dir.is_dir():
        raise DataError(ann_dir, f"sequence '{video.name}' has no annotation folder")
    pngs = sorted(ann_dir.glob("*.png"))
    if len(pngs) != len(video.frame_paths):
        raise DataError(
            ann_dir, f"{len(pngs)} annotation PNGs but {len(video.frame_paths)} JPEG frames"
        )
    for png, frame in zip(pngs, video.frame_paths, strict=True):
        if png.stem != frame.stem:
            raise DataError(
                png, f"annotation does not match frame {frame.name} (frames sorted by name)"
            )
    label_maps = [
        _label_map(png, frame) for png, frame in zip(pngs, video.frame_paths, strict=True)
    ]
    object_ids = sorted(set().union(*(np.unique(m).tolist() for m in label_maps)) - {0, VOID_LABEL})
    instances = []
    for offset, object_id in enumerate(object_ids):
        segmentations: list[RLE | None] = []
        areas: list[float | None] = []
        for labels in label_maps:
            mask = labels == object_id
            area = int(mask.sum())
            segmentations.append(masks.encode(mask) if area else None)
            areas.append(float(area) if area else None)
        instances.append(
            Instance(
                id=first_id + offset,
                video_id=video.id,
                category_id=DAVIS_CATEGORY.id,
                iscrowd=0,
                segmentations=segmentations,
                areas=areas,
            )
        )
    return instances
