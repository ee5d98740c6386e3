"""Tag-based model checkpoints: the weights with everything needed to use them.

A checkpoint is a ``torch.save``'d dict that ``torch.load(..., weights_only=True)`` reads:

* ``format`` - :data:`CHECKPOINT_FORMAT`;
* ``config`` - the :class:`~uvis.tagvis.config.TagVisConfig` fields (architecture, ablation
  switches, clip length and input size: the model is rebuilt as trained);
* ``categories`` - the vocabulary, ``[{"id", "name"}, ...]``: semantic class ``c + 1`` of the
  model is category ``categories[c]``;
* ``class_counts`` - target masks per class in the training data (the class prior, which labels
  the instances of a model without semantic branch);
* ``iteration`` - optimiser steps done; ``model`` - the state dict;
* training checkpoints add ``training``: the optimizer state and a summary of the data.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from uvis.checkpoints import model_checkpoint
from uvis.checkpoints import read_checkpoint as read_format_checkpoint
from uvis.data.frames import Category
from uvis.errors import ConfigError, DataError
from uvis.foundation.checkpoints import mismatch_parts, state_dict_mismatch
from uvis.tagvis.config import TagVisConfig
from uvis.tagvis.model import TagVisNet

#: ``format`` entry of tag-based model checkpoints.
CHECKPOINT_FORMAT = "uvis-tagvis-model"


@dataclass(frozen=True)
class TagVisMeta:
    """What a checkpoint says about its model besides the weights."""

    config: TagVisConfig
    categories: tuple[Category, ...]
    class_counts: tuple[int, ...]
    iteration: int

    @property
    def prior_class(self) -> int:
        """Index of the most frequent training class (the first of equals)."""
        return max(range(len(self.class_counts)), key=lambda c: (self.class_counts[c], -c))


def checkpoint_dict(
    model: TagVisNet,
    categories: Sequence[Category],
    class_counts: Sequence[int],
    *,
    iteration: int,
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint of ``model`` (weights moved to the CPU); ``training`` is optional."""
    if len(categories) != model.num_classes or len(class_counts) != model.num_classes:
        raise ValueError(
            f"{len(categories)} categories and {len(class_counts)} class counts for a model "
            f"of {model.num_classes} classes"
        )
    return model_checkpoint(
        CHECKPOINT_FORMAT,
        model,
        categories,
        iteration=iteration,
        training=training,
        config=model.config.to_dict(),
        class_counts=[int(c) for c in class_counts],
    )


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A tag-based model checkpoint dict, read on the CPU (:func:`uvis.checkpoints.read_checkpoint`)."""
    return read_format_checkpoint(
        path,
        fmt=CHECKPOINT_FORMAT,
        what="tag-based model",
        required=("config", "categories", "class_counts", "model"),
    )


def checkpoint_meta(obj: Mapping[str, Any], path: str | os.PathLike[str]) -> TagVisMeta:
    """The :class:`TagVisMeta` of a checkpoint dict read from ``path``."""
    try:
        config = TagVisConfig.from_dict(obj["config"])
        categories = tuple(Category(int(c["id"]), str(c["name"])) for c in obj["categories"])
        counts = tuple(int(c) for c in obj["class_counts"])
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise DataError(path, f"tag-based model checkpoint has an invalid config: {exc}") from exc
    if not categories or len(counts) != len(categories):
        raise DataError(
            path, f"{len(categories)} categories but {len(counts)} class counts in the checkpoint"
        )
    return TagVisMeta(
        config=config,
        categories=categories,
        class_counts=counts,
        iteration=int(obj.get("iteration", 0)),
    )


def model_from_checkpoint(obj: Mapping[str, Any], path: str | os.PathLike[str]) -> TagVisNet:
    """The network of a checkpoint dict, its weights loaded (on the CPU, in training mode)."""
    meta = checkpoint_meta(obj, path)
    model = TagVisNet(meta.config, len(meta.categories))
    problems = mismatch_parts(*state_dict_mismatch(obj["model"], model.state_dict()))
    if problems:
        raise DataError(path, f"weights do not fit the saved tagvis config: {', '.join(problems)}")
    model.load_state_dict(obj["model"])
    return model


def load_tagvis_model(
    checkpoint: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[TagVisNet, TagVisMeta]:
    """A trained tag-based model in eval mode on ``device``, and its :class:`TagVisMeta`.

    Reads final and intermediate training checkpoints alike.

    Raises:
        DataError: naming ``checkpoint`` when it is not a tag-based model checkpoint or its
            weights do not fit its config.
    """
    obj = read_checkpoint(checkpoint)
    meta = checkpoint_meta(obj, checkpoint)
    model = model_from_checkpoint(obj, checkpoint)
    return model.to(device).eval(), meta
