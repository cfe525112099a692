"""embscope: explore embedding spaces in the browser, or from Python.

::

    import embscope

    db = embscope.open("my.duckdb")
    ds = db.ingest("vectors.parquet", name="mine", id_column="id")
    ds.neighbours(row=3, k=10)   # the same dict as `embscope neighbours mine --row 3 --json`

See :mod:`embscope.core.api`. The folders ``core/`` (numpy and DuckDB, no UI), ``app/`` (the
Streamlit frame and the CLI) and ``pages/`` of the checkout install as ``embscope.core`` and
``embscope.app``.
"""

from __future__ import annotations

from embscope.core.api import Database, Dataset, Search, open

__all__ = ["Database", "Dataset", "Search", "__version__", "open"]
__version__ = "0.1.0"
