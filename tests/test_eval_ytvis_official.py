"""Agreement with the official YouTube-VIS evaluation code (youtubevos/cocoapi).

The official ``ytvos.py`` / ``ytvoseval.py`` cannot be vendored, so this test runs only when
``UVIS_OFFICIAL_YTVOS`` names a folder holding those two files, e.g.::

    git -C /path/to/youtubevos+cocoapi show HEAD:PythonAPI/pycocotools/ytvos.py > /tmp/yt/ytvos.py
    git -C /path/to/youtubevos+cocoapi show HEAD:PythonAPI/pycocotools/ytvoseval.py \\
        > /tmp/yt/ytvoseval.py
    UVIS_OFFICIAL_YTVOS=/tmp/yt python -m pytest -m official tests/test_eval_ytvis_official.py

The harness loads them as a package whose ``mask`` module is the installed
``pycocotools.mask`` (they do ``from . import mask``), stubs matplotlib if it is missing (only
imported, never used) and gives them a numpy namespace with the aliases they need that numpy
has since removed (``np.float``, ``linspace`` with a float count).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as pycocotools_mask

from uvis.evaluation.ytvis import SUMMARY_METRICS, evaluate
from ytvis_reference import case_for_seed

ENV_VAR = "UVIS_OFFICIAL_YTVOS"
NUM_CASES = 50

pytestmark = pytest.mark.official


def _legacy_numpy() -> types.ModuleType:
    """numpy, plus what the official code uses that numpy 1.24+/2.x removed or rejects."""
    shim = types.ModuleType("numpy_legacy")
    shim.__dict__.update(np.__dict__)
    shim.float = float  # type: ignore[attr-defined]

    def linspace(start: float, stop: float, num: Any = 50, **kwargs: Any) -> np.ndarray:
        return np.linspace(start, stop, int(num), **kwargs)  # old numpy truncated float counts

    shim.linspace = linspace  # type: ignore[attr-defined]
    return shim


def _matplotlib_stubs() -> dict[str, types.ModuleType]:
    stubs = {
        name: types.ModuleType(name)
        for name in (
            "matplotlib",
            "matplotlib.pyplot",
            "matplotlib.collections",
            "matplotlib.patches",
        )
    }
    stubs["matplotlib.collections"].PatchCollection = object  # type: ignore[attr-defined]
    stubs["matplotlib.patches"].Polygon = object  # type: ignore[attr-defined]
    return stubs


def load_official(folder: Path) -> tuple[Any, Any]:
    """The official ``YTVOS`` and ``YTVOSeval`` classes, loaded from ``folder``."""
    package = "_uvis_official_ytvos"
    pkg = types.ModuleType(package)
    pkg.__path__ = [str(folder)]
    added = {package: pkg, f"{package}.mask": pycocotools_mask}
    if importlib.util.find_spec("matplotlib") is None:
        added.update(_matplotlib_stubs())
    saved = {name: sys.modules.get(name) for name in added}
    sys.modules.update(added)
    try:
        loaded = {}
        for name in ("ytvos", "ytvoseval"):
            spec = importlib.util.spec_from_file_location(
                f"{package}.{name}", folder / f"{name}.py"
            )
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            module.np = _legacy_numpy()  # type: ignore[attr-defined]
            loaded[name] = module
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    loaded["ytvos"].unicode = str  # Python 2 name referenced in loadRes
    return loaded["ytvos"].YTVOS, loaded["ytvoseval"].YTVOSeval


def official_metrics(
    classes: tuple[Any, Any], gt: dict, results: list, *, use_cats: bool = True
) -> dict[str, Any]:
    """Run the official evaluation (on copies: it modifies its inputs), silencing its prints,
    with ``params.useCats`` set from ``use_cats``; returns the 12 stats (x100, None for -1) and
    per-category AP like ``evaluate`` (none when class-agnostic)."""
    ytvos_cls, eval_cls = classes
    with contextlib.redirect_stdout(io.StringIO()):
        gt_api = ytvos_cls()
        gt_api.dataset = copy.deepcopy(gt)
        gt_api.createIndex()
        dt_api = gt_api.loadRes(copy.deepcopy(results))
        ev = eval_cls(gt_api, dt_api, "segm")
        ev.params.useCats = int(use_cats)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out: dict[str, Any] = {
        m.key: None if s == -1 else 100.0 * float(s)
        for m, s in zip(SUMMARY_METRICS, ev.stats, strict=True)
    }
    names = {c["id"]: c["name"] for c in gt["categories"]}
    per_category: dict[str, float | None] = {}
    for k, cat_id in enumerate(ev.params.catIds if use_cats else []):
        p = ev.eval["precision"][:, :, k, 0, 2]
        per_category[names[int(cat_id)]] = (
            100.0 * float(np.mean(p[p > -1])) if (p > -1).any() else None
        )
    out["per_category"] = per_category
    return out


@pytest.fixture(scope="module")
def official() -> tuple[Any, Any]:
    folder = os.environ.get(ENV_VAR)
    if not folder:
        pytest.skip(f"set {ENV_VAR} to a folder with the official ytvos.py and ytvoseval.py")
    path = Path(folder)
    missing = [f for f in ("ytvos.py", "ytvoseval.py") if not (path / f).is_file()]
    if missing:
        pytest.skip(f"{ENV_VAR}={folder} lacks {', '.join(missing)}")
    return load_official(path)


def _assert_same(ours: dict, theirs: dict, seed: int) -> None:
    for key in [m.key for m in SUMMARY_METRICS]:
        a, b = ours[key], theirs[key]
        assert (a is None) == (b is None), (seed, key, a, b)
        if a is not None:
            assert abs(a - b) <= 1e-9, (seed, key, a, b)
    assert ours["per_category"].keys() == theirs["per_category"].keys()
    for name, a in ours["per_category"].items():
        b = theirs["per_category"][name]
        assert (a is None) == (b is None) and (a is None or abs(a - b) <= 1e-9), (seed, name)


@pytest.mark.parametrize("seed", range(NUM_CASES))
def test_matches_official(official: tuple[Any, Any], seed: int) -> None:
    gt, results = case_for_seed(seed)
    _assert_same(evaluate(gt, results), official_metrics(official, gt, results), seed)


@pytest.mark.parametrize("seed", range(NUM_CASES))
def test_class_agnostic_matches_official_use_cats_0(official: tuple[Any, Any], seed: int) -> None:
    gt, results = case_for_seed(seed)
    theirs = official_metrics(official, gt, results, use_cats=False)
    _assert_same(evaluate(gt, results, class_agnostic=True), theirs, seed)
