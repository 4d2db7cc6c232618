"""The catalog learner: finished exchanges in, endpoints out.

`observe(ex)` runs in the complete phase, after the response was sent. It templates the path,
finds or creates the endpoint (host, method, template) and updates its counters; parameters,
bodies, response schemas and sensitive data are inspected for the first `full_samples` exchanges
of an endpoint and then one in `sample_every`, which keeps the average cost at a few microseconds.

Only responses that show the API knew the route create endpoints (2xx, 3xx and the 4xx codes an
application answers after routing): a scanner's 404s, 405s, 401s and Bastion's own blocks only
count towards endpoints that already exist. Hosts, nodes and endpoints are capped, so memory stays
bounded however many paths attackers invent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson

from bastion.catalog import sensitive
from bastion.catalog.endpoint import MAX_SHAPES, Endpoint, add_count
from bastion.catalog.paths import Node, PathTree, split_path
from bastion.catalog.shapes import Budget
from bastion.catalog.values import KIND_NAME, secret_name
from bastion.exchange import Exchange

# Statuses that prove the application routed the request (RFC 9110 semantics): these create endpoints.
_CREATES = frozenset([*range(200, 400), 400, 409, 410, 412, 415, 422])

# Request headers every client sends: not parameters of an API.
_STANDARD_HEADERS = frozenset({
    "host", "user-agent", "accept", "accept-encoding", "accept-language", "accept-charset", "connection",
    "content-length", "content-type", "content-encoding", "transfer-encoding", "cookie", "authorization",
    "cache-control", "pragma", "origin", "referer", "te", "upgrade", "upgrade-insecure-requests", "dnt",
    "if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range", "range",
    "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-real-ip",
    "forwarded", "via", "x-request-id", "traceparent", "tracestate", "expect", "keep-alive",
    "proxy-connection", "priority", "x-requested-with", "purpose", "save-data",
})
_API_KEY_HEADERS = ("x-api-key", "api-key", "apikey", "x-auth-token", "x-access-token", "x-apikey")
_API_KEY_QUERY = frozenset({"api_key", "apikey", "key", "access_token", "token", "api-key"})
_SESSION_COOKIE = re.compile(r"sess|^sid$|jsessionid|phpsessid|connect\.sid|_session$|auth|token", re.IGNORECASE)
_METHOD = re.compile(r"[A-Z]{3,12}")
_PARAM_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,64}")

# Template parameter names back to the kind that made them (to rebuild trees from stored templates).
_NAME_KIND = {name: kind for kind, name in KIND_NAME.items()}


def auth_kind(ex: Exchange) -> str:
    """How the request authenticated: bearer-jwt, bearer, basic, api-key, api-key-query, cookie or none."""
    h = ex.request.headers
    authz = h.get("authorization")
    if authz:
        scheme, _, cred = authz.strip().partition(" ")
        s = scheme.lower()
        if s == "bearer":
            cred = cred.strip()
            return "bearer-jwt" if cred.startswith("eyJ") and cred.count(".") == 2 else "bearer"
        if s == "basic":
            return "basic"
        return s[:16] or "other"
    for name in _API_KEY_HEADERS:
        if name in h:
            return "api-key"
    cookie = h.get("cookie")
    if cookie:
        for part in cookie.split(";"):
            if _SESSION_COOKIE.search(part.partition("=")[0].strip()):
                return "cookie"
    if "=" in ex.request.query:
        for k, _ in ex.request.query_args():
            if k.lower() in _API_KEY_QUERY:
                return "api-key-query"
    return "none"


@dataclass(slots=True)
class LearnerLimits:
    max_hosts: int = 64
    max_nodes: int = 50_000
    max_endpoints: int = 5_000
    full_samples: int = 100
    sample_every: int = 10
    min_siblings: int = 8
    max_siblings: int = 100
    sensitive: bool = True
    max_shapes: int = 100_000  # body and response field shapes across all endpoints


class Learner:
    """Per-process catalog state. Not thread-safe: call from the event loop only."""

    def __init__(self, limits: LearnerLimits | None = None) -> None:
        self.limits = limits or LearnerLimits()
        self.trees: dict[str, PathTree] = {}
        self.budget = [0]  # nodes in use across every tree
        self.n_endpoints = 0
        self.structure_changed = False  # templates were renamed since the last flush
        self.shapes = Budget(self.limits.max_shapes)  # the global shape budget every endpoint draws on
        self.dropped = 0  # exchanges not learned: caps reached, or not an endpoint (404s...)
        self.unmatched = 0

    # --- learning ------------------------------------------------------------------------------

    def _tree(self, host: str, create: bool) -> PathTree | None:
        t = self.trees.get(host)
        if t is None and create and len(self.trees) < self.limits.max_hosts:
            lim = self.limits
            t = self.trees[host] = PathTree(
                max_nodes=lim.max_nodes, budget=self.budget, merge_eps=self._merge_eps,
                min_siblings=lim.min_siblings, root_min_siblings=2 * lim.min_siblings,
                max_siblings=lim.max_siblings,
            )
        return t

    def observe(self, ex: Exchange) -> Endpoint | None:
        """Learn from one finished exchange; returns its endpoint (None when not learned)."""
        resp = ex.response
        if resp is None or resp.from_bastion or (ex.verdict is not None and ex.verdict.blocks):
            self.dropped += 1
            return None
        req = ex.request
        method = req.method
        if not _METHOD.fullmatch(method):
            self.dropped += 1
            return None
        status = resp.status
        create = status in _CREATES
        tree = self._tree(ex.site, create)
        segs = split_path(req.path)
        if tree is None or segs is None:
            self.dropped += 1
            return None
        routed = tree.route(segs, create)
        if routed is None:
            self.unmatched += 1
            return None
        if tree.changed:
            tree.changed = False
            self._rekey()
        node, template, params = routed
        eps = node.eps
        ep = eps.get(method) if eps is not None else None
        if ep is None:
            if not create or self.n_endpoints >= self.limits.max_endpoints:
                self.dropped += 1
                return None
            if eps is None:
                eps = node.eps = {}
            ep = eps[method] = Endpoint(ex.site, method, template)
            ep.budget.parent = self.shapes
            self.n_endpoints += 1
        self._count(ep, ex, status)
        n = ep.calls
        if n <= self.limits.full_samples or n % self.limits.sample_every == 0:
            self._inspect(ep, ex, params)
        if not ex.route:
            ex.route = template
        return ep

    def _count(self, ep: Endpoint, ex: Exchange, status: int) -> None:
        now = ex.started
        ep.calls += 1
        ep.dirty = True
        if now > ep.last_seen:
            ep.last_seen = now
        elif now < ep.first_seen or not ep.first_seen:
            ep.seen(now)
        if not ep.first_seen:
            ep.first_seen = now
        ep.rate.add(now)
        if status >= 400:
            ep.errors += 1
            ep.error_rate.add(now)
        key = str(status)
        st = ep.status
        st[key] = st.get(key, 0) + 1
        if ex.duration is not None:
            ep.latency.add(ex.duration)
        add_count(ep.auth, auth_kind(ex))
        who = ex.entity or ex.keys.get("user") or ex.keys.get("api_key") or ex.client.ip
        if who:
            ep.entities.add(who)
            if who != ep.last_who:  # a client's burst on one endpoint hashes once
                ep.last_who = who
                ep.distinct_entities.add(who)

    def _inspect(self, ep: Endpoint, ex: Exchange, params: list[tuple[str, str]]) -> None:
        ep.sampled += 1
        req = ex.request
        for name, value in params:
            s = ep.shape(ep.path, name)
            if s is not None:
                s.observe_text(value)
        if req.query:
            seen: set[str] = set()
            for k, v in req.query_args():
                if k in seen or not _PARAM_NAME.fullmatch(k):
                    continue
                seen.add(k)
                s = ep.shape(ep.query, k, secret_name(k))
                if s is not None:
                    s.observe_text(v)
        for k, v in req.headers:
            low = k.lower()
            if low in _STANDARD_HEADERS or low.startswith(("sec-", "x-b3-", "cf-")):
                continue
            s = ep.shape(ep.headers, low, True)
            if s is not None:
                s.observe_text(v)
        cookie = req.headers.get("cookie")
        if cookie:
            for part in cookie.split(";"):
                name, eq, value = part.strip().partition("=")
                if eq and _PARAM_NAME.fullmatch(name):
                    s = ep.shape(ep.cookies, name, True)
                    if s is not None:
                        s.observe_text(value)
        ct = req.content_type
        if ct:
            add_count(ep.req_types, ct[:64])
        if req.body and not req.body_truncated:
            self._request_body(ep, ct, req.body)
        resp = ex.response
        if resp is not None:
            rct = (resp.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
            if rct:
                add_count(ep.resp_types, rct[:64])
            enc = (resp.headers.get("content-encoding") or "identity").lower()
            if resp.body and enc == "identity":
                self._response_body(ep, resp.status, rct, resp.body, resp.body_size)

    def _request_body(self, ep: Endpoint, ct: str, body: bytes) -> None:
        if ct == "application/json" or ct.endswith("+json"):
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                return
            s = ep.shape(ep.body, ct)
            if s is not None:
                ep.body_sampled += 1
                s.observe(doc, 0, ep.budget)
        elif ct == "application/x-www-form-urlencoded":
            try:
                fields = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=256)
            except ValueError:
                return
            s = ep.shape(ep.body, ct)
            if s is not None:
                ep.body_sampled += 1
                s.observe_fields(fields, ep.budget)
        elif ct:
            s = ep.shape(ep.body, ct)
            if s is not None:
                ep.body_sampled += 1
                s.n += 1  # an opaque body (multipart, binary): its presence only

    def _response_body(self, ep: Endpoint, status: int, ct: str, body: bytes, size: int) -> None:
        truncated = size > len(body)
        if ct == "application/json" or ct.endswith("+json"):
            if truncated:
                return
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                return
            if 200 <= status < 300:
                s = ep.shape(ep.responses, str(status))
                if s is not None:
                    s.observe(doc, 0, ep.budget)
            if self.limits.sensitive:
                for fieldname, kind in sensitive.scan_json(doc):
                    ep.add_sensitive(fieldname, kind)
        elif self.limits.sensitive and (ct.startswith("text/") or ct.endswith("xml") or not ct):
            for fieldname, kind in sensitive.scan_text(body.decode("utf-8", "replace")):
                ep.add_sensitive(fieldname, kind)

    # --- structure -----------------------------------------------------------------------------

    def _merge_eps(self, into: Node, other: Node) -> None:
        if not other.eps:
            return
        if into.eps is None:
            into.eps = {}
        for method, ep in other.eps.items():
            mine = into.eps.get(method)
            if mine is None:
                into.eps[method] = ep
            else:
                mine.merge(ep)
                self.n_endpoints -= 1
        other.eps = None

    def _rekey(self) -> None:
        """Templates changed (a fold or a promotion): give every endpoint its current template."""
        for host, tree in self.trees.items():
            for template, node in tree.walk():
                for ep in (node.eps or {}).values():
                    ep.host, ep.template = host, template
        self.structure_changed = True

    # --- reading and loading -------------------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        out: list[Endpoint] = []
        for host in sorted(self.trees):
            for _, node in self.trees[host].walk():
                eps = node.eps or {}
                out.extend(eps[m] for m in sorted(eps))
        return out

    def find(self, host: str, method: str, template: str) -> Endpoint | None:
        for ep in self.endpoints():
            if ep.host == host and ep.method == method and ep.template == template:
                return ep
        return None

    def add(self, ep: Endpoint) -> None:
        """Place a stored endpoint (from the catalog store) into the trees by its template."""
        tree = self._tree(ep.host, True)
        if tree is None:
            return
        node = tree.root
        for seg in split_path(ep.template) or []:
            if seg.startswith("{") and seg.endswith("}"):
                base = seg[1:-1].rstrip("0123456789")
                if node.param is None:
                    kind = _NAME_KIND.get(base, "slug")
                    node.param = Node(kind)
                    self.budget[0] += 1
                    if kind == "slug":
                        node.parametric = True  # slug parameters only ever come from a fold
                node = node.param
            else:
                nxt = node.lits.get(seg)
                if nxt is None:
                    nxt = node.lits[seg] = Node()
                    self.budget[0] += 1
                node = nxt
            node.hits += ep.calls
        if node.eps is None:
            node.eps = {}
        mine = node.eps.get(ep.method)
        self.shapes.left -= MAX_SHAPES - ep.budget.left  # what the stored shapes already use
        if mine is None:
            ep.budget.parent = self.shapes
            node.eps[ep.method] = ep
            self.n_endpoints += 1
        else:
            mine.merge(ep)

    def settle(self) -> None:
        """After loading: fold words under parametric positions (rows from several writers) and rekey."""
        for tree in self.trees.values():
            stack = [tree.root]
            while stack:
                n = stack.pop()
                if n.parametric and n.lits:
                    tree._fold(n)
                stack.extend(n.lits.values())
                if n.param is not None:
                    stack.append(n.param)
        self._rekey()

    @classmethod
    def from_endpoints(cls, eps: Iterable[Endpoint], limits: LearnerLimits | None = None) -> Learner:
        lr = cls(limits)
        for ep in eps:
            lr.add(ep)
        lr.settle()
        return lr
