"""Why the DINO stand-in does or does not learn shape: learning curves on the unlabeled corpus.

Usage (one thread; WORLD is any ``uvis synth`` output folder)::

    python benchmarks/bench_dino_curve.py dino WORLD [--set KEY=VALUE ...]
        [--conv-stem | --hybrid [EXTRA]] [--cnn] [--probe-every 5]
    python benchmarks/bench_dino_curve.py supervised WORLD [--set KEY=VALUE ...]
        [--conv-stem | --hybrid [EXTRA]] [--cnn] [--epochs 40] [--lr 1e-3] [--clean]
    python benchmarks/bench_dino_curve.py contrastive WORLD [--set KEY=VALUE ...]
        [--conv-stem | --hybrid [EXTRA]] [--cnn] [--epochs 64] [--lr 1e-3] [--temperature 0.2]

``dino`` trains with :func:`uvis.standins.dino.fit_dino` (the default preset with ``--set``
overrides) and prints, per epoch, the loss and the teacher's collapse diagnostics (mean
per-image entropy, entropy of the batch mean; ``ln K`` is the uniform collapse), and every
``--probe-every`` epochs the weighted k-NN accuracy of the teacher's and the student's CLS
features on held-out images, for the shape category (what ``pretrain_ssl`` reports) and for
the object colour (a nuisance the features should become invariant to).

``supervised`` is the sanity check with labels: the same backbone and global crops, trained with
cross-entropy on the shape category, and the same k-NN probe. It tells whether the architecture
can learn shape in a given number of steps at all. ``--clean`` trains on the probe's own
inputs (the whole image resized, no augmentation), and ``--cnn`` swaps the ViT for a small
convolutional network (four 3x3 conv-BatchNorm-ReLU-maxpool blocks, 32-128 channels, global
average pooling) as the reference for how fast the shapes can be learned at all.

``contrastive`` is the control for the views: the same backbone trained on DINO's two global
views (the ``--set`` augmentation) with SimCLR's InfoNCE loss instead of self-distillation, and
the same probe. If it learns shape where DINO does not, the views share shape and DINO's targets
are what fails.

``--conv-stem`` replaces the ViT's linear patch embedding by three stride-2 3x3 convolutions
(Xiao et al., "Early convolutions help transformers see better", 2021), same token grid.
``--hybrid [EXTRA]`` replaces it by the small CNN's first three blocks instead (3x3
conv-BatchNorm-ReLU, each followed by a 2x2 max-pool: the same stride-8 token grid) and
``EXTRA`` (default 0) more such blocks without pooling: a hybrid ViT whose transformer blocks
(``--set arch_kwargs=...`` sets how many) still give MaskCut its last-block keys. The stem is
:func:`uvis.foundation.hybrid_vit.cnn_stem`, built after the plain ViT and its head (so the
initialisation differs from ``--set arch=uvis_hybrid_vit``, which builds the same model).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from uvis.foundation.hybrid_vit import cnn_stem, conv_blocks
from uvis.foundation.ssl import cls_features
from uvis.presets import parse_overrides
from uvis.standins.dino import (
    DinoConfig,
    DinoHead,
    DinoNetwork,
    fit_dino,
    initial_network,
    knn_accuracy,
    load_unlabeled_corpus,
    multi_crop,
    probe_inputs,
    probe_split,
)


def conv_stem(embed_dim: int, patch_size: int) -> nn.Sequential:
    """``log2(patch_size)`` stride-2 3x3 convolutions (GroupNorm + GELU between them) ending at
    ``embed_dim`` channels: the same token grid as a ``patch_size`` linear patch embedding."""
    steps = max(1, patch_size.bit_length() - 1)
    widths = [3] + [max(8, embed_dim >> (steps - 1 - i)) for i in range(steps)]
    layers: list[nn.Module] = []
    for i in range(steps):
        layers.append(nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1))
        if i < steps - 1:
            layers += [nn.GroupNorm(1, widths[i + 1]), nn.GELU()]
    return nn.Sequential(*layers)


def small_cnn(width: int = 128) -> nn.Sequential:
    """Four conv-BatchNorm-ReLU-maxpool blocks and global average pooling (``width`` features)."""
    network = nn.Sequential(
        *conv_blocks([3, 32, 64, width, width]), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    network.num_features = width
    return network


def build_student(
    cfg: DinoConfig, with_conv_stem: bool, cnn: bool = False, hybrid: int | None = None
) -> DinoNetwork:
    if cnn:
        torch.manual_seed(cfg.seed)
        backbone = small_cnn()
        head = DinoHead(
            backbone.num_features, cfg.out_dim, cfg.head_hidden_dim, cfg.head_bottleneck_dim
        )
        return DinoNetwork(backbone, head)
    network = initial_network(cfg)
    if with_conv_stem or hybrid is not None:
        backbone = network.backbone
        torch.manual_seed(cfg.seed)
        patch = backbone.patch_embed.patch_size[0]
        backbone.patch_embed.proj = (
            conv_stem(backbone.embed_dim, patch)
            if hybrid is None
            else cnn_stem(backbone.embed_dim, patch, hybrid)
        )
    return network


class Probe:
    """k-NN accuracy of a backbone's CLS feature for the shape category and the colour."""

    def __init__(self, world: Path, cfg: DinoConfig) -> None:
        corpus = load_unlabeled_corpus(world / "corpora" / "unlabeled")
        self.cfg, self.images, self.labels = cfg, corpus.images, corpus.labels
        self.inputs = probe_inputs(corpus.images, cfg.global_crop_size)
        entries = json.loads(corpus.index_path.read_text(encoding="utf-8"))["images"]
        names = sorted({e["colour"] for e in entries})
        self.colours = torch.tensor([names.index(e["colour"]) for e in entries])

    def __call__(self, backbone: nn.Module) -> str:
        feats = cls_features(backbone, self.inputs)
        shape = knn_accuracy(feats, self.labels, self.cfg)
        colour = knn_accuracy(feats, self.colours, self.cfg)
        return f"k-NN shape {shape:.3f}, colour {colour:.3f}"


def run_dino(args: argparse.Namespace) -> None:
    cfg = DinoConfig.preset("default", **parse_overrides(args.set))
    probe = Probe(Path(args.world), cfg)
    student = build_student(cfg, args.conv_stem, args.cnn, args.hybrid)
    print(f"initialisation: {probe(student.backbone)}", flush=True)
    start = time.process_time()

    def on_epoch(record: dict[str, Any], teacher: DinoNetwork) -> None:
        line = (
            f"epoch {record['epoch']}: loss {record['loss']:.3f}, teacher entropy "
            f"{record['teacher_entropy']:.2f}, batch mean {record['teacher_batch_entropy']:.2f} "
            f"(uniform {torch.log(torch.tensor(float(cfg.out_dim))):.2f}), "
            f"{time.process_time() - start:.0f} CPU-s"
        )
        if record["epoch"] % args.probe_every == 0 or record["epoch"] == cfg.epochs:
            line += f"; teacher {probe(teacher.backbone)}; student {probe(student.backbone)}"
        print(line, flush=True)

    fit_dino(probe.images, cfg, progress=False, device="cpu", student=student, on_epoch=on_epoch)


def run_supervised(args: argparse.Namespace) -> None:
    cfg = DinoConfig.preset("default", **parse_overrides(args.set))
    probe = Probe(Path(args.world), cfg)
    torch.manual_seed(cfg.seed)
    backbone = (
        small_cnn() if args.cnn else build_student(cfg, args.conv_stem, hybrid=args.hybrid).backbone
    )
    first = int(probe.labels.min())
    head = nn.Linear(backbone.num_features, int(probe.labels.max()) - first + 1)
    params = list(backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
    train, _ = probe_split(len(probe.labels), cfg.probe_test_fraction, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    start, batch = time.process_time(), cfg.batch_size
    for epoch in range(1, args.epochs + 1):
        order, losses, hits = train[torch.randperm(len(train), generator=gen)], [], 0
        backbone.train()
        for i in range(0, len(order) - batch + 1, batch):
            idx = order[i : i + batch]
            if args.clean:
                view = probe.inputs[idx]
            else:
                view = multi_crop(probe.images[idx], cfg, gen)[0][:batch]  # the first global crop
            logits = head(backbone(view))
            loss = F.cross_entropy(logits, probe.labels[idx] - first)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            hits += int((logits.argmax(1) == probe.labels[idx] - first).sum())
        if epoch % args.probe_every == 0 or epoch == args.epochs:
            backbone.eval()
            seen = len(losses) * batch
            print(
                f"epoch {epoch}: cross-entropy {sum(losses) / len(losses):.3f}, train accuracy "
                f"{hits / seen:.3f}, {time.process_time() - start:.0f} CPU-s; {probe(backbone)}",
                flush=True,
            )


def info_nce(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent loss of ``2B`` embeddings stacked view-major (row ``i`` and row
    ``i + B`` are the two views of one image; every other row of the batch is a negative)."""
    z = F.normalize(z, dim=1)
    half = len(z) // 2
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(half, 2 * half), torch.arange(half)])
    return F.cross_entropy(logits, targets)


def run_contrastive(args: argparse.Namespace) -> None:
    """The control: the same backbone and DINO's two global views, trained with InfoNCE
    instead of DINO's self-distillation. Tells whether the views share shape at all."""
    cfg = DinoConfig.preset("default", **parse_overrides(args.set))
    probe = Probe(Path(args.world), cfg)
    backbone = build_student(cfg, args.conv_stem, args.cnn, args.hybrid).backbone
    width = backbone.num_features
    projector = nn.Sequential(nn.Linear(width, 512), nn.ReLU(), nn.Linear(512, 128))
    params = list(backbone.parameters()) + list(projector.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.05)
    gen = torch.Generator().manual_seed(cfg.seed)
    print(f"initialisation: {probe(backbone)}", flush=True)
    start, batch = time.process_time(), cfg.batch_size
    for epoch in range(1, args.epochs + 1):
        order, losses = torch.randperm(len(probe.images), generator=gen), []
        for i in range(0, len(order) - batch + 1, batch):
            views = multi_crop(probe.images[order[i : i + batch]], cfg, gen)[0]
            loss = info_nce(projector(backbone(views)), args.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        line = (
            f"epoch {epoch}: InfoNCE {sum(losses) / len(losses):.3f}, "
            f"{time.process_time() - start:.0f} CPU-s"
        )
        if epoch % args.probe_every == 0 or epoch == args.epochs:
            line += f"; {probe(backbone)}"
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("dino", "supervised", "contrastive"):
        p = sub.add_parser(name)
        p.add_argument("world")
        p.add_argument("--set", action="append", default=[])
        stem = p.add_mutually_exclusive_group()
        stem.add_argument("--conv-stem", action="store_true")
        stem.add_argument("--hybrid", type=int, nargs="?", const=0, default=None, metavar="EXTRA")
        p.add_argument("--cnn", action="store_true")
        p.add_argument("--probe-every", type=int, default=5)
        if name != "dino":
            p.add_argument("--epochs", type=int, default=40)
            p.add_argument("--lr", type=float, default=1e-3)
        if name == "supervised":
            p.add_argument("--clean", action="store_true")
        if name == "contrastive":
            p.add_argument("--temperature", type=float, default=0.2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = {"dino": run_dino, "supervised": run_supervised, "contrastive": run_contrastive}
    runs[args.what](args)


if __name__ == "__main__":
    main()
