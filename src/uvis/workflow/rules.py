"""Which workflow rules run which library code: rules/*.smk read as data.

Snakemake re-runs a job when its rule's command changes (the ``code`` re-run trigger), not when
the library modules that command imports change. After editing a uvis module, the rules whose
commands import it (directly or through other uvis modules) are the ones to re-run::

    python -m uvis.workflow.rules src/uvis/pseudo/filtering.py
    snakemake --cores N --forcerun $(python -m uvis.workflow.rules src/uvis/pseudo/filtering.py)

Each rule's ``uvis`` subcommand is found in its shell command, the subcommand's handler in the
CLI, and the uvis modules it reaches by following imports (module-level and inside functions,
so the list errs on the side of re-running). The same reading tells the tests which conda
environment (``conda:``) each command runs in.
"""

from __future__ import annotations

import argparse
import ast
import functools
import inspect
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Rules whose command is assembled in rules/common.smk: the subcommands they can run.
ASSEMBLED = {
    "frame_index": (("data", "index"), ("data", "extract")),
    "frames_from_video": (("data", "extract"),),
}

#: The repository's rules folder and library source, for the command line.
ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class RuleCommand:
    """A rule of rules/*.smk: its name, its ``conda:`` environment file (relative to the
    rules folder) and the ``uvis`` subcommands its shell command runs."""

    rule: str
    env: str | None
    subcommands: tuple[tuple[str, ...], ...]


def rule_commands(rules_dir: Path) -> list[RuleCommand]:
    """Every rule with a ``uvis`` shell command in ``rules_dir/*.smk``."""
    out = []
    for path in sorted(rules_dir.glob("*.smk")):
        blocks = re.split(r"^\s*rule (\w+):\n", path.read_text(), flags=re.M)
        for name, block in zip(blocks[1::2], blocks[2::2], strict=True):
            block = re.split(r"^\S", block, maxsplit=1, flags=re.M)[0]
            env = re.search(r'conda:\s*\n(?:\s*#.*\n)*\s*"([^"]+)"', block)
            shell = re.search(r"shell:\s*\n((?:\s+\".*\"\n?)+)", block)
            if shell is None:
                continue
            if name in ASSEMBLED:
                commands = ASSEMBLED[name]
            else:
                match = re.search(r"uvis ([a-z-]+)(?: ([a-z-]+))?", shell.group(1))
                if match is None:
                    continue
                commands = (tuple(w for w in match.groups() if w),)
            out.append(RuleCommand(name, env.group(1) if env else None, commands))
    return out


def command_handler(words: Sequence[str]) -> Callable[..., Any]:
    """The function ``uvis <words>`` runs (its parser's ``func`` default)."""
    from uvis.cli import build_parser

    parser: argparse.ArgumentParser = build_parser()
    for word in words:
        subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers or word not in subparsers[0].choices:
            break
        parser = subparsers[0].choices[word]
    func = parser.get_default("func")
    if func is None:
        raise LookupError(f"no handler for `uvis {' '.join(words)}`")
    return func


def handler_import_code(func: Callable[..., Any]) -> str:
    """Python code doing the imports ``func`` does: its module, and the import statements of
    its body (the CLI imports the library inside its handlers)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    lines = [f"import {func.__module__}"]
    lines += [
        ast.unparse(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    return "\n".join(lines)


def _imported_names(
    tree: ast.Module, module: str, is_package: bool, *, nested: bool = True
) -> set[str]:
    """Modules (and ``module.name`` candidates) that ``tree`` imports; ``nested``: also the
    imports inside functions, else the module-level ones only."""
    names = set()
    for node in ast.walk(tree) if nested else tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = module if is_package else module.rpartition(".")[0]
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            name = (
                node.module or "" if not node.level else ".".join(filter(None, (base, node.module)))
            )
            names.add(name)
            names.update(f"{name}.{alias.name}" for alias in node.names)
    return names


@functools.cache
def _file_imports(path: Path, module: str, *, nested: bool) -> frozenset[str]:
    tree = ast.parse(path.read_text())
    return frozenset(_imported_names(tree, module, path.name == "__init__.py", nested=nested))


def _module_file(name: str, src: Path) -> Path | None:
    path = src.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def uvis_modules(code: str, src: Path) -> set[str]:
    """The uvis modules ``code`` reaches through imports (with their parent packages), read
    from the sources under ``src`` (the folder holding ``uvis/``)."""
    todo = [n for n in _imported_names(ast.parse(code), "__main__", False) if n]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name.split(".")[0] != "uvis" or name in seen:
            continue
        path = _module_file(name, src)
        if path is None:
            continue
        seen.add(name)
        parts = name.split(".")
        # Parent packages run too, except the CLI's (it registers every command).
        todo += [".".join(parts[:k]) for k in range(1, len(parts)) if parts[:k] != ["uvis", "cli"]]
        # The CLI imports the library inside its handlers: of another command's module only
        # the module-level imports run.
        todo += _file_imports(path, name, nested=parts[:2] != ["uvis", "cli"])
    return seen


def module_name(path: Path, src: Path) -> str:
    """``src/uvis/pseudo/filtering.py`` -> ``uvis.pseudo.filtering``."""
    relative = path.resolve().relative_to(src.resolve()).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def rules_using(paths: Iterable[Path], rules_dir: Path, src: Path) -> list[str]:
    """The rules whose commands reach any of the library files ``paths``."""
    wanted = {module_name(p, src) for p in paths}
    out = []
    for rule in rule_commands(rules_dir):
        reached: set[str] = set()
        for words in rule.subcommands:
            reached |= uvis_modules(handler_import_code(command_handler(words)), src)
        if reached & wanted:
            out.append(rule.rule)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m uvis.workflow.rules",
        description="Print the workflow rules whose commands use the given uvis source files "
        "(for snakemake --forcerun).",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE.py")
    args = parser.parse_args(argv)
    src = ROOT / "src"
    for path in args.files:
        if not path.is_file() or not path.resolve().is_relative_to(src.resolve() / "uvis"):
            print(f"error: {path}: not a source file under {src / 'uvis'}", file=sys.stderr)
            return 2
    print(" ".join(rules_using(args.files, ROOT / "rules", src)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
