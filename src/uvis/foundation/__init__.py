"""Foundation models: self-supervised ViTs (DINO), CLIP, and the weights they load.

Real weights are described once, in :mod:`uvis.foundation.weights`. The embedded default's
stand-ins are trained by :mod:`uvis.standins` and saved in the same on-disk formats, so the
loading code that serves real checkpoints is the code that runs in tests and CI. This package
only loads: it imports no trainer, no dataset and nothing above it.
"""
