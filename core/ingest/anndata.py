"""AnnData ``.h5ad`` files, read with h5py (anndata itself is not needed).

The vectors are ``X`` or an ``obsm/<key>`` array (a sparse matrix is made dense up to
``limits.max_densified_values`` values); ``obs`` columns in AnnData's on-disk encodings
(categorical, nullable, string arrays) become the metadata. Every dataset's size comes from
its dataspace and is counted against the read's budget, and against the bytes it really
occupies in the file, before it is read.

Only what is inside the file is read. Before any data, :func:`check_self_contained` walks
every link of the file without following one and refuses what would make HDF5 read another
file or load code: external links, external raw storage (``external=``), virtual datasets,
soft links that lead nowhere in the file, filters other than HDF5's built-in ones (an
unknown filter id makes HDF5 look for a plugin library to load), filter pipelines on groups,
and HDF5 references (never followed, and refused rather than read).
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

#: HDF5's built-in filters and h5py's LZF: nothing else may run (HDF5 looks for a plugin
#: library to load for any other filter id a file names).
_BUILTIN_FILTERS = {
    h5py.h5z.FILTER_DEFLATE: "gzip",
    h5py.h5z.FILTER_SHUFFLE: "shuffle",
    h5py.h5z.FILTER_FLETCHER32: "fletcher32",
    h5py.h5z.FILTER_SZIP: "szip",
    h5py.h5z.FILTER_NBIT: "nbit",
    h5py.h5z.FILTER_SCALEOFFSET: "scaleoffset",
    h5py.h5z.FILTER_LZF: "lzf",
}
_PIPELINE_MESSAGE = 1 << 11  # H5O_PLINE_ID: an object header's filter pipeline message
#: The most links the walk of a file visits; an AnnData file has a few per obs column.
MAX_H5AD_LINKS = 1_000_000
_INSIDE = "embscope reads only what is inside the uploaded file"
_NAME_SHOWN = 80


def _shown(name: bytes | str) -> str:
    text = name.decode("utf-8", errors="replace") if isinstance(name, bytes) else name
    text = text.strip("/") or "/"
    return repr(text if len(text) <= _NAME_SHOWN else text[: _NAME_SHOWN - 1] + "…")


def check_self_contained(f: Any, label: str) -> None:
    """Refuse an HDF5 file that would make h5py read anything outside it, or load code.

    Every link is listed group by group without being followed (a group's header is
    checked before its links are read); hard links lead to the objects checked by
    :func:`check_dataset` (each object once, so a hard-link cycle ends), external and
    user-defined links are refused, and soft links are resolved only after the whole file
    is known to hold no external link, so resolving one cannot leave the file.

    Raises
    ------
    InvalidInputError
        The first thing found that is not inside the file, named by its path.
    """
    seen: set[tuple[int, int]] = set()
    groups: list[tuple[bytes, Any]] = [(b"/", f.id)]
    soft: list[tuple[bytes, bytes]] = []
    count = 0
    while groups:
        path, gid = groups.pop()
        _check_group(gid, path, label)
        links = _links_of(gid, MAX_H5AD_LINKS - count)
        count += len(links)
        if count > MAX_H5AD_LINKS:
            raise InvalidInputError(
                f"{label} holds more than {MAX_H5AD_LINKS:,} HDF5 links; an AnnData file has a "
                "few per column: re-save it with anndata's write_h5ad"
            )
        for name, kind in links:
            full = path + name
            if kind == h5py.h5l.TYPE_EXTERNAL:
                raise InvalidInputError(
                    f"{label}: {_shown(full)} is a link to another file (HDF5 external link): "
                    f"{_INSIDE}; save it with the data inside (anndata.write_h5ad writes no "
                    "links)"
                )
            if kind == h5py.h5l.TYPE_SOFT:
                soft.append((full, gid.links.get_val(name)))
                continue
            if kind != h5py.h5l.TYPE_HARD:
                raise InvalidInputError(
                    f"{label}: {_shown(full)} is a user-defined HDF5 link, which embscope does "
                    f"not follow: {_INSIDE}; save it with anndata.write_h5ad"
                )
            oid = h5py.h5o.open(gid, name)
            info = h5py.h5o.get_info(oid)
            if (info.fileno, info.addr) in seen:
                continue
            seen.add((info.fileno, info.addr))
            if isinstance(oid, h5py.h5g.GroupID):
                groups.append((full + b"/", oid))
            elif isinstance(oid, h5py.h5d.DatasetID):
                check_dataset(oid, full, label)
    for full, target in soft:
        _check_soft_link(f, full, target, label)


def _check_group(gid: Any, path: bytes, label: str) -> None:
    if h5py.h5o.get_info(gid).hdr.mesg.present & _PIPELINE_MESSAGE:
        # h5py cannot say which filters a group's pipeline names, and anndata never sets one.
        raise InvalidInputError(
            f"{label}: group {_shown(path)} has an HDF5 filter pipeline (anndata and h5py never "
            "write one), which could make HDF5 load a filter plugin: embscope does not read "
            "it; save the file with anndata.write_h5ad"
        )


def _links_of(gid: Any, room: int) -> list[tuple[bytes, int]]:
    """(name, link type) of a group's links, without following any; at most ``room`` + 1."""
    links: list[tuple[bytes, int]] = []

    def collect(name: bytes, info: Any) -> bool:
        links.append((name, int(info.type)))
        return len(links) > room  # True stops the iteration

    gid.links.iterate(collect, info=True)
    return links


def _check_soft_link(f: Any, full: bytes, target: bytes, label: str) -> None:
    """A soft link must lead to an object of this file (a relative target is resolved from
    the link's group, as HDF5 does); the file holds no external link by now."""
    try:
        h5py.h5o.open(f.id, full)
    except (KeyError, RuntimeError, OSError, ValueError):
        raise InvalidInputError(
            f"{label}: {_shown(full)} is a link to {_shown(target)}, which is not in the "
            f"file: {_INSIDE}; save it with the data inside (anndata.write_h5ad)"
        ) from None


def check_dataset(dsid: Any, name: bytes | str, label: str) -> None:
    """Refuse a dataset whose data is not all inside the file, or needs a filter plugin.

    External raw storage (``external=[(path, offset, size)]``) and virtual datasets read
    other files; a filter other than the built-in ones makes HDF5 load a plugin; references
    (object or region, which newer HDF5 lets name another file) are never followed, so a
    dataset of them cannot be read. Only the dataset's creation properties and type are
    looked at: no data is read.
    """
    dcpl = dsid.get_create_plist()
    if dcpl.get_layout() == h5py.h5d.VIRTUAL:
        raise InvalidInputError(
            f"{label}: {_shown(name)} is an HDF5 virtual dataset, which maps data from other "
            f"files: {_INSIDE}; save it with the data copied in (anndata.write_h5ad)"
        )
    if dcpl.get_external_count() > 0:
        raise InvalidInputError(
            f"{label} stores {_shown(name)} outside itself (HDF5 external storage): {_INSIDE}; "
            "save it with the data inside (h5py: no external= / anndata.write_h5ad)"
        )
    for i in range(dcpl.get_nfilters()):
        code = int(dcpl.get_filter(i)[0])
        if code not in _BUILTIN_FILTERS:
            raise InvalidInputError(
                f"{label}: {_shown(name)} is compressed with HDF5 filter {code}, which is not "
                "built into HDF5 (it would be loaded as a plugin): embscope runs only "
                f"{', '.join(sorted(set(_BUILTIN_FILTERS.values())))}; re-save it with "
                "compression='gzip' or none"
            )
    if dsid.get_type().detect_class(h5py.h5t.REFERENCE):
        raise InvalidInputError(
            f"{label}: {_shown(name)} holds HDF5 references, not numbers or text: embscope "
            "never follows references (they can point elsewhere in the file or to other "
            "files); save the values themselves (anndata.write_h5ad)"
        )


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
    check_dataset(ds.id, ds.name, budget.label)  # the walk checked it too; this read needs it
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
        # sec2 named explicitly: no driver from the environment (family, multi) reads other files.
        f = h5py.File(path, "r", driver="sec2")
    except OSError as exc:
        raise InvalidInputError(
            f"{label} is not a readable HDF5/.h5ad file ({str(exc).splitlines()[0]}); it may be "
            "truncated or of another format: re-save it with anndata's write_h5ad"
        ) from exc
    with f:
        check_self_contained(f, label)  # before anything else is read
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
