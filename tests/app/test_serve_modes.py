"""`embscope serve --read-only` and `--token`: what a browser session sees, and the CLI flags.

The page tests run app/main.py in process (AppTest) with the environment the serve command
gives its Streamlit child; the CLI tests replace ``os.execve`` so no server starts.
"""

from __future__ import annotations

import os
import types
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from embscope.app import access
from embscope.core.errors import InvalidInputError
from embscope.core.store import Store
from tests.helpers import make_parsed, run_cli

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
SECRET = "quarterly-revenue-embeddings"  # a dataset name no unauthorised session may see
TOKEN = "s3cret-team-token-0123456789"


def _store_then_close(db: Path, *names: str) -> None:
    with Store(db) as s:
        for i, name in enumerate(names):
            s.add_dataset(make_parsed(np.eye(3 + i, dtype=np.float32)), name=name)


def _app(**query: str) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


def _all_text(at: AppTest) -> str:
    """Everything the session was sent: every element's protobuf, main area and sidebar."""
    out: list[str] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(str(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(out)


def _labels(at: AppTest) -> set[str]:
    return {b.label for b in at.button}


# -- read-only --------------------------------------------------------------------------------


@pytest.mark.parametrize("read_only", [False, True])
def test_read_only_hides_upload_rename_and_delete(db, monkeypatch, read_only):
    _store_then_close(db, "alpha", "beta")
    if read_only:
        monkeypatch.setenv(access.READ_ONLY_ENV, "1")
    at = _app()
    assert not at.exception, at.exception
    assert at.title[0].value == "Datasets"
    # The catalog and the picker stay: a read-only demo is still explored.
    assert at.sidebar.selectbox[0].label == "Dataset"
    assert "alpha" in _all_text(at) and "beta" in _all_text(at)
    captions = " ".join(c.value for c in at.caption)
    if read_only:
        assert len(at.file_uploader) == 0
        assert not {"Rename", "Delete dataset…"} & _labels(at)
        assert not [t for t in at.text_input if t.label == "Rename to"]
        assert "Read-only demo" in captions
        assert "Read-only demo" in " ".join(c.value for c in at.sidebar.caption)
    else:  # the control: the same page on a writable server has all of them
        assert len(at.file_uploader) == 2
        assert {"Rename", "Delete dataset…"} <= _labels(at)
        assert "Read-only demo" not in captions


def test_read_only_empty_database_offers_no_demo_loading(db, monkeypatch):
    Store(db).close()  # a read-only server opens an existing database, it never creates one
    monkeypatch.setenv(access.READ_ONLY_ENV, "true")
    at = _app()
    assert not at.exception
    assert "Load the demo datasets" not in _labels(at)
    assert any("read-only demo" in i.value for i in at.info)
    from embscope.app.runtime import get_store

    assert get_store().list_datasets() == []


@pytest.fixture
def drawn_but_read_only(monkeypatch):
    """A read-only server whose Datasets page still draws its write controls (as if a
    page forgot to hide one), to check that the actions themselves refuse."""
    from embscope.app import dataset_forms

    monkeypatch.setenv(access.READ_ONLY_ENV, "1")
    shim = types.SimpleNamespace(
        read_only=lambda: False,
        require_writable=access.require_writable,
        READ_ONLY_CAPTION=access.READ_ONLY_CAPTION,
    )
    monkeypatch.setattr(dataset_forms, "access", shim)


def test_read_only_actions_refuse_even_when_drawn(db, drawn_but_read_only):
    _store_then_close(db, "alpha")
    at = _app()
    rename = [t for t in at.text_input if t.label == "Rename to"][0]
    rename.set_value("renamed")
    [b for b in at.button if b.label == "Rename"][0].click()
    at.run()
    assert any("cannot rename a dataset" in e.value for e in at.error)
    [b for b in at.button if b.label == "Delete dataset…"][0].click()
    at.run()
    [b for b in at.button if b.label == "Delete"][0].click()
    at.run()
    assert not at.exception, at.exception
    assert any("cannot delete a dataset" in e.value for e in at.error)
    at.file_uploader[0].set_value(("x.npy", b"not read", "application/octet-stream"))
    at.run()
    assert any("cannot accept uploads" in e.value for e in at.error)
    from embscope.app.runtime import get_store

    assert [d.name for d in get_store().list_datasets()] == ["alpha"]


def test_read_only_demo_loading_refuses_even_when_drawn(db, drawn_but_read_only):
    Store(db).close()  # an empty database (a read-only server never creates one)
    at = _app()
    [b for b in at.button if b.label == "Load the demo datasets"][0].click()
    at.run()
    assert any("cannot load the demo datasets" in e.value for e in at.error)
    from embscope.app.runtime import get_store

    assert get_store().list_datasets() == []


def test_read_only_env_values(monkeypatch):
    for value, expected in [("1", True), ("yes", True), ("TRUE", True), ("0", False), ("", False)]:
        monkeypatch.setenv(access.READ_ONLY_ENV, value)
        assert access.read_only() is expected, value
    access.require_writable()  # writable: no error
    monkeypatch.setenv(access.READ_ONLY_ENV, "1")
    with pytest.raises(InvalidInputError, match="read-only demo: it cannot rename a dataset"):
        access.require_writable("rename a dataset")


# -- access token -----------------------------------------------------------------------------


def test_token_matches_is_exact(monkeypatch):
    monkeypatch.setattr(access, "WRONG_TOKEN_INTERVAL_S", 0.0)
    monkeypatch.delenv(access.TOKEN_ENV, raising=False)
    assert not access.token_matches("")  # no token configured: nothing matches
    monkeypatch.setenv(access.TOKEN_ENV, "tök-en")
    assert access.token_matches("tök-en")  # non-ASCII compared as bytes, no TypeError
    for wrong in ["", "tök-e", "tök-en ", "TÖK-EN", None, 42]:
        assert not access.token_matches(wrong), wrong


def test_wrong_tokens_are_refused_one_per_interval_across_sessions(monkeypatch):
    import threading
    import time

    monkeypatch.setenv(access.TOKEN_ENV, "right-token")
    monkeypatch.setattr(access, "WRONG_TOKEN_INTERVAL_S", 0.2)
    monkeypatch.setattr(access, "_next_wrong_answer", 0.0)
    answered: list[float] = []
    start = time.monotonic()

    def guess(i: int) -> None:
        assert not access.token_matches(f"guess-{i}")
        answered.append(time.monotonic() - start)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(5)]  # five tabs
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answered.sort()
    assert answered[-1] >= 0.8 - 0.01  # the fifth refusal waited for four before it
    assert all(b - a >= 0.2 - 0.02 for a, b in zip(answered, answered[1:], strict=False))
    t0 = time.monotonic()
    assert access.token_matches("right-token")  # the right token waits its turn too
    assert time.monotonic() - t0 >= 0.2 - 0.02


def test_without_token_nothing_but_the_form(db, monkeypatch):
    _store_then_close(db, SECRET)
    monkeypatch.setenv(access.TOKEN_ENV, TOKEN)
    at = _app()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["embscope"]
    assert [t.label for t in at.text_input] == ["Access token"]
    assert at.text_input[0].proto.type == at.text_input[0].proto.PASSWORD
    text = _all_text(at)
    assert SECRET not in text and "Datasets" not in text
    assert len(at.sidebar.children) == 0 and len(at.selectbox) == 0
    assert len(at.error) == 0  # no complaint before anything was tried


def test_token_in_link_opens_the_app_and_leaves_the_address(db, monkeypatch):
    _store_then_close(db, SECRET)
    monkeypatch.setenv(access.TOKEN_ENV, TOKEN)
    at = _app(token=TOKEN, dataset="1")
    assert not at.exception, at.exception
    assert at.title[0].value == "Datasets"
    assert SECRET in _all_text(at)
    assert "token" not in at.query_params  # gone from the address bar and shared links
    assert at.query_params.get("dataset") == "1"  # the rest of the link is kept
    at.run()  # the session remembers it
    assert at.title[0].value == "Datasets" and "token" not in at.query_params


def test_token_through_the_form(db, monkeypatch):
    _store_then_close(db, SECRET)
    monkeypatch.setenv(access.TOKEN_ENV, TOKEN)
    at = _app()
    at.text_input[0].input("not-the-token")
    at.button[0].click()
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["That access token is not right."]
    assert SECRET not in _all_text(at) and len(at.sidebar.children) == 0
    at.text_input[0].input(TOKEN)
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Datasets"
    assert SECRET in _all_text(at)
    assert at.sidebar.selectbox[0].label == "Dataset"


def test_wrong_token_in_link_is_refused_and_removed(db, monkeypatch):
    _store_then_close(db, SECRET)
    monkeypatch.setenv(access.TOKEN_ENV, TOKEN)
    at = _app(token=TOKEN[:-1])
    assert not at.exception
    assert [e.value for e in at.error] == ["The access token in the link is not right."]
    assert "token" not in at.query_params
    assert SECRET not in _all_text(at)
    assert [t.value for t in at.title] == ["embscope"]


# -- the serve command ------------------------------------------------------------------------


@pytest.fixture
def execve(monkeypatch):
    """Capture the serve command's exec of Streamlit instead of running it."""
    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    for name in (access.TOKEN_ENV, access.READ_ONLY_ENV, access.MAX_UPLOAD_ENV):
        monkeypatch.delenv(name, raising=False)
    return calls


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_serve_defaults_bind_loopback_writable_without_token(capsys, tmp_path, execve):
    code, out, err = run_cli(capsys, "--db", str(tmp_path / "s.duckdb"), "serve")
    assert code == 0 and err == ""
    [(_, argv, env)] = execve
    # the dashboard as an st.App behind the access gate (app/server.py)
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4].endswith("server.py")
    assert _option(argv, "--client.showErrorDetails") == "none"  # no tracebacks to visitors
    assert _option(argv, "--server.address") == "127.0.0.1"
    assert _option(argv, "--server.port") == "8501"
    assert _option(argv, "--server.maxUploadSize") == "2048"
    assert env[access.MAX_UPLOAD_ENV] == "2048"
    assert env[access.READ_ONLY_ENV] == "0" and access.TOKEN_ENV not in env
    assert env["EMBSCOPE_DB"] == str((tmp_path / "s.duckdb").resolve())
    assert "http://127.0.0.1:8501" in out
    assert _option(argv, "--runner.postScriptGC") == "false"  # no full GC after every run


def test_serve_warms_up_the_projection_methods_unless_told_not_to(
    capsys, tmp_path, execve, monkeypatch
):
    monkeypatch.delenv("EMBSCOPE_WARM_UP")  # tests/conftest.py turns it off for test servers
    run_cli(capsys, "--db", str(tmp_path / "s.duckdb"), "serve")
    monkeypatch.setenv("EMBSCOPE_WARM_UP", "0")
    run_cli(capsys, "--db", str(tmp_path / "s.duckdb"), "serve")
    assert [env["EMBSCOPE_WARM_UP"] for _, _, env in execve] == ["1", "0"]


def test_serve_read_only_token_and_upload_limit(capsys, tmp_path, execve):
    Store(tmp_path / "s.duckdb").close()  # a read-only server shows an existing database
    code, out, err = run_cli(
        capsys, "--db", str(tmp_path / "s.duckdb"), "serve", "--read-only",
        "--token", TOKEN, "--max-upload-mb", "64", "--port", "9999",
    )  # fmt: skip
    assert code == 0, err
    [(_, argv, env)] = execve
    assert env[access.READ_ONLY_ENV] == "1" and env[access.TOKEN_ENV] == TOKEN
    assert env[access.MAX_UPLOAD_ENV] == "64" and _option(argv, "--server.maxUploadSize") == "64"
    assert TOKEN not in " ".join(argv)  # the token is not on Streamlit's command line
    assert TOKEN not in out + err  # and never printed
    assert "read-only" in out and "access token required" in out


def test_serve_takes_the_token_from_the_environment(capsys, tmp_path, execve, monkeypatch):
    monkeypatch.setenv(access.TOKEN_ENV, TOKEN)
    code, out, err = run_cli(capsys, "--db", str(tmp_path / "s.duckdb"), "serve")
    assert code == 0
    [(_, _, env)] = execve
    assert env[access.TOKEN_ENV] == TOKEN and TOKEN not in out + err


@pytest.mark.parametrize(
    ("address", "warned"),
    [("0.0.0.0", True), ("192.168.1.20", True), ("::", True), ("example.org", True),
     ("127.0.0.1", False), ("127.0.1.1", False), ("::1", False), ("localhost", False)],
)  # fmt: skip
def test_serve_warns_on_a_reachable_address_without_token(
    capsys, tmp_path, execve, address, warned
):
    db = str(tmp_path / "s.duckdb")
    code, _, err = run_cli(capsys, "--db", db, "serve", "--address", address)
    assert code == 0
    assert ("no access token is set" in err) is warned, err
    assert _option(execve[0][1], "--server.address") == address
    code, _, err = run_cli(capsys, "--db", db, "serve", "--address", address, "--token", TOKEN)
    assert code == 0 and "no access token" not in err  # with a (long) token: no such warning
    assert ("without TLS" in err) is warned  # but the network still sees it in clear


def test_serve_refuses_a_short_token(capsys, tmp_path, execve):
    code, out, err = run_cli(capsys, "--db", str(tmp_path / "s.duckdb"), "serve", "--token", "T")
    assert code == 2 and "at least 16" in err and execve == []


def test_serve_makes_a_new_token_and_prints_its_link(capsys, tmp_path, execve):
    code, out, err = run_cli(capsys, "--db", str(tmp_path / "s.duckdb"), "serve", "--new-token")
    assert code == 0, err
    [(_, argv, env)] = execve
    token = env[access.TOKEN_ENV]
    assert len(token) >= 32 and token not in " ".join(argv)
    assert f"http://127.0.0.1:8501/?token={token}" in out  # printed once, for the team


def test_serve_tls_and_allowed_hosts(capsys, tmp_path, execve):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert"), key.write_text("key")
    code, out, err = run_cli(
        capsys, "--db", str(tmp_path / "s.duckdb"), "serve", "--address", "0.0.0.0",
        "--token", TOKEN, "--tls-cert", str(cert), "--tls-key", str(key),
        "--allow-host", "embscope.lab",
    )  # fmt: skip
    assert code == 0 and err == "", err  # reachable, with a token and TLS: no warning
    [(_, argv, env)] = execve
    assert _option(argv, "--server.sslCertFile") == str(cert)
    assert _option(argv, "--server.sslKeyFile") == str(key)
    assert env["EMBSCOPE_TLS"] == "1" and env["EMBSCOPE_ALLOWED_HOSTS"] == "embscope.lab"
    assert "https://0.0.0.0:8501" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--token", ""], "--token is empty"),
        (["--token", " padded "], "white space"),
        (["--max-upload-mb", "0"], "--max-upload-mb must be at least 1"),
        (["--token", "x" * 15], "at least 16"),
        (["--token", "x" * 20, "--new-token"], "not both"),
        (["--tls-cert", "cert.pem"], "both --tls-cert and --tls-key"),
        (["--tls-cert", "no.pem", "--tls-key", "no.key"], "no such file"),
    ],
)
def test_serve_bad_flags_exit_2_without_starting(capsys, tmp_path, execve, args, message):
    code, _, err = run_cli(capsys, "--db", str(tmp_path / "s.duckdb"), "serve", *args)
    assert code == 2 and err.startswith("error:") and message in err
    assert execve == []


def test_serve_refuses_a_bad_memory_budget_at_start(capsys, tmp_path, execve, monkeypatch):
    monkeypatch.setenv("EMBSCOPE_MEMORY_BUDGET_GIB", "half")
    code, _, err = run_cli(capsys, "--db", str(tmp_path / "s.duckdb"), "serve")
    assert code == 2 and err.startswith("error: EMBSCOPE_MEMORY_BUDGET_GIB='half'")
    assert err.count("\n") == 1 and execve == []
    monkeypatch.setenv("EMBSCOPE_MEMORY_BUDGET_GIB", "4")
    assert run_cli(capsys, "--db", str(tmp_path / "s.duckdb"), "serve")[0] == 0
    assert execve[0][2]["EMBSCOPE_MEMORY_BUDGET_GIB"] == "4"  # the server reads it


def test_serve_help_describes_the_modes(capsys):
    code, out, _ = run_cli(capsys, "serve", "--help")
    assert code == 0
    for text in ["--read-only", "--token", "$EMBSCOPE_TOKEN", "127.0.0.1", "projections"]:
        assert text in out


def test_warm_up_freezes_the_long_lived_heap_out_of_full_collections(monkeypatch, capsys):
    import gc

    from embscope.app import runtime
    from embscope.core.projections import runs

    monkeypatch.setattr(runs, "warm_up", lambda: None)  # the compiling itself: tests elsewhere
    assert gc.get_freeze_count() == 0
    try:
        runtime.warm_up_projections()
        assert gc.get_freeze_count() > 10_000  # modules, numpy, pandas, streamlit, ...
        assert "embscope: projection methods ready" in capsys.readouterr().err
    finally:
        gc.unfreeze()
