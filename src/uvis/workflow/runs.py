"""Run names: what each ``metrics/<run>.<split>.<kind>.json`` of the workflow is.

A run is one of:

* a VIS model with a tracker, ``<training>-<tracker>``: the training is ``supervised`` (ground
  truth), ``uvis`` (the configured pseudo-label selection), ``uvis_<level>`` (another filter
  level) or ``uvis_tau<tau>`` (PMF at another threshold, ``str(float(tau))``); the tracker
  ``minvis`` (plain query matching) or ``memory`` (the tracking memory);
* the DeepSORT baseline, ``deepsort`` (at ``deepsort.level``) or ``deepsort_<level>``;
* a tag-based variant, ``tagvis-<variant>``;
* the frame-by-frame ``baseline``.

:meth:`Run.parse` and ``str(run)`` convert between the two forms; nothing else slices names.
:func:`track_vis_options` gives the tracking options every VIS run's ``track_vis`` job shares.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LEVELS = ("none", "objectness", "clip", "pmf")
"""Pseudo-label filter levels, in the order of UVIS Table 2 (A2-A5)."""

TRACKERS = ("minvis", "memory")
"""How a VIS model's per-frame queries are linked: MinVIS matching or the tracking memory."""

_LEVEL = "|".join(LEVELS)
VIS_TRAINING_PATTERN = rf"uvis|supervised|uvis_({_LEVEL})|uvis_tau[0-9]+\.[0-9]+"
"""Regular expression of the VIS training names (a wildcard constraint of the rules)."""

DEEPSORT_RUN_PATTERN = rf"deepsort(_({_LEVEL}))?"
"""Regular expression of the DeepSORT run names."""


@dataclass(frozen=True)
class VisTraining:
    """A trained VIS model: on ground truth, or on pseudo-labels at a filter ``level`` (PMF at
    threshold ``tau``); both ``None`` is the configured selection, the run named ``uvis``."""

    supervised: bool = False
    level: str | None = None
    tau: float | None = None

    def __post_init__(self) -> None:
        if self.level is not None and self.level not in LEVELS:
            raise ValueError(f"unknown pseudo-label level {self.level!r}; known: {LEVELS}")
        if self.supervised and (self.level is not None or self.tau is not None):
            raise ValueError("a supervised training has no pseudo-label level or tau")
        if self.level is not None and self.tau is not None:
            raise ValueError("a training names a level or a PMF tau, not both")

    def __str__(self) -> str:
        if self.supervised:
            return "supervised"
        if self.tau is not None:
            return f"uvis_tau{float(self.tau)}"
        return "uvis" if self.level is None else f"uvis_{self.level}"

    @classmethod
    def parse(cls, name: str) -> VisTraining:
        """The training a name such as ``uvis_tau0.5`` stands for (ValueError if none)."""
        if not re.fullmatch(VIS_TRAINING_PATTERN, name):
            raise ValueError(f"not a VIS training name: {name!r}")
        if name == "supervised":
            return cls(supervised=True)
        if name.startswith("uvis_tau"):
            return cls(tau=float(name[len("uvis_tau") :]))
        return cls(level=name[len("uvis_") :] if name != "uvis" else None)

    def selection(self, configured_level: str) -> tuple[str, float | None]:
        """(level, tau or None) of the pseudo-labels it trains on, ``configured_level`` being
        ``vis.pseudo_level`` (what ``uvis`` trains on). Not for the supervised model."""
        if self.supervised:
            raise ValueError("the supervised model trains on ground truth, not pseudo-labels")
        if self.tau is not None:
            return "pmf", self.tau
        return (self.level or configured_level), None


@dataclass(frozen=True)
class Run:
    """One evaluated run (see the module docstring): ``kind`` is ``vis``, ``deepsort``,
    ``tagvis`` or ``baseline``; ``training`` and ``tracker`` belong to ``vis``, ``level`` to
    ``deepsort`` (``None``: ``deepsort.level``), ``variant`` to ``tagvis``."""

    kind: str
    training: VisTraining | None = None
    tracker: str | None = None
    level: str | None = None
    variant: str | None = None

    @classmethod
    def vis(cls, training: VisTraining | str, tracker: str) -> Run:
        if isinstance(training, str):
            training = VisTraining.parse(training)
        if tracker not in TRACKERS:
            raise ValueError(f"unknown tracker {tracker!r}; known: {TRACKERS}")
        return cls("vis", training=training, tracker=tracker)

    @classmethod
    def deepsort(cls, level: str | None = None) -> Run:
        if level is not None and level not in LEVELS:
            raise ValueError(f"unknown pseudo-label level {level!r}; known: {LEVELS}")
        return cls("deepsort", level=level)

    @classmethod
    def tagvis(cls, variant: str) -> Run:
        if not variant:
            raise ValueError("a tag-based run needs a variant name")
        return cls("tagvis", variant=variant)

    def __str__(self) -> str:
        if self.kind == "vis":
            return f"{self.training}-{self.tracker}"
        if self.kind == "deepsort":
            return "deepsort" if self.level is None else f"deepsort_{self.level}"
        if self.kind == "tagvis":
            return f"tagvis-{self.variant}"
        return self.kind

    @classmethod
    def parse(cls, name: str) -> Run:
        """The run a name such as ``uvis_clip-minvis`` stands for (ValueError if none)."""
        if name == "baseline":
            return cls("baseline")
        if re.fullmatch(DEEPSORT_RUN_PATTERN, name):
            return cls.deepsort(None if name == "deepsort" else name[len("deepsort_") :])
        if name.startswith("tagvis-"):
            return cls.tagvis(name[len("tagvis-") :])
        training, sep, tracker = name.rpartition("-")
        if sep and tracker in TRACKERS and re.fullmatch(VIS_TRAINING_PATTERN, training):
            return cls.vis(training, tracker)
        raise ValueError(f"not a run name: {name!r}")

    @property
    def training_name(self) -> str | None:
        """The training behind the run (``vis/<name>`` or the tag-based variant's run name),
        or ``None`` for the baselines, which train nothing."""
        if self.kind == "vis":
            return str(self.training)
        if self.kind == "tagvis":
            return str(self)
        return None


def track_vis_options(config: Mapping[str, Any]) -> list[str]:
    """``uvis track vis`` options other than ``--lam`` from a resolved workflow ``config``.

    The ``track_vis`` rule passes these (top-k pairs per video, output-mask refinement and its
    colour bandwidth, mask-score ranking, ``vis.batch_size``); benchmarks that track as the rule
    does call the same function, so the two cannot drift apart. ``--lam`` depends on the
    tracker (``minvis`` or ``memory``) and stays with the caller.
    """
    tracking = config["tracking"]
    options = [
        "--top-k", str(tracking["top_k"]),
        "--refine", str(tracking["refine"]),
        "--refine-sigma-rgb", str(tracking["refine_sigma_rgb"]),
        "--batch-size", str(config["vis"]["batch_size"]),
    ]  # fmt: skip
    return options + (["--mask-score"] if tracking["mask_score"] else [])
