"""The package's layers: every module imports only its own layer or the ones below.

Imports are read from the source (``ast``), the lazy ones inside functions included, so a
violation cannot hide behind a deferred import. The layers, lowest first, are listed in
:data:`LAYERS`; docs/development.md describes them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "uvis"

LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(names.split())
    for names in (
        "uvis errors io presets masks checkpoints devices schemas interrupt progress categories",
        "engine",  # the training engine: loop, hooks, run folders, schedules
        "evaluation synth baselines",  # official metrics, the synthetic world, DeepSORT parts
        "data",  # dataset readers and artefact files
        "foundation",  # loaders of real (and stand-in) foundation-model weights
        "model prototypes proposals",
        "pseudo train",
        "tracking",
        "inference",
        "tagvis report",
        "standins",  # trainers of the stand-ins: above everything they train
        "cli",
        "workflow __main__",  # the Snakemake workflow's Python, above the CLI
    )
)
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def package_of(module: str) -> str:
    """``uvis.a.b`` -> ``a``; ``uvis`` -> ``uvis``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def uvis_imports() -> list[tuple[str, str, str]]:
    """(importing package, imported package, "file:line") for every import of a uvis module."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        source = package_of("uvis." + ".".join(rel.with_suffix("").parts))
        if source == "__init__":
            source = "uvis"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name == "uvis" or name.startswith("uvis."):
                    found.append((source, package_of(name), f"{rel}:{node.lineno}"))
    return found


IMPORTS = uvis_imports()


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    packages |= {p.stem for p in SRC.glob("*.py") if p.stem != "__init__"}
    assert packages - set(LAYER_OF) == set()


def test_no_import_reaches_a_higher_layer() -> None:
    upward = [
        f"{where}: {source} imports {target}"
        for source, target, where in IMPORTS
        if LAYER_OF[target] > LAYER_OF[source]
    ]
    assert upward == []


def test_no_library_module_imports_the_cli() -> None:
    top = LAYERS[LAYER_OF["cli"]] | LAYERS[LAYER_OF["__main__"]]
    offenders = [
        where for source, target, where in IMPORTS if target == "cli" and source not in top
    ]
    assert offenders == []


def test_packages_of_one_layer_do_not_import_each_other_both_ways() -> None:
    pairs = {(s, t) for s, t, _ in IMPORTS if s != t}
    assert sorted((s, t) for s, t in pairs if (t, s) in pairs) == []


@pytest.mark.parametrize("loader", ["ssl", "clip", "weights", "checkpoints"])
def test_foundation_loaders_import_no_trainer_or_dataset(loader: str) -> None:
    where = f"foundation/{loader}.py:"
    targets = {t for _, t, w in IMPORTS if w.startswith(where)}
    assert targets & {"standins", "synth", "data", "model", "train"} == set()
