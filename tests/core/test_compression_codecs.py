"""Compression codecs: definitions, sizes, losslessness and errors (docs/science.md §4.1-4.2)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft

import embscope.core.compression.base as base_mod
from embscope.core.compression import (
    DEFAULT_CODECS,
    BinaryCodec,
    Codes,
    DCTCodec,
    FloatCodec,
    Int8Codec,
    LeanVecCodec,
    LVQCodec,
    PCACodec,
    PQCodec,
    RandomProjectionCodec,
    TruncationCodec,
    compressed_vectors,
    default_codecs,
    parse_codec_spec,
    rerank_exact,
    search_rescored,
)
from embscope.core.compression.quantisers import pack_bits, unpack_bits
from embscope.core.errors import InvalidInputError
from embscope.core.validation import normalise_rows


def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) + 0.5 * rng.standard_normal(d)  # a shared direction
    return normalise_rows(X.astype(np.float32))


@pytest.fixture(scope="module")
def X384() -> np.ndarray:
    return _unit(300, 384)


# -- specs ---------------------------------------------------------------------------------

CONTRACT = [
    "int8",
    "binary",
    "pq:48",
    "pca:128",
    "lvq:4x8",
    "rp:128",
    "truncate:128",
    "dct:128",
    "float16",
]


@pytest.mark.parametrize("spec", CONTRACT)
def test_contract_specs_parse_to_themselves(spec):
    assert parse_codec_spec(spec).spec == spec


@pytest.mark.parametrize(
    ("spec", "kind", "canonical"),
    [
        ("INT8", Int8Codec, "int8"),
        ("int8:minmax", Int8Codec, "int8"),
        ("int8:absmax", Int8Codec, "int8:absmax"),
        ("float32", FloatCodec, "float32"),
        (" binary:centered ", BinaryCodec, "binary:centred"),
        ("binary:asym:centred", BinaryCodec, "binary:centred:asym"),
        ("lvq:8", LVQCodec, "lvq:8"),
        ("leanvec:192", LeanVecCodec, "leanvec:192:4x8"),
        ("leanvec:192:8", LeanVecCodec, "leanvec:192:8"),
        ("dct:64:renorm", DCTCodec, "dct:64:renorm"),
        ("rp:64", RandomProjectionCodec, "rp:64"),
        ("truncate:64", TruncationCodec, "truncate:64"),
        ("pca:16", PCACodec, "pca:16"),
        ("pq:96", PQCodec, "pq:96"),
    ],
)
def test_spec_variants(spec, kind, canonical):
    codec = parse_codec_spec(spec)
    assert isinstance(codec, kind)
    assert codec.spec == canonical
    assert parse_codec_spec(codec.spec).spec == canonical


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "  ",
        "int9",
        "int8:foo",
        "float16:2",
        "pq",
        "pq:0",
        "pq:x",
        "pq:4:8",
        "lvq",
        "lvq:9",
        "lvq:0",
        "lvq:4x9",
        "lvq:4y8",
        "lvq:4x",
        "binary:foo",
        "binary:asym:asym",
        "pca",
        "pca:-1",
        "pca:1.5",
        "rp:0",
        "dct:128:foo",
        "truncate:8:renorm",
        "leanvec",
        "leanvec:x",
        "leanvec:192:4x8:1",
        "hnsw:32",
    ],
)
def test_bad_specs_raise(spec):
    with pytest.raises(InvalidInputError, match="spec"):
        parse_codec_spec(spec)


@pytest.mark.parametrize("spec", [None, 42, ["int8"]])
def test_non_string_specs_raise(spec):
    with pytest.raises(InvalidInputError):
        parse_codec_spec(spec)


def test_default_codecs_cover_every_family_and_adapt_to_the_dimension():
    assert tuple(default_codecs(384)) == DEFAULT_CODECS
    families = {parse_codec_spec(s).family for s in DEFAULT_CODECS}
    assert families == {
        "float",
        "int8",
        "lvq",
        "leanvec",
        "binary",
        "pq",
        "pca",
        "rp",
        "truncate",
        "dct",
    }
    for d in (100, 768, 1024, 30):
        specs = default_codecs(d)
        m = parse_codec_spec(next(s for s in specs if s.startswith("pq:"))).m
        assert d % m == 0
        for s in specs:  # every default fits this dimension
            codec = parse_codec_spec(s)
            codec._check_data(300, d)
    assert not any(s.startswith("pq:") for s in default_codecs(384, n=100))


# -- sizes ---------------------------------------------------------------------------------

# docs/science.md §4.1 at d = 384: (bytes per vector, shared bytes).
SIZES = {
    "float32": (1536, 0),
    "float16": (768, 0),
    "int8": (384, 2 * 384 * 4),
    "int8:absmax": (384, 4),
    "binary": (48, 0),
    "binary:centred": (48, 384 * 4),
    "binary:asym": (48, 0),
    "pq:48": (48, 256 * 384 * 4),
    "pq:96": (96, 256 * 384 * 4),
    "lvq:8": (388, 384 * 4),
    "lvq:4": (196, 384 * 4),
    "lvq:2": (100, 384 * 4),
    "lvq:4x4": (388, 384 * 4),
    "lvq:4x8": (580, 384 * 4),
    "lvq:8x8": (772, 384 * 4),
    "leanvec:192:4x8": (192 * 4 // 8 + 4 + 384 + 4, 192 * 384 * 4 + 384 * 4),
    "leanvec:192:8": (196, 192 * 384 * 4 + 384 * 4),
    "leanvec:192:4": (100, 192 * 384 * 4 + 384 * 4),
    "pca:128": (512, 128 * 384 * 4 + 384 * 4),
    "rp:128": (512, 128 * 384 * 4),
    "truncate:128": (512, 0),
    "dct:128": (512, 0),
}


@pytest.mark.parametrize("spec", sorted(SIZES))
def test_bytes_match_the_formulas_and_the_stored_codes(spec, X384):
    codec = parse_codec_spec(spec).fit(X384)
    codes = codec.encode(X384)
    assert (codec.bytes_per_vector, codec.shared_bytes) == SIZES[spec]
    # The claim is the true size of what is stored per vector.
    assert codes.nbytes == len(codes) * codec.bytes_per_vector


def test_sizes_need_a_fitted_codec():
    with pytest.raises(InvalidInputError, match="not fitted"):
        _ = LVQCodec(8).bytes_per_vector


def test_odd_dimensions_pack_to_whole_bytes():
    X = _unit(50, 10)
    codec = LVQCodec(3, 5).fit(X)
    codes = codec.encode(X)
    assert codec.bytes_per_vector == 4 + 7 + 4  # ceil(30/8) + ceil(50/8) + two float16
    assert codes.nbytes == 50 * codec.bytes_per_vector
    assert BinaryCodec().fit(X).bytes_per_vector == 2


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("d", [1, 7, 13, 384])
def test_bit_packing_round_trips(bits, d):
    rng = np.random.default_rng(bits * 100 + d)
    codes = rng.integers(0, 1 << bits, size=(9, d)).astype(np.uint8)
    packed = pack_bits(codes, bits)
    assert packed.shape == (9, -(-d * bits // 8))
    np.testing.assert_array_equal(unpack_bits(packed, bits, d), codes)


# -- scalar quantisation -------------------------------------------------------------------


def test_int8_rounds_clips_and_dequantises():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, size=(500, 16)).astype(np.float32)
    codec = Int8Codec().fit(X, metric="ip")
    lo, hi = X.min(0), X.max(0)
    step = (hi - lo) / 255
    np.testing.assert_allclose(codec.step, step, rtol=1e-6)
    codes = codec.encode(X).arrays["codes"]
    expected = np.clip(np.rint((X - lo) / step), 0, 255)
    assert np.abs(codes.astype(int) - expected).max() <= 1  # float rounding at .5 only
    decoded = codec.decode(codec.encode(X))
    assert np.abs(decoded - X).max() <= step.max() / 2 * 1.001
    # Rounding, not truncation: lo + 0.6 step is code 1 (sentence-transformers' cast gives 0).
    probe = lo + 0.6 * step
    assert (codec.encode(probe[None]).arrays["codes"] == 1).all()
    # Clipping, not wrapping: values beyond the calibration range saturate.
    outside = np.vstack([hi + 0.5, lo - 0.5]).astype(np.float32)
    out_codes = codec.encode(outside).arrays["codes"]
    assert (out_codes[0] == 255).all() and (out_codes[1] == 0).all()


def test_int8_constant_dimension_decodes_to_its_value():
    X = np.ones((20, 3), dtype=np.float32)
    X[:, 1] = np.linspace(0, 1, 20)
    codec = Int8Codec().fit(X, metric="l2")
    np.testing.assert_allclose(codec.decode(codec.encode(X))[:, [0, 2]], 1.0)


def test_int8_absmax():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((200, 8)).astype(np.float32)
    codec = Int8Codec("absmax").fit(X, metric="ip")
    amax = np.abs(X).max()
    codes = codec.encode(X).arrays["codes"]
    assert codes.dtype == np.int8
    np.testing.assert_array_equal(codes, np.clip(np.rint(X / amax * 127), -127, 127))
    assert np.abs(codec.decode(codec.encode(X)) - X).max() <= amax / 127 / 2 * 1.001


def test_float16_is_near_lossless_and_refuses_overflow():
    X = _unit(100, 32)
    codec = FloatCodec("float16").fit(X)
    decoded = codec.decode(codec.encode(X))
    assert np.abs(decoded - X).max() <= 2.0**-11
    big = np.full((2, 4), 1e6, dtype=np.float32)
    codec = FloatCodec("float16").fit(big, metric="l2")
    with pytest.raises(InvalidInputError, match="float16"):
        codec.encode(big)


# -- LVQ -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_lvq_decoder_uses_the_float16_constants(bits):
    X = _unit(200, 64, seed=3)
    codec = LVQCodec(bits).fit(X, metric="ip")
    codes = codec.encode(X)
    lower, step = codes.arrays["lower"], codes.arrays["step"]
    assert lower.dtype == np.float16 and step.dtype == np.float16
    c = unpack_bits(codes.arrays["codes"], bits, 64).astype(np.float32)
    expected = codec.mean + c * step.astype(np.float32)[:, None] + lower.astype(np.float32)[:, None]
    np.testing.assert_allclose(codec.decode(codes), expected, rtol=0, atol=1e-6)
    # Per coordinate, the error is at most half a (float16) step: nothing was clipped.
    z = X - codec.mean
    err = np.abs(codec.decode(codes) - codec.mean - z)
    assert (err <= step.astype(np.float32)[:, None] / 2 + 1e-6).all()
    # The stored constants bracket each vector: l16 <= min, l16 + (2^B - 1) * step16 >= max.
    assert (lower.astype(np.float32) <= z.min(1)).all()
    top = lower.astype(np.float32) + ((1 << bits) - 1) * step.astype(np.float32)
    assert (top >= z.max(1) - 1e-6).all()


@pytest.mark.parametrize("residual_bits", [2, 4, 8])
def test_two_level_lvq_residual_is_the_papers_quantiser(residual_bits):
    # Aguerrebere et al. 2023: the residual r = z - ẑ is quantised as Q(r; B2, -Δ/2, Δ/2), the
    # uniform quantiser Q(x; B, l, u) = l + Δ' round((x - l)/Δ'), Δ' = (u - l)/(2^B - 1).
    X = _unit(200, 64, seed=4)
    one = LVQCodec(4).fit(X, metric="ip")
    two = LVQCodec(4, residual_bits).fit(X, metric="ip")
    codes = two.encode(X)
    step = codes.arrays["step"].astype(np.float32)[:, None]
    lower = codes.arrays["lower"].astype(np.float32)[:, None]
    z = X - two.mean
    first = unpack_bits(codes.arrays["codes"], 4, 64).astype(np.float32) * step + lower
    r = z - first
    levels = 2**residual_bits - 1
    fine = step / levels
    j = np.clip(np.rint((r + step / 2) / fine), 0, levels)
    expected = two.mean + first + (-step / 2 + j * fine)
    np.testing.assert_allclose(two.decode(codes), expected, rtol=0, atol=1e-6)
    stored = unpack_bits(codes.arrays["residual"], residual_bits, 64)
    assert (np.abs(stored.astype(np.float64) - j) <= 1).all() and (stored == j).mean() > 0.999
    # The grid spans [-Δ/2, Δ/2], where every residual lies: nothing is clipped, the error is
    # at most half a residual step.
    assert (np.abs(r) <= step / 2 + 1e-6).all()
    err_two = np.abs(two.decode(codes) - X)
    assert (err_two <= fine / 2 + 1e-6).all()
    assert err_two.max() < np.abs(one.decode(one.encode(X)) - X).max() / (levels / 2)


def test_two_level_lvq_searches_with_its_first_level_and_reranks_with_both():
    X = _unit(300, 64, seed=10)
    Q = _unit(6, 64, seed=11)
    one, two = LVQCodec(4).fit(X), LVQCodec(4, 8).fit(X)
    codes_one, codes_two = one.encode(X), two.encode(X)
    assert two.has_reranker and not one.has_reranker
    assert two.first_stage == "lvq:4 (first level)" and two.reranker == "two-level lvq:4x8"
    # The first stage: the 4-bit codes alone, exactly what one-level LVQ-4 scores.
    np.testing.assert_array_equal(two.score(Q, codes_two), one.score(Q, codes_one))
    np.testing.assert_array_equal(
        two.pair_scores(X[:20], codes_two.rows(slice(0, 20))),
        one.pair_scores(X[:20], codes_one.rows(slice(0, 20))),
    )
    # The second: both levels (the decoded vectors), for the candidate rows only.
    cand = np.tile(np.arange(0, 300, 7), (6, 1))
    np.testing.assert_allclose(
        two.rerank(Q, codes_two, cand), Q @ two.decode(codes_two)[cand[0]].T, atol=1e-5
    )
    with pytest.raises(InvalidInputError, match="second stage"):
        one.rerank(Q, codes_one, cand)


def test_lvq_high_bits_is_lossless_and_flat_vectors_are_fine():
    X = _unit(100, 384, seed=5)
    codec = LVQCodec(8, 8).fit(X)
    assert np.abs(codec.decode(codec.encode(X)) - X).max() < 1e-4
    flat = np.zeros((3, 8), dtype=np.float32)
    codec = LVQCodec(4).fit(flat, metric="l2")
    np.testing.assert_allclose(codec.decode(codec.encode(flat)), 0.0, atol=1e-7)


def test_lvq_refuses_values_beyond_float16():
    X = np.array([[0.0, 1e6], [1e6, 0.0]], dtype=np.float32)
    codec = LVQCodec(8).fit(X, metric="l2")
    with pytest.raises(InvalidInputError, match="float16"):
        codec.encode(X)


def test_leanvec_primary_secondary_and_rerank():
    X = _unit(300, 64, seed=6)
    Q = _unit(5, 64, seed=7)
    codec = LeanVecCodec(32, 8, 8).fit(X)
    codes = codec.encode(X)
    assert codec.has_reranker
    # Primary score: PCA scoring (uncentred query) of the LVQ-decoded reduced vectors.
    reduced = codec._reduced(codes.arrays)
    expected = (Q @ codec.components) @ reduced.T + (Q @ codec.mean)[:, None]
    np.testing.assert_allclose(codec.score(Q, codes), expected, atol=1e-5)
    # Re-ranking uses the secondary LVQ-8 of the full vectors.
    cand = np.tile(np.arange(10), (5, 1))
    full = codec.decode(codes)
    np.testing.assert_allclose(codec.rerank(Q, codes, cand), Q @ full[:10].T, atol=1e-5)
    assert np.abs(full - X).max() < 0.01
    primary_only = LeanVecCodec(32, 8, None).fit(X)
    assert not primary_only.has_reranker
    with pytest.raises(InvalidInputError, match="second stage"):
        primary_only.rerank(Q, primary_only.encode(X), cand)
    with pytest.raises(InvalidInputError, match="64"):
        LeanVecCodec(100).fit(X)


# -- binary --------------------------------------------------------------------------------


def test_binary_hamming_and_asymmetric_scores():
    X = _unit(120, 50, seed=8)
    Q = _unit(7, 50, seed=9)
    codes = BinaryCodec().fit(X).encode(X)
    hamming = (Q[:, None, :] > 0) != (X[None, :, :] > 0)
    np.testing.assert_array_equal(
        BinaryCodec().fit(X).score(Q, codes), -hamming.sum(axis=2).astype(np.float32)
    )
    asym = BinaryCodec(asymmetric=True).fit(X)
    signs = np.where(X > 0, 1.0, -1.0)
    np.testing.assert_allclose(asym.score(Q, asym.encode(X)), Q @ signs.T, atol=1e-5)
    np.testing.assert_array_equal(asym.compressed_vectors(asym.encode(X)), signs)
    centred = BinaryCodec(centred=True).fit(X)
    mu = X.mean(0)
    bits = np.unpackbits(centred.encode(X).arrays["bits"], axis=1, count=50).astype(bool)
    np.testing.assert_array_equal(bits, (X - mu) > 0)
    pairs = BinaryCodec().fit(X).pair_scores(X[:7], codes.rows(np.arange(7, 14)))
    np.testing.assert_array_equal(
        pairs, -((X[:7] > 0) != (X[7:14] > 0)).sum(axis=1).astype(np.float32)
    )


def test_binary_refuses_l2():
    with pytest.raises(InvalidInputError, match="angles"):
        BinaryCodec().fit(_unit(10, 8), metric="l2")


# -- product quantisation ------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_pq_lookup_tables_equal_scoring_the_reconstruction(metric, X384):
    Q = _unit(9, 384, seed=10) * (1.0 if metric == "cosine" else 1.7)
    codec = PQCodec(48).fit(X384, metric=metric)
    codes = codec.encode(X384)
    assert codes.arrays["codes"].dtype == np.uint8 and codes.arrays["codes"].shape == (300, 48)
    q = normalise_rows(Q) if metric == "cosine" else Q
    recon = codec.decode(codes)
    d2 = ((q[:, None, :] - recon[None]) ** 2).sum(axis=2)
    expected = {"ip": q @ recon.T, "l2": -d2, "cosine": 1 - d2 / 2}[metric]
    np.testing.assert_allclose(codec.score(Q, codes), expected, atol=2e-5)
    pairs = codec.pair_scores(Q, codes.rows(np.arange(9)))
    np.testing.assert_allclose(pairs, np.diag(expected[:, :9]), atol=2e-5)
    # Each code is the nearest centroid of its sub-vector.
    sub = X384[:, :8]
    nearest = ((sub[:, None, :] - codec.codebooks[0][None]) ** 2).sum(2).argmin(1)
    np.testing.assert_array_equal(codes.arrays["codes"][:, 0], nearest)


def test_pq_is_seeded_and_warns_about_little_training_data(X384):
    a = PQCodec(48, seed=3).fit(X384)
    b = PQCodec(48, seed=3).fit(X384)
    np.testing.assert_array_equal(a.codebooks, b.codebooks)
    assert a.warnings and "9984" in a.warnings[0]


def test_pq_refuses_bad_shapes():
    with pytest.raises(InvalidInputError, match=r"not divisible by 48.*1, 2, 4, 5, 10"):
        PQCodec(48).fit(_unit(300, 100))
    with pytest.raises(InvalidInputError, match="at least 256 training vectors"):
        PQCodec(8).fit(_unit(255, 64))


# -- reducers ------------------------------------------------------------------------------


def test_dct_and_pca_at_full_size_are_lossless():
    rng = np.random.default_rng(11)
    X = rng.standard_normal((200, 48)).astype(np.float32)
    dct = DCTCodec(48).fit(X, metric="l2")
    assert np.abs(dct.decode(dct.encode(X)) - X).max() < 1e-5
    y = dct.compressed_vectors(dct.encode(X))
    np.testing.assert_allclose(y, scipy.fft.dct(X, norm="ortho", axis=1), atol=1e-5)
    pca = PCACodec(48).fit(X, metric="l2")
    assert np.abs(pca.decode(pca.encode(X)) - X).max() < 1e-4
    assert pca.explained_variance == pytest.approx(1.0)
    trunc = TruncationCodec(48).fit(X, metric="l2")
    np.testing.assert_array_equal(trunc.decode(trunc.encode(X)), X)


def test_dct_keeps_k_over_d_of_isotropic_energy():
    rng = np.random.default_rng(12)
    X = rng.standard_normal((2000, 128)).astype(np.float32)
    codec = DCTCodec(32).fit(X, metric="l2")
    y = codec.compressed_vectors(codec.encode(X))
    assert (y**2).sum() / (X**2).sum() == pytest.approx(32 / 128, abs=0.01)


def test_random_projection_preserves_distances_jl():
    # docs/science.md §9 test 10: k = 256 keeps the median distance ratio within 0.02 of 1 and
    # 95% of ratios within +-0.15.
    rng = np.random.default_rng(13)
    X = rng.standard_normal((400, 384)).astype(np.float32)
    codec = RandomProjectionCodec(256, seed=1).fit(X, metric="l2")
    Y = codec.compressed_vectors(codec.encode(X))
    i, j = rng.integers(0, 400, 2000), rng.integers(0, 400, 2000)
    keep = i != j
    ratio = np.linalg.norm(Y[i] - Y[j], axis=1)[keep] / np.linalg.norm(X[i] - X[j], axis=1)[keep]
    assert abs(np.median(ratio) - 1) < 0.02
    assert np.mean(np.abs(ratio - 1) < 0.15) >= 0.95
    again = RandomProjectionCodec(256, seed=1).fit(X, metric="l2")
    np.testing.assert_array_equal(again.matrix, codec.matrix)
    assert not np.array_equal(
        RandomProjectionCodec(256, seed=2).fit(X, metric="l2").matrix, codec.matrix
    )
    with pytest.raises(InvalidInputError, match="no decoder"):
        codec.decode(codec.encode(X))


def test_cosine_renormalises_rp_and_truncation_but_not_ip():
    X = _unit(50, 32, seed=14)
    for codec_type in (TruncationCodec, RandomProjectionCodec):
        cos = codec_type(8).fit(X, metric="cosine")
        y = cos.compressed_vectors(cos.encode(X))
        np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, atol=1e-5)
        ip = codec_type(8).fit(X, metric="ip")
        y = ip.compressed_vectors(ip.encode(X))
        assert np.linalg.norm(y, axis=1).std() > 0.01
    np.testing.assert_allclose(
        TruncationCodec(8).fit(X, metric="ip").encode(X).arrays["y"], X[:, :8]
    )


def test_pca_scores_the_uncentred_query_against_the_centred_projection():
    X = _unit(300, 32, seed=15)
    Q = _unit(4, 32, seed=16)
    codec = PCACodec(8).fit(X, metric="ip")
    codes = codec.encode(X)
    y = (X - codec.mean) @ codec.components
    np.testing.assert_allclose(codes.arrays["y"], y, atol=1e-5)
    # (P q).(P(x - mu)) + q.mu: the similarity with the reconstruction.
    expected = (Q @ codec.components) @ y.T + (Q @ codec.mean)[:, None]
    np.testing.assert_allclose(codec.score(Q, codes), expected, atol=1e-5)
    np.testing.assert_allclose(codec.score(Q, codes), Q @ codec.decode(codes).T, atol=1e-5)
    l2 = PCACodec(8).fit(X, metric="l2")
    recon = l2.decode(l2.encode(X))
    d2 = ((Q[:, None, :] - recon[None]) ** 2).sum(2)
    np.testing.assert_allclose(l2.score(Q, l2.encode(X)), -d2, atol=1e-5)


@pytest.mark.parametrize("codec_type", [PCACodec, RandomProjectionCodec, TruncationCodec, DCTCodec])
def test_reducers_refuse_k_above_d(codec_type):
    with pytest.raises(InvalidInputError, match="only 16"):
        codec_type(17).fit(_unit(20, 16))


# -- search, codes and validation ----------------------------------------------------------


def test_search_in_chunks_equals_sorting_the_full_scores(monkeypatch):
    # Hamming scores tie massively: the order must be (score desc, row asc) whatever the
    # chunking (docs/science.md §0.2).
    X = _unit(3000, 16, seed=17)
    Q = _unit(40, 16, seed=18)
    codec = BinaryCodec().fit(X)
    codes = codec.encode(X)
    S = codec.score(Q, codes)
    exclude = np.arange(40) * 7
    S_ex = S.copy()
    S_ex[np.arange(40), exclude] = -np.inf
    order = np.lexsort((np.broadcast_to(np.arange(3000), S.shape), -S_ex), axis=1)[:, :25]
    monkeypatch.setattr(base_mod, "_SCORE_BUDGET", 1 << 14)
    monkeypatch.setattr(base_mod, "ENCODE_BLOCK", 1024)
    idx, scores = codec.search(Q, codes, 25, exclude=exclude)
    np.testing.assert_array_equal(idx, order)
    np.testing.assert_array_equal(scores, np.take_along_axis(S, order, axis=1))
    assert not (idx == exclude[:, None]).any()


def test_search_validates():
    X = _unit(20, 8)
    codec = Int8Codec().fit(X)
    codes = codec.encode(X)
    with pytest.raises(InvalidInputError, match="k must be"):
        codec.search(X[:2], codes, 20, exclude=[0, 1])
    with pytest.raises(InvalidInputError, match="exclude"):
        codec.search(X[:2], codes, 3, exclude=[0])
    with pytest.raises(InvalidInputError, match="dimension"):
        codec.search(X[:2, :4], codes, 3)


def test_codes_belong_to_their_codec():
    X = _unit(300, 16)
    codes = LVQCodec(4).fit(X).encode(X)
    with pytest.raises(InvalidInputError, match="made by lvq:4"):
        LVQCodec(8).fit(X).score(X[:2], codes)
    with pytest.raises(InvalidInputError, match="Codes"):
        LVQCodec(4).fit(X).score(X[:2], np.zeros((3, 16)))
    with pytest.raises(InvalidInputError, match="not fitted"):
        LVQCodec(4).encode(X)
    assert isinstance(codes, Codes) and len(codes.rows(slice(0, 5))) == 5


@pytest.mark.parametrize("spec", ["int8", "lvq:4x8", "pca:4", "binary"])
def test_bad_input_is_refused(spec):
    X = _unit(30, 8)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        parse_codec_spec(spec).fit(bad)
    codec = parse_codec_spec(spec).fit(X)
    with pytest.raises(InvalidInputError, match="NaN"):
        codec.encode(bad)
    with pytest.raises(InvalidInputError, match="dimension"):
        codec.encode(X[:, :4])
    with pytest.raises(InvalidInputError, match="metric"):
        parse_codec_spec(spec).fit(X, metric="hamming")


def test_cosine_codes_ignore_the_vector_lengths():
    X = _unit(40, 16)
    scaled = X * np.linspace(0.5, 3, 40, dtype=np.float32)[:, None]
    for spec in ("int8", "lvq:4", "binary", "pca:4"):
        a = parse_codec_spec(spec).fit(X)
        b = parse_codec_spec(spec).fit(scaled)
        np.testing.assert_allclose(
            a.score(X[:3], a.encode(X)), b.score(scaled[:3], b.encode(scaled)), atol=1e-4
        )


@pytest.mark.parametrize(
    ("spec", "width"),
    [
        ("int8", 16),
        ("lvq:4x8", 16),
        ("binary", 16),
        ("pca:5", 5),
        ("rp:6", 6),
        ("dct:7", 7),
        ("truncate:3", 3),
        ("leanvec:8:4", 16),
    ],
)
def test_compressed_vectors_shapes(spec, width):
    X = _unit(60, 16)
    out = compressed_vectors(spec, X)
    assert out.dtype == np.float32 and out.shape == (60, width)


def test_search_rescored_reranks_the_compressed_shortlist_exactly():
    X = _unit(500, 24, seed=19) * 2.0  # raw lengths: cosine normalises them
    Q = _unit(30, 24, seed=20)
    codec = BinaryCodec().fit(X)
    codes = codec.encode(X)
    idx, scores = search_rescored(codec, Q, codes, X, 5, multiplier=4)
    shortlist, _ = codec.search(Q, codes, 20)
    expected = rerank_exact(Q, normalise_rows(X), shortlist, 5, metric="cosine")
    np.testing.assert_array_equal(idx, expected[0])
    np.testing.assert_allclose(scores, expected[1], atol=1e-6)
    exact = np.argsort(-(Q @ normalise_rows(X).T), axis=1)[:, :5]
    recall = np.mean([len(set(a) & set(b)) for a, b in zip(idx, exact, strict=True)]) / 5
    plain = (
        np.mean([len(set(a) & set(b)) for a, b in zip(shortlist[:, :5], exact, strict=True)]) / 5
    )
    assert recall > plain
    with pytest.raises(InvalidInputError, match="encoded ones"):
        search_rescored(codec, Q, codes, X[:10], 5)
