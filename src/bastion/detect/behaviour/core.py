"""The behaviour state one pipeline shares between its detectors: keys, entity graph, risk model and
decision store. Built once per pipeline (`BuildContext.services["behaviour"]`), so the `decisions`,
`risk` and `behaviour` detectors all see the same entities and decisions.
"""

from __future__ import annotations

import re
from itertools import chain
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, unquote_plus

from bastion.clock import Clock
from bastion.config import BastionConfig
from bastion.decision import Decision, DecisionAction, KeyKind, Origin, normalise_ip_value
from bastion.detect.behaviour.settings import BehaviourConfig
from bastion.detect.behaviour.store import DecisionStore, open_store
from bastion.entity import (
    CLAIM,
    Entity,
    EntityGraph,
    GraphLimits,
    KeySettings,
    KeyView,
    Node,
    Resolved,
    extract_keys,
    network_of,
)
from bastion.exchange import Exchange
from bastion.jwtauth import make_verifier
from bastion.verdict import Finding, Severity

if TYPE_CHECKING:
    from bastion.detect.stepup import StepUp

SERVICE = "behaviour"
_ADDRESS_KINDS = frozenset({"ip", "net"})  # the keys extract_keys reads from the address, not the headers
MEMO_HEADER_BYTES = 8192  # header fields (names and values) above this are not memoised (see _keys)


class BehaviourCore:
    def __init__(self, config: BastionConfig, clock: Clock, store: DecisionStore | None = None) -> None:
        from bastion.detect.risk import RiskModel

        self.config = config
        self.settings: BehaviourConfig = config.behaviour
        self.clock = clock
        es = self.settings.entity
        self.key_settings = KeySettings(
            user_header=es.user_header,
            session_cookies=frozenset(c.lower() for c in es.session_cookies),
            session_pattern=re.compile(es.session_cookie_pattern) if es.session_cookie_pattern else None,
            api_key_headers=tuple(h.lower() for h in es.api_key_headers),
            salt=es.key_salt,
            jwt=make_verifier(es.jwt),
        )
        self.graph = EntityGraph(GraphLimits(max_ips=es.max_ips, max_strong=es.max_strong, idle_ttl=es.idle_ttl,
                                             max_keys=es.max_keys, popular=es.popular,
                                             half_life=self.settings.risk.half_life))
        if store is None:
            ds = self.settings.decisions
            state = getattr(config, "state", None)
            url = ds.url or (getattr(state, "url", "") or "memory://")
            store = open_store(url, config.data_dir, ds.prefix, ds.persist, ds.poll_interval, now=clock.now)
        self.store = store
        # automatic decisions this process keeps (see DecisionStore.max_automatic): a tenth of the keys
        store.max_automatic = max(10_000, es.max_keys // 10)
        lg = self.settings.login
        self.login_re = re.compile("|".join(f"(?:{r})" for r in lg.routes)) if lg.routes else None
        # paths that look like a login but name another account action (a password reset, a code check)
        self.not_login_re = re.compile("|".join(f"(?:{r})" for r in lg.not_routes)) if lg.not_routes else None
        self.login_methods = frozenset(m.upper() for m in lg.methods)
        self.risk = RiskModel(self)
        self.step_up: StepUp | None = None  # behaviour.step_up: the challenge's one-time code
        if self.settings.step_up.enabled and self.settings.risk.challenge_enabled:
            from bastion.detect.behaviour.store import RedisStore
            from bastion.detect.stepup import StepUp

            st = self.store  # decisions in Redis: challenges and passes there too
            self.step_up = (StepUp(self.settings.step_up, redis_url=st.url, prefix=st.prefix + ":step-up")
                            if isinstance(st, RedisStore) else StepUp(self.settings.step_up))
        self._started = False
        # the exchange the decisions detector linked last, for the risk detector's own step (its
        # entity: ex.links); unused when the risk check is chained to the decisions detector
        self.current: Exchange | None = None
        self._memo: dict[tuple[str, str, tuple[tuple[str, str], ...]], KeyView] = {}
        # the keys read from the header fields (all but the address's): many clients send the same
        self._header_memo: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, str]] = {}
        self.store.on_revoke.append(self._revoked)
        self.store.on_risk = self.remote_risk
        self.remote_deltas = 0  # risk deltas applied from other instances
        self.load_config_decisions()

    def remote_risk(self, keys: list[str], points: float, rule_id: str, t: float) -> None:
        """Another instance raised the risk of the entity these keys belong to: raise it here too,
        so that an attacker spreading requests over instances meets one score. The keys are known
        here already (the attacker came by) or become a new entity (it has not come yet)."""
        now = self.clock.now()
        s = self.settings.risk
        points *= 0.5 ** (max(0.0, now - t) / s.half_life)  # the decay since it was scored there
        if points <= 0.01:
            return
        graph = self.graph
        ent = None
        for key in keys:
            n = graph.nodes.get(key)
            if n is not None:
                ent = n.entity if key.partition(":")[0] != "ip" else graph.anonymous_at(n)
                if ent is not None:
                    break
        if ent is None:
            first: dict[str, str] = {}
            for key in keys:
                kind, _, value = key.partition(":")
                if value:
                    first.setdefault(kind, value)
            if not first:
                return
            ent = graph.observe(first, now).entity
        self.risk.add(ent, points, rule_id, now, share=False)
        self.remote_deltas += 1

    def _revoked(self, d: Decision) -> None:
        """An operator lifted a decision: lift the entity's ban and forget the risk behind it."""
        kind = "ip" if d.kind == KeyKind.IP else d.kind.value
        node = self.graph.nodes.get(f"{kind}:{d.value}")
        if node is not None and d.origin in (Origin.RISK, Origin.ADMIN, Origin.SCENARIO):
            ent = node.entity
            ent.blocked_until = 0.0
            ent.risk = 0.0
            ent.risk_t = self.clock.now()

    def load_config_decisions(self) -> None:
        now = self.clock.now()
        for i, entry in enumerate(self.config.decisions):
            until = entry.until
            if entry.ttl is not None:
                until = now + entry.ttl if until is None else min(until, now + entry.ttl)
            self.store.index.add(Decision(
                kind=KeyKind.IP, value=normalise_ip_value(entry.cidr), action=DecisionAction(entry.action),
                origin=Origin.CONFIG, until=until, reason=entry.reason or f"config decision #{i + 1}",
                created=now, id=f"config-{i + 1}",
            ))

    # --- per exchange --------------------------------------------------------------------------

    def observe(self, ex: Exchange, now: float | None = None) -> Entity:
        """Read the exchange's keys into ex.keys, link them and set ex.entity. Returns the entity.
        `now`: the clock's time, when the caller has just read it."""
        client = ex.client
        req = ex.request
        # _keys(ex), inlined for a memo hit that needs no second look (see _keys)
        view = self._memo.get((client.ip, client.fingerprint, tuple(req.headers.items)))
        if view is None or view.recheck or ("?" in req.target and "api_key" not in view.keys):
            view = self._keys(ex)
        keys = view.keys
        ex.keys.update(keys)
        if view.invalid:
            ex.add(Finding(rule_id="invalid-jwt", detector="decisions", severity=Severity.NOTICE,
                           message="bearer JWT failed verification: no user key", tags=("identity",), risk=0.0))
        res = self.graph.link(view, self.clock.now() if now is None else now)
        ex.entity = res.entity.id
        ex.links = res  # the nodes, for the risk detector and the complete phase (no second lookup)
        return res.entity

    def _keys(self, ex: Exchange) -> KeyView:
        """extract_keys, memoised by what the keys are made of (address, TLS fingerprint, header
        fields): a client sends the same headers request after request, and reading them (a
        fingerprint digest, cookie parsing, key hashing) costs more than the lookup. Returns the
        keys with their graph node names ('ip:1.2.3.4'), shared: never modify them."""
        client = ex.client
        req = ex.request
        fields = tuple(req.headers.items)
        memo_key = (client.ip, client.fingerprint, fields)
        hit = self._memo.get(memo_key)
        if hit is not None and hit.recheck:
            hit = None  # a verified token expires: ask the verifier again (its own cache makes it cheap)
        if hit is None:
            # A client whose header fields are unusually big is not memoised (its keys are read again on
            # each request): 4096 clients of the 32 KiB of headers the proxy accepts would hold 128 MB.
            small = sum(map(len, chain.from_iterable(fields))) <= MEMO_HEADER_BYTES
            hit = KeyView(self._client_keys(ex, (client.fingerprint, fields), small))
            hit.recheck = self.key_settings.jwt is not None and ("user" in hit.keys or CLAIM in hit.keys)
            if small:
                if len(self._memo) >= 4096:
                    self._memo.clear()
                self._memo[memo_key] = hit
        if "?" in req.target and "api_key" not in hit.keys and self._query_key(req.query):
            return KeyView(extract_keys(ex, self.key_settings))  # an API key in the query (rare): not memoised
        return hit

    def _client_keys(self, ex: Exchange, fields: tuple[str, tuple[tuple[str, str], ...]],
                     memo: bool = True) -> dict[str, str]:
        """extract_keys(ex, query=False), the keys its header fields give memoised by those fields
        (and the TLS fingerprint) unless `memo` is False: only the address's own keys (ip, net) are
        made per client."""
        part = self._header_memo.get(fields) if memo else None
        if part is None or (self.key_settings.jwt is not None and ("user" in part or CLAIM in part)):
            keys = extract_keys(ex, self.key_settings, query=False)
            if memo:
                if len(self._header_memo) >= 4096:
                    self._header_memo.clear()
                self._header_memo[fields] = {k: v for k, v in keys.items() if k not in _ADDRESS_KINDS}
            return keys
        ip = ex.client.ip
        keys = {"ip": ip}  # as extract_keys orders them: the address's keys first
        net = network_of(ip)
        if net:
            keys["net"] = net
        keys.update(part)
        return keys

    def _query_key(self, query: str) -> bool:
        """Whether a query string may carry an API key parameter (exact: no false negatives)."""
        params = self.key_settings.api_key_params
        if not params:
            return False
        for part in query.split("&"):
            name = part.partition("=")[0]
            if "%" in name or "+" in name:
                name = unquote_plus(name, errors="surrogateescape")
            if name.lower() in params:
                return True
        return False

    def resolve(self, keys: dict[str, str]) -> Entity | None:
        """The entity of a set of keys, without recording anything (complete phase, read-only)."""
        g = self.graph
        for kind in g.identity_kinds(keys):
            v = keys.get(kind)
            if v:
                n = g.nodes.get(f"{kind}:{v}")
                if n is not None:
                    return n.entity
        v = keys.get("ip")
        n = g.nodes.get(f"ip:{v}") if v else None
        return g.anonymous_at(n) if n is not None else None

    def entity_of(self, ex: Exchange) -> Entity | None:
        """resolve(ex.keys), through the nodes linked at request time (ex.links) when there are."""
        links: Resolved | None = ex.links
        if links is None:
            return self.resolve(ex.keys)
        graph = self.graph
        if links.epoch == graph.epoch:  # no key left the graph since: the linked nodes are live
            n = links.strong
            if n is not None:
                return n.entity
            n = links.nodes.get("ip")
            return graph.anonymous_at(n) if n is not None else None
        nodes = links.nodes
        table = graph.nodes
        for kind in ("api_key", "user", "session"):
            n = nodes.get(kind)
            if n is not None:
                n = table.get(n.key)  # the live node (its key may have been dropped since)
                if n is not None:
                    return n.entity
        n = nodes.get("ip")
        n = table.get(n.key) if n is not None else None
        return graph.anonymous_at(n) if n is not None else None

    def linked(self, ex: Exchange, kind: str) -> Node | None:
        """node(kind, ex.keys), through the nodes linked at request time (ex.links) when there are."""
        links: Resolved | None = ex.links
        if links is None:
            return self.node(kind, ex.keys)
        n = links.nodes.get(kind)
        if n is None or links.epoch == self.graph.epoch:
            return n
        return self.graph.nodes.get(n.key)

    def soft_nodes(self, ex: Exchange) -> tuple[Node, ...]:
        """The live fingerprint and network nodes of an exchange (linked(ex, 'fp'), linked(ex, 'net'))."""
        links: Resolved | None = ex.links
        if links is not None and links.epoch == self.graph.epoch:
            return links.soft
        out: tuple[Node, ...] = ()
        for kind in ("fp", "net"):
            n = self.linked(ex, kind)
            if n is not None:
                out += (n,)
        return out

    def request_class(self, ex: Exchange) -> str:
        """'login' (a POST to a login route), 'lookup' (carries an identifier) or ''."""
        req = ex.request
        path = req.path.lower()
        if req.method.upper() in self.login_methods and self.login_re is not None and self.login_re.search(path) and (
                self.not_login_re is None or self.not_login_re.search(path) is None):
            return "login"
        from bastion.detect.behaviour.scenarios import IDENT_PARAMS, id_segment, looks_identifier

        if req.query:
            for k, v in req.query_args():
                if v and (k.lower() in IDENT_PARAMS or looks_identifier(v)):
                    return "lookup"
        if "@" in path or "%40" in path or "+" in path or "%2b" in path:
            # an identifier in the path (/users/by-email/a%40b.test), as the scenarios template it
            for seg in path.split("/"):
                s = unquote(seg)
                if not id_segment(s) and looks_identifier(s):
                    return "lookup"
        return ""

    def node(self, kind: str, keys: dict[str, str]) -> Node | None:
        v = keys.get(kind)
        return self.graph.nodes.get(f"{kind}:{v}") if v else None

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self.store.start()

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self.store.stop()
            if self.step_up is not None:
                await self.step_up.stop()


def get_core(config: BastionConfig, ctx: Any) -> BehaviourCore:
    """The pipeline's shared core (created by the first detector that asks)."""
    core = ctx.services.get(SERVICE)
    if core is None:
        core = ctx.services[SERVICE] = BehaviourCore(config, ctx.clock, store=ctx.services.get("decision_store"))
    assert isinstance(core, BehaviourCore)
    return core
