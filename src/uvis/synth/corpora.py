"""The two image corpora that stand in for foundation-model training data.

* ``corpora/unlabeled``: single-object images for the DINO-style self-supervised model.
  ``index.json`` keeps each image's category and colour, for linear probing only.
* ``corpora/captioned``: single-object images with a caption each, for the CLIP-style model;
  captions name the colour and the shape through varied templates, so the text encoder has to
  pick out the words rather than memorise one sentence per class. Each record also carries the
  object's mask (``segmentation``, a COCO RLE), so the stand-in's training can show the object
  as the pipeline shows it: cut out, and sometimes partly hidden.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uvis import masks
from uvis.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from uvis.synth.params import SynthParams
from uvis.synth.render import render_video
from uvis.synth.scene import sample_object_scene
from uvis.synth.shapes import CATEGORIES, category_by_id
from uvis.synth.writers import encode_jpeg

# Random-stream ids (the second entry of each generator's seed); videos use 0 and 1.
UNLABELED_STREAM = 2
CAPTIONED_STREAM = 3

CAPTION_TEMPLATES: tuple[str, ...] = (
    "a photo of {a_colour} {shape}",
    "{a_colour} {shape}",
    "a picture of {a_shape}, {colour}",
    "{a_colour} {shape} on a textured background",
    "a drawing of {a_colour} {shape}",
    "there is {a_colour} {shape} in the image",
    "{a_shape} coloured {colour}",
    "a close-up photo of {a_colour} {shape}",
)


@dataclass(frozen=True, eq=False)
class CorpusImage:
    """One corpus image and what it shows: ``mask`` ``(H, W)`` bool is the object's pixels."""

    image: np.ndarray
    category_id: int
    colour: str
    mask: np.ndarray


def _with_article(word: str) -> str:
    """``word`` with its indefinite article ("a star", "an orange")."""
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def caption(template: str, shape: str, colour: str) -> str:
    """Fill a caption template with a shape and a colour name."""
    return template.format(
        shape=shape,
        colour=colour,
        a_shape=_with_article(shape),
        a_colour=_with_article(colour),
    )


def corpus_image(params: SynthParams, stream: int, index: int) -> CorpusImage:
    """The ``index``-th image of a corpus, from its own generator (independent of corpus size)."""
    rng = np.random.default_rng([params.seed, stream, index])
    scene = sample_object_scene(rng, params.corpus_image_size, params.frame_noise)
    track = scene.tracks[0]
    rendered = render_video(scene)
    return CorpusImage(
        image=rendered.frames[0],
        category_id=track.category_id,
        colour=track.appearance.colour,
        mask=rendered.visible[0, 0],
    )


def image_file(index: int) -> str:
    """Path of the ``index``-th image, relative to its corpus folder."""
    return f"images/{index:05d}.jpg"


def write_unlabeled(root: Path, params: SynthParams) -> list[Path]:
    """Write ``root/images/*.jpg`` and ``root/index.json``; return the paths written."""
    written, entries = [], []
    for index in range(params.num_unlabeled_images):
        item = corpus_image(params, UNLABELED_STREAM, index)
        path = root / image_file(index)
        atomic_write_bytes(path, encode_jpeg(item.image, params.jpeg_quality))
        written.append(path)
        entries.append(
            {
                "file": image_file(index),
                "category_id": item.category_id,
                "category": category_by_id(item.category_id).name,
                "colour": item.colour,
            }
        )
    index_path = root / "index.json"
    categories = [{"id": c.id, "name": c.name} for c in CATEGORIES]
    atomic_write_json(index_path, {"categories": categories, "images": entries}, indent=1)
    return [*written, index_path]


def write_captioned(root: Path, params: SynthParams) -> list[Path]:
    """Write ``root/images/*.jpg`` and ``root/captions.jsonl``; return the paths written.

    Each line of ``captions.jsonl``: ``{"file", "caption", "category_id", "colour",
    "segmentation"}`` with ``file`` relative to ``root`` and ``segmentation`` the object's mask
    as a compressed COCO RLE (:func:`uvis.masks.encode`).
    """
    written, lines = [], []
    for index in range(params.num_captioned_images):
        item = corpus_image(params, CAPTIONED_STREAM, index)
        path = root / image_file(index)
        atomic_write_bytes(path, encode_jpeg(item.image, params.jpeg_quality))
        written.append(path)
        # The template is a function of the index, so every template is used evenly.
        template = CAPTION_TEMPLATES[index % len(CAPTION_TEMPLATES)]
        text = caption(template, category_by_id(item.category_id).name, item.colour)
        record = {
            "file": image_file(index),
            "caption": text,
            "category_id": item.category_id,
            "colour": item.colour,
            "segmentation": masks.encode(item.mask),
        }
        lines.append(json.dumps(record) + "\n")
    captions_path = root / "captions.jsonl"
    atomic_write_text(captions_path, "".join(lines))
    return [*written, captions_path]
