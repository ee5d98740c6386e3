"""Shared checkpoint files: atomic, byte-reproducible writes and one set of read checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from uvis.checkpoints import read_checkpoint, save_checkpoint
from uvis.errors import DataError


def _ckpt() -> dict:
    return {"format": "demo-v1", "model": {"w": torch.arange(6.0)}, "categories": []}


def test_equal_checkpoints_are_equal_bytes(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "a.pth", _ckpt())
    save_checkpoint(tmp_path / "b.pth", _ckpt())
    assert (tmp_path / "a.pth").read_bytes() == (tmp_path / "b.pth").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pth", "b.pth"]  # no temporaries
    obj = read_checkpoint(tmp_path / "a.pth", fmt="demo-v1", what="demo", required=["model"])
    assert torch.equal(obj["model"]["w"], torch.arange(6.0))


def test_read_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "x.pth"
    with pytest.raises(DataError, match=r"x\.pth.*does not exist"):
        read_checkpoint(path, fmt="demo-v1", what="demo", required=[])
    path.write_text("not a checkpoint")
    with pytest.raises(DataError, match="cannot read as a PyTorch checkpoint"):
        read_checkpoint(path, fmt="demo-v1", what="demo", required=[])
    save_checkpoint(path, _ckpt())
    with pytest.raises(DataError, match="not a other checkpoint"):
        read_checkpoint(path, fmt="other-v1", what="other", required=[])
    with pytest.raises(DataError, match="demo checkpoint has no 'training' entry"):
        read_checkpoint(path, fmt="demo-v1", what="demo", required=["model", "training"])
