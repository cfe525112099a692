"""Tests for core.ingest: a round trip per format, the bad/odd corpus, and verbatim text."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embscope.core.errors import InvalidInputError
from embscope.core.ingest import (
    FORMATS,
    SUPPORTED_SUFFIXES,
    FileInspection,
    ParsedDataset,
    ReadLimits,
    inspect_file,
    read_dataset,
)
from tests.core.corpus import PICKLE_MARKERS, Case, build_corpus, write_h5ad

# Text that must come back exactly: markup, SQL, quotes, newlines, RTL, emoji, padding,
# and words that CSV readers like to turn into nulls.
TEXTS = [
    "<img src=x onerror=alert(1)>",
    "'; DROP TABLE datasets; --",
    "He said \"hi\", then 'bye'",
    "line one\nline two",
    "שלום עולם \u202edesrever",
    "👩‍🔬 🚀 café",
    "  padded  ",
    "NA",
]
# Formats whose cells cannot hold a line break (the Projector's metadata.tsv).
ONE_LINE_TEXTS = [t.replace("\n", " ") for t in TEXTS]
N = len(TEXTS)
D = 5


def _vectors(n: int = N, d: int = D, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


X = _vectors()
XCOLS = [f"x{j}" for j in range(D)]
IDS = [f"item-{i:02d}" for i in range(N)]
COUNTS = np.arange(10, 10 + N, dtype=np.int64)
SCORES = np.linspace(-1.5, 2.25, N)
FLAGS = np.array([i % 3 == 0 for i in range(N)])


def _meta_frame(texts: list[str] = TEXTS) -> pd.DataFrame:
    return pd.DataFrame({"id": IDS, "text": texts, "count": COUNTS, "score": SCORES, "flag": FLAGS})


def _check_meta(
    meta: pd.DataFrame, texts: list[str] = TEXTS, columns: tuple[str, ...] = ()
) -> None:
    """Metadata values and dtypes: ints int64, floats float64, text str, bools bool."""
    assert isinstance(meta.index, pd.RangeIndex) and len(meta) == N
    if columns:
        assert tuple(meta.columns) == columns
    assert list(meta["text"]) == texts
    assert pd.api.types.is_string_dtype(meta["text"].dtype)
    if "id" in meta:
        assert list(meta["id"]) == IDS
    if "count" in meta:
        assert meta["count"].dtype == np.int64
        np.testing.assert_array_equal(meta["count"].to_numpy(), COUNTS)
    if "score" in meta:
        assert meta["score"].dtype == np.float64
        np.testing.assert_array_equal(meta["score"].to_numpy(), SCORES)
    if "flag" in meta:
        assert meta["flag"].dtype == bool
        np.testing.assert_array_equal(meta["flag"].to_numpy(), FLAGS)


def _check_parsed(
    parsed: ParsedDataset, vectors: np.ndarray = X, ids: list[str] | None = None
) -> None:
    assert parsed.vectors.dtype == np.float32
    assert parsed.vectors.flags.c_contiguous and parsed.vectors.flags.owndata
    np.testing.assert_array_equal(parsed.vectors, vectors)
    expected_ids = ids if ids is not None else [str(i) for i in range(len(vectors))]
    assert parsed.ids.dtype == object
    assert list(parsed.ids) == expected_ids
    assert all(type(i) is str for i in parsed.ids)
    assert parsed.format in FORMATS
    assert len(parsed.metadata) == len(vectors)


def _num(v: float) -> str:
    # repr of the float32 value as a double: parses back to exactly that float32.
    return repr(float(v))


def _write_csv(path: Path, frame: pd.DataFrame, sep: str = ",") -> Path:
    frame.to_csv(path, index=False, sep=sep, float_format=None)
    return path


def _with_vector_columns(frame: pd.DataFrame, vectors: np.ndarray = X) -> pd.DataFrame:
    out = frame.copy()
    for j in range(vectors.shape[1]):
        out[f"x{j}"] = vectors[:, j].astype(np.float64)  # exact values, written exactly
    return out


# -- round trips, one per format ---------------------------------------------------------------


def test_npy_round_trip(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", X)
    parsed = read_dataset(tmp_path / "v.npy")
    _check_parsed(parsed)
    assert parsed.format == "npy" and parsed.vector_column is None and parsed.id_column is None
    assert parsed.metadata.shape == (N, 0)
    assert parsed.warnings == ()
    assert parsed.source == "v.npy"


def test_npy_uses_the_upload_name_for_the_suffix_and_source(tmp_path: Path) -> None:
    stored = tmp_path / "upload-abc.npy"
    np.save(stored, X)
    parsed = read_dataset(stored, filename="my vectors.npy")
    assert parsed.source == "my vectors.npy"
    _check_parsed(parsed)
    # the suffix of the user's name picks the reader, not the stored name
    csv_named = tmp_path / "upload-def.bin"
    csv_named.write_text("0.5,1.5\n2.5,3.5\n")
    got = read_dataset(csv_named, filename="vecs.csv")
    np.testing.assert_array_equal(got.vectors, np.array([[0.5, 1.5], [2.5, 3.5]], np.float32))


def test_npz_round_trip_with_one_dimensional_metadata(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "v.npz",
        emb=X,
        text=np.array(TEXTS),
        count=COUNTS,
        score=SCORES,
        flag=FLAGS,
        other_length=np.arange(3),
    )
    parsed = read_dataset(tmp_path / "v.npz", id_column="count")
    _check_parsed(parsed, ids=[str(c) for c in COUNTS])
    assert parsed.vector_column == "emb" and parsed.format == "npz"
    _check_meta(parsed.metadata, columns=("text", "count", "score", "flag"))


def test_npz_compressed_and_choosing_a_key(tmp_path: Path) -> None:
    other = _vectors(N, 3, seed=1).astype(np.float64)
    np.savez_compressed(tmp_path / "v.npz", a=X, b=other)
    parsed = read_dataset(tmp_path / "v.npz", vector_column="b")
    _check_parsed(parsed, other.astype(np.float32))
    assert parsed.vector_column == "b"
    assert any("converted from float64" in w for w in parsed.warnings)
    # "b.npy", the member's name inside the zip, names the same array
    assert read_dataset(tmp_path / "v.npz", vector_column="b.npy").vector_column == "b"


@pytest.mark.parametrize(
    "list_type",
    [pa.list_(pa.float32()), pa.large_list(pa.float32()), pa.list_(pa.float32(), D)],
    ids=["list", "large_list", "fixed_size_list"],
)
def test_parquet_round_trip(tmp_path: Path, list_type: pa.DataType) -> None:
    meta = _meta_frame()
    table = pa.Table.from_pandas(meta, preserve_index=False).append_column(
        "vector", pa.array(list(X), type=list_type)
    )
    pq.write_table(table, tmp_path / "v.parquet", row_group_size=3)  # several chunks
    parsed = read_dataset(tmp_path / "v.parquet", id_column="id")
    _check_parsed(parsed, ids=IDS)
    assert parsed.format == "parquet" and parsed.vector_column == "vector"
    _check_meta(parsed.metadata, columns=("id", "text", "count", "score", "flag"))
    assert parsed.warnings == ()


def test_parquet_of_numeric_columns_only(tmp_path: Path) -> None:
    frame = pd.DataFrame({f"d{j}": X[:, j] for j in range(D)})
    frame.to_parquet(tmp_path / "v.parquet")
    parsed = read_dataset(tmp_path / "v.parquet")
    _check_parsed(parsed)
    assert parsed.metadata.shape == (N, 0)
    picked = read_dataset(tmp_path / "v.parquet", vector_columns=["d3", "d1"])
    np.testing.assert_array_equal(picked.vectors, X[:, [3, 1]])
    assert list(picked.metadata.columns) == ["d0", "d2", "d4"]


def test_parquet_pandas_index_is_kept_as_metadata(tmp_path: Path) -> None:
    frame = pd.DataFrame({"vector": list(X.astype(np.float64))}, index=IDS)
    frame.to_parquet(tmp_path / "v.parquet")
    parsed = read_dataset(tmp_path / "v.parquet", id_column="index")
    _check_parsed(parsed, ids=IDS)
    assert any("converted from float64" in w for w in parsed.warnings)


def test_csv_with_header_round_trip(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "v.csv", _with_vector_columns(_meta_frame()))
    parsed = read_dataset(path, id_column="id", vector_columns=XCOLS)
    _check_parsed(parsed, ids=IDS)
    assert parsed.format == "csv" and parsed.vector_column is None
    _check_meta(parsed.metadata, columns=("id", "text", "count", "score", "flag"))


def test_csv_default_vector_is_the_float_columns(tmp_path: Path) -> None:
    """Whole-number columns beside float columns are labels: kept as metadata by default."""
    path = _write_csv(tmp_path / "v.csv", _with_vector_columns(_meta_frame()))
    parsed = read_dataset(path, id_column="id")
    expected = np.column_stack([SCORES, X.astype(np.float64)]).astype(np.float32)
    np.testing.assert_array_equal(parsed.vectors, expected)
    assert sorted(parsed.metadata.columns) == ["count", "flag", "id", "text"]
    np.testing.assert_array_equal(parsed.metadata["count"].to_numpy(), COUNTS)
    assert any("column 'count' holds whole numbers" in w for w in parsed.warnings)
    assert "count" not in inspect_file(path).default_vector_columns


def test_csv_all_integer_columns_are_the_vector(tmp_path: Path) -> None:
    """Integer-valued data (pixel counts, say) with no float column is still a vector."""
    path = tmp_path / "ints.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n")
    parsed = read_dataset(path)
    np.testing.assert_array_equal(parsed.vectors, np.array([[1, 2, 3], [4, 5, 6]], np.float32))


def test_csv_vector_columns_pick_and_order(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "v.csv", _with_vector_columns(_meta_frame()))
    parsed = read_dataset(path, vector_columns=["x4", "x0"])
    np.testing.assert_array_equal(parsed.vectors, X[:, [4, 0]])
    # unchosen numeric columns stay metadata with their types
    assert parsed.metadata["x1"].dtype == np.float64
    np.testing.assert_array_equal(parsed.metadata["x1"].to_numpy(), X[:, 1].astype(np.float64))
    assert parsed.metadata["count"].dtype == np.int64


def test_csv_headerless_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text("".join(",".join(_num(v) for v in row) + "\n" for row in X))
    parsed = read_dataset(path)
    _check_parsed(parsed)
    assert parsed.metadata.shape == (N, 0) and parsed.warnings == ()


def test_tsv_with_header_round_trip(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "v.tsv", _with_vector_columns(_meta_frame()), sep="\t")
    parsed = read_dataset(path, id_column="id", vector_columns=XCOLS)
    _check_parsed(parsed, ids=IDS)
    assert parsed.format == "tsv"
    _check_meta(parsed.metadata)


def test_txt_written_by_savetxt(tmp_path: Path) -> None:
    np.savetxt(tmp_path / "v.txt", X.astype(np.float64), fmt="%.17g")
    _check_parsed(read_dataset(tmp_path / "v.txt"))


def test_projector_pair_single_column_metadata_has_no_header(tmp_path: Path) -> None:
    vec = tmp_path / "vectors.tsv"
    vec.write_text("".join("\t".join(_num(v) for v in row) + "\n" for row in X))
    meta = tmp_path / "metadata.tsv"
    meta.write_text("".join(t + "\n" for t in ONE_LINE_TEXTS), encoding="utf-8")
    parsed = read_dataset(vec, metadata_path=meta)
    _check_parsed(parsed)
    assert parsed.format == "projector"
    assert list(parsed.metadata.columns) == ["label"]
    assert list(parsed.metadata["label"]) == ONE_LINE_TEXTS
    assert parsed.source == "vectors.tsv + metadata.tsv"


def test_projector_single_column_with_one_extra_line_reads_it_as_header(tmp_path: Path) -> None:
    vec = tmp_path / "vectors.tsv"
    vec.write_text("".join("\t".join(_num(v) for v in row) + "\n" for row in X))
    meta = tmp_path / "metadata.tsv"
    meta.write_text("word\n" + "".join(t + "\n" for t in ONE_LINE_TEXTS))
    parsed = read_dataset(vec, metadata_path=meta)
    assert list(parsed.metadata["word"]) == ONE_LINE_TEXTS


def test_projector_multi_column_metadata_has_a_header(tmp_path: Path) -> None:
    vec = tmp_path / "vectors.tsv"
    vec.write_text("".join("\t".join(_num(v) for v in row) + "\n" for row in X))
    meta = _write_csv(tmp_path / "metadata.tsv", _meta_frame(), sep="\t")
    parsed = read_dataset(vec, metadata_path=meta, id_column="id")
    _check_parsed(parsed, ids=IDS)
    _check_meta(parsed.metadata, columns=("id", "text", "count", "score", "flag"))


def _jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    return path


def _records(extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out = []
    for i in range(N):
        rec = {
            "id": IDS[i],
            "embedding": [float(v) for v in X[i]],
            "text": TEXTS[i],
            "count": int(COUNTS[i]),
            "score": float(SCORES[i]),
            "flag": bool(FLAGS[i]),
        }
        rec.update(extra or {})
        out.append(rec)
    return out


def test_jsonl_round_trip(tmp_path: Path) -> None:
    parsed = read_dataset(_jsonl(tmp_path / "v.jsonl", _records()), id_column="id")
    _check_parsed(parsed, ids=IDS)
    assert parsed.format == "jsonl" and parsed.vector_column == "embedding"
    _check_meta(parsed.metadata, columns=("id", "text", "count", "score", "flag"))


def test_jsonl_exact_reader_gives_the_same_result(tmp_path: Path) -> None:
    # Nested objects send the file to the line-by-line reader, which keeps each object's
    # own keys (pyarrow would give every row the union of keys, with nulls).
    records = _records({"info": {"when": "2020-01-02"}})
    records[1]["info"] = {"other": [1, "two"], "when": None}
    parsed = read_dataset(_jsonl(tmp_path / "v.jsonl", records), id_column="id")
    _check_parsed(parsed, ids=IDS)
    _check_meta(parsed.metadata, columns=("id", "text", "count", "score", "flag", "info"))
    assert parsed.metadata["info"][0] == '{"when": "2020-01-02"}'
    assert parsed.metadata["info"][1] == '{"other": [1, "two"], "when": null}'


def test_json_array_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "v.json"
    path.write_text(json.dumps(_records(), ensure_ascii=False), encoding="utf-8")
    parsed = read_dataset(path, id_column="id")
    _check_parsed(parsed, ids=IDS)
    _check_meta(parsed.metadata)


def test_jsonl_dates_stay_text(tmp_path: Path) -> None:
    parsed = read_dataset(
        _jsonl(tmp_path / "v.jsonl", _records({"day": "2021-03-04T05:06:07+02:00"}))
    )
    assert list(parsed.metadata["day"]) == ["2021-03-04T05:06:07+02:00"] * N


def test_h5ad_dense_x_with_obs(tmp_path: Path) -> None:
    cats = ["T cell", "B cell"]
    codes = [0, 1, -1, 0, 1, 1, 0, -1]
    path = write_h5ad(
        tmp_path / "v.h5ad",
        X=X,
        obs_index=IDS,
        obs={
            "text": TEXTS,
            "cell": ("categorical", cats, codes),
            "count": COUNTS,
            "score": SCORES,
            "flag": FLAGS,
        },
        obsm={"X_pca": X[:, :2].astype(np.float64)},
    )
    parsed = read_dataset(path, id_column="obs_names")
    _check_parsed(parsed, ids=IDS)
    assert parsed.format == "h5ad" and parsed.vector_column == "X"
    meta = parsed.metadata
    assert tuple(meta.columns) == ("obs_names", "text", "cell", "count", "score", "flag")
    _check_meta(meta.drop(columns=["obs_names"]))
    assert list(meta["obs_names"]) == IDS
    cell = meta["cell"].tolist()
    assert cell[:2] == ["T cell", "B cell"] and pd.isna(cell[2]) and pd.isna(cell[7])


def test_h5ad_obsm_key(tmp_path: Path) -> None:
    pca = _vectors(N, 3, seed=3)
    path = write_h5ad(tmp_path / "v.h5ad", X=X, obsm={"X_pca": pca})
    for key in ("obsm/X_pca", "X_pca"):
        parsed = read_dataset(path, vector_column=key)
        _check_parsed(parsed, pca)
        assert parsed.vector_column == "obsm/X_pca"


def test_h5ad_sparse_x_is_densified(tmp_path: Path) -> None:
    dense = np.array([[0, 1.5, 0, 0], [0, 0, 0, 0], [2.25, 0, 0, -3]], np.float32)
    rows, cols = np.nonzero(dense)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=3))])
    path = write_h5ad(
        tmp_path / "v.h5ad",
        sparse_X=(dense[rows, cols], cols.astype(np.int32), indptr, dense.shape),
    )
    parsed = read_dataset(path)
    np.testing.assert_array_equal(parsed.vectors, dense)
    assert any("sparse" in w for w in parsed.warnings)
    assert any("all zeros" in w and "row 1" in w for w in parsed.warnings)


def test_h5ad_sparse_x_too_large_is_refused(tmp_path: Path) -> None:
    dense = np.eye(4, dtype=np.float32)
    rows, cols = np.nonzero(dense)
    path = write_h5ad(
        tmp_path / "v.h5ad",
        sparse_X=(dense[rows, cols], cols, np.arange(5), dense.shape),
        obsm={"X_pca": X[:4]},
    )
    limits = ReadLimits.from_environment(max_densified_values=10)
    parsed = read_dataset(path, limits=limits)  # the default falls back to obsm
    assert parsed.vector_column == "obsm/X_pca"
    assert any("X cannot be used" in w for w in parsed.warnings)
    with pytest.raises(InvalidInputError, match="sparse 4 x 4 matrix.*obsm"):
        read_dataset(path, vector_column="X", limits=limits)
    assert read_dataset(path, vector_column="X").vector_column == "X"  # the default limit


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl", ".json", ".tsv"])
def test_separate_metadata_file_for_npy(tmp_path: Path, suffix: str) -> None:
    np.save(tmp_path / "v.npy", X)
    meta_path = tmp_path / f"meta{suffix}"
    frame = _meta_frame()
    if suffix == ".parquet":
        frame.to_parquet(meta_path, index=False)
    elif suffix == ".jsonl":
        _jsonl(meta_path, frame.to_dict("records"))
    elif suffix == ".json":
        records = [
            {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in frame.to_dict("records")
        ]
        meta_path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    else:
        _write_csv(meta_path, frame, sep="\t" if suffix == ".tsv" else ",")
    parsed = read_dataset(tmp_path / "v.npy", metadata_path=meta_path, id_column="id")
    _check_parsed(parsed, ids=IDS)
    _check_meta(parsed.metadata, columns=("id", "text", "count", "score", "flag"))


def test_metadata_file_with_matching_ids_and_a_clashing_column(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "v.csv", _with_vector_columns(_meta_frame()[["id", "count"]]))
    meta = pd.DataFrame({"id": IDS, "count": COUNTS * 2, "text": TEXTS})
    meta_path = _write_csv(tmp_path / "m.csv", meta)
    parsed = read_dataset(path, metadata_path=meta_path, id_column="id", vector_columns=XCOLS)
    _check_parsed(parsed, ids=IDS)
    assert list(parsed.metadata.columns) == ["id", "count", "count_metadata", "text"]
    np.testing.assert_array_equal(parsed.metadata["count_metadata"].to_numpy(), COUNTS * 2)
    assert any("'count'" in w and "count_metadata" in w for w in parsed.warnings)
    assert list(parsed.metadata["text"]) == TEXTS


def test_metadata_ids_in_another_order_are_reported_as_such(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "v.csv", _with_vector_columns(_meta_frame()[["id"]]))
    meta_path = _write_csv(tmp_path / "m.csv", pd.DataFrame({"id": IDS[::-1], "n": COUNTS}))
    with pytest.raises(InvalidInputError, match="different order"):
        read_dataset(path, metadata_path=meta_path, id_column="id")


# -- metadata text kept verbatim -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "jsonl", "npz", "h5ad", "metadata.csv"])
def test_text_survives_verbatim(tmp_path: Path, fmt: str) -> None:
    frame = pd.DataFrame({"text": TEXTS})
    if fmt in ("csv", "tsv"):
        path = _write_csv(
            tmp_path / f"v.{fmt}", _with_vector_columns(frame), sep="\t" if fmt == "tsv" else ","
        )
        parsed = read_dataset(path)
    elif fmt == "parquet":
        path = tmp_path / "v.parquet"
        pq.write_table(
            pa.table({"text": TEXTS, "vector": pa.array(list(X), pa.list_(pa.float32()))}), path
        )
        parsed = read_dataset(path)
    elif fmt == "jsonl":
        path = _jsonl(
            tmp_path / "v.jsonl",
            [{"v": [float(x) for x in r], "text": t} for r, t in zip(X, TEXTS, strict=True)],
        )
        parsed = read_dataset(path)
    elif fmt == "npz":
        np.savez(tmp_path / "v.npz", X=X, text=np.array(TEXTS))
        parsed = read_dataset(tmp_path / "v.npz")
    elif fmt == "h5ad":
        parsed = read_dataset(write_h5ad(tmp_path / "v.h5ad", X=X, obs={"text": TEXTS}))
    else:
        np.save(tmp_path / "v.npy", X)
        parsed = read_dataset(
            tmp_path / "v.npy", metadata_path=_write_csv(tmp_path / "m.csv", frame)
        )
    got = list(parsed.metadata["text"])
    for want, have in zip(TEXTS, got, strict=True):
        assert have == want, f"{want!r} came back as {have!r}"
    np.testing.assert_array_equal(parsed.vectors, X)


def test_csv_cells_that_look_like_nulls_or_dates_stay_text(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text('label,day,x\nNA,2020-01-02,0.5\nnull,2021-12-31,1.5\n"",2022-02-02,2.5\n')
    parsed = read_dataset(path)
    assert list(parsed.metadata["label"]) == ["NA", "null", ""]
    assert list(parsed.metadata["day"]) == ["2020-01-02", "2021-12-31", "2022-02-02"]
    np.testing.assert_array_equal(parsed.vectors, np.array([[0.5], [1.5], [2.5]], np.float32))


def test_id_column_keeps_its_text(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text("code,x0,x1\n007,0.1,0.2\n010,0.3,0.4\n7,0.5,0.6\n")
    parsed = read_dataset(path, id_column="code")
    assert list(parsed.ids) == ["007", "010", "7"]
    np.testing.assert_array_equal(
        parsed.vectors, np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], np.float32)
    )


# -- CSV shapes seen in the wild ----------------------------------------------------------------


def test_pandas_index_column_is_metadata_not_a_coordinate(tmp_path: Path) -> None:
    pd.DataFrame(X.astype(np.float64)).to_csv(tmp_path / "v.csv")  # header ",0,1,2,3,4"
    parsed = read_dataset(tmp_path / "v.csv")
    np.testing.assert_array_equal(parsed.vectors, X)
    assert list(parsed.metadata.columns) == ["index"]
    np.testing.assert_array_equal(parsed.metadata["index"].to_numpy(), np.arange(N))


def test_pandas_numbered_header_is_a_header(tmp_path: Path) -> None:
    pd.DataFrame(X.astype(np.float64)).to_csv(tmp_path / "v.csv", index=False)  # header 0,1,2,3,4
    parsed = read_dataset(tmp_path / "v.csv")
    np.testing.assert_array_equal(parsed.vectors, X)
    assert parsed.vectors.shape == (N, D)


def test_csv_column_of_bracketed_lists(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"id": IDS, "embedding": [str([float(v) for v in r]) for r in X], "n": COUNTS}
    )
    path = _write_csv(tmp_path / "v.csv", frame)
    info = inspect_file(path)
    assert info.vector_candidates == ("embedding",) and info.numeric_columns == ()
    parsed = read_dataset(path, id_column="id", vector_column="embedding")
    _check_parsed(parsed, ids=IDS)
    assert list(parsed.metadata.columns) == ["id", "n"]


def test_headerless_csv_with_a_label_column(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text(
        "".join(f"w{i}," + ",".join(_num(v) for v in row) + "\n" for i, row in enumerate(X))
    )
    parsed = read_dataset(path, id_column="column_1")
    _check_parsed(parsed, ids=[f"w{i}" for i in range(N)])


def test_bom_and_crlf_are_accepted_with_notes(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    body = "name,x0,x1\r\n" + "".join(
        f"{IDS[i]},{_num(X[i, 0])},{_num(X[i, 1])}\r\n" for i in range(N)
    )
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    parsed = read_dataset(path, id_column="name")
    _check_parsed(parsed, X[:, :2], ids=IDS)
    assert list(parsed.metadata.columns) == ["name"]  # the BOM is not part of the first name
    assert any("byte-order mark" in w for w in parsed.warnings)
    assert any("CRLF" in w for w in parsed.warnings)


def test_blank_lines_do_not_shift_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text("x,y\n\n0.1,0.2\n\n\n0.3,nan\n")
    with pytest.raises(InvalidInputError, match=r"line 6\b"):
        read_dataset(path)


def test_quoted_newlines_do_not_shift_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_text('label,x\n"two\nlines",0.1\nok,inf\n')
    with pytest.raises(InvalidInputError, match=r"line 4\b"):
        read_dataset(path)


# -- the corpus -----------------------------------------------------------------------------------

with tempfile.TemporaryDirectory() as _tmp:
    CASE_NAMES = [c.name for c in build_corpus(Path(_tmp))]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Case]:
    return {c.name: c for c in build_corpus(tmp_path_factory.mktemp("corpus"))}


def test_corpus_is_large_and_mixed() -> None:
    assert len(CASE_NAMES) >= 30
    with tempfile.TemporaryDirectory() as tmp:
        cases = build_corpus(Path(tmp))
        assert all(c.path.exists() for c in cases)
        assert sum(c.expect == "error" for c in cases) >= 30
        assert sum(c.expect == "warning" for c in cases) >= 10


@pytest.mark.parametrize("name", CASE_NAMES)
def test_corpus_case(corpus: dict[str, Case], name: str) -> None:
    case = corpus[name]
    if case.expect == "error":
        with pytest.raises(InvalidInputError) as info:
            read_dataset(case.path, **case.kwargs)
        message = str(info.value)
        for text in case.substrings:
            assert text in message, f"{text!r} not in {message!r}"
        assert "Traceback" not in message
        # inspect_file refuses it too (it reads with the default choices)
        if not case.kwargs:
            with pytest.raises(InvalidInputError):
                inspect_file(case.path)
    else:
        parsed = read_dataset(case.path, **case.kwargs)
        joined = " | ".join(parsed.warnings)
        for text in case.substrings:
            assert text in joined, f"{text!r} not in {joined!r}"
        n = parsed.vectors.shape[0]
        assert parsed.vectors.dtype == np.float32 and parsed.vectors.flags.c_contiguous
        assert np.isfinite(parsed.vectors).all()
        assert parsed.ids.shape == (n,) and len(set(parsed.ids)) == n
        assert isinstance(parsed.metadata.index, pd.RangeIndex) and len(parsed.metadata) == n


def test_no_pickle_is_ever_loaded(tmp_path: Path) -> None:
    cases = build_corpus(tmp_path)
    for case in cases:
        try:
            read_dataset(case.path, **case.kwargs)
            inspect_file(case.path)
        except InvalidInputError:
            pass
    for marker in PICKLE_MARKERS:
        assert not (tmp_path / marker).exists(), f"a pickle was loaded ({marker})"


def test_corpus_values_of_odd_files(corpus: dict[str, Case]) -> None:
    fortran = read_dataset(corpus["warn_fortran"].path)
    np.testing.assert_array_equal(fortran.vectors, np.load(corpus["warn_fortran"].path))
    ints = read_dataset(corpus["warn_int"].path)
    np.testing.assert_array_equal(ints.vectors, np.arange(12, dtype=np.float32).reshape(6, 2))
    half = read_dataset(corpus["warn_float16"].path)
    np.testing.assert_array_equal(
        half.vectors, np.load(corpus["warn_float16"].path).astype(np.float32)
    )
    assert not any("converted" in w for w in half.warnings)  # float16 -> float32 is exact
    zeros = read_dataset(corpus["warn_zero_vectors"].path)
    assert "2 vectors are all zeros" in " ".join(zeros.warnings)
    assert "rows 1, 4" in " ".join(zeros.warnings)


# -- other checks ---------------------------------------------------------------------------------


def test_messages_list_what_is_available(tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "a": pa.array(list(X), pa.list_(pa.float32())),
                "b": pa.array(list(X), pa.list_(pa.float32())),
                "t": TEXTS,
            }
        ),
        tmp_path / "v.parquet",
    )
    with pytest.raises(InvalidInputError, match=r"no column 'zz'.*'a', 'b'"):
        read_dataset(tmp_path / "v.parquet", vector_column="zz")
    with pytest.raises(InvalidInputError, match=r"no column 'nope'.*'t'"):
        read_dataset(tmp_path / "v.parquet", id_column="nope")
    parsed = read_dataset(tmp_path / "v.parquet", vector_column="b")
    assert list(parsed.metadata.columns) == ["t"]  # the other vector column is not metadata
    assert any("'a'" in w and "not kept" in w for w in parsed.warnings)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vector_column": "X"}, "single array"),
        ({"vector_columns": ["a"]}, "vector_columns applies to CSV"),
        ({"vector_columns": []}, "empty"),
        ({"vector_column": "a", "vector_columns": ["b"]}, "either"),
    ],
)
def test_choices_that_do_not_apply(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    np.save(tmp_path / "v.npy", X)
    with pytest.raises(InvalidInputError, match=match):
        read_dataset(tmp_path / "v.npy", **kwargs)


def test_unsupported_metadata_suffix(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", X)
    (tmp_path / "m.xml").write_text("<a/>")
    with pytest.raises(InvalidInputError, match=r"\.csv, \.tsv"):
        read_dataset(tmp_path / "v.npy", metadata_path=tmp_path / "m.xml")


def test_supported_suffixes_have_readers(tmp_path: Path) -> None:
    assert set(SUPPORTED_SUFFIXES) >= {
        ".npy",
        ".npz",
        ".parquet",
        ".csv",
        ".tsv",
        ".jsonl",
        ".h5ad",
    }
    assert all(s.startswith(".") and s == s.lower() for s in SUPPORTED_SUFFIXES)


def test_float_id_column_with_whole_numbers_gives_integer_text(tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "vector": pa.array(list(X), pa.list_(pa.float32())),
                "key": np.arange(N, dtype=np.float64) * 10,
            }
        ),
        tmp_path / "v.parquet",
    )
    parsed = read_dataset(tmp_path / "v.parquet", id_column="key")
    assert list(parsed.ids) == [str(10 * i) for i in range(N)]


def test_npy_of_100k_by_384_is_read_without_per_row_work(tmp_path: Path) -> None:
    # Speed belongs in bench/; this only catches a reader gone per-row Python (minutes),
    # with room for a loaded CI machine (it takes ~0.3 s on an idle one).
    big = np.random.default_rng(0).standard_normal((100_000, 384), dtype=np.float32)
    np.save(tmp_path / "big.npy", big)
    start = time.perf_counter()
    parsed = read_dataset(tmp_path / "big.npy")
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(parsed.vectors, big)
    assert elapsed < 15.0, f"took {elapsed:.2f} s"


# -- inspect_file -----------------------------------------------------------------------------


def test_inspect_csv_with_header(tmp_path: Path) -> None:
    vectors = _vectors(30, D, seed=2)
    frame = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(30)],
            "text": [TEXTS[i % N] + str(i) for i in range(30)],
            "group": [i % 2 for i in range(30)],
            "rank": list(range(100, 130)),
        }
    )
    path = _write_csv(tmp_path / "v.csv", _with_vector_columns(frame, vectors))
    info = inspect_file(path)
    assert isinstance(info, FileInspection)
    # whole-number columns "group" and "rank" are labels by default, not coordinates
    assert (info.format, info.n_rows, info.dim) == ("csv", 30, D)
    assert info.default_vector_columns == ("x0", "x1", "x2", "x3", "x4")
    assert info.columns == ("id", "text", "group", "rank", "x0", "x1", "x2", "x3", "x4")
    assert info.numeric_columns == ("group", "rank", "x0", "x1", "x2", "x3", "x4")
    assert info.vector_candidates == ()
    assert info.id_candidates == ("id", "text", "rank")  # rank: unique integers, now metadata
    assert len(info.preview) == 20
    assert info.preview.columns[0] == "vector"
    assert info.preview.iloc[0, 0].endswith(f"… ({D} values)]")
    assert any("whole numbers" in w for w in info.warnings)


def test_inspect_with_metadata_file(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", X)
    meta_path = _write_csv(tmp_path / "m.csv", _meta_frame())
    info = inspect_file(tmp_path / "v.npy", metadata_path=meta_path)
    assert (info.format, info.n_rows, info.dim) == ("npy", N, D)
    assert info.columns == ("id", "text", "count", "score", "flag")
    assert info.id_candidates == ("id", "text", "count")
    assert list(info.preview.columns) == ["vector", "id", "text", "count", "score", "flag"]
    assert list(info.preview["text"]) == TEXTS


def test_inspect_npz_h5ad_parquet_jsonl_candidates(tmp_path: Path) -> None:
    np.savez(tmp_path / "v.npz", ints=np.ones((N, 2), np.int32), emb=X, labels=np.array(IDS))
    info = inspect_file(tmp_path / "v.npz")
    assert info.vector_candidates == ("emb", "ints") and info.dim == D
    assert info.id_candidates == ("labels",)

    path = write_h5ad(tmp_path / "v.h5ad", X=X, obs_index=IDS, obsm={"X_pca": X[:, :2]})
    info = inspect_file(path)
    assert info.format == "h5ad" and info.vector_candidates == ("X", "obsm/X_pca")
    assert info.id_candidates == ("obs_names",)

    pq.write_table(
        pa.table(
            {
                "other": pa.array(list(X[:, :2]), pa.list_(pa.float32())),
                "embedding": pa.array(list(X), pa.list_(pa.float32())),
            }
        ),
        tmp_path / "v.parquet",
    )
    info = inspect_file(tmp_path / "v.parquet")
    assert info.vector_candidates == ("embedding", "other") and info.dim == D

    info = inspect_file(_jsonl(tmp_path / "v.jsonl", _records()))
    assert info.vector_candidates == ("embedding",)
    assert info.columns == ("id", "embedding", "text", "count", "score", "flag")
    assert info.id_candidates == ("id", "text", "count")


def test_inspect_projector(tmp_path: Path) -> None:
    vec = tmp_path / "vectors.tsv"
    vec.write_text("".join("\t".join(_num(v) for v in row) + "\n" for row in X))
    info = inspect_file(vec)
    assert (info.format, info.n_rows, info.dim, info.columns) == ("projector", N, D, ())


# -- damaged files never leak a library error -------------------------------------------------


def _valid_files(root: Path) -> list[Path]:
    vectors = _vectors(12, 4, seed=5)
    np.save(root / "a.npy", vectors)
    np.savez_compressed(root / "a.npz", emb=vectors, lab=np.array([f"l{i}" for i in range(12)]))
    pq.write_table(
        pa.table(
            {
                "t": [f"t{i}" for i in range(12)],
                "vector": pa.array(list(vectors), pa.list_(pa.float32())),
            }
        ),
        root / "a.parquet",
    )
    _write_csv(
        root / "a.csv", _with_vector_columns(pd.DataFrame({"t": ['a "q",\nb'] * 12}), vectors)
    )
    (root / "a.tsv").write_text("".join("\t".join(_num(v) for v in r) + "\n" for r in vectors))
    _jsonl(
        root / "a.jsonl",
        [{"v": [float(x) for x in r], "m": {"k": i}} for i, r in enumerate(vectors)],
    )
    write_h5ad(root / "a.h5ad", X=vectors, obs={"c": ("categorical", ["a", "b"], [0, 1] * 6)})
    return sorted(root.iterdir())


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_damaged_files_raise_only_invalid_input(tmp_path: Path) -> None:
    rng = np.random.default_rng(2024)
    outcomes = {"ok": 0, "refused": 0}
    for original in _valid_files(tmp_path):
        data = original.read_bytes()
        for trial in range(24):
            damaged = bytearray(data)
            if trial % 3 == 0:
                damaged = damaged[: int(rng.integers(0, len(damaged)))]
            elif trial % 3 == 1:
                for _ in range(int(rng.integers(1, 6))):
                    damaged[int(rng.integers(0, len(damaged)))] = int(rng.integers(0, 256))
            else:
                at = int(rng.integers(0, len(damaged)))
                damaged[at:at] = rng.integers(
                    0, 256, int(rng.integers(1, 20)), dtype=np.uint8
                ).tobytes()
            path = tmp_path / f"damaged{original.suffix}"
            path.write_bytes(bytes(damaged))
            for reader in (read_dataset, inspect_file):
                try:
                    reader(path)
                    outcomes["ok"] += 1
                except InvalidInputError as exc:
                    assert str(exc), "an error must have a message"
                    outcomes["refused"] += 1
    assert outcomes["refused"] > outcomes["ok"] > 0


def test_h5ad_nullable_and_legacy_obs_columns(tmp_path: Path) -> None:
    path = write_h5ad(tmp_path / "v.h5ad", X=X[:4], obs_index=["a", "b", "c", "d"])
    strings = h5py.string_dtype()
    with h5py.File(path, "a") as f:
        obs = f["obs"]
        for name, enc, values in (
            ("nint", "nullable-integer", np.array([1, 2, 3, 4])),
            ("nbool", "nullable-boolean", np.array([True, False, True, False])),
        ):
            g = obs.create_group(name)
            g.attrs["encoding-type"] = enc
            g.create_dataset("values", data=values)
            g.create_dataset("mask", data=np.array([False, True, False, False]))
        g = obs.create_group("nstr")
        g.attrs["encoding-type"] = "nullable-string-array"
        g.create_dataset("values", data=np.array(["x", "", "z", "w"], dtype=object), dtype=strings)
        g.create_dataset("mask", data=np.array([False, True, False, False]))
        # anndata 0.7: codes as a plain dataset, categories under obs/__categories
        cats = obs.create_group("__categories")
        cats.create_dataset("old", data=np.array(["lo", "hi"], dtype=object), dtype=strings)
        obs.create_dataset("old", data=np.array([1, 0, -1, 1], dtype=np.int8))
        weird = obs.create_group("weird")
        weird.attrs["encoding-type"] = "awkward-array"
        obs.attrs["column-order"] = np.array(
            ["nint", "nbool", "nstr", "old", "weird"], dtype=object
        )
    parsed = read_dataset(path)
    meta = parsed.metadata
    assert list(meta.columns) == ["obs_names", "nint", "nbool", "nstr", "old"]
    assert str(meta["nint"].dtype) == "Int64" and str(meta["nbool"].dtype) == "boolean"
    assert meta["nint"].tolist()[0] == 1 and pd.isna(meta["nint"][1]) and meta["nint"][3] == 4
    assert meta["nbool"][0] and pd.isna(meta["nbool"][1]) and not meta["nbool"][3]
    assert meta["nstr"][0] == "x" and pd.isna(meta["nstr"][1]) and meta["nstr"][3] == "w"
    assert meta["old"][0] == "hi" and meta["old"][1] == "lo" and pd.isna(meta["old"][2])
    assert any("'weird'" in w for w in parsed.warnings)


def test_parquet_numeric_columns_leave_integer_labels_as_metadata(tmp_path: Path) -> None:
    path = tmp_path / "v.parquet"
    pd.DataFrame({"label": [1, 2, 3], "a": [0.1, 0.2, 0.3], "b": [1.0, 2.0, 3.0]}).to_parquet(path)
    parsed = read_dataset(path)
    np.testing.assert_array_equal(
        parsed.vectors, np.array([[0.1, 1], [0.2, 2], [0.3, 3]], dtype=np.float32)
    )
    assert list(parsed.metadata.columns) == ["label"]
    assert any("'label'" in w and "metadata" in w for w in parsed.warnings)
    assert inspect_file(path).default_vector_columns == ("a", "b")
    chosen = read_dataset(path, vector_columns=["label", "a"])
    assert chosen.vectors.shape == (3, 2)


def test_parquet_vectors_are_streamed_into_one_owned_matrix(tmp_path: Path) -> None:
    """A list column is copied batch by batch into one float32 matrix that the checks keep
    as it is (no second copy); two list columns and float64 keep their warnings."""
    table = pa.table(
        {
            "id": IDS,
            "embedding": pa.array(list(X.astype(np.float64)), type=pa.list_(pa.float64())),
            "other": pa.array(list(X), type=pa.list_(pa.float32(), D)),
        }
    )
    pq.write_table(table, tmp_path / "v.parquet", row_group_size=2)
    parsed = read_dataset(tmp_path / "v.parquet", id_column="id")
    np.testing.assert_array_equal(parsed.vectors, X)
    assert parsed.vectors.flags.owndata and parsed.vectors.dtype == np.float32
    assert parsed.vector_column == "embedding" and list(parsed.metadata.columns) == ["id"]
    assert any("several list columns" in w for w in parsed.warnings)
    assert any("converted from float64" in w for w in parsed.warnings)
    assert any("other vector columns" in w for w in parsed.warnings)


@pytest.mark.parametrize(
    ("bad_row", "message"),
    [
        ([1.0] * (D - 1), "different lengths"),
        (None, r"no vector \(null\) in 1 row: row 5"),
        ([np.nan] + [1.0] * (D - 1), "NaN"),
        ([1e300] + [1.0] * (D - 1), "float32"),
    ],
    ids=["ragged", "null", "nan", "overflow"],
)
def test_parquet_problem_in_a_later_batch_is_named(
    tmp_path: Path, bad_row: list[float] | None, message: str
) -> None:
    """A problem met after the first batches still gets the whole-file message."""
    rows: list[Any] = [list(map(float, r)) for r in X]
    rows[5] = bad_row
    table = pa.table({"vector": pa.array(rows, type=pa.list_(pa.float64()))})
    pq.write_table(table, tmp_path / "v.parquet", row_group_size=2)
    with pytest.raises(InvalidInputError, match=message):
        read_dataset(tmp_path / "v.parquet")
