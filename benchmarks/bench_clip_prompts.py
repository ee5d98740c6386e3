"""Zero-shot accuracy of the CLIP stand-in on video object crops under different prompt sets
(CLIP's prompt ensembling) and with horizontal-flip test-time averaging.

Usage::

    python benchmarks/bench_clip_prompts.py WORLD CLIP.pt [--split valid] [--video-stride 1]

The crops are cut as the ``clip_scores`` rule cuts them (box margin 0.1, background outside the
mask filled with its mean, ``longest`` resize). Prompt sets:

* ``single``: the pipeline's default, CLIP's "a photo of a {}.";
* ``colourless``: the captioned corpus's caption forms with the colour word left out;
* ``colours``: "a photo of a <colour> {}" for each of the world's colour names;
* ``captions x colours``: every caption form whose article belongs to the colour, for every
  colour name (48 prompts), i.e. the caption distribution the stand-in was trained on, with the
  colour marginalised out.

Choose settings on the train split or on another world's valid split, never on the default
world's valid split.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from bench_clip_errors import add_arguments, model_and_crops

from uvis.foundation.clip import classify, image_embeddings, text_embeddings
from uvis.synth import COLOUR_NAMES
from uvis.synth.corpora import CAPTION_TEMPLATES, caption

#: The corpus's caption forms whose article belongs to the colour, the shape left as ``{}``.
COLOUR_FORMS = tuple(t for t in CAPTION_TEMPLATES if "{a_colour}" in t)

PROMPT_SETS: dict[str, tuple[str, ...]] = {
    "single": ("a photo of a {}.",),
    "colourless": (
        "a photo of a {}",
        "a {}",
        "a picture of a {}",
        "a {} on a textured background",
        "a drawing of a {}",
        "there is a {} in the image",
        "a close-up photo of a {}",
    ),
    "colours": tuple(caption(CAPTION_TEMPLATES[0], "{}", c) for c in COLOUR_NAMES),
    "captions x colours": tuple(caption(t, "{}", c) for t in COLOUR_FORMS for c in COLOUR_NAMES),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, split="valid", video_stride=1)
    args = parser.parse_args()

    torch.set_num_threads(1)
    bundle, found = model_and_crops(args)
    images = image_embeddings(bundle, found.masked)
    flipped = image_embeddings(bundle, [np.ascontiguousarray(c[:, ::-1]) for c in found.masked])
    both = torch.nn.functional.normalize(images + flipped, dim=-1)
    small = found.sides < 18
    print(f"{args.world} {args.split}: {len(found.masked)} masked crops "
          f"({small.mean():.0%} under 18 px)")  # fmt: skip
    print("| prompts | n | accuracy | + flip average | under 18 px (+ flip) |")
    print("|---|---:|---:|---:|---:|")
    for name, templates in PROMPT_SETS.items():
        text = text_embeddings(bundle, found.names, templates=templates)
        acc = []
        for emb in (images, both):
            pred = classify(emb, text, bundle.logit_scale).class_index.numpy()
            acc.append(pred == found.labels)
        print(f"| {name} | {len(templates)} | {acc[0].mean():.1%} | {acc[1].mean():.1%} | "
              f"{acc[0][small].mean():.1%} ({acc[1][small].mean():.1%}) |")  # fmt: skip


if __name__ == "__main__":
    main()
