"""The behaviour state one pipeline shares between its detectors: keys, entity graph, risk model and
decision store. Built once per pipeline (`BuildContext.services["behaviour"]`), so the `decisions`,
`risk` and `behaviour` detectors all see the same entities and decisions.
"""

from __future__ import annotations

import re
from typing import Any

from bastion.clock import Clock
from bastion.config import BastionConfig
from bastion.decision import Decision, DecisionAction, KeyKind, Origin, normalise_ip_value
from bastion.detect.behaviour.settings import BehaviourConfig
from bastion.detect.behaviour.store import DecisionStore, open_store
from bastion.entity import Entity, EntityGraph, GraphLimits, KeySettings, Node, extract_keys
from bastion.exchange import Exchange

SERVICE = "behaviour"


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
            api_key_headers=tuple(h.lower() for h in es.api_key_headers),
            salt=es.key_salt,
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
        lg = self.settings.login
        self.login_re = re.compile("|".join(f"(?:{r})" for r in lg.routes)) if lg.routes else None
        self.login_methods = frozenset(m.upper() for m in lg.methods)
        self.risk = RiskModel(self)
        self._started = False
        self.current: tuple[Exchange, Entity] | None = None
        self.store.on_revoke.append(self._revoked)
        self.load_config_decisions()

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

    def observe(self, ex: Exchange) -> Entity:
        """Read the exchange's keys into ex.keys, link them and set ex.entity. Returns the entity."""
        keys = extract_keys(ex, self.key_settings)
        ex.keys.update(keys)
        res = self.graph.observe(keys, self.clock.now())
        ex.entity = res.entity.id
        # the risk detector runs next in the same synchronous pass: hand it the entity directly
        self.current = (ex, res.entity)
        return res.entity

    def resolve(self, keys: dict[str, str]) -> Entity | None:
        """The entity of a set of keys, without recording anything (complete phase, read-only)."""
        g = self.graph
        for kind in ("api_key", "user", "session"):
            v = keys.get(kind)
            if v:
                n = g.nodes.get(f"{kind}:{v}")
                if n is not None:
                    return n.entity
        v = keys.get("ip")
        n = g.nodes.get(f"ip:{v}") if v else None
        return g.anonymous_at(n) if n is not None else None

    def request_class(self, ex: Exchange) -> str:
        """'login' (a POST to a login route), 'lookup' (carries an identifier) or ''."""
        req = ex.request
        path = req.path.lower()
        if req.method.upper() in self.login_methods and self.login_re is not None and self.login_re.search(path):
            return "login"
        if req.query:
            from bastion.detect.behaviour.scenarios import IDENT_PARAMS, looks_identifier

            for k, v in req.query_args():
                if v and (k.lower() in IDENT_PARAMS or looks_identifier(v)):
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


def get_core(config: BastionConfig, ctx: Any) -> BehaviourCore:
    """The pipeline's shared core (created by the first detector that asks)."""
    core = ctx.services.get(SERVICE)
    if core is None:
        core = ctx.services[SERVICE] = BehaviourCore(config, ctx.clock, store=ctx.services.get("decision_store"))
    assert isinstance(core, BehaviourCore)
    return core
