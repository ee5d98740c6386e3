"""Regression: CLIP training batches are never empty (an empty batch made the loss NaN)."""

from __future__ import annotations

import numpy as np
import torch

from uvis.standins.clip import epoch_batches


def test_epoch_batches_are_full_disjoint_and_never_empty():
    groups = np.array([0] * 5 + [1] * 40 + [2] * 3)  # groups smaller and larger than a batch
    batches = epoch_batches(groups, 16, torch.Generator().manual_seed(0))
    assert batches and all(len(b) == 16 for b in batches)
    seen = torch.cat(batches).tolist()
    assert len(seen) == len(set(seen)) == 48  # 40 in group 1 -> 2 full + 8 pooled with 8 others


def test_single_group_smaller_than_a_batch_gives_no_batch():
    assert epoch_batches(np.zeros(5, np.int64), 16, torch.Generator().manual_seed(0)) == []
