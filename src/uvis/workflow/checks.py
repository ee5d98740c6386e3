"""Checks the Snakemake workflow runs on its config when it builds the DAG (rules/common.smk).

A config that passes the JSON schema can still hold settings that only the library knows to be
wrong: an override key that no settings dataclass has, a value of the wrong type, a switch
name a tag-based variant does not know, a weight file that does not exist. Each of these used
to pass ``snakemake -n`` and stop the job that reads it, possibly hours into a cluster run.
Here every ``preset``/``overrides`` block is built into the settings dataclass the job will
build (through the same :mod:`uvis.presets` machinery and the same ``--set`` value parsing),
and every weight reference is resolved (:func:`uvis.foundation.weights.resolve_weights`), so a
bad one is one :class:`~uvis.errors.ConfigError` naming the config key, at DAG build time.

Building the dataclasses imports torch (several seconds), so a config whose settings passed is
remembered in a small cache file keyed by those config blocks and the library's source; the
weight files are looked up on every run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import reprlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from uvis.errors import ConfigError, UvisError

#: The config blocks whose settings :func:`check_settings` builds (the cache key covers them).
SETTINGS_BLOCKS = ("synth", "ssl", "clip", "proposals", "vis", "tagvis", "deepsort")


# ---------------------------------------------------------------------------------------------
# JSON schema errors as one line


def schema_error_line(error: Any) -> str:
    """One line for a ``jsonschema.ValidationError``: the config key path and the reason.

    The error's most relevant sub-error is used for ``anyOf``/``oneOf`` failures; an unknown
    key names itself and the keys allowed there; long values are shortened. (jsonschema's own
    message appends the whole schema and config, hundreds of lines for a top-level key.)
    """
    from jsonschema.exceptions import best_match

    error = best_match([error])
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    path = path.removeprefix(".")
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = error.schema.get("properties", {})
        extra = [k for k in error.instance if k not in allowed]
        if extra:
            where = f"{path}." if path else ""
            known = ", ".join(allowed)
            names = ", ".join(f"{where}{k}" for k in extra)
            return f"unknown config key {names} (known {'in ' + path if path else 'keys'}: {known})"
    shorten = reprlib.Repr()
    shorten.maxstring, shorten.maxother, shorten.maxdict, shorten.maxlist = 60, 60, 4, 6
    message = error.message
    if len(message) > 200:
        message = f"{shorten.repr(error.instance)} fails the schema's {error.validator!r} rule"
    return f"{path or 'config'}: {message}"


# ---------------------------------------------------------------------------------------------
# Settings dataclasses


def cli_value(value: Any) -> Any:
    """An override value as the job receives it: the rules pass ``--set key=<JSON>`` and the
    CLI reads the value as YAML (:func:`uvis.presets.parse_overrides`)."""
    return yaml.safe_load(json.dumps(value))


def cli_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {k: cli_value(v) for k, v in overrides.items()}


@dataclasses.dataclass(frozen=True)
class WeightRef:
    """A weight the workflow's jobs will resolve: the config key it comes from, the reference
    (a file path or a known name) and its family (:data:`uvis.foundation.weights.Family`)."""

    key: str
    ref: str
    family: str
    arch: str | None = None  # CLIP: the model, for its open_clip pretrained tags


def _check(key: str, build: Callable[[], Any]) -> Any:
    try:
        return build()
    except UvisError as exc:
        raise ConfigError(f"config {key}: {exc}") from None


def check_settings(config: Mapping[str, Any]) -> list[WeightRef]:
    """Build every settings dataclass a job of this config will build; return the weights the
    jobs will resolve (those the resolved settings name, besides the config's own weight keys).

    Raises:
        ConfigError: ``config <key>: <problem>`` for the first block that does not build.
    """
    from uvis.foundation.clip import model_config as clip_model_config
    from uvis.model.mask2former import model_config as vis_model_config
    from uvis.presets import config_from_dict
    from uvis.proposals.detector import DetectorConfig
    from uvis.proposals.maskcut import MaskCutConfig
    from uvis.standins.backbone import BackboneTrainConfig
    from uvis.standins.clip import ClipTrainConfig
    from uvis.standins.dino import DinoConfig
    from uvis.standins.video_encoder import EncoderPretrainConfig
    from uvis.synth import SynthParams
    from uvis.tagvis.config import TagVisConfig
    from uvis.tagvis.infer import InferenceConfig
    from uvis.train import TrainConfig

    weights: list[WeightRef] = []

    synth = config["synth"]
    _check(
        "synth",
        lambda: SynthParams.preset(
            synth["preset"], **{**cli_overrides(synth["overrides"]), "seed": synth["seed"]}
        ),
    )

    ssl = config["ssl"]
    ssl_sets = cli_overrides(ssl["pretrain"]["overrides"])
    if ssl["weights"] == "embedded":  # pretrain_ssl trains the architecture maskcut loads
        ssl_sets = {"arch": ssl["arch"], "arch_kwargs": ssl["arch_kwargs"], **ssl_sets}
    _check("ssl.pretrain", lambda: DinoConfig.preset(ssl["pretrain"]["preset"], **ssl_sets))

    clip = config["clip"]
    clip_sets = cli_overrides(clip["pretrain"]["overrides"])
    if clip["weights"] == "embedded":  # pretrain_clip trains the model clip_scores loads
        clip_sets = {"model": clip["model"], **clip_sets}
    _check("clip.pretrain", lambda: ClipTrainConfig.preset(clip["pretrain"]["preset"], **clip_sets))
    _check("clip.model", lambda: clip_model_config(clip["model"]))

    proposals = config["proposals"]
    maskcut = proposals["maskcut"]
    _check(
        "proposals.maskcut",
        lambda: MaskCutConfig(
            tau=maskcut["tau"], num_masks=maskcut["num_masks"], refine=maskcut["refine"]
        ),
    )
    detector = _check(
        "proposals.detector",
        lambda: DetectorConfig.preset(
            proposals["detector"]["preset"], **cli_overrides(proposals["detector"]["overrides"])
        ),
    )
    _check(
        "proposals.detection",
        lambda: detector.for_detection(**cli_overrides(proposals["detection"])),
    )
    if proposals["backend"] == "maskcut" and detector.backbone_weights is not None:
        weights.append(WeightRef("proposals.detector", detector.backbone_weights, "resnet"))

    vis = config["vis"]
    _check(
        "vis.backbone_pretrain",
        lambda: BackboneTrainConfig.preset(
            vis["backbone_pretrain"]["preset"],
            **cli_overrides(vis["backbone_pretrain"]["overrides"]),
        ),
    )
    _check("vis.model", lambda: vis_model_config(vis["model"]))
    vis_sets = {**cli_overrides(vis["train"]["overrides"]), "model": vis["model"]}
    if vis["backbone_weights"]:  # the rule's --backbone-weights (else the preset's)
        vis_sets["backbone_weights"] = vis["backbone_weights"]
    train = _check("vis.train", lambda: TrainConfig.preset(vis["train"]["preset"], **vis_sets))
    if vis["enabled"] and train.backbone_weights and vis["backbone_weights"] != "embedded":
        key = "vis.backbone_weights" if vis["backbone_weights"] else "vis.train"
        weights.append(WeightRef(key, train.backbone_weights, "resnet"))

    tagvis = config["tagvis"]
    _check(
        "tagvis.encoder_pretrain",
        lambda: EncoderPretrainConfig.preset(
            tagvis["encoder_pretrain"]["preset"],
            **cli_overrides(tagvis["encoder_pretrain"]["overrides"]),
        ),
    )
    preset, tag_sets = tagvis["train"]["preset"], cli_overrides(tagvis["train"]["overrides"])
    if tagvis["encoder_weights"]:  # the rule's --encoder-weights (else the preset's)
        tag_sets["encoder_weights"] = tagvis["encoder_weights"]
    tag_cfg = _check("tagvis.train", lambda: TagVisConfig.preset(preset, **tag_sets))
    for name, switches in tagvis["variants"].items():
        _check(
            f"tagvis.variants.{name}",
            lambda switches=switches: TagVisConfig.preset(
                preset, **{**tag_sets, **cli_overrides(switches or {})}
            ),
        )
    _check(
        "tagvis.inference",
        lambda: config_from_dict(
            InferenceConfig, cli_overrides(tagvis["inference"]), what="tagvis inference"
        ),
    )
    if (
        tagvis["enabled"]
        and tag_cfg.encoder_weights is not None
        and tagvis["encoder_weights"] != "embedded"
    ):
        key = "tagvis.encoder_weights" if tagvis["encoder_weights"] else "tagvis.train"
        weights.append(WeightRef(key, tag_cfg.encoder_weights, "r2plus1d"))

    _check("deepsort.overrides", lambda: _deepsort_config(config["deepsort"]["overrides"]))
    return weights


def tagvis_encoder_arch(config: Mapping[str, Any]) -> dict[str, list[int]]:
    """Widths and depths of the tag-based model's encoder under ``tagvis.train`` (preset and
    overrides), which the stand-in video pretraining must share for its weights to load.

    Raises:
        ConfigError: ``config tagvis.train: <problem>`` when the block does not build.
    """
    from uvis.tagvis.config import TagVisConfig

    train = config["tagvis"]["train"]
    cfg = _check(
        "tagvis.train",
        lambda: TagVisConfig.preset(train["preset"], **cli_overrides(train["overrides"])),
    )
    return {"encoder_widths": list(cfg.encoder_widths), "encoder_depths": list(cfg.encoder_depths)}


def _deepsort_config(overrides: Mapping[str, Any]) -> Any:
    """DeepSortConfig from deepsort.overrides, which the rule passes as ``uvis track deepsort
    --set`` options, built as that command builds it."""
    from uvis.presets import config_from_dict
    from uvis.tracking.deepsort import DeepSortConfig

    return config_from_dict(DeepSortConfig, cli_overrides(overrides), what="deepsort")


def config_weights(config: Mapping[str, Any]) -> list[WeightRef]:
    """The weights the config names itself (besides ``embedded`` stand-ins the workflow trains),
    for the stages the config runs."""
    refs = []
    if config["ssl"]["weights"] != "embedded":
        refs.append(WeightRef("ssl.weights", config["ssl"]["weights"], "ssl_vit"))
    if config["clip"]["weights"] != "embedded":
        refs.append(
            WeightRef("clip.weights", config["clip"]["weights"], "clip", config["clip"]["model"])
        )
    if config["proposals"]["backend"] == "cutler":
        refs.append(
            WeightRef("proposals.cutler_weights", config["proposals"]["cutler_weights"], "cutler")
        )
    return refs


def check_weights(refs: Iterable[WeightRef]) -> None:
    """Resolve every weight reference as the jobs will.

    Raises:
        ConfigError: ``config <key>: <why the file is missing and where to put it>``.
    """
    from uvis.foundation.weights import resolve_weights

    for ref in refs:
        if ref.family == "clip" and ref.arch is not None:
            from uvis.foundation.weights import clip_weights_path

            _check(ref.key, lambda ref=ref: clip_weights_path(ref.arch, ref.ref))
        else:
            _check(ref.key, lambda ref=ref: resolve_weights(ref.ref, ref.family))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Dataset paths the jobs read that are not Snakemake inputs


def check_dataset(config: Mapping[str, Any]) -> None:
    """The dataset folders and files that rules read through parameters (so Snakemake does not
    check them): a YouTube-VIS split's image folder, the DAVIS root and its image-set files, a
    video split's folder and the vocabulary (a text file, or names).

    Raises:
        ConfigError: ``config dataset.<key>: <problem>``.
    """
    dataset = config["dataset"]
    fmt, splits = dataset["format"], dataset.get("splits") or {}

    def need(key: str, path: str, kind: str) -> None:
        ok = Path(path).is_dir() if kind == "folder" else Path(path).is_file()
        if not ok:
            raise ConfigError(f"config dataset.{key}: {kind} {path} does not exist")

    for name, split in splits.items():
        if fmt == "ytvis" and "images" in split:
            need(f"splits.{name}.images", split["images"], "folder")
        elif fmt == "davis" and "imageset" in split:
            need("root", dataset["root"], "folder")
            imageset = f"{dataset['root']}/ImageSets/{split['imageset']}.txt"
            need(f"splits.{name}.imageset", imageset, "file")
        elif fmt == "videos" and "dir" in split:
            need(f"splits.{name}.dir", split["dir"], "folder")
    if fmt == "videos" and "vocabulary" in dataset:
        vocabulary = dataset["vocabulary"]
        if isinstance(vocabulary, str) and not Path(vocabulary).exists():
            # `uvis data extract` reads a string that is no file as comma-separated names: a
            # mistyped file name would become one class.
            if "/" in vocabulary or vocabulary.endswith(".txt"):
                raise ConfigError(
                    f"config dataset.vocabulary: file {vocabulary} does not exist (give a text "
                    "file with one name per line, or a list of names)"
                )
            vocabulary = vocabulary.split(",")
        from uvis.data.videos import read_vocabulary

        _check("dataset.vocabulary", lambda: read_vocabulary(vocabulary))


# ---------------------------------------------------------------------------------------------
# The check at DAG build, with its cache


def source_digest(root: Path) -> str:
    """sha256 of the library's Python sources under ``root`` (paths and contents)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def settings_key(config: Mapping[str, Any], src: Path) -> str:
    """Cache key of :func:`check_settings`: the settings blocks of ``config`` and the source."""
    blocks = {name: config.get(name) for name in SETTINGS_BLOCKS}
    text = json.dumps(blocks, sort_keys=True, default=str) + source_digest(src)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def check_config(
    config: Mapping[str, Any],
    *,
    src: Path,
    cache_dir: Path | None,
    warn: Callable[[str], None] = print,
) -> None:
    """Everything above, as the workflow runs it when building the DAG: the dataset paths, the
    weights the config names, the settings (skipped when ``cache_dir`` holds a pass for the same settings and
    library source), then the weights the settings name. Where the settings cannot be built
    because a dependency is missing from the environment Snakemake runs in (e.g. torch),
    ``warn`` says so and only the config's own weights are checked.

    Raises:
        ConfigError: one line naming the config key and the problem.
    """
    check_dataset(config)  # first: needs no torch
    check_weights(config_weights(config))
    cache = None if cache_dir is None else cache_dir / f"{settings_key(config, src)}.json"
    refs: list[WeightRef] | None = None
    if cache is not None and cache.is_file():
        try:
            refs = [WeightRef(**r) for r in json.loads(cache.read_text())["weights"]]
        except (OSError, ValueError, KeyError, TypeError):
            refs = None
    if refs is None:
        try:
            refs = check_settings(config)
        except ImportError as exc:
            warn(f"settings not checked before the jobs run: {exc}")
            return
        if cache is not None:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
                tmp.write_text(json.dumps({"weights": [dataclasses.asdict(r) for r in refs]}))
                tmp.replace(cache)
            except OSError:
                pass  # a read-only working directory: check again next time
    check_weights(refs)
