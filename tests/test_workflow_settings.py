"""The config schema's settings blocks, generated from the settings dataclasses."""

from __future__ import annotations

import typing
from typing import Any, Literal

import jsonschema
import pytest
import yaml

from uvis.workflow import settings


def test_the_committed_schema_holds_the_generated_blocks() -> None:
    text = settings.SCHEMA.read_text(encoding="utf-8")
    assert settings.current(text) == settings.render(), (
        "workflow/schemas/config.schema.yaml is out of date: run python -m uvis.workflow.settings"
    )
    assert settings.main(["--check"]) == 0


def test_preset_enums_are_the_librarys_presets() -> None:
    from uvis.proposals.detector import DetectorConfig
    from uvis.train import TrainConfig

    defs = settings.definitions()
    assert "real" in defs["detector_preset"]["enum"]  # the preset the old schema did not offer
    assert "paper" in defs["vis_train_preset"]["enum"]
    for name in defs["detector_preset"]["enum"]:
        DetectorConfig.preset(name)
    for name in defs["vis_train_preset"]["enum"]:
        TrainConfig.preset(name)
    assert "deepsort_preset" not in defs and "deepsort_overrides" in defs
    from uvis.proposals.detector import INFERENCE_SETTINGS

    assert set(defs["detection_overrides"]["properties"]) == set(INFERENCE_SETTINGS)


@pytest.mark.parametrize(
    ("annotation", "want"),
    [
        (int, {"type": "integer"}),
        (bool, {"type": "boolean"}),
        (str, {"type": "string"}),
        (tuple[int, int], {"type": "array", "items": {"type": "integer"}}),
        (tuple[str, ...], {"type": "array", "items": {"type": "string"}}),
        (tuple[int, str], {"type": "array"}),
        (dict[str, Any], {"type": "object"}),
        (int | None, {"type": ["integer", "null"]}),
        (typing.Optional[str], {"type": ["null", "string"]}),  # noqa: UP045 (the old spelling)
        (Literal["a", "b"], {"enum": ["a", "b"]}),
    ],
)
def test_json_types_of_field_annotations(annotation: Any, want: dict[str, Any]) -> None:
    assert settings.json_type(annotation) == want


def validator(name: str) -> jsonschema.Draft202012Validator:
    defs = yaml.safe_load(yaml.safe_dump(settings.definitions()))
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": defs})


def test_overrides_refuse_unknown_keys_and_wrong_types_and_take_floats_as_text() -> None:
    vis = validator("vis_train_overrides")
    assert vis.is_valid({"iterations": 100, "lr": 2e-4, "scales": [1.0, 1.25]})
    assert vis.is_valid({"lr": "2e-4", "backbone_lr_factor": 1})  # YAML's text; an int
    assert not vis.is_valid({"iterationz": 100})
    assert not vis.is_valid({"iterations": "many"})
    assert not vis.is_valid({"lr": "fast"})
    assert not vis.is_valid({"flip": 1})
    block = validator("detector_block")
    assert block.is_valid({"preset": "real", "overrides": {"iterations": 10}})
    assert not block.is_valid({"preset": "huge"})
    assert not block.is_valid({"preset": "default", "iterations": 10})
