"""Results for an evaluation server: a checked ``.zip`` holding ``results.json``.

The YouTube-VIS 2019/2021 and OVIS validation splits have no public ground truth; their metrics
come from the CodaLab servers, which take a zip with one ``results.json`` at its root. Before
zipping, :func:`write_submission` validates the results against the split's video JSON with the
same checks the local evaluation applies (known video and category ids, one mask or null per
frame, masks of the video's size), so a malformed file is caught here and not after an upload.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from uvis.evaluation._ytvis_format import (
    RESULTS_MEMBER,
    load_ground_truth,
    load_results,
    read_results_file,
)
from uvis.io import atomic_path, read_json


def write_submission(
    videos_json: str | os.PathLike[str],
    results_json: str | os.PathLike[str],
    out_zip: str | os.PathLike[str],
) -> int:
    """Validate ``results_json`` against the split's ``videos_json`` and write ``out_zip``.

    ``videos_json`` is the split's YouTube-VIS JSON; its ``annotations`` (absent or ``null`` on
    the validation splits) are not used. Returns the number of results. Raises
    :class:`~uvis.errors.DataError` naming the file and the problem.
    """
    videos_json, results_json = Path(videos_json), Path(results_json)
    split = read_json(videos_json)
    if isinstance(split, dict):
        split = {**split, "annotations": []}
    truth = load_ground_truth(split, str(videos_json))
    results = read_results_file(results_json)
    count = len(load_results(results, truth, str(results_json)))
    with atomic_path(out_zip) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            if results_json.suffix.lower() == ".zip":
                with zipfile.ZipFile(results_json) as source:
                    member = next(n for n in source.namelist() if Path(n).name == RESULTS_MEMBER)
                    archive.writestr(RESULTS_MEMBER, source.read(member))
            else:
                archive.write(results_json, RESULTS_MEMBER)
    return count
