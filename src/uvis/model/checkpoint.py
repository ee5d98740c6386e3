"""VIS model checkpoints: the weights with everything needed to use them.

A checkpoint is a ``torch.save``'d dict that ``torch.load(..., weights_only=True)`` reads:

* ``format`` - :data:`CHECKPOINT_FORMAT`;
* ``model_config`` - the :class:`~uvis.model.mask2former.VisModelConfig` fields (so a model built
  with overrides is rebuilt as trained);
* ``categories`` - the vocabulary, ``[{"id", "name"}, ...]``: class index ``i`` of the model is
  category ``categories[i]`` of the dataset;
* ``iteration`` and ``train_config`` - how far training got, and its settings;
* ``model`` - the state dict;
* training checkpoints add ``training``: the optimizer, scheduler and gradient-scaler states
  (see :mod:`uvis.train.loop`).
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
from uvis.model.mask2former import VisModel, VisModelConfig

#: ``format`` entry of VIS model checkpoints.
CHECKPOINT_FORMAT = "uvis-vis-model"


@dataclass(frozen=True)
class VisModelMeta:
    """What a checkpoint says about its model besides the weights.

    ``categories[i]`` is the dataset category of class index ``i`` (the model's class logits
    have one more column, "no object").
    """

    config: VisModelConfig
    categories: tuple[Category, ...]
    iteration: int
    train_config: dict[str, Any]

    @property
    def category_ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.categories)

    @property
    def category_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)


def checkpoint_dict(
    model: VisModel,
    categories: Sequence[Category],
    *,
    iteration: int,
    train_config: Mapping[str, Any],
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint of ``model`` (weights moved to the CPU); ``training`` is optional."""
    if len(categories) != model.num_classes:
        raise ValueError(f"{len(categories)} categories for a model of {model.num_classes} classes")
    return model_checkpoint(
        CHECKPOINT_FORMAT,
        model,
        categories,
        iteration=iteration,
        training=training,
        model_config=model.config.to_dict(),
        train_config=dict(train_config),
    )


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A VIS model checkpoint dict, read on the CPU (:func:`uvis.checkpoints.read_checkpoint`)."""
    return read_format_checkpoint(
        path,
        fmt=CHECKPOINT_FORMAT,
        what="VIS model",
        required=("model_config", "categories", "model"),
    )


def checkpoint_meta(obj: Mapping[str, Any], path: str | os.PathLike[str]) -> VisModelMeta:
    """The :class:`VisModelMeta` of a checkpoint dict read from ``path``."""
    try:
        config = VisModelConfig(**obj["model_config"])
        categories = tuple(Category(int(c["id"]), str(c["name"])) for c in obj["categories"])
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise DataError(path, f"VIS model checkpoint has an invalid config: {exc}") from exc
    return VisModelMeta(
        config=config,
        categories=categories,
        iteration=int(obj.get("iteration", 0)),
        train_config=dict(obj.get("train_config", {})),
    )


def model_from_checkpoint(obj: Mapping[str, Any], path: str | os.PathLike[str]) -> VisModel:
    """The model of a checkpoint dict, its weights loaded (on the CPU, in training mode)."""
    meta = checkpoint_meta(obj, path)
    model = VisModel(meta.config, len(meta.categories))
    problems = mismatch_parts(*state_dict_mismatch(obj["model"], model.state_dict()))
    if problems:
        raise DataError(
            path,
            f"weights do not fit the saved {meta.config.name} model config "
            f"({len(meta.categories)} classes): {', '.join(problems)}",
        )
    model.load_state_dict(obj["model"])
    return model


def check_vocabulary(
    meta: VisModelMeta, expected: Sequence[str], path: str | os.PathLike[str]
) -> None:
    """Raise :class:`DataError` unless the model's class names are ``expected``, in order.

    A model's class index ``i`` means its ``i``-th training category; using it with another
    vocabulary (other names, another order, another count) would label every track wrong.
    """
    names = list(meta.category_names)
    wanted = [str(name) for name in expected]
    if names == wanted:
        return
    if len(names) != len(wanted):
        problem = f"{len(names)} classes, not the {len(wanted)} expected"
    else:
        i = next(k for k, (a, b) in enumerate(zip(names, wanted, strict=True)) if a != b)
        problem = f"class {i} is {names[i]!r}, not the expected {wanted[i]!r}"
    raise DataError(
        path, f"the model was trained on another vocabulary ({problem}); its classes: {names}"
    )


def load_vis_model(
    checkpoint: str | os.PathLike[str],
    *,
    vocabulary: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
) -> tuple[VisModel, VisModelMeta]:
    """A trained VIS model in eval mode on ``device``, and its :class:`VisModelMeta`.

    Reads final and intermediate training checkpoints alike. With ``vocabulary`` (class names
    in the order the caller will use them), a model trained on another vocabulary is an error.

    Raises:
        DataError: naming ``checkpoint`` when it is not a VIS model checkpoint, when its weights
            do not fit its config (another architecture), or when its vocabulary differs.
    """
    obj = read_checkpoint(checkpoint)
    meta = checkpoint_meta(obj, checkpoint)
    if vocabulary is not None:
        check_vocabulary(meta, vocabulary, checkpoint)
    model = model_from_checkpoint(obj, checkpoint)
    return model.to(device).eval(), meta
