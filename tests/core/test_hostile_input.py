"""Hostile input does no harm.

Decompression bombs and headers that lie are refused (or capped) before memory goes;
every read stays within its memory budget; nothing is ever unpickled; text that looks like
SQL, markup or a path is stored, matched and exported verbatim and never executed.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
import os
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import embscope.core.ingest as ingest
from embscope.core.errors import InvalidInputError
from embscope.core.export import csv_bytes, export_dataset
from embscope.core.ingest import (
    ReadLimits,
    inspect_file,
    read_budget_bytes,
    read_dataset,
    read_query_vector,
)
from embscope.core.ingest import parquet as ingest_parquet
from embscope.core.ingest import text_tables as ingest_text
from embscope.core.ingest.limits import ReadBudget, available_memory
from embscope.core.ingest.numpy_files import CappedReader
from embscope.core.store import Store
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
MiB = 2**20

#: Markup, script, markdown links, SQL, LIKE wildcards, escapes, unicode, NUL, shell, templates.
HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(2)</script>",
    "<b>bold</b>",
    "**x** [link](javascript:alert(3))",
    "'; DROP TABLE datasets; --",
    '" OR 1=1 --',
    "100% sure",
    "snake_case",
    "back\\slash \\' \\%",
    "Ünïcødé ✓ 😀 שלום \u202e",
    "nul\x00inside",
    "$(touch /tmp/embscope-pwned) `id`",
    "{{7*7}} ${7*7}",
    '=HYPERLINK("http://x","y")',
    "line\nbreak\ttab",
    "%",
    "_",
]
#: The same, without the characters a delimited text cell or a dataset name cannot hold.
HOSTILE_TEXT = [h for h in HOSTILE if "\x00" not in h and "\n" not in h]


# -- building bombs ---------------------------------------------------------------------------


def _npy_header(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": descr, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def _deflate_zeros(prefix: bytes, mib: int) -> tuple[bytes, int, int]:
    """A raw deflate stream of ``prefix`` then ``mib`` MiB of zeros, built without ever
    holding the zeros: after a full flush the compressor forgets its history, so one
    compressed MiB of zeros can be repeated. Returns (stream, crc32, uncompressed size)."""
    first = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = first.compress(prefix) + first.flush(zlib.Z_FULL_FLUSH)
    again = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = again.compress(bytes(MiB)) + again.flush(zlib.Z_FULL_FLUSH)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
    crc, zeros = zlib.crc32(prefix), bytes(MiB)
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    return head + block * mib + tail, crc, len(prefix) + mib * MiB


def _zip(path: Path, entries: list[tuple[str, bytes, int, int]]) -> Path:
    """A zip archive written by hand, so entries can declare any sizes (and lie).

    ``entries``: (name, raw deflate data, crc32, declared uncompressed size).
    """
    out, central = bytearray(), bytearray()
    for name, data, crc, usize in entries:
        raw = name.encode()
        offset = len(out)
        out += struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), usize, len(raw), 0
        )
        out += raw + data
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data), usize, len(raw),
            0, 0, 0, 0, 0, offset,
        )  # fmt: skip
        central += raw
    start = len(out)
    out += central
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries),
                       len(central), start, 0)  # fmt: skip
    path.write_bytes(bytes(out))
    return path


def _npz_bomb(path: Path, mib: int = 257) -> Path:
    """A valid .npz whose one array is ``mib`` MiB of float32 zeros (~1000x compression)."""
    header = _npy_header((mib * MiB // 4, 1))
    stream, crc, size = _deflate_zeros(header, mib)
    return _zip(path, [("vectors.npy", stream, crc, size)])


def _parquet_dictionary_bomb(path: Path, rows: int = 4000, value_mib: int = 1) -> Path:
    """One 1 MiB string repeated ``rows`` times: a 1 KiB file that decodes to ``rows`` MiB."""
    label = pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(rows, np.int32)), pa.array(["A" * (value_mib * MiB)])
    )
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.ones(rows * 2, np.float32)), 2)
    pq.write_table(pa.table({"vector": vectors, "label": label}), path, compression="zstd")
    return path


def _h5ad_unallocated(path: Path) -> Path:
    """An HDF5 X of 4 GB that takes no space: never written, it reads as fill values."""
    with h5py.File(path, "w") as f:
        f.create_dataset("X", shape=(1_000_000, 1000), dtype="f4")
    return path


def _h5ad_category_bomb(path: Path, rows: int = 2000) -> Path:
    """obs codes all pointing at one 1 MiB category: ``rows`` MiB once spelled out."""
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=np.ones((rows, 2), np.float32))
        obs = f.create_group("obs")
        obs.attrs["_index"] = "_index"
        obs.attrs["column-order"] = np.array(["cat"], dtype=h5py.string_dtype())
        obs.create_dataset("_index", data=np.array([str(i) for i in range(rows)], dtype="S"))
        cat = obs.create_group("cat")
        cat.attrs["encoding-type"] = "categorical"
        cat.create_dataset("codes", data=np.zeros(rows, np.int8))
        cat.create_dataset("categories", data=np.array(["C" * MiB], dtype=h5py.string_dtype()))
    return path


# -- decompression bombs and lying headers -----------------------------------------------------


def test_npz_bomb_is_refused_from_its_zip_header_before_any_data_is_read(tmp_path):
    bomb = _npz_bomb(tmp_path / "bomb.npz")
    assert bomb.stat().st_size < 400_000  # 257 MiB of float32 in ~270 KB
    tracemalloc.start()
    try:
        start = time.perf_counter()
        with pytest.raises(InvalidInputError, match="decompression bomb") as err:
            read_dataset(bomb)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "'vectors'" in str(err.value) and "100x" in str(err.value)
    assert peak < 4 * MiB and seconds < 1.0
    with pytest.raises(InvalidInputError, match="decompression bomb"):
        inspect_file(bomb)  # the upload page's preview takes the same path


def test_npz_entry_that_understates_its_size_cannot_expand_past_it(tmp_path):
    # The central directory says 16 bytes of data follow the header; the deflate stream
    # really holds 257 MiB. Reading stops at the declared size: 4 rows, no more memory.
    header = _npy_header((4, 1))
    stream, _crc, _size = _deflate_zeros(header, 257)
    declared = len(header) + 16
    crc = zlib.crc32(header + bytes(16))
    liar = _zip(tmp_path / "liar.npz", [("vectors.npy", stream, crc, declared)])
    tracemalloc.start()
    try:
        try:
            parsed = read_dataset(liar)
        except InvalidInputError as exc:  # refusing is as good as capping
            assert "liar.npz" in str(exc)
        else:
            assert parsed.vectors.shape == (4, 1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * MiB


def test_npz_entry_that_overstates_its_size_is_refused_cleanly(tmp_path):
    # Declares 64 MiB (under the ratio floor) but holds a few bytes: a clear error, no crash.
    header = _npy_header((16 * MiB, 1))
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = comp.compress(header + bytes(64)) + comp.flush()
    crc = zlib.crc32(header + bytes(64))
    npz = _zip(tmp_path / "short.npz", [("v.npy", stream, crc, len(header) + 64 * MiB)])
    with pytest.raises(InvalidInputError, match="short.npz"):
        read_dataset(npz)


def test_capped_reader_refuses_more_than_its_cap():
    capped = CappedReader(io.BytesIO(b"x" * 100), 10, "an entry")
    assert capped.read(4) == b"xxxx"
    with pytest.raises(InvalidInputError, match="more data than its header declares"):
        capped.read(-1)


def test_npz_metadata_array_bomb_is_refused(tmp_path):
    # The vectors are fine; a 1-D text array beside them is the bomb.
    limits = ReadLimits.from_environment(expansion_ratio_floor=MiB)
    path = tmp_path / "side.npz"
    np.savez_compressed(
        path, vectors=np.ones((2000, 2), np.float32), label=np.full(2000, "x" * 1000)
    )
    with pytest.raises(InvalidInputError, match="array 'label'.*decompression bomb"):
        read_dataset(path, limits=limits)


def test_parquet_dictionary_bomb_is_refused_before_decoding(tmp_path):
    bomb = _parquet_dictionary_bomb(tmp_path / "dict.parquet")
    assert bomb.stat().st_size < 4096
    pool_before = pa.total_allocated_bytes()
    start = time.perf_counter()
    with pytest.raises(InvalidInputError, match="column 'label'.*decompression bomb"):
        read_dataset(bomb)
    # Decoding 4 GB takes ~10 s and 4 GB; refusing takes milliseconds and nothing.
    assert time.perf_counter() - start < 1.0
    assert pa.total_allocated_bytes() - pool_before < 8 * MiB


def test_parquet_run_length_bomb_is_refused_from_its_footer(tmp_path):
    # 4M equal floats: run-length/dictionary encoding stores them in a few KB. The footer's
    # value counts give the decoded size away before a row is read.
    limits = ReadLimits.from_environment(expansion_ratio_floor=MiB)
    path = tmp_path / "rle.parquet"
    vec = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(4 * MiB, np.float32)), 4)
    pq.write_table(pa.table({"vector": vec}), path, compression="zstd")
    assert path.stat().st_size < 100_000
    with pytest.raises(InvalidInputError, match="as its footer declares them.*decompression bomb"):
        read_dataset(path, limits=limits)
    meta = tmp_path / "v.npy"
    np.save(meta, np.ones((MiB, 1), np.float32))
    with pytest.raises(InvalidInputError, match="metadata file rle.parquet.*decompression bomb"):
        read_dataset(meta, metadata_path=path, limits=limits)  # the same check for metadata


def test_parquet_read_is_counted_batch_by_batch(tmp_path, monkeypatch):
    # Even when the footer's estimate passes, what is really decoded is counted as it comes.
    path = tmp_path / "ok.parquet"
    vec = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(2**18, dtype=np.float32)), 4)
    pq.write_table(pa.table({"vector": vec}), path)
    monkeypatch.setattr(ingest_parquet, "parquet_decoded_estimate", lambda md: 1)  # a lying footer
    with pytest.raises(InvalidInputError, match="too large to read here"):
        read_dataset(path, max_read_bytes=300_000)
    assert read_dataset(path).vectors.shape == (2**16, 4)


def test_h5ad_dataset_without_storage_is_refused(tmp_path):
    path = _h5ad_unallocated(tmp_path / "fill.h5ad")
    assert path.stat().st_size < 10_000
    with pytest.raises(InvalidInputError, match="array 'X'.*decompression bomb"):
        read_dataset(path)


def test_h5ad_gzip_bomb_and_category_bomb_are_refused(tmp_path):
    gz = tmp_path / "gz.h5ad"
    with h5py.File(gz, "w") as f:
        f.create_dataset("X", data=np.zeros((4096, 256), "f4"), compression="gzip")
    limits = ReadLimits.from_environment(expansion_ratio_floor=MiB)
    with pytest.raises(InvalidInputError, match="array 'X'.*decompression bomb"):
        read_dataset(gz, limits=limits)
    cats = _h5ad_category_bomb(tmp_path / "cats.h5ad", rows=300)
    with pytest.raises(InvalidInputError, match="too large to read here.*obs column 'cat'"):
        read_dataset(cats, max_read_bytes=128 * MiB, limits=limits)


# -- the memory budget of a read -----------------------------------------------------------------


def test_read_budget_comes_from_the_environment_or_available_memory(monkeypatch):
    monkeypatch.setenv(ingest.READ_BUDGET_ENV, "300")
    assert read_budget_bytes() == 300 * MiB
    for junk in ("", "abc", "0", "-5", "1.5"):
        monkeypatch.setenv(ingest.READ_BUDGET_ENV, junk)
        default = read_budget_bytes()
        assert default >= 256 * MiB
        avail = available_memory()
        assert avail is None or default <= max(avail // 2, 256 * MiB) + 64 * MiB
    with pytest.raises(InvalidInputError, match="max_read_bytes"):
        read_dataset(Path(__file__), max_read_bytes=0)


def test_read_limits_are_one_object_passed_to_each_read(tmp_path, monkeypatch):
    monkeypatch.setenv(ingest.READ_BUDGET_ENV, "300")
    assert ReadLimits.from_environment() == ReadLimits(max_read_bytes=300 * MiB)
    assert ReadLimits.from_environment(expansion_ratio_floor=MiB).expansion_ratio_floor == MiB
    for bad in (
        {"max_read_bytes": 0},
        {"max_read_bytes": 1.5},
        {"max_read_bytes": True},
        {"max_read_bytes": MiB, "max_expansion_ratio": 0},
        {"max_read_bytes": MiB, "expansion_ratio_floor": -1},
        {"max_read_bytes": MiB, "max_densified_values": 2.5},
    ):
        with pytest.raises(InvalidInputError):
            ReadLimits(**bad)
    path = tmp_path / "tall.npy"
    np.save(path, np.ones((20_000, 1), np.float32))
    small = ReadLimits(max_read_bytes=MiB)
    with pytest.raises(InvalidInputError, match="ids of 20,000 rows"):
        read_dataset(path, limits=small)
    with pytest.raises(InvalidInputError, match="ids of 20,000 rows"):
        inspect_file(path, limits=small)
    # max_read_bytes, when given too, is the budget
    assert read_dataset(path, limits=small, max_read_bytes=64 * MiB).vectors.shape == (20_000, 1)


def test_tall_thin_npy_is_refused_for_its_ids_not_allowed_to_exhaust_memory(tmp_path):
    # 8 MB of float32 is 2M rows, and every row's id is a Python string: ~200 MB.
    path = tmp_path / "tall.npy"
    np.save(path, np.ones((2_000_000, 1), np.float32))
    with pytest.raises(InvalidInputError, match="ids of 2,000,000 rows") as err:
        read_dataset(path, max_read_bytes=100 * MiB)
    assert ingest.READ_BUDGET_ENV in str(err.value)


def test_json_is_charged_for_its_python_objects(tmp_path):
    # Tiny records cost ~20x their text as Python objects; the read refuses before json.load.
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps([{"v": [i % 7], "k": "a"} for i in range(60_000)]))
    size = path.stat().st_size
    with pytest.raises(InvalidInputError, match="records as Python objects"):
        read_dataset(path, max_read_bytes=8 * size)
    assert read_dataset(path, max_read_bytes=64 * size).vectors.shape == (60_000, 1)


def test_csv_list_cells_are_parsed_into_one_counted_matrix(tmp_path, monkeypatch):
    path = tmp_path / "lists.csv"
    rows = 20_000
    path.write_text("vector,label\n" + "".join(f'"[{i}, 1, 2]",x{i}\n' for i in range(rows)))
    taken: dict[str, int] = {}
    real = ReadBudget.take

    def spy(self, nbytes, what):
        taken[what] = int(nbytes)
        return real(self, nbytes, what)

    monkeypatch.setattr(ReadBudget, "take", spy)
    parsed = read_dataset(path)
    np.testing.assert_array_equal(parsed.vectors[7], [7, 1, 2])
    assert taken["the vectors in column 'vector'"] == rows * 3 * 4  # streamed: float32
    assert taken["its parsed columns"] > 0 and taken[f"the ids of {rows:,} rows"] > 0


def test_error_in_a_huge_csv_is_located_without_scanning_the_rest(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    lines = ["0.5,0.5"] * 200_000
    lines[3] = "nan,0.5"
    path.write_text("\n".join(lines) + "\n")
    seen = []
    real = ingest_text.csv_records

    def counting(*args, **kwargs):
        for item in real(*args, **kwargs):
            seen.append(item)
            yield item

    monkeypatch.setattr(ingest_text, "csv_records", counting)
    with pytest.raises(InvalidInputError, match="line 4"):
        read_dataset(path)
    assert len(seen) < 100  # the line of row 3, not a list of 200,000 lines


def test_single_column_metadata_line_count_is_checked_before_splitting(tmp_path):
    vectors = tmp_path / "v.npy"
    np.save(vectors, np.ones((3, 2), np.float32))
    meta = tmp_path / "labels.tsv"
    meta.write_bytes(b"x\n" * 2_500_000)
    with pytest.raises(InvalidInputError, match="2500000 lines"):
        read_dataset(vectors, metadata_path=meta)


def test_a_compressed_path_is_never_inflated_behind_the_readers_back(tmp_path):
    # pyarrow inflates files whose *path* ends in .gz; the suffix that counts is the user's.
    path = tmp_path / "data.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"vector": [1.0, 2.0]}\n' * 1000))
    with pytest.raises(InvalidInputError, match="not valid"):
        read_dataset(path, filename="data.jsonl")


def test_legitimate_compressed_files_are_never_refused(tmp_path):
    """Real embeddings compress ~1.1x, quantised ones a few x: far below the limit."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20_000, 64)).astype(np.float32)
    codes = (rng.random((20_000, 64)) > 0.5).astype(np.float32)  # binary codes as float32
    labels = np.array([f"class {i % 10}" for i in range(20_000)])
    ratios = {}
    for name, data in (("float", X), ("binary", codes)):
        path = tmp_path / f"{name}.npz"
        np.savez_compressed(path, vectors=data, label=labels)
        ratios[f"npz {name}"] = data.nbytes / path.stat().st_size
        assert read_dataset(path).vectors.shape == data.shape
        ppath = tmp_path / f"{name}.parquet"
        vec = pa.FixedSizeListArray.from_arrays(pa.array(data.reshape(-1)), 64)
        pq.write_table(pa.table({"vector": vec, "label": labels}), ppath, compression="zstd")
        ratios[f"parquet {name}"] = data.nbytes / ppath.stat().st_size
        assert read_dataset(ppath).metadata["label"][13] == "class 3"
        hpath = tmp_path / f"{name}.h5ad"
        with h5py.File(hpath, "w") as f:
            f.create_dataset("X", data=data, compression="gzip")
        ratios[f"h5ad {name}"] = data.nbytes / hpath.stat().st_size
        assert read_dataset(hpath).vectors.shape == data.shape
    # These are small enough to pass whatever their ratio; the ratios show the margin a
    # file of any size has under MAX_EXPANSION_RATIO.
    assert all(0.5 < r < ingest.MAX_EXPANSION_RATIO / 2 for r in ratios.values()), ratios


def test_bombs_never_raise_the_peak_memory_of_a_fresh_process(tmp_path):
    """Every bomb at full size under the default settings, read in a fresh process whose
    peak resident memory is then measured: refusals, and no more than import-time memory."""
    files = [
        _npz_bomb(tmp_path / "bomb.npz"),
        _parquet_dictionary_bomb(tmp_path / "dict.parquet"),
        _h5ad_unallocated(tmp_path / "fill.h5ad"),
        _h5ad_category_bomb(tmp_path / "cats.h5ad", rows=20_000),  # 20 GB spelled out
    ]
    script = (
        "import json, resource, sys\n"
        "from embscope.core.ingest import read_dataset\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "out = {}\n"
        "for f in sys.argv[1:]:\n"
        "    try:\n"
        "        read_dataset(f); out[f] = 'READ'\n"
        "    except Exception as e:\n"
        "        out[f] = type(e).__name__ + ': ' + str(e)\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'results': out, 'base_kb': base, 'peak_kb': peak}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, *map(str, files)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    for f, outcome in report["results"].items():
        assert outcome.startswith("InvalidInputError"), (f, outcome)
        assert "decompression bomb" in outcome or "too large to read here" in outcome, outcome
    assert report["peak_kb"] - report["base_kb"] < 64 * 1024, report


# -- no pickle, ever ----------------------------------------------------------------------------


class _Marker:
    """Unpickling this creates a directory: proof that a pickle was loaded."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (str(self.path),))


def test_parquet_extension_type_pickle_is_never_unpickled(tmp_path):
    import pickle

    marker = tmp_path / "UNPICKLED"
    payload = pickle.dumps(_Marker(marker))
    field = pa.field(
        "label",
        pa.int64(),
        metadata={
            b"ARROW:extension:name": b"arrow.py_extension_type",
            b"ARROW:extension:metadata": payload,
        },
    )
    vec = pa.FixedSizeListArray.from_arrays(pa.array(np.ones(6, np.float32)), 2)
    table = pa.table([vec, pa.array([1, 2, 3])], schema=pa.schema([("vector", vec.type), field]))
    table = table.replace_schema_metadata(
        {b"pandas": json.dumps({"columns": [{"name": "label", "pandas_type": "object"}]}).encode()}
    )
    path = tmp_path / "ext.parquet"
    pq.write_table(table, path)
    parsed = read_dataset(path)
    assert list(parsed.metadata["label"]) == [1, 2, 3]
    np.save(tmp_path / "v.npy", np.ones((3, 2), np.float32))
    read_dataset(tmp_path / "v.npy", metadata_path=path)
    assert not marker.exists()


def test_h5ad_object_references_are_refused_not_dereferenced(tmp_path):
    path = tmp_path / "refs.h5ad"
    with h5py.File(path, "w") as f:
        target = f.create_dataset("target", data=np.ones((2, 2)))
        f.create_dataset("X", data=np.array([[target.ref, target.ref]]), dtype=h5py.ref_dtype)
    with pytest.raises(InvalidInputError, match="'X' holds HDF5 references, not numbers"):
        read_dataset(path)


def _dotted(node: ast.AST) -> str:
    """``np.lib.format.read_array`` for the func of a call (empty for anything else)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def test_no_code_path_can_load_a_pickle():
    """Every np.load / read_array passes allow_pickle=False; nothing imports a pickle loader."""
    sources = sorted(p for d in ("core", "app", "pages") for p in (ROOT / d).rglob("*.py"))
    assert len(sources) > 20
    banned_modules = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
    banned_calls = ("read_pickle", "torch.load", "pickle.load", "pickle.loads")
    loads = 0
    for path in sources:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                assert not banned_modules & {n.split(".")[0] for n in names}, (path, node.lineno)
            if not isinstance(node, ast.Call):
                continue
            func = _dotted(node.func)
            assert not func.endswith(banned_calls), (path, node.lineno, func)
            if func in ("np.load", "numpy.load") or func.endswith("format.read_array"):
                loads += 1
                flags = {k.arg: k.value for k in node.keywords}
                assert "allow_pickle" in flags, (path, node.lineno, func)
                value = flags["allow_pickle"]
                assert isinstance(value, ast.Constant) and value.value is False, (path, node.lineno)
    assert loads >= 5


def test_query_vector_files_are_checked_from_their_header(tmp_path):
    good = io.BytesIO()
    np.save(good, np.arange(4, dtype=np.float64))
    np.testing.assert_array_equal(read_query_vector(good.getvalue(), dim=4), [0, 1, 2, 3])
    row = tmp_path / "row.npy"
    np.save(row, np.ones((1, 3), np.float16))
    assert read_query_vector(row).dtype == np.float32
    marker = tmp_path / "UNPICKLED"
    obj = np.empty(2, dtype=object)
    obj[:] = [_Marker(marker), 1]
    pickled = io.BytesIO()
    np.save(pickled, obj, allow_pickle=True)
    zipped = io.BytesIO()
    np.savez(zipped, v=np.ones(3))
    huge = _npy_header((10**12,)) + bytes(16)
    cases = {
        "pickle": (pickled.getvalue(), "Python objects"),
        "npz": (zipped.getvalue(), "zip archive"),
        "huge header": (huge, "truncated or padded"),
        "matrix": (_npy_header((3, 2)) + bytes(24), "shape"),
        "not npy": (b"hello world", "not a NumPy"),
        "nan": (_npy_header((2,)) + np.array([1, np.nan], "<f4").tobytes(), "NaN"),
        "too big": (b"\x93NUMPY" + bytes(ingest.MAX_QUERY_VECTOR_BYTES), "larger than"),
    }
    for name, (data, message) in cases.items():
        with pytest.raises(InvalidInputError, match=message):
            read_query_vector(data, label=name)
    with pytest.raises(InvalidInputError, match="dataset's vectors have 5"):
        read_query_vector(good.getvalue(), dim=5)
    assert not marker.exists()


# -- SQL-looking text: stored and matched verbatim, never executed -------------------------------


def _hostile_frame() -> pd.DataFrame:
    n = len(HOSTILE)
    return pd.DataFrame(
        {
            "id": [f"{h}#{i}" for i, h in enumerate(HOSTILE)],
            "text": HOSTILE,
            "'; DROP TABLE datasets; --": [HOSTILE[(i + 3) % n] for i in range(n)],
            '" OR 1=1 --': np.arange(n),
            "100%_\\col": [HOSTILE[(i + 7) % n] for i in range(n)],
            "<img src=x onerror=alert(1)>": ["<b>bold</b>"] * n,
        }
    )


def _hostile_parquet(path: Path) -> Path:
    frame = _hostile_frame()
    vec = np.random.default_rng(1).standard_normal((len(frame), 4)).astype(np.float32)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.append_column(
        "vector", pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1)), 4)
    )
    pq.write_table(table, path)
    return path


def _expected_matches(frame: pd.DataFrame, needle: str) -> list[int]:
    low = needle.strip().lower()
    hits = []
    for i, row in frame.astype(str).iterrows():
        if any(low in str(v).lower() for v in row.to_numpy()):
            hits.append(int(i))
    return hits


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_hostile_text_round_trips_verbatim_through_ingest_and_the_store(tmp_path, fmt):
    frame = _hostile_frame()
    if fmt == "parquet":
        path = _hostile_parquet(tmp_path / "h.parquet")
    elif fmt == "jsonl":
        path = tmp_path / "h.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for i, rec in enumerate(frame.to_dict("records")):
                rec["'; DROP TABLE datasets; --"] = str(rec["'; DROP TABLE datasets; --"])
                fh.write(json.dumps({**rec, '" OR 1=1 --': i, "vector": [i, 1.0, 2.0]}) + "\n")
    else:  # delimited text holds neither NUL nor (unquoted) line breaks
        frame = frame[[("\x00" not in t and "\n" not in t) for t in frame["text"]]]
        frame = frame.reset_index(drop=True)
        for c in frame.columns:
            if pd.api.types.is_string_dtype(frame[c]):
                frame[c] = [v.replace("\x00", "").replace("\n", " ") for v in frame[c]]
        frame = frame.assign(x0=np.arange(len(frame)) + 0.5, x1=1.5)
        path = tmp_path / "h.csv"
        frame.to_csv(path, index=False)
    parsed = read_dataset(path, id_column="id")
    assert list(parsed.ids) == list(frame["id"])
    with Store(tmp_path / "h.duckdb") as store:
        canary = store.add_dataset(read_dataset(path, id_column="id"), name="canary")
        tables = store.table_names()
        for name in HOSTILE_TEXT:
            info = store.add_dataset(parsed, name=name)
            assert store.get_dataset(name).id == info.id and info.name == name.strip()
        meta = store.load_metadata(info.id)
        assert list(meta.columns) == list(frame.columns.drop(["x0", "x1"], errors="ignore"))
        for col in frame.columns.drop(["x0", "x1"], errors="ignore"):
            assert [str(v) for v in meta[col]] == [str(v) for v in frame[col]], col
        assert list(store.load_ids(info.id)) == list(frame["id"])
        # nothing was executed: every earlier table and row is still there
        assert set(tables) <= set(store.table_names())
        assert len(store.list_datasets()) == 1 + len(HOSTILE_TEXT)
        assert list(store.load_ids(canary.id)) == list(frame["id"])
        # search is a literal substring match: % _ \ ' " have no special meaning
        shown = frame.drop(columns=["x0", "x1"], errors="ignore")
        for needle in [*HOSTILE, "%", "_", "\\", "'", '"', "--", "*", "OR 1=1", "%%", "__"]:
            if not needle.strip():
                continue
            got = store.search_rows(info.id, needle, limit=1000)
            assert list(got["row"]) == _expected_matches(shown, needle), needle
            rows = store.search_row_numbers(info.id, needle)
            assert rows.tolist() == _expected_matches(shown, needle), needle
            if len(got):
                assert list(got.columns[:2]) == ["row", "id"]


def test_dataset_names_are_kept_verbatim_and_control_characters_refused(tmp_path):
    X = np.ones((3, 2), np.float32)
    parsed = ingest.from_arrays(X, metadata=pd.DataFrame({"t": HOSTILE[:3]}))
    with Store(tmp_path / "n.duckdb") as store:
        first = store.add_dataset(parsed, name="first")
        for name in HOSTILE_TEXT:
            store.rename_dataset(first.id, name)
            assert store.get_dataset(first.id).name == name.strip()
            assert store.get_dataset(name.strip()).id == first.id
        for bad in ("nul\x00name", "two\nlines"):
            with pytest.raises(InvalidInputError, match="control characters"):
                store.add_dataset(parsed, name=bad)
        assert [d.id for d in store.list_datasets()] == [first.id]


def test_column_names_with_nul_are_refused_not_truncated(tmp_path):
    frame = pd.DataFrame({"a\x00b": [1, 2], "fine": [3, 4]})
    with pytest.raises(InvalidInputError, match="NUL character"):
        ingest.from_arrays(np.ones((2, 2)), metadata=frame)
    path = tmp_path / "nul.parquet"
    vec = pa.FixedSizeListArray.from_arrays(pa.array(np.ones(4, np.float32)), 2)
    pq.write_table(pa.table({"vector": vec, "a\x00b": [1, 2]}), path)
    with pytest.raises(InvalidInputError, match="NUL character"):
        read_dataset(path)


def test_cli_keeps_hostile_names_and_ids_verbatim(capsys, tmp_path):
    path = _hostile_parquet(tmp_path / "h.parquet")
    db = str(tmp_path / "cli.duckdb")
    name = "'; DROP TABLE datasets; -- <script>alert(2)</script> 100%_"
    code, out, err = run_cli(
        capsys, "--db", db, "ingest", str(path), "--name", name, "--id-column", "id", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["name"] == name
    code, out, _ = run_cli(capsys, "--db", db, "datasets", "--json")
    assert [d["name"] for d in json.loads(out)] == [name]
    frame = _hostile_frame()
    for row in (0, 4, 5):
        answers = []
        for how in (("--id", frame["id"][row]), ("--row", str(row))):
            code, out, err = run_cli(
                capsys, "--db", db, "neighbours", name, *how, "-k", "3",
                "--backend", "exact", "--metric", "l2", "--json",
            )  # fmt: skip
            assert code == 0, err
            answers.append(json.loads(out)["neighbours"])
        assert answers[0] == answers[1]  # the hostile id found its own row, verbatim
        assert {n["id"] for n in answers[0]} <= set(frame["id"])
    code, _out, err = run_cli(capsys, "--db", db, "neighbours", name, "--id", "' OR 1=1 --")
    assert code == 2 and "error:" in err
    out_file = tmp_path / "out.parquet"
    code, _out, err = run_cli(capsys, "--db", db, "export", name, "--out", str(out_file))
    assert code == 0, err
    back = pq.read_table(out_file).to_pandas()
    assert list(back["embscope_id"] if "embscope_id" in back else back["id"]) == list(frame["id"])
    assert list(back["text"]) == HOSTILE


# -- exports -----------------------------------------------------------------------------------


def test_exports_hold_hostile_text_verbatim(tmp_path):
    frame = _hostile_frame()
    parsed = read_dataset(_hostile_parquet(tmp_path / "h.parquet"), id_column="id")
    with Store(tmp_path / "e.duckdb") as store:
        info = store.add_dataset(parsed, name=HOSTILE[0])
        out = export_dataset(store, info.id, tmp_path / "all.parquet")
        back = pq.read_table(out).to_pandas()
        assert list(back["embscope_id"]) == list(frame["id"])  # metadata has its own "id"
        for col in frame.columns:
            assert [str(v) for v in back[col]] == [str(v) for v in frame[col]], col
        # A selection, as the pages download it (app.widgets.table_downloads): Parquet holds
        # every value verbatim; CSV too, but a cell a spreadsheet would run as a formula is
        # shown as text there (a leading apostrophe).
        rows = [10, 0, 3, 5, 13]
        selection = store.load_rows(info.id, rows)
        csv_back = pd.read_csv(io.BytesIO(csv_bytes(selection)), dtype=str,
                               keep_default_na=False)  # fmt: skip
        buffer = io.BytesIO()
        selection.to_parquet(buffer, index=False)
        pq_back = pd.read_parquet(io.BytesIO(buffer.getvalue()))
        for col in ("id", "text", "'; DROP TABLE datasets; --", "100%_\\col"):
            assert list(csv_back[col]) == [_spreadsheet_text(v) for v in selection[col]], col
            assert list(pq_back[col]) == list(selection[col]), col
        assert list(selection["text"]) == [HOSTILE[i] for i in rows]
        assert HOSTILE[13].startswith("=HYPERLINK")
        assert csv_back["text"].iloc[-1] == "'" + HOSTILE[13]


def _spreadsheet_text(value: object) -> str:
    text = str(value)
    return "'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text


def test_csv_exports_keep_formulas_as_text_and_numbers_as_numbers():
    formulas = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "@x"]
    plain = ["ok", "a=b", " =not first", "", "'quoted", "x-1"]
    frame = pd.DataFrame(
        {
            "object": pd.Series([*formulas, *plain], dtype=object),
            "string": pd.array([*plain, *formulas], dtype="string"),
            "category": pd.Categorical([*formulas, *plain]),
            "number": np.linspace(-3.5, 2.0, 12),
            "=SUM(A1:A9)": np.arange(-6, 6),
        }
    )
    back = pd.read_csv(io.BytesIO(csv_bytes(frame)), keep_default_na=False,
                       dtype={"object": str, "string": str, "category": str})  # fmt: skip
    assert list(back.columns) == ["object", "string", "category", "number", "'=SUM(A1:A9)"]
    for col in ("object", "string", "category"):
        expected = ["'" + v if v in formulas else v for v in frame[col].astype(str)]
        assert list(back[col]) == expected, col
    np.testing.assert_array_equal(back["number"], frame["number"])  # -3.5 stays a number
    np.testing.assert_array_equal(back["'=SUM(A1:A9)"], frame["=SUM(A1:A9)"])
    assert csv_bytes(frame.iloc[:0]).decode().strip().endswith("'=SUM(A1:A9)")
    assert "'\rcmd" in csv_bytes(pd.DataFrame({"a": ["\rcmd"]})).decode()
    with pytest.raises(InvalidInputError, match="DataFrame"):
        csv_bytes([["=1"]])


def test_exported_key_columns_never_clash_with_metadata_names(tmp_path):
    ids = ["<b>a</b>", "'; --", "100%"]
    meta = pd.DataFrame(
        {"ID": ["x", "y", "z"], "embscope_id": ids, "Vector": ["v", "w", "u"], "t": HOSTILE[:3]}
    )
    parsed = ingest.from_arrays(np.eye(3, dtype=np.float32), metadata=meta, id_column="embscope_id")
    with Store(tmp_path / "c.duckdb") as store:
        info = store.add_dataset(parsed, name="clash")
        out = export_dataset(store, info.id, tmp_path / "clash.parquet")
    table = pq.read_table(out)
    assert table.column_names == ["embscope_id_2", "embscope_vector", *meta.columns]
    assert table.column("embscope_id_2").to_pylist() == ids
    again = read_dataset(out, id_column="embscope_id_2", vector_column="embscope_vector")
    assert list(again.ids) == ids and list(again.metadata["t"]) == HOSTILE[:3]
    np.testing.assert_array_equal(again.vectors, np.eye(3))
