"""The synthetic world is read by the *official* YouTube-VIS API and DAVIS evaluation unchanged,
and our metrics equal theirs on it.

Runs only where the official code is available locally (it cannot be shipped or downloaded):
``UVIS_OFFICIAL_YTVOS`` (folder with ytvos.py, ytvoseval.py) and ``UVIS_OFFICIAL_DAVIS``
(davis2017-evaluation checkout). See docs/evaluation.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from test_eval_davis_official import _official_metrics, _official_module
from test_eval_ytvis_official import load_official, official_metrics
from uvis.baselines import NoiseParams, noisy_davis_predictions, noisy_ytvis_results
from uvis.evaluation.davis import evaluate_folders
from uvis.evaluation.ytvis import evaluate
from uvis.synth import SynthParams, generate_world

pytestmark = pytest.mark.official
NOISE = NoiseParams(seed=3, jitter_px=2, drop_rate=0.2, class_flip_rate=0.2, false_positives=2)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, SynthParams.preset("smoke", seed=11), progress=False)
    return out


def test_official_ytvos_api_loads_and_scores_the_synthetic_world(world: Path) -> None:
    folder = os.environ.get("UVIS_OFFICIAL_YTVOS")
    if not folder:
        pytest.skip("set UVIS_OFFICIAL_YTVOS to a folder with the official ytvos.py, ytvoseval.py")
    classes = load_official(Path(folder))
    ytvos_cls, _ = classes
    for split in ("train", "valid"):
        gt = json.loads((world / "ytvis" / f"{split}.json").read_text())
        api = ytvos_cls(str(world / "ytvis" / f"{split}.json"))  # the official loader, unchanged
        assert len(api.getVidIds()) == len(gt["videos"])
        assert len(api.getAnnIds()) == len(gt["annotations"])
        results = noisy_ytvis_results(gt, NOISE)
        ours, theirs = evaluate(gt, results), official_metrics(classes, gt, results)
        for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10"):
            assert (ours[key] is None) == (theirs[key] is None), key
            if ours[key] is not None:
                assert abs(ours[key] - theirs[key]) <= 1e-9, (split, key)
        assert 0 < ours["AP"] < 100


def test_official_davis_evaluation_reads_the_synthetic_world(world: Path, tmp_path: Path) -> None:
    evaluation = _official_module()
    gt_dir = world / "davis" / "Annotations_unsupervised" / "480p"
    pred = tmp_path / "pred"
    noisy_davis_predictions(gt_dir, pred, NOISE)
    theirs = _official_metrics(evaluation, world / "davis", pred)
    ours = evaluate_folders(gt_dir, pred)
    for key in ("JF", "J", "F", "J_recall", "J_decay", "F_recall", "F_decay"):
        assert abs(ours[key] - theirs[key]) <= 1e-9, key
    assert 0 < ours["JF"] < 100
