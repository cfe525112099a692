"""Share links: each page's view lives in the URL's query parameters.

A link pasted into a chat opens the same view. At the start of every full run
:func:`begin_run` (called by the sidebar dataset picker, which runs before any page) notes
whether the address holds parameters this session did not write itself: a link just opened,
or the browser's back button. Only then does a page read them (:func:`link`) and set its
widgets; on every run the page writes its current state back (:func:`write`), so the
address bar is always the shareable link and nothing is applied twice (no rerun loops:
writing the URL does not rerun the script).

Values in a link are untrusted text. Each is parsed against what the page accepts (an
option list, an integer range, a finite number); a bad one is ignored with a toast, never
an exception, and never reaches HTML, SQL or the file system. ``token`` (the team access
token) is never read as view state nor written into a link.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import streamlit as st

from embscope.app import state
from embscope.app.text import md_escape

LAST_KEY = "share.last"
INCOMING_KEY = "share.incoming"
LAST_PAGE_KEY = "share.last_page"
# Parameters that are never view state: the access token and Streamlit's own embed options.
NEVER_SHARED = frozenset({"token", "embed", "embed_options"})
MAX_PARAMS = 64
MAX_VALUE_CHARS = 2_000
# More selected items than this are not put in a link (a lasso of thousands of points
# would make an address no chat accepts).
MAX_LINK_ITEMS = 50
FINGERPRINT_CHARS = 12  # a stored result is named in a link by its fingerprint's start
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

Params = dict[str, list[str]]


def _short(value: object, limit: int = 40) -> str:
    """A value from a link as text, shortened to ``limit`` characters."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(value: object, limit: int = 40) -> str:
    """A value from a link as safe markdown text (escaped, shortened)."""
    return md_escape(_short(value, limit))


def current_params() -> Params:
    """The URL's query parameters (every value of each), without the never-shared ones."""
    out: Params = {}
    for key in list(st.query_params.keys())[:MAX_PARAMS]:
        if key.lower() in NEVER_SHARED:
            continue
        out[key] = [str(v) for v in st.query_params.get_all(key)]
    return out


def begin_run() -> None:
    """Note, once at the start of a full run, whether the URL holds a link to apply."""
    params = current_params()
    if state.get(LAST_KEY) == params:
        state.put(INCOMING_KEY, None)  # our own link: nothing to apply
    else:
        state.put(INCOMING_KEY, params)
        state.put(LAST_KEY, params)


class Link:
    """The parameters of a link to apply on this run (empty when there is none), read typed.

    Every reader returns None for a missing or bad value; a bad one is reported once with
    a toast saying which parameter was ignored and why.
    """

    def __init__(
        self, params: Mapping[str, Sequence[str]] | None = None, *, remembered: bool = False
    ) -> None:
        self._params = {k: list(v) for k, v in (params or {}).items()}
        self.ignored: list[str] = []
        # True: the page's own last view, restored on coming back to it (not a shared link)
        self.remembered = remembered

    def __bool__(self) -> bool:
        return bool(self._params)

    def __contains__(self, name: str) -> bool:
        return name in self._params

    def names(self) -> list[str]:
        """The parameter names of the link, in its order."""
        return list(self._params)

    def ignore(self, name: str, value: object, why: str) -> None:
        """Tell the user a link parameter was not used (as a toast; the page goes on).

        ``why`` is plain text, escaped here: it often quotes the value or a dataset name
        (an error message, the options), so callers pass it as it is, never pre-escaped.
        """
        self.ignored.append(name)
        st.toast(
            f"Link: ignored {_shown(name, 30)}={_shown(value)}: {md_escape(why)}",
            icon=":material/link_off:",
        )

    def raw(self, name: str) -> str | None:
        """The last value given for ``name`` (None when absent or absurdly long)."""
        values = self._params.get(name)
        if not values:
            return None
        value = values[-1]
        if len(value) > MAX_VALUE_CHARS:
            self.ignore(name, value, f"longer than {MAX_VALUE_CHARS:,} characters")
            return None
        return value

    def text(self, name: str, *, max_chars: int = 500) -> str | None:
        """A non-empty text, stripped, at most ``max_chars`` long."""
        value = self.raw(name)
        if value is None or not value.strip():
            return None
        if len(value) > max_chars:
            self.ignore(name, value, f"longer than {max_chars:,} characters")
            return None
        return value.strip()

    def choice(self, name: str, options: Iterable[Any]) -> Any | None:
        """The option whose text is the value (options are compared as strings)."""
        value = self.raw(name)
        if value is None:
            return None
        options = list(options)
        for option in options:
            if str(option) == value:
                return option
        shown = ", ".join(str(o) for o in options[:8]) + (", …" if len(options) > 8 else "")
        self.ignore(name, value, f"not one of {_short(shown, 120)}" if options else "no options")
        return None

    def integer(self, name: str, low: int, high: int) -> int | None:
        """A whole number in ``[low, high]``."""
        value = self.raw(name)
        if value is None:
            return None
        if not _INTEGER.fullmatch(value.strip()):
            self.ignore(name, value, "not a whole number")
            return None
        number = int(value.strip())
        if not low <= number <= high:
            self.ignore(name, value, f"not between {low:,} and {high:,}")
            return None
        return number

    def number(self, name: str, low: float, high: float) -> float | None:
        """A finite number in ``[low, high]``."""
        value = self.raw(name)
        if value is None:
            return None
        text = value.strip()
        if not _NUMBER.fullmatch(text) or not math.isfinite(float(text)):
            self.ignore(name, value, "not a number")
            return None
        number = float(text)
        if not low <= number <= high:
            self.ignore(name, value, f"not between {low:g} and {high:g}")
            return None
        return number

    def flag(self, name: str) -> bool | None:
        """On or off: 1/true/yes/on or 0/false/no/off."""
        value = self.raw(name)
        if value is None:
            return None
        if value.strip().lower() in _TRUE:
            return True
        if value.strip().lower() in _FALSE:
            return False
        self.ignore(name, value, "not 1 or 0")
        return None

    def values(
        self,
        name: str,
        *,
        options: Iterable[Any] | None = None,
        max_count: int = MAX_LINK_ITEMS,
        sep: str | None = None,
    ) -> list[Any] | None:
        """Several values: the parameter repeated (``?x=a&x=b``), or split on ``sep``.

        An empty value (``?x=``) is an empty list. With ``options``, values that are not
        among them are ignored (with a toast) and the others kept, in the link's order.
        """
        given = self._params.get(name)
        if given is None:
            return None
        if sum(len(v) for v in given) > MAX_VALUE_CHARS * 4:
            self.ignore(name, given[0], "too long")
            return None
        items = [p for v in given for p in (v.split(sep) if sep else [v])]
        items = [i.strip() for i in items if i.strip()]
        if len(items) > max_count:
            self.ignore(name, ",".join(items), f"more than {max_count} values")
            return None
        if options is None:
            return list(dict.fromkeys(items))
        by_text = {str(o): o for o in options}
        kept = []
        for item in dict.fromkeys(items):
            if item in by_text:
                kept.append(by_text[item])
            else:
                self.ignore(name, item, "not one of the choices")
        return kept

    def fingerprint(self, name: str, fingerprints: Iterable[str]) -> str | None:
        """The one fingerprint among ``fingerprints`` that starts with the value."""
        value = self.raw(name)
        if value is None:
            return None
        prefix = value.strip().lower()
        found = [f for f in fingerprints if prefix and f.startswith(prefix)]
        if len(found) != 1 or len(prefix) < 6:
            self.ignore(name, value, "no stored result has this fingerprint")
            return None
        return found[0]


def link(page: str | None = None) -> Link:
    """The link to apply on this run: the URL's parameters if this session has not seen
    them yet, else an empty :class:`Link`.

    Arriving on ``page`` from another page without a link restores the view the page last
    wrote in this session, when it was of the current dataset: going to the Neighbours page
    and back keeps the Projections page as it was.
    """
    incoming = state.get(INCOMING_KEY)
    if incoming:
        return Link(incoming)
    if page is None or state.get(LAST_PAGE_KEY) == page:
        return Link()
    remembered = state.get(f"share.page.{page}")
    current = state.selected_dataset_id()
    if remembered and current is not None and remembered.get("dataset") == [str(current)]:
        return Link(remembered, remembered=True)
    return Link()


def short(fingerprint: str) -> str:
    """How a link names a stored result."""
    return fingerprint[:FINGERPRINT_CHARS]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return format(value, ".10g")
    return str(value)


def write(page: str, params: Mapping[str, Any]) -> None:
    """Make the URL the link to the current view of ``page``: the current dataset, then
    ``params`` (remembered as the page's last view, see :func:`link`).

    Values may be text, numbers, booleans or lists (a repeated parameter; an empty list
    is written as an empty value); None leaves a parameter out. The URL is only changed
    when it differs, and what is written is remembered so it is not applied as a link.
    """
    wanted: Params = {}
    dataset_id = state.selected_dataset_id()
    if dataset_id is not None:
        wanted["dataset"] = [str(dataset_id)]
    for key, value in params.items():
        if value is None or key.lower() in NEVER_SHARED:
            continue
        if isinstance(value, (list, tuple)):
            wanted[key] = [_text(v) for v in value] or [""]
        else:
            wanted[key] = [_text(value)]
    token_shown = any(k.lower() == "token" for k in st.query_params.keys())
    if token_shown or current_params() != wanted:
        st.query_params.from_dict({k: v[0] if len(v) == 1 else v for k, v in wanted.items()})
    state.put(LAST_KEY, wanted)
    state.put(f"share.page.{page}", wanted)
    state.put(LAST_PAGE_KEY, page)


# The Copy link button. Streamlit has no clipboard API: this is our own static markup and
# script (no value from a user or a link is ever put in it), run by st.html in the page
# itself (not an iframe), so it reads the address bar. navigator.clipboard needs a secure
# context (https, or a loopback address); on a plain-http team server the fallback is the
# older execCommand("copy"), and when even that is refused the link is shown selected for
# the user to copy. A `token` parameter is always removed from the copied link.
COPY_LINK_HTML = """
<style>
.embscope-share{position:relative;display:flex;align-items:center;min-height:2.5rem;
  width:fit-content;margin-left:auto}
.embscope-share button{font:inherit;font-size:.875rem;line-height:1.6;padding:.25rem .75rem;
  border-radius:.5rem;border:1px solid rgba(49,51,63,.2);background:transparent;color:inherit;
  cursor:pointer;white-space:nowrap}
.embscope-share button:hover{border-color:#ff4b4b;color:#ff4b4b}
.embscope-share button:focus-visible{outline:2px solid #ff4b4b;outline-offset:1px}
.embscope-share .embscope-share-status{position:absolute;right:100%;margin-right:.5rem;
  white-space:nowrap;font-size:.8rem;opacity:.75}
.embscope-share input{position:absolute;top:100%;right:0;z-index:10;margin-top:.25rem;
  width:min(36rem,80vw);font:inherit;font-size:.8rem;padding:.2rem .4rem}
</style>
<div class="embscope-share">
  <span class="embscope-share-status" role="status" aria-live="polite"></span>
  <button type="button" class="embscope-copy-link"
    title="Copy a link to this view: dataset, method, settings, colour and selection">
    Copy link</button>
</div>
<script>
(function () {
  function shareLink() {
    var url = new URL(window.location.href);
    var drop = [];
    url.searchParams.forEach(function (value, key) {
      if (key.toLowerCase() === "token") { drop.push(key); }
    });
    drop.forEach(function (key) { url.searchParams.delete(key); });
    url.hash = "";
    return url.toString();
  }
  function legacyCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }
  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return legacyCopy(text); });
    }
    return legacyCopy(text);
  }
  document.querySelectorAll("button.embscope-copy-link:not([data-bound])").forEach(
    function (button) {
      button.setAttribute("data-bound", "1");
      var box = button.parentNode;
      var status = box.querySelector(".embscope-share-status");
      button.addEventListener("click", function () {
        var text = shareLink();
        copy(text).then(function () {
          var field = box.querySelector("input");
          if (field) { field.remove(); }
          status.textContent = "Link copied";
          setTimeout(function () { status.textContent = ""; }, 3000);
        }, function () {
          status.textContent = "Copy this link:";
          var field = box.querySelector("input") || document.createElement("input");
          field.readOnly = true;
          field.value = text;
          box.appendChild(field);
          field.select();
        });
      });
    });
})();
</script>
"""


def copy_link_button() -> None:
    """A button that copies the address of this view (the URL :func:`write` keeps current)."""
    st.html(COPY_LINK_HTML, unsafe_allow_javascript=True)
