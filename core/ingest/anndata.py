"""AnnData ``.h5ad`` files, read with h5py (anndata itself is not needed).

The vectors are ``X`` or an ``obsm/<key>`` array (a sparse matrix is made dense up to
``limits.max_densified_values`` values); ``obs`` columns in AnnData's on-disk encodings
(categorical, nullable, string arrays) become the metadata. Every dataset's size comes from
its dataspace and is counted against the read's budget, and against the bytes it really
occupies in the file, before it is read.
"""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np
import pandas as pd

from embscope.core.errors import InvalidInputError
from embscope.core.ingest.checks import dtype_problem, shape_problem
from embscope.core.ingest.limits import ReadBudget
from embscope.core.ingest.model import PY_STR_BYTES, Loaded, ReadRequest, Where, quote_list


def _attr_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attr_str(value[()])
    return str(value)


def _encoding(node: Any) -> str:
    return _attr_str(node.attrs.get("encoding-type", ""))


def _sparse_info(node: Any) -> tuple[str, tuple[int, int]] | None:
    enc = _encoding(node)
    if enc in ("csr_matrix", "csc_matrix") and "shape" in node.attrs:
        return enc[:3], tuple(int(s) for s in node.attrs["shape"])  # type: ignore[return-value]
    legacy = node.attrs.get("h5sparse_format")
    if legacy is not None and "h5sparse_shape" in node.attrs:
        return _attr_str(legacy), tuple(int(s) for s in node.attrs["h5sparse_shape"])  # type: ignore[return-value]
    return None


def _h5_matrix_shape(node: Any) -> tuple[tuple[int, ...], bool] | None:
    """(shape, is_sparse) of a node that could hold vectors, else None."""
    if isinstance(node, h5py.Dataset):
        return tuple(node.shape), False
    if isinstance(node, h5py.Group):
        info = _sparse_info(node)
        if info is not None:
            return info[1], True
    return None


def _h5_dtype_problem(dtype: np.dtype) -> str | None:
    # h5py reports variable-length strings as object dtype: text, not a pickle.
    if h5py.check_string_dtype(dtype) is not None:
        return "holds text, not numbers"
    return dtype_problem(dtype)


def _h5_read(ds: Any, what: str, budget: ReadBudget) -> Any:
    """A whole HDF5 dataset, its size in memory counted before reading.

    The size comes from the dataspace (shape x item size), which cannot lie; it is checked
    against the bytes the dataset really occupies in the file, because HDF5 compresses
    chunks and even lets a dataset of any shape take no space at all (fill values).
    """
    if not isinstance(ds, h5py.Dataset):
        raise InvalidInputError(f"{what} is not an HDF5 dataset; the file is inconsistent")
    _h5_charge(ds, what, budget)
    return ds[()]


def _h5_charge(ds: Any, what: str, budget: ReadBudget) -> None:
    size = int(ds.size or 0)
    budget.inflate(size * ds.dtype.itemsize, what, stored=ds.id.get_storage_size())
    if h5py.check_string_dtype(ds.dtype) is not None or ds.dtype.hasobject:
        budget.take(size * (PY_STR_BYTES + 16), f"the text of {what}")


def _densify(node: Any, label: str, key: str, budget: ReadBudget) -> np.ndarray:
    fmt, (n, d) = _sparse_info(node)  # type: ignore[misc]
    if n * d > budget.limits.max_densified_values:
        raise InvalidInputError(
            f"{label}: {key!r} is a sparse {n:,} x {d:,} matrix; as dense float32 it would need "
            f"{n * d * 4 / 1e9:.1f} GB. Choose an obsm array (e.g. 'obsm/X_pca') with "
            "vector_column, or reduce the matrix first"
        )
    data = _h5_read(node["data"], f"{key!r} (data)", budget)
    budget.take(3 * 8 * len(data), f"{key!r} (indices)")
    indices = _h5_read(node["indices"], f"{key!r} (indices)", budget).astype(np.int64)
    indptr = _h5_read(node["indptr"], f"{key!r} (indptr)", budget).astype(np.int64)
    major, minor = (n, d) if fmt == "csr" else (d, n)
    if (
        indptr.shape != (major + 1,)
        or indptr[0] != 0
        or indptr[-1] != len(data)
        or len(indices) != len(data)
        or (np.diff(indptr) < 0).any()
        or (len(indices) and (indices.min() < 0 or indices.max() >= minor))
    ):
        raise InvalidInputError(
            f"{label}: sparse matrix {key!r} is inconsistent (indptr/indices do not match its "
            "shape); the file is corrupt: re-save it"
        )
    problem = dtype_problem(data.dtype)
    if problem:
        raise InvalidInputError(f"{label}: {key!r} {problem}")
    dtype = np.result_type(data.dtype, np.float32)
    budget.take(major * minor * dtype.itemsize, f"{key!r} made dense")
    out = np.zeros((major, minor), dtype=dtype)
    rows = np.repeat(np.arange(major), np.diff(indptr))
    np.add.at(out, (rows, indices), data)  # add, not assign: repeated entries sum (scipy's rule)
    return out if fmt == "csr" else out.T


def _h5_strings(ds: Any, budget: ReadBudget) -> list[str]:
    _h5_charge(ds, f"dataset {ds.name!r}", budget)
    return [str(v) for v in ds.asstr()[()].tolist()]


def _h5_column(
    node: Any, name: str, n: int, legacy_cats: Any, label: str, budget: ReadBudget
) -> pd.Series | None:
    """One obs column in AnnData's on-disk encoding as a typed Series (None: unsupported)."""
    if isinstance(node, h5py.Dataset):
        if node.ndim != 1:
            return None
        if len(node) != n:
            raise InvalidInputError(
                f"{label}: obs column {name!r} has {len(node)} values for {n} rows; the file is "
                "inconsistent: re-save it"
            )
        if legacy_cats is not None and name in legacy_cats:
            return _categorical(
                _h5_read(node, f"obs column {name!r}", budget), legacy_cats[name], name, budget
            )
        if h5py.check_string_dtype(node.dtype) is not None:
            return pd.Series(_h5_strings(node, budget), dtype="str", name=name)
        if node.dtype.kind in "biuf":
            return pd.Series(_h5_read(node, f"obs column {name!r}", budget), name=name)
        return None
    enc = _encoding(node)
    if enc == "categorical":
        return _categorical(
            _h5_read(node["codes"], f"obs column {name!r}", budget),
            node["categories"],
            name,
            budget,
        )
    if enc in ("nullable-integer", "nullable-boolean", "nullable-string-array"):
        mask = _h5_read(node["mask"], f"obs column {name!r}", budget).astype(bool)
        if enc == "nullable-string-array":
            values = _h5_strings(node["values"], budget)
            return pd.Series(
                [None if m else v for v, m in zip(values, mask, strict=True)],
                dtype="str",
                name=name,
            )
        values = _h5_read(node["values"], f"obs column {name!r}", budget)
        dtype = "Int64" if enc == "nullable-integer" else "boolean"
        return pd.Series(pd.array(values, dtype=dtype), name=name).mask(mask)
    return None


def _categorical(codes: np.ndarray, categories: Any, name: str, budget: ReadBudget) -> pd.Series:
    if h5py.check_string_dtype(categories.dtype) is not None:
        cats: Any = np.array(_h5_strings(categories, budget), dtype=object)
    else:
        cats = _h5_read(categories, f"the categories of obs column {name!r}", budget)
    codes = np.asarray(codes).astype(np.int64)
    missing = codes < 0
    if len(cats) and codes.size:
        # Each row spells out its category: a long category repeated n times is n copies.
        if cats.dtype == object:
            sizes = np.fromiter((len(str(c)) for c in cats), dtype=np.int64, count=len(cats))
        else:
            sizes = np.full(len(cats), cats.dtype.itemsize, dtype=np.int64)
        valid = (codes >= 0) & (codes < len(cats))
        budget.take(
            int(sizes[codes[valid]].sum()) + codes.size * PY_STR_BYTES,
            f"obs column {name!r} with its categories spelled out",
        )
    values = cats[np.where(missing, 0, codes)] if len(cats) else np.full(len(codes), None)
    if cats.dtype == object:
        return pd.Series(
            [None if m else v for v, m in zip(values, missing, strict=True)], dtype="str", name=name
        )
    series = pd.Series(values, name=name)
    if missing.any():
        series = series.astype("Int64" if series.dtype.kind in "iu" else "float64").mask(missing)
    return series


def _read_obs(f: Any, n: int, label: str, warnings: list[str], budget: ReadBudget) -> pd.DataFrame:
    if "obs" not in f:
        return pd.DataFrame(index=pd.RangeIndex(n))
    obs = f["obs"]
    if isinstance(obs, h5py.Dataset):
        warnings.append(
            "obs is stored in the old (pre-0.7) AnnData layout and was not read; re-save the "
            "file with a recent anndata to keep it"
        )
        return pd.DataFrame(index=pd.RangeIndex(n))
    columns: dict[str, pd.Series] = {}
    index_key = _attr_str(obs.attrs.get("_index", "_index"))
    legacy_cats = obs.get("__categories")
    if index_key in obs:
        name = "obs_names" if index_key == "_index" else index_key
        series = _h5_column(obs[index_key], name, n, None, label, budget)
        if series is not None:
            columns[name] = series
    order = obs.attrs.get("column-order")
    names = (
        [_attr_str(c) for c in np.atleast_1d(order)]
        if order is not None and np.size(order)
        else [k for k in obs if k not in (index_key, "__categories")]
    )
    skipped = []
    for name in names:
        if name not in obs:
            continue
        series = _h5_column(obs[name], name, n, legacy_cats, label, budget)
        if series is None:
            skipped.append(name)
        else:
            columns[name if name not in columns else f"{name}_obs"] = series
    if skipped:
        warnings.append(
            f"obs columns in encodings embscope does not read were left out: {quote_list(skipped)}"
        )
    return pd.DataFrame(
        {k: v.reset_index(drop=True) for k, v in columns.items()}, index=pd.RangeIndex(n)
    )


def read_h5ad(request: ReadRequest) -> Loaded:
    """An AnnData ``.h5ad`` file: ``X`` or an ``obsm`` array, with ``obs`` as metadata."""
    path, label = request.path, request.label
    vector_column, budget = request.vector_column, request.budget
    max_dense = budget.limits.max_densified_values
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InvalidInputError(
            f"{label} is not a readable HDF5/.h5ad file ({str(exc).splitlines()[0]}); it may be "
            "truncated or of another format: re-save it with anndata's write_h5ad"
        ) from exc
    with f:
        nodes: dict[str, tuple[tuple[int, ...], bool]] = {}
        if "X" in f:
            entry = _h5_matrix_shape(f["X"])
            if entry is not None:
                nodes["X"] = entry
        if "obsm" in f and isinstance(f["obsm"], h5py.Group):
            for k in f["obsm"]:
                entry = _h5_matrix_shape(f["obsm"][k])
                if entry is not None:
                    nodes[f"obsm/{k}"] = entry

        def usable(key: str) -> bool:
            shape, sparse = nodes[key]
            if len(shape) != 2:
                return False
            if sparse:
                return shape[0] * shape[1] <= max_dense
            return _h5_dtype_problem(f[key].dtype) is None

        def why_not(key: str) -> str:
            shape, sparse = nodes[key]
            if len(shape) != 2:
                return (shape_problem(shape) or "").split(";")[0]
            if sparse:
                return f"is a sparse {shape[0]:,} x {shape[1]:,} matrix, too large to make dense"
            return (_h5_dtype_problem(f[key].dtype) or "").split(";")[0].split(":")[0]

        candidates = [k for k in nodes if usable(k)]
        warnings: list[str] = []
        if vector_column is not None:
            key = (
                vector_column
                if vector_column in nodes or vector_column == "X"
                else (
                    f"obsm/{vector_column}" if f"obsm/{vector_column}" in nodes else vector_column
                )
            )
            if key not in nodes:
                raise InvalidInputError(
                    f"{label}: there is no array {vector_column!r}; arrays usable as vectors: "
                    f"{quote_list(candidates)}"
                )
        elif candidates:
            key = candidates[0]
            if "X" in nodes and key != "X":
                warnings.append(
                    f"X cannot be used as the vectors (too large or not numeric); {key!r} was used"
                )
        else:
            found = "; ".join(f"{k!r} {why_not(k)}" for k in nodes) or "no X and no obsm arrays"
            raise InvalidInputError(
                f"{label}: no array in the file can be the vectors (X or obsm/<key> as a 2-D "
                f"numeric matrix is needed); found: {found}"
            )
        node = f[key]
        shape, sparse = nodes[key]
        if len(shape) != 2:
            raise InvalidInputError(f"{label}: {key!r} {shape_problem(shape)}")
        if sparse:
            vectors = _densify(node, label, key, budget)
            if key == "X":
                warnings.append("X was stored sparse; it was made dense")
        else:
            problem = _h5_dtype_problem(node.dtype)
            if problem:
                raise InvalidInputError(f"{label}: {key!r} {problem}")
            vectors = _h5_read(node, f"array {key!r}", budget)
        meta = _read_obs(f, shape[0], label, warnings, budget)
    return Loaded(
        format="h5ad",
        vectors=vectors,
        metadata=meta,
        where=Where(),
        vector_column=key,
        vector_candidates=tuple(candidates),
        columns=tuple(meta.columns),
        warnings=warnings,
        what=f"array {key!r}",
    )
