"""Open and click tracking in a rendered email's HTML: links wrapped, a pixel added. Pure: the caller signs the links.

The HTML is read with the standard library's `html.parser`, which tolerates what email HTML is (tables, unclosed
tags, attributes without quotes), and only the start tags of `<a>` elements it finds are rewritten, in place:
every other byte of the document stays as it was. A regex over the text would also match `href=` inside comments,
`<style>` or attribute values, and miss unquoted or upper-case ones.

What is never wrapped: links that are not http or https (`mailto:`, `tel:`, `#top`), unsubscribe links (a path with
`unsubscribe` in it: one must work without Herald's redirect, and mailbox providers distrust a wrapped one), links
marked `data-herald-notrack`, and links the caller's `click` declines (returns None for: its own links).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html import escape
from html.parser import HTMLParser
from urllib.parse import urlsplit

NO_TRACK_ATTRIBUTE = "data-herald-notrack"
NEWLINE = re.compile("\n")
TRACKED_SCHEMES = frozenset({"http", "https"})


def trackable(url: str) -> bool:
    """Whether `url` may go behind a click link: http or https with a host, and nothing a header or a browser would
    read differently (whitespace, control characters), so the redirect's `Location` is exactly this URL."""
    if not url or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced `[` in the host
        return False
    return parts.scheme.lower() in TRACKED_SCHEMES and bool(parts.hostname)


def is_unsubscribe(url: str) -> bool:
    try:
        return "unsubscribe" in urlsplit(url).path.lower()
    except ValueError:
        return False


def pixel_tag(url: str) -> str:
    """A 1x1 image that shows nothing whether or not it loads."""
    return (f'<img src="{escape(url, quote=True)}" width="1" height="1" alt="" '
            'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0;">')


class _Finder(HTMLParser):
    """Collects where the `<a>` start tags and the last `</body>` and `</html>` are, as offsets into the text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text = text
        self.line_starts = [0, *(match.end() for match in NEWLINE.finditer(text))]
        self.anchors: list[tuple[int, str, list[tuple[str, str | None]]]] = []
        self.body_end: int | None = None
        self.html_end: int | None = None

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raw = self.get_starttag_text()
        start = self._offset()
        if tag == "a" and raw and self.text.startswith(raw, start):
            self.anchors.append((start, raw, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)  # `<a href=… />`: still a link to browsers

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self._offset()
        elif tag == "html":
            self.html_end = self._offset()


def _tag(raw: str, attrs: list[tuple[str, str | None]], href: str) -> str:
    """The `<a>` start tag with its (first) href replaced, its other attributes as they were parsed."""
    out, replaced = [], False
    for name, value in attrs:
        if name == "href" and not replaced:
            value, replaced = href, True
        out.append(name if value is None else f'{name}="{escape(value, quote=True)}"')
    closing = "/>" if raw.rstrip().endswith("/>") else ">"
    return "<a " + " ".join(out) + closing


def track_html(html: str, *, click: Callable[[str], str | None] | None = None, pixel: str | None = None) -> str:
    """`html` with each trackable link's href replaced by `click(href)` (None from it: left alone) and, when `pixel`
    is given, one `pixel_tag(pixel)` just before the last `</body>` (else `</html>`, else at the end).

    `click` gets each href as a browser would follow it (entities decoded: `&amp;` is `&`); what it returns is
    escaped into the attribute. Without `click`, no link changes."""
    finder = _Finder(html)
    finder.feed(html)
    finder.close()
    edits: list[tuple[int, int, str]] = []
    if click is not None:
        for start, raw, attrs in finder.anchors:
            names = {name for name, _ in attrs}
            href = next((value for name, value in attrs if name == "href"), None)
            if (href is None or NO_TRACK_ATTRIBUTE in names or not trackable(href.strip())
                    or is_unsubscribe(href.strip())):
                continue
            wrapped = click(href.strip())
            if wrapped is not None:
                edits.append((start, start + len(raw), _tag(raw, attrs, wrapped)))
    if pixel is not None:
        at = next((end for end in (finder.body_end, finder.html_end) if end is not None), len(html))
        edits.append((at, at, pixel_tag(pixel)))
    for start, end, text in sorted(edits, reverse=True):  # from the end, so earlier offsets stay valid
        html = html[:start] + text + html[end:]
    return html
