"""The embedded synthetic video world (``uvis synth``).

A procedurally generated stand-in for the real datasets, written in exactly their formats
(YouTube-VIS JSON + JPEG frames, DAVIS unsupervised palette PNGs, mp4 videos) plus two image
corpora for the stand-in foundation models. Cheap to render on CPU, learnable (categories
differ by shape, colour and texture vary per instance) and hard enough to exercise tracking
(motion, scale change, entering/leaving objects, occlusion, repeated categories).
"""

from uvis.synth.appearance import COLOUR_NAMES, COLOURS, TEXTURES, Appearance
from uvis.synth.corpora import CAPTION_TEMPLATES, caption, corpus_image
from uvis.synth.params import SynthParams
from uvis.synth.render import RenderedVideo, render_video, visible_masks
from uvis.synth.scene import Pillar, Scene, Track, pillar_across, sample_object_scene, sample_scene
from uvis.synth.shapes import CATEGORIES, Category, Pose, category_by_id, rasterise
from uvis.synth.world import generate_world, video_name, video_scene

__all__ = [
    "CAPTION_TEMPLATES",
    "CATEGORIES",
    "COLOURS",
    "COLOUR_NAMES",
    "TEXTURES",
    "Appearance",
    "Category",
    "Pillar",
    "Pose",
    "RenderedVideo",
    "Scene",
    "SynthParams",
    "Track",
    "caption",
    "category_by_id",
    "corpus_image",
    "generate_world",
    "pillar_across",
    "rasterise",
    "render_video",
    "sample_object_scene",
    "sample_scene",
    "video_name",
    "video_scene",
    "visible_masks",
]
