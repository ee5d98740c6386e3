"""The spread of a pipeline's results over world seeds: one column per run, mean and range.

Usage::

    python benchmarks/bench_seeds.py SEED=RESULTS_DIR [SEED=RESULTS_DIR ...]

Each ``RESULTS_DIR`` is a run's ``results/<dataset>`` folder (e.g. a clone's
``results/synth`` after ``snakemake --cores 2 --configfile config.yaml seed.yaml``). The script
reads what the run built, whatever its tables: the stand-ins' quality (``models/*.json``), the
pseudo-labels' quality (``pseudo/quality/valid.json``), UVIS Tables 1, 2 and 4
(``tables/*.csv``), and prints one Markdown table, one row per figure, with the mean and the
range (min-max) over the runs that have it. Nothing is recomputed.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path
from typing import Any


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _num(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def figures(results: Path) -> dict[str, float | None]:
    """Every figure the run has, by name (None where it does not)."""
    out: dict[str, float | None] = {}
    knn = (_json(results / "models" / "ssl_vit.json") or {}).get("knn_probe") or {}
    out["DINO k-NN shape accuracy"] = _num(knn.get("accuracy_trained"))
    quality = (_json(results / "models" / "clip.json") or {}).get("quality") or {}
    crops = [v.get("accuracy") for k, v in quality.items() if k.startswith("video_crops")]
    out["CLIP accuracy on valid object crops (best of box / masked)"] = max(
        (c for c in crops if c is not None), default=None
    )
    levels = {r["level"]: r for r in (_json(results / "pseudo" / "quality" / "valid.json") or [])}
    for level in ("none", "objectness", "clip", "pmf"):
        out[f"pseudo-labels class precision, {level}"] = _num(
            levels.get(level, {}).get("class_precision")
        )
    out["proposals recall after objectness"] = _num(levels.get("objectness", {}).get("recall"))
    for row in _rows(results / "tables" / "uvis_table1.csv"):
        out[f"Table 1 AP: {row['Method']}"] = _num(row.get("AP"))
    for row in _rows(results / "tables" / "uvis_table2.csv"):
        out[f"Table 2 AP: {row['Model ID']}"] = _num(row.get("AP"))
    for row in _rows(results / "tables" / "uvis_table4.csv"):
        out[f"Table 4 memory gain: {row['Model']}"] = _num(row.get("Δ"))
    uvis = out.get("Table 1 AP: UVIS")
    upper = out.get("Table 1 AP: MinVIS (supervised upper bound)")
    deepsort = out.get("Table 1 AP: DeepSORT")
    out["UVIS / upper bound"] = uvis / upper if uvis is not None and upper else None
    out["UVIS - DeepSORT (AP)"] = uvis - deepsort if None not in (uvis, deepsort) else None
    return out


def table(runs: list[tuple[str, dict[str, float | None]]]) -> str:
    names = list(dict.fromkeys(name for _, found in runs for name in found))
    head = "| figure | " + " | ".join(f"seed {seed}" for seed, _ in runs) + " | mean | range |"
    lines = [head, "|---|" + "---:|" * (len(runs) + 2)]
    for name in names:
        values = [found.get(name) for _, found in runs]
        have = [v for v in values if v is not None]
        if not have:
            continue
        cells = ["–" if v is None else f"{v:.3g}" for v in values]
        mean = f"{statistics.fmean(have):.3g}"
        spread = f"{min(have):.3g}–{max(have):.3g}" if len(have) > 1 else "–"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean} | {spread} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="SEED=RESULTS_DIR")
    args = parser.parse_args()
    runs = []
    for item in args.runs:
        seed, _, path = item.partition("=")
        if not path or not Path(path).is_dir():
            parser.error(f"expected SEED=RESULTS_DIR with an existing folder, got {item!r}")
        runs.append((seed, figures(Path(path))))
    print(table(runs))


if __name__ == "__main__":
    main()
