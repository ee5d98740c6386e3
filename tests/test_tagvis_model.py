"""The tag-based network: shapes, the tag-based attention's maths, every ablation switch, and
R(2+1)D-18 weights in torchvision's format."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.video import r2plus1d_18

from uvis.errors import ConfigError, DataError
from uvis.foundation.weights import KNOWN_WEIGHTS, MissingWeightsError
from uvis.tagvis.config import R2PLUS1D_18_DEPTHS, R2PLUS1D_18_WIDTHS, TagVisConfig
from uvis.tagvis.data import ClipSample
from uvis.tagvis.losses import TERMS
from uvis.tagvis.model import (
    R2Plus1DEncoder,
    RoiClassHead,
    TagAttention,
    TagVisNet,
    create_tagvis_model,
    load_r2plus1d_weights,
)
from uvis.tagvis.train import clip_losses, instance_cross_entropy, semantic_cross_entropy

torch.set_num_threads(1)

NUM_CLASSES = 3

#: Table III of the paper as switches: row -> settings off.
ABLATIONS = {
    "location_embedding": {"location_embedding": False},
    "spatio_temporal_attention": {"spatio_temporal_attention": False},
    "tag_attention": {"tag_attention": False},
    "self_attention": {"self_attention": False},
    "tag_attention_connector": {"tag_attention": False, "tag_connector": False},
    "self_attention_connector": {"self_attention": False, "self_connector": False},
    "semantic_branch": {
        "class_head": "pixels",
        "tag_attention": False,
        "tag_connector": False,
        "self_attention": False,
        "self_connector": False,
        "semantic": False,
    },
}
#: The modules each row removes (attribute names of TagVisNet).
REMOVED = {
    "location_embedding": {"location"},
    "spatio_temporal_attention": {"st_attention"},
    "tag_attention": {"tag_attention"},
    "self_attention": {"self_attention"},
    "tag_attention_connector": {"tag_attention"},
    "self_attention_connector": {"self_attention"},
    "semantic_branch": {"tag_attention", "self_attention", "decoder", "class_head"},
}


def smoke(**overrides) -> TagVisConfig:
    return TagVisConfig.preset("smoke", **overrides)


def clip(cfg: TagVisConfig, batch: int = 2) -> torch.Tensor:
    h, w = cfg.input_size
    return torch.randint(
        0, 256, (batch, 3, cfg.clip_frames, h, w), generator=torch.Generator().manual_seed(0)
    ).to(torch.uint8)


def modules(model: TagVisNet) -> set[str]:
    return {name for name, child in model.named_children() if child is not None}


def test_output_shapes() -> None:
    cfg = smoke()
    out = TagVisNet(cfg, NUM_CLASSES)(clip(cfg))
    h, w = cfg.input_size
    assert out.tags.shape == (2, cfg.clip_frames, h, w)
    assert out.logits is not None and out.logits.shape == (
        2,
        NUM_CLASSES + 1,
        cfg.clip_frames,
        h,
        w,
    )


@pytest.mark.parametrize("row", list(ABLATIONS))
def test_each_ablation_removes_its_modules_and_parameters(row: str) -> None:
    full = TagVisNet(smoke(), NUM_CLASSES)
    ablated = TagVisNet(smoke(**ABLATIONS[row]), NUM_CLASSES)
    assert modules(full) - modules(ablated) == REMOVED[row]
    names = {n for n, _ in ablated.named_parameters()}
    assert not any(n.split(".")[0] in REMOVED[row] for n in names)
    assert sum(p.numel() for p in ablated.parameters()) < sum(p.numel() for p in full.parameters())
    out = ablated(clip(smoke()))
    assert (out.logits is None) == (row == "semantic_branch")


def cross_entropy_reaches_tags(cfg: TagVisConfig) -> bool:
    """Whether the cross-entropy's gradient reaches the tag generator's parameters."""
    model = TagVisNet(cfg, NUM_CLASSES)
    out = model(clip(cfg))
    target = torch.zeros(out.logits.shape[0], *out.logits.shape[2:], dtype=torch.long)
    F.cross_entropy(out.logits, target).backward()
    grads = [p.grad for p in model.tag_generator.parameters()]
    return any(g is not None and g.abs().sum() > 0 for g in grads)


def test_the_tag_connector_is_the_only_path_from_tags_to_the_decoder() -> None:
    assert cross_entropy_reaches_tags(smoke())  # through the tag-based attention
    assert cross_entropy_reaches_tags(smoke(tag_attention=False))  # the raw tags
    assert not cross_entropy_reaches_tags(smoke(**ABLATIONS["tag_attention_connector"]))


def test_location_embedding_makes_tags_depend_on_position() -> None:
    # A uniform clip: away from the border (zero padding), only the coordinates can make the
    # tags vary, so they vary with the embedding and (up to rounding) not without it.
    def interior_spread(cfg: TagVisConfig) -> float:
        torch.manual_seed(0)
        model = TagVisNet(cfg, NUM_CLASSES).eval()
        flat = torch.full((1, 3, cfg.clip_frames, *cfg.input_size), 128, dtype=torch.uint8)
        with torch.no_grad():
            return model(flat).tags[0, 0, 8:-8, 8:-8].std().item()

    with_embedding = interior_spread(smoke(spatio_temporal_attention=False))
    without = interior_spread(smoke(spatio_temporal_attention=False, location_embedding=False))
    assert with_embedding > 1e-3 and without < 1e-4


@pytest.mark.parametrize("term", TERMS)
def test_each_loss_switch_removes_its_term_from_the_total(term: str) -> None:
    cfg = smoke(class_head="pixels")  # the paper's loss alone
    torch.manual_seed(0)
    model = TagVisNet(cfg, NUM_CLASSES)
    video = clip(cfg, batch=1)
    frames, (h, w) = cfg.clip_frames, cfg.input_size
    semantic = torch.zeros(frames, h, w, dtype=torch.long)
    semantic[:, : h // 2] = 1
    # Two instances (background, top half), 4 pixels each per frame.
    pixels = torch.stack(
        [
            torch.arange(4).repeat(frames, 1) + (h - 1) * w,  # bottom row
            torch.arange(4).repeat(frames, 1),  # top row
        ]
    )
    batch = [ClipSample(video[0], semantic, pixels, torch.ones(2, frames, dtype=torch.bool))]
    out = model(video)
    full = clip_losses(out, batch, cfg)
    without = clip_losses(out, batch, smoke(class_head="pixels", **{term: False}))
    assert without[term].item() == pytest.approx(full[term].item())  # still logged
    assert without["loss"].item() == pytest.approx(
        full["loss"].item() - full[term].item(), rel=1e-5
    )
    assert full["loss"].item() == pytest.approx(
        full["cross_entropy"].item() + sum(full[t].item() for t in TERMS), rel=1e-5
    )
    tags_only = smoke(**ABLATIONS["semantic_branch"])
    semantic_off = clip_losses(TagVisNet(tags_only, NUM_CLASSES)(video), batch, tags_only)
    assert semantic_off["cross_entropy"].item() == 0.0
    assert semantic_off["loss"].item() == pytest.approx(
        sum(semantic_off[t].item() for t in TERMS), rel=1e-5
    )


def test_instance_cross_entropy_reads_each_visible_instances_class_from_its_pixels() -> None:
    semantic = torch.zeros(2, 2, 3, dtype=torch.long)
    semantic[1, 0, 2] = 3  # instance 1: class 2, visible in frame 1 only, at pixel 2
    semantic[:, 1, 0] = 1  # instance 2: class 0, pixel 3 of both frames
    pixels = torch.tensor([[[5], [5]], [[0], [2]], [[3], [3]], [[0], [0]]])
    present = torch.tensor([[True, True], [False, True], [True, True], [False, False]])
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    loss, count = instance_cross_entropy(logits, semantic, pixels, present)
    assert count == 2  # background (0) and the absent instance (3) left out
    expected = F.cross_entropy(logits[1:3], torch.tensor([2, 0]), reduction="sum")
    torch.testing.assert_close(loss, expected)


def test_the_roi_class_head_adds_its_loss_over_the_clips_instance_masks() -> None:
    cfg = smoke(class_head="rois")
    torch.manual_seed(0)
    model = TagVisNet(cfg, NUM_CLASSES)
    video = clip(cfg, batch=1)
    frames, (h, w) = cfg.clip_frames, cfg.input_size
    ids = torch.zeros(frames, h, w, dtype=torch.long)
    ids[:, : h // 2] = 1  # instance 1 (class 1) the top half, instance 2 (class 2) one block
    ids[1:, h - 6 : h - 2, 4:9] = 2
    semantic = torch.where(ids == 0, 0, ids + 1)
    pixels = torch.stack(
        [
            torch.arange(4).repeat(frames, 1) + (h - 1) * w,  # bottom row: background
            torch.arange(4).repeat(frames, 1),  # top row
            torch.full((frames, 4), (h - 4) * w + 5),
        ]
    )
    present = torch.ones(3, frames, dtype=torch.bool)
    present[2, 0] = False
    batch = [ClipSample(video[0], semantic, pixels, present, ids)]
    out = model(video)
    losses = clip_losses(out, batch, cfg, model.class_head)
    masks = ids[None] == torch.arange(3)[:, None, None, None]
    logits = model.class_head(out.class_features[0], masks)
    assert logits.shape == (3, NUM_CLASSES)
    expected = F.cross_entropy(logits[1:], torch.tensor([1, 2]))
    torch.testing.assert_close(losses["instance_cross_entropy"], expected)
    assert losses["loss"].item() == pytest.approx(
        losses["cross_entropy"].item() + expected.item() + sum(losses[t].item() for t in TERMS),
        rel=1e-5,
    )
    with pytest.raises(ValueError, match="class_head"):
        clip_losses(out, batch, cfg)
    with pytest.raises(ValueError, match="instance map"):
        clip_losses(out, [ClipSample(video[0], semantic, pixels, present)], cfg, model.class_head)
    assert "class_head" not in modules(TagVisNet(smoke(class_head="pixels"), NUM_CLASSES))
    with pytest.raises(ConfigError, match="class_head"):
        smoke(**{**ABLATIONS["semantic_branch"], "class_head": "rois"})
    with pytest.raises(ConfigError, match="class_head"):
        smoke(class_head="boxes")


def test_checkpoint_configs_from_before_the_class_head_keep_per_pixel_classes() -> None:
    saved = smoke().to_dict()
    assert TagVisConfig.from_dict(saved).class_head == "rois"
    del saved["class_head"]
    assert TagVisConfig.from_dict(saved).class_head == "pixels"
    assert "class_head" not in modules(TagVisNet(TagVisConfig.from_dict(saved), NUM_CLASSES))


def test_roi_head_reads_each_instances_box_wherever_it_is_and_averages_its_frames() -> None:
    torch.manual_seed(0)
    head = RoiClassHead(in_channels=2, dim=4, num_classes=3, size=8).eval()
    pattern = torch.randn(2, 5, 4)  # an object's features, 5 x 4 cells, on a zero background
    features = torch.zeros(2, 2, 16, 16)  # (C, t, h, w): two frames
    masks = torch.zeros(3, 2, 16, 16, dtype=torch.bool)
    features[:, 0, 2:7, 3:7] = pattern  # frame 0: at (2, 3)
    features[:, 1, 9:14, 10:14] = pattern  # frame 1: the same object at (9, 10)
    masks[0, 0, 2:7, 3:7] = True  # instance 0: frame 0 only
    masks[1, 1, 9:14, 10:14] = True  # instance 1: frame 1 only
    masks[2] = masks[0] | masks[1]  # instance 2: both frames
    with torch.no_grad():
        logits = head(features, masks)
        other = features.clone()
        other[:, 1, 9:14, 10:14] = torch.randn(2, 5, 4)
        changed = head(other, masks[1:2])
        empty = head(features, torch.zeros_like(masks[:1]))
    torch.testing.assert_close(logits[0], logits[1])  # a box is read wherever it is
    torch.testing.assert_close(logits[2], (logits[0] + logits[1]) / 2)  # frames averaged
    assert not torch.allclose(changed[0], logits[1])  # and what is in it matters
    torch.testing.assert_close(empty[0], head.classifier.bias)


def test_tag_attention_is_a_softmax_over_negative_squared_tag_distance() -> None:
    torch.manual_seed(0)
    b, c, t, h, w = 1, 6, 2, 2, 3
    attention = TagAttention(c, pool=1)
    tags = torch.randn(b, t, h, w) * 2
    features = torch.randn(b, c, t, h, w)
    got = attention(tags, features)
    p = tags.reshape(-1)
    weights = torch.softmax(-((p[:, None] - p[None, :]) ** 2), dim=1)
    values = attention.value(features).reshape(c, -1)  # (C, N)
    mixed = (values @ weights.T).reshape(1, c, t, h, w)
    torch.testing.assert_close(got, attention.out(mixed), rtol=1e-4, atol=1e-5)
    # Pooled keys: 2x2 cells of mean tags and mean values (ceil mode: a 2x3 frame has 2 cells).
    pooled = TagAttention(c, pool=2)
    pooled.load_state_dict(attention.state_dict())
    cells_p = F.avg_pool3d(tags[:, None], (1, 2, 2), ceil_mode=True).reshape(-1)
    cells_v = F.avg_pool3d(attention.value(features), (1, 2, 2), ceil_mode=True).reshape(c, -1)
    weights = torch.softmax(-((p[:, None] - cells_p[None, :]) ** 2), dim=1)
    mixed = (cells_v @ weights.T).reshape(1, c, t, h, w)
    torch.testing.assert_close(pooled(tags, features), attention.out(mixed), rtol=1e-4, atol=1e-5)


def test_contradictory_switches_are_rejected() -> None:
    with pytest.raises(ConfigError, match="tag_attention=true needs tag_connector"):
        smoke(tag_connector=False)
    with pytest.raises(ConfigError, match="self_connector=true needs semantic"):
        smoke(semantic=False, tag_attention=False, tag_connector=False, self_attention=False)
    with pytest.raises(ConfigError, match="decoder would have no input"):
        smoke(tag_attention=False, tag_connector=False, self_attention=False, self_connector=False)
    with pytest.raises(ConfigError, match="input_size"):
        smoke(input_size=[30, 40])  # not a multiple of the encoder's stride 4


def test_r2plus1d_18_weights_in_torchvision_format_load(tmp_path, monkeypatch) -> None:
    reference = r2plus1d_18().eval()  # random weights, torchvision's architecture and keys
    path = tmp_path / "r2plus1d_18.pth"
    torch.save(reference.state_dict(), path)
    encoder = R2Plus1DEncoder(R2PLUS1D_18_WIDTHS, R2PLUS1D_18_DEPTHS)
    load_r2plus1d_weights(encoder, path)
    encoder.eval()
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        expected = reference.layer4(
            reference.layer3(reference.layer2(reference.layer1(reference.stem(x))))
        )
        torch.testing.assert_close(encoder(x)[-1], expected)
    # By name, from the weights folder, through the model's config.
    spec = KNOWN_WEIGHTS["r2plus1d_18_kinetics"]
    monkeypatch.setenv("UVIS_WEIGHTS", str(tmp_path))
    cfg = TagVisConfig.preset("paper", clip_frames=8, input_size=[64, 64])
    with pytest.raises(MissingWeightsError, match="r2plus1d_18_kinetics"):
        create_tagvis_model(cfg, NUM_CLASSES)
    (tmp_path / spec.name).mkdir()
    path.rename(tmp_path / spec.name / spec.filename)
    model = create_tagvis_model(cfg, NUM_CLASSES)
    torch.testing.assert_close(
        model.encoder.layer4[1].conv2[0][3].weight, reference.layer4[1].conv2[0][3].weight
    )
    # A file that does not fit the encoder names the file and the problem.
    with pytest.raises(DataError, match=r"small\.pth: not a torchvision r2plus1d_18 state dict"):
        small = tmp_path / "small.pth"
        torch.save(reference.state_dict(), small)
        load_r2plus1d_weights(R2Plus1DEncoder((16, 32), (1, 1)), small)


def test_learning_rate_warms_up_then_follows_the_schedule() -> None:
    constant = smoke(lr=1e-3, lr_schedule="constant", warmup_steps=0)
    assert [constant.learning_rate(s, 10) for s in (1, 5, 10)] == [1e-3, 1e-3, 1e-3]
    cosine = smoke(lr=1e-3, lr_schedule="cosine", warmup_steps=4)
    assert [cosine.learning_rate(s, 104) for s in (1, 2, 4)] == pytest.approx([2.5e-4, 5e-4, 1e-3])
    # Half-way through the 100 steps after warm-up: half the rate; the last step: 0.
    assert cosine.learning_rate(54, 104) == pytest.approx(5e-4)
    assert cosine.learning_rate(104, 104) == pytest.approx(0.0, abs=1e-12)
    rates = [cosine.learning_rate(s, 104) for s in range(4, 105)]
    assert all(a >= b for a, b in itertools.pairwise(rates))
    with pytest.raises(ConfigError, match="lr_schedule"):
        smoke(lr_schedule="step")
    with pytest.raises(ConfigError, match="loss_reduction"):
        smoke(loss_reduction="median")


def test_foreground_weighting_gives_objects_and_background_half_each() -> None:
    # 4 pixels, 3 classes (background first): three background pixels predicted uniformly
    # (CE ln 3 each), one pixel of class 1 with logits (0, ln 2, 0): CE ln 4 - ln 2 = ln 2.
    logits = torch.zeros(1, 3, 1, 2, 2)
    logits[0, 1, 0, 1, 1] = math.log(2)
    semantic = torch.zeros(1, 1, 2, 2, dtype=torch.long)
    semantic[0, 0, 1, 1] = 1
    pixels = semantic_cross_entropy(logits, semantic, "pixels")
    assert pixels.item() == pytest.approx((3 * math.log(3) + math.log(2)) / 4)
    balanced = semantic_cross_entropy(logits, semantic, "foreground")
    assert balanced.item() == pytest.approx((math.log(3) + math.log(2)) / 2)
    # Without object pixels both are the plain mean.
    empty = torch.zeros_like(semantic)
    assert semantic_cross_entropy(logits, empty, "foreground").item() == pytest.approx(
        semantic_cross_entropy(logits, empty, "pixels").item()
    )
    with pytest.raises(ValueError, match="unknown weighting"):
        semantic_cross_entropy(logits, semantic, "classes")
