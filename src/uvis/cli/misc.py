"""Small utility subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from uvis.io import atomic_write_text


def _schemas(args: argparse.Namespace) -> int:
    from uvis.schemas import render_markdown

    text = render_markdown()
    if args.out:
        atomic_write_text(args.out, text)
    else:
        print(text)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schemas", help="print the artefact schemas (docs/ARTEFACTS.md) as Markdown")
    p.add_argument("--out", type=Path, help="write to this file instead of stdout")
    p.set_defaults(func=_schemas)
