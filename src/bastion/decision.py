"""Decisions: the typed, expiring contract between detection and enforcement.

A Decision says "do ACTION to requests carrying KEY until UNTIL", whatever decided it (the config,
an operator, the risk engine, a behaviour scenario, a rule). Detectors create decisions; the
`decisions` and `risk` detectors enforce them. `DecisionIndex` answers "which decision applies to
this request" with one dict lookup per key and, for addresses, one lookup per distinct prefix
length in use (a prefix index), never a loop over all entries.
"""

from __future__ import annotations

import enum
import heapq
import ipaddress
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any


class KeyKind(enum.StrEnum):
    """What a decision (or an entity key) is about."""

    IP = "ip"  # an address or a CIDR range
    NETWORK = "net"  # the client's /24 or /64, as an entity key
    API_KEY = "api_key"  # hashed
    USER = "user"
    SESSION = "session"  # hashed
    FINGERPRINT = "fp"  # client fingerprint from header names/order, UA family, Accept-*
    TLS = "tls"  # TLS ClientHello fingerprint when Bastion terminates TLS
    ENTITY = "entity"


class DecisionAction(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    CHALLENGE = "challenge"
    THROTTLE = "throttle"


class Origin(enum.StrEnum):
    CONFIG = "config"
    ADMIN = "admin"
    RISK = "risk"
    SCENARIO = "scenario"
    RULE = "rule"


MANUAL_ORIGINS = frozenset({Origin.CONFIG, Origin.ADMIN})


@dataclass(slots=True, frozen=True)
class Decision:
    """One expiring action on one key. `until` None means permanent; times are epoch seconds."""

    kind: KeyKind
    value: str
    action: DecisionAction
    origin: Origin
    until: float | None = None
    reason: str = ""
    explanation: tuple[str, ...] = ()  # the events that led here, oldest first
    created: float = 0.0
    id: str = field(default_factory=lambda: secrets.token_hex(6))
    scope: str = ""  # "" every request; "login" or "lookup": only those requests (software decisions)

    def active(self, now: float) -> bool:
        return self.until is None or self.until > now

    def remaining(self, now: float) -> int | None:
        return None if self.until is None else max(0, int(self.until - now + 0.999))

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "value": self.value,
            "action": self.action.value,
            "origin": self.origin.value,
            "until": self.until,
            "reason": self.reason,
            "explanation": list(self.explanation),
            "created": self.created,
            "scope": self.scope,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Decision:
        """Parse a stored decision; raises ValueError (never anything else) on a bad record."""
        try:
            kind = KeyKind(d["kind"])
            value = str(d["value"])
            if kind == KeyKind.IP:
                value = normalise_ip_value(value)
            until = d.get("until")
            return cls(
                kind=kind,
                value=value,
                action=DecisionAction(d["action"]),
                origin=Origin(d.get("origin", "admin")),
                until=None if until is None else float(until),
                reason=str(d.get("reason", ""))[:200],
                explanation=tuple(str(x)[:200] for x in d.get("explanation", ()))[:32],
                created=float(d.get("created", 0.0)),
                id=str(d.get("id") or secrets.token_hex(6))[:32],
                scope=str(d.get("scope") or ""),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"bad decision record: {exc}") from None

    def renewed(self, **changes: Any) -> Decision:
        return replace(self, **changes)


def normalise_ip_value(value: str) -> str:
    """An address or network in canonical form ('10.0.0.0/8', '2001:db8::1'); ValueError if neither."""
    value = value.strip()
    if "/" in value:
        net = ipaddress.ip_network(value, strict=False)
        if net.prefixlen == net.max_prefixlen:
            return str(net.network_address)
        return str(net)
    return str(ipaddress.ip_address(value))


_RANK = {DecisionAction.THROTTLE: 0, DecisionAction.ALLOW: 1, DecisionAction.CHALLENGE: 2, DecisionAction.DENY: 3}


def _strength(d: Decision) -> tuple[int, int]:
    """Manual decisions beat automatic ones, and a manual allow beats every automatic action (an
    allow-listed partner is never auto-banned); within one class, deny beats challenge beats allow."""
    if d.origin in MANUAL_ORIGINS:
        return (1, _RANK[d.action])
    return (0, _RANK[d.action])


class _PrefixIndex:
    """Networks by prefix length: lookup is one shift and one dict get per prefix length in use."""

    __slots__ = ("bits", "by_len", "lens")

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.by_len: dict[int, dict[int, list[Decision]]] = {}
        self.lens: list[int] = []  # longest first: the most specific match is found first

    def add(self, net: ipaddress.IPv4Network | ipaddress.IPv6Network, d: Decision) -> None:
        plen = net.prefixlen
        table = self.by_len.get(plen)
        if table is None:
            table = self.by_len[plen] = {}
            self.lens = sorted(self.by_len, reverse=True)
        table.setdefault(int(net.network_address) >> (self.bits - plen), []).append(d)

    def remove(self, net: ipaddress.IPv4Network | ipaddress.IPv6Network, d: Decision) -> None:
        plen = net.prefixlen
        table = self.by_len.get(plen)
        if table is None:
            return
        k = int(net.network_address) >> (self.bits - plen)
        lst = table.get(k)
        if lst is None:
            return
        lst[:] = [x for x in lst if x.id != d.id]
        if not lst:
            del table[k]
            if not table:
                del self.by_len[plen]
                self.lens = sorted(self.by_len, reverse=True)

    def matches(self, addr: int) -> Iterator[tuple[int, list[Decision]]]:
        for plen in self.lens:
            lst = self.by_len[plen].get(addr >> (self.bits - plen))
            if lst:
                yield plen, lst


class DecisionIndex:
    """All current decisions of one process, indexed for per-request lookups.

    Expired decisions are dropped lazily (on lookup) and by `purge(now)`, which a background task
    or the store calls; a heap of expiry times keeps purge cheap.
    """

    def __init__(self) -> None:
        self.by_id: dict[str, Decision] = {}
        self._exact: dict[tuple[KeyKind, str], list[Decision]] = {}
        self.exact = self._exact  # (read-only: whether any decision is on a key other than an address)
        self._v4 = _PrefixIndex(32)
        self._v6 = _PrefixIndex(128)
        self._expiry: list[tuple[float, str]] = []
        self.version = 0  # bumped on every change (caches may key on it)

    def __len__(self) -> int:
        return len(self.by_id)

    def __iter__(self) -> Iterator[Decision]:
        return iter(list(self.by_id.values()))

    def add(self, d: Decision) -> None:
        if d.id in self.by_id:
            self.remove(d.id)
        self.by_id[d.id] = d
        if d.kind == KeyKind.IP:
            net = ipaddress.ip_network(d.value, strict=False)
            (self._v4 if net.version == 4 else self._v6).add(net, d)
        else:
            self._exact.setdefault((d.kind, d.value), []).append(d)
        if d.until is not None:
            heapq.heappush(self._expiry, (d.until, d.id))
        self.version += 1

    def remove(self, decision_id: str) -> Decision | None:
        d = self.by_id.pop(decision_id, None)
        if d is None:
            return None
        if d.kind == KeyKind.IP:
            net = ipaddress.ip_network(d.value, strict=False)
            (self._v4 if net.version == 4 else self._v6).remove(net, d)
        else:
            lst = self._exact.get((d.kind, d.value))
            if lst is not None:
                lst[:] = [x for x in lst if x.id != d.id]
                if not lst:
                    del self._exact[(d.kind, d.value)]
        self.version += 1
        return d

    def purge(self, now: float) -> list[Decision]:
        """Drop expired decisions; return them."""
        gone: list[Decision] = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, did = heapq.heappop(heap)
            d = self.by_id.get(did)
            if d is not None and not d.active(now):
                self.remove(did)
                gone.append(d)
        return gone

    def has_exact(self) -> bool:
        """Whether any decision is on a key other than an address (else those lookups are skipped)."""
        return bool(self._exact)

    def find(self, kind: KeyKind, value: str) -> list[Decision]:
        return [d for d in self._exact.get((kind, value), ())]

    def lookup_ip(self, ip: str, now: float) -> Decision | None:
        """The decision that applies to an address: the most specific prefix wins, then strength."""
        if not self._v4.lens and not self._v6.lens:
            return None
        value = _ipv4_int(ip)
        if value >= 0:
            index = self._v4
        else:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                return None
            if addr.version == 6 and addr.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d
                addr = addr.ipv4_mapped
            index = self._v4 if addr.version == 4 else self._v6
            value = int(addr)
        best: Decision | None = None
        best_rank: tuple[int, int, int] | None = None
        for plen, lst in index.matches(value):
            for d in lst:
                if not d.active(now):
                    continue
                manual, strength = _strength(d)
                # manual first, then the longest prefix, then the stronger action
                rank = (manual, plen, strength)
                if best_rank is None or rank > best_rank:
                    best, best_rank = d, rank
        return best

    def lookup_key(self, kind: KeyKind, value: str, now: float) -> Decision | None:
        lst = self._exact.get((kind, value))
        if not lst:
            return None
        return strongest(d for d in lst if d.active(now))

    def lookup(self, keys: dict[str, str], now: float) -> Decision | None:
        """The strongest decision over all of an exchange's keys (`{"ip": ..., "user": ...}`)."""
        found: list[Decision] = []
        exact = self._exact
        for name, value in keys.items():
            if not value:
                continue
            if name == "ip":
                d = self.lookup_ip(value, now)
            else:
                kind = _KINDS.get(name)
                if kind is None or not exact:
                    continue
                d = self.lookup_key(kind, value, now)
            if d is not None:
                found.append(d)
        if not found:
            return None
        return found[0] if len(found) == 1 else strongest(found)


_KINDS = {k.value: k for k in KeyKind}
_V4: dict[str, int] = {}


def _ipv4_int(ip: str) -> int:
    """A dotted-quad IPv4 address as an int, or -1 (then ipaddress parses it): the common case fast."""
    n = _V4.get(ip)
    if n is not None:
        return n
    n = _parse_v4(ip)
    if len(_V4) > 100_000:
        _V4.clear()
    _V4[ip] = n
    return n


def _parse_v4(ip: str) -> int:
    parts = ip.split(".")
    if len(parts) != 4:
        return -1
    n = 0
    for p in parts:
        if not (p.isascii() and p.isdigit()) or len(p) > 3 or (len(p) > 1 and p[0] == "0"):
            return -1
        v = int(p)
        if v > 255:
            return -1
        n = (n << 8) | v
    return n


def strongest(decisions: Iterable[Decision]) -> Decision | None:
    best: Decision | None = None
    for d in decisions:
        if best is None or _strength(d) > _strength(best):
            best = d
    return best
