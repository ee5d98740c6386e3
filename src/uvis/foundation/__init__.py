"""Foundation models: self-supervised ViTs (DINO), CLIP, and the weights they load.

Real weights are described once, in :mod:`uvis.foundation.weights`; the embedded default
trains small stand-ins on the synthetic world and saves them in the same on-disk formats, so
the loading code that serves real checkpoints is the code that runs in tests and CI.
"""
