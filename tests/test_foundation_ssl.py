"""Self-supervised ViT: the DINO checkpoint loader, last-block keys, the DINO objective, the
multi-crop augmentation, the k-NN probe and the ``uvis pretrain ssl`` stand-in.

Checkpoints are written here in the official DINO layout from the key names of DINO's
``vision_transformer.py`` (not from a timm model), and the loaded model's outputs are compared
with an independent forward pass written from DINO's definition of the ViT.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from uvis import cli
from uvis.errors import ConfigError, DataError
from uvis.foundation import hybrid_vit, ssl
from uvis.foundation.weights import MissingWeightsError
from uvis.standins import dino

# DINO ViT-S/8 (``dino_deitsmall8_pretrain.pth``): width 384, 6 heads, 12 blocks, MLP 1536,
# 224 px training size -> 28 x 28 patches + CLS = 785 position embeddings.
VIT_S8 = {"dim": 384, "heads": 6, "depth": 12, "mlp": 1536, "patch": 8, "tokens": 785}
# A tiny stand-in-shaped ViT (timm vit_tiny width 192, 3 heads) for the cheap tests.
TINY_ARCH = "vit_tiny_patch16_224"
TINY_KWARGS = {"patch_size": 8, "img_size": 32, "depth": 2}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run on one thread: these networks are tiny, and on a shared 2-core machine two threads
    per op cost more in waiting than they gain (a smoke training run: 1.7 s vs 14 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def dino_state_dict(
    dim: int, heads: int, depth: int, mlp: int, patch: int, tokens: int, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random tensors under the key names and shapes of DINO's ``VisionTransformer``.

    ``heads`` is unused by the shapes (qkv packs all heads) but kept so the dicts above unpack.
    """
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.02) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * scale

    state = {
        "cls_token": rand(1, 1, dim),
        "pos_embed": rand(1, tokens, dim),
        "patch_embed.proj.weight": rand(dim, 3, patch, patch),
        "patch_embed.proj.bias": rand(dim),
    }
    for b in range(depth):
        p = f"blocks.{b}."
        state |= {
            p + "norm1.weight": 1 + rand(dim, scale=0.1),
            p + "norm1.bias": rand(dim),
            p + "attn.qkv.weight": rand(3 * dim, dim, scale=0.1),
            p + "attn.qkv.bias": rand(3 * dim),
            p + "attn.proj.weight": rand(dim, dim, scale=0.05),
            p + "attn.proj.bias": rand(dim),
            p + "norm2.weight": 1 + rand(dim, scale=0.1),
            p + "norm2.bias": rand(dim),
            p + "mlp.fc1.weight": rand(mlp, dim, scale=0.05),
            p + "mlp.fc1.bias": rand(mlp),
            p + "mlp.fc2.weight": rand(dim, mlp, scale=0.05),
            p + "mlp.fc2.bias": rand(dim),
        }
    state |= {"norm.weight": 1 + rand(dim, scale=0.1), "norm.bias": rand(dim)}
    return state


def dino_reference(
    state: dict[str, torch.Tensor], images: torch.Tensor, heads: int, patch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """DINO's ViT forward written from its definition: returns (CLS output, last-block keys).

    Patch embedding by a stride-``patch`` convolution, CLS prepended, position embedding added
    (``images`` at the checkpoint's own size, so none is interpolated); pre-norm blocks with
    LayerNorm eps 1e-6, softmax attention scaled by ``head_dim ** -0.5``, exact GELU MLP; final
    LayerNorm. Keys: the k third of the last block's qkv output, CLS dropped.
    """
    dim = state["cls_token"].shape[-1]
    x = F.conv2d(images, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], patch)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([state["cls_token"].expand(len(x), -1, -1), x], dim=1) + state["pos_embed"]
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    keys = torch.empty(0)
    for b in range(depth):

        def w(name: str, b: int = b) -> torch.Tensor:
            return state[f"blocks.{b}.{name}"]

        h = F.layer_norm(x, (dim,), w("norm1.weight"), w("norm1.bias"), eps=1e-6)
        qkv = F.linear(h, w("attn.qkv.weight"), w("attn.qkv.bias"))
        q, k, v = qkv.reshape(len(x), x.shape[1], 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (dim // heads) ** -0.5).softmax(dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(x.shape)
        x = x + F.linear(y, w("attn.proj.weight"), w("attn.proj.bias"))
        h = F.layer_norm(x, (dim,), w("norm2.weight"), w("norm2.bias"), eps=1e-6)
        x = x + F.linear(
            F.gelu(F.linear(h, w("mlp.fc1.weight"), w("mlp.fc1.bias"))),
            w("mlp.fc2.weight"),
            w("mlp.fc2.bias"),
        )
        keys = k.transpose(1, 2).reshape(x.shape)[:, 1:]
    x = F.layer_norm(x, (dim,), state["norm.weight"], state["norm.bias"], eps=1e-6)
    return x[:, 0], keys


@pytest.fixture(scope="module")
def vit_s8_state() -> dict[str, torch.Tensor]:
    return dino_state_dict(**VIT_S8)


@pytest.fixture(scope="module")
def vit_s8_file(tmp_path_factory: pytest.TempPathFactory, vit_s8_state) -> Path:
    path = tmp_path_factory.mktemp("dino") / "dino_deitsmall8_pretrain.pth"
    torch.save(vit_s8_state, path)
    return path


def tiny_state(dim: int = 192, depth: int = 2, tokens: int = 17) -> dict[str, torch.Tensor]:
    """A DINO-layout state dict of ``TINY_ARCH`` with ``TINY_KWARGS`` (4 x 4 patches)."""
    return dino_state_dict(dim=dim, heads=3, depth=depth, mlp=4 * dim, patch=8, tokens=tokens)


def test_timm_vit_key_names_are_dinos(vit_s8_state):
    # The loader relies on timm and DINO naming every ViT-S/8 parameter alike, shape included.
    model = ssl.build_vit("vit_small_patch8_224")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == {k: tuple(v.shape) for k, v in vit_s8_state.items()}


def test_official_checkpoint_gives_dinos_outputs_and_keys(vit_s8_state, vit_s8_file):
    model = ssl.create_ssl_vit("vit_small_patch8_224", weights=vit_s8_file)
    assert not model.training
    # At the checkpoint's own 224 px no position embedding is interpolated, so the outputs
    # must agree with DINO's forward to float precision.
    images = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want_cls, want_keys = dino_reference(vit_s8_state, images, heads=6, patch=8)
        got_cls = model(images)
    got = ssl.last_block_keys(model, images)
    assert got.grid_hw == (28, 28)
    assert got.keys.shape == (1, 784, 384)
    torch.testing.assert_close(got_cls, want_cls, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.keys, want_keys, atol=1e-4, rtol=1e-4)


def test_training_checkpoint_layout_takes_the_teacher(tmp_path):
    teacher, student = tiny_state(), dino_state_dict(192, 3, 2, 768, 8, 17, seed=5)
    head = {"head.mlp.0.weight": torch.zeros(8, 192), "head.last_layer.weight_g": torch.ones(8, 1)}
    checkpoint = {
        "teacher": {f"module.backbone.{k}": v for k, v in teacher.items()} | head,
        "student": {f"module.backbone.{k}": v for k, v in student.items()},
        "epoch": 100,
        "args": argparse.Namespace(arch="vit_small", patch_size=8),
    }
    path = tmp_path / "checkpoint.pth"
    torch.save(checkpoint, path)
    assert ssl.read_dino_state_dict(path).keys() == teacher.keys()
    model = ssl.create_ssl_vit(TINY_ARCH, weights=path, arch_kwargs=TINY_KWARGS)
    for key, value in teacher.items():
        torch.testing.assert_close(model.state_dict()[key], value, atol=0, rtol=0)


def test_position_embedding_resampled_to_model_grid(tmp_path):
    state = tiny_state()
    # A position embedding constant over the 4 x 4 grid stays that constant on any grid
    # (bicubic interpolation reproduces constants); the CLS entry is kept as it is.
    state["pos_embed"][:, 1:] = torch.linspace(-1, 1, 192)
    state["pos_embed"][:, 0] = 7.0
    path = tmp_path / "grid4.pth"
    torch.save(state, path)
    model = ssl.create_ssl_vit(TINY_ARCH, weights=path, arch_kwargs=TINY_KWARGS, img_size=64)
    pos = model.pos_embed.detach()
    assert pos.shape == (1, 65, 192)
    torch.testing.assert_close(pos[0, 0], torch.full((192,), 7.0))
    torch.testing.assert_close(pos[0, 1:], torch.linspace(-1, 1, 192).expand(64, -1))


def test_wrong_width_reports_shape_mismatches(tmp_path):
    path = tmp_path / "vits.pth"
    torch.save(tiny_state(dim=384, depth=1), path)
    with pytest.raises(DataError) as err:
        ssl.create_ssl_vit(TINY_ARCH, weights=path, arch_kwargs={**TINY_KWARGS, "depth": 1})
    message = str(err.value)
    assert message.startswith(
        f"{path}: not a vit_tiny_patch16_224(patch_size=8, img_size=32, depth=1) checkpoint: "
        "18 shape mismatches (e.g. cls_token: file (1, 1, 384) vs model (1, 1, 192), "
    )  # 18: every tensor of the 1-block model
    assert "missing keys" not in message and "unexpected keys" not in message
    model = ssl.build_vit(TINY_ARCH, arch_kwargs={**TINY_KWARGS, "depth": 1})
    _, _, shapes = ssl.checkpoint_mismatch(ssl.read_dino_state_dict(path), model)
    assert "blocks.0.attn.qkv.weight: file (1152, 384) vs model (576, 192)" in shapes


def test_wrong_depth_and_missing_keys_are_counted(tmp_path):
    state = tiny_state(depth=3)
    del state["norm.weight"]
    path = tmp_path / "deep.pth"
    torch.save(state, path)
    with pytest.raises(DataError) as err:
        ssl.create_ssl_vit(TINY_ARCH, weights=path, arch_kwargs=TINY_KWARGS)
    message = str(err.value)
    assert "1 missing keys (e.g. norm.weight)" in message
    assert "12 unexpected keys (e.g. blocks.2.norm1.weight, blocks.2.norm1.bias, " in message
    assert "shape mismatches" not in message


def test_unreadable_and_missing_weight_files(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(
        DataError, match="cannot read as a PyTorch checkpoint \\(not a PyTorch pickle"
    ):
        ssl.create_ssl_vit(TINY_ARCH, weights=text, arch_kwargs=TINY_KWARGS)
    pickled = tmp_path / "objects.pth"
    torch.save({"when": np.datetime64("2021-04-29")}, pickled)  # not a plain tensor container
    with pytest.raises(
        DataError,
        match=r"a Python object \(numpy\.\S+\) besides tensors; refused, as loading it could run code",
    ):
        ssl.read_dino_state_dict(pickled)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(DataError, match="expected a state dict of tensors"):
        ssl.read_dino_state_dict(listed)
    with pytest.raises(MissingWeightsError, match=r"absent\.pth"):
        ssl.create_ssl_vit(TINY_ARCH, weights=tmp_path / "absent.pth", arch_kwargs=TINY_KWARGS)


def test_unknown_architecture_is_a_config_error():
    with pytest.raises(ConfigError, match="vit_nonexistent"):
        ssl.build_vit("vit_nonexistent")


# --------------------------------------------------------------------------------------------
# last_block_keys


@pytest.fixture(scope="module")
def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return ssl.build_vit(TINY_ARCH, arch_kwargs=TINY_KWARGS).eval()


def test_last_block_keys_are_the_k_slice_of_qkv(tiny_model):
    images = torch.randn(3, 3, 24, 40, generator=torch.Generator().manual_seed(2))
    got = ssl.last_block_keys(tiny_model, images)
    assert got.grid_hw == (3, 5)
    assert got.keys.shape == (3, 15, 192)
    # Manual: tokens up to the last block's qkv projection, reshaped as DINO/CutLER do.
    with torch.no_grad():
        x = tiny_model.norm_pre(tiny_model._pos_embed(tiny_model.patch_embed(images)))
        for block in tiny_model.blocks[:-1]:
            x = block(x)
        last = tiny_model.blocks[-1]
        qkv = last.attn.qkv(last.norm1(x)).reshape(3, 16, 3, 3, 64).permute(2, 0, 3, 1, 4)
        want = qkv[1].transpose(1, 2).reshape(3, 16, 192)[:, 1:]
    torch.testing.assert_close(got.keys, want, atol=0, rtol=0)


def test_last_block_keys_checks_sizes_and_restores_mode(tiny_model):
    tiny_model.train()
    try:
        batched = ssl.last_block_keys(tiny_model, torch.zeros(2, 3, 16, 16)).keys
        assert tiny_model.training  # restored
        single = ssl.last_block_keys(tiny_model, torch.zeros(1, 3, 16, 16)).keys
        torch.testing.assert_close(batched[:1], single)  # eval mode: no dropout, batch-free
    finally:
        tiny_model.eval()
    with pytest.raises(ValueError, match="not a multiple of the patch size 8x8"):
        ssl.last_block_keys(tiny_model, torch.zeros(1, 3, 20, 16))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        ssl.last_block_keys(tiny_model, torch.zeros(3, 16, 16))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_last_block_keys_on_cuda(tiny_model):
    images = torch.randn(2, 3, 16, 24)
    model = ssl.build_vit(TINY_ARCH, arch_kwargs=TINY_KWARGS)
    model.load_state_dict(tiny_model.state_dict())
    got = ssl.last_block_keys(model.cuda().eval(), images)
    assert got.keys.device.type == "cuda"
    torch.testing.assert_close(
        got.keys.cpu(), ssl.last_block_keys(tiny_model, images).keys, atol=1e-4, rtol=1e-4
    )


def test_normalise_images_uses_imagenet_statistics():
    images = torch.tensor([[[[0]], [[255]], [[51]]]], dtype=torch.uint8)
    got = ssl.normalise_images(images).flatten()
    want = [(0 - 0.485) / 0.229, (1 - 0.456) / 0.224, (0.2 - 0.406) / 0.225]
    torch.testing.assert_close(got, torch.tensor(want))


# --------------------------------------------------------------------------------------------
# The DINO objective


def test_dino_loss_identical_sharp_distributions():
    # Teacher and student see the same logits (1, 0) for both views. At tau_t = 0.04 the
    # teacher is one-hot up to e^-25; at tau_s = 0.1 the student gives class 0 probability
    # 1 / (1 + e^-10), so each cross-entropy is log(1 + e^-10) (+ the e^-25 remainder x 10).
    logits = torch.tensor([1.0, 0.0], dtype=torch.float64).expand(2, 4, 2)
    center = torch.zeros(2, dtype=torch.float64)
    loss = dino.dino_loss(logits, logits, center, student_temp=0.1, teacher_temp=0.04)
    q1 = 1 / (1 + math.exp(25))
    want = (1 - q1) * math.log1p(math.exp(-10)) + q1 * (10 + math.log1p(math.exp(-10)))
    assert loss.item() == pytest.approx(want, rel=1e-5)


def test_dino_loss_pairs_each_teacher_view_with_the_other_views():
    # Teacher views: q0 = (1/2, 1/2), q1 = (1, 0) (logits (20, 0) -> e^-20 ~ 0). Student views:
    # p0 = (1/2, 1/2), p1 = (1/4, 3/4), p2 = (3/4, 1/4). The same centre c is added to the
    # teacher logits, so subtracting it must give these q. Pairs (g, v != g):
    # H(q0,p1) = H(q0,p2) = -(ln 1/4 + ln 3/4)/2 = 0.8369882, H(q1,p0) = ln 2,
    # H(q1,p2) = -ln 3/4; mean of the four = 0.6637014. (With same-view pairs it would differ.)
    ln3 = math.log(3)
    student = torch.tensor([[0.0, 0.0], [0.0, ln3], [ln3, 0.0]])[:, None, :]
    center = torch.tensor([3.0, -1.0])
    teacher = torch.tensor([[0.0, 0.0], [20.0, 0.0]])[:, None, :] + center
    loss = dino.dino_loss(student, teacher, center, student_temp=1.0, teacher_temp=1.0)
    h_q0 = -(math.log(0.25) + math.log(0.75)) / 2
    want = (2 * h_q0 + math.log(2) - math.log(0.75)) / 4
    assert loss.item() == pytest.approx(want, rel=1e-6)
    assert want == pytest.approx(0.6637014, abs=1e-7)


def test_dino_loss_sharpens_the_teacher_by_its_temperature():
    # Teacher logits (0, 0.04 ln 3) at tau_t = 0.04 -> q = (1/4, 3/4); student uniform:
    # H = ln 2 whatever q, so use a student (1/4, 3/4) instead: H = -(1/4 ln 1/4 + 3/4 ln 3/4).
    ln3 = math.log(3)
    teacher = torch.tensor([[0.0, 0.04 * ln3]]).expand(2, 1, 2)
    student = torch.tensor([[0.0, 0.1 * ln3]]).expand(2, 1, 2)
    loss = dino.dino_loss(student, teacher, torch.zeros(2), student_temp=0.1, teacher_temp=0.04)
    want = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert loss.item() == pytest.approx(want, rel=1e-5)


def test_sinkhorn_knopp_balances_prototypes_and_keeps_rows_distributions():
    # Every image sharply on prototype 0 (the one-prototype collapse): balancing the prototypes'
    # mass over the batch must undo it. 4 rows, 4 prototypes, one sharp row each after the
    # balance would be a permutation; with identical rows the only balanced answer is uniform.
    collapsed = torch.zeros(1, 4, 4)
    collapsed[..., 0] = 1.0
    probs = dino.sinkhorn_knopp_teacher_probs(collapsed, teacher_temp=0.04, iterations=50)
    torch.testing.assert_close(probs, torch.full((1, 4, 4), 0.25), atol=1e-4, rtol=0)
    # Distinct sharp rows (a permutation) are already balanced and stay sharp on their prototype.
    distinct = (torch.eye(4)[[2, 0, 3, 1]] * 5.0).reshape(2, 2, 4)
    probs = dino.sinkhorn_knopp_teacher_probs(distinct, teacher_temp=0.04, iterations=3)
    assert probs.shape == distinct.shape
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2))
    assert probs.reshape(4, 4).argmax(-1).tolist() == [2, 0, 3, 1]
    assert probs.reshape(4, 4).max(-1).values.min() > 0.99


def test_dino_loss_with_sinkhorn_knopp_ignores_the_centre():
    student = torch.randn(3, 5, 6, generator=torch.Generator().manual_seed(0))
    teacher = student[:2] * 2
    a = dino.dino_loss(
        student, teacher, torch.zeros(6), student_temp=0.1, teacher_temp=0.04,
        centering="sinkhorn_knopp",
    )  # fmt: skip
    b = dino.dino_loss(
        student, teacher, torch.arange(6.0), student_temp=0.1, teacher_temp=0.04,
        centering="sinkhorn_knopp",
    )  # fmt: skip
    c = dino.dino_loss(student, teacher, torch.arange(6.0), student_temp=0.1, teacher_temp=0.04)
    assert a.item() == pytest.approx(b.item()) and a.item() != pytest.approx(c.item())
    with pytest.raises(ConfigError, match="centering"):
        dino.DinoConfig(centering="median")


def test_update_center_formula():
    center = torch.tensor([1.0, 2.0])
    teacher = torch.tensor([[[0.0, 4.0], [2.0, 0.0]], [[4.0, 4.0], [2.0, 0.0]]])  # mean (2, 2)
    got = dino.update_center(center, teacher, momentum=0.9)
    torch.testing.assert_close(got, torch.tensor([0.9 * 1 + 0.1 * 2, 0.9 * 2 + 0.1 * 2]))


def test_ema_update_formula():
    torch.manual_seed(0)
    teacher, student = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    t0 = [p.detach().clone() for p in teacher.parameters()]
    s0 = [p.detach().clone() for p in student.parameters()]
    dino.ema_update(teacher, student, 1.0)
    for p, want in zip(teacher.parameters(), t0, strict=True):
        torch.testing.assert_close(p.detach(), want, atol=0, rtol=0)
    dino.ema_update(teacher, student, 0.25)
    for p, t, s in zip(teacher.parameters(), t0, s0, strict=True):
        torch.testing.assert_close(p.detach(), 0.25 * t + 0.75 * s)
    dino.ema_update(teacher, student, 0.0)
    for p, want in zip(teacher.parameters(), s0, strict=True):
        torch.testing.assert_close(p.detach(), want, atol=0, rtol=0)


def test_dino_head_last_layer_is_cosine_to_unit_prototypes():
    head = dino.DinoHead(in_dim=6, out_dim=5, hidden_dim=8, bottleneck_dim=4)
    weight = head.last_layer.weight.detach()
    torch.testing.assert_close(weight.norm(dim=1), torch.ones(5))
    out = head(torch.randn(3, 6)).detach()
    assert out.abs().max() <= 1 + 1e-6  # cosine similarities
    assert not head.last_layer.parametrizations.weight.original0.requires_grad


# --------------------------------------------------------------------------------------------
# Multi-crop augmentation


def test_crop_boxes_fit_and_respect_scale_and_ratio():
    gen = torch.Generator().manual_seed(0)
    boxes = dino.sample_crop_boxes(gen, 500, 40, 60, (0.2, 0.5))
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 60).all() and (boxes[:, 3] <= 40).all()
    area = w * h / (40 * 60)
    assert area.min() >= 0.2 - 1e-9 and area.max() <= 0.5 + 1e-9
    ratio = w / h
    assert ratio.min() >= 3 / 4 - 1e-9 and ratio.max() <= 4 / 3 + 1e-9


def test_resized_crop_of_the_whole_image_is_identity():
    images = torch.rand(2, 3, 8, 8)
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 8.0, 8.0]], dtype=torch.float64)
    torch.testing.assert_close(dino.resized_crops(images, boxes, 8), images)


def test_photometric_ops_with_zero_probability_are_identity():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 10, 10)
    torch.testing.assert_close(dino.colour_jitter(x, gen, 0.0, (0.4, 0.4, 0.2, 0.1)), x)
    torch.testing.assert_close(dino.gaussian_blur(x, gen, 0.0, (0.5, 1.0)), x)


def test_hue_rotation_keeps_grey_and_turns_full_circle():
    grey = torch.tensor([0.3, 0.3, 0.3], dtype=torch.float64)
    rot = dino.hue_rotation(torch.tensor([0.7, 2 * math.pi], dtype=torch.float64))
    torch.testing.assert_close(rot[0] @ grey, grey)
    torch.testing.assert_close(rot[1], torch.eye(3, dtype=torch.float64))


def test_gaussian_blur_keeps_constants_and_mass():
    gen = torch.Generator().manual_seed(0)
    flat = torch.full((2, 3, 9, 9), 0.4)
    torch.testing.assert_close(dino.gaussian_blur(flat, gen, 1.0, (0.5, 1.0)), flat)
    dot = torch.zeros(1, 3, 9, 9)
    dot[..., 4, 4] = 1.0
    blurred = dino.gaussian_blur(dot, gen, 1.0, (0.5, 1.0))
    torch.testing.assert_close(blurred.sum(dim=(2, 3)), torch.ones(1, 3))
    assert blurred[..., 4, 4].max() < 1.0


def _bar_orientation(image: torch.Tensor) -> float:
    """Orientation (radians, in [0, pi)) of the bright pixels' principal axis."""
    weight = image[0]
    ys, xs = torch.meshgrid(
        torch.arange(weight.shape[0]), torch.arange(weight.shape[1]), indexing="ij"
    )
    total = weight.sum()
    my, mx = (weight * ys).sum() / total, (weight * xs).sum() / total
    cyy = (weight * (ys - my) ** 2).sum() / total
    cxx = (weight * (xs - mx) ** 2).sum() / total
    cxy = (weight * (xs - mx) * (ys - my)).sum() / total
    return float(0.5 * torch.atan2(2 * cxy, cxx - cyy)) % math.pi


def test_random_rotation_turns_each_image_by_its_own_drawn_angle():
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    images = torch.rand(4, 3, 16, 16)
    assert dino.random_rotation(images, gen, 0.0) is images
    assert torch.equal(gen.get_state(), state)  # off: draws nothing, so old runs replay
    bar = torch.zeros(6, 1, 41, 41)
    bar[..., 19:22, 6:35] = 1.0  # a horizontal bar through the centre
    angles = torch.rad2deg(
        torch.tensor([_bar_orientation(b) for b in dino.random_rotation(bar, gen, 80.0)])
    )
    drawn = dino.augment._uniform(torch.Generator().manual_seed(3), 6, -80.0, 80.0)
    # image rows point down, so a turn reads as +angle or -angle: one sign for all images
    folded = [(angles - sign * drawn.float() + 90) % 180 - 90 for sign in (1, -1)]
    assert min(f.abs().max() for f in folded) < 3.0
    assert drawn.abs().max() > 20  # the draws are not all near 0
    ys, xs = torch.meshgrid(torch.arange(21.0), torch.arange(21.0), indexing="ij")
    blob = torch.exp(-((ys - 10) ** 2 + (xs - 10) ** 2) / 32).expand(2, 3, 21, 21)
    turned = dino.random_rotation(blob, gen, 180.0)
    assert turned.shape == blob.shape
    inside = (ys - 10) ** 2 + (xs - 10) ** 2 <= 81  # the corners are filled by reflection
    # a centred round blob is unchanged by any turn, inside the inscribed circle
    assert (turned - blob)[..., inside].abs().max() < 0.02


def test_multi_crop_shapes():
    cfg = dino.DinoConfig.preset("smoke")
    images = torch.randint(0, 256, (5, 3, 40, 40), dtype=torch.uint8)
    crops = dino.multi_crop(images, cfg, torch.Generator().manual_seed(0))
    assert [tuple(c.shape) for c in crops] == [(10, 3, 32, 32), (10, 3, 16, 16)]
    turned = dino.multi_crop(
        images, dino.DinoConfig.preset("smoke", rotation_degrees=90), torch.Generator()
    )
    assert [tuple(c.shape) for c in turned] == [(10, 3, 32, 32), (10, 3, 16, 16)]
    for bad in (-5.0, 181.0, float("nan")):
        with pytest.raises(ConfigError, match="rotation_degrees"):
            dino.DinoConfig.preset("smoke", rotation_degrees=bad)


# --------------------------------------------------------------------------------------------
# k-NN probe


def test_knn_predict_weighted_vote():
    # One training sample of class 1 at cosine 0.99 from the query, two of class 0 at 0.6.
    # Weights exp(s / T): with T = 0.07 class 1 wins (e^14.1 > 2 e^8.6); with T = 10 the two
    # class-0 votes win (e^0.099 < 2 e^0.06).
    query = torch.tensor([[1.0, 0.0]])
    train = torch.tensor([[0.99, math.sqrt(1 - 0.99**2)], [0.6, 0.8], [0.6, -0.8]])
    labels = torch.tensor([1, 0, 0])
    assert dino.knn_predict(train, labels, query, k=3, temperature=0.07).tolist() == [1]
    assert dino.knn_predict(train, labels, query, k=3, temperature=10.0).tolist() == [0]
    assert dino.knn_predict(train, labels, query, k=1, temperature=10.0).tolist() == [1]


def test_probe_split_is_a_seeded_partition():
    train, test = dino.probe_split(20, 0.25, seed=3)
    assert len(test) == 5 and sorted([*train.tolist(), *test.tolist()]) == list(range(20))
    again, _ = dino.probe_split(20, 0.25, seed=3)
    assert torch.equal(train, again)


# --------------------------------------------------------------------------------------------
# Config, corpus, training, CLI


def test_config_presets_and_errors():
    cfg = dino.DinoConfig.preset("smoke", epochs=1, global_crop_scale=[0.5, 1])
    assert cfg.epochs == 1 and cfg.global_crop_scale == (0.5, 1.0)
    assert dino.DinoConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown dino setting 'epoch'"):
        dino.DinoConfig.preset("smoke", epoch=1)
    with pytest.raises(ConfigError, match=r"'student_temp' = 0\.0 must be > 0"):
        dino.DinoConfig.preset("default", student_temp=0)
    with pytest.raises(ConfigError, match="'colour_jitter' must be 4 numbers"):
        dino.DinoConfig.preset("default", colour_jitter=[0.4, 0.4])
    with pytest.raises(ConfigError, match=r"'colour_jitter' = .* hue in"):
        dino.DinoConfig.preset("default", colour_jitter=[0.4, 0.4, 0.2, 0.7])
    with pytest.raises(ConfigError, match="unknown dino preset"):
        dino.DinoConfig.preset("huge")


SHAPE_COLOURS = [(220, 40, 40), (40, 200, 60), (50, 80, 230)]


def write_corpus(root: Path, n: int = 24, size: int = 32) -> Path:
    """``n`` images in 3 categories: a filled square, a horizontal bar, a vertical bar, each
    in a random colour and position on a noisy grey background; ``index.json`` as uvis synth."""
    rng = np.random.default_rng(0)
    entries = []
    for i in range(n):
        cat = i % 3
        image = rng.integers(90, 130, (size, size, 3), dtype=np.uint8)
        y, x = rng.integers(4, size // 2, 2)
        h, w = [(10, 10), (4, 14), (14, 4)][cat]
        image[y : y + h, x : x + w] = SHAPE_COLOURS[rng.integers(3)]
        name = f"images/{i:05d}.jpg"
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / name, quality=95)
        entries.append({"file": name, "category_id": cat + 1, "colour": "any"})
    (root / "index.json").write_text(json.dumps({"categories": [], "images": entries}))
    return root


SMOKE = {"epochs": 2, "max_steps_per_epoch": 2, "batch_size": 8, "probe_k": 5}


def test_smoke_training_checkpoint_is_read_by_the_real_loader(tmp_path):
    corpus = write_corpus(tmp_path / "corpora" / "unlabeled")
    cfg = dino.DinoConfig.preset("smoke", **SMOKE)
    out = tmp_path / "models" / "ssl_vit.pth"
    seen = []  # on_epoch sees each epoch's record and teacher (the bench saves it along the run)
    report = dino.train_dino(
        tmp_path / "corpora",
        out,
        cfg,
        progress=False,
        on_epoch=lambda rec, teacher: seen.append((rec, teacher.backbone.pos_embed.clone())),
    )

    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["config"] == cfg.to_dict() and saved["format"] == "dino"
    assert [e["epoch"] for e in saved["training"]["epochs"]] == [1, 2]
    assert saved["training"]["steps"] == 4 and saved["training"]["batch_size"] == 8
    probe = saved["knn_probe"]
    assert probe["num_test"] == 6 and probe["num_train"] == 18 and probe["num_classes"] == 3
    assert 0 <= probe["accuracy_trained"] <= 1 and 0 <= probe["accuracy_random_init"] <= 1
    assert report["knn_probe"] == probe

    loaded = ssl.create_ssl_vit(cfg.arch, weights=out, arch_kwargs=cfg.arch_kwargs)
    assert set(torch.load(out, weights_only=True)) == set(loaded.state_dict())
    # Training is deterministic: a second run's teacher is the network in the file.
    images = dino.load_unlabeled_corpus(corpus).images
    teacher = dino.fit_dino(images, cfg, progress=False, device="cpu").teacher.backbone
    x = dino.probe_inputs(images[:4], 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), teacher(x), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(
        ssl.last_block_keys(loaded, x).keys, ssl.last_block_keys(teacher, x).keys
    )
    torch.testing.assert_close(dino.load_trained_ssl_vit(out).pos_embed, loaded.pos_embed)
    assert [rec for rec, _ in seen] == saved["training"]["epochs"]
    torch.testing.assert_close(seen[-1][1], loaded.pos_embed)
    assert not torch.equal(seen[0][1], seen[1][1])


HYBRID_KWARGS = {"patch_size": 8, "img_size": 32, "depth": 1, "embed_dim": 32, "num_heads": 2}


def test_hybrid_vit_keeps_the_patch_grid_and_the_plain_vit_keys():
    model = ssl.build_vit(ssl.HYBRID_VIT, arch_kwargs={**HYBRID_KWARGS, "extra_stem_blocks": 2})
    assert ssl.patch_size_of(model) == (8, 8)
    stem = model.patch_embed.proj
    kinds = [type(m).__name__ for m in stem]
    # log2(8) = 3 pooled blocks (3 -> 32 -> 32 -> 32 channels at width 32), then 2 unpooled.
    assert kinds.count("MaxPool2d") == 3 and kinds.count("Conv2d") == 5
    assert [m.out_channels for m in stem if isinstance(m, torch.nn.Conv2d)] == [32] * 5
    keys = ssl.last_block_keys(model, torch.randn(2, 3, 24, 40))
    assert keys.grid_hw == (3, 5) and keys.keys.shape == (2, 15, 32)
    # Outside the stem, every key is a plain ViT's (what the DINO loader and MaskCut rely on).
    plain = ssl.build_vit(TINY_ARCH, arch_kwargs=HYBRID_KWARGS)
    outside = {k for k in model.state_dict() if not k.startswith("patch_embed.proj.")}
    assert outside == {k for k in plain.state_dict() if not k.startswith("patch_embed.proj.")}


@pytest.mark.parametrize("pool", ["token", "avg"])
def test_probe_features_follow_the_models_pooling_and_say_so(pool):
    model = ssl.build_vit(TINY_ARCH, arch_kwargs={**HYBRID_KWARGS, "global_pool": pool}).eval()
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tokens = model.forward_features(images)  # (B, 1 + 16, D): CLS, then the 4x4 patches
    if pool == "token":  # the final norm is inside forward_features
        expected, words = tokens[:, 0], "CLS token"
    else:  # timm: no final norm on the tokens, a norm after the mean of the patch tokens
        expected, words = model.fc_norm(tokens[:, 1:].mean(dim=1)), "mean of the patch tokens"
    torch.testing.assert_close(ssl.cls_features(model, images), expected)
    assert ssl.pooled_feature_name(model).startswith(words)


def test_hybrid_vit_stem_widths_and_errors():
    stem = hybrid_vit.cnn_stem(embed_dim=128, patch_size=16)
    widths = [m.out_channels for m in stem if isinstance(m, torch.nn.Conv2d)]
    assert widths == [32, 64, 128, 128]  # doubling from 32, capped at the width, ending at it
    assert stem(torch.zeros(1, 3, 32, 48)).shape == (1, 128, 2, 3)
    with pytest.raises(ConfigError, match="patch_size must be a power of two >= 2, got 6"):
        ssl.build_vit(ssl.HYBRID_VIT, arch_kwargs={**HYBRID_KWARGS, "patch_size": 6})
    with pytest.raises(ConfigError, match="extra_stem_blocks must be >= 0, got -1"):
        ssl.build_vit(ssl.HYBRID_VIT, arch_kwargs={**HYBRID_KWARGS, "extra_stem_blocks": -1})
    with pytest.raises(ValueError, match="has no released weights"):
        hybrid_vit.uvis_hybrid_vit(pretrained=True)
    with pytest.raises(ConfigError, match=r"stem_padding must be one of .*, got 'circle'"):
        ssl.build_vit(ssl.HYBRID_VIT, arch_kwargs={**HYBRID_KWARGS, "stem_padding": "circle"})


@pytest.mark.parametrize("padding", ["zeros", "replicate"])
def test_hybrid_vit_stem_padding_decides_whether_border_tokens_differ(padding):
    # A flat image: with replicate padding every position sees the same pixels, so all tokens
    # of the stem are equal; zero padding gives the frame's border tokens features of their own.
    torch.manual_seed(0)
    stem = hybrid_vit.cnn_stem(embed_dim=16, patch_size=4, extra_blocks=1, padding_mode=padding)
    for m in stem.modules():  # non-trivial BatchNorm statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
    tokens = stem.eval()(torch.full((1, 3, 32, 24), 0.7)).flatten(2)[0].T  # (8 * 6, 16)
    spread = (tokens - tokens[tokens.shape[0] // 2 + 3]).abs().amax().item()
    assert (spread < 1e-5) == (padding == "replicate")


def test_hybrid_vit_stand_in_trains_and_round_trips_through_the_real_loader(tmp_path):
    write_corpus(tmp_path / "corpora" / "unlabeled")
    # The "hybrid" preset's recipe and stem, narrowed and shortened to a smoke run.
    hybrid = dino.DinoConfig.preset("hybrid")
    cfg = dino.DinoConfig.preset(
        "hybrid",
        **SMOKE,
        warmup_epochs=1,
        warmup_teacher_temp_epochs=1,
        arch_kwargs={**hybrid.arch_kwargs, **HYBRID_KWARGS},
    )
    assert (
        cfg.arch == ssl.HYBRID_VIT and cfg.rotation_degrees == 180 and cfg.local_crops_number == 0
    )
    out = tmp_path / "models" / "ssl_vit.pth"
    dino.train_dino(tmp_path / "corpora", out, cfg, progress=False)
    state = torch.load(out, weights_only=True)
    assert "patch_embed.proj.1.running_mean" in state  # the stem's BatchNorm statistics travel
    loaded = dino.load_trained_ssl_vit(out)
    assert not loaded.training
    # The stem's padding is not in the weights: the sidecar's arch_kwargs bring it back.
    convs = [m for m in loaded.patch_embed.proj if isinstance(m, torch.nn.Conv2d)]
    assert convs and {m.padding_mode for m in convs} == {"replicate"}
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["knn_probe"]["features"].startswith("mean of the patch tokens")
    direct = ssl.build_vit(cfg.arch, arch_kwargs=cfg.arch_kwargs)
    direct.load_state_dict(state)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), direct.eval()(x), atol=0, rtol=0)
    # A plain ViT of the same size refuses the file, naming it.
    with pytest.raises(DataError, match=r"ssl_vit\.pth: not a vit_tiny_patch16_224\("):
        ssl.create_ssl_vit(TINY_ARCH, weights=out, arch_kwargs=HYBRID_KWARGS)


def test_teacher_entropies_tell_the_two_collapses_apart():
    k = 8
    uniform = torch.zeros(2, 5, k)  # every output equal: the uniform collapse
    per_image, batch = dino.teacher_entropies(uniform, torch.zeros(k), 0.04)
    assert per_image == pytest.approx(math.log(k)) and batch == pytest.approx(math.log(k))
    one = torch.zeros(1, 4, k)
    one[..., 3] = 10.0  # every image sharply on prototype 3: the one-prototype collapse
    per_image, batch = dino.teacher_entropies(one, torch.zeros(k), 0.04)
    assert per_image == pytest.approx(0.0, abs=1e-6) and batch == pytest.approx(0.0, abs=1e-6)
    two = torch.zeros(1, 4, k)
    two[0, :2, 1] = two[0, 2:, 6] = 10.0  # half the images on each of two prototypes
    per_image, batch = dino.teacher_entropies(two, torch.zeros(k), 0.04)
    assert per_image == pytest.approx(0.0, abs=1e-6) and batch == pytest.approx(math.log(2))
    # The centre is subtracted before sharpening: centring the one-prototype case makes it uniform.
    per_image, _ = dino.teacher_entropies(one, one[0, 0], 0.04)
    assert per_image == pytest.approx(math.log(k))


def test_fit_dino_reports_each_epoch_and_takes_a_given_student(tmp_path):
    corpus = write_corpus(tmp_path / "corpora" / "unlabeled")
    cfg = dino.DinoConfig.preset("smoke", **SMOKE)
    images = dino.load_unlabeled_corpus(corpus).images
    seen = []
    run = dino.fit_dino(
        images, cfg, progress=False, device="cpu",
        on_epoch=lambda record, teacher: seen.append((record["epoch"], teacher)),
    )  # fmt: skip
    assert [e for e, _ in seen] == [1, 2] and all(t is run.teacher for _, t in seen)
    for record in run.epochs:
        assert 0 <= record["teacher_batch_entropy"] <= math.log(cfg.out_dim) + 1e-6
        assert 0 <= record["teacher_entropy"] <= math.log(cfg.out_dim) + 1e-6
    # A given student (here: the default one) trains exactly as the built-in one.
    again = dino.fit_dino(
        images, cfg, progress=False, device="cpu", student=dino.initial_network(cfg)
    )
    x = dino.probe_inputs(images[:4], 32)
    with torch.no_grad():
        torch.testing.assert_close(again.teacher.backbone(x), run.teacher.backbone(x))


def test_corpus_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"index\.json: missing"):
        dino.load_unlabeled_corpus(tmp_path)
    root = write_corpus(tmp_path / "c", n=3)
    (root / "index.json").write_text("{bad json")
    with pytest.raises(DataError, match=r"index\.json: not a readable JSON file"):
        dino.load_unlabeled_corpus(root)
    (root / "index.json").write_text(json.dumps({"images": [{"file": "images/nope.jpg"}]}))
    with pytest.raises(DataError, match=r"nope\.jpg: cannot read image"):
        dino.load_unlabeled_corpus(root)
    Image.new("RGB", (16, 16)).save(root / "images" / "small.jpg")
    entries = [{"file": "images/00000.jpg"}, {"file": "images/small.jpg"}]
    (root / "index.json").write_text(json.dumps({"images": entries}))
    with pytest.raises(DataError, match=r"small\.jpg: is 16x16, the corpus is 32x32"):
        dino.load_unlabeled_corpus(root)


def test_cli_trains_and_reports_one_line(tmp_path, capsys, monkeypatch):
    if "pretrain" not in cli._MODULES:  # until the lead registers the module
        monkeypatch.setattr(cli, "_MODULES", (*cli._MODULES, "pretrain"))
    write_corpus(tmp_path / "unlabeled")
    out = tmp_path / "ssl_vit.pth"
    sets = [a for k, v in SMOKE.items() for a in ("--set", f"{k}={v}")]
    argv = ["pretrain", "ssl", str(tmp_path / "unlabeled"), str(out), "--preset", "smoke"]
    assert cli.main([*argv, *sets, "--set", "epochs=1", "--no-progress", "--threads", "1"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"pretrain ssl: wrote {out}") and "k-NN accuracy" in line
    assert "\n" not in line and out.is_file()

    assert cli.main(["pretrain", "ssl", str(tmp_path / "empty"), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "index.json: missing" in err[0]
    assert cli.main([*argv, "--set", "lr=-1"]) == 2
    assert "'lr' = -1.0 must be > 0" in capsys.readouterr().err
