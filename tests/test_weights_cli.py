"""``uvis weights list|verify`` and where known weights are found (uvis.foundation.weights)."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import torch

from uvis.cli import main
from uvis.cli.weights import configs_using, sha256_of, verify_weight
from uvis.foundation.ssl import build_vit
from uvis.foundation.weights import KNOWN_WEIGHTS, WeightSpec, locate_weights, resolve_weights


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty weights folder, torch.hub folder and Hugging Face cache, instead of the user's."""
    monkeypatch.setenv("UVIS_WEIGHTS", str(tmp_path / "uvis"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def _place(path: Path, data: bytes = b"weights") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_files_in_torch_hub_and_hugging_face_caches_are_found(caches):
    resnet = KNOWN_WEIGHTS["resnet50_imagenet"]
    assert locate_weights(resnet) is None
    in_hub = _place(caches / "torch" / "hub" / "checkpoints" / resnet.filename)
    assert resolve_weights("resnet50_imagenet", "resnet") == in_hub
    # The weights folder comes first.
    ours = _place(caches / "uvis" / "resnet50_imagenet" / resnet.filename)
    assert resolve_weights("resnet50_imagenet", "resnet") == ours

    clip = KNOWN_WEIGHTS["clip_vit_b32_laion2b"]
    repo = caches / "hf" / f"models--{clip.hf_repo.replace('/', '--')}"
    _place(repo / "refs" / "main", b"abc123")
    snapshot = _place(repo / "snapshots" / "abc123" / clip.filename)
    assert resolve_weights("clip_vit_b32_laion2b", "clip") == snapshot
    # A file under another name in a cache is not taken for the weight.
    _place(caches / "torch" / "hub" / "checkpoints" / "other.pth")
    assert locate_weights(KNOWN_WEIGHTS["dino_vits8"]) is None


def test_configs_using_a_weight(tmp_path):
    (tmp_path / "a.yaml").write_text("ssl: {weights: dino_vitb8}\nclip: {weights: embedded}\n")
    (tmp_path / "b.yaml").write_text("note: dino_vitb8 is the paper's\n")  # not a setting value
    (tmp_path / "c.yaml").write_text("list: [1, dino_vitb8]\n")
    (tmp_path / "bad.yaml").write_text("a: [unclosed\n")
    files = sorted(tmp_path.glob("*.yaml"))
    assert configs_using("dino_vitb8", files) == ["a.yaml", "c.yaml"]
    assert configs_using("embedded", files) == ["a.yaml"]


def test_list_names_places_licences_and_configs(caches, capsys):
    root = caches / "checkout"
    _place(root / "config" / "real.yaml", b"vis: {backbone_weights: resnet50_imagenet}\n")
    _place(caches / "uvis" / "r2plus1d_18_kinetics" / "r2plus1d_18-91a641e6.pth", b"x" * 2048)
    assert main(["weights", "list", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    block = out.split("resnet50_imagenet:")[1].split("\n\n")[0]
    assert "absent (put it at" in block and "used by  real.yaml" in block
    assert "BSD-3-Clause" in block
    kinetics = out.split("r2plus1d_18_kinetics:")[1]
    assert "(2.0 KiB)" in kinetics
    assert "CC BY-NC-SA 4.0" in out.split("cutler_cascade:")[1].split("\n\n")[0]


def _tiny_dino(path: Path) -> Path:
    torch.manual_seed(0)
    torch.save(build_vit("vit_tiny_patch16_224").state_dict(), path)
    return path


def test_verify_checksum_and_loader(caches):
    f = _tiny_dino(caches / "tiny.pth")
    digest = sha256_of(f)
    spec = WeightSpec("tiny", "ssl_vit", "vit_tiny_patch16_224", "dino", "tiny.pth", "u", "n")
    _place(caches / "uvis" / "tiny" / "tiny.pth", f.read_bytes())

    plain = verify_weight(spec)
    assert plain.ok is True and any(digest in note for note in plain.notes)
    published = WeightSpec(**{**spec.__dict__, "sha256_prefix": digest[:8]})
    assert verify_weight(published).ok is True
    wrong = WeightSpec(**{**spec.__dict__, "sha256_prefix": "00000000"})
    check = verify_weight(wrong, load=False)
    assert check.ok is False and "does not start with 00000000" in check.notes[0]
    # The same file is not a ViT-S/8: the loader refuses it, naming the file.
    other = WeightSpec(**{**spec.__dict__, "arch": "vit_small_patch8_224"})
    refused = verify_weight(other)
    assert refused.ok is False and "does not load" in refused.notes[-1]
    assert "tiny.pth" in refused.notes[-1]


def test_verify_exit_status(caches, capsys):
    assert main(["weights", "verify"]) == 0  # nothing present: nothing failed
    assert "7 weights: 0 failed, 7 absent" in capsys.readouterr().out
    assert main(["weights", "verify", "dino_vits8"]) == 1  # named and absent
    _place(caches / "uvis" / "r2plus1d_18_kinetics" / "r2plus1d_18-91a641e6.pth", b"garbage")
    assert main(["weights", "verify", "r2plus1d_18_kinetics"]) == 1
    out = capsys.readouterr().out
    assert "r2plus1d_18_kinetics: FAILED" in out and "does not start with 91a641e6" in out
    assert "does not load" in out
    assert main(["weights", "verify", "resnet_1000"]) == 2
    assert "unknown weight 'resnet_1000'" in capsys.readouterr().err


def test_open_clip_tags_and_hub_names_are_found_in_the_cache(caches):
    from uvis.foundation.weights import MissingWeightsError, clip_weights_path

    with pytest.raises(MissingWeightsError, match="ViT-B-32 pretrained=laion2b_s34b_b79k"):
        clip_weights_path("ViT-B-32", "laion2b_s34b_b79k")
    repo = caches / "hf" / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    _place(repo / "refs" / "main", b"rev1")
    cached = _place(repo / "snapshots" / "rev1" / "open_clip_pytorch_model.bin")
    assert clip_weights_path("ViT-B-32", "laion2b_s34b_b79k") == cached
    assert clip_weights_path("ViT-B-32", "hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K") == cached
    with pytest.raises(MissingWeightsError, match="hf-hub:laion/nothing"):
        clip_weights_path("ViT-B-32", "hf-hub:laion/nothing")
    # A tag of another model is no tag here: it is looked up as a file and not found.
    with pytest.raises(MissingWeightsError, match="not found"):
        clip_weights_path("RN50", "laion2b_s34b_b79k")
    assert clip_weights_path("ViT-B-32", None) is None
