"""Trainers of the embedded stand-ins for the foundation models no one can download here.

The synthetic world (:mod:`uvis.synth`) writes image corpora; these modules train small models
on them with the real models' objectives and save each in its real model's checkpoint format,
so the loaders of :mod:`uvis.foundation` (and the tag-based model's encoder loader) read a
stand-in exactly as they read the released weights:

* :mod:`uvis.standins.dino`: a ViT trained with DINO on ``corpora/unlabeled`` (for MaskCut);
* :mod:`uvis.standins.clip`: an open_clip model trained contrastively on ``corpora/captioned``;
* :mod:`uvis.standins.backbone`: the VIS backbone as a corpus classifier (its ImageNet weights);
* :mod:`uvis.standins.video_encoder`: the (2+1)D encoder as a static-clip classifier (its
  Kinetics-400 weights).

This package sits above everything it trains (it may import :mod:`uvis.model`,
:mod:`uvis.tagvis`, :mod:`uvis.synth`); nothing but the CLI and benchmarks imports it.
"""
