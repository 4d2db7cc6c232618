"""Who the client is, and what the upstream is told about it.

A client's own `X-Forwarded-For` is a claim, not a fact: anyone can send `X-Forwarded-For: 10.0.0.1`
to slip past a per-IP limit or an allow list. The resolved client IP therefore comes from those
headers only when the TCP peer is a configured trusted proxy, walking the chain from the right and
stopping at the first address that is not itself trusted (RFC 7239 section 5.2 semantics).

Towards the upstream the same rule holds: headers from an untrusted peer are replaced, not
appended to, so the API behind Bastion can believe `X-Forwarded-For` / `Forwarded` / `X-Real-IP`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """A set of CIDRs whose forwarding headers are believed. Empty by default: trust nobody."""

    __slots__ = ("_cache", "_nets")

    def __init__(self, cidrs: Iterable[str] = ()) -> None:
        self._nets: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._nets)

    def contains(self, ip: str) -> bool:
        if not self._nets:
            return False
        hit = self._cache.get(ip)
        if hit is None:
            addr = parse_ip(ip)
            hit = addr is not None and any(addr.version == n.version and addr in n for n in self._nets)
            if len(self._cache) > 4096:  # peers of a busy gateway: keep the memo bounded
                self._cache.clear()
            self._cache[ip] = hit
        return hit


def parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address from a forwarding header element: `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `"[::1]"`."""
    v = value.strip().strip('"')
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            return None
        v = v[1:end]
    elif v.count(":") == 1:  # IPv4 with a port
        v = v.partition(":")[0]
    try:
        addr = ipaddress.ip_address(v)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def forwarded_for_chain(xff: list[str], forwarded: list[str]) -> list[str]:
    """The client chain, leftmost first, from X-Forwarded-For (preferred) or Forwarded `for=`."""
    out: list[str] = []
    if xff:
        for value in xff:
            out.extend(p.strip() for p in value.split(",") if p.strip())
        return out
    for value in forwarded:
        for element in value.split(","):
            for pair in element.split(";"):
                k, _, v = pair.strip().partition("=")
                if k.strip().lower() == "for":
                    out.append(v.strip())
    return out


def resolve_client_ip(peer_ip: str, chain: list[str], trusted: TrustedProxies) -> str:
    """The client address: the peer, unless the peer is trusted, then the nearest untrusted hop.

    An element that is not an address (`unknown`, an obfuscated id, garbage) ends the walk: the hop
    that reported it is the last one we can vouch for.
    """
    if not trusted.contains(peer_ip):
        return peer_ip
    current = peer_ip
    for element in reversed(chain):
        addr = parse_ip(element)
        if addr is None:
            return current
        current = str(addr)
        if not trusted.contains(current):
            return current
    return current


def _forwarded_node(ip: str) -> str:
    return f'"[{ip}]"' if ":" in ip else ip


def forwarding_headers(
    peer_ip: str,
    client_ip: str,
    proto: str,
    host: str,
    peer_trusted: bool,
    xff: list[str],
    forwarded: list[str],
    xfp: str | None,
) -> list[tuple[bytes, bytes]]:
    """The forwarding headers to send upstream (the client's own ones were removed by the caller).

    From a trusted peer the chains are extended; from anyone else they start afresh with the peer.
    """
    out: list[tuple[bytes, bytes]] = []
    if peer_trusted and xff:
        out.append((b"X-Forwarded-For", (", ".join(xff) + ", " + peer_ip).encode("latin-1")))
    else:
        out.append((b"X-Forwarded-For", peer_ip.encode("latin-1")))
    fwd = f"for={_forwarded_node(peer_ip)};proto={proto}"
    if host and _plain_host(host):
        fwd += f';host="{host}"'
    if peer_trusted and forwarded:
        fwd = ", ".join(forwarded) + ", " + fwd
    out.append((b"Forwarded", fwd.encode("latin-1")))
    out.append((b"X-Forwarded-Proto", (xfp if peer_trusted and xfp else proto).encode("latin-1")))
    out.append((b"X-Real-IP", client_ip.encode("latin-1")))
    return out


# Only hosts made of host characters go into a quoted-string: never let a header value break it.
_PLAIN_HOST = re.compile(r"[A-Za-z0-9._:\[\]-]{1,255}")


def _plain_host(host: str) -> bool:
    return _PLAIN_HOST.fullmatch(host) is not None
