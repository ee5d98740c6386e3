"""Placeholder: filled in by the baseline work package."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Register nothing yet."""
