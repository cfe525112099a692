"""Uploads reach the disk only under names embscope makes."""

from __future__ import annotations

import pytest

from app.uploads import UPLOAD_DIR, save_upload
from core.errors import InvalidInputError


@pytest.mark.parametrize(
    "name", ["../../etc/passwd.npy", "/abs/path/x.npy", "..\\..\\win.npy", "a b;rm -rf.npy"]
)
def test_uploaded_names_never_become_paths(name):
    path = save_upload(b"\x93NUMPY-ish bytes", name)
    assert path.parent == UPLOAD_DIR and path.name.startswith("upload-") and path.suffix == ".npy"
    assert ".." not in path.name and "passwd" not in str(path)
    path.unlink()


@pytest.mark.parametrize("name", ["evil.pkl", "x.exe", "noext", "model.pt"])
def test_unsupported_suffixes_are_refused(name):
    with pytest.raises(InvalidInputError, match="not a format embscope reads"):
        save_upload(b"data", name)
