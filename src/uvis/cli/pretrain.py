"""``uvis pretrain``: train the embedded stand-ins of the foundation models.

``uvis pretrain ssl`` trains the self-supervised ViT with DINO (:mod:`uvis.standins.dino`);
``uvis pretrain clip`` the CLIP model (:mod:`uvis.standins.clip`); ``uvis pretrain
backbone`` the stand-in for the VIS backbone's ImageNet classification weights
(:mod:`uvis.standins.backbone`); ``uvis pretrain video-encoder`` the stand-in for the
tag-based model's Kinetics-400 weights (:mod:`uvis.standins.video_encoder`). torch is imported
only when a subcommand runs, so registering them keeps ``uvis --help`` fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from uvis.cli.types import add_device_option, add_set_option, positive_int
from uvis.devices import resolve_device
from uvis.errors import ConfigError
from uvis.presets import parse_overrides


def _ssl(args: argparse.Namespace) -> int:
    import torch

    from uvis.standins.dino import DinoConfig, train_dino

    cfg = DinoConfig.preset(args.preset, **parse_overrides(args.set))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    report = train_dino(
        args.corpus_dir,
        args.out,
        cfg,
        progress=not args.no_progress,
        device=resolve_device(args.device, "pretrain ssl"),
    )
    training, probe = report["training"], report["knn_probe"]
    summary = (
        f"pretrain ssl: wrote {args.out} (+ .json), {report['arch']} "
        f"{training['steps']} steps in {training['seconds']:.1f} s, "
        f"final loss {training['epochs'][-1]['loss']:.3f}"
    )
    if probe is not None:
        summary += (
            f"; k-NN accuracy {probe['accuracy_trained']:.3f} (random init "
            f"{probe['accuracy_random_init']:.3f}, chance {probe['chance_accuracy']:.3f})"
        )
    print(summary)
    return 0


def add_stand_in_arguments(
    p: argparse.ArgumentParser,
    *,
    corpus_help: str,
    out_help: str,
    settings: str,
    example: str,
    out_metavar: str = "OUT.pth",
) -> None:
    """The arguments every ``uvis pretrain`` stand-in takes: corpus, output, preset, ``--set``."""
    p.add_argument("corpus_dir", type=Path, metavar="CORPUS_DIR", help=corpus_help)
    p.add_argument("out", type=Path, metavar=out_metavar, help=out_help)
    p.add_argument("--preset", default="default", help="smoke (seconds) or default")
    add_set_option(p, f"override a {settings} field, e.g. {example}")


def _register_ssl(models: argparse._SubParsersAction) -> None:
    """Add ``uvis pretrain ssl CORPUS_DIR OUT.pth [--preset] [--set k=v] [--threads N]``."""
    p = models.add_parser(
        "ssl",
        help="train the self-supervised ViT stand-in (DINO) on the unlabeled corpus",
        description="Train a small ViT with DINO; save the teacher backbone in the official "
        "DINO checkpoint format (OUT.pth) and the config, training log and k-NN probe "
        "(OUT.json).",
    )
    add_stand_in_arguments(
        p,
        corpus_help="unlabeled corpus (WORLD/corpora/unlabeled, or WORLD/corpora)",
        out_help="checkpoint to write (+ OUT.json)",
        settings="DinoConfig",
        example="--set epochs=4 --set local_crops_number=2",
    )
    _add_device_arguments(p)
    p.set_defaults(func=_ssl)


def _add_device_arguments(p: argparse.ArgumentParser) -> None:
    """``--threads``, ``--device`` and ``--no-progress`` of the stand-ins that may use a GPU."""
    p.add_argument(
        "--threads", type=positive_int, help="torch CPU threads (default: torch's choice)"
    )
    add_device_option(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _print_classifier_report(command: str, out: Path, model: str, report: dict) -> None:
    """The one line ``uvis pretrain backbone`` / ``video-encoder`` print when done."""
    print(
        f"pretrain {command}: wrote {out} (+ .json), {model} {report['steps']} steps in "
        f"{report['train_seconds']:.1f} s, held-out accuracy {report['heldout_accuracy']:.3f} "
        f"(chance {report['chance_accuracy']:.3f})"
    )


def _backbone(args: argparse.Namespace) -> int:
    from uvis.standins.backbone import BackboneTrainConfig, train_backbone

    cfg = BackboneTrainConfig.preset(args.preset, **parse_overrides(args.set))
    report = train_backbone(
        args.corpus_dir, cfg, args.out, progress=not args.no_progress, threads=args.threads
    )
    _print_classifier_report("backbone", args.out, report["arch"], report)
    return 0


def _video_encoder(args: argparse.Namespace) -> int:
    from uvis.standins.video_encoder import EncoderPretrainConfig, train_video_encoder

    cfg = EncoderPretrainConfig.preset(args.preset, **parse_overrides(args.set))
    report = train_video_encoder(
        args.corpus_dir, cfg, args.out, progress=not args.no_progress, threads=args.threads
    )
    model = f"(2+1)D ResNet {list(cfg.encoder_widths)}"
    _print_classifier_report("video-encoder", args.out, model, report)
    return 0


def _register_classifier(
    models: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    description: str,
    settings: str,
    example: str,
    func: Callable[[argparse.Namespace], int],
) -> None:
    """Add ``uvis pretrain NAME CORPUS_DIR OUT.pth [--preset] [--set k=v] [--threads N]`` for
    a stand-in trained as a classifier of the captioned corpus."""
    p = models.add_parser(name, help=help, description=description)
    add_stand_in_arguments(
        p,
        corpus_help="captioned corpus (WORLD/corpora/captioned)",
        out_help="state dict to write (+ OUT.json)",
        settings=settings,
        example=example,
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch CPU threads (default 1: reproducible bit for bit on any machine)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=func)


def _register_classifiers(models: argparse._SubParsersAction) -> None:
    """Add ``uvis pretrain backbone`` and ``uvis pretrain video-encoder``."""
    _register_classifier(
        models,
        "backbone",
        help="train the VIS backbone as a classifier on the captioned corpus (ImageNet stand-in)",
        description="Train the VIS model's timm ResNet to classify the captioned corpus; save "
        "its state dict in the torchvision/timm ResNet format (OUT.pth, for "
        "backbone_weights) and the config, training log and held-out accuracy (OUT.json).",
        settings="BackboneTrainConfig",
        example="--set epochs=4",
        func=_backbone,
    )
    _register_classifier(
        models,
        "video-encoder",
        help="train the tag-based model's (2+1)D encoder as a classifier on the captioned "
        "corpus (Kinetics stand-in)",
        description="Train the tag-based model's (2+1)D ResNet to classify the captioned "
        "corpus, each image as a static clip; save it in torchvision's r2plus1d_18 layout "
        "(OUT.pth, for tagvis encoder_weights) and the config, training log and held-out "
        "accuracy (OUT.json).",
        settings="EncoderPretrainConfig",
        example="--set epochs=4 --set encoder_widths=[16,32,64]",
        func=_video_encoder,
    )


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``uvis pretrain {ssl, clip, backbone, video-encoder} ...``."""
    p = sub.add_parser("pretrain", help="train the foundation-model stand-ins (DINO ViT, CLIP)")
    models = p.add_subparsers(dest="model", metavar="MODEL")
    models.required = True
    _register_ssl(models)
    _register_classifiers(models)
    _register_clip(models)


def _pretrain_clip(args: argparse.Namespace) -> int:
    """Run ``uvis pretrain clip``; print a one-line summary."""
    import torch

    from uvis.standins.clip import ClipTrainConfig, train_clip_ensemble

    cfg = ClipTrainConfig.preset(args.preset, **parse_overrides(args.set))
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    outs = [args.out, *(args.member_out or [])]
    if len({p.resolve() for p in outs}) != len(outs):
        raise ConfigError(f"pretrain clip: OUT.pt and --member-out must be distinct files: {outs}")
    report = train_clip_ensemble(
        args.corpus_dir,
        outs,
        cfg,
        eval_world=args.eval_world,
        progress=not args.no_progress,
        device=resolve_device(args.device, "pretrain clip"),
    )
    quality = report["quality"]
    parts = [f"held-out corpus {quality['heldout_corpus']['accuracy']:.1%}"]
    if "video_crops" in quality:
        parts.append(
            f"video crops {quality['video_crops']['accuracy']:.1%} "
            f"({quality['video_crops_masked_mean']['accuracy']:.1%} with masked background)"
        )
    if len(outs) > 1:
        parts.append(f"ensemble of {len(outs)}")
    print(
        f"pretrain clip: {cfg.model}, {cfg.epochs} epochs in {report['train_seconds']:.0f} s, "
        f"final loss {report['log'][-1]['loss']:.3f}; zero-shot accuracy {', '.join(parts)} "
        f"(chance {quality['chance']:.0%}) -> {args.out}"
    )
    return 0


def _register_clip(subparsers: argparse._SubParsersAction) -> None:
    """Add ``uvis pretrain clip CORPUS_DIR OUT.pt [--preset] [--eval-world] [--set k=v]``."""
    p = subparsers.add_parser(
        "clip",
        help="train the CLIP stand-in (open_clip, contrastive) on the captioned corpus",
        description="Train a small open_clip model with open_clip's own contrastive loss and "
        "tokenizer on the captioned corpus; save it in open_clip's checkpoint format (OUT.pt) "
        "and the config, training log and zero-shot accuracy (OUT.json).",
    )
    add_stand_in_arguments(
        p,
        corpus_help="captioned corpus (WORLD/corpora/captioned)",
        out_help="checkpoint to write (+ OUT.json)",
        settings="ClipTrainConfig",
        example="--set epochs=5 --set crop_scale=[0.5,1]",
        out_metavar="OUT.pt",
    )
    p.add_argument(
        "--eval-world",
        type=Path,
        metavar="DIR",
        help="synthetic world whose ytvis/valid object crops the zero-shot accuracy is measured on",
    )
    p.add_argument(
        "--member-out",
        type=Path,
        action="append",
        metavar="PATH.pt",
        help="train one more ensemble member (seed + 1, + 2, ...) into PATH.pt (repeatable); "
        "OUT.json then reports the ensemble, which clip-scores loads from all the files",
    )
    _add_device_arguments(p)
    p.set_defaults(func=_pretrain_clip)
