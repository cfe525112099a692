"""CSV/TSV files streamed block by block into one float32 matrix (core/ingest/delimited.py).

The reference is the whole-file read of the same file (the streamed read turned off): the
streamed result must be identical to it, and every file the stream gives up on (a problem
in a later block) must end in the whole-file read's error message or result.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from embscope.core.errors import InvalidInputError
from embscope.core.ingest import delimited, inspect_file, read_dataset

N = 300
BLOCK = 600  # bytes of text per block: dozens of blocks in every file below
BAD = 250  # the data row (from 0) a fallback case breaks: far past the first block


@pytest.fixture(autouse=True)
def tiny_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(delimited, "STREAM_BLOCK", BLOCK)


def _whole(monkeypatch: pytest.MonkeyPatch, read: Callable[[], Any]) -> Any:
    """``read()`` with the streamed read turned off: today's whole-file read."""
    with monkeypatch.context() as m:
        m.setattr(delimited, "_stream", lambda *args: None)
        return read()


def _blocks_filled(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """What the stream's matrix said of each block it was given (False: it gave up there)."""
    seen: list[bool] = []
    add = delimited._Fill.add

    def counted(self: Any, block: Any, choice: Any) -> bool:
        seen.append(add(self, block, choice))
        return seen[-1]

    monkeypatch.setattr(delimited._Fill, "add", counted)
    return seen


def _streamed(monkeypatch: pytest.MonkeyPatch, read: Callable[[], Any]) -> tuple[Any, int]:
    """``read()`` that must not fall back to the whole-file read; and how many blocks it took."""

    def refused(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the streamed read fell back to the whole-file read")

    with monkeypatch.context() as m:
        seen = _blocks_filled(m)
        m.setattr(delimited, "read_csv_table", refused)
        return read(), len(seen)


def _same(got: Any, want: Any) -> None:
    assert got.vectors.dtype == np.float32 and got.vectors.flags.c_contiguous
    assert got.vectors.shape == want.vectors.shape
    assert got.vectors.tobytes() == want.vectors.tobytes()  # bit for bit
    assert list(got.ids) == list(want.ids)
    pd.testing.assert_frame_equal(got.metadata, want.metadata)
    assert got.warnings == want.warnings
    assert (got.format, got.id_column, got.vector_column) == (
        want.format,
        want.id_column,
        want.vector_column,
    )


def _num(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """float64 values whose float32 rounding matters (17 significant digits in the file)."""
    return rng.standard_normal((n, d))


def _header_file(path: Path, rng: np.random.Generator) -> tuple[Path, np.ndarray]:
    X = _num(rng, N, 6)
    lines = ["id,label,day,note,gap," + ",".join(f"x{j}" for j in range(6))]
    for i in range(N):
        gap = "" if i % 3 == 0 else repr(float(X[i, 0] * 2))
        note = f'"a, {i}"' if i % 7 == 0 else f"n{i}"
        day = f"2020-01-{1 + i % 28:02d}"
        values = ",".join(repr(float(v)) for v in X[i])
        lines.append(f"r{i:04d},{i % 10},{day},{note},{gap},{values}")
    path.write_text("\n".join(lines) + "\n")
    return path, X


# -- the streamed read is the whole-file read ---------------------------------------------------


@pytest.mark.parametrize(
    "choices",
    [{}, {"id_column": "id"}, {"vector_columns": ["label", "x0", "x5"]}],
    ids=["default", "id_column", "vector_columns"],
)
def test_header_csv_streamed_equals_whole_file(tmp_path, monkeypatch, choices):
    path, X = _header_file(tmp_path / "v.csv", np.random.default_rng(0))
    got, blocks = _streamed(monkeypatch, lambda: read_dataset(path, **choices))
    want = _whole(monkeypatch, lambda: read_dataset(path, **choices))
    assert blocks > 20
    _same(got, want)
    if not choices:
        np.testing.assert_array_equal(got.vectors, X.astype(np.float32))
        assert list(got.metadata.columns) == ["id", "label", "day", "note", "gap"]
        assert got.metadata["day"].iloc[3] == "2020-01-04"  # a date stays its text
        assert got.metadata["note"].iloc[7] == "a, 7"
        assert any("'gap' has empty cells" in w for w in got.warnings)
        assert any("'label' holds whole numbers" in w for w in got.warnings)
    if "vector_columns" in choices:
        np.testing.assert_array_equal(got.vectors[:, 0], np.arange(N) % 10)


def test_inspection_of_a_streamed_csv_is_unchanged(tmp_path, monkeypatch):
    path, _ = _header_file(tmp_path / "v.csv", np.random.default_rng(1))
    got, _ = _streamed(monkeypatch, lambda: inspect_file(path))
    want = _whole(monkeypatch, lambda: inspect_file(path))
    for field in ("format", "n_rows", "dim", "columns", "vector_candidates", "numeric_columns",
                  "id_candidates", "warnings", "default_vector_columns"):  # fmt: skip
        assert getattr(got, field) == getattr(want, field), field
    pd.testing.assert_frame_equal(got.preview, want.preview)
    assert got.default_vector_columns == tuple(f"x{j}" for j in range(6))


def test_headerless_matrix_and_projector_tsv_are_streamed(tmp_path, monkeypatch):
    X = _num(np.random.default_rng(2), N, 5)
    for name, sep in (("v.csv", ","), ("vectors.tsv", "\t")):
        path = tmp_path / name
        path.write_text("".join(sep.join(repr(float(v)) for v in row) + "\n" for row in X))
        got, blocks = _streamed(monkeypatch, lambda p=path: read_dataset(p))
        want = _whole(monkeypatch, lambda p=path: read_dataset(p))
        assert blocks > 20
        _same(got, want)
        np.testing.assert_array_equal(got.vectors, X.astype(np.float32))
    assert got.format == "projector"


def test_headerless_file_with_a_label_column(tmp_path, monkeypatch):
    X = _num(np.random.default_rng(3), N, 4)
    path = tmp_path / "v.csv"
    path.write_text("".join(f"w{i}," + ",".join(map(repr, X[i].tolist())) + "\n" for i in range(N)))
    got, _ = _streamed(monkeypatch, lambda: read_dataset(path, id_column="column_1"))
    want = _whole(monkeypatch, lambda: read_dataset(path, id_column="column_1"))
    _same(got, want)
    assert list(got.ids) == [f"w{i}" for i in range(N)]


def test_pandas_index_column_stays_metadata(tmp_path, monkeypatch):
    X = _num(np.random.default_rng(4), N, 4)
    path = tmp_path / "v.csv"
    pd.DataFrame(X).to_csv(path)  # header ",0,1,2,3"
    got, _ = _streamed(monkeypatch, lambda: read_dataset(path))
    _same(got, _whole(monkeypatch, lambda: read_dataset(path)))
    assert list(got.metadata.columns) == ["index"]
    np.testing.assert_array_equal(got.vectors, X.astype(np.float32))


@pytest.mark.parametrize("style", ["comma", "numpy"])
def test_list_column_is_streamed(tmp_path, monkeypatch, style):
    X = _num(np.random.default_rng(5), N, 4)
    sep = ", " if style == "comma" else " "
    cells = ["[" + sep.join(map(repr, row.tolist())) + "]" for row in X]
    frame = pd.DataFrame({"id": [f"k{i}" for i in range(N)], "embedding": cells, "n": range(N)})
    path = tmp_path / "v.csv"
    frame.to_csv(path, index=False)
    got, blocks = _streamed(monkeypatch, lambda: read_dataset(path, id_column="id"))
    want = _whole(monkeypatch, lambda: read_dataset(path, id_column="id"))
    assert blocks > 20
    _same(got, want)
    np.testing.assert_array_equal(got.vectors, X.astype(np.float32))
    assert got.vector_column == "embedding" and list(got.metadata.columns) == ["id", "n"]


def test_ids_and_metadata_keep_the_file_order(tmp_path, monkeypatch):
    rng = np.random.default_rng(6)
    order = rng.permutation(N)
    X = _num(rng, N, 3)
    tags = [f"t{j}" for j in order]
    path = tmp_path / "v.tsv"
    rows = [f"{j:05d}\t{tag}\t" + "\t".join(map(repr, X[i].tolist())) for i, (j, tag) in
            enumerate(zip(order, tags, strict=True))]  # fmt: skip
    path.write_text("name\ttag\ta\tb\tc\n" + "\n".join(rows) + "\n")
    got, _ = _streamed(monkeypatch, lambda: read_dataset(path, id_column="name"))
    assert list(got.ids) == [f"{j:05d}" for j in order]  # ids keep their text ("00042")
    assert list(got.metadata["tag"]) == tags
    np.testing.assert_array_equal(got.vectors, X.astype(np.float32))


def test_the_stream_counts_one_float32_matrix_not_the_parsed_table(tmp_path, monkeypatch):
    X = _num(np.random.default_rng(7), 2000, 64)
    path = tmp_path / "v.csv"
    path.write_text("".join(",".join(map(repr, row.tolist())) + "\n" for row in X))
    monkeypatch.setattr(delimited, "STREAM_BLOCK", 1 << 16)
    budget = 2000 * 64 * 4 + 400_000  # the matrix, the ids and the blocks
    got, _ = _streamed(monkeypatch, lambda: read_dataset(path, max_read_bytes=budget))
    np.testing.assert_array_equal(got.vectors, X.astype(np.float32))
    with pytest.raises(InvalidInputError, match="too large to read here"):
        _whole(monkeypatch, lambda: read_dataset(path, max_read_bytes=budget))
    # a budget below the matrix: refused (the whole-file read says what is too large)
    with pytest.raises(InvalidInputError, match="too large to read here"):
        read_dataset(path, max_read_bytes=2000 * 64 * 4 - 1)


def test_quoted_cells_over_many_lines_do_not_inflate_the_matrix_booked(tmp_path, monkeypatch):
    # The stream books one row per line; a text cell of 40 lines makes that 40x the records.
    # Over the budget, it leaves the file to the whole-file read, which counts records.
    rng = np.random.default_rng(3)
    X = _num(rng, 400, 64)
    cell = '"' + "\n".join(f"line {i}" for i in range(40)) + '"'
    head = "note," + ",".join(f"x{j}" for j in range(64)) + "\n"
    body = "".join(cell + "," + ",".join(map(repr, r.tolist())) + "\n" for r in X)
    path = tmp_path / "notes.csv"
    path.write_text(head + body)
    monkeypatch.setattr(delimited, "STREAM_BLOCK", 1 << 14)
    lines = body.count("\n")
    assert lines * 64 * 4 > 4 * 400 * 64 * 4  # the per-line bound is well over the records
    budget = 400 * 64 * 4 * 4 + 3 * len(body)  # enough for the records, not for the bound
    got = read_dataset(path, max_read_bytes=budget)
    np.testing.assert_array_equal(got.vectors, X.astype(np.float32))
    assert got.metadata["note"].iloc[0].count("\n") == 39


# -- anything unusual in a later block: the whole-file read decides ----------------------------


def _rows(n: int, d: int, seed: int) -> list[list[str]]:
    X = _num(np.random.default_rng(seed), n, d)
    return [[repr(float(v)) for v in row] for row in X]


def _header_csv(path: Path, edit: Callable[[list[list[str]]], None]) -> Path:
    rows = _rows(N, 3, 8)
    edit(rows)
    path.write_text("x0,x1,x2\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def _headerless_csv(path: Path, edit: Callable[[list[list[str]]], None]) -> Path:
    rows = _rows(N, 3, 9)
    edit(rows)
    path.write_text("".join(",".join(r) + "\n" for r in rows))
    return path


def _list_csv(path: Path, cell: str) -> Path:
    cells = ["[" + ", ".join(r) + "]" for r in _rows(N, 3, 10)]
    cells[BAD] = cell
    path.write_text("label,vector\n" + "".join(f'l{i},"{c}"\n' for i, c in enumerate(cells)))
    return path


def _set(row: int, col: int, value: str) -> Callable[[list[list[str]]], None]:
    def edit(rows: list[list[str]]) -> None:
        rows[row][col] = value

    return edit


def _cut(row: int) -> Callable[[list[list[str]]], None]:
    def edit(rows: list[list[str]]) -> None:
        del rows[row][1:]

    return edit


# (file maker, what the message names). Lines count from 1 with the header: row BAD is line
# BAD + 2 in a file with a header, BAD + 1 without.
FAILING: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "text cell in a float column": (
        lambda p: _header_csv(p, _set(BAD, 1, "oops")),
        ("'x1'", f"line {BAD + 2}", "'oops'"),
    ),
    "ragged row": (lambda p: _header_csv(p, _cut(BAD)), (f"line {BAD + 2} has 1",)),
    "NaN": (lambda p: _header_csv(p, _set(BAD, 2, "nan")), ("NaN", f"line {BAD + 2}", "'x2'")),
    "beyond float32": (
        lambda p: _header_csv(p, _set(BAD, 0, "1e39")),
        ("too large for float32", f"line {BAD + 2}"),
    ),
    "unclosed quote": (lambda p: _header_csv(p, _set(BAD, 0, '"0.5')), ()),
    "headerless empty cell": (
        lambda p: _headerless_csv(p, _set(BAD, 1, "")),
        ("empty cells in column 2", f"line {BAD + 1}"),
    ),
    "headerless text cell": (
        lambda p: _headerless_csv(p, _set(BAD, 1, "abc")),
        (f"line {BAD + 1}, column 2", "'abc'"),
    ),
    "headerless infinity": (
        lambda p: _headerless_csv(p, _set(BAD, 2, "-inf")),
        ("infinite", f"line {BAD + 1}"),
    ),
    "ragged list": (
        lambda p: _list_csv(p, "[1.0, 2.0]"),
        ("different lengths", f"line {BAD + 2}"),
    ),
    "list with a word": (
        lambda p: _list_csv(p, "[1.0, two, 3.0]"),
        ("not numbers", f"line {BAD + 2}"),
    ),
}


@pytest.mark.parametrize("case", list(FAILING))
def test_a_problem_in_a_later_block_gives_the_whole_file_message(tmp_path, monkeypatch, case):
    make, named = FAILING[case]
    path = make(tmp_path / "v.csv")
    with pytest.raises(InvalidInputError) as want:
        _whole(monkeypatch, lambda: read_dataset(path))
    seen = _blocks_filled(monkeypatch)
    with pytest.raises(InvalidInputError) as got:
        read_dataset(path)
    assert len(seen) > 20 and all(seen[:20])  # the stream went past the first blocks
    assert str(got.value) == str(want.value)
    for text in named:
        assert text in str(got.value), (text, str(got.value))


def test_text_that_is_not_utf8_in_a_later_block(tmp_path, monkeypatch):
    rows = [f"n{i},{i / 7!r}\n".encode() for i in range(N)]
    rows[BAD] = b"caf\xe9,0.5\n"
    path = tmp_path / "v.csv"
    path.write_bytes(b"name,x\n" + b"".join(rows))
    with pytest.raises(InvalidInputError) as want:
        _whole(monkeypatch, lambda: read_dataset(path))
    with pytest.raises(InvalidInputError, match=f"line {BAD + 2} is not valid UTF-8") as got:
        read_dataset(path)
    assert str(got.value) == str(want.value)


def _late_gap(rows: list[list[str]]) -> None:
    rows[BAD][1] = ""


def _late_float_label(rows: list[list[str]]) -> None:
    for i, r in enumerate(rows):
        r[0] = str(i % 10)
    rows[BAD][0] = "2.5"


@pytest.mark.parametrize(
    "edit, check",
    [
        (_late_gap, lambda p: any("'x1' has empty cells" in w for w in p.warnings)),
        (_late_float_label, lambda p: p.vectors.shape == (N, 3)),
    ],
    ids=["empty cell later: kept as metadata", "whole number column later holds a float"],
)
def test_a_later_block_that_changes_the_choice_reads_as_the_whole_file(
    tmp_path, monkeypatch, edit, check
):
    path = _header_csv(tmp_path / "v.csv", edit)
    want = _whole(monkeypatch, lambda: read_dataset(path))
    got = read_dataset(path)
    _same(got, want)
    assert check(got)


def test_a_column_of_lists_only_at_first_is_not_the_vector(tmp_path, monkeypatch):
    rows = _rows(N, 2, 11)
    tags = ["[a]" if i < BAD else "plain" for i in range(N)]
    path = tmp_path / "v.csv"
    path.write_text("tag,x0,x1\n" + "".join(f"{t},{r[0]},{r[1]}\n" for t, r in
                                            zip(tags, rows, strict=True)))  # fmt: skip
    want = _whole(monkeypatch, lambda: read_dataset(path))
    got = read_dataset(path)
    _same(got, want)
    assert got.vector_column is None and list(got.metadata["tag"]) == tags
