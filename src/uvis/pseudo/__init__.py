"""Per-frame pseudo-labels (UVIS §3.1): CLIP labels of proposals, prototype memory filtering,
and the measurement of pseudo-label quality against ground truth where a split has it."""
