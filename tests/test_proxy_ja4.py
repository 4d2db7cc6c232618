"""JA4: the ClientHello fingerprint computed by the proxy when it terminates TLS, under asyncio and
uvloop, from real clients (Python ssl, openssl s_client, curl); and the parser on hostile input."""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import ssl
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bastion.frontends.proxy.ja4 import ja4, ja4_of, parse_client_hello
from proxy_helpers import gateway, get, make_config, read_response, upstream_server

JA4_RE = re.compile(r"^t1[23][di]\d{4}[0-9a-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$")
ANY_JA4 = re.compile(r"^t(13|12|11|10|s3|s2|d1|d2|d3|00)[di]\d{4}[0-9A-Za-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$")
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    d = tmp_path_factory.mktemp("ja4pki")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out",
                    "cert.pem", "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True, cwd=d)
    return {"cert": d / "cert.pem", "key": d / "key.pem"}


def _client(alpn: list[str] | None = None, ciphers: str | None = None, tls12: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if ciphers:
        ctx.set_ciphers(ciphers)
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def _py_get(port: int, ctx: ssl.SSLContext, sni: str | None = "localhost") -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=sni)
    try:
        writer.write(get("/echo"))
        return (await read_response(reader)).status
    finally:
        writer.close()


async def _run(*cmd: str, stdin: bytes = b"") -> int:
    proc = await asyncio.create_subprocess_exec(*cmd, stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    await asyncio.wait_for(proc.communicate(stdin), 20)
    return proc.returncode or 0


def _in_loop(factory: Callable[[], asyncio.AbstractEventLoop], pki: dict[str, Path],
             clients: Callable[[int], Any]) -> list[Any]:
    """Run a TLS gateway in a fresh loop from `factory`, drive `clients(port)`, return the exchanges."""

    async def main() -> list[Any]:
        async with upstream_server() as up:
            cfg = make_config(up.url, server={"tls": {"cert": str(pki["cert"]), "key": str(pki["key"])}})
            async with gateway(cfg, only={"decisions", "risk"}) as gw:
                await clients(gw.port)
                await asyncio.sleep(0.05)
                return list(gw.sink.exchanges)

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


def _loops() -> list[Any]:
    out: list[Any] = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        import uvloop

        out.append(pytest.param(uvloop.new_event_loop, id="uvloop"))
    except ImportError:  # pragma: no cover
        pass
    return out


@pytest.mark.parametrize("factory", _loops())
def test_ja4_from_python_clients_under_each_loop(factory: Callable[[], asyncio.AbstractEventLoop],
                                                 pki: dict[str, Path]) -> None:
    async def clients(port: int) -> None:
        assert await _py_get(port, _client(["http/1.1"])) == 200
        assert await _py_get(port, _client(["http/1.1"])) == 200  # same software: same JA4
        assert await _py_get(port, _client(None, "ECDHE-RSA-AES128-GCM-SHA256", tls12=True), sni=None) == 200
        assert await _py_get(port, _client(["h2", "http/1.1"])) == 200

    exs = _in_loop(factory, pki, clients)
    fps = [ex.client.fingerprint for ex in exs]
    assert len(fps) == 4 and all(JA4_RE.match(f) for f in fps), fps
    a, same, tls12, h2 = fps
    assert a == same
    assert a.startswith("t13d") and a[8:10] == "h1"
    # one cipher (plus the renegotiation SCSV OpenSSL adds), no SNI, no ALPN
    assert tls12.startswith("t12i") and tls12[8:10] == "00" and tls12[4:6] == "02"
    assert h2[8:10] == "h2" and h2 != a
    assert len({a, tls12, h2}) == 3
    # the fingerprint is the `tls` entity key and part of the `fp` key
    for ex in exs:
        assert ex.keys.get("tls") == ex.client.fingerprint
        assert ex.client.sni in ("localhost", "")


@needs_openssl
@pytest.mark.parametrize("factory", _loops())
def test_ja4_from_openssl_and_curl(factory: Callable[[], asyncio.AbstractEventLoop], pki: dict[str, Path]) -> None:
    curl = shutil.which("curl")

    async def clients(port: int) -> None:
        req = b"GET /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        await _run("openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
                   "-alpn", "http/1.1", "-quiet", "-no_ign_eof", stdin=req)
        await _run("openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", "-tls1_2",
                   "-cipher", "ECDHE-RSA-AES256-GCM-SHA384", "-quiet", "-no_ign_eof", stdin=req)
        if curl:
            await _run(curl, "-sk", "--http1.1", "--resolve", f"localhost:{port}:127.0.0.1",
                       f"https://localhost:{port}/echo")

    exs = _in_loop(factory, pki, clients)
    fps = [ex.client.fingerprint for ex in exs]
    assert len(fps) == (3 if curl else 2), fps
    assert all(JA4_RE.match(f) for f in fps), fps
    assert fps[0].startswith("t13d") and fps[0][8:10] == "h1"
    assert fps[1].startswith("t12d") and fps[1][4:6] == "02" and fps[1][8:10] == "00"
    assert fps[0] != fps[1]


# --- the parser --------------------------------------------------------------------------------


def _ext(t: int, body: bytes) -> bytes:
    return struct.pack("!HH", t, len(body)) + body


def hello(ciphers: list[int], exts: list[bytes], version: int = 0x0303) -> bytes:
    body = struct.pack("!H", version) + bytes(32) + b"\x00"
    body += struct.pack("!H", 2 * len(ciphers)) + b"".join(struct.pack("!H", c) for c in ciphers)
    body += b"\x01\x00"
    ext = b"".join(exts)
    body += struct.pack("!H", len(ext)) + ext
    return b"\x01" + len(body).to_bytes(3, "big") + body


def _sni(name: bytes) -> bytes:
    entry = b"\x00" + struct.pack("!H", len(name)) + name
    return _ext(0, struct.pack("!H", len(entry)) + entry)


def _alpn(*names: bytes) -> bytes:
    lst = b"".join(bytes([len(n)]) + n for n in names)
    return _ext(0x10, struct.pack("!H", len(lst)) + lst)


def _u16s(t: int, vals: list[int], wide: bool = True) -> bytes:
    raw = b"".join(struct.pack("!H", v) for v in vals)
    return _ext(t, (struct.pack("!H", len(raw)) if wide else bytes([len(raw)])) + raw)


# The FoxIO example (Chrome): its cipher list gives the documented part b.
CHROME_CIPHERS = [0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xC02C, 0xC030, 0xCCA9, 0xCCA8, 0xC013, 0xC014,
                  0x009C, 0x009D, 0x002F, 0x0035]


def test_ja4_known_values() -> None:
    exts = [_ext(0x0A0A, b""), _sni(b"example.com"), _alpn(b"h2", b"http/1.1"), _ext(0x0017, b""),
            _u16s(0x002B, [0x1A1A, 0x0304, 0x0303], wide=False), _u16s(0x000D, [0x0403, 0x0804, 0x0401]),
            _ext(0xFF01, b"\x00")]
    h = parse_client_hello(hello([0x2A2A, *CHROME_CIPHERS], exts))
    assert h is not None and h["server_name"] == "example.com" and h["version"] == 0x0304
    fp = ja4(h)
    head, b, c = fp.split("_")
    assert head == "t13d1506h2"  # GREASE cipher and extension not counted
    assert b == "8daaf6152771"
    import hashlib

    # sorted extensions without SNI and ALPN, then the signature algorithms in the order sent
    assert c == hashlib.sha256(b"000d,0017,002b,ff01_0403,0804,0401").hexdigest()[:12]
    # no ALPN, no SNI, no extensions at all: zeros
    bare = ja4_of(hello([0x002F], [], version=0x0301))
    assert bare.startswith("t10i010000_") and bare.endswith("_000000000000")
    # a non-alphanumeric ALPN uses the hex of its first and last byte
    assert ja4_of(hello([0x002F], [_alpn(b"\xab\x01\xcd")]))[8:10] == "ad"


def test_ja4_of_a_chrome_hello_matches_the_published_value() -> None:
    """Chrome 1xx as seen by public JA4 tools: JA4_r `t13d1516h2_002f,...,cca9_0005,000a,000b,000d,0012,0017,
    001b,0023,002b,002d,0033,4469,fe0d,ff01_0403,0804,0401,0503,0805,0501,0806,0601` hashes to
    t13d1516h2_8daaf6152771_02713d6af862. Extensions in Chrome's shuffled order, with GREASE."""
    sig = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
    exts = [_ext(0x3A3A, b""), _ext(0x0023, b""), _ext(0x0017, b""), _ext(0x001B, b"\x02\x00\x02"),
            _u16s(0x0012, []), _u16s(0x000A, [0x4A4A, 0x001D, 0x0017, 0x0018]), _sni(b"www.example.com"),
            _ext(0xFE0D, b"\x00" * 8), _ext(0x4469, b"\x00\x03\x02h2"), _u16s(0x000D, sig), _ext(0xFF01, b"\x00"),
            _ext(0x0005, b"\x01\x00\x00\x00\x00"), _u16s(0x002B, [0x5A5A, 0x0304, 0x0303], wide=False),
            _ext(0x000B, b"\x01\x00"), _ext(0x002D, b"\x01\x01"), _alpn(b"h2", b"http/1.1"),
            _ext(0x0033, b"\x00\x00"), _ext(0x6A6A, b"\x00")]
    assert ja4_of(hello([0x8A8A, *CHROME_CIPHERS], exts)) == "t13d1516h2_8daaf6152771_02713d6af862"


def test_parser_survives_hostile_input() -> None:
    good = hello(CHROME_CIPHERS, [_sni(b"a.test"), _alpn(b"h2"), _u16s(0x000D, [0x0403])])
    assert JA4_RE.match(ja4_of(good))
    rng = random.Random(5)
    cases: list[bytes] = [b"", b"\x01", b"\x01\xff\xff\xff", b"\x02" + good[1:], good[:-1], good[:40]]
    cases += [good[:i] for i in range(0, len(good), 3)]
    for _ in range(3000):  # random bit flips and truncations of a valid hello
        b = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        cases.append(bytes(b[: rng.randint(0, len(b))]) if rng.random() < 0.3 else bytes(b))
    cases += [os.urandom(rng.randint(0, 600)) for _ in range(500)]
    # lengths pointing far beyond the message, odd lengths, an absurd number of tiny extensions
    cases.append(hello([0x002F], [struct.pack("!HH", 0x0D, 0xFFFF)]))
    cases.append(hello([0x002F], [_ext(0x10, b"\x00\x05\xff")]))
    cases.append(hello([0x002F], [_ext(0x2B, b"\xff\x03\x04")]))
    cases.append(hello([0x002F], [_ext(0, b"\x00\x10\x00\x00\x40" + b"x" * 3)]))
    cases.append(hello([0x002F], [_ext(0x3000 + i, b"") for i in range(8000)]))
    cases.append(b"\x01" + (1 << 20).to_bytes(3, "big") + bytes(1 << 20))
    t = time.perf_counter()
    for c in cases:
        out = ja4_of(c)
        assert out == "" or ANY_JA4.match(out), (c[:20], out)
    assert time.perf_counter() - t < 5.0
    # the work per hello is bounded: a 64 KiB hello of ciphers, sigalgs or empty extensions is refused
    # quickly instead of being sorted and hashed (no real client sends more than a few dozen)
    heavy = [hello(list(range(1, 32000)), []), hello([0x002F], [_u16s(0x000D, list(range(1, 32000)))]),
             hello([0x002F], [_ext(0x3000 + i, b"") for i in range(16000)])]
    for c in heavy:
        t = time.perf_counter()
        assert ja4_of(c) == ""
        assert time.perf_counter() - t < 0.05


def test_callback_never_raises() -> None:
    from bastion.frontends.proxy.ja4 import _on_message, fingerprint_of

    class Conn:
        pass

    class Frozen:
        __slots__ = ()

    c = Conn()
    _on_message(c, "read", 0x0304, 22, 1, b"\x01\x00\x00\x05garbage")
    assert fingerprint_of(c) == ("", "")
    _on_message(Frozen(), "read", 0x0304, 22, 1, hello([0x002F], []))  # no attribute can be set: ignored
    _on_message(None, "read", 0x0304, 22, 1, None)  # type: ignore[arg-type]
    d = Conn()
    _on_message(d, "read", 0x0304, 22, 1, hello([0x002F], [_sni(b"api.test")]))
    fp, sni = fingerprint_of(d)
    assert JA4_RE.match(fp) and sni == "api.test"
    e = Conn()
    _on_message(e, "read", 0x0304, 22, 1, hello([0x002F], [_sni(b"evil\r\nX-Injected: 1")]))
    assert JA4_RE.match(fingerprint_of(e)[0]) and fingerprint_of(e)[1] == ""  # SNI present ('d'), name dropped
    assert fingerprint_of(e)[0][3] == "d"
    # a second (retried) hello does not overwrite the first
    _on_message(d, "read", 0x0304, 22, 1, hello([0x002F, 0x0035], []))
    assert fingerprint_of(d)[0] == fp


def test_ja4_can_be_switched_off(pki: dict[str, Path]) -> None:
    import _ssl

    from bastion.config import TLSConfig
    from bastion.frontends.proxy.tls import server_context

    def cb(ctx: ssl.SSLContext) -> object:
        return _ssl._SSLContext._msg_callback.__get__(ctx)  # type: ignore[attr-defined]

    on = server_context(TLSConfig(cert=pki["cert"], key=pki["key"]))
    off = server_context(TLSConfig(cert=pki["cert"], key=pki["key"], ja4=False))
    assert on is not None and off is not None
    assert cb(on) is not None and cb(off) is None


def test_a_decision_on_a_ja4_applies_to_that_client_software_only(pki: dict[str, Path]) -> None:
    from bastion.decision import Decision, DecisionAction, KeyKind, Origin

    async def main() -> tuple[int, int, int]:
        async with upstream_server() as up:
            cfg = make_config(up.url, server={"tls": {"cert": str(pki["cert"]), "key": str(pki["key"])}})
            async with gateway(cfg, only={"decisions", "risk"}) as gw:
                first = await _py_get(gw.port, _client(["h2", "http/1.1"]))
                fp = gw.sink.exchanges[-1].client.fingerprint
                core = next(d for d in gw.runtime.pipeline.detectors if d.name == "decisions").core
                core.store.add(Decision(KeyKind.TLS, fp, DecisionAction.DENY, Origin.ADMIN, reason="bot stack"))
                denied = await _py_get(gw.port, _client(["h2", "http/1.1"]))
                other = await _py_get(gw.port, _client(["http/1.1"]))
                return first, denied, other

    with asyncio.Runner() as runner:
        assert runner.run(main()) == (200, 403, 200)
