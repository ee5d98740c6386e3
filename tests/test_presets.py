"""Preset + override settings: one set of rules for every stage's settings dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from uvis.errors import ConfigError
from uvis.presets import coerce_like, config_from_dict, config_from_preset


@dataclass(frozen=True)
class Settings:
    steps: int = 10
    lr: float = 0.1
    flip: bool = True
    name: str = "tiny"
    scale: tuple[float, float] = (0.5, 1.0)
    sizes: tuple[int, ...] = (8, 16)
    weights: str | None = None
    cap: int | None = 4
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")


PRESETS = {"default": {}, "smoke": {"steps": 2, "name": "smoke"}}


def test_preset_then_overrides_on_top_of_defaults() -> None:
    s = config_from_preset(Settings, PRESETS, "smoke", {"lr": 1}, what="toy")
    assert (s.steps, s.name, s.lr, s.flip) == (2, "smoke", 1.0, True)
    assert isinstance(s.lr, float)
    assert config_from_preset(Settings, PRESETS, "default", {}, what="toy") == Settings()


def test_unknown_preset_and_key_are_named() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown toy preset 'big'; known: \['default', 'smoke'\]"
    ):
        config_from_preset(Settings, PRESETS, "big", {}, what="toy")
    with pytest.raises(ConfigError, match="unknown toy setting 'stpes'"):
        config_from_dict(Settings, {"stpes": 3}, what="toy")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("steps", True),
        ("steps", 2.5),
        ("steps", "3"),
        ("flip", 1),
        ("name", 3),
        ("lr", "fast"),
        ("lr", False),
        ("scale", 0.5),
        ("sizes", [8, 16.5]),
    ],
)
def test_wrong_kinds_are_rejected_with_the_setting_named(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"toy setting '{key}': expected a value like"):
        config_from_dict(Settings, {key: value}, what="toy")


def test_accepted_conversions() -> None:
    s = config_from_dict(
        Settings,
        {
            "lr": "2e-3",
            "scale": [1, 2],
            "sizes": [4, 8, 16, 32],
            "weights": "/w.pth",
            "cap": None,
            "extra": {"a": 1},
        },
        what="toy",
    )
    assert s.lr == 0.002
    assert s.scale == (1.0, 2.0) and all(isinstance(v, float) for v in s.scale)
    assert s.sizes == (4, 8, 16, 32)
    assert (s.weights, s.cap, s.extra) == ("/w.pth", None, {"a": 1})


def test_range_checks_stay_with_the_dataclass() -> None:
    with pytest.raises(ConfigError, match="steps must be >= 1, got 0"):
        config_from_dict(Settings, {"steps": 0}, what="toy")


def test_coerce_like_leaves_untyped_defaults_alone() -> None:
    assert coerce_like([1, "a"], None, "x") == [1, "a"]
    assert coerce_like((), (), "x") == ()
