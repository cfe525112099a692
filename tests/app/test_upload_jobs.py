"""Uploads saved in the background (app/upload_panel.py): the Datasets page shows the save's
progress with Cancel; Cancel leaves the database as it was and says so; a table of texts is
embedded by a job; the uploaded copy lives until its job ends, however old, and goes then."""

from __future__ import annotations

import io
import os
import threading
import time

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import embscope.app.uploads as uploads
from embscope.app.uploads import hold_uploads, release_uploads, save_upload
from embscope.core.errors import InvalidInputError
from tests.helpers import MAIN, snapshot, until

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _npy(X: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, X)
    return buf.getvalue()


@pytest.fixture
def upload_dir(tmp_path, monkeypatch):
    """A private upload folder per test (the real one is shared by every server)."""
    folder = tmp_path / "uploads"
    monkeypatch.setattr(uploads, "UPLOAD_DIR", folder)
    return folder


def test_cancel_an_upload_mid_way_saves_nothing(db, upload_dir, monkeypatch):
    import embscope.core.ingest as ingest
    from embscope.app.runtime import get_job_runner, get_store

    real_read, reading, release = ingest.read_dataset, threading.Event(), threading.Event()

    def held_read(*args, **kwargs):  # the job's read waits until the test has pressed Cancel
        reading.set()
        release.wait(30)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(ingest, "read_dataset", held_read)
    at = AppTest.from_file(MAIN, default_timeout=60).run()
    before = snapshot(get_store())
    X = np.random.default_rng(3).standard_normal((50, 5)).astype(np.float32)
    at.file_uploader[0].set_value(("cancel me.npy", _npy(X), "application/octet-stream")).run()
    [copy] = list(upload_dir.iterdir())
    [b for b in at.button if b.label == "Save dataset"][0].click().run()
    try:
        assert reading.wait(30)
        [job] = get_job_runner().live()
        assert job.kind == "upload" and job.memory and job.memory > 0
        # the panel every job uses: its progress, labelled with the upload, and Cancel; the
        # upload form is emptied (the job has its own copy of the file)
        label = r"Saving cancel me\.npy as “cancel me”: reading and checking the file"
        at = until(at, lambda a: any(p.proto.text.startswith(label) for p in a.get("progress")))
        assert at.file_uploader[0].value is None and copy.exists()
        [b for b in at.button if b.label == "Cancel"][0].click().run()
    finally:
        release.set()
    said = "Saving cancel me.npy as “cancel me”: cancelled: nothing was saved."
    at = until(at, lambda a: any(w.value.replace("\\", "") == said for w in a.warning))
    assert not at.exception and get_job_runner().status(job.key).state == "cancelled"
    assert snapshot(get_store()) == before and get_store().list_datasets() == []
    assert not copy.exists()  # removed once its job ended
    assert not any(p.proto.text.startswith("Saving") for p in at.get("progress"))


def test_a_table_of_texts_is_embedded_by_a_job(db, upload_dir):
    for name in ("onnxruntime", "tokenizers", "onnx"):
        pytest.importorskip(name)
    from embscope.app.runtime import get_job_runner, get_store
    from embscope.core.text_model import text_model_status

    if not text_model_status(MODEL)[0]:
        pytest.skip(text_model_status(MODEL)[1])
    texts = [f"a short sentence about topic {i % 4}, number {i}" for i in range(20)]
    data = pd.DataFrame({"text": texts}).to_csv(index=False).encode()
    at = AppTest.from_file(MAIN, default_timeout=60).run()
    at.file_uploader[0].set_value(("notes.csv", data, "text/csv")).run()
    [b for b in at.button if b.label == "Embed and save"][0].click().run()
    at = until(at, lambda a: a.exception or any("texts of “text”" in s.value for s in a.success))
    assert not at.exception
    [job] = [j for j in get_job_runner().jobs() if j.kind == "text_upload"]
    assert job.state == "done"
    [info] = get_store().list_datasets()
    assert (info.name, info.n, info.dim) == ("notes", 20, 384)
    assert info.info["model"] == MODEL and info.info["text_column"] == "text"
    assert get_store().load_metadata(info.id)["text"].tolist() == texts
    assert list(upload_dir.iterdir()) == []


def test_the_texts_form_offers_both_models_and_embeds_with_the_one_chosen(db, upload_dir):
    from embscope.app.runtime import get_store
    from embscope.core.text_model import text_model_status

    wordllama = "wordllama/l2_supercat_256"
    for model in (MODEL, wordllama):
        if not text_model_status(model)[0]:
            pytest.skip(text_model_status(model)[1])
    texts = [
        "<b>x</b> & <i>y</i>",
        *(f"a sentence about topic {i % 3}, number {i}" for i in range(9)),
    ]
    data = pd.DataFrame({"text": texts}).to_csv(index=False).encode()
    at = AppTest.from_file(MAIN, default_timeout=60).run()
    at.file_uploader[0].set_value(("two models.csv", data, "text/csv")).run()
    [box] = [s for s in at.selectbox if s.label == "Model"]
    assert box.options == [MODEL, wordllama] and box.value == MODEL  # MiniLM by default
    assert "WordLlama" in box.help and "below MiniLM" in box.help
    box.set_value(wordllama)
    [b for b in at.button if b.label == "Embed and save"][0].click().run()
    at = until(at, lambda a: a.exception or any("texts of “text”" in s.value for s in a.success))
    assert not at.exception
    [info] = get_store().list_datasets()
    assert (info.name, info.n, info.dim) == ("two models", 10, 256)
    assert info.info["model"] == wordllama and info.info["text_column"] == "text"
    assert get_store().load_metadata(info.id)["text"].tolist() == texts  # markup kept as text


def test_the_texts_form_offers_the_models_that_run_and_says_why_not_the_others(
    db, upload_dir, monkeypatch
):
    import embscope.app.text_upload as text_upload
    from embscope.app.runtime import get_store
    from embscope.core.text_model import text_model_status

    wordllama = "wordllama/l2_supercat_256"
    if not text_model_status(wordllama)[0]:
        pytest.skip(text_model_status(wordllama)[1])

    def status(model):  # as on a server where MiniLM's package is missing
        return (False, "its package is missing") if model == MODEL else text_model_status(model)

    monkeypatch.setattr(text_upload, "text_model_status", status)
    data = pd.DataFrame({"text": ["one text", "another text"]}).to_csv(index=False).encode()
    at = AppTest.from_file(MAIN, default_timeout=60).run()
    at.file_uploader[0].set_value(("only one model.csv", data, "text/csv")).run()
    [box] = [s for s in at.selectbox if s.label == "Model"]
    assert box.options == [wordllama] and box.value == wordllama
    assert any(f"{MODEL} cannot run here: its package is missing" in c.value for c in at.caption)
    [b for b in at.button if b.label == "Embed and save"][0].click().run()
    at = until(at, lambda a: a.exception or any("texts of “text”" in s.value for s in a.success))
    assert not at.exception
    [info] = get_store().list_datasets()
    assert (info.name, info.dim, info.info["model"]) == ("only one model", 256, wordllama)


def test_a_held_upload_outlives_the_stale_clean_up_until_its_job_ends(upload_dir):
    path = save_upload(b"vectors being saved", "x.npy")
    old = time.time() - 3 * 24 * 3600
    os.utime(path, (old, old))  # older than a day: a preview never saved would go
    needed = [True]
    hold_uploads([path], needed=lambda: needed[0])
    other = save_upload(b"another upload", "y.npy")  # its write cleans up stale uploads
    assert path.exists()
    needed[0] = False  # its job ended (cancelled before it started: nothing released it)
    save_upload(b"a third upload", "z.npy")
    assert not path.exists() and other.exists()
    release_uploads([other, other])  # gone, and a second release is no error
    assert not other.exists()
    with pytest.raises(InvalidInputError, match="not a file in the upload folder"):
        release_uploads([upload_dir.parent / "elsewhere.npy"])
    with pytest.raises(InvalidInputError, match="callable"):
        hold_uploads([path], needed=True)  # type: ignore[arg-type]


def test_an_uploads_file_name_shows_only_in_the_session_that_uploaded_it(
    db, upload_dir, monkeypatch
):
    """Two sessions on one server: the sidebar's job list shows the other session's upload as
    "Saving an upload", never its file's or dataset's name; the uploader sees its own label."""
    import embscope.core.ingest as ingest
    from embscope.app.runtime import get_job_runner

    real_read, reading, release = ingest.read_dataset, threading.Event(), threading.Event()

    def held_read(*args, **kwargs):  # the job's read waits until the test has looked
        reading.set()
        release.wait(30)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(ingest, "read_dataset", held_read)
    mine = AppTest.from_file(MAIN, default_timeout=60).run()
    X = np.random.default_rng(4).standard_normal((30, 4)).astype(np.float32)
    secret = "payroll <b>2024</b>.npy"
    mine.file_uploader[0].set_value((secret, _npy(X), "application/octet-stream")).run()
    [b for b in mine.button if b.label == "Save dataset"][0].click().run()
    try:
        assert reading.wait(30)
        [job] = get_job_runner().live()
        assert job.kind == "upload" and "payroll" in job.label
        theirs = AppTest.from_file(MAIN, default_timeout=60).run()
        assert not theirs.exception
        seen = [p.proto.text for p in theirs.get("progress")]
        assert seen == ["Saving an upload (0%)"], seen
        assert not any("payroll" in str(e.proto) for e in theirs.get("progress"))
        # the uploader's own sidebar names it (escaped: the markup shows as text)
        mine.run()
        own = [p.proto.text for p in mine.sidebar.get("progress")]
        assert len(own) == 1 and own[0].startswith(r"Saving payroll \<b\>2024\</b\>\.npy as “"), own
    finally:
        release.set()
    assert until(mine, lambda a: not get_job_runner().live()) is not None
