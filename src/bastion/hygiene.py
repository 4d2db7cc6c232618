"""Error hygiene: what an upstream must not leak to a client.

Pure functions shared by the reverse proxy and the ASGI middleware:

- `is_banner` / `strip_banners`: `Server`, `X-Powered-By` and friends advertise the stack and its
  version (CWE-200), which turns a public CVE list into a target list.
- `looks_like_debug_page` / `should_scrub`: upstream 5xx bodies that carry a stack trace, a
  framework debug page or a raw database error (CWE-209) are replaced by an RFC 9457 problem
  document (`scrubbed_body`), so the client learns the status and a request id and nothing else.

The checks only ever read a bounded prefix of the body.
"""

from __future__ import annotations

import re
from http import HTTPStatus

from bastion.errors import problem_body

BANNER_HEADERS: frozenset[str] = frozenset(
    {"server", "x-powered-by", "x-aspnet-version", "x-aspnetmvc-version", "x-generator", "x-runtime"}
)
BANNER_HEADERS_BYTES: frozenset[bytes] = frozenset(h.encode() for h in BANNER_HEADERS)

# How much of a 5xx body is looked at. Debug pages put their tell-tale near the top.
SCRUB_SCAN_BYTES = 64 * 1024

# Markers of stack traces, framework debug pages and database errors. Each is specific enough not
# to appear in an ordinary JSON error (`{"error": "internal"}` is left alone).
_DEBUG_MARKERS = re.compile(
    "|".join(
        [
            r"Traceback \(most recent call last\)",  # Python
            r'File "[^"\n]{1,300}", line \d+',  # Python frames
            r"Werkzeug Debugger|werkzeug\.exceptions",  # Flask debug
            r"You're seeing this error because you have <code>DEBUG = True</code>",  # Django
            r"django\.core\.exceptions|django\.db\.utils",
            r"sqlalchemy\.exc\.|psycopg2?\.errors|sqlite3\.OperationalError",
            r"Exception in thread \"",  # Java
            r"\bat [\w$.]+\([\w$]+\.(?:java|kt|scala):\d+\)",  # Java/Kotlin frames
            r"\bat (?:org\.springframework|org\.apache\.catalina|java\.lang|javax?\.)",
            r"java\.lang\.\w+(?:Exception|Error)",
            r"Whitelabel Error Page",  # Spring Boot
            r"Server Error in '[^'\n]*' Application",  # ASP.NET
            r"\bat [\w.<>`]+\([^)\n]*\) in [^\n]+:line \d+",  # .NET frames
            r"System\.\w+Exception",
            r"(?:Fatal|Parse) error: .{0,300} on line \d+",  # PHP
            r"Stack trace:\s*#0 ",  # PHP
            r"\bat (?:Object\.<anonymous>|Module\._compile|process\.processTicksAndRejections)",  # Node
            r"\bat [\w.$<>]+ \((?:/|[A-Za-z]:\\|node:)[^)\n]*:\d+:\d+\)",  # Node frames
            r"\.rb:\d+:in `",  # Ruby
            r"Action Controller: Exception caught",  # Rails
            r"goroutine \d+ \[running\]",  # Go
            r"^panic: ",
            r"Whoops, looks like something went wrong|Illuminate\\",  # Laravel
            r"SQLSTATE\[\w+\]",
            r"You have an error in your SQL syntax",  # MySQL
            r"\bORA-\d{5}\b",  # Oracle
            r"PG::\w+Error|ERROR:\s+syntax error at or near",  # PostgreSQL
            r"Microsoft OLE DB Provider|Unclosed quotation mark after the character string",  # MSSQL
        ]
    ),
    re.MULTILINE,
)


def is_banner(name: str) -> bool:
    """Whether a response header only advertises the server's software."""
    return name.lower() in BANNER_HEADERS


def strip_banners(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers without the banner ones (order of the others kept)."""
    return [(k, v) for k, v in headers if k.lower() not in BANNER_HEADERS]


def looks_like_debug_page(body: bytes) -> bool:
    """Whether a (prefix of a) body holds a stack trace, a debug page or a raw database error."""
    if not body:
        return False
    text = body[:SCRUB_SCAN_BYTES].decode("latin-1")
    return _DEBUG_MARKERS.search(text) is not None


def should_scrub(status: int, body: bytes) -> bool:
    """Whether an upstream response must be replaced by a problem document.

    Only server errors are touched: a 4xx is part of the API's contract, and a 2xx that happens to
    mention `Traceback` (a code-hosting API, a log viewer) is the content itself.
    """
    return status >= 500 and looks_like_debug_page(body)


def scrubbed_body(status: int, request_id: str) -> bytes:
    """The problem+json that replaces a scrubbed upstream error (same status, no upstream detail)."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Upstream error"
    return problem_body("upstream-error", status, title, request_id)
