"""``uvis weights list`` and ``uvis weights verify``: the real weights the pipeline knows.

``list`` shows every weight of :data:`uvis.foundation.weights.KNOWN_WEIGHTS` with where it was
found (the weights folder, torch.hub's or the Hugging Face cache) or where to put it, its size,
licence and source, and which config files name it. ``verify`` checks the present ones: the
file's SHA-256 against the publisher's where one is stated, and that the loader the pipeline
uses for it accepts it. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvis.errors import ConfigError, UvisError
from uvis.foundation.weights import (
    KNOWN_WEIGHTS,
    WeightSpec,
    locate_weights,
    weights_dir,
)


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """The hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _values(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _values(value)
    elif isinstance(node, list):
        for value in node:
            yield from _values(value)
    elif isinstance(node, str):
        yield node


def configs_using(name: str, config_files: Iterable[Path]) -> list[str]:
    """The config files (YAML) with a setting whose value is the weight ``name``."""
    import yaml

    using = []
    for path in config_files:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue  # not a readable config: it names nothing
        if name in _values(data):
            using.append(path.name)
    return using


def default_config_files(root: Path) -> list[Path]:
    """``config.yaml`` and ``config/*.yaml`` of a checkout (those that exist)."""
    files = [root / "config.yaml", *sorted((root / "config").glob("*.yaml"))]
    return [f for f in files if f.is_file()]


@dataclass(frozen=True)
class WeightCheck:
    """What ``verify`` found for one weight: ``ok`` is False when a check failed; ``None``
    when nothing could be checked (absent, or its loader's library is not installed)."""

    name: str
    path: Path | None
    ok: bool | None
    notes: tuple[str, ...]


def load_with_pipeline_loader(spec: WeightSpec, path: Path) -> None:
    """Load ``path`` with the loader the pipeline uses for ``spec``'s family and architecture;
    raises :class:`~uvis.errors.UvisError` (DataError naming the file) when it does not fit."""
    if spec.family == "ssl_vit":
        from uvis.foundation.ssl import create_ssl_vit

        create_ssl_vit(spec.arch, weights=path)
    elif spec.family == "clip":
        from uvis.foundation.clip import create_clip

        create_clip(spec.arch, weights=path)
    elif spec.family == "resnet":
        from uvis.model.mask2former import MODEL_CONFIGS, VisModel, load_backbone_weights

        config = next(c for c in MODEL_CONFIGS.values() if c.backbone == spec.arch)
        load_backbone_weights(VisModel(config, num_classes=1), path)
    elif spec.family == "r2plus1d":
        from uvis.tagvis.config import R2PLUS1D_18_DEPTHS, R2PLUS1D_18_WIDTHS
        from uvis.tagvis.model import R2Plus1DEncoder, load_r2plus1d_weights

        load_r2plus1d_weights(R2Plus1DEncoder(R2PLUS1D_18_WIDTHS, R2PLUS1D_18_DEPTHS), path)
    elif spec.family == "cutler":
        from uvis.proposals.cutler import CutlerSettings, load_cutler_model

        load_cutler_model(path, CutlerSettings())
    else:  # pragma: no cover - Family is a closed set
        raise ValueError(f"no loader for family {spec.family!r}")


def verify_weight(spec: WeightSpec, *, load: bool = True) -> WeightCheck:
    """Checks one weight: present, SHA-256 (against ``spec.sha256_prefix`` where stated), and
    (``load``) accepted by the pipeline's loader."""
    path = locate_weights(spec)
    if path is None:
        where = weights_dir() / spec.name / spec.filename
        return WeightCheck(spec.name, None, None, (f"absent: download {spec.url} to {where}",))
    notes, ok = [], True
    digest = sha256_of(path)
    if spec.sha256_prefix:
        if digest.startswith(spec.sha256_prefix):
            notes.append(f"sha256 {digest[:16]}... matches the published {spec.sha256_prefix}")
        else:
            ok = False
            notes.append(f"sha256 {digest[:16]}... does not start with {spec.sha256_prefix}")
    else:
        notes.append(f"sha256 {digest} (no published checksum to compare)")
    if load and spec.family == "cutler":
        from uvis.proposals.cutler import require_detectron2

        try:
            require_detectron2()
        except UvisError as exc:  # the loader's library is missing: the file is not judged
            notes.append(f"not loaded: {exc}")
            return WeightCheck(spec.name, path, None if ok else False, tuple(notes))
    if load:
        try:
            load_with_pipeline_loader(spec, path)
            notes.append(f"loads as {spec.arch}")
        except UvisError as exc:
            ok = False
            notes.append(f"does not load: {exc}")
    return WeightCheck(spec.name, path, ok, tuple(notes))


def _human_size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"  # pragma: no cover


def _list(args: argparse.Namespace) -> int:
    files = default_config_files(args.root)
    print(f"weights folder: {weights_dir()} (set UVIS_WEIGHTS to change it)")
    for spec in KNOWN_WEIGHTS.values():
        path = locate_weights(spec)
        found = (
            f"{path} ({_human_size(path.stat().st_size)})"
            if path is not None
            else f"absent (put it at {weights_dir() / spec.name / spec.filename})"
        )
        using = ", ".join(configs_using(spec.name, files)) or "-"
        print(f"\n{spec.name}: {spec.note}")
        print(f"  family {spec.family}, architecture {spec.arch}, format {spec.format}")
        print(f"  file     {found}")
        print(f"  source   {spec.url}")
        print(f"  licence  {spec.licence or 'see the source'}")
        print(f"  used by  {using}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    unknown = [n for n in args.names if n not in KNOWN_WEIGHTS]
    if unknown:
        raise ConfigError(f"unknown weight {unknown[0]!r}; known: {', '.join(KNOWN_WEIGHTS)}")
    names = args.names or list(KNOWN_WEIGHTS)
    failed = absent = 0
    for name in names:
        check = verify_weight(KNOWN_WEIGHTS[name], load=not args.no_load)
        status = {True: "ok", False: "FAILED", None: "unchecked"}[check.ok]
        print(f"{name}: {status}")
        for note in check.notes:
            print(f"  {note}")
        failed += check.ok is False
        absent += check.path is None
    print(f"{len(names)} weights: {failed} failed, {absent} absent")
    # Absent weights fail only when named: a plain `verify` checks what is there.
    return 1 if failed or (args.names and absent) else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "weights",
        help="list and verify the real pretrained weights (DINO, CLIP, CutLER, ResNet, R(2+1)D)",
    )
    cmds = p.add_subparsers(dest="weights_command", metavar="ACTION")
    cmds.required = True
    ls = cmds.add_parser(
        "list",
        help="every known weight: where it is (or goes), size, licence, source, configs",
    )
    ls.add_argument(
        "--root",
        type=Path,
        default=Path("."),
        help="checkout whose config.yaml and config/*.yaml are searched for uses (default: .)",
    )
    ls.set_defaults(func=_list)
    v = cmds.add_parser(
        "verify",
        help="check present weights: SHA-256 against the published one, and that they load",
        description="Exit status 1 when a check fails, or when a named weight is absent.",
    )
    v.add_argument("names", nargs="*", metavar="NAME", help="weights to check (default: all)")
    v.add_argument("--no-load", action="store_true", help="checksums only, no model is built")
    v.set_defaults(func=_verify)
