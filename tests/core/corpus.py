"""A corpus of bad and odd upload files, written on demand into a temporary directory.

Each :class:`Case` names a file, the keyword arguments to pass to
:func:`core.ingest.read_dataset`, and what must happen: ``"error"`` (an
``InvalidInputError`` whose message contains ``match`` and every string in ``more``) or
``"warning"`` (success, with a warning containing them). No binary fixture is committed:
:func:`build_corpus` writes every file from code, so the store tests can reuse the same
cases (for example to assert that a failed ingest leaves the database unchanged)::

    from tests.core.corpus import build_corpus
    for case in build_corpus(tmp_path):
        ...read_dataset(case.path, **case.kwargs)...
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["PICKLE_MARKERS", "Case", "build_corpus", "pickled_object_array", "write_h5ad"]


@dataclass(frozen=True)
class Case:
    """One corpus file and the outcome :func:`core.ingest.read_dataset` must give it."""

    name: str
    path: Path
    kwargs: dict[str, Any]
    expect: Literal["error", "warning"]
    match: str
    more: tuple[str, ...] = field(default=())

    @property
    def substrings(self) -> tuple[str, ...]:
        """Every text the error or warning message must contain."""
        return (self.match, *self.more)


class _Pickled:
    """Unpickling this touches a marker file: proof that a pickle was (wrongly) loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return (pathlib.Path.touch, (self.marker,))


def pickled_object_array(marker: Path) -> np.ndarray:
    """An object array whose unpickling would create ``marker``."""
    arr = np.empty((2, 2), dtype=object)
    for idx in np.ndindex(arr.shape):
        arr[idx] = _Pickled(marker)
    return arr


def write_h5ad(
    path: Path,
    *,
    X: np.ndarray | None = None,
    obs_index: list[str] | None = None,
    obs: dict[str, Any] | None = None,
    obsm: dict[str, np.ndarray] | None = None,
    sparse_X: tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]] | None = None,
) -> Path:
    """Write a minimal AnnData file in its on-disk format, with h5py only.

    ``obs`` values: a list of str (string array), a numpy array, or
    ``("categorical", categories, codes)``.
    """
    strings = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs["encoding-type"] = "anndata"
        f.attrs["encoding-version"] = "0.1.0"
        if X is not None:
            ds = f.create_dataset("X", data=X)
            ds.attrs["encoding-type"] = "array"
            ds.attrs["encoding-version"] = "0.2.0"
        if sparse_X is not None:
            data, indices, indptr, shape = sparse_X
            g = f.create_group("X")
            g.attrs["encoding-type"] = "csr_matrix"
            g.attrs["encoding-version"] = "0.1.0"
            g.attrs["shape"] = np.array(shape)
            g.create_dataset("data", data=data)
            g.create_dataset("indices", data=indices)
            g.create_dataset("indptr", data=indptr)
        n = (
            len(obs_index)
            if obs_index is not None
            else (X.shape[0] if X is not None else (sparse_X[3][0] if sparse_X else 0))
        )
        g = f.create_group("obs")
        g.attrs["encoding-type"] = "dataframe"
        g.attrs["encoding-version"] = "0.2.0"
        g.attrs["_index"] = "_index"
        obs = obs or {}
        g.attrs["column-order"] = np.array(list(obs), dtype=object) if obs else np.array([])
        index = obs_index if obs_index is not None else [str(i) for i in range(n)]
        ds = g.create_dataset("_index", data=np.array(index, dtype=object), dtype=strings)
        ds.attrs["encoding-type"] = "string-array"
        ds.attrs["encoding-version"] = "0.2.0"
        for name, value in obs.items():
            if isinstance(value, tuple) and value[0] == "categorical":
                _, categories, codes = value
                cg = g.create_group(name)
                cg.attrs["encoding-type"] = "categorical"
                cg.attrs["encoding-version"] = "0.2.0"
                cg.attrs["ordered"] = False
                cg.create_dataset(
                    "categories", data=np.array(categories, dtype=object), dtype=strings
                )
                cg.create_dataset("codes", data=np.asarray(codes, dtype=np.int8))
            elif isinstance(value, list):
                ds = g.create_dataset(name, data=np.array(value, dtype=object), dtype=strings)
                ds.attrs["encoding-type"] = "string-array"
                ds.attrs["encoding-version"] = "0.2.0"
            else:
                ds = g.create_dataset(name, data=np.asarray(value))
                ds.attrs["encoding-type"] = "array"
                ds.attrs["encoding-version"] = "0.2.0"
        m = f.create_group("obsm")
        m.attrs["encoding-type"] = "dict"
        m.attrs["encoding-version"] = "0.1.0"
        for key, value in (obsm or {}).items():
            ds = m.create_dataset(key, data=value)
            ds.attrs["encoding-type"] = "array"
            ds.attrs["encoding-version"] = "0.2.0"
    return path


def _base(n: int = 6, d: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def build_corpus(root: Path) -> list[Case]:
    """Write every corpus file into ``root`` and return the cases (at least 30).

    Parameters
    ----------
    root : Path
        An existing, empty directory (e.g. pytest's ``tmp_path``).

    Returns
    -------
    list of Case
        Unique names; the files exist when this returns.
    """
    root = Path(root)
    cases: list[Case] = []

    def add(name: str, filename: str, expect: str, match: str, *more: str, **kwargs: Any) -> Path:
        path = root / name / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        cases.append(Case(name, path, kwargs, expect, match, tuple(more)))  # type: ignore[arg-type]
        return path

    def text(path: Path, content: str | bytes) -> None:
        if isinstance(content, str):
            content = content.encode("utf-8")
        path.write_bytes(content)

    X = _base()

    # -- .npy --------------------------------------------------------------------------
    a = X.copy()
    a[2, 1] = np.nan
    a[5, 0] = np.nan
    np.save(add("npy_nan", "v.npy", "error", "NaN", "rows 2, 5"), a)
    a = X.copy()
    a[1, 3] = np.inf
    np.save(add("npy_inf", "v.npy", "error", "infinite", "row 1"), a)
    np.save(add("npy_1d", "v.npy", "error", "1-D", "reshape"), X[0])
    np.save(add("npy_3d", "v.npy", "error", "3-D", "reshape"), X.reshape(2, 3, 4))
    np.save(add("npy_0d", "v.npy", "error", "0-D"), np.float32(1.0))
    marker = root / "npy_pickle" / "PICKLE_WAS_LOADED"
    np.save(
        add("npy_pickle", "v.npy", "error", "pickle", "never loads"),
        pickled_object_array(marker),
        allow_pickle=True,
    )
    np.save(add("npy_strings", "v.npy", "error", "text"), np.array([["a", "b"], ["c", "d"]]))
    np.save(add("npy_complex", "v.npy", "error", "complex", "X.real"), X.astype(np.complex64))
    np.save(add("npy_structured", "v.npy", "error", "structured"), np.zeros(3, dtype="f4,f4"))
    p = add("npy_truncated", "v.npy", "error", "truncated", "bytes")
    np.save(p, _base(50, 8))
    p.write_bytes(p.read_bytes()[:-100])
    text(add("npy_not_npy", "v.npy", "error", "not a NumPy .npy"), b"this is not an array\n" * 4)
    p = add("npy_bad_header", "v.npy", "error", "header")
    p.write_bytes(b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f4', 'shape': (2, 2" + b" " * 10)
    np.save(add("npy_zero_rows", "v.npy", "error", "0 rows"), np.zeros((0, 4), np.float32))
    np.save(add("npy_zero_dim", "v.npy", "error", "d = 0"), np.zeros((4, 0), np.float32))
    text(add("npy_empty_file", "v.npy", "error", "empty"), b"")
    a = X.astype(np.float64)
    a[3, 2] = 1e300
    np.save(add("npy_float64_overflow", "v.npy", "error", "too large for float32", "row 3"), a)
    np.save(add("npy_datetime", "v.npy", "error", "dates"), np.zeros((2, 2), "datetime64[s]"))

    # -- .npz --------------------------------------------------------------------------
    marker_z = root / "npz_pickle_only" / "PICKLE_WAS_LOADED"
    p = add("npz_pickle_only", "v.npz", "error", "no array", "pickle")
    np.savez(p, X=pickled_object_array(marker_z), allow_pickle=True)
    np.savez(
        add("npz_no_usable", "v.npz", "error", "no array", "'labels'", "1-D"),
        labels=np.arange(5),
        name=np.array("x"),
    )
    np.savez(
        add("npz_missing_key", "v.npz", "error", "no array 'nope'", "'emb'", vector_column="nope"),
        emb=X,
    )
    p = add("npz_pickle_key_chosen", "v.npz", "error", "pickle", vector_column="obj")
    np.savez(p, emb=X, obj=pickled_object_array(root / "npz_pickle_key_chosen" / "MARK"))
    text(add("npz_corrupt", "v.npz", "error", "not a valid .npz"), b"PK\x03\x04 garbage")
    p = add("npz_truncated", "v.npz", "error", "npz")
    np.savez(p, emb=_base(50, 8))
    p.write_bytes(p.read_bytes()[:300])
    np.savez(
        add("npz_complex", "v.npz", "error", "complex", vector_column="c"), c=X.astype(complex)
    )

    # -- Parquet ------------------------------------------------------------------------
    rows = [list(map(float, r)) for r in X]
    ragged = [*rows]
    ragged[2] = ragged[2][:3]
    pq.write_table(
        pa.table({"vector": pa.array(ragged, pa.list_(pa.float32()))}),
        add("parquet_ragged", "v.parquet", "error", "different lengths", "row 2 has 3"),
    )
    nulls = [*rows]
    nulls[1] = None
    nulls[4] = None
    pq.write_table(
        pa.table({"vector": pa.array(nulls, pa.list_(pa.float32()))}),
        add("parquet_null_vector", "v.parquet", "error", "null", "rows 1, 4"),
    )
    inner = [list(r) for r in rows]
    inner[3][1] = None
    pq.write_table(
        pa.table({"vector": pa.array(inner, pa.list_(pa.float32()))}),
        add("parquet_null_inside", "v.parquet", "error", "null values inside", "row 3"),
    )
    p = add("parquet_truncated", "v.parquet", "error", "not a readable Parquet")
    pq.write_table(pa.table({"vector": pa.array(rows, pa.list_(pa.float32()))}), p)
    p.write_bytes(p.read_bytes()[:-40])
    pq.write_table(
        pa.table({"vector": pa.array(rows, pa.list_(pa.float32())), "label": list("abcdef")}),
        add(
            "parquet_missing_vector_column",
            "v.parquet",
            "error",
            "no column 'emb'",
            "'vector'",
            vector_column="emb",
        ),
    )
    pq.write_table(
        pa.table({"label": list("abcdef"), "flag": [True] * 6}),
        add("parquet_no_vectors", "v.parquet", "error", "no column holds vectors", "'label'"),
    )
    pq.write_table(
        pa.table({"tags": [["a", "b"]] * 6, "vector": pa.array(rows, pa.list_(pa.float32()))}),
        add(
            "parquet_text_list_chosen",
            "v.parquet",
            "error",
            "not a list of numbers",
            vector_column="tags",
        ),
    )
    pq.write_table(
        pa.table(
            {"id": ["a", "b", "a", "c", "b", "d"], "vector": pa.array(rows, pa.list_(pa.float32()))}
        ),
        add(
            "parquet_duplicate_ids",
            "v.parquet",
            "error",
            "duplicated",
            "'a' at rows 0, 2",
            id_column="id",
        ),
    )

    pq.write_table(
        pa.table({"vector": pa.array([], pa.list_(pa.float32()))}),
        add("parquet_zero_rows", "v.parquet", "error", "0 rows"),
    )
    pq.write_table(
        pa.table({"vector": pa.array([[]] * 4, pa.list_(pa.float32()))}),
        add("parquet_empty_lists", "v.parquet", "error", "d = 0"),
    )
    np.savez(add("npz_empty_archive", "v.npz", "error", "holds no arrays"))

    # -- CSV / TSV ----------------------------------------------------------------------
    text(add("csv_empty", "v.csv", "error", "empty"), "")
    text(add("csv_blank_lines", "v.csv", "error", "empty"), "\n\n  \n")
    text(add("csv_header_only", "v.csv", "error", "no data rows", "'x0'"), "id,x0,x1\n")
    text(
        add("csv_ragged", "v.csv", "error", "different numbers of fields", "line 3 has 2"),
        "0.1,0.2,0.3\n0.4,0.5,0.6\n0.7,0.8\n0.1,0.1,0.1\n",
    )
    text(
        add("csv_non_numeric", "v.csv", "error", "line 3, column 2", "'abc'"),
        "0.1,0.2,0.3\n0.4,0.5,0.6\n0.7,abc,0.9\n",
    )
    text(add("csv_nan", "v.csv", "error", "NaN", "line 2"), "0.1,0.2\nnan,0.5\n0.7,0.8\n")
    text(add("csv_inf", "v.csv", "error", "infinite", "line 3"), "0.1,0.2\n0.3,0.5\n0.7,-inf\n")
    text(
        add("csv_empty_cell", "v.csv", "error", "empty cells", "line 2"), "0.1,0.2\n0.3,\n0.7,0.8\n"
    )
    text(
        add("csv_header_bad_cell", "v.csv", "error", "'x1'", "line 4", "'oops'"),
        "id,x0,x1\na,0.1,0.2\nb,0.3,0.4\nc,0.5,oops\nd,0.7,0.8\ne,0.9,1.0\n"
        "f,1.1,1.2\ng,1.3,1.4\nh,1.5,1.6\ni,1.7,1.8\nj,1.9,2.0\nk,2.1,2.2\n",
    )
    header_csv = "name,x0,x1\na,0.1,0.2\nb,0.3,0.4\na,0.5,0.6\n"
    text(
        add(
            "csv_vector_columns_missing",
            "v.csv",
            "error",
            "'x9'",
            "not found",
            "'x0'",
            vector_columns=["x0", "x9"],
        ),
        header_csv,
    )
    text(
        add(
            "csv_missing_id_column",
            "v.csv",
            "error",
            "no column 'nope'",
            "'name'",
            id_column="nope",
        ),
        header_csv,
    )
    text(
        add(
            "csv_duplicate_ids",
            "v.csv",
            "error",
            "duplicated",
            "'a' at lines 2, 4",
            id_column="name",
        ),
        header_csv,
    )
    text(
        add("csv_empty_id", "v.csv", "error", "empty or missing", "line 3", id_column="name"),
        "name,x0,x1\na,0.1,0.2\n,0.3,0.4\nc,0.5,0.6\n",
    )
    text(add("csv_utf16", "v.csv", "error", "UTF-16"), "x0,x1\n0.1,0.2\n".encode("utf-16"))
    text(
        add("csv_not_utf8", "v.csv", "error", "not valid UTF-8", "line 3"),
        b"label,x0\nok,0.1\ncaf\xe9,0.2\n",
    )
    text(add("csv_binary", "v.csv", "error", "binary"), b"\x93NUMPY\x01\x00" + bytes(range(256)))
    text(
        add("csv_no_numeric", "v.csv", "error", "no numeric column", "'title'"),
        "title,author\nDune,Herbert\nEmma,Austen\n",
    )
    text(
        add("csv_complex", "v.csv", "error", "column 2", "'1+2j'", "complex"),
        "0.1,0.2\n0.3,1+2j\n",
    )
    v = add("projector_metadata_rows", "vectors.tsv", "error", "6 rows", "5 lines")
    text(v, "".join("\t".join(str(x) for x in r) + "\n" for r in X))
    meta = v.parent / "metadata.tsv"
    text(meta, "a\nb\nc\nd\ne\n")
    cases[-1] = Case(cases[-1].name, v, {"metadata_path": meta}, "error", "6 rows", ("5 lines",))
    v = add("metadata_ids_differ", "v.csv", "error", "differ", "'b' vs 'x'")
    text(v, "id,x0,x1\na,0.1,0.2\nb,0.3,0.4\nc,0.5,0.6\n")
    meta = v.parent / "meta.csv"
    text(meta, "id,label\na,cat\nx,dog\nc,cow\n")
    cases[-1] = Case(
        cases[-1].name,
        v,
        {"metadata_path": meta, "id_column": "id"},
        "error",
        "differ",
        ("'b' vs 'x'",),
    )
    v = add("metadata_rows_differ", "v.npy", "error", "6 rows", "4 data rows")
    np.save(v, X)
    meta = v.parent / "meta.csv"
    text(meta, "label,score\na,1\nb,2\nc,3\nd,4\n")
    cases[-1] = Case(
        cases[-1].name, v, {"metadata_path": meta}, "error", "6 rows", ("4 data rows",)
    )
    text(add("unknown_suffix", "v.xlsx", "error", "must end in one of", ".npy", ".h5ad"), "x")

    # -- JSON Lines -----------------------------------------------------------------------
    good = [json.dumps({"id": f"r{i}", "vector": r}) for i, r in enumerate(rows)]
    lines = [*good]
    lines[2] = '{"id": "r2", "vector": [0.1, 0.2'
    text(
        add("jsonl_bad_json", "v.jsonl", "error", "line 3 is not valid JSON"),
        "\n".join(lines) + "\n",
    )
    lines = [*good]
    lines[1] = json.dumps({"id": "r1", "label": "no vector here"})
    text(
        add("jsonl_missing_vector", "v.jsonl", "error", "missing", "line 2"),
        "\n".join(lines) + "\n",
    )
    lines = [*good]
    lines[2] = json.dumps({"id": "r2", "vector": [0.1, 0.2]})
    text(
        add("jsonl_ragged", "v.jsonl", "error", "different lengths", "line 3 has 2"),
        "\n".join(lines) + "\n",
    )
    lines = [*good]
    lines[1] = json.dumps({"id": "r1", "vector": [0.1, "0.2", 0.3, 0.4]})
    text(
        add("jsonl_text_in_vector", "v.jsonl", "error", "not numbers", "line 2", "'0.2'"),
        "\n".join(lines) + "\n",
    )
    lines = [*good]
    lines[1] = "[0.1, 0.2, 0.3, 0.4]"
    text(
        add("jsonl_not_object", "v.jsonl", "error", "line 2 holds a JSON list"),
        "\n".join(lines) + "\n",
    )
    text(
        add("jsonl_no_vector_field", "v.jsonl", "error", "no field holds a list", "'label'"),
        '{"label": "a"}\n{"label": "b"}\n',
    )
    text(
        add("jsonl_huge_number", "v.jsonl", "error", "infinite", "line 2"),
        '{"vector": [0.1, 0.2]}\n{"vector": [1e400, 0.2]}\n',
    )
    text(
        add("jsonl_nan", "v.jsonl", "error", "NaN", "line 1"),
        '{"vector": [NaN, 0.2]}\n{"vector": [0.1, 0.2]}\n',
    )
    text(
        add("jsonl_empty_vectors", "v.jsonl", "error", "no field holds a list"),
        '{"vector": []}\n{"vector": []}\n',
    )

    text(add("jsonl_blank", "v.jsonl", "error", "empty"), "\n\n   \n")
    text(
        add("json_object_not_list", "v.json", "error", "no field holds a list of numbers"),
        '{"vectors": [[0.1, 0.2], [0.3, 0.4]]}',
    )

    # -- AnnData .h5ad --------------------------------------------------------------------
    text(
        add("h5ad_corrupt", "v.h5ad", "error", "not a readable HDF5"),
        b"\x89HDF\r\n\x1a\n" + b"\x00" * 50,
    )
    p = add("h5ad_truncated", "v.h5ad", "error", "not a readable HDF5")
    write_h5ad(p, X=_base(200, 16), obsm={"X_pca": _base(200, 4)})
    p.write_bytes(p.read_bytes()[:2000])
    write_h5ad(
        add("h5ad_no_arrays", "v.h5ad", "error", "no array in the file can be the vectors"),
        obs_index=["a", "b"],
    )
    write_h5ad(
        add(
            "h5ad_missing_key",
            "v.h5ad",
            "error",
            "no array 'obsm/X_umap'",
            "'obsm/X_pca'",
            vector_column="obsm/X_umap",
        ),
        X=X,
        obsm={"X_pca": X[:, :2]},
    )
    a = X.copy()
    a[4, 0] = np.nan
    write_h5ad(
        add("h5ad_nan", "v.h5ad", "error", "NaN", "row 4", vector_column="obsm/X_pca"),
        X=X,
        obsm={"X_pca": a},
    )
    write_h5ad(
        add(
            "h5ad_duplicate_obs_names",
            "v.h5ad",
            "error",
            "duplicated",
            "'c1'",
            id_column="obs_names",
        ),
        X=X,
        obs_index=["c0", "c1", "c1", "c3", "c4", "c5"],
    )

    p = add("h5ad_text_matrix", "v.h5ad", "error", "holds text")
    write_h5ad(p, X=X)
    with h5py.File(p, "a") as f:
        del f["X"]
        f.create_dataset(
            "X", data=np.array([["a", "b"]] * 6, dtype=object), dtype=h5py.string_dtype()
        )

    # -- valid but odd: accepted with a warning ------------------------------------------------
    a = X.copy()
    a[3] = a[0]
    a[5] = a[0]
    np.save(
        add(
            "warn_duplicates", "v.npy", "warning", "2 vectors exactly repeat", "row 3 repeats row 0"
        ),
        a,
    )
    a = X.copy()
    a[1] = 0
    a[4] = -0.0
    np.save(add("warn_zero_vectors", "v.npy", "warning", "all zeros", "cosine"), a)
    np.save(add("warn_d1", "v.npy", "warning", "single dimension"), X[:, :1])
    np.save(add("warn_two_rows", "v.npy", "warning", "only two rows"), X[:2])
    np.save(add("warn_one_row", "v.npy", "warning", "only one row"), X[:1])
    np.save(add("warn_fortran", "v.npy", "warning", "Fortran"), np.asfortranarray(X))
    np.save(add("warn_float64", "v.npy", "warning", "converted from float64"), X.astype(np.float64))
    np.save(add("warn_float16", "v.npy", "warning", "only two rows"), X[:2].astype(np.float16))
    np.save(add("warn_int", "v.npy", "warning", "integer vectors"), np.arange(12).reshape(6, 2))
    np.save(add("warn_bool", "v.npy", "warning", "boolean"), (X > 0))
    text(
        add("warn_bom", "v.csv", "warning", "byte-order mark"),
        "\ufeffx0,x1\n0.1,0.2\n0.3,0.4\n0.5,0.6\n".encode(),
    )
    text(add("warn_crlf", "v.csv", "warning", "CRLF"), "0.1,0.2\r\n0.3,0.4\r\n0.5,0.6\r\n")
    p = add("warn_npz_pickled_side_array", "v.npz", "warning", "was not loaded")
    obj = np.empty(6, dtype=object)
    obj[:] = [_Pickled(root / "warn_npz_pickled_side_array" / "MARK")] * 6
    np.savez(p, emb=X, meta=obj, allow_pickle=True)
    np.savez(
        add("warn_npz_several", "v.npz", "warning", "several 2-D arrays", "'a'"), a=X, b=X[:, :2]
    )
    data = np.array([1.0, 2.0, 3.0], np.float32)
    write_h5ad(
        add("warn_h5ad_sparse", "v.h5ad", "warning", "sparse"),
        sparse_X=(data, np.array([0, 2, 1]), np.array([0, 1, 2, 3]), (3, 3)),
    )
    text(
        add("warn_int_columns", "v.csv", "warning", "whole numbers", "'label'"),
        "label,x0,x1\n1,0.1,0.2\n2,0.3,0.4\n1,0.5,0.6\n",
    )
    text(
        add(
            "warn_id_in_vector_columns",
            "v.csv",
            "warning",
            "left out of the vector columns",
            id_column="id",
            vector_columns=["id", "x0"],
        ),
        "id,x0\n10,0.1\n20,0.3\n30,0.5\n",
    )
    text(
        add("warn_gappy_numeric_column", "v.csv", "warning", "'x1' has empty cells", "metadata"),
        "x0,x1,x2\n0.1,0.2,0.3\n0.4,,0.6\n0.7,0.8,0.9\n",
    )
    text(
        add("warn_jsonl_mixed_field", "v.jsonl", "warning", "mixes kinds", "'tag'"),
        '{"vector": [1, 2], "tag": "a"}\n{"vector": [3, 4], "tag": 5}\n{"vector": [5, 7], "tag": null}\n',
    )
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "corpus case names must be unique"
    return cases


#: Markers that a (wrongly) loaded pickle in the corpus would create, relative to the root.
PICKLE_MARKERS = (
    "npy_pickle/PICKLE_WAS_LOADED",
    "npz_pickle_only/PICKLE_WAS_LOADED",
    "npz_pickle_key_chosen/MARK",
    "warn_npz_pickled_side_array/MARK",
)
