"""Settings dataclasses built from a named preset plus ``key=value`` overrides.

Every trainable stage (the synthetic world, the DINO and CLIP stand-ins, the objectness
detector, the VIS model) keeps its settings in a frozen dataclass whose field defaults are the
``default`` preset, with other presets as dicts of overrides (``smoke`` for tests). Config files
and ``--set key=value`` options reach them through :func:`config_from_preset`, so an unknown
key or a value of the wrong type is one clear :class:`ConfigError` naming the setting, the same
way for every stage. Range checks stay with each dataclass (``__post_init__``), which reports
the first invalid value through :func:`check_settings`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

import yaml

from uvis.errors import ConfigError

T = TypeVar("T")


def config_from_preset(
    cls: type[T],
    presets: Mapping[str, Mapping[str, Any]],
    name: str,
    overrides: Mapping[str, Any],
    *,
    what: str,
) -> T:
    """``cls`` with the preset ``name``'s values, then ``overrides``, applied to its defaults.

    ``what`` names the settings in messages (e.g. ``"dino"``).

    Raises:
        ConfigError: for an unknown preset, an unknown key or a value of the wrong type.
    """
    if name not in presets:
        raise ConfigError(f"unknown {what} preset {name!r}; known: {sorted(presets)}")
    return config_from_dict(cls, {**presets[name], **overrides}, what=what)


def config_from_dict(cls: type[T], data: Mapping[str, Any], *, what: str) -> T:
    """``cls`` from a (possibly partial) mapping; missing fields keep their defaults.

    Each value is checked against the type of the field's default (see :func:`coerce_like`).

    Raises:
        ConfigError: naming the first unknown key or mistyped value, or the dataclass's own
            complaint about an invalid value.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown {what} setting {key!r}; known: {sorted(fields)}")
        if value is None and "None" in str(fields[key].type):
            values[key] = None  # an optional setting switched off
        else:
            values[key] = coerce_like(value, _default(fields[key]), f"{what} setting {key!r}")
    try:
        return cls(**values)
    except TypeError as exc:  # e.g. a number compared with a string in a range check
        raise ConfigError(f"invalid {what} settings {dict(data)}: {exc}") from exc


def coerce_like(value: Any, default: Any, name: str) -> Any:
    """``value`` converted to the kind of ``default``, or a ConfigError naming ``name``.

    bool, int and str must match exactly (``True`` is not an int); a float accepts ints and
    text that ``float()`` reads (YAML reads ``2e-3`` as text); a tuple accepts a list or tuple
    whose items are checked against the default's first item; a default of ``None`` or of any
    other type accepts anything (the dataclass checks it).
    """
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = not isinstance(value, bool)
        try:
            value = float(value) if ok else value
        except (TypeError, ValueError):
            ok = False
    elif isinstance(default, tuple):
        ok = isinstance(value, list | tuple)
        if ok and default:
            value = tuple(coerce_like(v, default[0], name) for v in value)
        elif ok:
            value = tuple(value)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise ConfigError(f"{name}: expected a value like {default!r}, got {value!r}")
    return value


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def check_settings(config: Any, checks: Mapping[str, bool], what: str) -> None:
    """The range checks of a settings dataclass (``__post_init__``): ``checks`` maps each
    setting to whether its value is valid.

    Raises:
        ConfigError: ``invalid <what> setting <name>=<value>`` for the first invalid one.
    """
    bad = [key for key, ok in checks.items() if not ok]
    if bad:
        raise ConfigError(f"invalid {what} setting {bad[0]}={getattr(config, bad[0])!r}")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A settings dataclass as a JSON-ready dict of all its fields (tuples as lists): what
    checkpoints and ``config.json`` files record, and :func:`config_from_dict` reads back."""
    return {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()
    }


def resume_conflicts(config: Any, saved: Mapping[str, Any], resumable: frozenset[str]) -> list[str]:
    """Settings of ``config`` that differ from a checkpoint's ``saved`` dict, other than the
    ``resumable`` ones (which do not change what is computed): a run must not resume then."""
    mine = config_to_dict(config)
    return sorted(
        key
        for key in set(mine) | set(saved)
        if key not in resumable and mine.get(key) != saved.get(key)
    )


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are YAML scalars or lists (``12``, ``[6, 8]``, ``0.5``).

    Raises:
        ConfigError: for an item without ``=`` or a value that is not valid YAML.
    """
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            overrides[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key.strip()}: cannot parse value {text!r}") from exc
    return overrides
