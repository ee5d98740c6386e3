"""Training the VIS model: loss goes down, resume is exact, DDP ranks agree, NaN stops, CLI."""

from __future__ import annotations

import csv
import itertools
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from uvis import masks
from uvis.cli import main
from uvis.data import load_ytvis
from uvis.data.frames import Category
from uvis.engine.run_folder import RunFolder
from uvis.errors import ConfigError, DataError, UvisError
from uvis.model import VisModel, create_vis_model, load_vis_model
from uvis.train import FrameTargets, TrainConfig, TrainingSet, minvis_param_groups, train_vis
from uvis.train.data import FrameSamples, PositionBatches, augment
from uvis.train.loop import lr_factor

torch.set_num_threads(1)

CATEGORIES = (Category(1, "red"), Category(2, "blue"))
COLOURS = ((230, 40, 40), (40, 40, 230))


def toy_set(root: Path, frames: int = 6, *, empty: bool = False) -> TrainingSet:
    """32 x 32 grey frames with a 12 x 12 red square (class 0) and/or blue square (class 1).

    Frame ``i`` lacks class ``i % 3`` (so frames 2, 5, ... have both squares); with ``empty``
    the last frame has no square at all. Positions are random with a fixed seed.
    """
    rng = np.random.default_rng(0)
    items = []
    for i in range(frames):
        image = np.full((32, 32, 3), 60, np.uint8)
        rles, labels = [], []
        for k, colour in enumerate(COLOURS):
            if i % 3 == k or (empty and i == frames - 1):
                continue
            y, x = rng.integers(0, 20, 2)
            mask = np.zeros((32, 32), np.uint8)
            mask[y : y + 12, x : x + 12] = 1
            image[mask.astype(bool)] = colour
            rles.append(masks.encode(mask))
            labels.append(k)
        path = root / f"{i}.png"
        Image.fromarray(image).save(path)
        items.append(FrameTargets(1, i, path, 32, 32, tuple(rles), tuple(labels)))
    return TrainingSet(tuple(items), CATEGORIES, {"kind": "toy", "labels": "toy"})


def smoke(**overrides) -> TrainConfig:
    return TrainConfig.preset("smoke", **overrides)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_training_lowers_the_loss(tmp_path: Path) -> None:
    data = toy_set(tmp_path)
    cfg = smoke(iterations=30, lr=1e-3, log_period=10, checkpoint_period=30)
    result = train_vis(data, cfg, tmp_path / "run", progress=False)
    curve = [row["loss"] for row in result.metrics]
    assert len(curve) == 3
    assert curve[-1] < 0.75 * curve[0], curve
    out = tmp_path / "run"
    assert result.final == out / "model_final.pth"
    _, meta = load_vis_model(result.final, vocabulary=["red", "blue"])
    assert meta.iteration == 30 and meta.train_config["lr"] == 1e-3
    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [10, 20, 30]
    assert float(rows[0]["loss"]) == pytest.approx(curve[0])
    assert (out / "config.json").is_file()
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_run(tmp_path: Path) -> None:
    data = toy_set(tmp_path, empty=True)  # an empty frame is kept as all "no object"
    cfg = smoke(iterations=6, checkpoint_period=2, keep_checkpoints=2)
    full = train_vis(data, cfg, tmp_path / "full", progress=False)
    # Interrupted after iteration 3: the checkpoint of iteration 2 is the latest on disk.
    part = train_vis(data, cfg, tmp_path / "part", progress=False, stop_after=3)
    assert part.final is None and part.iteration == 3
    assert [it for it, _ in RunFolder(tmp_path / "part").checkpoints()] == [2]
    assert not (tmp_path / "part" / "model_final.pth").exists()
    resumed = train_vis(data, cfg, tmp_path / "part", progress=False)
    assert resumed.start_iteration == 2 and resumed.iteration == 6
    a, b = weights(full.model), weights(resumed.model)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    final_a = torch.load(full.final, weights_only=True)["model"]
    final_b = torch.load(resumed.final, weights_only=True)["model"]
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    assert [r["loss"] for r in resumed.metrics] == [r["loss"] for r in full.metrics]
    assert [it for it, _ in RunFolder(tmp_path / "part").checkpoints()] == [
        4,
        6,
    ]  # the latest 2 kept


def test_weight_average_is_the_final_model_and_resumes_exactly(tmp_path: Path) -> None:
    data = toy_set(tmp_path)
    decay = 0.6
    cfg = smoke(iterations=6, checkpoint_period=1, keep_checkpoints=0, ema_decay=decay)
    full = train_vis(data, cfg, tmp_path / "full", progress=False)
    # The average by hand from the trained weights each checkpoint holds: the first update
    # copies the weights, each later one moves the average by (1 - decay) towards them;
    # integer buffers (BatchNorm's counters) are the trained model's.
    average: dict[str, torch.Tensor] = {}
    for _, path in RunFolder(tmp_path / "full").checkpoints():
        trained = torch.load(path, weights_only=True)["model"]
        for key, value in trained.items():
            if key in average and value.is_floating_point():
                average[key] = decay * average[key] + (1 - decay) * value
            else:
                average[key] = value.clone()
    final = torch.load(full.final, weights_only=True)["model"]
    assert final.keys() == average.keys()
    for key in final:
        assert torch.allclose(final[key], average[key], atol=1e-6), key
    last = torch.load(RunFolder(tmp_path / "full").checkpoints()[-1][1], weights_only=True)
    assert any(not torch.equal(final[k], last["model"][k]) for k in final)  # not the raw weights
    # Interrupted after iteration 3 and resumed from the checkpoint of 3: the same average.
    train_vis(data, cfg, tmp_path / "part", progress=False, stop_after=3)
    resumed = train_vis(data, cfg, tmp_path / "part", progress=False)
    assert resumed.start_iteration == 3
    again = torch.load(resumed.final, weights_only=True)["model"]
    assert all(torch.equal(again[k], final[k]) for k in final)


def test_periodic_validation_is_logged_and_leaves_the_weights_alone(tmp_path: Path) -> None:
    data = toy_set(tmp_path)
    calls: list[tuple[int, bool]] = []

    def validate(model: VisModel, iteration: int) -> dict[str, float]:
        calls.append((iteration, model.training))
        return {"AP": float(iteration), "AP50": None}  # None: undefined, logged as NaN

    cfg = smoke(iterations=5, eval_period=2, checkpoint_period=2)
    plain = train_vis(
        data, smoke(iterations=5, checkpoint_period=2), tmp_path / "a", progress=False
    )
    checked = train_vis(data, cfg, tmp_path / "b", progress=False, validate=validate)
    assert calls == [(2, False), (4, False), (5, False)]  # every 2 and the end, in eval mode
    assert checked.model.training
    a, b = weights(plain.model), weights(checked.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with open(tmp_path / "b" / "validation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["iteration"], r["AP"], r["AP50"]) for r in rows] == [
        ("2", "2.0", "nan"),
        ("4", "4.0", "nan"),
        ("5", "5.0", "nan"),
    ]
    # Interrupted after iteration 3 and resumed from the checkpoint of 2: the row of 2 is
    # kept, 4 and 5 are added.
    calls.clear()
    train_vis(data, cfg, tmp_path / "p", progress=False, validate=validate, stop_after=3)
    train_vis(data, cfg, tmp_path / "p", progress=False, validate=validate)
    assert calls == [(2, False), (4, False), (5, False)]
    with open(tmp_path / "p" / "validation.csv", newline="") as f:
        assert [r["iteration"] for r in csv.DictReader(f)] == ["2", "4", "5"]
    # eval_period 0: no validation even when a callback is given.
    calls.clear()
    train_vis(data, smoke(iterations=2), tmp_path / "c", progress=False, validate=validate)
    assert calls == [] and not (tmp_path / "c" / "validation.csv").exists()


def test_resuming_with_other_settings_is_an_error(tmp_path: Path) -> None:
    data = toy_set(tmp_path)
    train_vis(data, smoke(iterations=2, checkpoint_period=1), tmp_path / "run", progress=False)
    with pytest.raises(DataError, match=r"checkpoint_0000002\.pth: cannot resume: .*\['lr'\]"):
        train_vis(data, smoke(iterations=2, lr=1e-3), tmp_path / "run", progress=False)


def test_other_targets_are_stale_and_restart_trains_afresh(tmp_path: Path) -> None:
    """Same settings, other targets (the Snakemake case: a threshold changed the labels)."""
    data = toy_set(tmp_path)
    cfg = smoke(iterations=4, checkpoint_period=2)
    train_vis(data, cfg, tmp_path / "run", progress=False, stop_after=3)
    first = data.frames[0]
    relabelled = TrainingSet(
        (
            FrameTargets(1, 0, first.path, 32, 32, first.rles, tuple(1 - c for c in first.labels)),
            *data.frames[1:],
        ),
        CATEGORIES,
        data.source,
    )
    assert relabelled.summary()["masks"] == data.summary()["masks"]  # counts alone agree
    with pytest.raises(DataError, match="trained on other data or classes"):
        train_vis(relabelled, cfg, tmp_path / "run", progress=False)
    restarted = train_vis(relabelled, cfg, tmp_path / "run", progress=False, stale="restart")
    assert restarted.start_iteration == 0 and restarted.iteration == 4
    assert [p.name for p in sorted((tmp_path / "run" / "superseded").glob("*.pth"))] == [
        "checkpoint_0000002.pth"
    ]
    fresh = train_vis(relabelled, cfg, tmp_path / "fresh", progress=False)
    a, b = weights(fresh.model), weights(restarted.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="stale must be one of"):
        train_vis(data, cfg, tmp_path / "x", progress=False, stale="ignore")


def test_nan_loss_stops_with_the_iteration_and_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    losses = VisModel.losses

    def poisoned(self, *args, **kwargs):
        calls["n"] += 1
        out = losses(self, *args, **kwargs)
        if calls["n"] >= 3:
            out["loss_dice"] = out["loss_dice"] * float("nan")
        return out

    monkeypatch.setattr(VisModel, "losses", poisoned)
    cfg = smoke(iterations=6, checkpoint_period=2)
    with pytest.raises(
        UvisError,
        match=r"loss is nan at iteration 3; last good checkpoint: .*checkpoint_0000002\.pth",
    ):
        train_vis(toy_set(tmp_path), cfg, tmp_path / "run", progress=False)


def test_frames_without_targets_can_be_dropped(tmp_path: Path) -> None:
    data = toy_set(tmp_path, frames=1, empty=True)
    with pytest.raises(DataError, match="none of the 1 frames has a target"):
        train_vis(data, smoke(empty_frames="drop"), tmp_path / "run", progress=False)


def test_minvis_param_groups() -> None:
    model = create_vis_model("uvis-smoke", 2)
    cfg = smoke(lr=1e-4, backbone_lr_factor=0.1, weight_decay=0.05)
    groups = {(g["lr"], g["weight_decay"]): g["params"] for g in minvis_param_groups(model, cfg)}
    ids = {key: {id(p) for p in params} for key, params in groups.items()}
    backbone = {id(p) for p in model.backbone.parameters()}
    queries = model.mask2former.model.transformer_module.queries_features.weight
    decoder_norm = model.mask2former.model.transformer_module.decoder.layernorm.weight
    class_head = model.mask2former.class_predictor.weight
    assert id(queries) in ids[1e-4, 0.0] and id(decoder_norm) in ids[1e-4, 0.0]
    assert id(class_head) in ids[1e-4, 0.05]
    assert backbone == ids.get((1e-5, 0.05), set()) | ids.get((1e-5, 0.0), set())
    assert sum(len(p) for p in groups.values()) == len(list(model.parameters()))


def test_lr_schedule_and_batch_positions() -> None:
    cfg = smoke(iterations=6)  # x 0.1 from step 4 = 2/3 * 6
    assert [lr_factor(s, cfg) for s in range(6)] == [1, 1, 1, 1, 0.1, 0.1]
    warm = smoke(iterations=6, warmup_iterations=4, lr_drop_fraction=0.5)  # drop at step 3
    assert [lr_factor(s, warm) for s in range(6)] == pytest.approx([0.25, 0.5, 0.75, 0.1, 0.1, 0.1])
    with pytest.raises(ConfigError, match="warmup_iterations"):
        smoke(iterations=6, warmup_iterations=7)
    ranks = [
        list(PositionBatches(start=1, iterations=3, batch_size=4, world_size=2, rank=r))
        for r in (0, 1)
    ]
    assert ranks == [[[4, 5], [8, 9]], [[6, 7], [10, 11]]]  # disjoint, resumable at any step
    with pytest.raises(ValueError, match="not a multiple of 3"):
        PositionBatches(start=0, iterations=1, batch_size=4, world_size=3, rank=0)


def test_augment_resizes_and_flips_by_hand() -> None:
    image = np.zeros((4, 6, 3), np.uint8)
    image[:, :3] = 200
    mask = np.zeros((1, 4, 6), np.uint8)
    mask[0, 0:2, 0:2] = 1
    out_image, out_masks = augment(image, mask, short_side=8, max_size=100, flip=True)
    assert out_image.shape == (8, 12, 3) and out_masks.shape == (1, 8, 12)
    expected = np.zeros((8, 12), np.uint8)
    expected[0:4, 8:12] = 1  # doubled, then mirrored left-right
    np.testing.assert_array_equal(out_masks[0], expected)
    assert (out_image[:, :5] == 0).all() and (out_image[:, 7:] == 200).all()
    empty_image, empty_masks = augment(image, mask[:0], short_side=2, max_size=100, flip=False)
    assert empty_image.shape == (2, 3, 3) and empty_masks.shape == (0, 2, 3)


def test_augment_reorders_colour_channels_only() -> None:
    image = np.zeros((2, 2, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30
    mask = np.eye(2, dtype=np.uint8)[None]
    out_image, out_masks = augment(
        image, mask, short_side=2, max_size=100, flip=False, channels=(2, 0, 1)
    )
    assert out_image[0, 0].tolist() == [30, 10, 20]
    np.testing.assert_array_equal(out_masks, mask)


def test_channel_shuffle_draws_a_permutation_per_position(tmp_path: Path) -> None:
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 50, 100, 150
    Image.fromarray(pixels).save(tmp_path / "f.png")
    frame = FrameTargets(
        video_id=1, frame_index=0, path=tmp_path / "f.png", height=8, width=8, rles=(), labels=()
    )

    def colours(shuffle: bool) -> list[tuple[int, ...]]:
        samples = FrameSamples(
            [frame], seed=3, short_sides=[8], max_size=100, flip=False, channel_shuffle=shuffle
        )
        return [tuple(samples[p].image[:, 0, 0].tolist()) for p in range(24)]

    shuffled = colours(True)
    assert set(colours(False)) == {(50, 100, 150)}
    assert sorted(set(shuffled)) == sorted(set(itertools.permutations((50, 100, 150))))
    assert colours(True) == shuffled  # a function of the seed and the position


def test_config_presets_and_errors() -> None:
    assert TrainConfig.preset("paper").model == "minvis_r50"
    assert TrainConfig.preset("paper").backbone_weights == "resnet50_imagenet"
    with pytest.raises(ConfigError, match="unknown train preset"):
        TrainConfig.preset("huge")
    with pytest.raises(ConfigError, match="unknown train setting 'iters'"):
        TrainConfig.preset("default", iters=3)
    with pytest.raises(ConfigError, match="empty_frames"):
        TrainConfig.preset("default", empty_frames="maybe")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, data: TrainingSet, root: str, port: int) -> None:
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "WORLD_SIZE": "2",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
        }
    )
    cfg = smoke(device="cpu", batch_size=4)  # 2 frames per process
    result = train_vis(data, cfg, Path(root) / "run", progress=False)
    params = {k: v.detach() for k, v in result.model.named_parameters()}
    torch.save(params, Path(root) / f"rank{rank}.pt")


def test_ddp_two_cpu_processes_end_with_identical_weights(tmp_path: Path) -> None:
    data = toy_set(tmp_path)
    mp.spawn(_ddp_worker, args=(data, str(tmp_path), _free_port()), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    final = torch.load(tmp_path / "run" / "model_final.pth", weights_only=True)["model"]
    assert all(torch.equal(final[k], rank0[k]) for k in rank0)
    assert not torch.equal(final["mask2former.class_predictor.weight"], _initial_head())


def _initial_head() -> torch.Tensor:
    torch.manual_seed(0)
    return create_vis_model("uvis-smoke", 2).mask2former.class_predictor.weight.detach()


def test_cli_trains_on_ground_truth(tiny_ytvis, tmp_path: Path, capsys) -> None:
    dataset = load_ytvis(tiny_ytvis.json_path, tiny_ytvis.image_root)
    import pyarrow.parquet as pq

    pq.write_table(dataset.frame_index(), tmp_path / "frames.parquet")
    args = ["train", "vis", "--frames", str(tmp_path / "frames.parquet")]
    args += ["--gt-json", str(tiny_ytvis.json_path), "--images", str(tiny_ytvis.image_root)]
    args += ["--preset", "smoke", "--set", "iterations=2", "--out", str(tmp_path / "run")]
    assert main([*args, "--no-progress"]) == 0
    assert "2 iterations from 0 on 5 frames (4 masks)" in capsys.readouterr().out
    _, meta = load_vis_model(tmp_path / "run" / "model_final.pth", vocabulary=["person", "dog"])
    assert meta.category_ids == (1, 2)
    bad = ["train", "vis", "--frames", str(tmp_path / "frames.parquet"), "--out", "x"]
    assert main([*bad, "--labels", str(tmp_path / "frames.parquet"), "--vocabulary", "a,b"]) == 2
    assert "not a pseudo-labels artefact" in capsys.readouterr().err
    assert main([*args, "--tau", "0.5"]) == 2
    assert "--tau only apply to --labels" in capsys.readouterr().err

    # Periodic validation on the (here: same) videos with ground truth.
    val = [
        "--val-frames",
        str(tmp_path / "frames.parquet"),
        "--val-gt-json",
        str(tiny_ytvis.json_path),
    ]
    run = [a if a != str(tmp_path / "run") else str(tmp_path / "val") for a in args]
    assert main([*run, *val, "--val-videos", "1", "--set", "eval_period=1", "--no-progress"]) == 0
    with open(tmp_path / "val" / "validation.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["iteration"] for r in rows] == ["1", "2"]
    assert all(0.0 <= float(r["AP"]) <= 100.0 for r in rows)
    capsys.readouterr()
    assert main([*run, *val]) == 2  # no eval_period
    assert "eval_period" in capsys.readouterr().err
    assert main([*run, "--val-frames", str(tmp_path / "frames.parquet")]) == 2
    assert "both --val-frames and --val-gt-json" in capsys.readouterr().err


def test_processes_start_the_command_again_under_torchrun(monkeypatch, capsys) -> None:
    from uvis.cli import train as cli_train

    argv = ["train", "vis", "--frames", "f.parquet", "--processes", "4", "--out", "run"]
    argv += ["--gt-json", "gt.json"]
    want = ["torchrun", "--standalone", "--nproc_per_node=4", "-m", "uvis", "train", "vis"]
    want += ["--frames", "f.parquet", "--out", "run", "--gt-json", "gt.json"]
    assert cli_train.torchrun_command(argv, 4) == want
    assert cli_train.torchrun_command([*argv[:4], "--processes=4", *argv[6:]], 4) == want

    started: list[list[str]] = []

    def execvp(file: str, args: list[str]) -> None:
        started.append(args)
        raise SystemExit(0)  # execvp does not return

    monkeypatch.setattr(cli_train.os, "execvp", execvp)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(SystemExit):
        main(argv)
    assert started == [want]
    assert "starting 4 processes: torchrun --standalone" in capsys.readouterr().out
    # each torchrun process (WORLD_SIZE set) trains instead of starting again
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert main(argv) == 2  # here: the missing frame index, reported as any error is
    assert started == [want]
    assert "f.parquet" in capsys.readouterr().err
