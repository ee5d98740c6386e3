"""DeepSORT on constructed moving boxes: motion, gating, appearance, cascade, track life cycle."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from uvis.errors import ConfigError
from uvis.tracking.deepsort import (
    CHI2_95_4DOF,
    BoxKalmanFilter,
    DeepSortConfig,
    DeepSortTracker,
    FrameDetections,
    TrackState,
    matching_cascade,
    min_cost_matching,
    track_class_and_score,
    xyah_to_xywh,
    xywh_to_xyah,
)

E = np.eye(8)  # appearance embeddings: object k is the unit vector e_k


def detections(*objects: tuple[np.ndarray, np.ndarray]) -> FrameDetections:
    """One frame from ``(box [x, y, w, h], embedding)`` pairs, in the given order."""
    if not objects:
        return FrameDetections(np.zeros((0, 4)), np.zeros((0, 8)))
    boxes, embeddings = zip(*objects, strict=True)
    return FrameDetections(np.array(boxes, float), np.array(embeddings, float))


def run(frames: list[FrameDetections], **config) -> DeepSortTracker:
    tracker = DeepSortTracker(DeepSortConfig(**config))
    for f in frames:
        tracker.step(f)
    return tracker


def box_at(x: float, y: float = 40.0) -> np.ndarray:
    return np.array([x, y, 10.0, 20.0])


def test_chi_square_gate_and_box_conversions():
    assert CHI2_95_4DOF == pytest.approx(9.4877, abs=1e-4)
    assert CHI2_95_4DOF == pytest.approx(chi2.ppf(0.95, 4))
    box = np.array([[10.0, 20.0, 30.0, 60.0]])
    np.testing.assert_allclose(xywh_to_xyah(box), [[25.0, 50.0, 0.5, 60.0]])
    np.testing.assert_allclose(xyah_to_xywh(xywh_to_xyah(box)), box)


def test_kalman_filter_learns_constant_velocity():
    """A box moving +3 px/frame in x: after 20 updates the prediction is one step ahead."""
    kf = BoxKalmanFilter(1 / 20, 1 / 160)
    mean, cov = kf.initiate(xywh_to_xyah(box_at(0.0)))
    for t in range(1, 21):
        mean, cov = kf.predict(mean, cov)
        mean, cov = kf.update(mean, cov, xywh_to_xyah(box_at(3.0 * t)))
    mean, cov = kf.predict(mean, cov)
    np.testing.assert_allclose(xyah_to_xywh(mean[:4]), box_at(63.0), atol=0.1)
    assert mean[4] == pytest.approx(3.0, abs=0.05)
    # The gate is the squared Mahalanobis distance in measurement space.
    projected, s = kf.project(mean, cov)
    z = xywh_to_xyah(np.stack([box_at(63.0), box_at(90.0)]))
    expected = [(d @ np.linalg.inv(s) @ d) for d in z - projected]
    np.testing.assert_allclose(kf.gating_distance(mean, cov, z), expected)
    assert expected[0] < CHI2_95_4DOF < expected[1]


def test_two_crossing_objects_keep_their_identities():
    """A moves right, B moves left on the same row; they overlap completely at frame 10.

    Detection order within a frame is shuffled; embeddings are distinct (e0, e1) plus noise.
    """
    rng = np.random.default_rng(0)
    frames, truth = [], []
    for t in range(21):
        objs = [(box_at(10.0 + 4 * t), E[0]), (box_at(90.0 - 4 * t), E[1])]
        order = rng.permutation(2)
        noisy = [(b, e + 0.05 * rng.standard_normal(8)) for b, e in objs]
        frames.append(detections(*(noisy[k] for k in order)))
        truth.append(order)  # detection j of frame t is object order[j]
    tracker = run(frames)
    tracks = tracker.reported_tracks()
    assert len(tracks) == 2
    for track in tracks:
        objects = {int(truth[t][j]) for t, j in track.history}
        assert len(objects) == 1, f"track {track.track_id} switched identity"
        assert [t for t, _ in track.history] == list(range(21))


def test_a_two_frame_gap_is_bridged():
    frames = [
        detections() if t in (5, 6) else detections((box_at(5.0 + 3 * t), E[2])) for t in range(12)
    ]
    tracker = run(frames)
    (track,) = tracker.reported_tracks()
    assert [t for t, _ in track.history] == [t for t in range(12) if t not in (5, 6)]
    assert track.state is TrackState.CONFIRMED


def test_new_object_is_confirmed_after_n_init_frames_and_a_one_off_is_dropped():
    tracker = DeepSortTracker(DeepSortConfig(n_init=3))
    a = [(box_at(10.0 + 2 * t), E[0]) for t in range(8)]
    b = [(box_at(10.0 + 2 * t, y=100.0), E[1]) for t in range(8)]
    states = []
    for t in range(8):
        objs = [a[t]] + ([b[t]] if t >= 4 else []) + ([(box_at(70.0), E[3])] if t == 2 else [])
        tracker.step(detections(*objs))
        states.append({tr.track_id: tr.state for tr in tracker.tracks})
    b_id = 3  # ids in order of birth: a = 1, the one-off = 2, b = 3
    assert states[4][b_id] is TrackState.TENTATIVE  # first detection
    assert states[5][b_id] is TrackState.TENTATIVE  # second
    assert states[6][b_id] is TrackState.CONFIRMED  # third: n_init reached
    assert 2 not in states[3]  # the one-off false positive was deleted at its first miss
    assert [t.track_id for t in tracker.reported_tracks()] == [1, 3]


def test_gating_rejects_an_implausible_jump():
    """Same appearance, but 80 px away from where the constant-velocity model expects it."""
    frames = [detections((box_at(10.0 + 2 * t), E[4])) for t in range(6)]
    frames.append(detections((box_at(10.0 + 2 * 6 + 80.0), E[4])))
    tracker = run(frames)
    first, second = tracker.reported_tracks()
    assert [t for t, _ in first.history] == list(range(6))
    assert [t for t, _ in second.history] == [6]  # a new (tentative) track
    assert first.time_since_update == 1


@pytest.mark.parametrize(("looks_like", "same_track"), [(0, True), (1, False)])
def test_appearance_gate_decides_after_a_miss(looks_like, same_track):
    """A is seen in frames 0-4, missed in frame 5; in frame 6 a detection appears exactly where
    A is expected. It joins A only if it looks like A: after a miss only the cascade (motion
    and appearance gates) can match A, not the IoU stage, which ignores appearance."""
    frames = [detections((box_at(10.0 + 2 * t), E[0])) for t in range(5)]
    frames += [detections(), detections((box_at(22.0), E[looks_like]))]
    tracks = run(frames).reported_tracks()
    assert [t for t, _ in tracks[0].history] == [0, 1, 2, 3, 4] + ([6] if same_track else [])
    assert len(tracks) == (1 if same_track else 2)


def test_cascade_gives_a_detection_to_the_most_recently_seen_track():
    """Track 0 last seen 3 frames ago matches better, but track 1 (seen 1 frame ago) wins."""
    cost = np.array([[0.1], [0.2]])
    admissible = np.ones((2, 1), bool)
    assert matching_cascade(cost, admissible, np.array([3, 1]), max_age=30) == [(1, 0)]
    assert min_cost_matching(cost, admissible) == [(0, 0)]
    assert min_cost_matching(cost, np.array([[False], [False]])) == []
    # Inadmissible pairs never come back, even when the assignment had to use them.
    assert min_cost_matching(np.array([[0.1, 0.5]]), np.array([[False, True]])) == [(0, 1)]


def test_track_class_and_score_is_the_time_averaged_class_probability():
    # Class 3: (0.9 + 0.6) / 3 = 0.5; class 5: 0.8 / 3.
    assert track_class_and_score(np.array([3, 5, 3]), np.array([0.9, 0.8, 0.6])) == (
        3,
        pytest.approx(0.5),
    )
    assert track_class_and_score(np.array([7, 2]), np.array([0.5, 0.5])) == (2, 0.25)  # tie


def test_short_video_keeps_its_tentative_track():
    tracker = run([detections((box_at(5.0), E[0]))])
    (track,) = tracker.reported_tracks()
    assert track.state is TrackState.TENTATIVE and track.history == [(0, 0)]


def test_config_is_validated():
    with pytest.raises(ConfigError, match="n_init"):
        DeepSortConfig(n_init=0)
    with pytest.raises(ConfigError, match="max_cosine_distance"):
        DeepSortConfig(max_cosine_distance=-0.1)
