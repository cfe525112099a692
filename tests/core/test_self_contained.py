"""No upload makes embscope read anything outside it.

Each format's way of naming another file is tried with a real file: HDF5 external storage,
external links, virtual datasets, filter plugins, soft links and references in an .h5ad; a
Parquet column chunk's ``file_path`` and encryption; an .npz member that is a symbolic link
or named ``../..``; a path that is itself a symbolic link (or a pipe); text formats whose
cells name files. Each attack file is first shown to reach the secret with the library
alone (so the test is not vacuous), then refused (or read harmlessly) by
``read_dataset``, ``inspect_file``, the CLI and the upload path, with the secret's bytes
nowhere in the result or the message, and the database unchanged.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import stat
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import embscope.app.uploads as uploads
from embscope.app.uploads import save_upload
from embscope.core.errors import InvalidInputError
from embscope.core.ingest import inspect_file, read_dataset, read_query_vector
from embscope.core.ingest.anndata import check_self_contained
from embscope.core.ingest.parquet_footer import footer_problem
from embscope.core.store import Store
from tests.core.corpus import write_h5ad
from tests.helpers import make_parsed, run_cli, snapshot

ROOT = Path(__file__).resolve().parents[2]

#: What the server must never reveal (an access token, a key): 64 ASCII bytes, which as
#: float32 are 16 finite numbers, so a reader that followed the link would accept them.
SECRET = b"EMBSCOPE_TOKEN=s3cr3t-0123456789abcdefghij-ssh-rsa-AAAAB3NzaC1yc"
assert len(SECRET) == 64
SECRET_FLOATS = np.frombuffer(SECRET, dtype="<f4").reshape(4, 4)
assert np.isfinite(SECRET_FLOATS).all()
MARKER = "s3cr3t"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """The server's secret: a file the uploader knows the path of (``/proc/self/environ``)."""
    path = tmp_path / "secret" / "environ"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def _secret_h5(secret: Path) -> Path:
    """Another HDF5 file on the server holding the secret as its ``X``."""
    path = secret.parent / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=SECRET_FLOATS)
    return path


def _leaks(*texts: object) -> bool:
    """Whether any text, or any array's bytes, holds the secret."""
    for t in texts:
        if isinstance(t, np.ndarray):
            raw = np.ascontiguousarray(t).tobytes()
            if SECRET[:16] in raw or np.isin(SECRET_FLOATS.astype(t.dtype).ravel(), t).all():
                return True
        elif MARKER in str(t) or SECRET[:16].decode() in str(t):
            return True
    return False


def _refused(path: Path, match: str, **kwargs: object) -> str:
    """read_dataset and inspect_file both refuse ``path`` with one clear line, no secret."""
    messages = []
    for read in (read_dataset, inspect_file):
        with pytest.raises(InvalidInputError, match=match) as info:
            read(path, **kwargs)  # type: ignore[operator]
        message = str(info.value)
        assert "\n" not in message and not _leaks(message), message
        messages.append(message)
    assert messages[0] == messages[1]
    return messages[0]


def _cli_refuses(capsys, tmp_path: Path, *argv: str, match: str) -> None:
    """``embscope ingest ...`` exits 2 with one ``error:`` line; the database is unchanged."""
    db = tmp_path / "cli.duckdb"
    with Store(db) as s:
        if not s.list_datasets():
            s.add_dataset(make_parsed(np.arange(6, dtype=np.float32).reshape(3, 2)), name="kept")
        before = snapshot(s)
    code, out, err = run_cli(capsys, "--db", str(db), "ingest", *argv, "--json")
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert match in lines[0], lines[0]
    assert not _leaks(out, err)
    with Store(db) as s:
        assert snapshot(s) == before


# -- .h5ad: external storage ------------------------------------------------------------------


def _h5ad_external_storage(path: Path, secret: Path, where: str = "X") -> Path:
    with h5py.File(path, "w") as f:
        shape = (4, 4) if where == "X" else (4,)
        if where != "X":
            f.create_dataset("X", data=np.ones((4, 2), np.float32))
        f.create_dataset(where, shape=shape, dtype="<f4", external=[(str(secret), 0, 64)])
    return path


def test_h5ad_external_storage_reaches_the_secret_with_h5py_alone(tmp_path, secret):
    path = _h5ad_external_storage(tmp_path / "x.h5ad", secret)
    assert path.stat().st_size < 8192
    with h5py.File(path, "r") as f:
        assert f["X"][()].tobytes() == SECRET  # the attack is real: h5py follows it


@pytest.mark.parametrize("where", ["X", "obs/label", "uns/unused"])
def test_h5ad_external_storage_is_refused_wherever_it_is(tmp_path, secret, where):
    path = _h5ad_external_storage(tmp_path / "cells.h5ad", secret, where)
    message = _refused(path, "outside itself")
    assert message == (
        f"cells.h5ad stores {where!r} outside itself (HDF5 external storage): embscope reads "
        "only what is inside the uploaded file; save it with the data inside (h5py: no "
        "external= / anndata.write_h5ad)"
    )


def test_h5ad_external_storage_is_refused_by_the_cli(capsys, tmp_path, secret):
    path = _h5ad_external_storage(tmp_path / "cells.h5ad", secret)
    _cli_refuses(capsys, tmp_path, str(path), match="HDF5 external storage")


def test_h5ad_external_storage_is_refused_through_the_upload_path(tmp_path, secret, monkeypatch):
    monkeypatch.setattr(uploads, "UPLOAD_DIR", tmp_path / "uploads")
    data = _h5ad_external_storage(tmp_path / "made.h5ad", secret).read_bytes()
    saved = save_upload(io.BytesIO(data), "cells.h5ad")
    assert saved.parent == tmp_path / "uploads" and saved.read_bytes() == data
    _refused(saved, "outside itself", filename="cells.h5ad")


# -- .h5ad: links -----------------------------------------------------------------------------


def test_h5ad_external_link_is_refused(tmp_path, secret):
    other = _secret_h5(secret)
    path = tmp_path / "link.h5ad"
    with h5py.File(path, "w") as f:
        f["X"] = h5py.ExternalLink(str(other), "/X")
    with h5py.File(path, "r") as f:
        assert f["X"][()].tobytes() == SECRET
    message = _refused(path, "link to another file")
    assert "'X' is a link to another file (HDF5 external link)" in message


def test_h5ad_external_link_deep_in_the_file_is_refused(tmp_path, secret):
    other = _secret_h5(secret)
    path = write_h5ad(tmp_path / "deep.h5ad", X=np.ones((4, 2), np.float32))
    with h5py.File(path, "a") as f:
        f.create_group("uns/a/b")["c"] = h5py.ExternalLink(str(other), "/X")
    _refused(path, "'uns/a/b/c' is a link to another file")


def test_soft_link_through_an_external_link_is_refused_without_being_followed(tmp_path, secret):
    """'a' (a soft link, listed first) leads through 'z' (an external link): the soft link is
    only resolved once the whole file is known to hold no external link."""
    other = _secret_h5(secret)
    path = tmp_path / "soft.h5ad"
    with h5py.File(path, "w") as f:
        f["a"] = h5py.SoftLink("/z/X")
        f["z"] = h5py.ExternalLink(str(other), "/")
        f.create_group("obsm")["X_pca"] = h5py.SoftLink("/a")
    with h5py.File(path, "r") as f:
        assert f["obsm/X_pca"][()].tobytes() == SECRET
    _refused(path, "'z' is a link to another file")
    with pytest.raises(InvalidInputError, match="'z' is a link to another file"):
        read_dataset(path, vector_column="obsm/X_pca")


def test_soft_links_inside_the_file_are_read(tmp_path):
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    path = write_h5ad(tmp_path / "soft.h5ad", X=x, obs={"n": np.arange(4)})
    with h5py.File(path, "a") as f:
        f.require_group("obsm")["X_abs"] = h5py.SoftLink("/X")
        f["obsm"]["X_rel"] = h5py.SoftLink("X_abs")  # relative to its group
        f.create_group("uns")["loop"] = f["/"]  # a hard-link cycle: the walk still ends
    for key in ("obsm/X_abs", "obsm/X_rel"):
        parsed = read_dataset(path, vector_column=key)
        np.testing.assert_array_equal(parsed.vectors, x)
    assert inspect_file(path).vector_candidates == ("X", "obsm/X_abs", "obsm/X_rel")


@pytest.mark.parametrize("target", ["/nowhere", "/X/inside_a_dataset", "/b"])
def test_soft_link_to_nothing_in_the_file_is_refused(tmp_path, target):
    path = write_h5ad(tmp_path / "dangling.h5ad", X=np.ones((4, 2), np.float32))
    with h5py.File(path, "a") as f:
        f["a"] = h5py.SoftLink(target)
        f["b"] = h5py.SoftLink("/a")  # with target "/b": a loop of soft links
    message = _refused(path, "which is not in the file")
    assert message.startswith("dangling.h5ad: 'a' is a link to")


# -- .h5ad: virtual datasets, filters, references ---------------------------------------------


def test_h5ad_virtual_dataset_is_refused(tmp_path, secret):
    other = _secret_h5(secret)
    layout = h5py.VirtualLayout(shape=(4, 4), dtype="<f4")
    layout[:] = h5py.VirtualSource(str(other), "X", shape=(4, 4))
    path = tmp_path / "vds.h5ad"
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("X", layout)
    with h5py.File(path, "r") as f:
        assert f["X"].is_virtual and f["X"][()].tobytes() == SECRET
    _refused(path, "'X' is an HDF5 virtual dataset, which maps data from other files")


def test_h5ad_virtual_dataset_of_its_own_file_is_refused_too(tmp_path):
    path = tmp_path / "self.h5ad"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.ones((4, 2), np.float32))
        layout = h5py.VirtualLayout(shape=(4, 2), dtype="<f4")
        layout[:] = h5py.VirtualSource(".", "data", shape=(4, 2))
        f.create_virtual_dataset("X", layout)
    _refused(path, "virtual dataset")


def test_h5ad_targets_outside_the_file_are_never_even_opened(tmp_path):
    """Each target is a pipe: opening it to read would wait for a writer forever, so a read
    that ends (in a child process, with a timeout) never opened it."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with h5py.File(tmp_path / "storage.h5ad", "w") as f:
        f.create_dataset("X", shape=(4, 4), dtype="<f4", external=[(str(fifo), 0, 64)])
    with h5py.File(tmp_path / "link.h5ad", "w") as f:
        f["X"] = h5py.ExternalLink(str(fifo), "/X")
    layout = h5py.VirtualLayout(shape=(4, 4), dtype="<f4")
    layout[:] = h5py.VirtualSource(str(fifo), "X", shape=(4, 4))
    with h5py.File(tmp_path / "vds.h5ad", "w") as f:
        f.create_virtual_dataset("X", layout)
    code = (
        "import sys\n"
        "from embscope.core.ingest import read_dataset, inspect_file\n"
        "from embscope.core.errors import InvalidInputError\n"
        "for path in sys.argv[1:]:\n"
        "    for read in (read_dataset, inspect_file):\n"
        "        try:\n"
        "            read(path)\n"
        "        except InvalidInputError as exc:\n"
        "            print(exc)\n"
    )
    names = ["storage.h5ad", "link.h5ad", "vds.h5ad"]
    done = subprocess.run(
        [sys.executable, "-c", code, *(str(tmp_path / n) for n in names)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    expected = ["external storage"] * 2 + ["external link"] * 2 + ["virtual dataset"] * 2
    assert len(lines) == len(expected), done.stdout
    for line, what in zip(lines, expected, strict=True):
        assert what in line, line


@pytest.mark.parametrize("where", ["X", "obs/label", "uns/unused"])
def test_h5ad_filter_plugin_is_refused(tmp_path, where):
    path = tmp_path / "plugin.h5ad"
    with h5py.File(path, "w") as f:
        if where != "X":
            f.create_dataset("X", data=np.ones((4, 2), np.float32))
        shape = (4, 2) if where == "X" else (4,)
        # 32004 is LZ4's registered id: not built into HDF5, so HDF5 would look for a plugin.
        ds = f.create_dataset(
            where, shape=shape, dtype="<f4", chunks=shape, compression=32004,
            allow_unknown_filter=True,
        )  # fmt: skip
        ds[...] = 1.0
    message = _refused(path, "HDF5 filter 32004")
    assert f"{where!r} is compressed with HDF5 filter 32004, which is not built into HDF5" in (
        message
    )


def test_h5ad_builtin_filters_are_read(tmp_path):
    x = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
    path = tmp_path / "builtin.h5ad"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=x, chunks=(8, 3), compression="gzip", shuffle=True,
                         fletcher32=True)  # fmt: skip
        obsm = f.create_group("obsm")
        obsm.create_dataset("lzf", data=x, chunks=(8, 3), compression="lzf")
        obsm.create_dataset("so", data=np.round(x, 2), chunks=(8, 3), scaleoffset=2)
    for key in ("X", "obsm/lzf", "obsm/so"):
        parsed = read_dataset(path, vector_column=key)
        np.testing.assert_allclose(parsed.vectors, x, atol=0.006)


def _libhdf5() -> ctypes.CDLL | None:
    """The HDF5 library h5py runs on (already loaded in this process), or None."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            lib = line.split()[-1]
            if "libhdf5" in Path(lib).name and "_hl" not in Path(lib).name:
                return ctypes.CDLL(lib)
    return None


def test_group_with_a_filter_pipeline_is_refused_before_its_links_are_read(tmp_path):
    lib = _libhdf5() if sys.platform == "linux" else None
    if lib is None:
        pytest.skip("needs the HDF5 library h5py loaded (to give a group a filter pipeline)")
    lib.H5Pset_filter.argtypes = [
        ctypes.c_int64, ctypes.c_int, ctypes.c_uint, ctypes.c_size_t, ctypes.c_void_p,
    ]  # fmt: skip
    path = write_h5ad(tmp_path / "group.h5ad", X=np.ones((4, 2), np.float32))
    with h5py.File(path, "a") as f:
        gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
        assert lib.H5Pset_filter(gcpl.id, 32004, 1, 0, None) >= 0  # optional: written plain
        h5py.h5g.create(f.id, b"uns", gcpl=gcpl)
        for i in range(20):  # past 8 links a group keeps them in a (filtered) heap
            f["uns"][f"k{i}"] = i
    _refused(path, "group 'uns' has an HDF5 filter pipeline")


@pytest.mark.parametrize("kind", ["object", "region"])
def test_h5ad_references_are_refused_anywhere_and_never_followed(tmp_path, secret, kind):
    path = write_h5ad(tmp_path / "refs.h5ad", X=np.ones((4, 2), np.float32))
    with h5py.File(path, "a") as f:
        target = f.create_dataset("uns/target", data=SECRET_FLOATS)
        if kind == "object":
            ref, dtype = target.ref, h5py.ref_dtype
        else:
            ref, dtype = target.regionref[0:2, 0:2], h5py.regionref_dtype
        f.create_dataset("uns/refs", data=np.array([ref]), dtype=dtype)
    _refused(path, "'uns/refs' holds HDF5 references")


def test_a_valid_file_walks_clean_and_the_walk_reads_no_data(tmp_path, monkeypatch):
    path = write_h5ad(
        tmp_path / "ok.h5ad",
        X=np.ones((6, 2), np.float32),
        obs_index=[f"c{i}" for i in range(6)],
        obs={"kind": ("categorical", ["a", "b"], [0, 1] * 3), "t": ["x"] * 6},
        obsm={"X_pca": np.zeros((6, 2), np.float32)},
    )
    calls = []
    monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda *a: calls.append(a))
    with h5py.File(path, "r") as f:
        check_self_contained(f, "ok.h5ad")
    assert calls == []


# -- Parquet ----------------------------------------------------------------------------------


def _vector_table(values: np.ndarray) -> pa.Table:
    flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).ravel())
    return pa.table({"vector": pa.FixedSizeListArray.from_arrays(flat, values.shape[1])})


def _parquet_pointing_at(path: Path, other: Path) -> Path:
    """A real data file whose footer says its column chunk lives in ``other``."""
    buf = io.BytesIO()
    pq.write_table(_vector_table(np.zeros((4, 4))), buf, compression="none")
    data = buf.getvalue()
    md = pq.read_metadata(io.BytesIO(data))
    md.set_file_path(str(other))
    sink = pa.BufferOutputStream()
    md.write_metadata_file(sink)
    footer = sink.getvalue().to_pybytes()[4:]  # PAR1 + footer + length + PAR1
    (length,) = struct.unpack("<i", data[-8:-4])
    path.write_bytes(data[: -8 - length] + footer)
    return path


def test_parquet_column_chunk_file_path_is_refused(tmp_path, secret):
    other = secret.parent / "secret.parquet"
    pq.write_table(_vector_table(SECRET_FLOATS), other, compression="none")
    path = _parquet_pointing_at(tmp_path / "p.parquet", other)
    md = pq.read_metadata(path)
    assert md.row_group(0).column(0).file_path == str(other)
    # What pyarrow does with it today: reads this file's own bytes, ignoring file_path.
    assert not _leaks(pq.read_table(path).column(0).combine_chunks().values.to_numpy())
    message = _refused(path, "stored in another file")
    assert "column chunk's file_path" in message and str(other) not in message
    np.save(tmp_path / "v.npy", np.ones((4, 2), np.float32))
    _refused(tmp_path / "v.npy", "stored in another file", metadata_path=path)


def _encrypted_parquet(path: Path, *, plaintext_footer: bool) -> Path:
    enc = pytest.importorskip("pyarrow.parquet.encryption")

    class Kms(enc.KmsClient):
        def __init__(self, _config):
            super().__init__()

        def wrap_key(self, key_bytes, _master_key_identifier):
            return key_bytes[::-1]

        def unwrap_key(self, wrapped_key, _master_key_identifier):
            return wrapped_key[::-1]

    factory = enc.CryptoFactory(Kms)
    config = enc.EncryptionConfiguration(
        footer_key="footer", column_keys={"col": ["vector"]}, plaintext_footer=plaintext_footer
    )
    props = factory.file_encryption_properties(enc.KmsConnectionConfig(), config)
    table = _vector_table(SECRET_FLOATS)
    with pq.ParquetWriter(path, table.schema, encryption_properties=props) as writer:
        writer.write_table(table)
    return path


def test_encrypted_parquet_is_refused(tmp_path):
    path = _encrypted_parquet(tmp_path / "enc.parquet", plaintext_footer=False)
    assert path.read_bytes()[-4:] == b"PARE"
    _refused(path, "is an encrypted Parquet file")


def test_encrypted_columns_with_a_plaintext_footer_are_refused_without_crashing(tmp_path):
    """pyarrow 26 aborts the whole process (an uncaught C++ exception) when it touches such a
    file's column metadata: the footer is checked before it does. Run in a child process so
    a regression shows as a failure, not as the end of the test run."""
    path = _encrypted_parquet(tmp_path / "plain_footer.parquet", plaintext_footer=True)
    code = (
        "import sys\n"
        "from embscope.core.ingest import read_dataset, inspect_file\n"
        "from embscope.core.errors import InvalidInputError\n"
        "for read in (read_dataset, inspect_file):\n"
        "    try:\n"
        "        read(sys.argv[1])\n"
        "    except InvalidInputError as exc:\n"
        "        print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2 and all("is an encrypted Parquet file" in line for line in lines)


def _thrift_struct(*fields: tuple[int, int, bytes]) -> bytes:
    """A Thrift compact struct: (field id, type, encoded value), ids ascending, then stop."""
    out, last = b"", 0
    for fid, kind, value in fields:
        out += bytes([((fid - last) << 4) | kind]) + value
        last = fid
    return out + b"\x00"


def _thrift_list(kind: int, items: list[bytes]) -> bytes:
    return bytes([(len(items) << 4) | kind]) + b"".join(items)


def test_footer_check_finds_column_encryption_without_a_file_level_mark():
    chunk = _thrift_struct((2, 6, b"\x00"), (9, 8, b"\x03abc"))  # file_offset, encrypted meta
    group = _thrift_struct((1, 9, _thrift_list(12, [chunk])))
    footer = _thrift_struct((1, 5, b"\x02"), (4, 9, _thrift_list(12, [group])))
    problem = footer_problem(footer, "f.parquet")
    assert problem is not None and "encrypted" in str(problem)
    named = _thrift_struct((1, 8, b"\x05other"), (2, 6, b"\x00"))
    footer = _thrift_struct(
        (4, 9, _thrift_list(12, [_thrift_struct((1, 9, _thrift_list(12, [named])))]))
    )
    problem = footer_problem(footer, "f.parquet")
    assert problem is not None and "another file" in str(problem)
    empty = _thrift_struct((1, 8, b"\x00"), (2, 6, b"\x00"))  # file_path "": this file
    footer = _thrift_struct(
        (4, 9, _thrift_list(12, [_thrift_struct((1, 9, _thrift_list(12, [empty])))]))
    )
    assert footer_problem(footer, "f.parquet") is None


@pytest.mark.parametrize(
    "footer",
    [b"", b"\x19", b"\x19\xfc\xff\xff\xff\x0f", b"\x1c" * 10_000, b"\x18\xff\xff\xff\xff\x7f",
     b"\x1b\x05\x00", bytes(range(1, 256)) * 4],
)  # fmt: skip
def test_footer_check_refuses_garbage_with_a_message(footer):
    problem = footer_problem(footer, "f.parquet")
    assert problem is not None and "f.parquet is not a readable Parquet file" in str(problem)


def test_ordinary_parquet_files_pass_the_footer_check(tmp_path):
    x = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)
    table = _vector_table(x).append_column("label", pa.array([f"l{i % 7}" for i in range(300)]))
    for i, kwargs in enumerate([{}, {"row_group_size": 50}, {"compression": "zstd"}]):
        path = tmp_path / f"ok{i}.parquet"
        pq.write_table(table, path, write_statistics=True, **kwargs)
        np.testing.assert_array_equal(read_dataset(path).vectors, x)


# -- .npz ---------------------------------------------------------------------------------------


def _npy_bytes(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, values, allow_pickle=False)
    return buf.getvalue()


def test_npz_member_that_is_a_symbolic_link_is_refused(tmp_path, secret):
    (secret.parent / "X.npy").write_bytes(_npy_bytes(SECRET_FLOATS))
    path = tmp_path / "link.npz"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("X.npy")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, str(secret.parent / "X.npy"))
    # zipfile itself never follows it: reading the member gives the link's own text.
    with zipfile.ZipFile(path) as zf:
        assert zf.read("X.npy") == str(secret.parent / "X.npy").encode()
    _refused(path, "'X' is a symbolic link inside the archive")


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_npz_member_names_never_reach_the_file_system(tmp_path, secret, how):
    outside = secret.parent / "vectors.npy"
    outside.write_bytes(_npy_bytes(SECRET_FLOATS))  # what a path-following reader would read
    # Relative: from any folder an extracting reader might use, enough ../ reach the secret.
    name = ("../" * 40 + str(outside).lstrip("/")) if how == "relative" else str(outside)
    mine = np.arange(8, dtype=np.float32).reshape(4, 2)
    path = tmp_path / "names.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(name, _npy_bytes(mine))
    parsed = read_dataset(path)
    np.testing.assert_array_equal(parsed.vectors, mine)  # the archive's bytes, only those
    assert not _leaks(parsed.vectors, parsed.metadata.to_json())


# -- a path that is a link, or not a file -------------------------------------------------------


def test_a_symbolic_link_is_never_read(capsys, tmp_path, secret):
    real = secret.parent / "vectors.npy"
    real.write_bytes(_npy_bytes(SECRET_FLOATS))
    link = tmp_path / "link.npy"
    link.symlink_to(real)
    np.testing.assert_array_equal(np.load(link), SECRET_FLOATS)  # the link does lead there
    message = _refused(link, "is a symbolic link")
    assert message == (
        "link.npy is a symbolic link: embscope reads only the file it is given, never what a "
        "link points to; pass the file itself"
    )
    _cli_refuses(capsys, tmp_path, str(link), match="is a symbolic link")
    # The metadata file too, and the query vector file of `neighbours --vector-file`.
    meta_real = secret.parent / "meta.csv"
    meta_real.write_text("label\n" + f"{SECRET.decode()}\n" * 4)
    meta_link = tmp_path / "meta.csv"
    meta_link.symlink_to(meta_real)
    np.save(tmp_path / "v.npy", np.ones((4, 2), np.float32))
    _refused(tmp_path / "v.npy", "meta.csv is a symbolic link", metadata_path=meta_link)
    _cli_refuses(
        capsys, tmp_path, str(tmp_path / "v.npy"), "--metadata", str(meta_link),
        match="is a symbolic link",
    )  # fmt: skip
    (secret.parent / "q.npy").write_bytes(_npy_bytes(SECRET_FLOATS[0]))
    (tmp_path / "q.npy").symlink_to(secret.parent / "q.npy")
    with pytest.raises(InvalidInputError, match="is a symbolic link"):
        read_query_vector(tmp_path / "q.npy", label="q.npy")
    # An upload saved by the app is never a link, so the same upload reads fine.
    np.testing.assert_array_equal(read_dataset(real).vectors, SECRET_FLOATS)


def test_a_pipe_or_a_device_is_refused_without_being_opened(tmp_path):
    fifo = tmp_path / "fifo.npy"
    os.mkfifo(fifo)  # opening it to read would wait for a writer forever
    _refused(fifo, "is not a regular file")
    if Path("/dev/zero").exists():
        link = tmp_path / "zero.npy"
        link.symlink_to("/dev/zero")
        _refused(link, "is a symbolic link")
        _refused(Path("/dev/zero"), "is not a regular file", filename="zero.npy")


def test_links_in_the_folders_above_the_file_are_followed(tmp_path):
    """Only the file itself must not be a link: /home -> /data/home setups keep working."""
    real = tmp_path / "real"
    real.mkdir()
    np.save(real / "v.npy", np.ones((3, 2), np.float32))
    (tmp_path / "alias").symlink_to(real, target_is_directory=True)
    assert read_dataset(tmp_path / "alias" / "v.npy").vectors.shape == (3, 2)


# -- text formats name no files ------------------------------------------------------------------


def test_text_formats_never_open_a_file_they_name(tmp_path, secret):
    named = [str(secret), f"file://{secret}", f"@{secret}", f"<{secret}", "$(cat /etc/passwd)"]
    csv = tmp_path / "v.csv"
    csv.write_text("x,y,source\n" + "".join(f"{i},{i + 1},{n}\n" for i, n in enumerate(named)))
    jsonl = tmp_path / "v.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"vector": [i, 1.0], "$ref": n, "$include": n, "source": n}) + "\n"
            for i, n in enumerate(named)
        )
    )
    for path in (csv, jsonl):
        parsed = read_dataset(path)
        assert list(parsed.metadata["source"]) == named  # kept as text, verbatim
        assert not _leaks(parsed.vectors, parsed.metadata.to_json())


def test_projector_metadata_comes_only_from_the_file_given(tmp_path, secret):
    """A vectors.tsv beside a metadata.tsv: only a metadata file passed in is read."""
    (tmp_path / "vectors.tsv").write_text("0.1\t0.2\n0.3\t0.4\n")
    (tmp_path / "metadata.tsv").write_text(SECRET.decode()[:20] + "\n" + SECRET.decode()[20:40])
    (tmp_path / "projector_config.pbtxt").write_text(
        f'embeddings {{ tensor_path: "vectors.tsv" metadata_path: "{secret}" }}'
    )
    parsed = read_dataset(tmp_path / "vectors.tsv")
    assert parsed.format == "projector" and list(parsed.metadata.columns) == []
    assert not _leaks(parsed.metadata.to_json(), parsed.source)
