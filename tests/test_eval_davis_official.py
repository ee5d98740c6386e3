"""Agreement with the official davis2017-evaluation code (opt-in: needs a local checkout).

Set ``UVIS_OFFICIAL_DAVIS`` to a checkout folder of davisvideochallenge/davis2017-evaluation (the
folder holding ``davis2017/``) and install its dependencies (opencv, scikit-image, tqdm); none
of them is a uvis dependency. The random cases are DAVIS folders built in ``tmp_path``; the
real-mask case also needs the checkout's ``results/unsupervised/rvos``. The footprint and
dilation checks need only skimage and opencv.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from uvis.evaluation.davis import (
    dilate,
    disk_footprint,
    evaluate_folders,
)

pytestmark = pytest.mark.official

NUM_CASES = 20
SIZES = [(12, 16), (30, 40), (48, 64), (90, 160), (200, 300)]


def _official_module() -> ModuleType:
    """Import ``davis2017.evaluation`` from the checkout, or skip with the reason."""
    checkout = os.environ.get("UVIS_OFFICIAL_DAVIS")
    if not checkout:
        pytest.skip("set UVIS_OFFICIAL_DAVIS to a davis2017-evaluation checkout to run this test")
    if not (Path(checkout) / "davis2017" / "evaluation.py").is_file():
        pytest.skip(f"UVIS_OFFICIAL_DAVIS={checkout} has no davis2017/evaluation.py")
    for module in ("cv2", "skimage", "tqdm"):
        pytest.importorskip(module, reason=f"the official evaluation needs {module}")
    if checkout not in sys.path:
        sys.path.insert(0, checkout)
    from davis2017 import evaluation

    return evaluation


def _blob(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """Random ellipse (centre y, centre x, radius y, radius x)."""
    h, w = shape
    return (
        rng.uniform(-0.1, 1.1) * h,
        rng.uniform(-0.1, 1.1) * w,
        rng.uniform(0.05, 0.4) * h,
        rng.uniform(0.05, 0.4) * w,
    )


def _paint(shape: tuple[int, int], blob: tuple[float, float, float, float], t: int, drift):
    """Boolean ellipse of ``blob`` moved by ``t * drift`` pixels."""
    cy, cx, ry, rx = blob
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - cy - t * drift[0]) / ry) ** 2 + ((xx - cx - t * drift[1]) / rx) ** 2 <= 1


def _write(path: Path, ids: np.ndarray, rng: np.random.Generator) -> None:
    """Write an id PNG, at random as a palette or a grey image."""
    image = Image.fromarray(ids.astype(np.uint8), mode="L")
    if rng.random() < 0.5:
        image = image.convert("P")
        image.putpalette(list(rng.integers(0, 256, 768, dtype=np.uint8)))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _make_sequence(
    rng: np.random.Generator,
    root: Path,
    res: Path,
    name: str,
    shape: tuple[int, int],
    num_frames: int,
    num_gt: int,
) -> None:
    """One random sequence: ground truth with void, and a prediction loosely following it.

    Objects are moving ellipses (some leaving the frame, some speckled with holes), one ground-
    truth object may be missing from the first frame, one id appears only later (not an object),
    void covers parts of object borders and a random box, and the prediction has 0 to 20 ids
    (fewer or more than the ground truth, with gaps), following ground-truth objects or not.
    """
    gt_blobs = [(_blob(rng, shape), rng.normal(0, 2, 2)) for _ in range(num_gt + 1)]
    absent_first = rng.random() < 0.3  # one object missing from the first frame
    num_pred = int(rng.choice([0, max(num_gt - 1, 0), num_gt, num_gt + 2, 20]))
    sources = rng.integers(0, num_gt + 2, num_pred)  # GT blob to follow, or num_gt+1: random
    pred_blobs = []
    for k in range(num_pred):
        if sources[k] <= num_gt:
            (cy, cx, ry, rx), drift = gt_blobs[sources[k]]
            jitter = rng.normal(0, 0.1, 4) * np.array([ry, rx, ry, rx])
            pred_blobs.append(
                (
                    (cy + jitter[0], cx + jitter[1], ry + jitter[2], rx + jitter[3]),
                    drift + rng.normal(0, 0.5, 2),
                )
            )
        else:
            pred_blobs.append((_blob(rng, shape), rng.normal(0, 2, 2)))
    pred_ids = rng.permutation(np.arange(1, 21))[:num_pred]
    if num_pred:
        pred_ids[int(np.argmax(pred_ids))] = max(num_pred, int(rng.integers(num_pred, 21)))
    for t in range(num_frames):
        gt = np.zeros(shape, np.uint8)
        for k, (blob, drift) in enumerate(gt_blobs):
            if t == 0 and absent_first and k == 0 and num_gt > 1:
                continue
            # Blob num_gt (id num_gt + 1) appears only after the first frame: not an object.
            if k == num_gt and t == 0:
                continue
            gt[_paint(shape, blob, t, drift)] = k + 1
        edges = (np.abs(np.diff(gt.astype(int), axis=0, prepend=0)) > 0) & (rng.random(shape) < 0.7)
        gt[edges] = 255
        if rng.random() < 0.3:
            y, x = rng.integers(0, shape[0]), rng.integers(0, shape[1])
            gt[y : y + shape[0] // 4, x : x + shape[1] // 3] = 255
        if t == 0 and num_gt and gt[gt != 255].max(initial=0) < num_gt:
            gt[0, 0] = num_gt  # keep the first-frame object count at num_gt
        pred = np.zeros(shape, np.uint8)
        for k, (blob, drift) in enumerate(pred_blobs):
            speckle = rng.random(shape) < (0.6 if k % 5 == 4 else 1.0)
            pred[_paint(shape, blob, t, drift) & speckle] = pred_ids[k]
        if rng.random() < 0.2:
            pred[rng.random(shape) < 0.01] = pred_ids[0] if num_pred else 0
        frame = f"{t:05d}"
        (root / "JPEGImages" / "480p" / name).mkdir(parents=True, exist_ok=True)
        (root / "JPEGImages" / "480p" / name / f"{frame}.jpg").touch()
        _write(root / "Annotations_unsupervised" / "480p" / name / f"{frame}.png", gt, rng)
        _write(res / name / f"{frame}.png", pred, rng)


def _official_metrics(evaluation, root: Path, res: Path) -> dict[str, float]:
    """Run the official unsupervised evaluation and express it on the 0-100 scale."""
    metrics = evaluation.DAVISEvaluation(str(root), "unsupervised", "val").evaluate(str(res))
    j, f = metrics["J"], metrics["F"]
    return {
        "JF": 100 * (np.mean(j["M"]) + np.mean(f["M"])) / 2,
        "J": 100 * np.mean(j["M"]),
        "J_recall": 100 * np.mean(j["R"]),
        "J_decay": 100 * np.mean(j["D"]),
        "F": 100 * np.mean(f["M"]),
        "F_recall": 100 * np.mean(f["R"]),
        "F_decay": 100 * np.mean(f["D"]),
        "object_J": sorted(100 * v for v in j["M"]),
        "object_F": sorted(100 * v for v in f["M"]),
    }


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("seed", range(NUM_CASES))
def test_random_case_matches_official(seed: int, tmp_path: Path) -> None:
    evaluation = _official_module()
    rng = np.random.default_rng(1000 + seed)
    root, res = tmp_path / "DAVIS", tmp_path / "results"
    names = [f"seq{k}" for k in range(int(rng.integers(1, 4)))]
    for k, name in enumerate(names):
        # The first case is at DAVIS resolution (8-pixel tolerance), the others small and longer.
        shape = (480, 854) if seed == 0 and k == 0 else SIZES[rng.integers(len(SIZES))]
        num_frames = 3 if seed == 0 and k == 0 else int(rng.integers(1, 11))
        num_gt = int(rng.integers(1, 5)) if k == 0 else int(rng.choice([0, 1, 2, 3, 4]))
        _make_sequence(rng, root, res, name, shape, num_frames, num_gt)
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names) + "\n")

    ours = evaluate_folders(root / "Annotations_unsupervised" / "480p", res)
    assert ours["num_objects"] > 0
    official = _official_metrics(evaluation, root, res)
    for key in ("JF", "J", "J_recall", "J_decay", "F", "F_recall", "F_decay"):
        assert ours[key] == pytest.approx(official[key], abs=1e-9, rel=0), key
    object_j = sorted(o["J"] for o in ours["per_object"].values())
    object_f = sorted(o["F"] for o in ours["per_object"].values())
    np.testing.assert_allclose(object_j, official["object_J"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(object_f, official["object_F"], rtol=0, atol=1e-9)


@pytest.mark.parametrize("radius", [0, 1, 2, 3, 8, 1.5, 2.5, 4.2])
def test_disk_matches_skimage(radius: float) -> None:
    morphology = pytest.importorskip("skimage.morphology")
    np.testing.assert_array_equal(disk_footprint(radius), morphology.disk(radius).astype(bool))


@pytest.mark.parametrize("radius", [0, 1, 2, 3, 8, 1.5, 2.5])
def test_dilate_matches_cv2(radius: float) -> None:
    cv2 = pytest.importorskip("cv2")
    morphology = pytest.importorskip("skimage.morphology")
    rng = np.random.default_rng(7)
    mask = rng.random((37, 53)) < 0.03
    mask[0, 0] = mask[-1, -1] = mask[0, -1] = True
    kernel = morphology.disk(radius).astype(np.uint8)
    expected = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
    np.testing.assert_array_equal(dilate(mask, disk_footprint(radius)), expected)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_real_davis_masks_match_official(tmp_path: Path) -> None:
    """Real 480p masks: the RVOS results shipped with the official code play both roles.

    Ground truth: a sequence's RVOS ids 1-4 (id 5 as void); prediction: the same sequence's
    RVOS masks (up to 20 ids) one frame later.
    """
    evaluation = _official_module()
    rvos = Path(os.environ["UVIS_OFFICIAL_DAVIS"]) / "results" / "unsupervised" / "rvos"
    if not rvos.is_dir():
        pytest.skip(f"{rvos} not in the checkout")
    root, res = tmp_path / "DAVIS", tmp_path / "results"
    names = ["bike-packing", "pigs", "soapbox"]
    for name in names:
        frames = sorted((rvos / name).glob("*.png"))[:5]
        for t, (path, next_path) in enumerate(itertools.pairwise(frames)):
            ids = np.array(Image.open(path))
            gt = np.where(ids <= 4, ids, 0).astype(np.uint8)
            gt[ids == 5] = 255
            frame = f"{t:05d}"
            (root / "JPEGImages" / "480p" / name).mkdir(parents=True, exist_ok=True)
            (root / "JPEGImages" / "480p" / name / f"{frame}.jpg").touch()
            gt_path = root / "Annotations_unsupervised" / "480p" / name / f"{frame}.png"
            gt_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(gt).save(gt_path)
            (res / name).mkdir(parents=True, exist_ok=True)
            Image.open(next_path).save(res / name / f"{frame}.png")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names) + "\n")

    ours = evaluate_folders(root / "Annotations_unsupervised" / "480p", res)
    official = _official_metrics(evaluation, root, res)
    assert ours["num_objects"] == len(official["object_J"]) > 0
    for key in ("JF", "J", "J_recall", "J_decay", "F", "F_recall", "F_decay"):
        assert ours[key] == pytest.approx(official[key], abs=1e-9, rel=0), key
