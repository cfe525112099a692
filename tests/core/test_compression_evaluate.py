"""Compression evaluation against docs/science.md §4.3's synthetic reference table, and its contract.

The reference data: d = 384, 20,000 database vectors and 1,000 held-out queries, 200 Gaussian
clusters whose centres and within-cluster noise (scale 0.5) follow the covariance spectrum
λ_i ∝ 1/i in a random rotation; each row is normalised, a common direction 0.6·u is added,
and rows are normalised again. Its average random cosine is 0.273 as in the reference (and
the PCA variance kept by 16/32/64/128/192 components .53/.66/.79/.92/.96 against the
reference's .51/.65/.79/.91/.96), so the table's recall numbers are regression oracles.
Ground truth is exact cosine (= inner product on unit rows) top-10.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from embscope.core.compression import (
    PCACodec,
    compressed_vectors,
    evaluate_codecs,
    parse_codec_spec,
    save_compressed_copy,
)
from embscope.core.errors import InvalidInputError, OperationCancelled
from embscope.core.index import exact_knn
from tests.helpers import make_parsed

N_DB, N_Q, D = 20_000, 1_000, 384


def reference_data(n: int = N_DB + N_Q, d: int = D, seed: int = 0) -> np.ndarray:
    """docs/science.md §4.3's "embedding-like" synthetic data (see the module docstring)."""
    rng = np.random.default_rng(seed)
    scale = np.sqrt(1.0 / np.arange(1, d + 1))
    rotation, _ = np.linalg.qr(rng.standard_normal((d, d)))
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    labels = rng.integers(0, 200, n)
    centres = (rng.standard_normal((200, d)) * scale) @ rotation.T
    X = centres[labels] + 0.5 * (rng.standard_normal((n, d)) * scale) @ rotation.T
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    X += 0.6 * u
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # On a busy 2-core machine two OpenBLAS threads can be far slower than one.
    with threadpool_limits(1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return reference_data()


def _report(data, specs):
    return evaluate_codecs(
        data, specs, metric="cosine", n_queries=N_Q, held_out=True, n_pairs=50_000, seed=0
    )


@pytest.fixture(scope="module")
def scalar(data):
    return _report(
        data,
        [
            "float16",
            "int8",
            "int8:absmax",
            "lvq:8",
            "lvq:4",
            "lvq:4x4",
            "lvq:4x8",
            "lvq:2",
            "binary",
            "binary:centred",
            "binary:asym",
        ],
    )


@pytest.fixture(scope="module")
def reduced(data):
    return _report(
        data,
        [
            "pca:16",
            "pca:64",
            "pca:128",
            "pca:192",
            "rp:64",
            "rp:128",
            "rp:192",
            "dct:64",
            "dct:128",
            "dct:192",
            "truncate:64",
            "truncate:128",
            "truncate:192",
            "leanvec:192:8",
            "leanvec:192:4",
            "leanvec:192:4x8",
        ],
    )


@pytest.fixture(scope="module")
def pq(data):
    return _report(data, ["pq:48", "pq:96"])


def test_reference_data_matches_the_table_setup(data):
    rng = np.random.default_rng(1)
    i, j = rng.integers(0, len(data), (2, 200_000))
    keep = i != j
    avg_cos = np.einsum("ij,ij->i", data[i[keep]], data[j[keep]]).mean()
    assert avg_cos == pytest.approx(0.273, abs=0.005)


# (spec, recall@10, recall@10 after x4 re-ranking, Spearman) from docs/science.md §4.3; None: not
# in the table. Tolerance: 0.03 on recall (1,000 queries: the standard error of a recall
# near 0.5 is ~0.01, plus the data's and k-means' seeds), 0.045 on Spearman.
SCALAR_TABLE = [
    ("float16", 0.999, None, 1.000),
    ("int8", 0.983, None, 1.000),
    ("int8:absmax", 0.973, None, 1.000),
    ("lvq:8", 0.986, None, 1.000),
    ("lvq:4", 0.811, None, 0.998),
    # Two-level LVQ: recall is the first stage (the 4-bit codes, LVQ-4's 0.811); the table's
    # two-level figures (0.985, 0.999: both levels scoring every vector) are now the re-ranked
    # ones (the first stage's top 40 re-ranked with both levels, as SVS searches).
    ("lvq:4x4", 0.811, 0.985, 0.998),
    ("lvq:4x8", 0.811, 0.999, 0.998),
    ("lvq:2", 0.437, None, 0.955),
    ("binary", 0.478, 0.915, 0.893),
    ("binary:centred", 0.505, 0.933, None),
    ("binary:asym", 0.566, None, None),
]
REDUCED_TABLE = [
    ("pca:16", 0.382, None, 0.962),
    ("pca:64", 0.673, None, 0.990),
    ("pca:128", 0.787, None, 0.996),
    ("pca:192", 0.833, None, 0.999),
    ("rp:64", 0.505, None, 0.754),
    ("rp:128", 0.598, None, 0.847),
    ("rp:192", 0.667, None, 0.879),
    ("dct:64", 0.267, None, 0.716),
    ("dct:128", 0.373, None, 0.846),
    ("dct:192", 0.472, None, 0.913),
    ("truncate:64", 0.535, None, 0.789),
    ("truncate:128", 0.657, None, 0.878),
    ("truncate:192", 0.754, None, 0.942),
    ("leanvec:192:8", 0.832, 1.000, None),
    ("leanvec:192:4", 0.655, 0.988, None),
]
PQ_TABLE = [
    ("pq:48", 0.475, None, 0.928),
    ("pq:96", 0.773, None, 0.988),
]


def _check_row(report, spec, recall, rescored, spearman):
    r = report.result(spec)
    assert r.recall == pytest.approx(recall, abs=0.03), spec
    if rescored is not None:
        assert r.recall_rescored == pytest.approx(rescored, abs=0.03), spec
    if spearman is not None:
        assert r.spearman == pytest.approx(spearman, abs=0.045), spec


@pytest.mark.slow
@pytest.mark.parametrize("row", SCALAR_TABLE, ids=[r[0] for r in SCALAR_TABLE])
def test_scalar_binary_and_lvq_match_the_reference_table(scalar, row):
    _check_row(scalar, *row)


@pytest.mark.slow
@pytest.mark.parametrize("row", REDUCED_TABLE, ids=[r[0] for r in REDUCED_TABLE])
def test_reducers_and_leanvec_match_the_reference_table(reduced, row):
    _check_row(reduced, *row)


@pytest.mark.slow
@pytest.mark.parametrize("row", PQ_TABLE, ids=[r[0] for r in PQ_TABLE])
def test_pq_matches_the_reference_table(pq, row):
    _check_row(pq, *row)


@pytest.mark.slow
def test_checklist_thresholds(scalar, reduced):
    # docs/science.md §9 tests 11-13 and §4.2's expectations.
    assert scalar.result("int8").recall >= 0.97
    assert scalar.result("lvq:8").recall >= 0.98
    assert scalar.result("lvq:4x8").recall_rescored >= 0.99
    assert scalar.result("lvq:4x8").recall == scalar.result("lvq:4").recall  # first stage
    assert abs(scalar.result("lvq:4x4").recall_rescored - scalar.result("lvq:8").recall) < 0.01
    binary = scalar.result("binary")
    assert binary.recall < scalar.result("int8").recall
    assert binary.recall_rescored >= 0.9
    assert scalar.result("binary:asym").recall > binary.recall
    assert scalar.result("binary:centred").recall > binary.recall
    assert scalar.result("float16").recall >= 0.99
    for k in (64, 128, 192):
        assert reduced.result(f"dct:{k}").recall <= reduced.result(f"pca:{k}").recall
    pcas = [reduced.result(f"pca:{k}") for k in (16, 64, 128, 192)]
    assert all(a.recall < b.recall for a, b in zip(pcas, pcas[1:], strict=False))
    assert [round(p.explained_variance, 2) for p in pcas] == pytest.approx(
        [0.51, 0.79, 0.91, 0.96], abs=0.03
    )
    # LeanVec's own secondary (LVQ-8 of the full vectors) re-ranks its 40 candidates.
    lean = reduced.result("leanvec:192:4x8")
    assert lean.rescored_with == "secondary lvq:8"
    assert lean.recall == reduced.result("leanvec:192:4").recall
    assert lean.recall_rescored > 0.95
    assert lean.bytes_per_vector == 100 + 388


@pytest.mark.slow
def test_pca_uncentred_query_beats_the_centred_one(data):
    # docs/science.md §4.2 pitfall / §9 test 14: 0.833 (uncentred) vs 0.675 (centred) at k = 192.
    Q, X = data[:N_Q], data[N_Q:]
    truth, _ = exact_knn(Q, X, 10, metric="cosine")
    codec = PCACodec(192).fit(X)
    codes = codec.encode(X)
    found, _ = codec.search(Q, codes, 10)
    centred = ((Q - codec.mean) @ codec.components) @ codes.arrays["y"].T
    found_centred = np.argsort(-centred, axis=1)[:, :10]

    def recall(f):
        return np.mean([len(set(a) & set(b)) for a, b in zip(f, truth, strict=True)]) / 10

    assert recall(found) == pytest.approx(0.833, abs=0.03)
    # The reference's centred figure (0.675) is not reproduced exactly: centring the query
    # with the database mean gives 0.74 here. The ordering, and a clear gap, hold.
    assert recall(found_centred) < recall(found) - 0.05


# -- the contract on small data ------------------------------------------------------------


def _small(n=600, d=32, seed=0):
    return reference_data(n, d, seed)


CLI_KEYS = {
    "codec",
    "bytes_per_vector",
    "shared_bytes",
    "recall@10",
    "recall@10_rescored",
    "spearman",
    "encode_seconds",
}


def test_report_rows_overlap_and_json():
    X = _small()
    report = evaluate_codecs(X, ["float32", "int8", "binary", "pca:8"], n_queries=100, seed=3)
    doc = json.loads(json.dumps(report.to_json()))
    assert [row["codec"] for row in doc["rows"]] == ["float32", "int8", "binary", "pca:8"]
    for row in doc["rows"]:
        assert CLI_KEYS <= set(row)
    assert doc["n_queries"] == 100 and doc["held_out"] is False and doc["n_database"] == 600
    assert report.to_frame().shape[0] == 4
    rows = report.query_rows
    assert rows.shape == (100,) and (np.diff(rows) > 0).all() and rows.max() < 600
    for r in report.results:
        assert r.overlap.shape == (100,) and r.overlap.dtype == np.float32
        assert ((r.overlap >= 0) & (r.overlap <= 1)).all()
        assert r.overlap.mean() == pytest.approx(r.recall, abs=1e-6)
        assert r.recall_100 is None  # 599 candidates: too few for recall@100
    exact = report.result("float32")
    assert exact.recall == 1.0 and exact.recall_rescored == 1.0
    assert exact.spearman == pytest.approx(1.0, abs=1e-9)
    assert report.result("binary").overlap.std() > 0  # it varies from point to point
    again = evaluate_codecs(X, ["binary"], n_queries=100, seed=3)
    np.testing.assert_array_equal(again.results[0].overlap, report.result("binary").overlap)


def test_geometry_of_each_compressed_copy():
    from embscope.core.geometry.isotropy import effective_rank, isoscore

    rng = np.random.default_rng(7)
    # anisotropic: variances falling as 1/i over 24 dimensions
    X = (rng.standard_normal((900, 24)) / np.sqrt(np.arange(1, 25))).astype(np.float32)
    specs = ["float32", "float16", "int8", "binary", "pca:24", "pca:6", "truncate:6"]
    report = evaluate_codecs(X, specs, metric="ip", n_queries=50, seed=2)  # ip: X as it is
    assert report.geometry_rows == 900  # fewer rows than the sample: all of them
    # the float32 scores are the geometry package's own (checked there against isoscore 2.0.1)
    assert report.original_isoscore == pytest.approx(isoscore(X), abs=1e-9)
    assert report.original_effective_rank == pytest.approx(effective_rank(X), rel=1e-9)
    lossless = [report.result(s) for s in ("float32", "float16", "pca:24")]
    for r in lossless:  # PCA-d is a rotation: IsoScore and effective rank cannot change
        assert r.isoscore == pytest.approx(report.original_isoscore, abs=1e-4), r.spec
        assert r.effective_rank == pytest.approx(report.original_effective_rank, rel=1e-4)
    assert report.result("int8").isoscore == pytest.approx(report.original_isoscore, abs=0.01)
    # each copy scored as the Geometry page would score it once saved
    for spec in ("binary", "pca:6", "truncate:6"):
        r = report.result(spec)
        copy = compressed_vectors(spec, X, metric="ip", seed=2)
        assert r.compressed_dim == copy.shape[1]
        assert r.isoscore == pytest.approx(isoscore(copy), abs=1e-6), spec
        assert r.effective_rank == pytest.approx(effective_rank(copy), rel=1e-6), spec
    # keeping 6 of 24 directions leaves a rank of at most 6; sign codes flatten the spectrum
    assert report.result("pca:6").effective_rank <= 6.0 + 1e-9
    assert report.result("binary").isoscore > report.original_isoscore + 0.1
    row = {r["codec"]: r for r in report.rows()}
    assert row["pca:6"]["dim"] == 6 and row["binary"]["dim"] == 24
    assert row["binary"]["isoscore"] == report.result("binary").isoscore
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["original_isoscore"] == report.original_isoscore and doc["geometry_rows"] == 900


def test_geometry_sample_is_seeded_and_leaves_the_query_sample_alone():
    from embscope.core.compression import evaluate

    X = _small(1500, 16)
    old = evaluate.GEOMETRY_SAMPLE
    try:
        evaluate.GEOMETRY_SAMPLE = 400
        a = evaluate_codecs(X, ["int8"], n_queries=60, seed=4)
        b = evaluate_codecs(X, ["int8"], n_queries=60, seed=4)
        c = evaluate_codecs(X, ["int8"], n_queries=60, seed=5)
    finally:
        evaluate.GEOMETRY_SAMPLE = old
    full = evaluate_codecs(X, ["int8"], n_queries=60, seed=4)
    assert a.geometry_rows == 400 and full.geometry_rows == 1500
    assert a.original_isoscore == b.original_isoscore != c.original_isoscore
    # the queries (and so recall and overlap) do not depend on the geometry sample
    np.testing.assert_array_equal(a.query_rows, full.query_rows)
    np.testing.assert_array_equal(a.results[0].overlap, full.results[0].overlap)
    assert a.original_isoscore == pytest.approx(full.original_isoscore, abs=0.05)


def _unit_rows(X):
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def _top(S, k):
    """Each row's k largest columns, ties to the smaller column (the codecs' convention)."""
    return np.argsort(-S, axis=1, kind="stable")[:, :k]


def _per_query_recall(found, truth):
    k = truth.shape[1]
    return np.array([len(set(a) & set(b)) / k for a, b in zip(found, truth, strict=True)])


def test_reranked_bytes_hold_the_code_and_the_reranking_vectors():
    d = 32
    X = _small(400, d)
    specs = ["float32", "float16", "int8", "binary", "pca:8", "lvq:4x8", "leanvec:16:4x8",
             "leanvec:16:4"]  # fmt: skip
    rows = {r["codec"]: r for r in evaluate_codecs(X, specs, n_queries=40, seed=1).rows()}
    # float32 re-ranking: two-stage search holds the codes and the 4·d-byte float vectors
    for spec in ("float16", "int8", "binary", "pca:8", "leanvec:16:4"):
        row = rows[spec]
        assert row["rescored_with"] == "float32" and row["rerank_bytes_per_vector"] == 4 * d
        assert row["bytes_per_vector_rescored"] == row["bytes_per_vector"] + 4 * d
    assert rows["binary"]["bytes_per_vector_rescored"] == d // 8 + 4 * d
    assert rows["int8"]["bytes_per_vector_rescored"] == d + 4 * d
    # a codec's own second level is part of its code (d·4/8 + d·8/8 + 4 for LVQ-4x8), and
    # float32 re-ranks itself
    assert rows["lvq:4x8"]["bytes_per_vector_rescored"] == d * 4 // 8 + d + 4
    assert rows["lvq:4x8"]["rescored_with"] == "two-level lvq:4x8"
    assert rows["leanvec:16:4x8"]["bytes_per_vector_rescored"] == 16 * 4 // 8 + 4 + d + 4
    assert rows["leanvec:16:4x8"]["rescored_with"] == "secondary lvq:8"
    assert rows["float32"]["bytes_per_vector_rescored"] == 4 * d
    for spec in ("float32", "lvq:4x8", "leanvec:16:4x8"):
        assert rows[spec]["rerank_bytes_per_vector"] == 0


def test_two_level_recall_is_the_first_stage_then_its_own_second_level():
    from embscope.core.compression.quantisers import unpack_bits

    d, k, rescore, seed = 32, 5, 3, 4
    X = _small(500, d, seed=2)
    report = evaluate_codecs(
        X, ["lvq:4x8", "leanvec:16:4x8"], n_queries=60, k=k, rescore=rescore, seed=seed
    )
    U = _unit_rows(X)  # cosine: unit rows; each query left out of its own results
    q = report.query_rows
    S_true = U[q] @ U.T
    S_true[np.arange(q.size), q] = -np.inf
    truth = _top(S_true, k)

    def check(result, first_level, full):
        S = U[q] @ first_level.T
        S[np.arange(q.size), q] = -np.inf
        first = _top(S, k)
        np.testing.assert_allclose(result.overlap, _per_query_recall(first, truth), atol=1e-6)
        assert result.recall == pytest.approx(_per_query_recall(first, truth).mean(), abs=1e-9)
        shortlist = _top(S, rescore * k)
        second = np.einsum("qd,qcd->qc", U[q], full[shortlist])
        reranked = np.take_along_axis(shortlist, _top(second, k), axis=1)
        expected = _per_query_recall(reranked, truth)
        np.testing.assert_allclose(result.overlap_rescored, expected, atol=1e-6)
        assert result.recall_rescored == pytest.approx(expected.mean(), abs=1e-9)

    # LVQ-4x8: the first level decoded by hand from its 4-bit codes and float16 constants
    lvq = parse_codec_spec("lvq:4x8").fit(U)
    codes = lvq.encode(U)
    step = codes.arrays["step"].astype(np.float32)[:, None]
    lower = codes.arrays["lower"].astype(np.float32)[:, None]
    first_level = unpack_bits(codes.arrays["codes"], 4, d) * step + lower + lvq.mean
    lvq_result = report.result("lvq:4x8")
    assert lvq_result.first_stage == "lvq:4 (first level)"
    check(lvq_result, first_level, lvq.decode(codes))
    assert lvq_result.recall < lvq_result.recall_rescored  # the 4-bit stage alone loses more

    # LeanVec: the primary (LVQ-4 of the 16 PCA coordinates) scored as PCA, then the secondary
    lean = parse_codec_spec("leanvec:16:4x8").fit(U)
    codes = lean.encode(U)
    step = codes.arrays["p_step"].astype(np.float32)[:, None]
    lower = codes.arrays["p_lower"].astype(np.float32)[:, None]
    reduced = unpack_bits(codes.arrays["p_codes"], 4, 16) * step + lower
    lean_result = report.result("leanvec:16:4x8")
    assert lean_result.first_stage == "primary lvq:4 of 16 PCA dims"
    check(lean_result, reduced @ lean.components.T + lean.mean, lean.decode(codes))


def test_every_recall_carries_its_bootstrap_interval():
    from embscope.core.compression import Int8Codec
    from embscope.core.stats import bootstrap_ci

    seed = 6
    X = _small(1300, 16, seed=5)
    report = evaluate_codecs(X, ["int8", "binary", "pca:4", "lvq:2x4"], n_queries=120, seed=seed)
    for r, row in zip(report.results, report.rows(), strict=True):
        assert r.recall_ci == pytest.approx(bootstrap_ci(r.overlap, seed=seed), abs=1e-6)
        assert r.recall_rescored_ci == pytest.approx(
            bootstrap_ci(r.overlap_rescored, seed=seed), abs=1e-6
        )
        assert r.overlap_rescored.mean() == pytest.approx(r.recall_rescored, abs=1e-6)
        for key in [key for key in row if key.startswith("recall@") and not key.endswith("_ci")]:
            lo, hi = row[f"{key}_ci"]  # every recall key has its interval beside it
            assert lo <= row[key] <= hi, (r.spec, key)
        assert row["recall@10_ci"] == list(r.recall_ci)
    assert report.result("binary").recall_ci[1] - report.result("binary").recall_ci[0] > 0.01
    # recall@100 of int8, per query, from a search written out here
    U = _unit_rows(X)
    q = report.query_rows
    decoded = Int8Codec().fit(U).decode(Int8Codec().fit(U).encode(U))
    S, S_true = U[q] @ decoded.T, U[q] @ U.T
    S[np.arange(q.size), q] = S_true[np.arange(q.size), q] = -np.inf
    per_query = _per_query_recall(_top(S, 100), _top(S_true, 100))
    int8 = report.result("int8")
    assert int8.recall_100 == pytest.approx(per_query.mean(), abs=1e-9)
    assert int8.recall_100_ci == pytest.approx(bootstrap_ci(per_query, seed=seed), abs=1e-9)
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["rows"][0]["recall@100_ci"] == list(int8.recall_100_ci)


def test_intervals_and_rerank_arrays_survive_the_artifact_codec():
    from embscope.core.artifacts import decode, encode

    report = evaluate_codecs(_small(1200, 16), ["lvq:4x8", "pca:4"], n_queries=50, seed=2)
    back = decode(type(report), *encode(report))
    assert back.rows() == report.rows()
    for a, b in zip(back.results, report.results, strict=True):
        np.testing.assert_array_equal(a.overlap_rescored, b.overlap_rescored)
        assert a.recall_ci == b.recall_ci and a.recall_100_ci == b.recall_100_ci


def test_reducers_geometry_is_set_beside_the_originals_top_k_principal_components():
    from embscope.core.geometry.isotropy import effective_rank, isoscore

    rng = np.random.default_rng(8)
    X = (rng.standard_normal((700, 24)) / np.sqrt(np.arange(1, 25))).astype(np.float32)
    specs = ["int8", "pca:24", "pca:6", "rp:6", "truncate:6"]
    report = evaluate_codecs(X, specs, metric="ip", n_queries=40, seed=3)  # ip: X as it is
    assert report.geometry_rows == 700
    # the original's own top-6 principal projection, computed here by SVD
    centred = X.astype(np.float64) - X.mean(axis=0)
    top6 = centred @ np.linalg.svd(centred, full_matrices=False)[2][:6].T
    for spec in ("pca:6", "rp:6", "truncate:6"):
        r = report.result(spec)
        assert r.geometry_reference == "float32, top 6 principal components"
        assert r.reference_isoscore == pytest.approx(isoscore(top6), abs=1e-9)
        assert r.reference_effective_rank == pytest.approx(effective_rank(top6), rel=1e-9)
    pca = report.result("pca:6")
    # like for like, PCA-6 is its reference (it is that projection); beside the 24-d
    # original it would read as far "more isotropic", which is only the dimension
    assert pca.isoscore == pytest.approx(pca.reference_isoscore, abs=1e-5)
    assert pca.isoscore > report.original_isoscore + 0.2
    for spec in ("int8", "pca:24"):  # every dimension kept: the original itself
        r = report.result(spec)
        assert r.geometry_reference == "float32"
        assert r.reference_isoscore == report.original_isoscore
        assert r.reference_effective_rank == report.original_effective_rank
    row = {r["codec"]: r for r in report.rows()}["rp:6"]
    assert row["reference_isoscore"] == report.result("rp:6").reference_isoscore
    assert row["geometry_reference"] == "float32, top 6 principal components"


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_exact_codec_is_perfect_for_every_metric(metric):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((400, 16)).astype(np.float32)  # not normalised: ip and l2 differ
    report = evaluate_codecs(X, ["float32", "lvq:8x8"], metric=metric, n_queries=50, k=5)
    for r in report.results:
        assert r.recall >= 0.99 and r.recall_rescored == 1.0, r.spec
        assert r.spearman > 0.999
    assert report.result("float32").recall == 1.0
    assert "recall@5" in report.rows()[0]


def test_held_out_queries_are_not_in_the_database():
    X = _small(1200)
    report = evaluate_codecs(X, ["float32"], n_queries=200, held_out=True)
    assert report.n_database == 1000 and report.results[0].recall == 1.0
    assert report.results[0].recall_100 == 1.0
    with_self = evaluate_codecs(X, ["float32"], n_queries=200, held_out=False)
    assert with_self.n_database == 1200 and with_self.results[0].recall == 1.0


def test_progress_and_cancel():
    X = _small(300)
    seen = []
    evaluate_codecs(X, ["int8", "pca:4"], n_queries=30, progress=lambda f, m: seen.append(f))
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) > 4
    with pytest.raises(OperationCancelled):
        evaluate_codecs(X, ["int8"], n_queries=30, progress=lambda f, m: f > 0.3)


def test_defaults_and_query_clamping():
    X = _small(300, 24)
    report = evaluate_codecs(X, None, n_queries=1000, held_out=True)
    assert report.query_rows.shape == (150,) and report.warnings
    specs = [r.spec for r in report.results]
    assert "pq:3" not in specs and specs[:2] == ["float16", "int8"]  # 150 rows: no PQ


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric": "hamming"}, "metric"),
        ({"codecs": ["binary"], "metric": "l2"}, "angles"),
        ({"codecs": ["int9"]}, "spec"),
        ({"codecs": []}, "no codecs"),
        ({"k": 600}, "neighbours"),
        ({"n_queries": 0}, "n_queries"),
        ({"rescore": 0}, "rescore"),
        ({"codecs": ["pq:7"]}, "divisible"),
        ({"codecs": ["pca:40"]}, "only 32"),
    ],
)
def test_bad_arguments(kwargs, message):
    X = _small(300)
    kwargs = {"codecs": ["int8"], **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        evaluate_codecs(X, **kwargs)


def test_bad_vectors():
    X = _small(50)
    X[4, 1] = np.inf
    with pytest.raises(InvalidInputError, match="infinite"):
        evaluate_codecs(X, ["int8"])


def test_save_compressed_copy(store):
    X = _small(80, 16)
    original = store.add_dataset(make_parsed(X), name="orig")
    info = save_compressed_copy(store, original.id, "pca:4")
    assert info.name == "orig [pca:4]" and info.dim == 4 and info.n == 80
    assert info.info["transform"] == "compress"
    assert info.info["transform_params"]["codec"] == "pca:4"
    np.testing.assert_allclose(
        store.load_vectors(info.id), compressed_vectors("pca:4", X), atol=1e-6
    )
    lvq = save_compressed_copy(store, original.id, "lvq:8", name="lvq copy")
    assert lvq.dim == 16
    assert np.abs(store.load_vectors(lvq.id) - X).max() < 0.01


def test_a_large_dataset_is_compared_on_a_seeded_sample_that_says_so(store, monkeypatch):
    """Above COMPRESSION_SAMPLE rows the lab runs on a seeded sample: the same report as
    evaluate_codecs on those rows, its query rows named as dataset rows, the sample stated."""
    from embscope.core.compression import runs
    from embscope.core.geometry.intrinsic import sample_rows

    X = _small(900, 16)
    info = store.add_dataset(make_parsed(X), name="big")
    monkeypatch.setattr(runs, "COMPRESSION_SAMPLE", 400)
    report = runs.get_or_evaluate(store, info.id, codecs=["int8"], n_queries=50, seed=3)
    rows = sample_rows(900, 400, 3)
    direct = evaluate_codecs(X[rows], ["int8"], n_queries=50, seed=3)
    assert report.n == 400 and report.sampled_from == 900
    assert report.to_json()["sampled_from"] == 900
    untimed = [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in report.rows()]
    assert untimed == [
        {k: v for k, v in r.items() if not k.endswith("_seconds")} for r in direct.rows()
    ]
    np.testing.assert_array_equal(report.query_rows, rows[direct.query_rows])
    # Small datasets are compared on every row, and say so.
    monkeypatch.setattr(runs, "COMPRESSION_SAMPLE", 10_000)
    whole = runs.get_or_evaluate(store, info.id, codecs=["int8"], n_queries=50, seed=4)
    assert whole.n == 900 and whole.sampled_from is None
