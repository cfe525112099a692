"""AppTest of the Datasets page: upload, preview, save, errors, rename, delete, picker."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from embscope.app.uploads import UPLOAD_DIR
from embscope.core.store import Store
from tests.helpers import assert_index_built_in_background, make_parsed, snapshot, until

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


def _store_then_close(db: Path, *datasets) -> None:
    with Store(db) as s:
        for name, parsed in datasets:
            s.add_dataset(parsed, name=name)


def _app() -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=60)
    return at.run()


def _npy_bytes(X: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, X)
    return buf.getvalue()


def _open_store(db: Path) -> Store:
    # The page holds the database open (app.runtime's process-wide store); share it.
    from embscope.app.runtime import get_store

    return get_store()


def test_empty_database_shows_how_to_start(db):
    at = _app()
    assert not at.exception
    assert at.title[0].value == "Datasets"
    assert any("No datasets yet" in i.value for i in at.info)
    [b for b in at.button if b.label == "Load the demo datasets"][0].click()
    at.run()
    assert not at.exception
    names = [d.name for d in _open_store(db).list_datasets()]
    assert names[0] == "digits" and len(names) == 4
    assert any("Loaded 4 demo datasets" in s.value for s in at.success)
    for info in _open_store(db).list_datasets():
        assert_index_built_in_background(info.id)


def test_upload_preview_and_save(db):
    X = np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)
    at = _app()
    data = _npy_bytes(X)
    before = set(UPLOAD_DIR.glob("*")) if UPLOAD_DIR.exists() else set()
    at.file_uploader[0].set_value(("my vectors.npy", data, "application/octet-stream"))
    at.run()
    assert not at.exception and not at.error
    new = set(UPLOAD_DIR.glob("*")) - before
    assert len(new) == 1  # one copy, never under the uploaded name
    upload_copy = new.pop()
    assert upload_copy.read_bytes() == data and "my vectors" not in upload_copy.name
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Rows"] == "40" and metrics["Dimension"] == "6" and metrics["Format"] == "npy"
    assert at.text_input[0].value == "my vectors"
    at.text_input[0].set_value("uploaded")
    submit = [b for b in at.button if b.label == "Save dataset"][0]
    submit.click()
    at.run()
    # saved by a background job: the page shows its message once the job has ended
    until(at, lambda a: a.exception or any("Saved dataset" in s.value for s in a.success))
    assert not at.exception, at.exception
    # 6 features: l2 is guessed, recorded and said.
    assert any("Saved dataset" in s.value and "metric l2" in s.value and "6 dimensions" in s.value
               for s in at.success), [s.value for s in at.success]  # fmt: skip
    store = _open_store(db)
    [info] = store.list_datasets()
    assert info.name == "uploaded" and (info.n, info.dim) == (40, 6)
    assert info.metric == "l2" and "6 dimensions" in info.info["metric_reason"]
    catalog = next(d.value for d in at.dataframe if "metric" in d.value.columns)
    assert catalog["metric"].tolist() == ["l2"]
    np.testing.assert_array_equal(store.load_vectors(info.id), X)
    assert not upload_copy.exists()  # the temporary copy is removed once stored
    # the sidebar picker now points at the new dataset
    assert at.sidebar.selectbox[0].value == info.id
    # Its default index is built in the background, before anyone queries it.
    assert_index_built_in_background(info.id)


def test_bad_upload_is_an_error_message_and_changes_nothing(db):
    _store_then_close(db, ("keep", make_parsed(np.eye(3))))
    X = np.ones((5, 3), np.float32)
    X[3, 2] = np.inf
    at = _app()
    at.file_uploader[0].set_value(("bad.npy", _npy_bytes(X), "application/octet-stream"))
    at.run()
    submit = [b for b in at.button if b.label == "Save dataset"]
    if submit:  # the preview may already refuse it; otherwise saving must
        submit[0].click()
        at.run()
        until(at, lambda a: a.exception or a.error)
    assert not at.exception
    assert any("inf" in e.value.lower() for e in at.error), [e.value for e in at.error]
    store = _open_store(db)
    assert [d.name for d in store.list_datasets()] == ["keep"]


def test_not_a_supported_file_is_refused_with_a_message(db):
    at = _app()
    # the uploader's own type filter is client-side; the server checks again
    at.file_uploader[0].set_value(("notes.npy", b"hello, not numpy", "application/octet-stream"))
    at.run()
    assert not at.exception
    assert at.error, "a corrupt file must produce an error message"


def test_hostile_names_and_metadata_are_shown_as_text(db):
    evil = "<img src=x onerror=alert(1)> **bold** [x](javascript:alert(1))"
    meta = pd.DataFrame({"note": [evil, "'; DROP TABLE datasets; --"]})
    _store_then_close(db, (evil, make_parsed(np.eye(2), meta)))
    at = _app()
    assert not at.exception
    headings = [m.value for m in at.markdown if "img" in m.value]
    assert headings and all("\\<img" in h for h in headings), headings
    frames = [df.value for df in at.dataframe]
    assert any(evil in set(f.get("note", [])) for f in frames)
    assert any(evil in set(f.get("name", [])) for f in frames)


def test_rename_and_delete_with_confirmation(db):
    _store_then_close(db, ("one", make_parsed(np.eye(2))), ("two", make_parsed(np.eye(3))))
    at = _app()
    # rename the current dataset (the newest, "two")
    rename_box = [t for t in at.text_input if t.label == "Rename to"][0]
    rename_box.set_value("one")
    [b for b in at.button if b.label == "Rename"][0].click()
    at.run()
    assert any("already exists" in e.value for e in at.error)
    rename_box = [t for t in at.text_input if t.label == "Rename to"][0]
    rename_box.set_value("deux")
    [b for b in at.button if b.label == "Rename"][0].click()
    at.run()
    store = _open_store(db)
    assert [d.name for d in store.list_datasets()] == ["one", "deux"]
    before = snapshot(store)
    [b for b in at.button if b.label.startswith("Delete dataset")][0].click()
    at.run()
    # nothing deleted until confirmed
    assert snapshot(store) == before
    [b for b in at.button if b.key == "confirm_delete"][0].click()
    at.run()
    assert not at.exception
    assert [d.name for d in store.list_datasets()] == ["one"]


def test_csv_with_header_vector_columns_are_chosen_in_the_form(db):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.standard_normal((10, 5)), columns=[f"x{i}" for i in range(5)])
    frame.insert(0, "label", range(10))
    frame.insert(0, "name", [f"n{i}" for i in range(10)])
    at = _app()
    at.file_uploader[0].set_value(("t.csv", frame.to_csv(index=False).encode(), "text/csv"))
    at.run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Dimension"] == "5" and metrics["Metadata columns"] == "2"
    assert at.multiselect[0].value == ["x0", "x1", "x2", "x3", "x4"]  # 'label' stays metadata
    at.multiselect[0].set_value([])
    [b for b in at.button if b.label == "Save dataset"][0].click()
    at.run()
    assert any("at least one vector column" in e.value for e in at.error)
    assert _open_store(db).list_datasets() == []
    at.multiselect[0].set_value(["x0", "x1"])
    [b for b in at.button if b.label == "Save dataset"][0].click()
    at.run()
    until(at, lambda a: a.exception or _open_store(db).list_datasets())
    [info] = _open_store(db).list_datasets()
    assert info.dim == 2 and set(info.metadata_columns) == {"name", "label", "x2", "x3", "x4"}


def test_upload_records_the_embedding_model(db):
    X = np.random.default_rng(1).standard_normal((30, 384)).astype(np.float32)
    at = _app()
    at.file_uploader[0].set_value(("minilm.npy", _npy_bytes(X), "application/octet-stream"))
    at.run()
    model_box = [s for s in at.selectbox if s.label == "Embedded with (optional)"][0]
    assert model_box.value == "(unknown model)"
    model_box.set_value("sentence-transformers/all-MiniLM-L6-v2")
    metric_box = [s for s in at.selectbox if s.label == "Metric"][0]
    assert metric_box.value == "guess from the vectors"
    metric_box.set_value("ip")
    [b for b in at.button if b.label == "Save dataset"][0].click()
    at.run()
    until(at, lambda a: a.exception or _open_store(db).list_datasets())
    assert not at.exception
    [info] = _open_store(db).list_datasets()
    assert info.info["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert info.metric == "ip" and info.info["metric_reason"] == "chosen at upload"
