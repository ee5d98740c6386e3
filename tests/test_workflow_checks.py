"""uvis.workflow.checks: the config checks the workflow runs when it builds the DAG (issue 14).

Each bad config below is built by hand from config.yaml; the error must be one line naming the
config key. (tests/test_workflow.py runs the same checks through `snakemake -n`.)
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from uvis.errors import ConfigError
from uvis.workflow import checks as workflow_checks
from uvis.workflow.checks import check_config, schema_error_line

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "uvis"
DEFAULT = yaml.safe_load((ROOT / "config.yaml").read_text())
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())


def with_changes(changes: dict) -> dict:
    """config.yaml with ``changes`` merged in ({"a.b": value} sets config["a"]["b"])."""
    cfg = copy.deepcopy(DEFAULT)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = cfg
        for key in parents:
            node = node[key]
        node[last] = value
    return cfg


@pytest.fixture(autouse=True)
def empty_weights_dir(tmp_path, monkeypatch):
    """Named weights are looked up in an empty folder unless a test puts a file there."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("UVIS_WEIGHTS", str(folder))
    return folder


def test_the_default_config_passes():
    check_config(DEFAULT, src=SRC, cache_dir=None)


BAD_SETTINGS = {
    # preset/overrides blocks: unknown keys, wrong types, values out of range
    "synth-type": ({"synth.overrides": {"num_train_videos": "many"}}, "config synth:"),
    "ssl-pretrain-key": ({"ssl.pretrain.overrides": {"epoch": 2}}, "config ssl.pretrain:"),
    "clip-pretrain-type": ({"clip.pretrain.overrides": {"epochs": 1.5}}, "config clip.pretrain:"),
    "detector-key": (
        {"proposals.detector.overrides": {"learning_rate": 0.1}},
        "config proposals.detector:",
    ),
    "backbone-pretrain-key": (
        {"vis.backbone_pretrain.overrides": {"nope": 1}},
        "config vis.backbone_pretrain:",
    ),
    "vis-lr-text": ({"vis.train.overrides": {"lr": "fast"}}, "config vis.train:"),
    "vis-unknown-model": ({"vis.model": "resnet-9000"}, "config vis.model:"),
    "clip-unknown-model": ({"clip.model": "ViT-Z-99"}, "config clip.model:"),
    "tagvis-train-key": ({"tagvis.train.overrides": {"epoch": 1}}, "config tagvis.train:"),
    "tagvis-unknown-switch": (
        {"tagvis.variants": {"full": {}, "odd": {"no_such_switch": False}}},
        "config tagvis.variants.odd:",
    ),
    "tagvis-switch-type": (
        {"tagvis.variants": {"full": {}, "odd": {"tag_attention": "no"}}},
        "config tagvis.variants.odd:",
    ),
    "tagvis-inference-range": ({"tagvis.inference": {"bandwidth": -1}}, "config tagvis.inference:"),
    "deepsort-unknown-option": (
        {"deepsort.overrides": {"max_agee": 3}},
        "config deepsort.overrides:",
    ),
    "deepsort-type": ({"deepsort.overrides": {"max_age": "long"}}, "config deepsort.overrides:"),
    "deepsort-range": (
        {"deepsort.overrides": {"max_cosine_distance": 5.0}},
        "config deepsort.overrides:",
    ),
    # weights: missing files and names, for every stage that loads one
    "clip-weights-file": ({"clip.weights": "/nonexistent"}, "config clip.weights:"),
    "ssl-weights-name": (
        {"ssl.weights": "dino_vitb8", "ssl.arch": "vit_base_patch8_224", "ssl.arch_kwargs": {}},
        "config ssl.weights:",
    ),
    "ssl-weights-wrong-family": ({"ssl.weights": "clip_vit_b32_laion2b"}, "config ssl.weights:"),
    "cutler-weights": (
        {"proposals.backend": "cutler", "proposals.cutler_weights": "/nonexistent.pth"},
        "config proposals.cutler_weights:",
    ),
    "vis-backbone-weights": (
        {"vis.backbone_weights": "/no/such.pth"},
        "config vis.backbone_weights:",
    ),
    "detector-backbone-weights": (
        {"proposals.detector": {"preset": "real", "overrides": {}}},
        "config proposals.detector:",
    ),
    "tagvis-encoder-weights": (
        {"tagvis.encoder_weights": "/no/such.pth"},
        "config tagvis.encoder_weights:",
    ),
    "tagvis-preset-encoder-weights": (
        {"tagvis.encoder_weights": None, "tagvis.train": {"preset": "paper", "overrides": {}}},
        "config tagvis.train:",
    ),
    "tagvis-encoder-pretrain-key": (
        {"tagvis.encoder_pretrain.overrides": {"widths": [8, 16]}},
        "config tagvis.encoder_pretrain:",
    ),
}


@pytest.mark.parametrize(("changes", "start"), BAD_SETTINGS.values(), ids=BAD_SETTINGS.keys())
def test_a_bad_setting_or_weight_is_one_line_naming_the_key(changes, start):
    with pytest.raises(ConfigError) as info:
        check_config(with_changes(changes), src=SRC, cache_dir=None)
    message = str(info.value)
    assert message.startswith(start), message
    assert "\n" not in message


def test_overrides_that_the_rules_options_replace_pass():
    """synth.overrides.seed is replaced by the rule's --seed, vis.train.overrides.model by
    its --model: no conflict (the jobs take the dedicated option)."""
    cfg = with_changes(
        {"synth.overrides": {"seed": 3}, "vis.train.overrides": {"model": "uvis-smoke"}}
    )
    check_config(cfg, src=SRC, cache_dir=None)


def test_weights_are_only_checked_for_stages_that_run():
    """Disabled models and the unused proposal backend do not need their weights."""
    cfg = with_changes(
        {
            "tagvis.enabled": False,
            "tagvis.train": {"preset": "paper", "overrides": {}},
            "proposals.cutler_weights": "/nonexistent.pth",
        }
    )
    check_config(cfg, src=SRC, cache_dir=None)


def test_cached_settings_still_look_up_the_weights(tmp_path, empty_weights_dir, monkeypatch):
    """A config whose settings passed is not built again (the cache), but the weight files its
    settings name are looked up on every check: removing one fails the next check."""
    weight = empty_weights_dir / "r2plus1d_18_kinetics" / "r2plus1d_18-91a641e6.pth"
    weight.parent.mkdir()
    weight.write_bytes(b"a weight")
    cfg = with_changes({"tagvis.encoder_weights": "r2plus1d_18_kinetics"})
    cache = tmp_path / "cache"
    check_config(cfg, src=SRC, cache_dir=cache)
    assert len(list(cache.iterdir())) == 1

    def not_again(config):
        raise AssertionError("settings built again despite the cache")

    monkeypatch.setattr(workflow_checks, "check_settings", not_again)
    check_config(cfg, src=SRC, cache_dir=cache)
    weight.unlink()
    with pytest.raises(
        ConfigError, match=r"^config tagvis.encoder_weights: weight 'r2plus1d_18_kinetics'"
    ):
        check_config(cfg, src=SRC, cache_dir=cache)
    # Other settings: a new cache entry, so they are built (and checked) again.
    with pytest.raises(AssertionError, match="built again"):
        check_config(with_changes({"vis.train.overrides": {"lr": 0.1}}), src=SRC, cache_dir=cache)


BAD_SCHEMA = {
    "top-level-key": ({"colour": 1}, "unknown config key colour (known keys: results, "),
    "nested-key": (
        {"dataset": {**DEFAULT["dataset"], "colour": 1}},
        "unknown config key dataset.colour (known in dataset: name, ",
    ),
    "minimum": ({"frames": {**DEFAULT["frames"], "stride": 0}}, "frames.stride: 0 is less than"),
    "enum": (
        {"vis": {**DEFAULT["vis"], "pseudo_level": "best"}},
        "vis.pseudo_level: 'best' is not one of",
    ),
    "type": ({"tracking": {"lam": "half", "top_k": 10}}, "tracking.lam: 'half' is not of type"),
    "list-item": (
        {"tables": {**DEFAULT["tables"], "build": ["uvis_table1", "table9"]}},
        "tables.build[1]: 'table9' is not one of",
    ),
}


@pytest.mark.parametrize(("changes", "start"), BAD_SCHEMA.values(), ids=BAD_SCHEMA.keys())
def test_a_schema_error_is_one_line_with_the_key_path(changes, start):
    cfg = {**copy.deepcopy(DEFAULT), **changes}
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(SCHEMA).iter_errors(cfg)
    )
    line = schema_error_line(error)
    assert line.startswith(start), line
    assert "\n" not in line and len(line) < 400


def test_without_torch_in_snakemakes_environment_only_the_weights_are_checked(tmp_path):
    """Snakemake may run in an environment without the model libraries (jobs in conda envs):
    the settings check says it is skipped, the weight check still runs."""
    code = f"""
import sys, yaml
sys.modules["torch"] = None  # import torch raises ImportError
from uvis.errors import ConfigError
from uvis.workflow.checks import check_config
cfg = yaml.safe_load(open({str(ROOT / "config.yaml")!r}))
warnings = []
check_config(cfg, src={str(SRC)!r}, cache_dir=None, warn=warnings.append)
assert len(warnings) == 1 and warnings[0].startswith("settings not checked"), warnings
cfg["clip"]["weights"] = "/nonexistent"
try:
    check_config(cfg, src={str(SRC)!r}, cache_dir=None, warn=warnings.append)
except ConfigError as exc:
    print(exc)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("config clip.weights: weight file '/nonexistent'"), proc.stdout


def dataset_config(tmp_path: Path, dataset: dict) -> dict:
    return {**copy.deepcopy(DEFAULT), "dataset": {"eval_split": "valid", **dataset}}


def test_dataset_paths_read_through_parameters_are_checked(tmp_path):
    """Bad inputs of each format, each built in tmp_path: the error names the key and path."""
    (tmp_path / "images").mkdir()
    (tmp_path / "DAVIS" / "ImageSets" / "2017").mkdir(parents=True)
    (tmp_path / "DAVIS" / "ImageSets" / "2017" / "val.txt").write_text("bear\n")
    (tmp_path / "videos").mkdir()
    (tmp_path / "twice.txt").write_text("cat\ndog\ncat\n")
    ytvis = {"name": "y", "format": "ytvis"}
    davis = {"name": "d", "format": "davis", "root": str(tmp_path / "DAVIS")}
    videos = {
        "name": "v",
        "format": "videos",
        "splits": {"valid": {"dir": str(tmp_path / "videos")}},
    }
    good = [
        {**ytvis, "splits": {"valid": {"json": "v.json", "images": str(tmp_path / "images")}}},
        {**davis, "splits": {"valid": {"imageset": "2017/val"}}},
        {**videos, "vocabulary": ["cat", "dog"]},
        {**videos, "vocabulary": "cat,dog"},
    ]
    for dataset in good:
        workflow_checks.check_dataset(dataset_config(tmp_path, dataset))
    bad = [
        (
            {**ytvis, "splits": {"valid": {"json": "v.json", "images": str(tmp_path / "nope")}}},
            f"config dataset.splits.valid.images: folder {tmp_path / 'nope'} does not exist",
        ),
        (
            {**davis, "root": str(tmp_path / "DAVIS2"), "splits": {"valid": {"imageset": "x"}}},
            f"config dataset.root: folder {tmp_path / 'DAVIS2'} does not exist",
        ),
        (
            {**davis, "splits": {"valid": {"imageset": "2019/val"}}},
            "config dataset.splits.valid.imageset: file ",
        ),
        (
            {**videos, "splits": {"valid": {"dir": str(tmp_path / "vids")}}, "vocabulary": ["a"]},
            f"config dataset.splits.valid.dir: folder {tmp_path / 'vids'} does not exist",
        ),
        (
            {**videos, "vocabulary": str(tmp_path / "vocab.txt")},
            f"config dataset.vocabulary: file {tmp_path / 'vocab.txt'} does not exist",
        ),
        (
            {**videos, "vocabulary": str(tmp_path / "twice.txt")},
            "config dataset.vocabulary: " + str(tmp_path / "twice.txt") + ": names listed twice",
        ),
        ({**videos, "vocabulary": ["cat", "cat"]}, "config dataset.vocabulary: vocabulary: names"),
    ]
    for dataset, start in bad:
        with pytest.raises(ConfigError) as info:
            workflow_checks.check_dataset(dataset_config(tmp_path, dataset))
        assert str(info.value).startswith(start), (dataset, str(info.value))
