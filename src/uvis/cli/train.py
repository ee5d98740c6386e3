"""``uvis train``: train the per-frame VIS model (UVIS §3.2) or the tag-based model.

``uvis train vis`` trains a :mod:`uvis.model` configuration on pseudo-labels (a filter level of
UVIS Table 2) or on ground truth (the supervised upper bound). It runs unchanged under
``torchrun --nproc_per_node N -m uvis train vis ...`` (DDP; only rank 0 writes and prints).
``uvis train tagvis`` trains the tag-based bottom-up model (:mod:`uvis.tagvis`) on the same
targets. torch is imported only when a command runs, so registering them keeps ``uvis --help``
fast.
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uvis.cli.pseudo import vocabulary_from_args
from uvis.cli.types import (
    add_device_option,
    add_set_option,
    finite_float,
    nonnegative_int,
    positive_int,
)
from uvis.errors import ConfigError
from uvis.presets import parse_overrides


def _training_set(args: argparse.Namespace):
    from uvis.errors import ConfigError
    from uvis.schemas import FRAME_INDEX

    frame_index = FRAME_INDEX.read(args.frames)
    if args.labels is not None:
        from uvis.schemas import PSEUDO_LABELS
        from uvis.train import targets_from_pseudo_labels

        if args.categories_json is None and args.vocabulary is None:
            raise ConfigError("--labels needs the vocabulary: --categories-json or --vocabulary")
        return targets_from_pseudo_labels(
            frame_index,
            PSEUDO_LABELS.read(args.labels),
            vocabulary_from_args(args),
            level=args.level or "pmf",
            tau=args.tau,
            frames_path=str(args.frames),
            labels_path=str(args.labels),
        )
    if args.images is None:
        raise ConfigError("--gt-json needs --images (the split's JPEG folder)")
    label_options = ("level", "tau", "categories_json", "vocabulary")
    misplaced = [f"--{k.replace('_', '-')}" for k in label_options if getattr(args, k) is not None]
    if misplaced:
        raise ConfigError(f"{', '.join(misplaced)} only apply to --labels, not to --gt-json")
    from uvis.data import load_ytvis
    from uvis.train import targets_from_ground_truth

    return targets_from_ground_truth(
        frame_index,
        load_ytvis(args.gt_json, args.images, check_files=False),
        frames_path=str(args.frames),
        annotations_path=str(args.gt_json),
    )


def _overrides(args: argparse.Namespace, **options: object) -> dict[str, object]:
    """The ``--set key=value`` overrides, then the dedicated options that were given."""
    overrides = parse_overrides(args.set)
    overrides.update({key: value for key, value in options.items() if value is not None})
    return overrides


def _held_out(args: argparse.Namespace, cfg, data):
    """The periodic validation of ``--val-frames``/``--val-gt-json`` (None without them)."""
    given = [args.val_frames is not None, args.val_gt_json is not None]
    if not any(given):
        return None
    if not all(given):
        raise ConfigError("periodic validation needs both --val-frames and --val-gt-json")
    if not cfg.eval_period:
        raise ConfigError("periodic validation needs --set eval_period=N (N > 0)")
    from uvis.inference.validation import HeldOutVideos

    category_ids = [c.id for c in data.categories]
    return HeldOutVideos.from_files(
        args.val_frames, args.val_gt_json, args.val_videos, category_ids
    )


def _vis(args: argparse.Namespace) -> int:
    if args.processes > 1 and "WORLD_SIZE" not in os.environ:
        command = torchrun_command(args.argv, args.processes)
        print(f"train vis: starting {args.processes} processes: {shlex.join(command)}", flush=True)
        os.execvp(command[0], command)  # replaces this process; an OSError if torchrun is absent
    from uvis.train import TrainConfig, train_vis

    overrides = _overrides(
        args,
        model=args.model,
        backbone_weights=args.backbone_weights,
        num_threads=args.threads,
        device=args.device,
    )
    cfg = TrainConfig.preset(args.preset, **overrides)
    data = _training_set(args)
    result = train_vis(
        data,
        cfg,
        args.out,
        progress=not args.no_progress,
        stop_after=args.stop_after,
        stale="restart" if args.restart_stale else "error",
        validate=_held_out(args, cfg, data),
    )
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 reports
        return 0
    _print_result("train vis", "iteration", result, data, f"{cfg.model}, ")
    return 0


def torchrun_command(argv: Sequence[str], processes: int) -> list[str]:
    """``uvis ARGV`` as ``torchrun --standalone --nproc_per_node=N -m uvis ARGV``, with the
    ``--processes`` option left out (each process is one of the N)."""
    rest: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            rest.append(arg)
    return ["torchrun", "--standalone", f"--nproc_per_node={processes}", "-m", "uvis", *rest]


def _tagvis(args: argparse.Namespace) -> int:
    from uvis.tagvis.config import TagVisConfig
    from uvis.tagvis.train import train_tagvis

    overrides = _overrides(
        args, encoder_weights=args.encoder_weights, num_threads=args.threads, device=args.device
    )
    cfg = TagVisConfig.preset(args.preset, **overrides)
    data = _training_set(args)
    result = train_tagvis(
        data,
        cfg,
        args.out,
        progress=not args.no_progress,
        stop_after=args.stop_after,
        stale="restart" if args.restart_stale else "error",
    )
    _print_result("train tagvis", "step", result, data)
    return 0


def _print_result(command: str, noun: str, result: Any, data: Any, detail: str = "") -> None:
    """The one-line summary of a training (``TrainResult`` or ``TagVisTrainResult``)."""
    if result.final is None:
        print(f"{command}: stopped after {noun} {result.iteration} (no final model)")
        return
    done = result.iteration - result.start_iteration
    summary, curve = data.summary(), result.metrics
    losses = f", loss {curve[0]['loss']:.3f} -> {curve[-1]['loss']:.3f}" if curve else ""
    print(
        f"{command}: {detail}{done} {noun}s from {result.start_iteration} on "
        f"{summary['frames']} frames ({summary['masks']} masks) in {result.seconds:.1f} s"
        f"{losses}; wrote {result.final}"
    )


def _add_target_options(p: argparse.ArgumentParser) -> None:
    """What a model trains on: pseudo-labels at a filter level, or ground truth."""
    p.add_argument("--frames", type=Path, required=True, help="frame index Parquet of the split")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--labels", type=Path, help="pseudo-label Parquet (UVIS §3.1)")
    source.add_argument("--gt-json", type=Path, help="YouTube-VIS JSON: train on ground truth")
    p.add_argument("--images", type=Path, help="JPEG folder of --gt-json's split")
    p.add_argument(
        "--level",
        choices=["none", "objectness", "clip", "pmf"],
        help="pseudo-label filter level (UVIS Table 2; default pmf)",
    )
    p.add_argument(
        "--tau", type=finite_float, help="PMF threshold (level pmf; default: the file's)"
    )
    voc = p.add_mutually_exclusive_group()
    voc.add_argument("--categories-json", type=Path, help="vocabulary of a YouTube-VIS JSON")
    voc.add_argument("--vocabulary", help="file with one name per line, or a comma-separated list")


def _add_run_options(p: argparse.ArgumentParser, settings: str) -> None:
    """Preset, overrides, output folder and how the run is carried out."""
    p.add_argument("--preset", default="default", help="default, smoke or paper")
    add_set_option(p, f"override a {settings} field (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads per process (default 1)")
    add_device_option(p, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--restart-stale",
        action="store_true",
        help="when OUT's latest checkpoint is of another run (other settings or targets), move "
        "it to OUT/superseded/ and train afresh instead of stopping with an error",
    )
    p.add_argument(
        "--stop-after",
        type=positive_int,
        metavar="N",
        help="debugging: stop after N steps as an interrupted run would (no final model)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``uvis train vis ...`` and ``uvis train tagvis ...``."""
    p = sub.add_parser("train", help="train a VIS model (MinVIS-style Mask2Former, tag-based)")
    models = p.add_subparsers(dest="model_kind", metavar="MODEL")
    models.required = True
    v = models.add_parser(
        "vis",
        help="train on pseudo-labels (a filter level) or ground truth",
        description="Train a Mask2Former as MinVIS does (image-level, Hungarian matching, "
        "class/BCE/dice losses). Writes OUT/model_final.pth, OUT/config.json, OUT/metrics.csv, "
        "TensorBoard events and intermediate checkpoints; resumes from the latest checkpoint "
        "in OUT. Works under torchrun (DDP).",
    )
    _add_target_options(v)
    v.add_argument("--model", help="uvis-tiny (default preset), uvis-smoke or minvis_r50")
    v.add_argument("--backbone-weights", help="ImageNet ResNet weights: local file or known name")
    val = v.add_argument_group(
        "periodic validation",
        "AP and AP50 of the model on the first --val-videos videos of a held-out split every "
        "eval_period iterations (--set eval_period=N), logged to OUT/validation.csv and drawn "
        "in the loss figure; monitoring only, the weights do not depend on it",
    )
    val.add_argument("--val-frames", type=Path, help="frame index of the held-out split")
    val.add_argument("--val-gt-json", type=Path, help="its YouTube-VIS ground truth")
    val.add_argument(
        "--val-videos", type=positive_int, default=4, help="videos to evaluate (default 4)"
    )
    v.add_argument(
        "--processes",
        type=nonnegative_int,
        default=1,
        metavar="N",
        help="DDP processes on this node, one per GPU: with N > 1 the command starts again "
        "under 'torchrun --standalone --nproc_per_node N' (0 and 1: this process alone)",
    )
    _add_run_options(v, "TrainConfig")
    v.set_defaults(func=_vis)
    t = models.add_parser(
        "tagvis",
        help="train the tag-based bottom-up model on pseudo-labels or ground truth",
        description="Train the tag-based model (Kini & Shah): clips of T frames, the "
        "spatio-temporal tagging loss plus cross-entropy, Adam. Writes OUT/model_final.pth, "
        "OUT/config.json, OUT/metrics.csv and intermediate checkpoints; resumes from the latest "
        "checkpoint in OUT. Ablations (paper Table III) are --set switches, e.g. --set "
        "tag_attention=false.",
    )
    _add_target_options(t)
    t.add_argument(
        "--encoder-weights",
        help="video-pretrained encoder weights in torchvision's r2plus1d_18 layout: a local "
        "file (e.g. of uvis pretrain video-encoder) or a known name (r2plus1d_18_kinetics)",
    )
    _add_run_options(t, "TagVisConfig")
    t.set_defaults(func=_tagvis)
