"""Markup formats: the title of a markdown file, and HTML decoded and rendered to markdown-ish text.

Both need only the standard library (``re``, ``html.parser``); the HTML reader keeps the visible
text and renders headings, list items and table rows the way markdown writes them, so that the
chunker can split it by its headings.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from html.parser import HTMLParser

from ...errors import DocumentError
from .common import Document, decode_utf8, sections

# --- markdown ---------------------------------------------------------------------------------

_FENCE = re.compile(r" {0,3}(```|~~~)")
_H1 = re.compile(r" {0,3}#[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*")


def markdown_title(text: str) -> str | None:
    """The first ``# `` heading, outside the front matter and code fences."""
    lines = text.split("\n")
    start = 0
    if lines[0].rstrip() == "---":
        start = next((i + 1 for i in range(1, len(lines)) if lines[i].rstrip() in ("---", "...")), 0)
    fence = None
    for line in lines[start:]:
        if match := _FENCE.match(line):
            fence = match[1] if fence is None else (None if match[1] == fence else fence)
        elif fence is None and (match := _H1.fullmatch(line)) and match[1]:
            return match[1]
    return None


# --- HTML -------------------------------------------------------------------------------------

_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.IGNORECASE)
# labels browsers read otherwise than Python (WHATWG Encoding): latin-1 means windows-1252, and a
# UTF-16 label in an ASCII-compatible page means UTF-8
_BROWSER_CODECS = {"iso8859-1": "cp1252", "ascii": "cp1252", "utf-16": "utf-8", "utf-16-le": "utf-8", "utf-16-be": "utf-8"}  # fmt: skip
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def decode_html(data: bytes) -> str:
    """Decode by BOM, else by the charset a ``<meta>`` in the first 4 KiB declares, else as UTF-8."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(codec, errors="replace")
    if match := _META_CHARSET.search(data[:4096]):
        with contextlib.suppress(LookupError):  # not a text encoding Python knows: try UTF-8
            codec = codecs.lookup(match[1].decode("ascii")).name
            return data.decode(_BROWSER_CODECS.get(codec, codec), errors="replace")
    return decode_utf8(data, "no charset declared and not UTF-8")


_HIDDEN_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "head"})
_VOID_TAGS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"})  # fmt: skip
_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr",
    "html", "legend", "li", "main", "menu", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "tfoot",
    "thead", "tr", "ul",
})  # fmt: skip
_HEADINGS = {f"h{n}": "#" * n + " " for n in range(1, 7)}


class _HTMLText(HTMLParser):
    """Collects the visible text of a page as markdown-ish paragraphs (see :func:`read_html`)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self.first_heading: str | None = None
        self._title: list[str] | None = None  # text of the <title> being read
        self._heading: list[str] | None = None  # text of the first heading, while being read
        self._skip: list[str] = []  # open elements whose content is not shown
        self._pre = 0
        self._in_cell = False
        self._cells = 0
        self._break = 0  # newlines owed before the next text
        self._space = False  # a space owed before the next text
        self._prefix = ""  # markup owed before the next text ("## ", "- ", "| ")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body" and self._skip[:1] == ["head"]:
            self._skip.clear()  # a page that never closes its <head>
        hidden = tag in _HIDDEN_TAGS or any(name == "hidden" for name, _ in attrs) or self._skip[-1:] == [tag]
        if hidden and tag not in _VOID_TAGS:
            self._skip.append(tag)
        if tag == "title" and self._skip in ([], ["head"]):
            self._title = []
        if self._skip:
            return
        if tag in ("tr", "table"):
            self._in_cell = False  # also when the last row left its cells open
        if tag in _BLOCK_TAGS:
            self._block()
        if tag == "br":
            self._break = min(self._break + 1, 2)
        elif tag == "pre":
            self._pre += 1
        elif tag == "li":
            self._prefix = "- "
        elif tag == "tr":
            self._cells = 0
        elif tag in ("td", "th"):
            self._in_cell, self._cells = True, self._cells + 1
            if self._cells > 1:
                self._space, self._prefix = True, "| "
        elif tag in _HEADINGS:
            self._prefix = _HEADINGS[tag]
            if self.first_heading is None:
                self._heading = []

    def handle_endtag(self, tag: str) -> None:
        if tag in self._skip:
            del self._skip[len(self._skip) - 1 - self._skip[::-1].index(tag) :]
            return
        if tag == "title" and self._title is not None:
            self.title = self.title or " ".join("".join(self._title).split())
            self._title = None
        if self._skip:
            return
        if tag in ("td", "th", "tr", "table"):
            self._in_cell = False
        if tag == "pre":
            self._pre = max(self._pre - 1, 0)
        elif tag in _HEADINGS and self._heading is not None:
            self.first_heading, self._heading = " ".join("".join(self._heading).split()) or None, None
        if tag in _BLOCK_TAGS:
            self._block(end=True)

    def handle_data(self, data: str) -> None:
        if self._title is not None:
            self._title.append(data)
        if self._skip or self._title is not None:
            return
        if self._heading is not None:
            self._heading.append(data)
        if self._pre:
            self._emit(data)
            return
        words = data.split()
        if not words:
            self._space = self._space or bool(data)
            return
        self._space = self._space or data[0].isspace()
        self._emit(" ".join(words))
        self._space = data[-1].isspace()

    def _block(self, *, end: bool = False) -> None:
        if self._in_cell:  # blocks inside a table cell stay on the row's line
            self._space = True
        else:  # a block's end drops the markup of an empty heading or list item
            self._break, self._space, self._prefix = 2, False, "" if end else self._prefix

    def _emit(self, text: str) -> None:
        if self.parts and self._break:
            self.parts.append("\n" * self._break)
        elif self.parts and self._space:
            self.parts.append(" ")
        self.parts.append(self._prefix + text)
        self._break, self._space, self._prefix = 0, False, ""


def read_html(html: str) -> Document:
    """Visible text only, as markdown: ``#`` headings, ``- `` list items, ``a | b`` table rows, one blank
    line between blocks, ``<pre>`` kept as is. The ``<title>`` is the document's title and, unless the
    first heading repeats it, the text's first heading."""
    parser = _HTMLText()
    try:
        parser.feed(html)
        parser.close()
    except AssertionError as err:  # html.parser's reply to some broken markup, e.g. "<![bogus["
        raise DocumentError(f"malformed HTML: {err}") from err
    text = re.sub(r"\n(?:[ \t]*\n){2,}", "\n\n", "".join(parser.parts)).strip()
    title = parser.title or None
    if title and parser.first_heading != title:
        text = f"# {title}\n\n{text}".strip()
    return Document("html", sections(text, markdown=True), title=title)
