"""Transformations: turn one inspected value into the normalised views rules match against.

A rule names a view (a transform chain); each view of a value is computed once per request and
shared by every rule that asks for it. Every function has a fast path for the common case (plain
ASCII, nothing encoded) because most values of real API traffic need no decoding at all.

Views:
    raw      the value as the zone parser delivered it (query arguments are URL-decoded once)
    decode   repeated URL decoding (double encoding), %uXXXX (IIS), overlong UTF-8 (%c0%ae),
             HTML entities, JS/JSON escapes (\\u003c, \\x3c), Unicode compatibility forms
             (NFKC: full-width, enclosed ①②⑦), NUL removal
    sql      decode + SQL comments opened up (/**/ and MySQL /*!50000 ... */) + whitespace collapsed,
             a raw A0 byte as a blank
    cmd      decode + shell evasions removed: quotes and backslashes inside words (c'a't, c\\at),
             backslash-newline, $IFS/${IFS}, empty expansions ($@, ${x}), Windows caret (c^md)
    path     decode + backslashes as slashes, /./ and repeated slashes removed
    jndi     decode + Log4j lookups that spell their argument evaluated (${lower:j}, ${::-n})
"""

from __future__ import annotations

import html
import html.entities
import re
import unicodedata
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

_WS_RUN = re.compile(r"\s{16,}")
_WS_RUN16 = re.compile(r"\s{16}")
_SPACES16 = " " * 16


def white_space_run(s: str) -> bool:
    """Whether `s` holds 16 white-space characters in a row (`\\s{16}`). A regex that tries `\\s{16}`
    at every space costs ~1 µs over a sentence; most values are printable, and then their only
    white space is the ASCII space (str.isprintable's rule), which `in` finds at C speed."""
    if s.isprintable():
        return _SPACES16 in s
    return _WS_RUN16.search(s) is not None

_PCT_U = re.compile(r"%u([0-9a-fA-F]{4})")
_PCT = re.compile(r"%[0-9a-fA-F]{2}")
# Overlong UTF-8 (CVE-2000-0884 era and still in scanner payloads): 2- and 3-byte encodings of ASCII.
_OVERLONG2 = re.compile(rb"[\xc0\xc1][\x80-\xbf]")
_OVERLONG3 = re.compile(rb"\xe0[\x80-\x81][\x80-\xbf]")
_JS_ESCAPE = re.compile(r"\\(?:u\{([0-9a-fA-F]{1,6})\}|u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2}))")


_BEYOND_LATIN1 = re.compile("[^\x00-\xff]+")


def _nfkc(m: re.Match[str]) -> str:
    return unicodedata.normalize("NFKC", m.group(0))


def _overlong2(m: re.Match[bytes]) -> bytes:
    b0, b1 = m.group(0)
    return bytes([((b0 & 0x1F) << 6) | (b1 & 0x3F)])


def _overlong3(m: re.Match[bytes]) -> bytes:
    _, b1, b2 = m.group(0)
    return bytes([((b1 & 0x3F) << 6) | (b2 & 0x3F)])


def url_decode(s: str) -> str:
    """One round of percent-decoding, with %uXXXX and overlong UTF-8 folded to what they mean."""
    if "%" not in s:
        return s
    if "%u" in s or "%U" in s:
        s = _PCT_U.sub(lambda m: chr(int(m.group(1), 16)), s)
    if not _PCT.search(s):
        return s
    raw = unquote_to_bytes(s.encode("utf-8", "surrogateescape"))
    if b"\xc0" in raw or b"\xc1" in raw or b"\xe0" in raw:
        raw = _OVERLONG3.sub(_overlong3, _OVERLONG2.sub(_overlong2, raw))
    return raw.decode("utf-8", "surrogateescape")


def _fold_overlong(s: str) -> str:
    """Overlong UTF-8 sequences carried as surrogate escapes (undecodable bytes) folded to ASCII."""
    raw = s.encode("utf-8", "surrogateescape")
    folded = _OVERLONG3.sub(_overlong3, _OVERLONG2.sub(_overlong2, raw))
    return s if folded == raw else folded.decode("utf-8", "surrogateescape")


def _js_unescape(m: re.Match[str]) -> str:
    hexdigits = m.group(1) or m.group(2) or m.group(3)
    cp = int(hexdigits, 16)
    return chr(cp) if cp < 0x110000 else m.group(0)


_LOOSE_ENTITY = re.compile(r"&(tab|newline|colon|lpar|rpar|sol|period|comma|excl|quot|apos|lt|gt);", re.IGNORECASE)
_LOOSE_CHARS = {"tab": "\t", "newline": "\n", "colon": ":", "lpar": "(", "rpar": ")", "sol": "/", "period": ".",
                "comma": ",", "excl": "!", "quot": '"', "apos": "'", "lt": "<", "gt": ">"}


def _loose_entity(m: re.Match[str]) -> str:
    return _LOOSE_CHARS[m.group(1).lower()]


# What html.unescape would change: a numeric reference, a name ended by `;`, or one of the legacy
# names HTML reads without `;` (`&amp`, `&lt`, `&copy`...) starting a word; `&b=2` and `& ` are none.
_HTML_ENTITY = re.compile(
    "&(?:#|" + "|".join(sorted((n for n in html.entities.html5 if not n.endswith(";")), key=len, reverse=True))
    + r"|[^\t\n\f <&#;]{1,32};)"
)


def decode(s: str) -> str:
    """Repeated decoding until the value stops changing (at most 4 rounds: enough for triple encoding)."""
    if s.isascii() and "%" not in s and "&" not in s and "\\" not in s and "\x00" not in s and not white_space_run(s):
        return s  # nothing encoded (checked with `in`: a regex search costs more than four of them)
    if "\udcc0" in s or "\udcc1" in s or "\udce0" in s:
        s = _fold_overlong(s)  # the zone parser already percent-decoded `%c0%ae` into raw bytes
    for _ in range(4):
        before = s
        if "%" in s:
            s = url_decode(s)
        if "&" in s:
            if _LOOSE_ENTITY.search(s) is not None:  # IE reads &tab; &newline; in any case
                s = _LOOSE_ENTITY.sub(_loose_entity, s)
            if _HTML_ENTITY.search(s) is not None:  # html.unescape costs ~1.5 µs on a URL's `&b=2`
                s = html.unescape(s)
        if "\\" in s:
            s = _JS_ESCAPE.sub(_js_unescape, s)
        if not s.isascii() and not unicodedata.is_normalized("NFKC", s):
            # compatibility forms, folded as IDNA host names and normalising frameworks fold them:
            # full-width (U+FF1C for <), enclosed ①②⑦.⓪.⓪.① and ⓛⓞⓒⓐⓛⓗⓞⓢⓣ, small forms, ligatures;
            # Latin-1 is left as it is (¼ and ¾ are what the US-ASCII bit-stripping vectors send)
            s = _BEYOND_LATIN1.sub(_nfkc, s)
        if s == before:
            break
    if "\x00" in s:
        s = s.replace("\x00", "")
    if white_space_run(s):
        s = _WS_RUN.sub(" ", s)  # padding between keywords must not outrun the matchers' bounds
    return s


_SQL_EXEC_COMMENT = re.compile(r"/\*!\d*(.*?)\*/", re.DOTALL)
_SQL_COMMENT = re.compile(r"/\*.*?\*/|/\*|\*/", re.DOTALL)
_WS = re.compile(r"\s+")


def sql(s: str) -> str:
    """SQL comments as MySQL reads them: `union/*x*/select` is `union select`, and the content of an
    executable comment `/*!50000union*/` is code."""
    if "/*" in s or "*/" in s:
        s = _SQL_EXEC_COMMENT.sub(r" \1 ", s)
        s = _SQL_COMMENT.sub(" ", s)
        s = _WS.sub(" ", s)
    if "\udca0" in s:  # a raw byte A0 (`%A0`, not UTF-8): MySQL reads it as a blank (NBSP)
        s = s.replace("\udca0", " ")
    return s


_CMD_IFS = re.compile(r"\$\{?IFS\}?(?:\$\d)?", re.IGNORECASE)
_CMD_EMPTY = re.compile(r"\$(?:[@*]|\{\s*\}|\(\s*\)|\{?[0-9]\}?)|\$\{[!#]?[a-zA-Z_][a-zA-Z0-9_]*:?[-=]?\}")
# An unset variable glued to a word (sh$XX -c) or standing alone between a separator and a command
# (|$u wget) expands to nothing: the shell runs `sh -c`, `| wget`.
_CMD_UNSET = re.compile(r"(?<=[a-zA-Z0-9_])\$[a-zA-Z_]\w{0,30}(?=[\s;|&<>]|$)|(?<=[;|&`(])\s*\$[a-zA-Z_]\w{0,30}(?=\s)")
_CMD_TRIGGER = re.compile(r"[\\'\"$^]")
_CMD_DROP = re.compile(r"[\\'\"^]")  # a regex: str.translate is slow on non-ASCII text


def cmd(s: str) -> str:
    """Undo what shells remove before running a word: c'a't, c\\at, ca$@t, c${x}at, c^at, $IFS."""
    if _CMD_TRIGGER.search(s) is None:
        return s
    if "\\\n" in s or "\\\r" in s:  # a backslash-newline continues the line: ca\<LF>t is cat
        s = s.replace("\\\r\n", "").replace("\\\n", "")
    if "$" in s:
        s = _CMD_IFS.sub(" ", s)
        s = _CMD_EMPTY.sub("", s)
        if "$" in s:
            s = _CMD_UNSET.sub("", s)
    return _CMD_DROP.sub("", s)


_MULTI_SLASH = re.compile(r"/{2,}")


# Look-alikes of `/`, `\` and `.` that some file APIs and Unicode normalisers fold to them
# (`..%u2215..%u2215etc`): division and fraction slashes, small and one-dot-leader dots.
_PATH_LOOKALIKES = str.maketrans({
    "\u2215": "/", "\u2044": "/", "\u2571": "/", "\u29f8": "/", "\uff0f": "/",
    "\u29f5": "/", "\u29f9": "/", "\ufe68": "/", "\uff3c": "/", "\u2216": "/",
    "\u2024": ".", "\ufe52": ".", "\uff0e": ".",
})
_HAS_PATH_LOOKALIKE = re.compile("[" + "".join(chr(c) for c in _PATH_LOOKALIKES) + "]")


def path(s: str) -> str:
    """Normalise a path-like value: backslashes (and slash look-alikes) as slashes, no /./, no
    repeated slashes."""
    if not s.isascii() and _HAS_PATH_LOOKALIKE.search(s) is not None:  # translate is slow on non-ASCII
        s = s.translate(_PATH_LOOKALIKES)
    if "\\" in s:
        s = s.replace("\\", "/")
    if "//" in s:
        s = _MULTI_SLASH.sub("/", s)
    while "/./" in s:
        s = s.replace("/./", "/")
    return s


# Log4j lookups that evaluate to their own argument, used to spell `jndi` without writing it
# (CVE-2021-44228 obfuscations): ${lower:j}, ${upper:J}, ${::-j}, ${env:NOPE:-j}, ${date:'j'}.
_LOG4J_LOOKUP = re.compile(
    r"\$\{(?:(?:lower|upper)\s*:\s*|(?:[\w.]*:)*[^${}:]*:-|date\s*:\s*')([^${}']*)'?\}", re.IGNORECASE
)


def jndi(s: str) -> str:
    """Evaluate the Log4j lookups attackers nest to hide `${jndi:`."""
    if "${" not in s:
        return s
    for _ in range(8):
        t = _LOG4J_LOOKUP.sub(lambda m: m.group(1), s)
        if t == s:
            break
        s = t
    return s


# name -> (base view, function applied to the base view)
VIEWS: dict[str, tuple[str | None, Callable[[str], str]]] = {
    "raw": (None, lambda s: s),
    "decode": ("raw", decode),
    "sql": ("decode", sql),
    "cmd": ("decode", cmd),
    "path": ("decode", path),
    "jndi": ("decode", jndi),
}

VIEW_NAMES = tuple(VIEWS)


class ViewCache:
    """The views of one value, computed on first use. One instance per inspected value."""

    __slots__ = ("views",)

    def __init__(self, raw: str) -> None:
        self.views: dict[str, str] = {"raw": raw}

    def get(self, name: str) -> str:
        v = self.views.get(name)
        if v is None:
            base_name, fn = VIEWS[name]
            v = fn(self.get(base_name or "raw"))
            self.views[name] = v
        return v
