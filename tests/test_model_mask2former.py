"""The VIS model factory, its input conventions and backbone weight loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from uvis.errors import ConfigError, DataError
from uvis.foundation.weights import MissingWeightsError
from uvis.model import (
    MODEL_CONFIGS,
    VisModel,
    create_vis_model,
    load_backbone_weights,
    model_config,
    shortest_edge_size,
)
from uvis.model.mask2former import resize_rgb

torch.set_num_threads(1)


@pytest.mark.parametrize("name", sorted(MODEL_CONFIGS))
def test_factory_builds_each_named_config_with_the_right_output_shapes(name: str) -> None:
    cfg = MODEL_CONFIGS[name]
    model = create_vis_model(name, 7).eval()
    batch = model.pixel_batch([torch.zeros(3, 40, 70, dtype=torch.uint8)] * 2)
    assert batch.shape == (2, 3, 64, 96)  # padded up to multiples of 32
    with torch.inference_mode():
        out = model(batch)
        embeddings = model.query_embeddings(out)
        # The embeddings are what the class head reads: MinVIS's normalised last-layer queries.
        logits = model.mask2former.class_predictor(embeddings)
    q, d = cfg.num_queries, cfg.hidden_dim
    assert out.class_queries_logits.shape == (2, q, 7 + 1)
    assert out.masks_queries_logits.shape == (2, q, 64 // 4, 96 // 4)
    assert embeddings.shape == (2, q, d)
    torch.testing.assert_close(logits, out.class_queries_logits)


#: minvis_r50 with a small transformer: the ResNet-50 backbone is what these tests are about.
SMALL_TRANSFORMER = {
    "encoder_layers": 1,
    "decoder_layers": 3,
    "hidden_dim": 64,
    "dim_feedforward": 64,
}


@pytest.fixture(scope="module")
def small_r50() -> VisModel:
    return create_vis_model("minvis_r50", 40, **SMALL_TRANSFORMER)


def test_named_configs_follow_minvis_r50(small_r50: VisModel) -> None:
    r50 = MODEL_CONFIGS["minvis_r50"]
    assert (r50.backbone, r50.num_queries, r50.hidden_dim, r50.decoder_layers) == (
        "resnet50",
        100,
        256,
        10,
    )
    assert (r50.class_weight, r50.no_object_weight, r50.mask_weight, r50.dice_weight) == (
        2.0,
        0.1,
        5.0,
        5.0,
    )
    decoder = small_r50.mask2former.model.transformer_module.decoder
    assert len(decoder.layers) == 2  # DEC_LAYERS counts the learnable-query prediction
    assert sum(p.numel() for p in small_r50.backbone.parameters() if p.requires_grad) > 20e6
    # Frozen BatchNorm: no trainable normalisation parameters in the backbone.
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in small_r50.backbone.modules())


def test_overrides_are_checked() -> None:
    assert model_config("uvis-smoke", num_queries=5).num_queries == 5
    with pytest.raises(ConfigError, match="unknown VIS model 'nope'"):
        create_vis_model("nope", 3)
    with pytest.raises(ConfigError, match="unknown VIS model setting 'queries'"):
        model_config("uvis-smoke", queries=5)
    with pytest.raises(ConfigError, match="num_queries"):
        model_config("uvis-smoke", num_queries="many")
    with pytest.raises(ConfigError, match="num_queries"):
        model_config("uvis-smoke", num_queries=0)


def test_shortest_edge_size_by_hand() -> None:
    assert shortest_edge_size(96, 128, 96, 1333) == (96, 128)
    assert shortest_edge_size(96, 128, 128, 1333) == (128, 171)  # 170.67 rounds up
    assert shortest_edge_size(720, 1280, 360, 1333) == (360, 640)
    assert shortest_edge_size(100, 1000, 360, 1333) == (133, 1333)  # long side capped
    assert shortest_edge_size(50, 70, 32, 1333) == (32, 45)  # 44.8


def test_pixel_batch_normalises_and_pads_with_zeros() -> None:
    model = create_vis_model("uvis-smoke", 2)
    image = torch.full((3, 10, 20), 255, dtype=torch.uint8)
    batch = model.pixel_batch([image])
    mean, std = model.config.pixel_mean, model.config.pixel_std
    expected = [(255 - m) / s for m, s in zip(mean, std, strict=True)]
    torch.testing.assert_close(batch[0, :, 0, 0], torch.tensor(expected))
    assert batch.shape == (1, 3, 32, 32)
    assert batch[:, :, 10:].abs().sum() == 0 and batch[:, :, :, 20:].abs().sum() == 0


def test_resize_rgb_keeps_a_solid_colour() -> None:
    image = np.full((10, 20, 3), (10, 200, 30), np.uint8)
    out = resize_rgb(image, 15, 30)
    assert out.shape == (15, 30, 3) and (out == (10, 200, 30)).all()


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    torch.save(state, path)
    return path


def test_backbone_loads_a_torchvision_resnet50_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(1)
    reference = torchvision.models.resnet50(weights=None)
    with torch.no_grad():  # values no initialisation would produce
        for tensor in reference.state_dict().values():
            if tensor.is_floating_point():
                tensor.uniform_(0.5, 1.5)
    path = _save(reference.state_dict(), tmp_path / "resnet50-imagenet.pth")
    model = create_vis_model("minvis_r50", 3, backbone_weights=path, **SMALL_TRANSFORMER)
    loaded = model.backbone.state_dict()
    for key in ("conv1.weight", "layer3.5.bn2.running_var", "layer4.2.conv3.weight"):
        torch.testing.assert_close(loaded[key], reference.state_dict()[key], rtol=0, atol=0)


def test_backbone_weights_of_another_architecture_are_a_clear_error(
    small_r50: VisModel, tmp_path: Path
) -> None:
    path = _save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(DataError, match=r"r18\.pth: not a torchvision/timm resnet50 state dict"):
        load_backbone_weights(small_r50, path)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"junk\.pth: cannot read as a PyTorch state dict"):
        load_backbone_weights(small_r50, tmp_path / "junk.pth")
    with pytest.raises(MissingWeightsError, match=r"nowhere\.pth"):  # before building anything
        create_vis_model("minvis_r50", 3, backbone_weights=tmp_path / "nowhere.pth")
