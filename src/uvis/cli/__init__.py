"""The ``uvis`` command line: one entry point, one module per group of subcommands.

Each module in this package defines ``register(subparsers)`` that adds its subcommand(s) and
sets ``func`` on the parser to a callable taking the parsed ``argparse.Namespace`` and returning
an exit status. Errors a user can cause (:class:`uvis.errors.UvisError`) are printed as one
line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from uvis import __version__, interrupt
from uvis.errors import UvisError

# Subcommand modules, in the order they appear in ``uvis --help``.
_MODULES = (
    "synth",
    "data",
    "pretrain",
    "proposals",
    "pseudo",
    "train",
    "infer",
    "track",
    "segment",
    "baseline",
    "eval",
    "report",
    "weights",
    "misc",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``uvis`` argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="uvis", description="Unsupervised video instance segmentation pipeline."
    )
    parser.add_argument("--version", action="version", version=f"uvis {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE_HELP)
    parser.add_argument("-q", "--quiet", action="store_true", help=_QUIET_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _MODULES:
        importlib.import_module(f"uvis.cli.{name}").register(sub)
    for leaf in _leaf_parsers(parser):
        _add_log_options(leaf)
    return parser


_VERBOSE_HELP = "debug logging"
_QUIET_HELP = "warnings and errors only (eval: also no table, only the JSON line)"


def _leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers of every subcommand that takes no further subcommand."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    return [
        leaf for a in subs for p in dict.fromkeys(a.choices.values()) for leaf in _leaf_parsers(p)
    ]


def _add_log_options(p: argparse.ArgumentParser) -> None:
    """``-v``/``-q`` after the subcommand too (``uvis eval ytvis -q ...``), meaning what they
    mean before it; an option a subcommand defines itself is left to it."""
    taken = {s for a in p._actions for s in a.option_strings}
    if "-v" not in taken:
        p.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE_HELP
        )
    if "-q" not in taken:
        p.add_argument(
            "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=_QUIET_HELP
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``uvis`` command line; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to start again (train --processes)
    interrupt.install()
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except UvisError as exc:
        # One line, whatever the message holds (e.g. a library's multi-line explanation).
        line = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
        print(f"error: {line}", file=sys.stderr)
        return 2
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            return _quiet_broken_pipe()
        # A file-system error no stage turned into a UvisError (permissions, a full disk, a
        # path through a file): still one line naming the path, not a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except interrupt.Terminated:
        print("terminated (SIGTERM); outputs written so far are complete", file=sys.stderr)
        return interrupt.EXIT_STATUS


def _quiet_broken_pipe() -> int:
    """The reader of stdout went away (`uvis schemas | head`): stop quietly, as other tools do,
    and keep Python from reporting the pipe again when it flushes stdout at exit."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
