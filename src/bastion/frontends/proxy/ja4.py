"""JA4: the TLS ClientHello fingerprint (FoxIO, BSD-3), computed when Bastion terminates TLS.

`t13d1516h2_8daaf6152771_b186095e22b6`:

- part a: protocol (`t` TCP), TLS version (the highest of supported_versions, else the hello's
  legacy version: `13`, `12`, `11`, `10`, `s3`, `00` unknown), `d` when SNI is present else `i`,
  cipher count and extension count (two digits each, capped at 99), first and last character of
  the first ALPN value (`00` without ALPN; the hex of its first/last byte when not alphanumeric);
- part b: sha256 of the sorted cipher suites (4-digit hex, comma separated), first 12 hex chars;
- part c: sha256 of the sorted extensions without SNI (0000) and ALPN (0010), then `_` and the
  signature algorithms in the order sent, first 12 hex chars.

GREASE values (RFC 8701, 0x?a?a) are ignored everywhere. An empty list hashes to twelve zeros.

The hello is read through `SSLContext._msg_callback` (CPython >= 3.8): OpenSSL hands every handshake
message to it, the same under asyncio's and uvloop's SSL (both drive an `SSLObject` over memory
BIOs with the listener's context). The callback attaches the fingerprint to the `SSLObject`, which
the proxy reads in `connection_made` through `transport.get_extra_info("ssl_object")`.

The parser is defensive: every length is checked against what is left, the work is bounded (no
hello over 128 KiB, 200 extensions, 512 cipher suites or signature algorithms: about 50 us at
worst), and malformed input gives '' instead of an exception: the callback must never raise (an
exception there would fail the handshake).
"""

from __future__ import annotations

import hashlib
import ssl
import struct
from typing import Any

ATTR = "_bastion_ja4"  # the attribute set on the SSLObject
ATTR_SNI = "_bastion_sni"
_MAX_HELLO = 1 << 17  # larger hello messages are not fingerprinted
_MAX_EXTENSIONS = 200  # browsers send about 16, tools up to about 30
_MAX_LIST = 512  # cipher suites or signature algorithms (about 350 suites exist): beyond, not a client

_VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2",
             0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3"}
_EMPTY = "000000000000"
_CLIENT_HELLO = 1
_HANDSHAKE = 22
_U16 = struct.Struct("!H")
_HOST_CHARS = b"abcdefghijklmnopqrstuvwxyz0123456789.-_"


_GREASE = frozenset(0x0A0A + 0x1010 * i for i in range(16))  # RFC 8701: 0x0a0a, 0x1a1a ... 0xfafa
_memo: dict[tuple[Any, ...], str] = {}  # JA4 by the fields it is made of: clients repeat themselves


def _grease(v: int) -> bool:
    return v in _GREASE


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:12] if text else _EMPTY


def _alnum(b: int) -> bool:
    return 0x30 <= b <= 0x39 or 0x41 <= b <= 0x5A or 0x61 <= b <= 0x7A


def _u16_list(data: bytes, start: int, end: int) -> list[int]:
    """The big-endian 16-bit values of data[start:end] (an odd trailing byte is dropped)."""
    n = (end - start) // 2
    return list(struct.unpack_from(f"!{n}H", data, start)) if n > 0 else []


def parse_client_hello(msg: bytes) -> dict[str, Any] | None:
    """The fields JA4 needs from a ClientHello handshake message (with its 4-byte header), or None
    when it is not one or is malformed. Never raises on any input."""
    try:
        return _parse(msg)
    except (struct.error, IndexError, ValueError, TypeError):
        return None


def _parse(msg: bytes) -> dict[str, Any] | None:
    n = len(msg)
    if n < 4 + 2 + 32 + 1 + 2 + 1 or n > _MAX_HELLO or msg[0] != _CLIENT_HELLO:
        return None
    body_len = (msg[1] << 16) | (msg[2] << 8) | msg[3]
    end = 4 + body_len
    if end > n:
        return None
    legacy = _U16.unpack_from(msg, 4)[0]
    p = 4 + 2 + 32
    sid_len = msg[p]
    p += 1 + sid_len
    if p + 2 > end:
        return None
    cs_len = _U16.unpack_from(msg, p)[0]
    p += 2
    if cs_len % 2 or p + cs_len > end or cs_len > 2 * _MAX_LIST:
        return None
    ciphers = [c for c in _u16_list(msg, p, p + cs_len) if c not in _GREASE]
    p += cs_len
    if p + 1 > end:
        return None
    comp_len = msg[p]
    p += 1 + comp_len
    if p > end:
        return None
    exts: list[int] = []
    versions: list[int] = []
    sigalgs: list[int] = []
    sni = ""
    has_sni = False
    alpn = b""
    if p + 2 <= end:  # extensions are optional (SSL 3.0-style hellos)
        ext_total = _U16.unpack_from(msg, p)[0]
        p += 2
        ext_end = p + ext_total
        if ext_end > end:
            return None
        while p + 4 <= ext_end:
            if len(exts) >= _MAX_EXTENSIONS:
                return None  # no real client sends this many: bound the work per hello
            etype, elen = struct.unpack_from("!HH", msg, p)
            p += 4
            if p + elen > ext_end:
                return None
            if etype not in _GREASE:
                exts.append(etype)
                if etype == 0x0000:
                    has_sni = True
                    sni = _server_name(msg, p, p + elen)
                elif etype == 0x0010 and elen >= 3:
                    # protocol_name_list: u16 length, then u8-prefixed names; JA4 takes the first
                    first = msg[p + 2]
                    if first and p + 3 + first <= p + elen:
                        alpn = msg[p + 3 : p + 3 + first]
                elif etype == 0x002B and elen >= 1:
                    vl = msg[p]
                    versions = [v for v in _u16_list(msg, p + 1, min(p + 1 + vl, p + elen)) if v not in _GREASE]
                elif etype == 0x000D and elen >= 2:
                    sl = _U16.unpack_from(msg, p)[0]
                    if sl > 2 * _MAX_LIST:
                        return None
                    sigalgs = [s for s in _u16_list(msg, p + 2, min(p + 2 + sl, p + elen)) if s not in _GREASE]
            p += elen
    return {"version": max(versions) if versions else legacy, "ciphers": ciphers, "extensions": exts,
            "sni": has_sni, "server_name": sni, "alpn": alpn, "sigalgs": sigalgs}


def _server_name(msg: bytes, p: int, end: int) -> str:
    # server_name_list: u16 length, then (u8 type, u16 length, name); host_name is type 0
    if p + 5 > end or msg[p + 2] != 0:
        return ""
    ln = _U16.unpack_from(msg, p + 3)[0]
    if ln == 0 or ln > 255 or p + 5 + ln > end:
        return ""
    name = msg[p + 5 : p + 5 + ln].lower()
    # a host name or nothing: hostile bytes (controls, CR/LF, non-ASCII) never reach Client.sni
    return name.decode("ascii") if not name.translate(None, _HOST_CHARS) else ""


def ja4(hello: dict[str, Any], proto: str = "t") -> str:
    """The JA4 string of a parsed ClientHello (memoised: a client software sends the same fields)."""
    key = (proto, hello["version"], hello["sni"], hello["alpn"], tuple(hello["ciphers"]), tuple(hello["extensions"]),
           tuple(hello["sigalgs"]))
    fp = _memo.get(key)
    if fp is None:
        fp = _ja4(hello, proto)
        if len(_memo) >= 4096:
            _memo.clear()
        _memo[key] = fp
    return fp


def _ja4(hello: dict[str, Any], proto: str) -> str:
    ciphers: list[int] = hello["ciphers"]
    exts: list[int] = hello["extensions"]
    alpn: bytes = hello["alpn"]
    if not alpn:
        a = "00"
    elif _alnum(alpn[0]) and _alnum(alpn[-1]):
        a = chr(alpn[0]) + chr(alpn[-1])
    else:
        a = f"{alpn[0]:02x}"[0] + f"{alpn[-1]:02x}"[-1]
    head = (f"{proto}{_VERSIONS.get(hello['version'], '00')}{'d' if hello['sni'] else 'i'}"
            f"{min(len(ciphers), 99):02d}{min(len(exts), 99):02d}{a}")
    part_b = _hash(",".join(f"{c:04x}" for c in sorted(ciphers)))
    ext_text = ",".join(f"{e:04x}" for e in sorted(e for e in exts if e not in (0x0000, 0x0010)))
    if ext_text and hello["sigalgs"]:
        ext_text += "_" + ",".join(f"{s:04x}" for s in hello["sigalgs"])
    return f"{head}_{part_b}_{_hash(ext_text)}"


def ja4_of(msg: bytes) -> str:
    """JA4 of a raw ClientHello handshake message; '' when it does not parse. Never raises."""
    hello = parse_client_hello(msg)
    if hello is None:
        return ""
    try:
        return ja4(hello)
    except Exception:  # a fingerprint is never worth a failed handshake
        return ""


def _on_message(conn: Any, direction: str, version: int, content_type: int, msg_type: int, data: bytes) -> None:
    # Called by OpenSSL for every record header and handshake message, both directions: keep the
    # common path to three comparisons. Only the first ClientHello counts (not a retried one).
    if content_type != _HANDSHAKE or msg_type != _CLIENT_HELLO or direction != "read":
        return
    try:
        if getattr(conn, ATTR, None) is None:
            hello = parse_client_hello(data)
            fp = ja4(hello) if hello is not None else ""
            setattr(conn, ATTR, fp)
            if hello is not None and hello["server_name"]:
                setattr(conn, ATTR_SNI, hello["server_name"])
    except Exception:  # never fail a handshake over a fingerprint
        pass


def install(ctx: ssl.SSLContext) -> bool:
    """Fingerprint every ClientHello a server context reads. False when this Python cannot.

    The callback is set on the C base class directly: `ssl.SSLContext._msg_callback`'s Python
    wrapper converts every argument to an enum per message, a cost paid on every handshake."""
    import _ssl

    try:
        _ssl._SSLContext._msg_callback.__set__(ctx, _on_message)  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        return False
    return True


def fingerprint_of(sslobj: object) -> tuple[str, str]:
    """(JA4, SNI host) recorded for a connection's SSLObject ('' when unknown)."""
    return getattr(sslobj, ATTR, None) or "", getattr(sslobj, ATTR_SNI, None) or ""
