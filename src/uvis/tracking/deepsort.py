"""DeepSORT (Wojke, Bewley, Paulus 2017), the training-free tracking baseline of UVIS Table 1.

Written from the paper. Per frame, detections (boxes and unit appearance embeddings) are
associated with tracks as follows; each rule is one function or method below.

- Motion (:class:`BoxKalmanFilter`): a Kalman filter on the box centre ``(x, y)``, aspect ratio
  ``a = w / h``, height ``h`` and their velocities, with a constant-velocity model and a linear
  observation of ``(x, y, a, h)``. The paper does not give the noise levels; as in the
  authors' release, the standard deviations are proportional to the box height
  (``std_position * h`` for positions and ``std_velocity * h`` for velocities), so the filter
  behaves the same at every image scale.
- Gating (:func:`admissible_pairs`): a pair is admissible when the squared Mahalanobis distance
  between the detection and the track's predicted measurement is at most the 0.95 quantile of
  the chi-square distribution with 4 degrees of freedom (9.4877), *and* the appearance distance
  is at most ``max_cosine_distance``.
- Appearance (:func:`appearance_distance`): the smallest cosine distance ``1 - r_j . r_k``
  between the detection and the track's gallery of its last ``budget`` associated embeddings.
- Cost (:func:`association_cost`): ``lam * d_mahalanobis + (1 - lam) * d_appearance``; the paper
  uses ``lam = 0`` (motion only gates), our default.
- Matching cascade (:func:`matching_cascade`): confirmed tracks are matched by increasing time
  since their last update (1, 2, ..., ``max_age``), each group by a minimum-cost assignment
  (:func:`min_cost_matching`) against the detections still unmatched, so a recently seen track
  wins a detection over one that has been lost for longer.
- IoU association (:func:`iou_cost`): the unconfirmed tracks and the confirmed ones missed
  only in this frame (time since update 1) are then matched to the remaining detections on
  ``1 - IoU`` of the predicted box, admissible up to ``max_iou_distance`` (SORT's rule).
- Track management (:meth:`DeepSortTracker.step`): every unmatched detection starts a
  tentative track; a tentative track is confirmed after ``n_init`` consecutive associations
  (its first detection included) and deleted at its first miss; a confirmed track is deleted
  once its time since update exceeds ``max_age``.

For video instance segmentation, :func:`is_reported` decides which tracks become results and
:func:`track_class_and_score` their class and score (rules of this project, documented there).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.optimize import linear_sum_assignment
from scipy.stats import chi2

from uvis.errors import ConfigError

CHI2_95_4DOF = float(chi2.ppf(0.95, 4))
"""Mahalanobis gate: 0.95 quantile of chi-square with 4 degrees of freedom (9.4877)."""

_INADMISSIBLE = 1e5
"""Cost given to inadmissible pairs: large enough that an assignment takes as many admissible
pairs as it can, and such pairs are then discarded."""


@dataclass(frozen=True)
class DeepSortConfig:
    """DeepSORT's parameters; the defaults are the paper's except ``max_cosine_distance``.

    ``max_cosine_distance`` (the paper's appearance gate ``t(2)``, which it sets on its
    training data) is set for the stand-in CLIP embeddings on the synthetic world's *train*
    split: among pseudo-labels kept by the CLIP-score filter and matched to ground truth, the
    cosine distance between the same object in consecutive frames is <= 0.3 for 93 % of pairs
    (median 0.02), between different objects for 19 % (median 0.75). The motion gate rejects
    most of the rest. A real CLIP model may want another value.
    """

    max_cosine_distance: float = 0.3
    max_iou_distance: float = 0.7
    max_age: int = 30
    n_init: int = 3
    budget: int = 100
    gating_threshold: float = CHI2_95_4DOF
    motion_weight: float = 0.0
    std_position: float = 1.0 / 20
    std_velocity: float = 1.0 / 160

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_cosine_distance <= 2.0:
            raise ConfigError(
                f"max_cosine_distance is a cosine distance in [0, 2], got "
                f"{self.max_cosine_distance}"
            )
        if not 0.0 <= self.max_iou_distance <= 1.0:
            raise ConfigError(f"max_iou_distance must be in [0, 1], got {self.max_iou_distance}")
        for key in ("max_age", "n_init", "budget"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not self.gating_threshold > 0:
            raise ConfigError(f"gating_threshold must be > 0, got {self.gating_threshold}")
        if not 0.0 <= self.motion_weight <= 1.0:
            raise ConfigError(f"motion_weight must be in [0, 1], got {self.motion_weight}")
        if not (self.std_position > 0 and self.std_velocity > 0):
            raise ConfigError("std_position and std_velocity must be > 0")


# ---------------------------------------------------------------------------------------------
# Boxes


def xywh_to_xyah(boxes: np.ndarray) -> np.ndarray:
    """Boxes ``[x, y, w, h]`` (top-left corner) -> measurements ``[cx, cy, w / h, h]``."""
    boxes = np.asarray(boxes, dtype=np.float64)
    out = boxes.copy()
    out[..., :2] += boxes[..., 2:] / 2
    out[..., 2] = boxes[..., 2] / boxes[..., 3]
    return out


def xyah_to_xywh(measurements: np.ndarray) -> np.ndarray:
    """Measurements ``[cx, cy, a, h]`` -> boxes ``[x, y, w, h]`` (inverse of :func:`xywh_to_xyah`)."""
    m = np.asarray(measurements, dtype=np.float64)
    width = m[..., 2] * m[..., 3]
    out = m.copy()
    out[..., 2] = width
    out[..., 0] = m[..., 0] - width / 2
    out[..., 1] = m[..., 1] - m[..., 3] / 2
    return out


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[x, y, w, h]`` box with each of ``boxes`` (N, 4); 0 for empty unions."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    y1 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# ---------------------------------------------------------------------------------------------
# Motion


class BoxKalmanFilter:
    """Constant-velocity Kalman filter on ``(cx, cy, a, h)`` and their velocities (one frame = 1).

    The state is ``(cx, cy, a, h, vx, vy, va, vh)``; the measurement is its first half. Noise
    standard deviations scale with the box height ``h``, except those of the aspect ratio,
    which is scale-free.
    """

    ndim = 4

    def __init__(self, std_position: float, std_velocity: float) -> None:
        self.std_position = std_position
        self.std_velocity = std_velocity
        self.motion = np.eye(2 * self.ndim)
        self.motion[: self.ndim, self.ndim :] = np.eye(self.ndim)
        self.observation = np.eye(self.ndim, 2 * self.ndim)

    def initiate(self, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of a new track from its first measurement (velocity 0)."""
        mean = np.concatenate([measurement, np.zeros(self.ndim)])
        h = measurement[3]
        std = [
            *(
                2 * self.std_position * h,
                2 * self.std_position * h,
                1e-2,
                2 * self.std_position * h,
            ),
            *(10 * self.std_velocity * h, 10 * self.std_velocity * h, 1e-5),
            10 * self.std_velocity * h,
        ]
        return mean, np.diag(np.square(std))

    def predict(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame ahead: ``x' = F x``, ``P' = F P F^T + Q``."""
        h = mean[3]
        std = [
            *(self.std_position * h, self.std_position * h, 1e-2, self.std_position * h),
            *(self.std_velocity * h, self.std_velocity * h, 1e-5, self.std_velocity * h),
        ]
        mean = self.motion @ mean
        covariance = self.motion @ covariance @ self.motion.T + np.diag(np.square(std))
        return mean, covariance

    def project(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The predicted measurement and its covariance ``S = H P H^T + R``."""
        h = mean[3]
        std = [self.std_position * h, self.std_position * h, 1e-1, self.std_position * h]
        projected_cov = self.observation @ covariance @ self.observation.T
        return self.observation @ mean, projected_cov + np.diag(np.square(std))

    def update(
        self, mean: np.ndarray, covariance: np.ndarray, measurement: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Correct the state with a measurement (Kalman gain ``K = P H^T S^-1``)."""
        projected, s = self.project(mean, covariance)
        gain = cho_solve(cho_factor(s), self.observation @ covariance).T
        mean = mean + gain @ (measurement - projected)
        covariance = covariance - gain @ s @ gain.T
        return mean, covariance

    def gating_distance(
        self, mean: np.ndarray, covariance: np.ndarray, measurements: np.ndarray
    ) -> np.ndarray:
        """Squared Mahalanobis distance of each measurement (N, 4) to the predicted one."""
        projected, s = self.project(mean, covariance)
        lower = np.linalg.cholesky(s)
        z = solve_triangular(lower, (measurements - projected).T, lower=True)
        return np.sum(z * z, axis=0)


# ---------------------------------------------------------------------------------------------
# Tracks


class TrackState(enum.Enum):
    """Life cycle of a track."""

    TENTATIVE = "tentative"
    CONFIRMED = "confirmed"
    DELETED = "deleted"


@dataclass
class Track:
    """One DeepSORT track: its filter state, appearance gallery and associations.

    ``time_since_update`` is the paper's ``a_k`` (frames since the last association, counted
    at prediction); ``history`` lists ``(frame, detection index in that frame)`` in order.
    """

    track_id: int
    mean: np.ndarray
    covariance: np.ndarray
    gallery: deque[np.ndarray]
    state: TrackState = TrackState.TENTATIVE
    hits: int = 1
    time_since_update: int = 0
    history: list[tuple[int, int]] = field(default_factory=list)

    def predicted_box(self) -> np.ndarray:
        """The track's current box ``[x, y, w, h]`` from its filter mean."""
        return xyah_to_xywh(self.mean[:4])


@dataclass(frozen=True)
class FrameDetections:
    """The detections of one frame: boxes ``[x, y, w, h]`` (N, 4), unit embeddings (N, D)."""

    boxes: np.ndarray
    embeddings: np.ndarray

    def __post_init__(self) -> None:
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"boxes must be (N, 4), got {self.boxes.shape}")
        if self.embeddings.ndim != 2 or len(self.embeddings) != len(self.boxes):
            raise ValueError(
                f"embeddings must be (N={len(self.boxes)}, D), got {self.embeddings.shape}"
            )
        if len(self.boxes) and not (self.boxes[:, 2:] > 0).all():
            raise ValueError("boxes must have positive width and height")

    def __len__(self) -> int:
        return len(self.boxes)


# ---------------------------------------------------------------------------------------------
# Association rules


def appearance_distance(tracks: Sequence[Track], embeddings: np.ndarray) -> np.ndarray:
    """(T, N): smallest cosine distance between each track's gallery and each detection."""
    cost = np.empty((len(tracks), len(embeddings)))
    for i, track in enumerate(tracks):
        gallery = np.stack(track.gallery)
        cost[i] = 1.0 - (gallery @ embeddings.T).max(axis=0)
    return cost


def mahalanobis_distance(
    kf: BoxKalmanFilter, tracks: Sequence[Track], measurements: np.ndarray
) -> np.ndarray:
    """(T, N): squared Mahalanobis distance of each detection to each track's prediction."""
    cost = np.empty((len(tracks), len(measurements)))
    for i, track in enumerate(tracks):
        cost[i] = kf.gating_distance(track.mean, track.covariance, measurements)
    return cost


def admissible_pairs(
    mahalanobis: np.ndarray, appearance: np.ndarray, config: DeepSortConfig
) -> np.ndarray:
    """The paper's gate ``b = b1 * b2``: both the motion and the appearance gate pass."""
    return (mahalanobis <= config.gating_threshold) & (appearance <= config.max_cosine_distance)


def association_cost(
    mahalanobis: np.ndarray, appearance: np.ndarray, config: DeepSortConfig
) -> np.ndarray:
    """The paper's cost ``c = lam * d1 + (1 - lam) * d2`` (``lam`` = ``motion_weight``)."""
    lam = config.motion_weight
    return lam * mahalanobis + (1.0 - lam) * appearance


def iou_cost(tracks: Sequence[Track], boxes: np.ndarray) -> np.ndarray:
    """(T, N): ``1 - IoU`` between each track's predicted box and each detection box."""
    cost = np.empty((len(tracks), len(boxes)))
    for i, track in enumerate(tracks):
        cost[i] = 1.0 - box_iou(track.predicted_box(), boxes)
    return cost


def min_cost_matching(cost: np.ndarray, admissible: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one assignment restricted to admissible pairs, as (row, col) pairs.

    Solved with the Hungarian algorithm on the cost with inadmissible pairs priced out; such
    pairs never appear in the result.
    """
    if cost.size == 0 or not admissible.any():
        return []
    priced = np.where(admissible, cost, _INADMISSIBLE)
    rows, cols = linear_sum_assignment(priced)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if admissible[r, c]]


def matching_cascade(
    cost: np.ndarray, admissible: np.ndarray, time_since_update: np.ndarray, max_age: int
) -> list[tuple[int, int]]:
    """The paper's matching cascade over (track, detection) ``cost`` and ``admissible`` (T, N).

    For ``n = 1 .. max_age``, the tracks whose time since update is ``n`` are matched by
    :func:`min_cost_matching` to the detections not matched by an earlier group.
    """
    matches: list[tuple[int, int]] = []
    unmatched = np.arange(cost.shape[1])
    for level in range(1, max_age + 1):
        if unmatched.size == 0:
            break
        rows = np.flatnonzero(time_since_update == level)
        if rows.size == 0:
            continue
        pairs = min_cost_matching(
            cost[np.ix_(rows, unmatched)], admissible[np.ix_(rows, unmatched)]
        )
        matches += [(int(rows[r]), int(unmatched[c])) for r, c in pairs]
        unmatched = np.delete(unmatched, [c for _, c in pairs])
    return matches


# ---------------------------------------------------------------------------------------------
# Tracker


class DeepSortTracker:
    """DeepSORT over one video: call :meth:`step` once per frame, then :meth:`reported_tracks`."""

    def __init__(self, config: DeepSortConfig) -> None:
        self.config = config
        self.kf = BoxKalmanFilter(config.std_position, config.std_velocity)
        self.tracks: list[Track] = []
        self.finished: list[Track] = []
        self.frame = 0
        self._next_id = 1

    def step(self, detections: FrameDetections) -> list[tuple[int, int]]:
        """Process the next frame; returns its ``(track_id, detection index)`` associations."""
        for track in self.tracks:
            track.mean, track.covariance = self.kf.predict(track.mean, track.covariance)
            track.time_since_update += 1
        measurements = xywh_to_xyah(detections.boxes)
        matches = self._associate(detections, measurements)
        matched_tracks = {i for i, _ in matches}
        for i, j in matches:
            self._update(self.tracks[i], measurements[j], detections.embeddings[j], j)
        for i, track in enumerate(self.tracks):
            if i not in matched_tracks:
                self._mark_missed(track)
        associations = [(self.tracks[i].track_id, j) for i, j in matches]
        matched_dets = {j for _, j in matches}
        for j in range(len(detections)):
            if j not in matched_dets:
                self._start_track(measurements[j], detections.embeddings[j], j)
        self.finished += [t for t in self.tracks if t.state is TrackState.DELETED]
        self.tracks = [t for t in self.tracks if t.state is not TrackState.DELETED]
        self.frame += 1
        return associations

    def reported_tracks(self) -> list[Track]:
        """Every track that becomes a result (:func:`is_reported`), in order of birth."""
        tracks = [t for t in self.finished + self.tracks if is_reported(t, self.config)]
        return sorted(tracks, key=lambda t: t.track_id)

    def _associate(
        self, detections: FrameDetections, measurements: np.ndarray
    ) -> list[tuple[int, int]]:
        """Matching cascade for confirmed tracks, then IoU matching; (track row, detection)."""
        cfg = self.config
        confirmed = [i for i, t in enumerate(self.tracks) if t.state is TrackState.CONFIRMED]
        matches: list[tuple[int, int]] = []
        if confirmed and len(detections):
            tracks = [self.tracks[i] for i in confirmed]
            maha = mahalanobis_distance(self.kf, tracks, measurements)
            appearance = appearance_distance(tracks, detections.embeddings)
            ages = np.array([t.time_since_update for t in tracks])
            pairs = matching_cascade(
                association_cost(maha, appearance, cfg),
                admissible_pairs(maha, appearance, cfg),
                ages,
                cfg.max_age,
            )
            matches = [(confirmed[r], c) for r, c in pairs]
        taken_tracks = {i for i, _ in matches}
        candidates = [
            i
            for i, t in enumerate(self.tracks)
            if i not in taken_tracks
            and (t.state is TrackState.TENTATIVE or t.time_since_update == 1)
        ]
        free = np.array(sorted(set(range(len(detections))) - {j for _, j in matches}), int)
        if candidates and free.size:
            cost = iou_cost([self.tracks[i] for i in candidates], detections.boxes[free])
            pairs = min_cost_matching(cost, cost <= cfg.max_iou_distance)
            matches += [(candidates[r], int(free[c])) for r, c in pairs]
        return matches

    def _update(
        self, track: Track, measurement: np.ndarray, embedding: np.ndarray, index: int
    ) -> None:
        track.mean, track.covariance = self.kf.update(track.mean, track.covariance, measurement)
        track.gallery.append(embedding)
        track.hits += 1
        track.time_since_update = 0
        track.history.append((self.frame, index))
        if track.state is TrackState.TENTATIVE and track.hits >= self.config.n_init:
            track.state = TrackState.CONFIRMED

    def _mark_missed(self, track: Track) -> None:
        if track.state is TrackState.TENTATIVE or track.time_since_update > self.config.max_age:
            track.state = TrackState.DELETED

    def _start_track(self, measurement: np.ndarray, embedding: np.ndarray, index: int) -> None:
        mean, covariance = self.kf.initiate(measurement)
        track = Track(
            track_id=self._next_id,
            mean=mean,
            covariance=covariance,
            gallery=deque([embedding], maxlen=self.config.budget),
            history=[(self.frame, index)],
        )
        if self.config.n_init == 1:
            track.state = TrackState.CONFIRMED
        self.tracks.append(track)
        self._next_id += 1


def is_reported(track: Track, config: DeepSortConfig) -> bool:
    """Whether a track becomes a video result: it was confirmed at some point (``n_init``
    associations), or it is still tentative when the video ends.

    DeepSORT reports confirmed tracks only; a track still tentative at the end of the video
    has matched in every frame since it started (a miss would have deleted it) and was cut
    short by the video's end, not rejected, so it is kept (otherwise a video shorter than
    ``n_init`` frames could have no result at all). Tracks deleted while tentative are not.
    """
    return track.hits >= config.n_init or track.state is TrackState.TENTATIVE


def track_class_and_score(class_ids: np.ndarray, class_scores: np.ndarray) -> tuple[int, float]:
    """Category and score of a track from its detections' CLIP classes and class scores.

    Each detection is a class distribution that puts its class score on its CLIP class (and
    nothing on the others, which are not stored); the track's class distribution is the mean
    over its detections (the time average, as for query tracking), its category the argmax
    (ties: the smallest id) and its score that mean probability. So a track whose detections
    disagree on the class, or have low class scores, scores low.
    """
    if len(class_ids) == 0:
        raise ValueError("a track has at least one detection")
    classes, inverse = np.unique(np.asarray(class_ids), return_inverse=True)
    totals = np.bincount(inverse, weights=np.asarray(class_scores, dtype=np.float64))
    best = int(np.argmax(totals))
    return int(classes[best]), float(totals[best] / len(class_ids))
