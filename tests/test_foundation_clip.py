"""CLIP: loading open_clip checkpoints, prompt ensembling, UVIS eq. 1 scores, crops, training.

Expected values are computed by hand from constructed inputs (basis vectors, images whose
pixels encode their own coordinates); the models are the small ``uvis-clip-smoke`` architecture,
randomly initialised with a fixed seed, saved in open_clip's checkpoint formats and read back
through the real loader.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch

from uvis import masks
from uvis.cli import build_parser
from uvis.errors import ConfigError, DataError
from uvis.foundation.clip import (
    DEFAULT_TEMPLATES,
    ClipBundle,
    ClipEnsemble,
    classify,
    create_clip,
    crop_regions,
    ensemble_prompts,
    image_embeddings,
    text_embeddings,
)
from uvis.foundation.weights import MissingWeightsError
from uvis.standins.clip import (
    ClipTrainConfig,
    epoch_batches,
    hide_by_disc,
    hide_by_line,
    hide_part,
    masked_object_crop,
    random_letterbox,
    random_low_resolution,
    random_resized_crops,
    read_captioned_corpus,
    train_clip,
    train_clip_ensemble,
    video_object_crops,
)

SMOKE = "uvis-clip-smoke"
NAMES = ["circle", "square", "star"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: these models are tiny, and on a shared 2-core machine two threads
    that wait on each other make the smoke training ten times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def smoke_bundle() -> ClipBundle:
    torch.manual_seed(0)
    return create_clip(SMOKE, weights=None)


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(20, 30), (64, 64), (9, 5)]
    ]


# --------------------------------------------------------------------------------------------
# Loading


def test_checkpoint_round_trip_in_open_clip_formats(smoke_bundle, crops, tmp_path):
    """Plain state dict, open_clip's training checkpoint and a DataParallel one all reload."""
    state = smoke_bundle.model.state_dict()
    files = {
        "plain.pt": state,
        "train.pt": {"epoch": 3, "name": SMOKE, "state_dict": state},
        "ddp.pt": {"state_dict": {f"module.{k}": v for k, v in state.items()}},
    }
    want_img = image_embeddings(smoke_bundle, crops)
    want_txt = text_embeddings(smoke_bundle, NAMES)
    for name, obj in files.items():
        torch.save(obj, tmp_path / name)
        loaded = create_clip(SMOKE, weights=tmp_path / name)
        assert loaded.weights == tmp_path / name
        assert torch.equal(image_embeddings(loaded, crops), want_img), name
        assert torch.equal(text_embeddings(loaded, NAMES), want_txt), name
        assert loaded.logit_scale == pytest.approx(1 / 0.07)  # open_clip's initial temperature
    assert smoke_bundle.image_size == (32, 32) and smoke_bundle.embed_dim == 64
    assert smoke_bundle.tokenizer(["a photo of a star."]).shape == (1, 16)  # config's context


def test_ensemble_cosines_are_the_members_mean(smoke_bundle, crops, tmp_path):
    """Two checkpoints load as one model whose image-text cosines (hence zero-shot logits at
    the shared scale) are the mean of the members'; one checkpoint in a list is that model."""
    first = tmp_path / "a.pt"
    torch.save(smoke_bundle.model.state_dict(), first)
    torch.manual_seed(1)
    other = create_clip(SMOKE, weights=None)
    other.model.logit_scale.data.fill_(math.log(20.0))
    second = tmp_path / "b.pt"
    torch.save(other.model.state_dict(), second)

    pair = create_clip(SMOKE, weights=[first, second])
    assert isinstance(pair.model, ClipEnsemble)
    assert pair.embed_dim == 2 * smoke_bundle.embed_dim == 128
    assert pair.members == (first, second) and pair.weights == first
    assert pair.logit_scale == pytest.approx((1 / 0.07 + 20.0) / 2)
    members = [create_clip(SMOKE, weights=w) for w in (first, second)]
    want = torch.stack(
        [image_embeddings(m, crops) @ text_embeddings(m, NAMES).T for m in members]
    ).mean(0)
    img, txt = image_embeddings(pair, crops), text_embeddings(pair, NAMES)
    torch.testing.assert_close(img.norm(dim=1), torch.ones(len(crops)))
    torch.testing.assert_close(img @ txt.T, want, rtol=1e-5, atol=1e-6)

    single = create_clip(SMOKE, weights=[first])
    assert not isinstance(single.model, ClipEnsemble) and single.members == (first,)
    assert torch.equal(image_embeddings(single, crops), image_embeddings(members[0], crops))
    with pytest.raises(ConfigError, match="empty list"):
        create_clip(SMOKE, weights=[])
    with pytest.raises(MissingWeightsError, match=r"nothing\.pt"):
        create_clip(SMOKE, weights=[first, tmp_path / "nothing.pt"])


def test_wrong_architecture_names_file_and_keys(smoke_bundle, tmp_path):
    state = smoke_bundle.model.state_dict()
    path = tmp_path / "smoke.pt"
    torch.save(state, path)
    with pytest.raises(DataError) as err:
        create_clip("uvis-clip-tiny", weights=path)
    text = str(err.value)
    assert text.startswith(f"{path}: not an open_clip uvis-clip-tiny checkpoint")
    # The smoke text tower has 1 block, the tiny one 3; every tower is narrower.
    assert "24 missing keys (e.g. transformer.resblocks.1.ln_1.weight" in text
    assert "text_projection: file (64, 64) vs model (128, 128)" in text

    partial = tmp_path / "partial.pt"
    torch.save({k: v for k, v in state.items() if k != "text_projection"}, partial)
    with pytest.raises(DataError, match=r"1 missing keys \(e\.g\. text_projection\)"):
        create_clip(SMOKE, weights=partial)
    extra = tmp_path / "extra.pt"
    torch.save({**state, "head.weight": torch.zeros(2)}, extra)
    with pytest.raises(DataError, match=r"1 unexpected keys \(e\.g\. head\.weight\)"):
        create_clip(SMOKE, weights=extra)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(DataError, match=r"garbage\.pt: not an open_clip .* cannot read it"):
        create_clip(SMOKE, weights=garbage)


def test_missing_hub_and_mismatched_weights_fail_before_loading(tmp_path, monkeypatch):
    monkeypatch.setenv("UVIS_WEIGHTS", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="not found"):
        create_clip(SMOKE, weights=tmp_path / "absent.pt")
    # an open_clip tag: looked up in the (empty) Hugging Face cache, never fetched
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(MissingWeightsError, match="not in the Hugging Face cache"):
        create_clip("ViT-B-32", weights="laion2b_s34b_b79k")
    with pytest.raises(MissingWeightsError, match="not available offline"):
        create_clip("ViT-B-32", weights="clip_vit_b32_laion2b")
    with pytest.raises(MissingWeightsError, match="Hugging Face hub"):
        create_clip("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", weights=None)
    with pytest.raises(ConfigError, match="is for architecture 'ViT-B-32'"):
        create_clip(SMOKE, weights="clip_vit_b32_laion2b")
    with pytest.raises(ConfigError, match="unknown CLIP architecture"):
        create_clip("no-such-model", weights=None)


# --------------------------------------------------------------------------------------------
# Embeddings


def test_image_embeddings_normalised_and_batch_independent(smoke_bundle, crops):
    emb = image_embeddings(smoke_bundle, crops, batch_size=256)
    assert emb.shape == (3, 64) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-6)
    assert torch.allclose(image_embeddings(smoke_bundle, crops, batch_size=1), emb, atol=1e-6)
    # A preprocessed tensor gives what the list of arrays gives.
    from PIL import Image

    pre = torch.stack([smoke_bundle.preprocess(Image.fromarray(c)) for c in crops])
    assert torch.allclose(image_embeddings(smoke_bundle, pre), emb, atol=1e-6)
    assert image_embeddings(smoke_bundle, []).shape == (0, 64)
    with pytest.raises(ValueError, match="crop 1"):
        image_embeddings(smoke_bundle, [crops[0], crops[0][..., 0]])


def test_flip_averaging_is_the_normalised_sum_with_the_mirror(smoke_bundle, crops):
    from PIL import Image

    pre = torch.stack([smoke_bundle.preprocess(Image.fromarray(c)) for c in crops])
    plain, mirrored = (
        image_embeddings(smoke_bundle, pre),
        image_embeddings(smoke_bundle, pre.flip(-1)),
    )
    both = image_embeddings(smoke_bundle, crops, flip=True)
    expected = torch.nn.functional.normalize(plain + mirrored, dim=-1)
    assert torch.allclose(both, expected, atol=1e-6)
    assert (both - plain).abs().max() > 1e-5  # the crops are not mirror-symmetric
    # A mirror-symmetric input embeds as itself.
    symmetric = torch.cat([pre[:, :, :, :16], pre[:, :, :, :16].flip(-1)], dim=-1)
    assert torch.allclose(
        image_embeddings(smoke_bundle, symmetric, flip=True),
        image_embeddings(smoke_bundle, symmetric),
        atol=1e-6,
    )


def test_prompt_ensembling_is_the_normalised_mean_of_normalised_prompts(smoke_bundle):
    # Constructed: prompts [3, 0] and [0, 1] normalise to e0 and e1, whose mean renormalises
    # to (1, 1)/sqrt(2); averaging the raw vectors first would give (3, 1)/sqrt(10).
    per_prompt = torch.tensor([[[3.0, 0.0], [0.0, 1.0]]])
    assert torch.allclose(ensemble_prompts(per_prompt), torch.tensor([[0.5**0.5, 0.5**0.5]]))
    # Through the model: two templates = normalised sum of the single-template embeddings.
    templates = ("a photo of a {}.", "a drawing of a {}")
    both = text_embeddings(smoke_bundle, NAMES, templates)
    one, two = (text_embeddings(smoke_bundle, NAMES, (t,)) for t in templates)
    expected = torch.nn.functional.normalize(one + two, dim=-1)
    assert torch.allclose(both, expected, atol=1e-6)
    assert torch.allclose(one.norm(dim=1), torch.ones(3), atol=1e-6)
    with pytest.raises(ValueError, match="template"):
        text_embeddings(smoke_bundle, NAMES, ("no placeholder",))


# --------------------------------------------------------------------------------------------
# UVIS eq. 1


def test_classify_argmax_and_softmax_score_by_hand():
    text = torch.eye(3)  # class c has text embedding e_c; image rows 1 and 2 are unnormalised
    image = torch.tensor([[0.6, 0.8, 0.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.5]])
    labels = classify(image, text, logit_scale=10.0)
    assert labels.class_index.tolist() == [1, 0, 2]
    # Row 0: cosines (0.6, 0.8, 0) -> p1 = e^8 / (e^6 + e^8 + e^0).
    p1 = math.exp(8) / (math.exp(6) + math.exp(8) + 1)
    assert labels.class_score[0].item() == pytest.approx(p1, rel=1e-6)
    assert labels.probs[0].tolist() == pytest.approx(
        [math.exp(6) / (math.exp(6) + math.exp(8) + 1), p1, 1 / (math.exp(6) + math.exp(8) + 1)]
    )
    assert torch.allclose(labels.probs.sum(dim=1), torch.ones(3))
    # Row 1: cosines (1, 0, 0) -> e^10 / (e^10 + 2).
    assert labels.class_score[1].item() == pytest.approx(math.exp(10) / (math.exp(10) + 2))


def test_class_score_meaning_at_clip_logit_scale():
    """Typical CLIP cosines (~0.2-0.3) never reach 0.7, but their softmax at 100 does."""
    cos = torch.tensor([[0.30, 0.25, 0.20]])
    text = torch.eye(3)
    image = torch.cat([cos, torch.sqrt(1 - (cos**2).sum(dim=1, keepdim=True))], dim=1)
    text = torch.cat([text, torch.zeros(3, 1)], dim=1)  # 4-d: the 4th axis carries the rest
    at_100 = classify(image, text, logit_scale=100.0)
    assert at_100.class_index.item() == 0
    assert at_100.class_score.item() == pytest.approx(1 / (1 + math.exp(-5) + math.exp(-10)))
    assert at_100.class_score.item() > 0.99 > 0.7 > 0.30
    # At scale 1 the same cosines are nearly uniform: the score is about 1/C.
    assert classify(image, text, logit_scale=1.0).class_score.item() == pytest.approx(
        math.exp(0.3) / (math.exp(0.3) + math.exp(0.25) + math.exp(0.2))
    )


def test_classify_rejects_bad_input():
    text = torch.eye(3)
    with pytest.raises(ValueError, match=r"image embedding row\(s\) are not finite, e.g. \[1\]"):
        classify(torch.tensor([[1.0, 0, 0], [float("nan"), 0, 0]]), text, 100.0)
    with pytest.raises(ValueError, match="expected"):
        classify(torch.ones(2, 4), text, 100.0)
    with pytest.raises(ValueError, match="logit_scale"):
        classify(torch.ones(2, 3), text, 0.0)


# --------------------------------------------------------------------------------------------
# Crops


def coordinate_image(height: int = 20, width: int = 30) -> np.ndarray:
    """Pixel (y, x) holds (y, x, 7), so a crop's corner tells where it was cut."""
    yy, xx = np.mgrid[:height, :width]
    return np.stack([yy, xx, np.full_like(yy, 7)], axis=-1).astype(np.uint8)


def test_crop_regions_context_margin_and_clamping():
    image = coordinate_image()
    # Box x=10, y=5, w=10, h=5 with 10 % context: x in [9, 21), y in [4.5, 10.5) -> [4, 11).
    inner, corner, edge, fractional = crop_regions(
        image,
        [[10, 5, 10, 5], [0, 0, 5, 5], [25, 15, 5, 5], [3, 4, 2, 6]],
        context=0.1,
    )
    assert inner.shape == (7, 12, 3) and tuple(inner[0, 0]) == (4, 9, 7)
    assert tuple(inner[-1, -1]) == (10, 20, 7)
    # Margins of 0.5 px round outwards and are clamped at the top-left corner: [0, 6).
    assert corner.shape == (6, 6, 3) and tuple(corner[0, 0]) == (0, 0, 7)
    # At the bottom-right border: x in [24, 30), y in [14, 20), clamped to the image.
    assert edge.shape == (6, 6, 3) and tuple(edge[-1, -1]) == (19, 29, 7)
    # Margins 0.2 x and 0.6 y: x in [2.8, 5.2) -> [2, 6), y in [3.4, 10.6) -> [3, 11).
    assert fractional.shape == (8, 4, 3) and tuple(fractional[0, 0]) == (3, 2, 7)
    (no_context,) = crop_regions(image, [[10, 5, 10, 5]], context=0.0)
    assert no_context.shape == (5, 10, 3) and tuple(no_context[0, 0]) == (5, 10, 7)
    for bad in ([1, 1, 0, 4], [1, 1, float("nan"), 4], [40, 1, 4, 4]):
        with pytest.raises(ValueError, match="box 0"):
            crop_regions(image, [bad])


def test_crop_regions_mask_background():
    image = np.zeros((10, 10, 3), np.uint8)
    image[:, :5] = 10  # left half 10, right half 30
    image[:, 5:] = 30
    image[4:6, 4:6] = 200  # the object, also the mask
    mask = np.zeros((10, 10), np.uint8)
    mask[4:6, 4:6] = 1
    box = [[2, 2, 6, 6]]  # crop [2, 8) x [2, 8): outside pixels are half 10, half 30
    (mean,) = crop_regions(image, box, [mask], context=0.0, mask_background="mean")
    inside = mask[2:8, 2:8].astype(bool)
    assert (mean[inside] == 200).all() and (mean[~inside] == 20).all()
    (from_rle,) = crop_regions(
        image, box, [masks.encode(mask)], context=0.0, mask_background="mean"
    )
    assert np.array_equal(from_rle, mean)
    (blur,) = crop_regions(image, box, [mask], context=0.0, mask_background="blur")
    assert (blur[inside] == 200).all()
    # The 10|30 edge is smoothed: values strictly between the two sides appear near it.
    assert ((blur[~inside] > 10) & (blur[~inside] < 30)).any()
    (plain,) = crop_regions(image, box, [mask], context=0.0)  # masks unused without a mode
    assert np.array_equal(plain, image[2:8, 2:8])
    with pytest.raises(ValueError, match="empty"):
        crop_regions(image, box, [np.zeros((10, 10))], mask_background="mean")
    with pytest.raises(ValueError, match="one mask per box"):
        crop_regions(image, box, mask_background="mean")


# --------------------------------------------------------------------------------------------
# Training the stand-in


@pytest.fixture(scope="module")
def smoke_world(tmp_path_factory) -> Path:
    from uvis.synth import SynthParams, generate_world

    out = tmp_path_factory.mktemp("clip") / "world"
    generate_world(out, SynthParams.preset("smoke"), progress=False)
    return out


def test_smoke_training_lowers_loss_and_reloads(smoke_world, tmp_path):
    cfg = ClipTrainConfig.preset("smoke", epochs=4)
    out = tmp_path / "models" / "clip.pt"
    report = train_clip(
        smoke_world / "corpora" / "captioned", out, cfg, eval_world=smoke_world, progress=False
    )
    losses = [entry["loss"] for entry in report["log"]]
    assert len(losses) == 4 and losses[-1] < losses[0]
    on_disk = json.loads(out.with_suffix(".json").read_text())
    assert on_disk["config"]["model"] == SMOKE and on_disk["config"]["epochs"] == 4
    assert on_disk["model_config"]["embed_dim"] == 64
    quality = on_disk["quality"]
    assert quality["chance"] == pytest.approx(0.1)
    assert quality["heldout_corpus"]["num_crops"] == report["num_heldout_images"] > 0
    assert quality["video_crops"]["num_crops"] > 0
    assert 0.0 <= quality["video_crops"]["accuracy"] <= 1.0
    # What was saved is what the real loader reads.
    checkpoint = torch.load(out, weights_only=True)
    assert set(checkpoint) == {"epoch", "name", "state_dict"}
    loaded = create_clip(SMOKE, weights=out)
    assert loaded.logit_scale == pytest.approx(report["log"][-1]["logit_scale"], rel=1e-5)


def test_weight_average_is_what_is_saved_and_leaves_training_alone(smoke_world, tmp_path):
    corpus = smoke_world / "corpora" / "captioned"

    def run(name: str, decay: float) -> tuple[dict, dict[str, torch.Tensor]]:
        cfg = ClipTrainConfig.preset("smoke", epochs=2, ema_decay=decay)
        out = tmp_path / f"{name}.pt"
        report = train_clip(corpus, out, cfg, progress=False)
        return report, torch.load(out, weights_only=True)["state_dict"]

    plain, plain_state = run("plain", 0.0)
    _, near_state = run("near", 1e-12)
    slow, slow_state = run("slow", 0.9)
    assert plain["quality_last_weights"] is None
    # A decay of (almost) 0 forgets every earlier step: the saved weights are the last ones.
    for key, value in plain_state.items():
        torch.testing.assert_close(near_state[key], value, rtol=1e-5, atol=1e-6, msg=key)
    # The average is kept beside training without changing it: the last weights score as the
    # plain run's, and a slow average is something else.
    assert slow["quality_last_weights"]["heldout_corpus"] == plain["quality"]["heldout_corpus"]
    floats = [k for k, v in plain_state.items() if v.is_floating_point()]
    assert any(not torch.allclose(slow_state[k], plain_state[k]) for k in floats)


def test_ensemble_training_reports_the_ensemble(smoke_world, tmp_path):
    """Member 0 is the single training bit for bit, member 1 another seed's; the report's
    quality is the two scored as one model, each member's kept beside it."""
    corpus = smoke_world / "corpora" / "captioned"
    cfg = ClipTrainConfig.preset("smoke", epochs=2)
    single = train_clip(corpus, tmp_path / "single.pt", cfg, progress=False)
    outs = [tmp_path / "ens" / "clip.pt", tmp_path / "ens" / "clip-member1.pt"]
    report = train_clip_ensemble(corpus, outs, cfg, eval_world=smoke_world, progress=False)

    states = [
        torch.load(p, weights_only=True)["state_dict"] for p in (*outs, tmp_path / "single.pt")
    ]
    assert all(torch.equal(states[0][k], states[2][k]) for k in states[2])
    assert any(not torch.equal(states[0][k], states[1][k]) for k in states[2])
    assert [m["seed"] for m in report["members"]] == [cfg.seed, cfg.seed + 1]
    assert report["members"][0]["quality"]["heldout_corpus"] == single["quality"]["heldout_corpus"]
    on_disk = json.loads(outs[0].with_suffix(".json").read_text())
    assert on_disk["checkpoint"] == [str(p) for p in outs]
    assert json.loads(outs[1].with_suffix(".json").read_text())["member"] == 1
    # The reported quality is the ensemble's, measured again here by hand.
    from uvis.synth import CATEGORIES

    pair = create_clip(SMOKE, weights=outs, resize_mode=cfg.eval_resize_mode)
    found = video_object_crops(smoke_world, cfg.eval_context, cfg.eval_min_area)
    text = text_embeddings(pair, found.names, cfg.eval_templates)
    pred = classify(image_embeddings(pair, found.masked), text, pair.logit_scale).class_index
    assert len(found.names) == len(CATEGORIES)
    assert on_disk["quality"]["video_crops_masked_mean"]["accuracy"] == pytest.approx(
        float((pred.numpy() == found.labels).mean())
    )
    with pytest.raises(ValueError, match="distinct"):
        train_clip_ensemble(corpus, [outs[0], outs[0]], cfg, progress=False)


def test_cli_pretrain_clip(smoke_world, tmp_path, capsys):
    out = tmp_path / "clip.pt"
    args = build_parser().parse_args(
        [
            *("pretrain", "clip", str(smoke_world / "corpora" / "captioned"), str(out)),
            *("--preset", "smoke", "--set", "epochs=1", "--threads", "1", "--no-progress"),
        ]
    )
    assert args.func(args) == 0
    assert "pretrain clip: uvis-clip-smoke, 1 epochs" in capsys.readouterr().out
    assert out.is_file() and out.with_suffix(".json").is_file()


def test_one_colour_batches():
    # Colour 0: 10 images -> 2 full batches of 4 + 2 left; colour 1: 7 -> 1 batch + 3 left;
    # colour 2: 3 left. The 8 left over make 2 mixed batches: 5 batches, every image once.
    groups = np.array([0] * 10 + [1] * 7 + [2] * 3)
    batches = epoch_batches(groups, 4, torch.Generator().manual_seed(0))
    assert len(batches) == 5 and all(len(b) == 4 for b in batches)
    assert sorted(torch.cat(batches).tolist()) == list(range(20))
    single = sorted(tuple(sorted(set(groups[b.numpy()]))) for b in batches)
    assert single.count((0,)) >= 2 and single.count((1,)) >= 1
    # One group for everything: plain random batches, the incomplete last one dropped.
    plain = epoch_batches(np.zeros(10, np.int64), 4, torch.Generator().manual_seed(0))
    assert [len(b) for b in plain] == [4, 4] and len(set(torch.cat(plain).tolist())) == 8


def test_centred_crops_sit_in_the_middle():
    # Pixels encode their own x coordinate; a centred window of area 1/4 of a 64 px image is
    # 32 px wide (aspect ratio fixed at 1), so it spans x = 16..48 and its mean x is 32.
    xs = torch.arange(64, dtype=torch.float32).expand(5, 3, 64, 64).contiguous()
    gen = torch.Generator().manual_seed(0)
    centred = random_resized_crops(xs, (8, 8), (0.25, 0.25), gen, (1.0, 1.0), centre_jitter=0.0)
    assert torch.allclose(centred.mean(dim=(1, 2, 3)), torch.full((5,), 31.5), atol=0.01)
    assert centred.min() > 15 and centred.max() < 48
    # Anywhere (jitter 1): the windows' mean x spreads over 16..48.
    spread = random_resized_crops(xs, (8, 8), (0.25, 0.25), gen, (1.0, 1.0), centre_jitter=1.0)
    assert spread.mean(dim=(1, 2, 3)).std() > 2


def test_letterbox_squeezes_and_pads_with_black():
    images = torch.ones(40, 3, 16, 16)
    out = random_letterbox(images, 0.5, 2.0, torch.Generator().manual_seed(0))
    black = (out == 0).all(dim=1)  # (B, H, W)
    changed = black.any(dim=(1, 2))
    assert 0 < changed.sum() < 40  # about half of them
    for image in black[changed]:
        rows, cols = image.all(dim=1), image.all(dim=0)
        bars = rows if rows.any() else cols  # black bars along one axis only
        assert not (rows.any() and cols.any())
        assert bars.sum() <= 8  # squeezed by at most 2: at least half the side is image
        kept = torch.nonzero(~bars).flatten()
        assert (kept == torch.arange(kept[0], kept[-1] + 1)).all()  # one centred block
        assert abs(int(kept[0]) - (16 - 1 - int(kept[-1]))) <= 1
    assert torch.equal(out[~changed], images[~changed])
    assert torch.equal(random_letterbox(images, 0.0, 2.0, torch.Generator()), images)


def test_low_resolution_blurs_detail_and_keeps_flat_images():
    # A one-pixel checkerboard has no content left below full resolution; a flat image is flat
    # at any resolution.
    board = ((torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2).float()
    images = board.expand(30, 3, 16, 16).contiguous()
    out = random_low_resolution(images, 0.5, 0.5, torch.Generator().manual_seed(0))
    changed = (out != images).any(dim=(1, 2, 3))
    assert 0 < changed.sum() < 30
    assert (out[changed].std(dim=(1, 2, 3)) < 0.3 * images[0].std()).all()
    assert torch.equal(out[~changed], images[~changed])
    flat = torch.full((4, 3, 16, 16), 0.25)
    assert torch.allclose(random_low_resolution(flat, 1.0, 0.3, torch.Generator()), flat)


def test_train_config_overrides_and_errors():
    cfg = ClipTrainConfig.preset("default", epochs=3, lr=1, crop_scale=[0.5, 1])
    assert (cfg.epochs, cfg.lr, cfg.crop_scale) == (3, 1.0, (0.5, 1.0))
    assert ClipTrainConfig.preset("smoke").model == SMOKE
    with pytest.raises(ConfigError, match="unknown CLIP training setting 'epoch'"):
        ClipTrainConfig.preset("default", epoch=3)
    with pytest.raises(ConfigError, match="epochs"):
        ClipTrainConfig.preset("default", epochs="many")
    with pytest.raises(ConfigError, match="holdout_fraction"):
        ClipTrainConfig.preset("default", holdout_fraction=1.0)
    with pytest.raises(ConfigError, match="crop_centre_jitter"):
        ClipTrainConfig.preset("default", crop_centre_jitter=1.5)
    with pytest.raises(ConfigError, match="pad_ratio"):
        ClipTrainConfig.preset("default", pad_ratio=0.5)
    with pytest.raises(ConfigError, match="preset"):
        ClipTrainConfig.preset("huge")
    # The report's prompts: the pipeline's default unless the rule passes its own.
    assert ClipTrainConfig().eval_templates == DEFAULT_TEMPLATES
    two = ClipTrainConfig.preset("default", eval_templates=["a {}", "a drawing of a {}"])
    assert two.eval_templates == ("a {}", "a drawing of a {}")
    with pytest.raises(ConfigError, match="eval_templates"):
        ClipTrainConfig.preset("default", eval_templates=["a photo of a shape"])
    with pytest.raises(ConfigError, match="ema_decay"):
        ClipTrainConfig.preset("default", ema_decay=1.0)


def test_corpus_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match=r"captions\.jsonl: missing"):
        read_captioned_corpus(tmp_path)
    (tmp_path / "captions.jsonl").write_text('{"file": "a.jpg", "caption": "a red star"}\n')
    with pytest.raises(DataError, match=r"captions\.jsonl: line 1"):
        read_captioned_corpus(tmp_path)
    (tmp_path / "captions.jsonl").write_text(
        '{"file": "a.jpg", "caption": "a red star", "colour": "red", "category_id": 4}\n'
    )
    with pytest.raises(DataError, match=r"a\.jpg: cannot read image"):
        read_captioned_corpus(tmp_path)


def test_video_object_crops_of_a_split_with_sizes_and_visible_fractions(tiny_ytvis, tmp_path):
    # tiny_ytvis (conftest) is the train split; video_object_crops reads WORLD/ytvis/<split>.
    world = tmp_path / "world"
    world.mkdir()
    (world / "ytvis").symlink_to(tiny_ytvis.json_path.parent)
    found = video_object_crops(world, 0.0, 5, split="train")
    # Frames in (video id, frame) order: (3, 0) dog 4x5 box, area 20 of at most 20; (3, 2) dog
    # 2x3, area 6 of 20; (7, 0) person 2x5, area 10 of 10; (7, 1) has area 1 < 5.
    assert found.names == ["person", "dog"]
    assert found.labels.tolist() == [1, 1, 0]
    assert found.sides.tolist() == [5, 3, 5]
    assert found.visible == pytest.approx([1.0, 0.3, 1.0])
    assert [c.shape for c in found.crops] == [(4, 5, 3), (2, 3, 3), (2, 5, 3)]
    assert [c.shape for c in found.masked] == [(4, 5, 3), (2, 3, 3), (2, 5, 3)]
    # Every 2nd video in id order keeps video 3 only; a larger smallest area drops (3, 2).
    every_2nd = video_object_crops(world, 0.0, 5, split="train", video_stride=2)
    assert every_2nd.labels.tolist() == [1, 1]
    assert video_object_crops(world, 0.0, 7, split="train").sides.tolist() == [5, 5]
    with pytest.raises(ValueError, match="video_stride"):
        video_object_crops(world, 0.0, 5, split="train", video_stride=0)


def test_cli_pretrain_clip_members_and_clashing_paths(smoke_world, tmp_path, capsys):
    corpus = str(smoke_world / "corpora" / "captioned")
    out, member = tmp_path / "clip.pt", tmp_path / "clip-member1.pt"
    common = ("--preset", "smoke", "--set", "epochs=1", "--threads", "1", "--no-progress")
    args = build_parser().parse_args(
        ["pretrain", "clip", corpus, str(out), "--member-out", str(member), *common]
    )
    assert args.func(args) == 0
    assert "ensemble of 2" in capsys.readouterr().out
    assert (
        member.is_file() and len(json.loads(out.with_suffix(".json").read_text())["members"]) == 2
    )
    from uvis.cli import main

    assert main(["pretrain", "clip", corpus, str(out), "--member-out", str(out), *common]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: pretrain clip:") and "distinct" in err and "\n" not in err


def test_hide_by_line_hides_the_far_fraction():
    square = np.zeros((10, 10), bool)
    square[2:6, 2:6] = True
    # Angle 0 points along +x: a quarter hidden is the right-most column of the 4x4 square.
    right = hide_by_line(square, 0.25, 0.0)
    expected = square.copy()
    expected[2:6, 5] = False
    assert np.array_equal(right, expected)
    # Along +y (pi/2), half hidden is the bottom two rows.
    bottom = hide_by_line(square, 0.5, math.pi / 2)
    expected = square.copy()
    expected[4:6, 2:6] = False
    assert np.array_equal(bottom, expected)
    assert not hide_by_line(np.zeros((4, 4), bool), 0.5, 0.0).any()


def test_hide_by_disc_and_hide_part_only_remove_object_pixels():
    disc = np.hypot(*np.mgrid[-20:21, -20:21]) <= 12
    # A disc of radius 12 centred on the object's edge at (32, 20) hides its right part only.
    left = hide_by_disc(disc, (32.0, 20.0), 12.0)
    assert left[20, 10] and not left[20, 28] and left.sum() < disc.sum()
    rng = np.random.default_rng(0)
    hidden = []
    for _ in range(200):
        part = hide_part(disc, 0.6, rng)
        assert not (part & ~disc).any()  # a subset of the object
        hidden.append(1 - part.sum() / disc.sum())
    hidden = np.asarray(hidden)
    # Half are edges hiding 10-60 %; discs hide anything from nothing to most of the object.
    assert ((hidden >= 0.09) & (hidden <= 0.61)).mean() > 0.5
    assert hidden.max() < 0.95 and (hidden < 0.05).any()
    again = np.random.default_rng(0)
    assert np.array_equal(
        hide_part(disc, 0.6, again), hide_part(disc, 0.6, np.random.default_rng(0))
    )
    assert not hide_part(np.zeros((5, 5), bool), 0.6, rng).any()


def test_masked_object_crop_is_the_box_with_a_flat_background():
    image = np.zeros((20, 20, 3), np.uint8)
    image[..., 1] = np.arange(20, dtype=np.uint8)[None, :] * 10  # a horizontal ramp
    image[5:15, 4:14] = (200, 0, 0)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 4:14] = True
    crop = masked_object_crop(image, mask, context=0.2)
    # 10x10 box, 2 px margin each side -> 14x14; the object kept, the margin one flat colour.
    assert crop.shape == (14, 14, 3)
    assert (crop[2:12, 2:12] == (200, 0, 0)).all()
    ring = np.ones((14, 14), bool)
    ring[2:12, 2:12] = False
    assert len(np.unique(crop[ring].reshape(-1, 3), axis=0)) == 1


def test_corpus_masks_are_read_and_checked(smoke_world, tmp_path):
    corpus = read_captioned_corpus(smoke_world / "corpora" / "captioned")
    assert corpus.masks is not None and corpus.masks.shape == corpus.images.shape[:3]
    assert corpus.masks.any(axis=(1, 2)).all()
    lines = (smoke_world / "corpora" / "captioned" / "captions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines[:2]]
    folder = tmp_path / "corpus"
    (folder / "images").mkdir(parents=True)
    for record in records:
        (folder / record["file"]).write_bytes(
            (smoke_world / "corpora" / "captioned" / record["file"]).read_bytes()
        )
    del records[1]["segmentation"]
    (folder / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(DataError, match=r"captions\.jsonl: line 2: segmentation given on some"):
        read_captioned_corpus(folder)
    records[1]["segmentation"] = masks.encode(np.zeros((4, 4), bool))
    (folder / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(DataError, match=r"line 2: segmentation RLE size \[4, 4\] differs"):
        read_captioned_corpus(folder)


def test_training_on_cut_out_objects_needs_masks_and_learns(smoke_world, tmp_path):
    cfg = ClipTrainConfig.preset("smoke", epochs=4, masked_prob=1.0, occlusion_prob=1.0)
    report = train_clip(
        smoke_world / "corpora" / "captioned", tmp_path / "clip.pt", cfg, progress=False
    )
    losses = [entry["loss"] for entry in report["log"]]
    assert losses[-1] < losses[0]
    assert report["config"]["masked_prob"] == 1.0
    # A corpus without masks (an older world) is refused with the file named.
    folder = tmp_path / "old"
    (folder / "images").mkdir(parents=True)
    lines = (smoke_world / "corpora" / "captioned" / "captions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for record in records:
        del record["segmentation"]
        (folder / record["file"]).write_bytes(
            (smoke_world / "corpora" / "captioned" / record["file"]).read_bytes()
        )
    (folder / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(DataError, match=r"captions\.jsonl: has no object masks"):
        train_clip(folder, tmp_path / "old.pt", cfg, progress=False)
    with pytest.raises(ConfigError, match="occlusion_max"):
        ClipTrainConfig.preset("smoke", occlusion_max=1.0)
