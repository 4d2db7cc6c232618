"""Property-based fuzzing of the proxy's request parsing with hypothesis.

Malformed, mutated and ambiguous requests are thrown at one running gateway (in its own thread,
with a real upstream behind it). For every input:
- whatever the client gets back is a sequence of well-formed HTTP/1.1 responses, and each answer
  Bastion wrote itself is problem+json;
- a 400 ends the connection;
- nothing is smuggled: the upstream receives exactly as many requests as the client got upstream
  answers for (a request hidden in another's body would show up as one more);
- afterwards the gateway still serves a benign request.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy_helpers import Upstream, gateway, make_config, upstream_server


class _Running:
    def __init__(self, only: set[str] | None = frozenset()) -> None:  # type: ignore[assignment]
        self.only = set(only) if only is not None else None
        self.port = 0
        self.up: Upstream | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stop: asyncio.Event | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            import uvloop

            uvloop.run(self._main())
        except BaseException as exc:  # surfaced by the fixture
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        async with upstream_server() as up:
            # Every example comes from 127.0.0.1, and a source sending nothing but hostile input
            # is (rightly) tarpitted by its growing risk: no delay here, the test is about parsing.
            cfg = make_config(up.url, timeouts={"header": 2, "body": 2, "upstream_response": 3},
                              limits={"max_body_bytes": 4096, "max_uri_bytes": 512},
                              behaviour={"risk": {"throttle_delay": 0}})
            async with gateway(cfg, only=self.only) as gw:
                self.up, self.port = up, gw.port
                self.ready.set()
                await self.stop.wait()


def _start(r: _Running) -> threading.Thread:
    thread = threading.Thread(target=r.run, daemon=True)
    thread.start()
    assert r.ready.wait(20), "gateway did not start"
    if r.error:
        raise r.error
    return thread


@pytest.fixture(scope="module")
def running() -> Iterator[_Running]:
    r = _Running()
    thread = threading.Thread(target=r.run, daemon=True)
    thread.start()
    assert r.ready.wait(10), "gateway did not start"
    if r.error:
        raise r.error
    yield r
    if r.loop is not None and r.stop is not None:
        r.loop.call_soon_threadsafe(r.stop.set)
    thread.join(5)


def exchange(port: int, data: bytes, wait: float = 4.0) -> bytes:
    """Send raw bytes, half-close, read everything until the gateway closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        with contextlib.suppress(OSError):
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                raise AssertionError(f"gateway hung on {data[:200]!r}") from None
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n")


def parse_responses(raw: bytes) -> list[tuple[int, dict[str, str]]]:
    """Split a byte stream into responses (status, headers); asserts it is well-formed HTTP/1.1."""
    out = []
    pos = 0
    while pos < len(raw):
        m = _STATUS.match(raw, pos)
        assert m, f"not an HTTP/1.1 response at {pos}: {raw[pos:pos + 80]!r}"
        end = raw.index(b"\r\n\r\n", pos)
        headers: dict[str, str] = {}
        for line in raw[m.end():end].split(b"\r\n"):
            if line:
                k, _, v = line.decode("latin-1").partition(":")
                headers[k.lower()] = v.strip()
        pos = end + 4
        status = int(m.group(1))
        if status == 100:
            continue
        if "content-length" in headers:
            pos += int(headers["content-length"])
        elif headers.get("transfer-encoding") == "chunked":
            while True:
                eol = raw.index(b"\r\n", pos)
                size = int(raw[pos:eol], 16)
                pos = eol + 2 + size + 2
                if size == 0:
                    break
        out.append((status, headers))
    return out


def check(running: _Running, data: bytes) -> list[tuple[int, dict[str, str]]]:
    assert running.up is not None
    before = len(running.up.requests)
    raw = exchange(running.port, data)
    responses = parse_responses(raw)
    from_upstream = 0
    for i, (status, headers) in enumerate(responses):
        if headers.get("content-type") == "application/problem+json":
            assert 400 <= status < 600
            assert "x-request-id" in headers
            if status == 400:
                assert i == len(responses) - 1, "a 400 must end the connection"
        else:
            from_upstream += 1
    assert len(running.up.requests) - before == from_upstream, (data, responses)
    # ... and the gateway keeps serving.
    ok = parse_responses(exchange(running.port, b"GET /hello HTTP/1.1\r\nHost: ok\r\nConnection: close\r\n\r\n"))
    assert [s for s, _ in ok] == [200]
    return responses


VALID = [
    b"GET /echo?a=1 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /echo HTTP/1.0\r\n\r\n",
]
SPECIAL = [b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b":", b",", b"0", b"chunked", b"Content-Length: 3\r\n",
           b"Transfer-Encoding: chunked\r\n", b"\r\n\r\n", b"GET / HTTP/1.1\r\n", b"\x7f", b"\xff", b"\x0b"]


@st.composite
def mutated(draw: Any) -> bytes:
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        pos = draw(st.integers(0, len(data)))
        if op == "insert":
            piece = draw(st.one_of(st.sampled_from(SPECIAL), st.binary(min_size=1, max_size=4)))
            data[pos:pos] = piece
        elif op == "delete" and data:
            data[pos:pos + draw(st.integers(1, 3))] = b""
        elif data:
            data[min(pos, len(data) - 1)] = draw(st.integers(0, 255))
    return bytes(data)


token = st.text(alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1,
                max_size=12)
field_value = st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)


@st.composite
def framing_soup(draw: Any) -> bytes:
    """A request whose framing headers are any combination of CL/TE values, valid or not."""
    # (no HEAD: its response has no body, which parse_responses cannot know for pipelined requests)
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
    lines = [method + b" /echo " + version, b"Host: a"]
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from([b"Content-Length", b"Transfer-Encoding", b"content-length",
                                     b"transfer-encoding", b"Connection", b"Expect", b"Upgrade"]))
        value = draw(st.one_of(st.sampled_from([b"0", b"5", b"chunked", b"gzip, chunked", b"chunked, identity",
                                                b" 5", b"5 ", b"-1", b"0x5", b"close", b"100-continue",
                                                b"websocket", b"keep-alive"]), field_value))
        sep = draw(st.sampled_from([b": ", b":", b" : ", b":\t"]))
        lines.append(name + sep + value)
    for _ in range(draw(st.integers(0, 3))):
        lines.append(draw(token).encode() + b": " + draw(field_value))
    body = draw(st.sampled_from([b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n",
                                 b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"]))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])


@FUZZ
@given(data=mutated())
def test_mutated_requests(running: _Running, data: bytes) -> None:
    check(running, data)


@FUZZ
@given(data=framing_soup())
def test_framing_header_soup_never_smuggles(running: _Running, data: bytes) -> None:
    check(running, data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_random_bytes(running: _Running, data: bytes) -> None:
    check(running, data)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.binary(min_size=1, max_size=20), value=st.binary(max_size=60))
def test_arbitrary_header_bytes(running: _Running, name: bytes, value: bytes) -> None:
    responses = check(running, b"GET /echo HTTP/1.1\r\nHost: a\r\n" + name + b": " + value + b"\r\n\r\n")
    assert responses, "a complete request head always gets an answer"


def test_smuggled_request_in_body_is_not_a_request(running: _Running) -> None:
    body = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
    data = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
    assert running.up is not None
    before = len(running.up.requests)
    responses = check(running, data)
    assert [s for s, _ in responses] == [200]
    assert all("/smuggled" not in r.target for r in running.up.requests[before:])


@pytest.fixture(scope="module")
def running_default() -> Iterator[_Running]:
    """The gateway with the registry's default detectors (signatures, protocol, limits...)."""
    r = _Running(only=None)
    thread = _start(r)
    yield r
    if r.loop is not None and r.stop is not None:
        r.loop.call_soon_threadsafe(r.stop.set)
    thread.join(5)


@st.composite
def wild_request(draw: Any) -> bytes:
    """Well-framed requests with hostile content: the detectors, not the parser, must cope."""
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"]))
    path = b"/" + draw(st.binary(max_size=60)).replace(b" ", b"%20").replace(b"\r", b"").replace(b"\n", b"")
    path = bytes(c for c in path if 0x21 <= c < 0x7F) or b"/"
    body = draw(st.one_of(st.binary(max_size=300), st.sampled_from([
        b'{"a": [1, {"b": "\' OR 1=1 --"}]}', b"<x><![CDATA[<script>]]></x>", b"a=1&a=2&%zz=%",
        b'{"deep": ' * 50 + b"1" + b"}" * 50, b"\xff\xfe\x00\x00"])))
    ctype = draw(st.sampled_from([b"application/json", b"application/x-www-form-urlencoded", b"text/xml",
                                  b"multipart/form-data; boundary=x", b"application/octet-stream", b""]))
    headers = b"Host: a\r\n"
    if ctype:
        headers += b"Content-Type: " + ctype + b"\r\n"
    for _ in range(draw(st.integers(0, 3))):
        headers += draw(token).encode() + b": " + draw(field_value) + b"\r\n"
    return b"%b %b HTTP/1.1\r\n%bContent-Length: %d\r\nConnection: close\r\n\r\n%b" % (
        method, path, headers, len(body), body)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=wild_request())
def test_default_detectors_cope_with_hostile_content(running_default: _Running, data: bytes) -> None:
    raw = exchange(running_default.port, data)
    responses = parse_responses(raw)
    assert len(responses) == 1, (data, raw[:300])
    status, headers = responses[0]
    assert status < 500 or status in (502, 503), (data, status)
    if headers.get("content-type") == "application/problem+json":
        assert 400 <= status < 600 and "x-request-id" in headers
