"""Small HTTP syntax helpers shared by the protocol checks: tokens, media types, percent-decoding,
JSON well-formedness, charsets, and masking of hostile values for evidence.

Pure functions over str/bytes; the ones called per request with repeating inputs (media types,
charsets) are memoized with bounded caches.
"""

from __future__ import annotations

import codecs
import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson

# RFC 9110 section 5.6.2 token.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def mask(value: str, limit: int = 48) -> str:
    """A short, printable rendering of a hostile value for operators (control characters escaped)."""
    out = value[:limit].encode("unicode_escape", "backslashreplace").decode("ascii")
    if len(out) > limit or len(value) > limit:
        return out[:limit] + "..."
    return out


def percent_decode(value: str, rounds: int = 3) -> str:
    """Percent-decode repeatedly (double encoding %250d hides CR from a single-decoding filter)."""
    for _ in range(rounds):
        if "%" not in value:
            break
        decoded = unquote(value, errors="surrogateescape")
        if decoded == value:
            break
        value = decoded
    return value


def is_token(s: str) -> bool:
    return _TOKEN_RE.fullmatch(s) is not None


@dataclass(frozen=True, slots=True)
class MediaType:
    type: str  # "application/json", lowercased
    params: dict[str, str]
    valid: bool
    charsets: int = 0


@functools.lru_cache(maxsize=512)  # clients send a handful of distinct Content-Types
def parse_media_type(value: str) -> MediaType:
    """A lenient RFC 9110 §8.3.1 media-type parser that reports whether the value was well formed."""
    head, _, rest = value.partition(";")
    mtype = head.strip().lower()
    t, slash, sub = mtype.partition("/")
    valid = bool(slash) and is_token(t) and is_token(sub)
    params: dict[str, str] = {}
    charsets = 0
    while rest:
        rest = rest.lstrip(" \t;")
        if not rest:
            break
        name, eq, rest = rest.partition("=")
        name = name.strip().lower()
        if not eq or not is_token(name):
            valid = False
            rest = rest.partition(";")[2]
            continue
        rest = rest.lstrip(" \t")
        if rest.startswith('"'):
            end = rest.find('"', 1)
            while end > 0 and rest[end - 1] == "\\":
                end = rest.find('"', end + 1)
            if end < 0:
                valid, val, rest = False, rest[1:], ""
            else:
                val, rest = rest[1:end], rest[end + 1 :]
                if rest.strip(" \t") and not rest.lstrip(" \t").startswith(";"):
                    valid = False
                rest = rest.partition(";")[2]
        else:
            val, _, rest = rest.partition(";")
            val = val.strip(" \t")
            if not is_token(val):
                valid = False
        if name == "charset":
            charsets += 1
        params[name] = val
    return MediaType(mtype, params, valid, charsets)


def is_json_type(mtype: str) -> bool:
    return mtype == "application/json" or mtype.endswith("+json") or mtype == "text/json"


def is_xml_type(mtype: str) -> bool:
    return mtype in ("application/xml", "text/xml") or mtype.endswith("+xml")


_NOT_JSON = object()


def parse_json(body: bytes, charset: str = "utf-8") -> Any:
    """The parsed document, or `NOT_JSON` when the bytes are not JSON.

    Lenient where real producers are odd: a UTF-8 BOM, UTF-16 with its charset, NaN/Infinity
    (Python's json writes them), JSON lines sent as application/json (bulk APIs; a list is
    returned), whitespace only (None).
    """
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    if not body.strip():
        return None  # an empty document: nothing to mismatch
    if charset.startswith("utf-16") or (charset not in ("utf-8", "utf8") and not body.isascii()):
        # UTF-16, or a legacy charset the client declared (latin-1 JSON from old producers): read
        # the text in it, as the API would
        try:
            body = body.decode(charset).encode()
        except (UnicodeDecodeError, LookupError):
            return _NOT_JSON
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return _NOT_JSON
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2:
        return _NOT_JSON
    try:
        return [orjson.loads(ln) for ln in lines]
    except orjson.JSONDecodeError:
        return _NOT_JSON


NOT_JSON: Any = _NOT_JSON


def json_ok(body: bytes, charset: str) -> bool:
    """Whether `body` is JSON (see `parse_json` for what is accepted)."""
    return parse_json(body, charset) is not _NOT_JSON


def json_strings(doc: Any, budget: int = 10_000) -> Iterator[tuple[str, str]]:
    """(key, string) for every string value and key in a parsed JSON document, iteratively (no
    recursion on hostile nesting) and at most `budget` nodes."""
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack and budget > 0:
        budget -= 1
        key, node = stack.pop()
        if isinstance(node, str):
            yield key, node
        elif isinstance(node, dict):
            for k, v in node.items():
                yield k, k
                stack.append((k, v))
        elif isinstance(node, list):
            stack.extend((key, v) for v in node)


@functools.lru_cache(maxsize=256)
def known_codec(charset: str) -> bool:
    try:
        codecs.lookup(charset.strip())
    except (LookupError, ValueError):
        return False
    return True


def first_byte(body: bytes) -> bytes:
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    stripped = body.lstrip(b" \t\r\n")
    return stripped[:1]


def readable_body(req: Any) -> MediaType | None:
    """The media type of a request body that can be read as sent; None without a body, or when it
    is content-coded (gzip, br...): then its bytes are not the text to read."""
    if not req.body:
        return None
    coding = req.headers.get("content-encoding")
    if coding is not None and coding.strip(" \t").lower() not in ("", "identity"):
        return None
    return parse_media_type(req.headers.get("content-type") or "")
