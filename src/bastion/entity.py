"""Entities: the keys of each exchange (IP, network, API key, user, session, fingerprint) and the
graph that links keys seen together into one attacker (or user).

Linking is union-find with care (ThreatX's idea, without its blind spots):
- strong keys (API key, user, session) link to each other and pull in the addresses they are used
  from, so an attacker's history follows them when they change IP;
- an address never merges two *identified* entities: a NAT or a corporate proxy shared by many
  users stays one weak key that counts how many identities it was seen with (`shared`);
- fingerprints and networks (/24, /64) are never linked (a popular browser fingerprint would merge
  thousands of users); they are keys of their own ("weak" keys), with a popularity count, that
  risk and decisions follow only for fresh anonymous requesters (see `follows_software`);
- caps bound every entity (addresses, strong keys), so no merge chain can swallow a population.

Memory is bounded: a node is a few slots, idle keys expire (`sweep`) and beyond `max_keys` the
graph evicts the least recently seen keys, clean ones before risky ones (`_evict`).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from bastion.exchange import Exchange

if TYPE_CHECKING:
    from bastion.jwtauth import JwtVerifier

STRONG_KINDS = frozenset({"api_key", "user", "session"})
WEAK_ORDER = ("fp", "tls", "net")  # weak keys, in linking order
_IDENTITIES = ("api_key", "user", "session")
_CLAIMED = ("api_key", "session")
WEAK_KINDS = frozenset({"fp", "tls", "net"})
ESTABLISHED = 2  # normal answers after which an entity is no longer judged by its client software
# A marker in the keys, not a key: "unverified" when `user` is a claim Bastion could not check (a JWT
# `sub` without `entity.jwt` keys, a Basic-auth name), "invalid" when a bearer JWT failed verification.
# An unverified user is not in the graph: it never links entities and never carries an automatic
# decision (see EntityGraph.observe); rules, scenarios and manual decisions still see it.
CLAIM = "claim"

# Cookie names that carry a session in common frameworks (Django, Rails, Express, PHP, Java, ASP.NET).
SESSION_COOKIES = frozenset(
    {"session", "sessionid", "sid", "connect.sid", "phpsessid", "jsessionid", "_session", "asp.net_sessionid",
     "session_id", "sessid", "laravel_session", "_session_id", "auth_session", "sess"}
)
# Beyond the known names, a cookie whose name has a `sess`, `session` or `sid` word (`_app_session`,
# `SESSION`, `.AspNetCore.Session`, `my-sid`) carries a session: applications rename their framework's
# cookie (Rails' `_<app>_session`), and a session left unrecognised turns every user behind an office
# NAT into one anonymous client.
SESSION_COOKIE_PATTERN = r"(^|[._-])(sess|session|sid)([._-]|$)"
API_KEY_HEADERS = ("x-api-key", "api-key", "x-apikey", "apikey", "x-auth-token")
# Headers left out of the fingerprint: they change within one client's session (cookies appear
# after login, bodies come and go) or are added by proxies, not by the client software.
_FP_SKIP = frozenset(
    {"cookie", "authorization", "content-length", "content-type", "x-request-id", "x-forwarded-for",
     "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-real-ip", "via", "if-none-match",
     "if-modified-since", "referer", "origin", "x-api-key", "api-key", "x-csrf-token", "x-xsrf-token",
     "cache-control", "pragma", "transfer-encoding", "expect", "te", "upgrade", "connection"}
)


@dataclass(slots=True)
class KeySettings:
    """How keys are read from a request (see BehaviourConfig.entity)."""

    user_header: str = ""  # a header set by an authenticating front (e.g. X-User)
    session_cookies: frozenset[str] = SESSION_COOKIES
    session_pattern: re.Pattern[str] | None = re.compile(SESSION_COOKIE_PATTERN)  # on lower-cased names
    api_key_headers: tuple[str, ...] = API_KEY_HEADERS
    api_key_params: tuple[str, ...] = ("api_key", "apikey", "key")
    salt: str = ""  # mixed into hashed keys; same on every instance so decisions are shared
    jwt: JwtVerifier | None = None  # verifies bearer JWTs (behaviour.entity.jwt); None: subs are claims
    wanted: frozenset[str] = frozenset()  # header names read in the one pass (set by __post_init__)

    def __post_init__(self) -> None:
        extra = {self.user_header.lower()} if self.user_header else set()
        self.wanted = frozenset({"authorization", *self.api_key_headers, *extra})


def hash_key(value: str, salt: str = "") -> str:
    """A short stable digest of a secret key value (API keys and session ids are never stored raw)."""
    return hashlib.blake2b((salt + value).encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


def network_of(ip: str) -> str:
    """The client's network: /24 for IPv4, /64 for IPv6 ('' when the address does not parse)."""
    if "." in ip and ":" not in ip:
        head, sep, _ = ip.rpartition(".")
        return head + ".0/24" if sep else ""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if addr.version == 6 and addr.ipv4_mapped is not None:
        return network_of(str(addr.ipv4_mapped))
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


_BROWSERS = (("edg/", "edge"), ("opr/", "opera"), ("firefox/", "firefox"), ("chrome/", "chrome"),
             ("crios/", "chrome"), ("safari/", "safari"))


def ua_family(ua: str) -> str:
    """A coarse User-Agent family ('chrome', 'curl', 'python-requests'): stable across versions."""
    if not ua:
        return "-"
    low = ua.lower()
    if low.startswith("mozilla/"):
        for marker, name in _BROWSERS:
            if marker in low:
                return name
        if "bot" in low or "crawler" in low or "spider" in low:
            return "bot"
        return "mozilla"
    token = low.split("/", 1)[0].split(" ", 1)[0]
    return "".join(c for c in token[:32] if c.isalnum() or c in "-_.") or "-"


def jwt_subject(token: str) -> str:
    """The unverified `sub` of a JWT ('' if the token is not one). Unverified is fine for *linking*:
    a forged sub only links the forger to that name, and verification is the auth detector's job."""
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) > 4096:
        return ""
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, orjson.JSONDecodeError):
        return ""
    if not isinstance(claims, dict):
        return ""
    sub = claims.get("sub")
    return str(sub)[:128] if isinstance(sub, str | int) else ""


_FP_VALUES = {"user-agent": 0, "accept": 1, "accept-language": 2, "accept-encoding": 3}
_FP_CUT = (256, 120, 40, 60)
_fp_cache: dict[str, str] = {}


def fingerprint(ex: Exchange) -> str:
    """Client software fingerprint: header names in order, UA family and the Accept-* values."""
    return _scan(ex, None, KeySettings())[0]


def _scan(ex: Exchange, found: dict[str, str] | None, s: KeySettings) -> tuple[str, dict[str, str]]:
    """One pass over the request headers: the fingerprint, and the first value of each header in
    `wanted` (lower-cased names). Fingerprints are memoised by their raw material."""
    names: list[str] = []
    values = ["", "", "", ""]
    wanted = s.wanted
    got: dict[str, str] = {} if found is None else found
    cookies: list[str] = []
    for k, v in ex.request.headers.items:
        lk = k.lower()
        i = _FP_VALUES.get(lk)
        if i is not None:
            if not values[i]:
                values[i] = v[: _FP_CUT[i]]
        elif lk == "cookie":
            cookies.append(v)
        if lk in wanted and lk not in got:
            got[lk] = v
        if lk not in _FP_SKIP and not lk.startswith("x-"):
            names.append(lk)
    if cookies:
        got["cookie"] = ";".join(cookies)
    raw = ",".join(names) + "|" + "|".join(values) + "|" + ex.client.fingerprint[:64]
    fp = _fp_cache.get(raw)
    if fp is None:
        material = f"{','.join(names)}|{ua_family(values[0])}|{values[1]}|{values[2]}|{values[3]}|" \
                   f"{ex.client.fingerprint[:64]}"
        fp = hashlib.blake2b(material.encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()
        if len(raw) <= 1024:  # (bounded: 50,000 raw materials of the 32 KiB of headers allowed are 1.6 GB)
            if len(_fp_cache) > 50_000:
                _fp_cache.clear()
            _fp_cache[raw] = fp
    return fp, got


def extract_keys(ex: Exchange, s: KeySettings, query: bool = True) -> dict[str, str]:
    """All entity keys of one exchange, as {kind: value}. Secret values are hashed. `query=False`
    leaves out an API key given in the query string (the rest depends only on headers and address)."""
    ip = ex.client.ip
    keys: dict[str, str] = {"ip": ip}
    net = network_of(ip)
    if net:
        keys["net"] = net
    fp, h = _scan(ex, None, s)
    auth = h.get("authorization") or ""
    if auth:
        scheme, _, cred = auth.strip().partition(" ")
        cred = cred.strip()
        sch = scheme.lower()
        if sch == "bearer" and cred:
            verifier = s.jwt
            if verifier is not None and cred.count(".") == 2:
                # only a verified subject is an identity; a failing token is none at all
                sub, ok = verifier.check(cred)
                if sub:
                    keys["user"] = sub
                elif ok:  # a verified token without a subject (a client's token): a credential
                    keys["api_key"] = hash_key(cred, s.salt)
                else:
                    keys[CLAIM] = "invalid"
            else:
                sub = jwt_subject(cred)
                if sub:
                    keys["user"] = sub
                    keys[CLAIM] = "unverified"
                    # A signed token itself is a session: the claim inside is forgeable, the whole
                    # token is not (no one else can present it), so it can be followed and refused
                    # anywhere. Not an unsigned one (`alg: none`, no signature): anyone can write the
                    # same bytes. (A session cookie, below, is the session when there is one.)
                    if len(cred.rpartition(".")[2]) >= 16:
                        keys["session"] = hash_key(cred, s.salt)
                else:
                    keys["api_key"] = hash_key(cred, s.salt)
        elif sch == "basic" and cred:
            try:
                user = base64.b64decode(cred, validate=False).decode("utf-8", "replace").split(":", 1)[0]
            except ValueError:
                user = ""
            if user:  # the API checks the password, not Bastion: a claim
                keys["user"] = user[:128]
                keys[CLAIM] = "unverified"
        elif cred:
            keys["api_key"] = hash_key(cred, s.salt)
    if "api_key" not in keys:
        for name in s.api_key_headers:
            v = h.get(name)
            if v:
                keys["api_key"] = hash_key(v.strip(), s.salt)
                break
        else:
            if query and s.api_key_params and "?" in ex.request.target:
                for k, v in ex.request.query_args():
                    if k.lower() in s.api_key_params and v:
                        keys["api_key"] = hash_key(v, s.salt)
                        break
    if s.user_header:
        u = h.get(s.user_header.lower())
        if u:  # set by a trusted authenticating front: verified
            keys["user"] = u.strip()[:128]
            if keys.get(CLAIM) == "unverified":
                del keys[CLAIM]
    cookie_line = h.get("cookie")
    if cookie_line:
        pattern = s.session_pattern
        other = ""  # the first cookie named like a session, when none has a known name
        for part in cookie_line.split(";"):
            name, eq, value = part.partition("=")
            if not eq or not value.strip():
                continue
            name = name.strip().lower()
            if name in s.session_cookies:
                keys["session"] = hash_key(value.strip(), s.salt)
                break
            if not other and pattern is not None and pattern.search(name):
                other = value.strip()
        else:
            if other:
                keys["session"] = hash_key(other, s.salt)
    keys["fp"] = fp
    if ex.client.fingerprint:
        keys["tls"] = ex.client.fingerprint[:64]
    return keys


# --- the graph ---------------------------------------------------------------------------------


class Entity:
    """A set of linked keys with one risk. Plain slots keep it small (about 190 bytes with one key)."""

    __slots__ = ("blocked_until", "good", "history", "hostile", "id", "last_get", "members", "n_ip", "n_strong",
                 "offenses", "risk", "risk_t", "scope", "seen")

    def __init__(self, eid: str, now: float) -> None:
        self.id = eid  # the key it was first seen with: stable while that key lives
        self.risk = 0.0
        self.risk_t = now
        self.offenses = 0  # blocks so far: each one lengthens the next (Fail2ban's bantime increment)
        self.n_ip = 0
        self.n_strong = 0
        # its nodes: a tuple (48 bytes for one, where a list grown by one append takes 88); merges and
        # drops, which change it, are rare next to the reads
        self.members: tuple[Node, ...] = ()
        self.history: list[tuple[float, str, float]] | None = None  # (time, rule id, points), oldest first
        self.blocked_until = 0.0
        self.seen = now
        self.good = 0  # requests the API answered normally (2xx/3xx, not a login or a lookup)
        self.hostile = 0  # requests with exploit findings (signatures, protocol): see RiskModel.feed
        self.scope = ""  # what a software (fingerprint) entity's block covers: "", "login", "lookup"
        # A fingerprint's or network's entity (their keys are never linked: one entity each): when a
        # request with the key last made a GET. Behaviour's sequence scenario needs nothing else of
        # them, so they have no activity record. (A 14th slot costs nothing: the allocator's size class
        # of 13 slots holds 14.)
        self.last_get = -1e18

    def keys(self) -> list[str]:
        return [m.key for m in self.members]

    @property
    def identified(self) -> bool:
        return self.n_strong > 0


class Node:
    """One key. `shared` counts identities a weak key was seen with (NAT address, popular fingerprint)."""

    __slots__ = ("bad", "entity", "key", "last", "seen", "shared")

    def __init__(self, key: str, entity: Entity, now: float) -> None:
        self.key = key
        self.entity = entity
        self.seen = now
        self.shared = 0
        self.last: Entity | None = None  # the identity this weak key was last seen with
        self.bad = 0  # fingerprints: addresses that only ever failed with it (set by behaviour)


@dataclass(slots=True)
class GraphLimits:
    max_ips: int = 64  # addresses one entity may hold (a rotating attacker beyond this is a new entity)
    max_strong: int = 16  # API keys/users/sessions one entity may hold
    idle_ttl: float = 24 * 3600.0  # keys unseen this long are forgotten
    max_keys: int = 1_000_000  # beyond this, the least recently seen keys are evicted early (clean ones first)
    popular: int = 5  # a weak key seen with this many identities is shared: it never carries a decision
    half_life: float = 600.0  # risk half-life, used when two entities' risks are merged


class KeyView:
    """The keys of one request, prepared for linking: their node names ('ip:1.2.3.4') and which of
    them identify the requester. Made once per distinct client (see BehaviourCore._keys, which
    memoises it by what the keys are made of) and shared: never modify it. `linked` is what the
    client's last request linked to (see EntityGraph.link)."""

    __slots__ = ("addr", "ident", "invalid", "ip", "keys", "linked", "names", "recheck", "tokens", "weak")

    def __init__(self, keys: dict[str, str], names: dict[str, str] | None = None) -> None:
        if names is None:
            names = {k: f"{k}:{v}" for k, v in keys.items()}
        self.keys = keys
        self.names = names
        # (kind, node name) of the identities, in linking order (an unverified user is left out)
        self.ident = tuple([(k, names[k]) for k in EntityGraph.identity_kinds(keys) if keys.get(k)])
        self.addr = keys.get("ip") or ""
        self.ip = names["ip"] if self.addr else ""
        self.weak = tuple([(k, names[k]) for k in WEAK_ORDER if keys.get(k)])
        self.linked: Resolved | None = None
        self.invalid = keys.get(CLAIM) == "invalid"  # a bearer JWT that failed verification
        # whether the keys hold a token (API key, session or user, verified or not): see Resolved.tokens
        self.tokens = "session" in keys or "api_key" in keys or "user" in keys
        # whether a memo of these keys must be checked again on every request (a verified token
        # expires; see BehaviourCore._keys)
        self.recheck = False


class Resolved:
    """What `observe` returns: the exchange's entity and the nodes of its keys. Read-only: the
    requests of one client share it while nothing changes (see EntityGraph.link).

    `epoch` is the graph's epoch when they were linked (-1 if a key left the graph meanwhile):
    while the graph's epoch is unchanged, every node here is still the live node of its key, so
    the later phases use them without looking them up again. `strong` is the first identity node
    (None for an anonymous request), `soft` the fingerprint and network nodes, in that order."""

    __slots__ = ("all", "entity", "epoch", "idents", "ip", "ipn", "nodes", "soft", "strong", "tokens", "weak")

    def __init__(self, entity: Entity, nodes: dict[str, Node] | None = None, epoch: int = -1,
                 idents: tuple[Node, ...] = (), ipn: Node | None = None, weak: tuple[Node, ...] = (),
                 soft: tuple[Node, ...] = (), ip: str = "", tokens: bool = True) -> None:
        self.entity = entity
        self.nodes: dict[str, Node] = {} if nodes is None else nodes
        self.epoch = epoch
        self.idents = idents  # the identity nodes (api_key, user, session), in linking order
        self.strong = idents[0] if idents else None
        self.ipn = ipn  # the address's node
        self.weak = weak  # fp, tls, net nodes
        self.soft = soft  # fp, net nodes (the TLS fingerprint is never a behaviour subject)
        self.ip = ip  # the address key's value ('' without one)
        self.all = tuple(self.nodes.values())  # every node, for the requests that only touch them
        # False when the linked keys hold no API key, session or user (KeyView.tokens): the exchange's
        # keys are these, so behaviour's token spread has nothing to count (True: look at the keys)
        self.tokens = tokens


class EntityGraph:
    """Union-find over keys with caps. Not thread-safe: one per event loop (one per worker)."""

    def __init__(self, limits: GraphLimits | None = None) -> None:
        self.limits = limits or GraphLimits()
        self.nodes: dict[str, Node] = {}
        # Counts keys that left the graph (they leave only through _drop): nodes held since an epoch
        # that is still current are the live nodes of their keys.
        self.epoch = 0
        self.merges = 0
        self.refused = 0
        self._last_sweep = 0.0
        from bastion.detect.behaviour.counters import Sweeper  # a tiny helper, shared

        self._sweeper = Sweeper()
        # Before this time no sweep slice can be due (see _sweep_slice): one comparison per request
        # instead of the sweeper's own test. A second early, so that float rounding never delays a slice.
        self._sweep_at = -1e300

    def __len__(self) -> int:
        return len(self.nodes)

    def node(self, key: str, now: float) -> Node:
        n = self.nodes.get(key)
        if n is None:
            ent = Entity(key, now)
            n = Node(key, ent, now)
            ent.members = (n,)
            kind = key.partition(":")[0]
            if kind == "ip":
                ent.n_ip = 1
            elif kind in STRONG_KINDS:
                ent.n_strong = 1
            self.nodes[key] = n
            if len(self.nodes) > self.limits.max_keys:
                self._evict(now)
        else:
            n.seen = now
        n.entity.seen = now
        return n

    def get(self, key: str) -> Node | None:
        return self.nodes.get(key)

    def entity_of(self, key: str) -> Entity | None:
        n = self.nodes.get(key)
        return None if n is None else n.entity

    def observe(self, keys: dict[str, str], now: float, names: dict[str, str] | None = None) -> Resolved:
        """Record the keys of one exchange, link them, and return the exchange's entity. `names`:
        the node name of each key ('ip:1.2.3.4'), when the caller has them already."""
        return self.link(KeyView(keys, names), now)

    def link(self, view: KeyView, now: float) -> Resolved:
        """observe(), for keys prepared once (a KeyView)."""
        last = view.linked
        if last is not None and last.epoch == self.epoch and last.ipn is not None:
            # The client's last request linked these very nodes and none has left the graph since:
            # unless linking would change something now (a merge, an address shared with another
            # identity), only their last sight moves.
            address = last.ipn
            first = last.strong
            if first is None:
                known = address.entity
                same = known.n_strong == 0  # else an anonymous request behind a NAT: see anonymous_at
            else:
                known = first.entity
                same = address.entity is known
                for n in last.idents:
                    if n.entity is not known:
                        same = False
            if same:
                for n in last.all:
                    n.seen = now
                    n.entity.seen = now
                if first is not None:
                    for n in last.weak:
                        self._saw_identity(n, known)
                if now >= self._sweep_at:  # a sweep slice may be due
                    self._sweep_slice(now)
                if known is not last.entity or last.epoch != self.epoch:
                    last = view.linked = Resolved(known, last.nodes, self.epoch, last.idents, address, last.weak,
                                                  last.soft, last.ip, last.tokens)
                return last
        epoch = self.epoch
        nodes: dict[str, Node] = {}
        idents: tuple[Node, ...] = ()
        strong: Node | None = None
        for kind, name in view.ident:
            # An unverified user (a forgeable JWT sub, a Basic name) is left out of the graph
            # (KeyView.ident): linked, a forger's requests would join the victim's entity, and the
            # ban they earn would reach the victim and every address the victim uses.
            n = self.node(name, now)
            nodes[kind] = n
            idents += (n,)
            if strong is None:
                strong = n
            elif n.entity is not strong.entity:
                self._merge(strong.entity, n.entity)
        table = self.nodes
        ipn = None
        name = view.ip
        if name:
            ipn = table.get(name)
            if ipn is None:
                ipn = self.node(name, now)
            else:  # node(), inlined for a known key (the usual case)
                ipn.seen = now
                ipn.entity.seen = now
            nodes["ip"] = ipn
            if strong is not None and ipn.entity is not strong.entity:
                if ipn.entity.n_strong == 0:
                    self._merge(strong.entity, ipn.entity)
                else:
                    # Two identities behind one address: a NAT, not one attacker. Never merge them.
                    self.refused += 1
                    self._saw_identity(ipn, strong.entity)
        weak: tuple[Node, ...] = ()
        soft: tuple[Node, ...] = ()
        for kind, name in view.weak:
            fn = table.get(name)
            if fn is None:
                fn = self.node(name, now)
            else:
                fn.seen = now
                fn.entity.seen = now
            nodes[kind] = fn
            weak += (fn,)
            if kind != "tls":
                soft += (fn,)
            if strong is not None:
                self._saw_identity(fn, strong.entity)
        if strong is not None:
            ent = strong.entity
        elif ipn is not None:
            ent = ipn.entity if ipn.entity.n_strong == 0 else self.anonymous_at(ipn, now)
        else:
            ent = self.node("entity:anonymous", now).entity
        # A key dropped while linking (an eviction) may be one of these: then no shortcut later. The
        # sweep below cannot drop them (they were seen just now).
        live = self.epoch == epoch
        self._sweep_slice(now)
        res = Resolved(ent, nodes, self.epoch if live else -1, idents, ipn, weak, soft, view.addr, view.tokens)
        view.linked = res
        return res

    def _sweep_slice(self, now: float) -> None:
        sw = self._sweeper
        if sw.pos < len(sw.keys) or now - sw.started >= sw.every:  # a sweep slice is due
            cutoff = now - self.limits.idle_ttl
            sw.step(self.nodes, now, lambda n: n.seen < cutoff, self._drop)
        self._sweep_at = -1e300 if sw.pos < len(sw.keys) else sw.started + sw.every - 1.0

    def anonymous_at(self, ipn: Node, now: float | None = None) -> Entity:
        """The entity of a request with no API key, user or session, from address `ipn`: the
        address's own entity, except behind a NAT (an address shared by several identities), where
        anonymous requests are nobody's identity but a `nat:` entity of their own."""
        ent = ipn.entity
        if ent.n_strong == 0 or not self.popular(ipn):
            return ent
        key = "nat:" + ipn.key[3:]
        if now is None:
            n = self.nodes.get(key)
            return n.entity if n is not None else ent
        return self.node(key, now).entity

    @staticmethod
    def _saw_identity(weak: Node, ident: Entity) -> None:
        # Approximate distinct identities: count each change of the identity seen with this key.
        if weak.last is not ident:
            weak.last = ident
            if weak.shared < 1_000_000:
                weak.shared += 1

    def popular(self, node: Node) -> bool:
        """A weak key shared by many identities (NAT address, common browser) whose traffic is mostly
        fine: never decide on it. A tool fingerprint shared by many attackers, mostly failing, is
        not popular in this sense: it stays a key that risk and decisions can follow."""
        return node.shared >= self.limits.popular and node.bad < 3 * node.shared

    def _merge(self, a: Entity, b: Entity) -> Entity:
        lim = self.limits
        if a.n_ip + b.n_ip > lim.max_ips or a.n_strong + b.n_strong > lim.max_strong:
            self.refused += 1
            return a
        big, small = (a, b) if len(a.members) >= len(b.members) else (b, a)
        for m in small.members:
            m.entity = big
        big.members += small.members
        small.members = ()
        big.n_ip += small.n_ip
        big.n_strong += small.n_strong
        t = max(big.risk_t, small.risk_t)
        hl = lim.half_life
        big.risk = decayed(big.risk, t - big.risk_t, hl) + decayed(small.risk, t - small.risk_t, hl)
        big.risk_t = t
        big.offenses = max(big.offenses, small.offenses)
        big.good += small.good
        big.hostile += small.hostile
        big.blocked_until = max(big.blocked_until, small.blocked_until)
        if small.history:
            merged = (big.history or []) + small.history
            merged.sort()
            big.history = merged[-16:]
        self.merges += 1
        return big

    def sweep(self, now: float) -> int:
        """Forget keys idle longer than idle_ttl. Returns how many were dropped."""
        self._last_sweep = now
        cutoff = now - self.limits.idle_ttl
        dead = [k for k, n in self.nodes.items() if n.seen < cutoff]
        for k in dead:
            self._drop(k)
        return len(dead)

    def _evict(self, now: float) -> None:
        """Make room, a hundredth of `max_keys` at a time: the least recently seen keys go first (see
        counters.make_room), and keys whose entity is risky (risk of a point or more, a block now, or
        a block before: its offences lengthen the next one) only after every clean key in view. An
        attacker who floods fresh keys thus pushes out idle clean keys, not the record of his own
        risk; a flood of risky keys (each earning risk) still evicts, the least recently seen first."""
        from bastion.detect.behaviour.counters import make_room  # (no import cycle at module load)

        lim = self.limits
        half_life = lim.half_life
        later = lim.idle_ttl  # a risky key ranks as if seen this much later: after every clean key

        def score(n: Node) -> float:
            e = n.entity
            if e.offenses or e.blocked_until > now or (
                    e.risk > 0.0 and decayed(e.risk, now - e.risk_t, half_life) >= 1.0):
                return n.seen + later
            return n.seen

        make_room(self.nodes, max(1, lim.max_keys // 100), score, self._drop)

    def _drop(self, key: str) -> None:
        n = self.nodes.pop(key, None)
        if n is None:
            return
        self.epoch += 1
        ent = n.entity
        if len(ent.members) > 1:
            ent.members = tuple([m for m in ent.members if m is not n])
        else:
            ent.members = ()
        kind = key.partition(":")[0]
        if kind == "ip":
            ent.n_ip -= 1
        elif kind in STRONG_KINDS:
            ent.n_strong -= 1

    @staticmethod
    def identity_kinds(keys: dict[str, str]) -> tuple[str, ...]:
        """The strong kinds of `keys` that identify the requester (an unverified user does not)."""
        return _CLAIMED if keys.get(CLAIM) == "unverified" else _IDENTITIES

    def follows_software(self, ent: Entity, keys: dict[str, str]) -> bool:
        """Whether a fingerprint's risk and decisions apply to this requester: only to anonymous
        requesters (no API key, user or session) without a normal history of their own. A rotating
        attacker's fresh addresses qualify; an integration that shares a tool's fingerprint does not.
        A session cookie alone is no identity here: web frameworks mint one for every visitor (the
        sign-in page sets it), so an attacker clearing cookies gets a new one per address; a session
        with a normal history is established anyway."""
        if ent.good >= ESTABLISHED:
            return False
        return not (keys.get("api_key") or keys.get("user"))

    def entities(self) -> Iterable[Entity]:
        seen: set[int] = set()
        for n in self.nodes.values():
            if id(n.entity) not in seen:
                seen.add(id(n.entity))
                yield n.entity


def decayed(value: float, dt: float, half_life: float) -> float:
    """Exponential decay: `value` after `dt` seconds with the given half-life."""
    if value <= 0.0 or dt <= 0.0 or half_life <= 0.0:
        return value
    return float(value * 0.5 ** (dt / half_life))
