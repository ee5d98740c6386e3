"""Device settings: auto picks CUDA only when there is one; asking for absent CUDA is named."""

from __future__ import annotations

import pytest
import torch

from uvis.devices import resolve_device
from uvis.errors import ConfigError


def test_auto_and_explicit_devices() -> None:
    assert resolve_device("auto", "x") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu", "x") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_absent_cuda_is_an_error_naming_the_stage(name: str) -> None:
    with pytest.raises(ConfigError, match=f"track device '{name}': no CUDA device is available"):
        resolve_device(name, "track")
