"""Argument types with ranges: a value outside its range is an argparse error (exit 2, the
option named), never a NaN threshold or a zero batch size reaching a stage.

The library checks the same ranges in its settings dataclasses; these give the message before
any input is read.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

REFINE_CHOICES = ("none", "bilateral")
"""``--refine`` values: :data:`uvis.proposals.refine.REFINE_METHODS`, restated so that parsing
the command line does not import the refinement's numerical stack (a test checks they agree)."""

CUTLER_SIGMA_RGB = 5.0
"""``--refine-sigma-rgb``'s default: CutLER's colour bandwidth
(:class:`uvis.proposals.refine.BilateralParams`), restated for the same reason."""


def _number(kind: type, low: float | None, high: float | None, *, open_low: bool = False):
    """A parser of ``kind`` values (int or float) within ``[low, high]`` (``(low, high]``)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        too_low = low is not None and (value <= low if open_low else value < low)
        if too_low or (high is not None and value > high):
            left = "(" if open_low else "["
            lo = "-inf" if low is None else low
            hi = "inf" if high is None else high
            raise argparse.ArgumentTypeError(f"must lie in {left}{lo}, {hi}], got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


#: Integers >= 1 (counts, sizes, strides, threads).
positive_int: Callable[[str], int] = _number(int, 1, None)
#: Integers >= 0 (indices, seeds, counts that may be zero).
nonnegative_int: Callable[[str], int] = _number(int, 0, None)
#: Finite numbers (no NaN or infinity).
finite_float: Callable[[str], float] = _number(float, None, None)
#: Scores, thresholds and rates in [0, 1].
unit_float: Callable[[str], float] = _number(float, 0.0, 1.0)
#: Numbers > 0 (frame rates, fractions of a whole).
positive_float: Callable[[str], float] = _number(float, 0.0, None, open_low=True)
#: Fractions in (0, 1].
fraction: Callable[[str], float] = _number(float, 0.0, 1.0, open_low=True)


DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
"""``--device`` values: ``auto`` (CUDA when there is a GPU, else CPU), ``cpu``, ``cuda``,
``cuda:N``."""


def device_name(text: str) -> str:
    """A ``--device`` value (see :data:`DEVICE_PATTERN`)."""
    if not DEVICE_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def add_device_option(p: argparse.ArgumentParser, *, default: str | None = "auto") -> None:
    """The ``--device`` option every command that runs a network takes, with one meaning."""
    where = "default: auto" if default == "auto" else "default: the settings' (auto)"
    p.add_argument(
        "--device",
        type=device_name,
        default=default,
        metavar="DEVICE",
        help=f"auto (CUDA when there is a GPU, else CPU), cpu, cuda or cuda:N ({where})",
    )


def add_set_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable): settings overrides, parsed by
    :func:`uvis.presets.parse_overrides`."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=help)
