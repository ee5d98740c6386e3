"""uvis: unsupervised video instance segmentation, as a reproducible pipeline."""

__version__ = "0.1.0"
