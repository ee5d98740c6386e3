"""Tests of the classification-pretrained VIS backbone (``uvis pretrain backbone``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uvis.cli import main
from uvis.errors import ConfigError, DataError
from uvis.standins.backbone import (
    BackboneTrainConfig,
    class_labels,
    scale_jitter_size,
    train_backbone,
)


def _write_corpus(root: Path, per_class: int = 24, size: int = 32) -> Path:
    """Two easy classes: a bright square on dark noise (id 1), a dark one on bright noise (id 2).

    Squares vary in place and size, so the classes differ in contrast, not in any fixed pixel.
    """
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    lines = []
    for i in range(2 * per_class):
        category_id = 1 + i % 2
        bright = category_id == 1
        image = (
            rng.integers(180, 256, (size, size, 3))
            if not bright
            else rng.integers(0, 60, (size, size, 3))
        )
        side = int(rng.integers(10, 20))
        y, x = rng.integers(0, size - side, 2)
        image[y : y + side, x : x + side] = 255 if bright else 0
        name = f"images/{i:03d}.png"
        Image.fromarray(image.astype(np.uint8)).save(root / name)
        lines.append(
            json.dumps(
                {"file": name, "caption": "a square", "category_id": category_id, "colour": "grey"}
            )
        )
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_corpus(tmp_path_factory.mktemp("captioned"))


@pytest.fixture(scope="module")
def trained(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    cfg = BackboneTrainConfig.preset("smoke", epochs=6, batch_size=8, holdout_fraction=0.25)
    out = tmp_path_factory.mktemp("out") / "backbone.pth"
    return out, train_backbone(corpus, cfg, out, progress=False)


def test_trains_above_chance_on_easy_classes(trained: tuple[Path, dict]) -> None:
    out, report = trained
    assert report["num_classes"] == 2
    assert report["num_train_images"] == 36 and report["num_heldout_images"] == 12
    # Held-out images of two contrast-reversed classes; chance is at most 7/12.
    assert report["heldout_accuracy"] >= 0.9 > report["chance_accuracy"]
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["config"]["epochs"] == 6
    assert saved["heldout_accuracy"] == report["heldout_accuracy"]


def test_saved_state_dict_initialises_the_vis_backbone(trained: tuple[Path, dict]) -> None:
    import torch

    from uvis.model.mask2former import create_vis_model

    out, _ = trained
    state = torch.load(out, weights_only=True)
    assert "fc.weight" in state and state["fc.weight"].shape[0] == 2
    model = create_vis_model("uvis-smoke", 3, backbone_weights=out)
    loaded = {
        k: v
        for k, v in model.backbone.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert len(loaded) > 50 and "layer4.0.conv1.weight" in loaded
    assert all(torch.equal(v, state[k]) for k, v in loaded.items())


def test_training_is_reproducible(corpus: Path, tmp_path: Path) -> None:
    import torch

    cfg = BackboneTrainConfig.preset("smoke", epochs=1, batch_size=8)
    train_backbone(corpus, cfg, tmp_path / "a.pth", progress=False)
    train_backbone(corpus, cfg, tmp_path / "b.pth", progress=False)
    a = torch.load(tmp_path / "a.pth", weights_only=True)
    b = torch.load(tmp_path / "b.pth", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_corpus_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"captions\.jsonl: missing"):
        train_backbone(tmp_path, BackboneTrainConfig.preset("smoke"), tmp_path / "o.pth")
    (tmp_path / "captions.jsonl").write_text('{"file": "x.png"}\n')
    with pytest.raises(DataError, match=r"captions\.jsonl: line 1"):
        train_backbone(tmp_path, BackboneTrainConfig.preset("smoke"), tmp_path / "o.pth")
    assert not (tmp_path / "o.pth").exists()


def test_class_labels_shift_ids_and_reject_zero() -> None:
    labels, n = class_labels(np.array([3, 1, 2, 3]), Path("c.jsonl"))
    assert labels.tolist() == [2, 0, 1, 2] and n == 3
    with pytest.raises(DataError, match=r"c\.jsonl: category_id must be >= 1"):
        class_labels(np.array([0, 1]), Path("c.jsonl"))


def test_scale_jitter_size() -> None:
    assert scale_jitter_size(64, 0.75) == 48
    assert scale_jitter_size(64, 1.5) == 96
    assert scale_jitter_size(64, 1.1) == 64  # 70.4 rounds down to 64
    assert scale_jitter_size(8, 0.5) == 8


def test_config_checks() -> None:
    with pytest.raises(ConfigError, match="scale_range"):
        BackboneTrainConfig.preset("smoke", scale_range=(1.5, 0.75))
    with pytest.raises(ConfigError, match="unknown"):
        BackboneTrainConfig.preset("huge")


def test_cli_prints_one_line_and_writes_both_files(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bb.pth"
    argv = ["pretrain", "backbone", str(corpus), str(out), "--preset", "smoke"]
    assert main([*argv, "--set", "epochs=1", "--no-progress"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("pretrain backbone: wrote")
    assert out.exists() and out.with_suffix(".json").exists()
    assert main(["pretrain", "backbone", str(tmp_path), str(tmp_path / "x.pth")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "captions.jsonl" in err[0]


# ---- the tag-based model's (2+1)D encoder (``uvis pretrain video-encoder``) -----------------


@pytest.fixture(scope="module")
def trained_video_encoder(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    from uvis.standins.video_encoder import EncoderPretrainConfig, train_video_encoder

    cfg = EncoderPretrainConfig.preset("smoke", epochs=6, batch_size=8, holdout_fraction=0.25)
    out = tmp_path_factory.mktemp("venc") / "encoder.pth"
    return out, train_video_encoder(corpus, cfg, out, progress=False)


def test_video_encoder_learns_easy_classes(trained_video_encoder: tuple) -> None:
    _, report = trained_video_encoder
    assert report["arch"] == "r2plus1d" and report["num_classes"] == 2
    assert list(report["config"]["encoder_widths"]) == [8, 16]  # the smoke tagvis encoder's
    assert report["heldout_accuracy"] >= 0.9 > report["chance_accuracy"]


def test_video_encoder_initialises_the_tag_based_model(trained_video_encoder: tuple) -> None:
    import torch

    from uvis.tagvis.config import TagVisConfig
    from uvis.tagvis.model import create_tagvis_model

    out, _ = trained_video_encoder
    state = torch.load(out, weights_only=True)
    # torchvision's r2plus1d_18 layout: stem, layers and the classifier.
    assert {"stem.0.weight", "layer2.0.conv1.0.0.weight", "fc.weight"} <= set(state)
    model = create_tagvis_model(TagVisConfig.preset("smoke", encoder_weights=str(out)), 3)
    loaded = model.encoder.state_dict()
    assert len(loaded) > 20
    assert all(torch.equal(v, state[k]) for k, v in loaded.items())


def test_video_encoder_of_other_widths_is_refused(trained_video_encoder: tuple) -> None:
    from uvis.tagvis.config import TagVisConfig
    from uvis.tagvis.model import create_tagvis_model

    out, _ = trained_video_encoder
    wider = TagVisConfig.preset("smoke", encoder_widths=(8, 24), encoder_weights=str(out))
    with pytest.raises(DataError, match=r"encoder\.pth"):
        create_tagvis_model(wider, 3)


def test_video_encoder_cli(corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "venc.pth"
    argv = ["pretrain", "video-encoder", str(corpus), str(out), "--preset", "smoke"]
    assert main([*argv, "--set", "epochs=1", "--no-progress"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("pretrain video-encoder: wrote")
    assert out.exists() and out.with_suffix(".json").exists()
    assert main([*argv, "--set", "clip_frames=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clip_frames" in err[0]
