"""embscope: explore embedding spaces in the browser, or from Python.

The folders ``core/`` (numpy and DuckDB, no UI), ``app/`` (the Streamlit frame and the CLI)
and ``pages/`` install as ``embscope.core`` and ``embscope.app``.
"""

from __future__ import annotations

__version__ = "0.1.0"
