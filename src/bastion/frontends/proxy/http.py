"""HTTP/1.1 helpers of the proxy: hop-by-hop rules, head serialization, Bastion's own responses,
and the mapping of parser errors to rule ids.

Parsing itself is llhttp (through httptools) in strict mode: it already refuses CL+TE, duplicate
or invalid Content-Length, invalid header names, bare CR/LF and obs-fold. This module names each
refusal so it becomes an explainable event.
"""

from __future__ import annotations

from http import HTTPStatus

from bastion.errors import problem_body

# RFC 9110 section 7.6.1: connection-specific fields, never forwarded. `Proxy-Connection` and
# `Keep-Alive` are the legacy ones; `Proxy-Authorization` is meant for this hop.
HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    }
)

# Forwarding claims that only a trusted proxy may make: from anyone else they are dropped, or the
# API would build links, redirects and password-reset URLs on an attacker's host (host header
# injection through X-Forwarded-Host) or believe a client's own "I came over TLS".
FORWARDED_CLAIMS: frozenset[bytes] = frozenset(
    {b"x-forwarded-host", b"x-forwarded-port", b"x-forwarded-prefix", b"x-forwarded-server",
     b"x-forwarded-ssl", b"x-forwarded-scheme", b"x-original-url", b"x-rewrite-url", b"x-original-host"}
)

# Request fields the proxy rewrites itself (framing, forwarding chain, request id, 100-continue).
REQUEST_REWRITTEN: frozenset[bytes] = HOP_BY_HOP | {
    b"content-length",
    b"expect",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"forwarded",
    b"x-real-ip",
    b"x-request-id",
} | FORWARDED_CLAIMS

# Response fields the proxy rewrites (framing, request id). Content-Length is relayed as is.
RESPONSE_REWRITTEN: frozenset[bytes] = HOP_BY_HOP | {b"x-request-id"}

_REASONS: dict[int, bytes] = {s.value: s.phrase.encode() for s in HTTPStatus}

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
CHUNKED_END = b"0\r\n\r\n"


def reason_phrase(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")


def connection_tokens(values: list[bytes]) -> set[bytes]:
    """Lower-cased tokens of the Connection header(s): they name more hop-by-hop fields."""
    out: set[bytes] = set()
    for v in values:
        for tok in v.split(b","):
            t = tok.strip().lower()
            if t:
                out.add(t)
    return out


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (RFC 9112 section 7.1), without extensions."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def status_line(version: bytes, status: int, reason: bytes) -> bytes:
    return b"HTTP/%b %d %b\r\n" % (version, status, reason)


def problem_response(
    status: int,
    reason: str,
    title: str,
    request_id: str,
    *,
    close: bool = False,
    retry_after: int | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    hsts: bytes = b"",
    head_only: bool = False,
    extra: tuple[tuple[str, str | int], ...] = (),
) -> bytes:
    """A complete RFC 9457 response produced by Bastion itself. Echoes nothing the client sent."""
    body = problem_body(reason, status, title, request_id, extra)
    lines = [
        b"HTTP/1.1 %d %b\r\n" % (status, reason_phrase(status)),
        b"Content-Type: application/problem+json\r\n",
        b"Content-Length: %d\r\n" % len(body),
        b"Cache-Control: no-store\r\n",
        b"X-Content-Type-Options: nosniff\r\n",
        b"X-Request-Id: %b\r\n" % request_id.encode("latin-1", "replace"),
    ]
    if retry_after is not None:
        lines.append(b"Retry-After: %d\r\n" % max(0, int(retry_after)))
    for k, v in headers:
        if _safe_field(k) and _safe_field(v):
            lines.append(b"%b: %b\r\n" % (k.encode("latin-1"), v.encode("latin-1")))
    if hsts:
        lines.append(hsts)
    if close:
        lines.append(b"Connection: close\r\n")
    lines.append(b"\r\n")
    if not head_only:
        lines.append(body)
    return b"".join(lines)


def _safe_field(s: str) -> bool:
    # Header values from detectors are config-made, but a CR/LF here would be response splitting.
    return "\r" not in s and "\n" not in s and all(ord(c) < 256 for c in s)


# llhttp error reasons (substring, lower-case) -> (rule id, description). First match wins.
_PARSE_ERRORS: tuple[tuple[str, str, str], ...] = (
    ("transfer-encoding can't be present with content-length", "protocol-cl-te",
     "Content-Length together with Transfer-Encoding"),
    ("content-length can't be present with transfer-encoding", "protocol-cl-te",
     "Content-Length together with Transfer-Encoding"),
    ("duplicate content-length", "protocol-cl-multiple", "duplicate Content-Length"),
    ("content-length overflow", "protocol-cl-invalid", "invalid Content-Length"),
    ("invalid character in content-length", "protocol-cl-invalid", "invalid Content-Length"),
    ("transfer-encoding", "protocol-te-invalid", "invalid Transfer-Encoding"),
    ("unexpected whitespace after header value", "protocol-obs-fold", "obs-fold or whitespace before a header line"),
    ("missing expected lf", "protocol-bare-crlf", "bare CR in the request head"),
    ("missing expected cr", "protocol-bare-crlf", "bare LF in the request head"),
    ("expected crlf", "protocol-bare-crlf", "bare LF in the request head"),
    ("invalid header token", "protocol-header-name-invalid", "invalid header name"),
    ("invalid header field char", "protocol-header-name-invalid", "invalid header name"),
    ("invalid header value char", "protocol-header-crlf", "control character in a header value"),
    ("chunk", "protocol-chunk-invalid", "malformed chunked body"),
    ("invalid method", "protocol-method-invalid", "invalid request method"),
    ("url", "protocol-target-invalid", "invalid request target"),
    ("http version", "protocol-version-invalid", "invalid HTTP version"),
)


def classify_parse_error(exc: BaseException) -> tuple[str, str]:
    """(rule id, message) for an httptools parser error. Never includes the offending bytes."""
    text = str(exc).lower()
    name = type(exc).__name__
    if name == "HttpParserInvalidMethodError":
        return "protocol-method-invalid", "invalid request method"
    if name == "HttpParserInvalidURLError":
        return "protocol-target-invalid", "invalid request target"
    for needle, rule, message in _PARSE_ERRORS:
        if needle in text:
            return rule, message
    return "protocol-malformed", "malformed HTTP request"
