"""User text shown on a page: escaped so it reads literally (no markup, no HTML)."""

from __future__ import annotations

import re

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")


def md_escape(text: object) -> str:
    """Escape text for Streamlit markdown so user text shows literally (no markup, no HTML)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))
