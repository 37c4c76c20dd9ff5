"""How a feed's bytes are read as text: the charset and the DTD entities (parse workers).

`_fix_charset` chooses the charset as mature readers do, before feedparser sees the body: a
specific HTTP charset that fits, else the document's XML declaration if it fits, else UTF-8
(repaired if nearly so), else a detected non-Latin legacy encoding (charset_normalizer, optional,
imported when first needed), else windows-1252. `_safe_replace_doctype` replaces feedparser's
DOCTYPE step (watcher.reader.parse installs it): expat reads the prolog and only small
internal entities within an expansion budget are kept. Imports only the standard library.
"""

from __future__ import annotations

import codecs
import pyexpat
import re
import unicodedata

# --- character sets ---

_LATIN_DEFAULTS = frozenset({"iso8859-1", "ascii", "cp1252"})  # what servers say by default
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._:-]{1,40})["']""")
_CHARSET_PARAM = re.compile(r""";\s*charset\s*=\s*["']?([^"';\s]*)["']?""", re.IGNORECASE)
_DETECT_BYTES = 64 * 1024


def _fits(body: bytes, label: str | None) -> str | None:
    """The name of the codec `label` names, if there is one and it decodes the body."""
    try:
        codec = codecs.lookup((label or "").strip()).name
        body.decode(codec)
    except (LookupError, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    return codec


def _fix_charset(body: bytes, content_type: str | None) -> tuple[bytes, str | None]:
    """The body and a Content-Type naming the charset to read it with.

    feedparser alone reads an ISO-8859-1 server default over a correct XML declaration,
    undeclared UTF-8 as ISO-8859-1, and UTF-8 with one bad byte as cp1252 (all mojibake).
    Here: a specific HTTP charset that fits, else the document's declaration if it fits,
    else UTF-8 (repaired if nearly so), else a detected non-Latin encoding, else cp1252.
    """
    if body[:2] in (b"\xff\xfe", b"\xfe\xff") or body[:3] == b"\xef\xbb\xbf" or (
            b"\x00" in body[:4]):
        return body, content_type  # BOM or UTF-16/32: feedparser reads those right
    found = _CHARSET_PARAM.search(content_type or "")
    http = _fits(body, found.group(1)) if found else None
    declared = _XML_ENCODING.match(body[:512])
    decl = _fits(body, declared.group(1).decode("ascii")) if declared else None
    if http and http not in _LATIN_DEFAULTS:
        codec = http  # an explicit, specific charset that fits
    elif decl:
        codec = decl
    elif body.isascii() or _fits(body, "utf-8"):
        codec = "utf-8"
    elif (repaired := _repair_utf8(body)) is not None:
        body, codec = repaired, "utf-8"
    else:
        codec = _detect_non_latin(body) or "iso8859-1"
    if codec == "iso8859-1" and _fits(body, "cp1252"):
        codec = "cp1252"  # as browsers do: 0x80-0x9F are quotes and dashes, not controls
    mime = _CHARSET_PARAM.sub("", content_type or "").strip() or "application/xml"
    return body, f"{mime}; charset={codec}"


def _repair_utf8(body: bytes) -> bytes | None:
    """UTF-8 with a few broken sequences, with U+FFFD in their place; None if not UTF-8."""
    text = body.decode("utf-8", "replace")
    bad = text.count("\ufffd") - body.count(b"\xef\xbf\xbd")
    multibyte = sum(1 for char in text if ord(char) > 0x7F) - bad
    return text.encode("utf-8") if multibyte >= bad else None


def _detect_non_latin(body: bytes) -> str | None:
    """An undeclared legacy encoding of a non-Latin script (Cyrillic, CJK, Hebrew...).

    Latin-script guesses are ignored: Western encodings cannot be told apart reliably, and
    windows-1252 is the better bet for them.
    """
    try:
        import charset_normalizer
    except ImportError:  # optional: without it, such feeds read as windows-1252
        return None
    best = charset_normalizer.from_bytes(body[:_DETECT_BYTES]).best()
    if best is None or best.encoding in ("utf_8", "ascii"):
        return None
    letters = [c for c in str(best) if ord(c) > 0x7F and c.isalpha()]
    latin = sum(1 for c in letters if unicodedata.name(c, "").startswith("LATIN"))
    return best.encoding if len(letters) >= 8 and latin * 2 < len(letters) else None


# --- DTD entities ---

_ENTITY_BUDGET = 1024 * 1024  # bytes all entity references in a document may expand to
_ELEMENT = re.compile(rb"<[A-Za-z_]")


class _RootReached(Exception):
    pass


def _stop(*_: object) -> None:
    raise _RootReached


def _safe_replace_doctype(data: bytes) -> tuple[str | None, bytes, dict[str, str]]:
    """feedparser's DOCTYPE step (strip the DOCTYPE, keep "safe" entities), hardened.

    feedparser's regular expressions miss declarations on one line (left for expat to
    expand) and keep text of any length (a 100 KB entity used 1000 times made a 100 MB
    title). Here expat reads the prolog; only small internal entities within an expansion
    budget are kept. A prolog expat cannot read is left as is: the strict parser fails on
    it too, and the lenient parser gets no entities.
    """
    start, root = data.find(b"<!DOCTYPE"), _ELEMENT.search(data)
    if start < 0 or (root is not None and root.start() < start):  # none, or in the content
        return None, data, {}
    version = "rss091n" if b"netscape" in data[start:data.find(b">", start)].lower() else None
    declared: list[tuple[str, str | None, bool]] = []
    span: list[int] = []
    parser = pyexpat.ParserCreate()
    parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_UNLESS_STANDALONE)
    parser.StartDoctypeDeclHandler = lambda *_: span.append(parser.CurrentByteIndex)
    parser.EndDoctypeDeclHandler = lambda: span.append(parser.CurrentByteIndex)
    parser.EntityDeclHandler = lambda name, is_param, value, *_: declared.append(
        (name, value, bool(is_param)))
    parser.StartElementHandler = _stop
    try:
        parser.Parse(data, True)
    except _RootReached:
        pass
    except (pyexpat.ExpatError, ValueError, RecursionError):
        return version, data, {}
    begin = data.rfind(b"<!DOCTYPE", 0, span[0] + 1) if len(span) == 2 else -1
    end = data.find(b">", span[-1]) + 1 if span else 0
    if begin < 0 or end <= 0:
        return version, data, {}
    safe: dict[str, str] = {}
    budget = _ENTITY_BUDGET
    for name, value, is_param in declared:
        if is_param or value is None or len(value) > 200 or re.search(r'[&<%"]', value):
            continue  # a parameter, external, long or nested entity
        cost = data.count(f"&{name};".encode()) * len(value.encode())
        if cost <= budget and name not in safe:
            budget, safe[name] = budget - cost, value
    doctype = "".join(f'<!ENTITY {k} "{v}">\n' for k, v in safe.items())
    replacement = f"<!DOCTYPE feed [\n{doctype}]>".encode() if safe else b""
    return version, data[:begin] + replacement + data[end:], safe
