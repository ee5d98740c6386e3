"""Which torch device a stage runs on, from its ``device`` setting."""

from __future__ import annotations

from uvis.errors import ConfigError


def resolve_device(name: str, what: str) -> str:
    """``auto``: CUDA when there is a GPU, else CPU; otherwise ``name`` itself.

    Asking for CUDA on a machine without it is a ConfigError naming the stage ``what``.
    """
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{what} device {name!r}: no CUDA device is available")
    return name
