"""HTTP helpers: parser error names, hop-by-hop, Bastion's own responses."""

from __future__ import annotations

import json

import httptools
import pytest

from bastion.frontends.proxy.http import (
    chunk,
    classify_parse_error,
    connection_tokens,
    problem_response,
    reason_phrase,
)


def _error(raw: bytes) -> BaseException:
    parser = httptools.HttpRequestParser(object())
    with pytest.raises(httptools.HttpParserError) as info:
        parser.feed_data(raw)
    return info.value


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "protocol-cl-te"),
        (b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", "protocol-cl-multiple"),
        (b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", "protocol-cl-invalid"),
        (b"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", "protocol-obs-fold"),
        (b"GET / HTTP/1.1\nA: b\n\n", "protocol-bare-crlf"),
        (b"GET / HTTP/1.1\r\nA B: c\r\n\r\n", "protocol-header-name-invalid"),
        (b"get / HTTP/1.1\r\n\r\n", "protocol-method-invalid"),
    ],
)
def test_classify_parse_error(raw, rule):
    assert classify_parse_error(_error(raw))[0] == rule


def test_connection_tokens_and_chunk():
    assert connection_tokens([b"keep-alive, X-Foo", b" Upgrade "]) == {b"keep-alive", b"x-foo", b"upgrade"}
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert chunk(b"x" * 255).startswith(b"ff\r\n")
    assert reason_phrase(404) == b"Not Found" and reason_phrase(599) == b"Unknown"


def test_problem_response_shape_and_header_safety():
    raw = problem_response(429, "rate-limited", "Too many requests", "abc", close=True, retry_after=3,
                           headers=(("X-Ok", "1"), ("X-Bad", "a\r\nSet-Cookie: x=1")))
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 429 Too Many Requests"
    assert b"Content-Type: application/problem+json" in lines
    assert b"Retry-After: 3" in lines and b"Connection: close" in lines and b"X-Ok: 1" in lines
    assert not any(line.startswith(b"Set-Cookie") for line in lines)  # no response splitting
    doc = json.loads(body)
    assert doc["status"] == 429 and doc["request_id"] == "abc" and doc["type"].endswith("/rate-limited")
    assert int(dict(x.split(b": ", 1) for x in lines[1:])[b"Content-Length"]) == len(body)
    head_only = problem_response(403, "request-blocked", "Request blocked", "r", head_only=True)
    assert head_only.endswith(b"\r\n\r\n")


def test_raw_headers_decode_lazily_and_behave_like_headers():
    from bastion.frontends.proxy.server import RawHeaders

    raw = [(b"Host", b"api.test"), (b"X-A", b"1"), (b"x-a", b"\xe9"), (b"Content-Type", b"text/plain")]
    hdrs = RawHeaders(list(raw))
    assert hdrs.get("HOST") == "api.test" and hdrs.get("missing", "d") == "d"
    assert hdrs._raw is not None  # a single lookup did not decode everything
    assert hdrs.get_all("x-a") == ["1", "\xe9"]
    assert "content-type" in hdrs and len(hdrs) == 4
    assert next(iter(hdrs)) == ("Host", "api.test")
    hdrs.set("X-A", "2")
    assert hdrs.get_all("x-a") == ["2"] and hdrs.get("x-a") == "2"
    hdrs.remove("host")
    assert hdrs.get("host") is None and hdrs.names() == ["content-type", "x-a"]
