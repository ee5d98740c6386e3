"""Query matching (MinVIS) and the tracking memory (UVIS eqs. 2 and 3) on constructed embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from uvis.tracking.matching import (
    TrackingMemory,
    match_queries,
    memory_reference,
    normalise_queries,
    update_memory_mean,
)


def _track(frames: list[np.ndarray], lam: float) -> list[np.ndarray]:
    memory = TrackingMemory(lam)
    return [memory.match(normalise_queries(f)) for f in frames]


def test_match_queries_recovers_a_permutation():
    rng = np.random.default_rng(1)
    reference = rng.standard_normal((6, 16))
    order = np.array([4, 0, 5, 1, 3, 2])  # current query j shows reference row order[j]
    current = 3.0 * reference[order] + 0.05 * rng.standard_normal((6, 16))  # norm is ignored
    perm = match_queries(reference, current)
    np.testing.assert_array_equal(order[perm], np.arange(6))


@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_known_permutations_are_recovered_over_many_frames(lam):
    """20 identities, each frame shows them in a new random query order with noise."""
    rng = np.random.default_rng(0)
    identities = rng.standard_normal((20, 32))
    orders = [rng.permutation(20) for _ in range(60)]
    frames = [identities[o] + 0.3 * rng.standard_normal((20, 32)) for o in orders]
    perms = _track(frames, lam)
    # Track i is query i of the first frame, i.e. identity orders[0][i], in every frame.
    for order, perm in zip(orders, perms, strict=True):
        np.testing.assert_array_equal(order[perm], orders[0])


def test_lambda_one_equals_plain_frame_to_frame_matching():
    """With lam = 1 eq. 2 is P[Q^t] itself: the same permutations as MinVIS, bit for bit."""
    rng = np.random.default_rng(2)
    base = rng.standard_normal((12, 8))
    frames = [
        base[rng.permutation(12)] + 1.2 * rng.standard_normal((12, 8)) for _ in range(40)
    ]  # so noisy that matching makes mistakes, which both must make identically
    plain = [np.arange(12)]
    prev = normalise_queries(frames[0])
    for frame in frames[1:]:
        queries = normalise_queries(frame)
        plain.append(match_queries(prev, queries))
        prev = queries[plain[-1]]
    with_lambda_one = _track(frames, 1.0)
    for a, b in zip(plain, with_lambda_one, strict=True):
        np.testing.assert_array_equal(a, b)
    # The comparison has teeth: with memory, the noisy frames are matched differently.
    with_memory = _track(frames, 0.5)
    assert any(not np.array_equal(a, b) for a, b in zip(plain, with_memory, strict=True))


def test_memory_reference_rules():
    prev = np.array([[1.0, 2.0], [3.0, -4.0]])
    mean = np.array([[5.0, 0.0], [1.0, 1.0]])
    np.testing.assert_array_equal(memory_reference(prev, mean, 1.0), prev)
    np.testing.assert_array_equal(memory_reference(prev, None, 0.5), prev)  # second frame
    np.testing.assert_allclose(memory_reference(prev, mean, 0.25), [[4.0, 0.5], [1.5, -0.25]])
    with pytest.raises(ValueError, match="lambda"):
        memory_reference(prev, mean, 1.5)


def test_running_mean_equals_the_explicit_mean_of_eq3():
    rng = np.random.default_rng(3)
    matched = [rng.standard_normal((5, 7)) for _ in range(30)]
    mean = None
    for count, m in enumerate(matched):
        mean = update_memory_mean(mean, count, m)
        np.testing.assert_allclose(mean, np.mean(matched[: count + 1], axis=0), atol=1e-12)


def test_tracking_memory_mean_covers_the_frames_before_the_last():
    """After frame t, mu is the mean of the matched queries of frames 0..t-1 (eq. 3 for t+1)."""
    rng = np.random.default_rng(4)
    memory = TrackingMemory(0.5)
    matched = []
    for t in range(6):
        queries = normalise_queries(rng.standard_normal((4, 3)))
        perm = memory.match(queries)
        matched.append(queries[perm])
        if t == 0:
            assert memory.memory_mean is None
        else:
            np.testing.assert_allclose(memory.memory_mean, np.mean(matched[:-1], axis=0))
        np.testing.assert_array_equal(memory.prev_matched, matched[-1])


def test_memory_keeps_identities_that_one_corrupted_frame_swaps_for_plain_matching():
    """Two objects, A and B, queries 0 and 1 in every frame, embeddings in 3-D.

    Frames 0-4 are clean: A = e1, B = e2. Frame 5 is corrupted (think motion blur): both
    queries collapse onto e1 + e2; they differ slightly along e1 - e2 (+-0.1) and mostly by a
    spurious e3 component (-+0.5): u = (1.1, 0.9, -0.5), v = (0.9, 1.1, 0.5). Frame 6 is clean
    again, but A now shows some e3 and B some -e3: a = (1, 0, 0.5), b = (0, 1, -0.5).

    For two queries of equal norms, the assignment keeps the identities iff
    (ref_A - ref_B) . (a - b) > 0 (normalised rows).
    - Frame 5 against frame 4: (e1 - e2) . (u - v) = 0.2 + 0.2 = 0.4 > 0: both methods keep
      A and B.
    - Frame 6, plain matching (reference = frame 5): (u - v) . (a - b) / |u|
      = (0.2 + 0.2 - 1.0 * 1.0) / 1.507 = -0.40 < 0: A and B swap.
    - Frame 6 with memory, lam = 0.5 (reference = 0.5 * frame 5 + 0.5 * mean of frames 0-4,
      which is e1 for A and e2 for B): 0.5 * (-0.40) + 0.5 * (e1 - e2) . (a - b)
      = -0.20 + 0.5 * 2 = 0.80 > 0: A and B are kept. The memory remembers what A and B
      looked like before the corrupted frame, which plain matching has forgotten.
    """
    clean = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    corrupted = np.array([[1.1, 0.9, -0.5], [0.9, 1.1, 0.5]])
    changed = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5]])
    frames = [clean] * 5 + [corrupted, changed]

    plain = _track(frames, 1.0)
    memory = _track(frames, 0.5)

    for t in range(6):
        np.testing.assert_array_equal(plain[t], [0, 1])
        np.testing.assert_array_equal(memory[t], [0, 1])
    np.testing.assert_array_equal(plain[6], [1, 0])  # swapped: track A takes B's query
    np.testing.assert_array_equal(memory[6], [0, 1])  # kept


def test_queries_must_keep_their_shape_and_be_finite():
    memory = TrackingMemory(0.5)
    memory.match(normalise_queries(np.eye(3)))
    with pytest.raises(ValueError, match="number of queries"):
        memory.match(normalise_queries(np.eye(4)))
    with pytest.raises(ValueError, match="NaN"):
        normalise_queries(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="lambda"):
        TrackingMemory(-0.1)
