"""Parameters of the synthetic video world, with named presets.

One frozen :class:`SynthParams` fixes everything `uvis synth` generates: with the same
parameters (the seed included) the world is reproduced file for file. Sizes are in pixels,
object sizes and speeds are fractions of the frame's short side so a preset scales with the
resolution, and rates are probabilities in ``[0, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from uvis.errors import ConfigError
from uvis.presets import config_from_dict, config_from_preset, config_to_dict

# Preset name -> overrides of the field defaults (the defaults *are* the "default" preset).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "smoke": {
        "num_train_videos": 4,
        "num_valid_videos": 3,
        "frames_per_video": (6, 8),
        "height": 64,
        "width": 80,
        "num_unlabeled_images": 64,
        "num_captioned_images": 64,
        "corpus_image_size": 48,
    },
}

# Fields holding an inclusive ``(low, high)`` range, and whether their values are integers.
_RANGES: dict[str, type] = {
    "frames_per_video": int,
    "objects_per_video": int,
    "object_size": float,
    "scale_change": float,
    "speed": float,
}
_RATES = ("occlusion_rate", "enter_leave_rate", "same_category_rate", "pillar_rate")
_INTS = (
    "seed",
    "num_train_videos",
    "num_valid_videos",
    "height",
    "width",
    "num_unlabeled_images",
    "num_captioned_images",
    "corpus_image_size",
    "fps",
    "jpeg_quality",
    "mp4_crf",
)
_FLOATS = ("rotation_speed", "background_pan", "frame_noise", *_RATES)


@dataclass(frozen=True)
class SynthParams:
    """Everything that determines a generated world (see the field comments).

    Attributes:
        seed: root seed; every video and corpus image draws from its own generator
            ``default_rng([seed, stream, index])``, so adding videos never changes earlier ones.
        num_train_videos, num_valid_videos: videos per split.
        frames_per_video: inclusive range of the number of frames of a video.
        height, width: frame size in pixels; both even (H.264 in yuv420p needs even sizes).
        objects_per_video: inclusive range of the number of object tracks in a video.
        object_size: range of an object's diameter as a fraction of the short side.
        scale_change: range of an object's last-frame / first-frame size ratio.
        speed: range of an object's mean speed, fraction of the short side per frame.
        rotation_speed: largest spin of an object, radians per frame.
        occlusion_rate: probability that a video (with two or more objects) gets two object
            paths that cross at one frame, so the one behind is occluded.
        enter_leave_rate: probability, per object, that it enters through or leaves through
            the frame border (absent at the first or last frame).
        same_category_rate: probability that a video repeats a category (two instances of
            one category), on top of what chance gives.
        pillar_rate: probability that a video gets a pillar: a static band in front of every
            object, across one object's path, wide enough to hide that object completely for
            3-6 frames in the middle of the video (a long full occlusion), at most 30 % of
            the frame wide (no pillar where no object allows that). 0 in the presets; for
            worlds that test tracking.
        background_pan: largest background pan speed, pixels per frame.
        frame_noise: standard deviation of the per-frame pixel noise (0-255 scale).
        num_unlabeled_images, num_captioned_images: sizes of the two image corpora.
        corpus_image_size: side of the square corpus images, pixels.
        fps: frame rate written into the mp4 videos.
        jpeg_quality: JPEG quality of frames and corpus images (1-95).
        mp4_crf: x264 constant rate factor of the mp4 videos (0 lossless - 51).
    """

    seed: int = 0
    num_train_videos: int = 60
    num_valid_videos: int = 16
    frames_per_video: tuple[int, int] = (12, 24)
    height: int = 96
    width: int = 128
    objects_per_video: tuple[int, int] = (2, 4)
    object_size: tuple[float, float] = (0.14, 0.42)
    scale_change: tuple[float, float] = (0.7, 1.4)
    speed: tuple[float, float] = (0.004, 0.03)
    rotation_speed: float = 0.06
    occlusion_rate: float = 0.5
    enter_leave_rate: float = 0.2
    same_category_rate: float = 0.3
    pillar_rate: float = 0.0
    background_pan: float = 0.5
    frame_noise: float = 2.5
    num_unlabeled_images: int = 2000
    num_captioned_images: int = 2000
    corpus_image_size: int = 64
    fps: int = 6
    jpeg_quality: int = 90
    mp4_crf: int = 20

    def __post_init__(self) -> None:
        for name, kind in _RANGES.items():
            object.__setattr__(self, name, _as_range(name, getattr(self, name), kind))
        for name in _INTS:
            _as_int(name, getattr(self, name))
        for name in _FLOATS:
            object.__setattr__(self, name, _as_float(name, getattr(self, name)))
        self._check_values()

    def _check_values(self) -> None:
        """Raise :class:`ConfigError` naming the first field whose value is out of range."""
        checks = [
            ("seed", self.seed >= 0, "must be >= 0"),
            ("num_train_videos", self.num_train_videos >= 0, "must be >= 0"),
            ("num_valid_videos", self.num_valid_videos >= 0, "must be >= 0"),
            ("frames_per_video", self.frames_per_video[0] >= 2, "needs at least 2 frames"),
            ("height", self.height >= 16 and self.height % 2 == 0, "must be even and >= 16"),
            ("width", self.width >= 16 and self.width % 2 == 0, "must be even and >= 16"),
            ("objects_per_video", self.objects_per_video[0] >= 1, "needs at least 1 object"),
            (
                "object_size",
                0.0 < self.object_size[0] and self.object_size[1] <= 1.0,
                "must lie in (0, 1]",
            ),
            ("scale_change", self.scale_change[0] > 0.0, "must be > 0"),
            ("speed", self.speed[0] >= 0.0, "must be >= 0"),
            ("rotation_speed", self.rotation_speed >= 0.0, "must be >= 0"),
            ("background_pan", self.background_pan >= 0.0, "must be >= 0"),
            ("frame_noise", self.frame_noise >= 0.0, "must be >= 0"),
            ("num_unlabeled_images", self.num_unlabeled_images >= 0, "must be >= 0"),
            ("num_captioned_images", self.num_captioned_images >= 0, "must be >= 0"),
            ("corpus_image_size", self.corpus_image_size >= 16, "must be >= 16"),
            ("fps", self.fps >= 1, "must be >= 1"),
            ("jpeg_quality", 1 <= self.jpeg_quality <= 95, "must lie in 1..95"),
            ("mp4_crf", 0 <= self.mp4_crf <= 51, "must lie in 0..51"),
        ]
        checks += [
            (name, 0.0 <= getattr(self, name) <= 1.0, "must lie in [0, 1]") for name in _RATES
        ]
        for name, ok, problem in checks:
            if not ok:
                raise ConfigError(f"synth parameter {name!r} = {getattr(self, name)!r} {problem}")

    @property
    def short_side(self) -> int:
        """The frame's short side in pixels (object sizes and speeds are fractions of it)."""
        return min(self.height, self.width)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SynthParams:
        """The named preset (``"smoke"`` or ``"default"``) with ``overrides`` applied.

        Raises:
            ConfigError: for an unknown preset name, an unknown key or an invalid value.
        """
        return config_from_preset(cls, PRESETS, name, overrides, what="synth")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all fields (ranges as lists)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynthParams:
        """Build from a (possibly partial) dict; missing fields take their defaults.

        Raises:
            ConfigError: naming the first unknown key, or the field with an invalid value.
        """
        return config_from_dict(cls, data, what="synth")


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"synth parameter {name!r} must be an integer, got {value!r}")
    return value


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"synth parameter {name!r} must be a number, got {value!r}")
    return float(value)


def _as_range(name: str, value: Any, kind: type) -> tuple[Any, Any]:
    """Check that ``value`` is a ``(low, high)`` pair with ``low <= high``; return it as a tuple."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"synth parameter {name!r} must be a [low, high] pair, got {value!r}")
    check = _as_int if kind is int else _as_float
    low, high = (check(name, v) for v in value)
    if low > high:
        raise ConfigError(f"synth parameter {name!r} = {list(value)!r} has low > high")
    return (low, high)
