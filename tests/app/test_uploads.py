"""Uploads reach the disk only under names embscope makes, and only within the size limit."""

from __future__ import annotations

import io
import os
import threading
import time
from collections import namedtuple

import pytest

import embscope.app.uploads as uploads
from embscope.app.uploads import UPLOAD_DIR, max_upload_bytes, max_upload_mb, save_upload
from embscope.core.errors import InvalidInputError

MiB = 2**20


@pytest.fixture
def upload_dir(tmp_path, monkeypatch):
    """A private upload folder per test (the real one is shared by every server)."""
    folder = tmp_path / "uploads"
    monkeypatch.setattr(uploads, "UPLOAD_DIR", folder)
    return folder


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize(
    "name", ["../../etc/passwd.npy", "/abs/path/x.npy", "..\\..\\win.npy", "a b;rm -rf.npy"]
)
def test_uploaded_names_never_become_paths(name):
    path = save_upload(b"\x93NUMPY-ish bytes", name)
    assert path.parent == UPLOAD_DIR and path.name.startswith("upload-") and path.suffix == ".npy"
    assert ".." not in path.name and "passwd" not in str(path)
    path.unlink()


HOSTILE_NAMES = [
    "../../x.npy",
    "../../../../../../tmp/embscope-pwned.csv",
    "/etc/cron.d/x.parquet",
    "C:\\Windows\\System32\\x.npz",
    "..%2f..%2fx.npy",
    "x\x00.npy",
    "\x00.npy",
    "nul\x00../../x.jsonl",
    "a" * 10_000 + ".npy",
    "<img src=x onerror=alert(1)>.csv",
    "'; DROP TABLE datasets; --.tsv",
    "$(touch pwned).json",
    "line\nbreak.h5ad",
    "ünïcødé 日本語 🚀.txt",
    "X.NPY",
    "~/.ssh/authorized_keys.npy",
    "\\\\server\\share\\x.npy",
    "-rf.npy",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_hashed_away(upload_dir, name):
    data = f"content of {name!r}".encode()
    path = save_upload(data, name)
    assert path.parent == upload_dir
    assert path.name == f"upload-{path.name[7:39]}{path.suffix}"
    assert all(c in "0123456789abcdef" for c in path.name[7:39])
    assert path.suffix == os.path.splitext(name)[1].lower()
    assert path.read_bytes() == data
    assert _files(upload_dir) == [path.name]  # nothing else was created, anywhere in it
    assert not (upload_dir.parent / "x.npy").exists()


@pytest.mark.parametrize(
    "name", ["evil.npy\x00.exe", "x.npy.pkl", "model.pt", "noext", "", ".npy", None]
)
def test_unreadable_suffixes_are_refused_before_writing(upload_dir, name):
    with pytest.raises(InvalidInputError, match="not a format embscope reads"):
        save_upload(b"data", name)
    assert _files(upload_dir) == []


@pytest.mark.parametrize("name", ["evil.pkl", "x.exe", "noext", "model.pt"])
def test_unsupported_suffixes_are_refused(name):
    with pytest.raises(InvalidInputError, match="not a format embscope reads"):
        save_upload(b"data", name)


def test_messages_do_not_repeat_a_huge_hostile_name(upload_dir):
    with pytest.raises(InvalidInputError) as err:
        save_upload(b"data", "a" * 100_000 + ".exe")
    assert len(str(err.value)) < 400


def test_the_limit_comes_from_the_serve_command(monkeypatch):
    monkeypatch.delenv(uploads.MAX_UPLOAD_ENV, raising=False)
    assert max_upload_mb() == 2048 == uploads.DEFAULT_MAX_UPLOAD_MB
    monkeypatch.setenv(uploads.MAX_UPLOAD_ENV, "5")
    assert max_upload_mb() == 5 and max_upload_bytes() == 5 * MiB
    for junk in ("", "abc", "0", "-3", "1.5", "1e3"):
        monkeypatch.setenv(uploads.MAX_UPLOAD_ENV, junk)
        assert max_upload_mb() == 2048, junk


def test_an_upload_above_the_limit_is_refused_with_the_limit_in_the_message(
    upload_dir, monkeypatch
):
    monkeypatch.setenv(uploads.MAX_UPLOAD_ENV, "1")
    exactly = bytes(MiB)
    assert save_upload(exactly, "ok.npy").stat().st_size == MiB
    with pytest.raises(InvalidInputError) as err:
        save_upload(bytes(MiB + 1), "big.npy")
    message = str(err.value)
    assert "'big.npy'" in message and "at most 1 MiB" in message
    assert "--max-upload-mb" in message
    assert len(_files(upload_dir)) == 1  # only the first; no partial file of the second


def test_a_stream_of_unknown_size_is_cut_off_at_the_limit(upload_dir):
    class Stream(io.RawIOBase):  # no size, no getbuffer: read until the limit is passed
        def __init__(self, total):
            self.left = total

        def readable(self):
            return True

        def read(self, n=-1):
            n = min(self.left, 1 << 16 if n is None or n < 0 else n)
            self.left -= n
            return bytes(n)

    with pytest.raises(InvalidInputError, match="at most 1 MiB"):
        save_upload(Stream(10 * MiB), "s.npy", max_bytes=MiB)
    assert _files(upload_dir) == []
    assert save_upload(Stream(1000), "s.npy", max_bytes=MiB).stat().st_size == 1000


def test_streamlit_uploaded_file_is_read_without_a_copy(upload_dir):
    class UploadedFile(io.BytesIO):  # what Streamlit hands the page: BytesIO with .size
        def __init__(self, data):
            super().__init__(data)
            self.size = len(data)

        def getvalue(self):  # pragma: no cover - would copy
            raise AssertionError("save_upload must not copy the upload")

    data = os.urandom(3 * MiB + 5)
    path = save_upload(UploadedFile(data), "u.npz")
    assert path.read_bytes() == data
    big = UploadedFile(bytes(10))
    big.size = 3 * MiB  # the size Streamlit reports is checked before reading
    with pytest.raises(InvalidInputError, match="3.0 MiB"):
        save_upload(big, "u.npz", max_bytes=MiB)


def test_a_streamlit_upload_is_written_once_and_is_its_sessions_own(upload_dir):
    class UploadedFile(io.BytesIO):
        def __init__(self, data, file_id):
            super().__init__(data)
            self.size, self.file_id = len(data), file_id

    data = os.urandom(MiB)
    first = save_upload(UploadedFile(data, "session-a-upload-1"), "v.npy")
    assert first.read_bytes() == data
    reads = []

    class Watched(UploadedFile):
        def read(self, *args):
            reads.append(args)
            return super().read(*args)

    # A rerun of the script hands the same upload again: nothing is read or written.
    assert save_upload(Watched(data, "session-a-upload-1"), "v.npy") == first and reads == []
    # Another session's upload of the same bytes is its own file: removing one (after a
    # save) leaves the other.
    second = save_upload(UploadedFile(data, "session-b-upload-1"), "v.npy")
    assert second != first
    first.unlink()
    assert second.read_bytes() == data


def test_same_content_from_many_sessions_at_once_gives_one_whole_file(upload_dir):
    data = os.urandom(2 * MiB)
    paths, errors = [], []

    def save():
        try:
            paths.append(save_upload(data, "same.parquet"))
        except Exception as exc:  # noqa: BLE001 - any error fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(paths)) == 1
    assert paths[0].read_bytes() == data
    assert _files(upload_dir) == [paths[0].name]  # no .part files left behind


def test_upload_folder_is_private_and_not_a_link(tmp_path, monkeypatch):
    folder = tmp_path / "uploads"
    folder.mkdir(mode=0o777)
    os.chmod(folder, 0o777)
    monkeypatch.setattr(uploads, "UPLOAD_DIR", folder)
    save_upload(b"x", "a.npy")
    assert folder.stat().st_mode & 0o777 == 0o700
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir()
    link = tmp_path / "link"
    link.symlink_to(elsewhere)
    monkeypatch.setattr(uploads, "UPLOAD_DIR", link)
    with pytest.raises(InvalidInputError, match="not a folder owned by this server"):
        save_upload(b"y", "b.npy")
    assert list(elsewhere.iterdir()) == []


def test_stale_previews_are_removed_and_a_full_disk_refused(upload_dir, monkeypatch):
    old = save_upload(b"old", "old.npy")
    week_ago = time.time() - 7 * 24 * 3600
    os.utime(old, (week_ago, week_ago))
    new = save_upload(b"new", "new.npy")
    assert not old.exists() and new.exists()
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(uploads.shutil, "disk_usage", lambda _p: usage(10**12, 10**12, 100 * MiB))
    with pytest.raises(InvalidInputError, match="100 MiB free"):
        save_upload(bytes(10), "x.npy")


def test_a_failed_write_leaves_nothing_and_says_why(upload_dir, monkeypatch):
    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(uploads.os, "replace", full)
    with pytest.raises(InvalidInputError, match="No space left on device"):
        save_upload(b"abc", "x.npy")
    assert _files(upload_dir) == []
