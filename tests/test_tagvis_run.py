"""Training (resume, stale runs) and inference of the tag-based model on the smoke world, and
its clip sampling and pseudo-label linking on constructed targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from uvis import masks
from uvis.cli import main
from uvis.data import load_ytvis
from uvis.data.frames import Category
from uvis.errors import ConfigError, DataError, UvisError
from uvis.evaluation.davis import evaluate_folders
from uvis.evaluation.ytvis import evaluate_files
from uvis.inference.videos import frame_index_videos
from uvis.synth import SynthParams, generate_world
from uvis.tagvis.checkpoint import TagVisMeta, load_tagvis_model
from uvis.tagvis.clips import inference_frame_indices
from uvis.tagvis.config import TagVisConfig
from uvis.tagvis.data import (
    ClipSamples,
    link_tracks,
    paint_targets,
    training_frame_indices,
    video_targets,
)
from uvis.tagvis.infer import InferenceConfig, infer_videos
from uvis.tagvis.model import TagVisNet
from uvis.tagvis.train import train_tagvis
from uvis.train.targets import FrameTargets, targets_from_ground_truth

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke world with frame indices of both splits under ``frames/``."""
    root = tmp_path_factory.mktemp("smoke")
    generate_world(root, SynthParams.preset("smoke"), progress=False)
    for split in ("train", "valid"):
        dataset = load_ytvis(root / f"ytvis/{split}.json", root / f"ytvis/{split}/JPEGImages")
        (root / "frames").mkdir(exist_ok=True)
        pq.write_table(dataset.frame_index(), root / f"frames/{split}.parquet")
    return root


def training_set(world: Path):
    dataset = load_ytvis(world / "ytvis/train.json", world / "ytvis/train/JPEGImages")
    return targets_from_ground_truth(
        dataset.frame_index(), dataset, annotations_path=str(world / "ytvis/train.json")
    )


def config(**overrides) -> TagVisConfig:
    return TagVisConfig.preset("smoke", epochs=2, device="cpu", **overrides)  # 4 steps


def untrained(cfg: TagVisConfig) -> tuple[TagVisNet, TagVisMeta]:
    """A randomly initialised model of ``cfg`` for ten classes, in eval mode, and its meta."""
    meta = TagVisMeta(
        config=cfg,
        categories=tuple(Category(i + 1, f"c{i}") for i in range(10)),
        class_counts=(1,) * 10,
        iteration=0,
    )
    return TagVisNet(cfg, 10).eval(), meta


def test_resumed_training_ends_with_the_weights_of_an_uninterrupted_run(world, tmp_path):
    data = training_set(world)
    whole = train_tagvis(data, config(), tmp_path / "whole", progress=False)
    assert whole.final is not None and whole.iteration == 4
    stopped = train_tagvis(data, config(), tmp_path / "split", progress=False, stop_after=2)
    assert stopped.final is None and stopped.iteration == 2
    assert not (tmp_path / "split/model_final.pth").exists()
    resumed = train_tagvis(data, config(), tmp_path / "split", progress=False)
    assert resumed.start_iteration == 2 and resumed.final is not None
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    rows = (tmp_path / "split/metrics.csv").read_text().splitlines()
    assert rows[0].startswith("iteration,loss,cross_entropy,instance_cross_entropy,spatial_intra")
    assert [int(r.split(",")[0]) for r in rows[1:]] == [1, 2, 3, 4]
    # keep_checkpoints = 2 of the smoke preset's checkpoints every step.
    assert sorted(p.name for p in (tmp_path / "split").glob("checkpoint_*.pth")) == [
        "checkpoint_0000003.pth",
        "checkpoint_0000004.pth",
    ]
    model, meta = load_tagvis_model(tmp_path / "split/model_final.pth")
    assert not model.training and model.num_classes == len(meta.categories) == 10
    assert meta.iteration == 4 and [c.name for c in meta.categories][:2] == ["circle", "square"]
    assert sum(meta.class_counts) == data.summary()["masks"]


def test_a_checkpoint_of_another_run_is_an_error_or_set_aside(world, tmp_path):
    data = training_set(world)
    train_tagvis(data, config(), tmp_path, progress=False, stop_after=1)
    with pytest.raises(DataError, match=r"cannot resume: tagvis settings \['margin'\] differ"):
        train_tagvis(data, config(margin=2.0), tmp_path, progress=False)
    result = train_tagvis(data, config(margin=2.0), tmp_path, progress=False, stale="restart")
    assert result.start_iteration == 0 and result.final is not None
    assert (tmp_path / "superseded/checkpoint_0000001.pth").is_file()


def test_inference_writes_what_the_evaluations_read(world, tmp_path):
    data = training_set(world)
    train_tagvis(data, config(), tmp_path / "model", progress=False)
    out = tmp_path / "pred"
    status = main(
        [
            "infer",
            "tagvis",
            "--checkpoint",
            str(tmp_path / "model/model_final.pth"),
            "--frames",
            str(world / "frames/valid.parquet"),
            "--out",
            str(out / "results.json"),
            "--davis",
            str(out / "davis"),
            "--speed",
            str(out / "speed.json"),
            "--set",
            "min_area=0",
            "--no-progress",
        ]
    )
    assert status == 0
    gt = json.loads((world / "ytvis/valid.json").read_text())
    lengths = {v["id"]: len(v["file_names"]) for v in gt["videos"]}
    results = json.loads((out / "results.json").read_text())
    assert results, "an untrained model still finds some instance (min_area=0)"
    for r in results:
        assert len(r["segmentations"]) == lengths[r["video_id"]]
        assert 0.0 <= r["score"] <= 1.0
    metrics = evaluate_files(world / "ytvis/valid.json", out / "results.json")
    assert metrics["num_results"] == len(results)
    davis_gt = world / "davis/Annotations_unsupervised/480p"
    for seq in davis_gt.iterdir():
        pngs = sorted(p.name for p in (out / "davis" / seq.name).iterdir())
        assert pngs == sorted(p.name for p in seq.iterdir())
        with Image.open(out / "davis" / seq.name / pngs[0]) as png:
            assert png.mode == "P" and png.size == Image.open(seq / pngs[0]).size
    davis = evaluate_folders(davis_gt, out / "davis")
    assert 0.0 <= davis["JF"] <= 100.0
    speed = json.loads((out / "speed.json").read_text())
    assert speed["frames"] == sum(lengths.values()) and speed["fps"] > 0
    assert speed["device"] == "cpu" and speed["clip_frames"] == 4


def test_bad_checkpoint_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "x.pth"
    torch.save({"format": "uvis-vis-model"}, bad)
    status = main(
        ["infer", "tagvis", "--checkpoint", str(bad), "--frames", "f.parquet", "--out", "r.json"]
    )
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {bad}: not a tag-based model checkpoint (no format 'uvis-tagvis-model')"


def frame(t: int, boxes: list[tuple[int, int]], labels: list[int] | None = None) -> FrameTargets:
    """A 20x20 frame with 4x4 squares whose top-left corners are ``boxes``."""
    rles = []
    for y, x in boxes:
        m = np.zeros((20, 20), np.uint8)
        m[y : y + 4, x : x + 4] = 1
        rles.append(masks.encode(m))
    labels = labels if labels is not None else [0] * len(boxes)
    return FrameTargets(1, t, Path("f.jpg"), 20, 20, tuple(rles), tuple(labels))


def test_pseudo_labels_are_linked_into_tracks_by_mask_iou():
    frames = [
        frame(0, [(0, 0), (10, 10)]),
        frame(1, [(10, 11), (0, 1)]),  # both moved 1 px, listed in the other order
        frame(2, [(0, 2), (16, 0)]),  # the second object gone, a new one
        frame(3, []),
        frame(4, [(0, 2)]),  # after an empty frame: a new track
    ]
    assert link_tracks(frames, min_iou=0.5, max_gap=0) == ((0, 1), (1, 0), (0, 2), (), (3,))
    # A track may skip a frame: the object of frame 4 continues track 0 across the gap.
    assert link_tracks(frames, min_iou=0.5, max_gap=1) == ((0, 1), (1, 0), (0, 2), (), (0,))


def test_training_clips_drop_runs_of_frames_and_stretch_short_videos():
    rng = np.random.default_rng(0)
    for _ in range(50):
        keep = training_frame_indices(20, 8, 5, rng)
        assert len(keep) == 8 and (np.diff(keep) > 0).all() and keep.max() < 20
        assert (np.diff(keep) - 1).max() <= 20 - 8  # gaps are runs of dropped frames
    np.testing.assert_array_equal(training_frame_indices(3, 6, 5, rng), [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(inference_frame_indices(9, 5), [0, 2, 4, 6, 8])


def test_painted_targets_put_smaller_masks_on_top():
    big = np.zeros((20, 20), np.uint8)
    big[0:10, 0:10] = 1
    small = np.zeros((20, 20), np.uint8)
    small[2:4, 2:4] = 1
    f = FrameTargets(1, 0, Path("f.jpg"), 20, 20, (masks.encode(small), masks.encode(big)), (2, 5))
    instances, semantic, tracks = paint_targets([f], [(7, 9)], (0, 12, 0, 12))
    assert tracks == [9, 7]  # the big mask was painted first: instance 1
    assert instances.shape == (1, 12, 12)
    assert instances[0, 2, 2] == 2 and semantic[0, 2, 2] == 3
    assert instances[0, 5, 5] == 1 and semantic[0, 5, 5] == 6
    assert instances[0, 11, 11] == 0 and semantic[0, 11, 11] == 0


def test_clip_samples_are_reproducible_and_consistent(world):
    videos = video_targets(training_set(world), link_iou=0.5, link_gap=2)
    samples = ClipSamples(videos, config())
    a, b = samples[5], ClipSamples(videos, config())[5]
    assert torch.equal(a.video, b.video) and torch.equal(a.pixels, b.pixels)
    assert a.video.shape == (3, 4, 32, 40) and a.semantic.shape == (4, 32, 40)
    # Every sampled pixel of a present instance lies in the foreground (instance 0 is the
    # background, the others carry a class).
    flat = a.semantic.reshape(4, -1)
    for n in range(a.pixels.shape[0]):
        for t in range(4):
            if a.present[n, t]:
                classes = flat[t][a.pixels[n, t]]
                assert ((classes == 0) if n == 0 else (classes > 0)).all()


def test_a_diverged_model_is_an_error_not_silent_instances(world, tmp_path):
    cfg = config()
    model, meta = untrained(cfg)
    with torch.no_grad():
        model.tag_generator.head.bias.fill_(float("nan"))
    videos = frame_index_videos(world / "frames/valid.parquet")
    with pytest.raises(UvisError, match="tags are not finite"):
        infer_videos(model, meta, videos, InferenceConfig(), results_path=tmp_path / "r.json")
    assert not (tmp_path / "r.json").exists()


def test_sigterm_stops_after_the_step_with_a_checkpoint_and_resumes_exactly(
    world, tmp_path, sigterm_at_step
):
    from uvis import interrupt
    from uvis.tagvis import train as tagvis_train

    data = training_set(world)
    cfg = config(checkpoint_period=4)  # no checkpoint falls due at step 2
    whole = train_tagvis(data, cfg, tmp_path / "whole", progress=False)
    with sigterm_at_step(tagvis_train, 2), pytest.raises(interrupt.Terminated, match="step 2"):
        train_tagvis(data, cfg, tmp_path / "split", progress=False)
    split = tmp_path / "split"
    assert sorted(p.name for p in split.glob("checkpoint_*.pth")) == ["checkpoint_0000002.pth"]
    assert not [p for p in split.iterdir() if ".tmp" in p.name]
    resumed = train_tagvis(data, cfg, split, progress=False)
    assert resumed.start_iteration == 2 and resumed.final is not None
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_steps_are_epochs_of_clips_capped_at_max_steps():
    from uvis.tagvis.train import total_iterations

    cfg = TagVisConfig(epochs=20, batch_size=2, max_steps=600)
    assert total_iterations(cfg, 60) == 600  # 20 x 60 / 2: the cap is not reached
    assert total_iterations(cfg, 61) == 600  # 610 steps, capped
    assert total_iterations(cfg, 600) == 600
    assert total_iterations(TagVisConfig(epochs=3, batch_size=2, max_steps=0), 7) == 11  # ceil
    assert TagVisConfig.preset("paper").max_steps == 0
    with pytest.raises(ConfigError, match="max_steps"):
        TagVisConfig(max_steps=-1)


def test_inference_clip_length_is_a_setting_checked_against_the_temporal_stride(world, tmp_path):
    cfg = config()  # smoke: 4-frame training clips, temporal stride 2
    model, meta = untrained(cfg)
    videos = frame_index_videos(world / "frames/valid.parquet")
    seen: list[int] = []
    model.register_forward_hook(lambda _m, args, _out: seen.append(args[0].shape[2]))
    for setting, frames in ((0, cfg.clip_frames), (6, 6)):
        seen.clear()
        summary = infer_videos(
            model,
            meta,
            videos,
            InferenceConfig(min_area=0.0, clip_frames=setting),
            results_path=tmp_path / f"r{setting}.json",
        )
        assert seen == [frames] * len(videos)
        assert summary.speed["clip_frames"] == frames
    with pytest.raises(ConfigError, match="multiple of the model's temporal stride 2, got 5"):
        infer_videos(
            model, meta, videos, InferenceConfig(clip_frames=5), results_path=tmp_path / "r.json"
        )
    assert not (tmp_path / "r.json").exists()
    with pytest.raises(ConfigError, match="clip_frames"):
        InferenceConfig(clip_frames=-1)


def test_top_k_keeps_the_best_instance_class_pairs_of_each_video(world, tmp_path):
    model, meta = untrained(config())
    videos = frame_index_videos(world / "frames/valid.parquet")
    per_video = {}
    for top_k in (0, 2):
        path = tmp_path / f"k{top_k}.json"
        cfg = InferenceConfig(min_area=0.0, classes_per_instance=3, top_k=top_k)
        infer_videos(model, meta, videos, cfg, results_path=path)
        rows: dict[int, list[tuple[float, int]]] = {}
        for r in json.loads(path.read_text()):
            rows.setdefault(r["video_id"], []).append((r["score"], r["category_id"]))
        per_video[top_k] = {v: sorted(rs, reverse=True) for v, rs in rows.items()}
    everything, kept = per_video[0], per_video[2]
    assert any(len(pairs) > 2 for pairs in everything.values())  # the premise: more than 2
    assert kept == {v: pairs[:2] for v, pairs in everything.items()}
    with pytest.raises(ConfigError, match="top_k"):
        InferenceConfig(top_k=-1)
