"""Prototype Memory Filtering (UVIS §3.1) on constructed embeddings whose answers are known.

Clusters sit around orthonormal centres, so the cosine between two centres is exactly 0 and a
point's cosine to its own centre is close to 1; hand-built cases use basis vectors ``e_i``.
"""

from __future__ import annotations

import itertools
import logging

import faiss
import numpy as np
import pyarrow as pa
import pytest

from uvis.errors import ConfigError, DataError
from uvis.prototypes import (
    NO_PROTOTYPE,
    PMFConfig,
    build_prototypes,
    class_k,
    confident_members,
    filter_instances,
    pmf_similarity,
)
from uvis.prototypes.kmeans import resolve_gpu
from uvis.pseudo.levels import LEVELS, select

SQRT_HALF = float(np.sqrt(0.5))


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def orthonormal(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    """``count`` orthonormal rows in ``dim`` dimensions."""
    q, _ = np.linalg.qr(rng.normal(size=(dim, count)))
    return q.T


def cluster(rng: np.random.Generator, centre: np.ndarray, n: int, spread: float) -> np.ndarray:
    """``n`` unit vectors scattered around ``centre`` (per-coordinate noise ``spread``)."""
    return unit(centre + spread * rng.normal(size=(n, centre.size)))


def basis(dim: int, *axes: int) -> np.ndarray:
    """Rows ``e_axis`` of the identity in ``dim`` dimensions."""
    return np.eye(dim)[list(axes)]


def lloyd_reference(x: np.ndarray, init: np.ndarray, niter: int = 50) -> np.ndarray:
    """Textbook spherical k-means: assign to the largest cosine, centroid = normalised mean."""
    centroids = init.copy()
    for _ in range(niter):
        assign = np.argmax(x @ centroids.T, axis=1)
        centroids = unit(np.stack([x[assign == j].mean(axis=0) for j in range(len(centroids))]))
    return centroids


def build(embeddings: np.ndarray, labels: np.ndarray, k: int | None = None, seed: int = 0):
    """``build_prototypes`` with k forced to ``k`` (or the default rule)."""
    cfg = PMFConfig() if k is None else PMFConfig(k_min=k, k_max=k)
    return build_prototypes(
        embeddings,
        labels,
        k_ratio=cfg.k_ratio,
        k_min=cfg.k_min,
        k_max=cfg.k_max,
        niter=cfg.niter,
        seed=seed,
    )


# --------------------------------------------------------------------------------------------
# The k rule


@pytest.mark.parametrize(
    ("n", "k_ratio", "k_min", "k_max", "expected"),
    [
        (0, 0.05, 1, 64, 0),  # empty class: no prototypes
        (1, 0.05, 1, 64, 1),
        (5, 0.05, 1, 64, 1),  # 0.25 rounds to 0, raised to k_min
        (3, 0.05, 5, 64, 3),  # k_min above n: capped at n
        (29, 0.05, 1, 64, 1),  # 1.45 -> 1
        (30, 0.05, 1, 64, 2),  # 1.5 -> 2 (halves round up)
        (50, 0.05, 1, 64, 3),  # 2.5 -> 3 (Python's round would give 2)
        (1280, 0.05, 1, 64, 64),  # exactly k_max
        (100_000, 0.05, 1, 64, 64),  # 5000 capped at k_max
        (10, 0.5, 1, 64, 5),
    ],
)
def test_class_k_rule(n: int, k_ratio: float, k_min: int, k_max: int, expected: int) -> None:
    assert class_k(n, PMFConfig(k_ratio=k_ratio, k_min=k_min, k_max=k_max)) == expected


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="tau"):
        PMFConfig(tau=1.5)
    with pytest.raises(ConfigError, match="k_max"):
        PMFConfig(k_min=8, k_max=4)
    with pytest.raises(ConfigError, match="k_ratio"):
        PMFConfig(k_ratio=0.0)
    for fraction in (0.0, 1.5):
        with pytest.raises(ConfigError, match="prototype_fraction"):
            PMFConfig(prototype_fraction=fraction)
    with pytest.raises(ValueError, match="-1"):
        class_k(-1, PMFConfig())


# --------------------------------------------------------------------------------------------
# Prototypes and similarity


def test_kmeans_recovers_cluster_centres_and_flags_outliers() -> None:
    rng = np.random.default_rng(1)
    centres = orthonormal(rng, 4, 64)  # class A: centres 0-2; class B: centre 3
    a = np.concatenate([cluster(rng, centres[j], 40, 0.01) for j in range(3)])
    b = cluster(rng, centres[3], 40, 0.01)
    clean = np.concatenate([a, b])
    labels = np.repeat([0, 1], [120, 40])

    protos = build(clean, labels, k=3)
    cos = protos[0] @ centres[:3].T  # (prototype, true centre)
    assert sorted(np.argmax(cos, axis=1)) == [0, 1, 2]  # one prototype per true cluster
    assert cos.max(axis=0).min() > 0.99

    # Default k rule (6 prototypes for A, 2 for B): outliers labelled A fail tau = 0.7.
    protos = build(clean, labels)
    assert [len(protos[0]), len(protos[1])] == [6, 2]
    outliers = np.concatenate([unit(rng.normal(size=(10, 64))), cluster(rng, centres[3], 5, 0.01)])
    sim = pmf_similarity(
        np.concatenate([clean, outliers]), np.concatenate([labels, np.zeros(15, int)]), protos
    )
    assert sim[:160].min() > 0.99
    assert sim[160:].max() < 0.7


def test_similarity_is_against_the_rows_own_class() -> None:
    protos = {0: basis(8, 0), 1: basis(8, 1)}
    embeddings = np.stack([basis(8, 1)[0], 3 * basis(8, 0)[0], basis(8, 0)[0] + basis(8, 1)[0]])
    sim = pmf_similarity(embeddings, np.array([0, 0, 1]), protos)
    np.testing.assert_allclose(sim, [0.0, 1.0, SQRT_HALF], atol=1e-6)
    unknown = pmf_similarity(embeddings, np.array([7, 7, 7]), protos)  # class with no prototype
    assert np.all(unknown == NO_PROTOTYPE)


def test_faiss_kmeans_matches_numpy_lloyd_reference() -> None:
    rng = np.random.default_rng(2)
    centres = orthonormal(rng, 4, 16)
    sizes = [10, 25, 40, 80]
    x = np.concatenate([cluster(rng, c, n, 0.15) for c, n in zip(centres, sizes, strict=True)])
    truth = np.repeat(np.arange(4), sizes)
    first_of_each = np.cumsum([0, *sizes[:-1]])
    reference = lloyd_reference(x, x[first_of_each])
    assert np.array_equal(np.argmax(x @ reference.T, axis=1), truth)  # the case is unambiguous

    protos = build(x, np.zeros(len(x), int), k=4)[0]
    assign = np.argmax(x @ protos.T, axis=1)
    # Same partition: each true cluster maps to one prototype, and the map is a bijection.
    match = [int(np.unique(assign[truth == j]).item()) for j in range(4)]
    assert sorted(match) == [0, 1, 2, 3]
    np.testing.assert_allclose(np.sum(protos[match] * reference, axis=1), 1.0, atol=1e-5)


def test_zero_one_and_few_instance_classes() -> None:
    dim = 8
    e = np.eye(dim)
    embeddings = np.stack([2 * e[2], e[3], e[4], e[5], e[6], e[7], e[0]])
    labels = np.array([3, 3, 9, 9, 9, 5, 5])
    clip = np.array([0.9, 0.1, 0.9, 0.9, 0.9, 0.1, 0.1])  # class 5: nobody passes
    cfg = PMFConfig(k_min=5, k_max=8)  # k_min above every class size
    result = filter_instances(np.ones(7), clip, labels, embeddings, cfg)

    assert set(result.prototypes) == {3, 9}
    np.testing.assert_allclose(result.prototypes[3], e[[2]], atol=1e-6)  # its one instance
    assert result.prototypes[9].shape == (3, dim)  # k = n = 3 < k_min
    np.testing.assert_allclose(np.sort(result.prototypes[9] @ e[[4, 5, 6]].T, axis=1)[:, -1], 1.0)
    np.testing.assert_allclose(result.similarity[:5], [1, 0, 1, 1, 1], atol=1e-6)
    assert np.all(result.similarity[5:] == NO_PROTOTYPE)
    assert result.pass_pmf.tolist() == [True, False, True, True, True, False, False]


def test_prototypes_use_only_rows_passing_objectness_and_clip() -> None:
    e = np.eye(8)
    embeddings = np.concatenate([np.tile(e[0], (10, 1)), np.tile(e[1], (10, 1))])
    objectness = np.r_[np.full(10, 0.9), np.full(5, 0.5), np.full(5, 0.9)]
    clip = np.r_[np.full(10, 0.9), np.full(5, 0.9), np.full(5, 0.5)]
    labels = np.zeros(20, int)
    cfg = PMFConfig(tau=0.75, k_min=1, k_max=1)

    result = filter_instances(objectness, clip, labels, embeddings, cfg)
    np.testing.assert_allclose(result.prototypes[0], e[[0]], atol=1e-6)
    np.testing.assert_allclose(result.similarity, np.r_[np.ones(10), np.zeros(10)], atol=1e-6)
    assert result.pass_pmf.tolist() == [True] * 10 + [False] * 10

    # Had the failing rows built the prototype, it would be (e0 + e1) / sqrt 2 and the good rows,
    # at cosine 1/sqrt 2 = 0.707 < tau, would fail PMF.
    everyone = build(embeddings, labels, k=1)
    np.testing.assert_allclose(everyone[0], [(e[0] + e[1]) * SQRT_HALF], atol=1e-6)
    sim = pmf_similarity(embeddings, labels, everyone)
    np.testing.assert_allclose(sim[:10], SQRT_HALF, atol=1e-6)


def test_confident_members_take_each_classs_top_scores() -> None:
    members = np.array([True, True, True, True, False, True, True, True])
    labels = np.array([0, 0, 0, 0, 0, 1, 2, 2])
    score = np.array([0.9, 0.8, 0.99, 0.7, 1.0, 0.75, 0.8, 0.8])
    # Class 0: ceil(0.5 * 4) = 2 of its members, 0.99 and 0.9 (row 4 scores higher but is no
    # member); class 1: its one member; class 2: ceil(0.5 * 2) = 1, the tie going to row 6.
    keep = confident_members(members, labels, score, 0.5)
    assert np.flatnonzero(keep).tolist() == [0, 2, 5, 6]
    # ceil keeps at least one per class; 1.0 keeps every member.
    assert np.flatnonzero(confident_members(members, labels, score, 0.01)).tolist() == [2, 5, 6]
    assert (confident_members(members, labels, score, 1.0) == members).all()
    with pytest.raises(ValueError, match="fraction"):
        confident_members(members, labels, score, 0.0)


def test_prototype_fraction_builds_prototypes_from_confident_members() -> None:
    """A class whose members are mostly non-objects (e0, low CLIP score) and a few objects (e1,
    high score): the paper's prototype points at the non-objects, so PMF keeps them and drops
    the objects; built from the top 30 % by score, it keeps the objects instead."""
    e = np.eye(8)
    embeddings = np.concatenate([np.tile(e[0], (7, 1)), np.tile(e[1], (3, 1))])
    clip = np.r_[np.full(7, 0.8), np.full(3, 0.95)]
    objectness = np.full(10, 0.9)
    labels = np.zeros(10, int)

    paper = filter_instances(objectness, clip, labels, embeddings, PMFConfig(tau=0.9, k_max=1))
    # Mean of 7 e0 + 3 e1, normalised: cosine 7/sqrt(58) = 0.92 to e0, 3/sqrt(58) = 0.39 to e1.
    np.testing.assert_allclose(paper.prototypes[0], unit(np.array([[7, 3, 0, 0, 0, 0, 0, 0.0]])))
    assert paper.pass_pmf.tolist() == [True] * 7 + [False] * 3

    cfg = PMFConfig(tau=0.9, k_max=1, prototype_fraction=0.3)
    confident = filter_instances(objectness, clip, labels, embeddings, cfg)
    np.testing.assert_allclose(confident.prototypes[0], e[[1]], atol=1e-6)
    assert confident.pass_pmf.tolist() == [False] * 7 + [True] * 3
    # The score filters are unchanged: the fraction only chooses who builds the prototypes.
    assert (confident.pass_clip == paper.pass_clip).all()


def test_thresholds_keep_scores_at_or_above() -> None:
    e = np.eye(4)
    result = filter_instances(
        np.array([0.7, 0.6999, 0.9]),
        np.array([0.7, 0.9, 0.6999]),
        np.array([0, 0, 0]),
        e[:3],
        PMFConfig(),
    )
    assert result.pass_objectness.tolist() == [True, False, True]
    assert result.pass_clip.tolist() == [True, True, False]


def test_deterministic_by_seed_and_scale_invariant() -> None:
    rng = np.random.default_rng(3)
    x = unit(rng.normal(size=(300, 16)))
    labels = np.repeat([0, 1], 150)
    first, again = build(x, labels, k=5, seed=0), build(x, labels, k=5, seed=0)
    for label in (0, 1):
        assert np.array_equal(first[label], again[label])
    other = build(x, labels, k=5, seed=1)
    assert not np.allclose(first[0], other[0])  # the seed reaches faiss
    scaled = build(7.0 * x, labels, k=5, seed=0)  # spherical: only directions matter
    np.testing.assert_allclose(scaled[0], first[0], atol=1e-5)


# --------------------------------------------------------------------------------------------
# Table 2 / Table 3 selections


def test_select_levels_and_tau_on_stored_columns() -> None:
    columns = {
        "pass_objectness": np.array([1, 1, 1, 1, 0, 1, 1], bool),
        "pass_clip": np.array([1, 1, 1, 0, 1, 1, 1], bool),
        "pass_pmf": np.array([1, 0, 1, 1, 1, 0, 0], bool),
        "pmf_similarity": np.array([0.95, 0.6, 0.7, 0.99, 0.99, -np.inf, np.nan]),
        "valid_embedding": np.array([1, 1, 1, 1, 1, 1, 0], bool),
    }
    expected = {
        ("none", None): [1, 1, 1, 1, 1, 1, 1],
        ("objectness", None): [1, 1, 1, 1, 0, 1, 1],
        ("clip", None): [1, 1, 1, 0, 0, 1, 1],
        ("pmf", None): [1, 0, 1, 0, 0, 0, 0],
        ("pmf", -1.0): [1, 1, 1, 0, 0, 0, 0],
        ("pmf", 0.5): [1, 1, 1, 0, 0, 0, 0],
        ("pmf", 0.9): [1, 0, 0, 0, 0, 0, 0],
    }
    table = pa.table(columns)
    for (level, tau), keep in expected.items():
        assert select(columns, level, tau).tolist() == [bool(k) for k in keep], (level, tau)
        assert select(table, level, tau).tolist() == [bool(k) for k in keep], (level, tau)


def test_select_is_nested_and_monotone_in_tau() -> None:
    rng = np.random.default_rng(4)
    centres = orthonormal(rng, 6, 32)
    labels = rng.integers(0, 6, 600)
    embeddings = unit(centres[labels] + 0.3 * rng.normal(size=(600, 32)))
    cfg = PMFConfig(tau=0.7)
    result = filter_instances(rng.uniform(size=600), rng.uniform(size=600), labels, embeddings, cfg)

    masks = [select(result, level) for level in LEVELS]
    for wider, narrower in itertools.pairwise(masks):
        assert np.all(wider >= narrower)
    assert masks[0].sum() > masks[1].sum() > masks[2].sum() > masks[3].sum() > 0
    assert np.array_equal(select(result, "pmf", tau=0.7), masks[3])
    sweep = [select(result, "pmf", tau=tau) for tau in (0.0, 0.5, 0.7, 0.9, 1.0)]
    for lower, higher in itertools.pairwise(sweep):
        assert np.all(lower >= higher)
    assert sweep[0].sum() > sweep[3].sum()  # the sweep bites on this data
    stored = pa.table(result.columns())
    for level in LEVELS:
        assert np.array_equal(select(stored, level), select(result, level))


def test_select_rejects_bad_arguments() -> None:
    columns = {"pass_objectness": np.ones(2, bool), "pass_clip": np.ones(2, bool)}
    with pytest.raises(ValueError, match="level"):
        select(columns, "mask")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tau only applies"):
        select(columns, "clip", tau=0.5)
    with pytest.raises(ValueError, match="'pmf_similarity'"):
        select(columns, "pmf", tau=0.5)


# --------------------------------------------------------------------------------------------
# Bad input


def test_unusable_embeddings_are_flagged_counted_and_logged(caplog) -> None:
    rng = np.random.default_rng(5)
    centres = orthonormal(rng, 2, 16)
    labels = np.repeat([0, 1], 20)
    embeddings = unit(centres[labels] + 0.05 * rng.normal(size=(40, 16)))
    bad_rows = [3, 7, 25]
    embeddings[3, 4] = np.nan
    embeddings[7, 0] = np.inf
    embeddings[25] = 0.0
    cfg = PMFConfig(k_min=2, k_max=2)
    with caplog.at_level(logging.WARNING):
        result = filter_instances(
            np.ones(40), np.ones(40), labels, embeddings, cfg, source="video7.parquet"
        )
    assert "video7.parquet: 3 of 40 rows" in caplog.text and "first: row 3" in caplog.text
    assert result.n_invalid == 3
    assert np.flatnonzero(~result.valid_embedding).tolist() == bad_rows
    assert np.all(np.isnan(result.similarity[bad_rows]))
    assert not result.pass_pmf[bad_rows].any()
    assert result.pass_pmf.sum() == 37

    good = np.setdiff1d(np.arange(40), bad_rows)
    clean = filter_instances(np.ones(37), np.ones(37), labels[good], embeddings[good], cfg)
    for label in (0, 1):
        assert np.array_equal(result.prototypes[label], clean.prototypes[label])

    with pytest.raises(DataError, match=r"3 of 40 rows .* \(first: row 3\)"):
        build(embeddings, labels)


def test_bad_scores_and_shapes() -> None:
    e = np.eye(4)
    objectness = np.array([0.9, np.nan, 0.8, np.nan])
    with pytest.raises(DataError, match=r"^pl\.parquet: 2 rows .*objectness.*first: row 1"):
        filter_instances(
            objectness, np.ones(4), np.zeros(4, int), e, PMFConfig(), source="pl.parquet"
        )
    with pytest.raises(ValueError, match=r"\(5,\).*\(4, 4\)"):
        filter_instances(np.ones(4), np.ones(4), np.zeros(5, int), e, PMFConfig())
    with pytest.raises(ValueError, match=r"clip_score has shape \(3,\)"):
        filter_instances(np.ones(4), np.ones(3), np.zeros(4, int), e, PMFConfig())
    with pytest.raises(ValueError, match="integer"):
        pmf_similarity(e, np.zeros(4), {})
    with pytest.raises(ValueError, match=r"expected \(k, 4\)"):
        pmf_similarity(e, np.zeros(4, int), {0: np.eye(3)})


@pytest.mark.skipif(faiss.get_num_gpus() > 0, reason="a GPU is present")
def test_gpu_is_used_only_when_present() -> None:
    assert resolve_gpu(None) is False
    with pytest.raises(ValueError, match="no GPU"):
        resolve_gpu(True)


def test_no_rows_at_all_gives_no_prototypes_and_fails_every_row():
    from uvis.prototypes import PMFConfig, build_prototypes, filter_instances

    empty = build_prototypes(
        np.zeros((0, 4), np.float32),
        np.zeros(0, np.int64),
        k_ratio=0.1,
        k_min=1,
        k_max=4,
        niter=5,
        seed=0,
    )
    assert empty == {}
    emb = np.eye(4, dtype=np.float32)[:3]
    result = filter_instances(
        np.full(3, 0.1), np.full(3, 0.9), np.array([1, 1, 2]), emb, PMFConfig()
    )  # nothing passes objectness, so no class gets a prototype
    assert result.prototypes == {} and not result.pass_pmf.any()
    assert np.isneginf(result.similarity).all()
