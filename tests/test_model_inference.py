"""Per-frame inference (the FrameQueries tracking reads) and loading trained checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from uvis.checkpoints import save_checkpoint
from uvis.data.frames import Category
from uvis.errors import DataError
from uvis.model import FrameQueries, create_vis_model, load_vis_model, predict_frames
from uvis.model.checkpoint import checkpoint_dict
from uvis.model.inference import mask_grid_size
from uvis.model.mask2former import resize_rgb

torch.set_num_threads(1)

CATEGORIES = (Category(3, "cat"), Category(7, "dog"))


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, (50, 70, 3), dtype=np.uint8),  # -> 32 x 45 at test size 32
        rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),  # -> 32 x 32
    ]


def test_predict_frames_shapes_and_masks_cropped_to_the_image() -> None:
    torch.manual_seed(0)
    model = create_vis_model("uvis-smoke", 2)
    images = _images()
    results = predict_frames(model, images, batch_size=2)
    assert len(results) == 2 and all(isinstance(r, FrameQueries) for r in results)
    q, d = model.config.num_queries, model.config.hidden_dim
    assert [r.frame_size for r in results] == [(50, 70), (64, 64)]
    assert mask_grid_size(32, 45) == (8, 12)  # ceil(32 / 4), ceil(45 / 4)
    assert results[0].mask_logits.shape == (q, 8, 12)
    assert results[1].mask_logits.shape == (q, 8, 8)
    for r in results:
        assert r.embeddings.shape == (q, d) and r.class_logits.shape == (q, 3)
        assert r.embeddings.dtype == r.class_logits.dtype == r.mask_logits.dtype == np.float32
    # The same batch by hand: resized, padded to 32 x 64, forward; the crop is the top-left.
    model.eval()
    tensors = [
        torch.tensor(resize_rgb(images[0], 32, 45)).permute(2, 0, 1),
        torch.tensor(resize_rgb(images[1], 32, 32)).permute(2, 0, 1),
    ]
    with torch.inference_mode():
        out = model(model.pixel_batch(tensors))
    assert out.masks_queries_logits.shape[-2:] == (8, 16)
    np.testing.assert_allclose(results[0].mask_logits, out.masks_queries_logits[0, :, :8, :12])
    np.testing.assert_allclose(results[1].mask_logits, out.masks_queries_logits[1, :, :8, :8])
    np.testing.assert_allclose(results[1].class_logits, out.class_queries_logits[1])


def test_predict_frames_rejects_non_images() -> None:
    model = create_vis_model("uvis-smoke", 2)
    with pytest.raises(ValueError, match="image 1: expected shape"):
        predict_frames(model, [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)])
    with pytest.raises(ValueError, match="image 0: expected a uint8"):
        predict_frames(model, [np.zeros((8, 8, 3), np.float32)])


def _checkpoint(tmp_path: Path, **overrides) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = create_vis_model("uvis-smoke", len(CATEGORIES), **overrides)
    path = tmp_path / "model_final.pth"
    save_checkpoint(path, checkpoint_dict(model, CATEGORIES, iteration=5, train_config={"seed": 0}))
    return path, model


def test_load_vis_model_round_trip(tmp_path: Path) -> None:
    path, model = _checkpoint(tmp_path, num_queries=5)
    loaded, meta = load_vis_model(path, vocabulary=["cat", "dog"])
    assert not loaded.training
    assert meta.category_ids == (3, 7) and meta.category_names == ("cat", "dog")
    assert meta.config.num_queries == 5 and meta.iteration == 5
    images = _images()
    expected, got = predict_frames(model, images), predict_frames(loaded, images)
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a.mask_logits, b.mask_logits)
        np.testing.assert_array_equal(a.embeddings, b.embeddings)


def test_load_vis_model_with_another_vocabulary_is_an_error(tmp_path: Path) -> None:
    path, _ = _checkpoint(tmp_path)
    with pytest.raises(DataError, match=r"class 1 is 'dog', not the expected 'cow'"):
        load_vis_model(path, vocabulary=["cat", "cow"])
    with pytest.raises(DataError, match=r"2 classes, not the 3 expected"):
        load_vis_model(path, vocabulary=["cat", "dog", "cow"])
    with pytest.raises(DataError, match="another vocabulary"):
        load_vis_model(path, vocabulary=["dog", "cat"])  # same names, other order


def test_load_vis_model_of_another_architecture_is_an_error(tmp_path: Path) -> None:
    path, _ = _checkpoint(tmp_path)
    obj = torch.load(path, weights_only=True)
    obj["model_config"]["hidden_dim"] = 64  # the weights are for width 32
    torch.save(obj, tmp_path / "wider.pth")
    with pytest.raises(DataError, match=r"wider\.pth: weights do not fit .* shape mismatches"):
        load_vis_model(tmp_path / "wider.pth")
    torch.save({"format": "uvis-learned-detector", "model": {}}, tmp_path / "detector.pth")
    with pytest.raises(DataError, match=r"detector\.pth: not a VIS model checkpoint"):
        load_vis_model(tmp_path / "detector.pth")
    with pytest.raises(DataError, match=r"missing\.pth: checkpoint file does not exist"):
        load_vis_model(tmp_path / "missing.pth")
