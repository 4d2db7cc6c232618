"""The admin REST API (`/api/v1/...`): events, stats, catalog, decisions, entities.

Handlers run in the gateway's event loop, so anything that touches a disk or a database (event
queries, the catalog file, the decisions file) goes to a thread; what is read from the live
pipeline (counters, the entity graph, the decision index) is read synchronously and bounded.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import threading
import time
from typing import Any

import orjson

from bastion.admin import metrics as m
from bastion.admin.http import Request, Response, json_response, problem
from bastion.admin.metrics import EndpointMetrics
from bastion.admin.sources import behaviour_core, live_learner, version
from bastion.decision import Decision, DecisionAction, KeyKind, Origin, normalise_ip_value
from bastion.detect.symptoms import symptoms_of
from bastion.entity import decayed

MAX_EVENTS = 1000
ACTIONS = ("allow", "log", "throttle", "challenge", "block")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


class BadInput(Exception):
    """A client error: becomes a 400 problem+json."""


def parse_duration(value: object) -> float | None:
    """Seconds (a number, or '90s', '10m', '4h', '7d'); None, 'permanent' or 0 mean no expiry."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadInput("duration: expected seconds or a string like '4h'")
    if isinstance(value, int | float):
        if value < 0:
            raise BadInput("duration must not be negative")
        return None if value == 0 else float(value)
    if not isinstance(value, str):
        raise BadInput("duration: expected seconds or a string like '4h'")
    v = value.strip().lower()
    if v in ("permanent", "forever", "0", ""):
        return None
    m = _DURATION.match(v)
    if not m:
        raise BadInput(f"duration: {value[:40]!r} is not like 30s, 10m, 4h, 7d or permanent")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _float_arg(req: Request, name: str) -> float | None:
    raw = req.arg(name)
    if raw is None or raw == "":
        return None
    try:
        v = float(raw)
    except ValueError:
        raise BadInput(f"{name}: expected a number (epoch seconds)") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise BadInput(f"{name}: expected a finite number")
    return v


def _int_arg(req: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = req.arg(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise BadInput(f"{name}: expected an integer between {lo} and {hi}")
    return max(lo, min(hi, int(raw)))


def _text_arg(req: Request, name: str, limit: int = 200) -> str | None:
    raw = req.arg(name)
    if raw is None or raw == "":
        return None
    if len(raw) > limit:
        raise BadInput(f"{name}: longer than {limit} characters")
    return raw


class AdminApi:
    def __init__(self, runtime: Any, endpoints: EndpointMetrics | None, started: float) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.pipeline = runtime.pipeline
        self.endpoints = endpoints
        self.started = started
        self._store: Any = None
        self._store_lock = threading.Lock()

    # --- events -----------------------------------------------------------------------------------

    def _events_store(self) -> Any | None:
        """The event store, opened once, read-only use (from a thread)."""
        with self._store_lock:
            if self._store is None:
                from bastion.store import open_store

                try:
                    self._store = open_store(self.config, create=False)
                except FileNotFoundError:
                    return None  # no event yet
            return self._store

    def close(self) -> None:
        with self._store_lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def _query(self, **kw: Any) -> list[dict[str, Any]]:
        store = self._events_store()
        if store is None:
            return []
        return [e.as_dict() for e in store.query(**kw)]

    async def events(self, req: Request) -> Response:
        action = _text_arg(req, "action")
        if action is not None and action not in ACTIONS:
            raise BadInput(f"action: one of {', '.join(ACTIONS)}")
        client = _text_arg(req, "client", 64)
        if client is not None:
            try:
                client = str(ipaddress.ip_address(client))
            except ValueError:
                raise BadInput("client: expected an IP address") from None
        kw = {"since": _float_arg(req, "since"), "until": _float_arg(req, "until"),
              "limit": _int_arg(req, "limit", 100, 1, MAX_EVENTS), "action": action, "client": client,
              "rule": _text_arg(req, "rule", 100)}
        try:
            items = await asyncio.to_thread(self._query, **kw)
        except Exception as exc:
            return problem(503, f"the event store cannot be read: {type(exc).__name__}")
        return json_response({"events": items, "count": len(items)})

    # --- stats ------------------------------------------------------------------------------------

    def _totals(self) -> dict[str, Any]:
        """This process's counters, plus every other worker's published ones (`--workers N`)."""
        snaps = [m.snapshot(self.runtime, self.endpoints, self.started)]
        if self.config.server.workers > 1:
            snaps += m.read_peer_snapshots(m.run_dir(self.config), os.getpid())
        total = m.merge_summaries(snaps)
        total["workers_reporting"] = len(snaps)
        return total

    async def stats(self, req: Request) -> Response:
        rt = self.runtime
        now = rt.clock.now()
        many = self.config.server.workers > 1
        t = await asyncio.to_thread(self._totals) if many else self._totals()
        rows: list[dict[str, Any]] = []
        for key, row in t["endpoints"].items():
            method, _, route = key.partition(" ")
            codes, blocked, total = row[:6], row[6], row[7]
            n = int(sum(codes))
            rows.append({"method": method, "route": route, "requests": n, "blocked": int(blocked),
                         "codes": {c: int(codes[i]) for i, c in enumerate((*m.CODES, "none")) if codes[i]},
                         "mean_ms": round(total / n * 1000.0, 3) if n else 0.0})
        rows.sort(key=lambda r: -r["requests"])
        out: dict[str, Any] = {
            "version": version(), "mode": self.config.mode, "uptime": round(time.time() - self.started, 1),
            "workers": self.config.server.workers, "workers_reporting": t["workers_reporting"],
            "exchanges": t["exchanges"], "blocked": t["blocked"], "flagged": t["flagged"],
            "detector_errors": t["detector_errors"],
            "top_rules": [{"rule": r, "count": n}
                          for r, n in sorted(t["rules"].items(), key=lambda kv: -kv[1])[:20]],
            "endpoints": rows[:20],
            # event, alert, decision and entity figures below are the admin worker's own
        }
        writer = rt.services.get("events")
        if writer is not None:
            ws = writer.stats
            names = ("queued", "written", "dropped", "failed", "batches", "pending")
            out["events"] = {k: getattr(ws, k) for k in names}
        alerter = rt.services.get("alerts")
        if alerter is not None:
            st = alerter.stats
            out["alerts"] = {k: getattr(st, k) for k in ("sent", "deduplicated", "dropped", "failed")}
        core = behaviour_core(self.pipeline)
        if core is not None:
            out["decisions_active"] = sum(1 for d in core.store.index if d.active(now))
            out["entity_keys"] = len(core.graph)
        symptoms = symptoms_of(self.pipeline)
        if symptoms is not None:  # what the admin worker sees in progress (route "*": the whole API)
            out["symptoms"] = [{"signal": sig, "method": m, "route": r, "since": since}
                               for sig, m, r, since in symptoms.active()]
        return json_response(out)

    # --- catalog ----------------------------------------------------------------------------------

    def _catalog_file(self) -> list[Any]:
        from bastion.catalog.store import read_catalog
        from bastion.detect.catalog import catalog_path

        try:
            return read_catalog(catalog_path(self.config))
        except FileNotFoundError:
            return []

    async def catalog(self, req: Request) -> Response:
        host = _text_arg(req, "host", 253)
        limit = _int_arg(req, "limit", 500, 1, 2000)
        learner = live_learner(self.pipeline)
        if learner is not None and self.config.server.workers <= 1:
            eps, source = learner.endpoints(), "live"
        else:
            # several workers (or no live learner): the catalog file merges every worker's rows
            try:
                eps, source = await asyncio.to_thread(self._catalog_file), "file"
            except Exception as exc:
                return problem(503, f"the catalog cannot be read: {type(exc).__name__}")
        eps = [e for e in eps if host is None or e.host == host]
        eps.sort(key=lambda e: -e.calls)
        items = [_endpoint_summary(e) for e in eps[:limit]]
        return json_response({"endpoints": items, "count": len(items), "total": len(eps), "source": source})

    # --- decisions --------------------------------------------------------------------------------

    def _decisions_path(self) -> Any:
        return self.config.data_dir / "decisions.json"

    async def decisions(self, req: Request) -> Response:
        now = time.time()
        core = behaviour_core(self.pipeline)
        if core is not None:
            items = core.store.list(now)
        else:
            from bastion.detect.behaviour.store import read_decisions

            items = await asyncio.to_thread(read_decisions, self._decisions_path())
        include_expired = req.arg("all") in ("1", "true")
        items = [d for d in items if include_expired or d.active(now)]
        items.sort(key=lambda d: d.created, reverse=True)
        return json_response({"decisions": [_decision_dict(d, now) for d in items], "count": len(items)})

    async def add_decision(self, req: Request) -> Response:
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return problem(415, "send the decision as application/json")
        try:
            body = orjson.loads(req.body)
        except orjson.JSONDecodeError:
            raise BadInput("the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadInput("the body must be a JSON object")
        unknown = set(body) - {"kind", "value", "action", "duration", "reason"}
        if unknown:
            raise BadInput(f"unknown field(s): {', '.join(sorted(str(k)[:40] for k in unknown))}")
        try:
            kind = KeyKind(str(body.get("kind", "ip")))
            action = DecisionAction(str(body.get("action", "deny")))
        except ValueError:
            raise BadInput("kind: one of " + ", ".join(k.value for k in KeyKind)
                           + "; action: one of " + ", ".join(a.value for a in DecisionAction)) from None
        value = body.get("value")
        if not isinstance(value, str) or not value.strip() or len(value) > 256:
            raise BadInput("value: a non-empty string (an address, a CIDR or a key)")
        if kind == KeyKind.IP:
            try:
                value = normalise_ip_value(value)
            except ValueError:
                raise BadInput(f"value: {value[:60]!r} is not an address or a network") from None
        else:
            value = value.strip()
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise BadInput("reason: a string")
        seconds = parse_duration(body.get("duration", "4h"))
        now = time.time()
        d = Decision(kind=kind, value=value, action=action, origin=Origin.ADMIN,
                     until=None if seconds is None else now + seconds,
                     reason=reason[:200] or "added from the admin API", created=now)
        core = behaviour_core(self.pipeline)
        if core is not None:
            core.store.add(d)  # enforced now here; persisted / published by the store in the background
        else:
            from bastion.detect.behaviour.store import update_decisions

            await asyncio.to_thread(update_decisions, self._decisions_path(), [d], (), now)
        return json_response(_decision_dict(d, now), 201, [("Location", f"/api/v1/decisions/{d.id}")])

    async def delete_decision(self, req: Request, decision_id: str) -> Response:
        core = behaviour_core(self.pipeline)
        if core is not None:
            existing = core.store.index.by_id.get(decision_id)
            if existing is not None and existing.origin == Origin.CONFIG:
                return problem(409, "this decision comes from the config file: remove it there")
            gone = core.store.delete(decision_id)
            if gone is None:
                return problem(404, f"no decision {decision_id[:40]!r}")
            return Response(204)
        from bastion.detect.behaviour.store import read_decisions, update_decisions

        path = self._decisions_path()
        before = {d.id for d in await asyncio.to_thread(read_decisions, path)}
        if decision_id not in before:
            return problem(404, f"no decision {decision_id[:40]!r}")
        await asyncio.to_thread(update_decisions, path, (), [decision_id])
        return Response(204)

    # --- entities ---------------------------------------------------------------------------------

    async def entities(self, req: Request) -> Response:
        """Attackers: the entities behind recent events, riskiest first."""
        limit = _int_arg(req, "limit", 50, 1, 500)
        try:
            recent = await asyncio.to_thread(self._query, limit=MAX_EVENTS)
        except Exception as exc:
            return problem(503, f"the event store cannot be read: {type(exc).__name__}")
        groups: dict[str, dict[str, Any]] = {}
        for ev in recent:
            eid = ev.get("entity") or f"ip:{ev.get('client_ip', '')}"
            g = groups.get(eid)
            if g is None:
                g = groups[eid] = {"id": eid, "events": 0, "blocked": 0, "last_seen": ev["time"], "rules": {},
                                   "client_ip": ev.get("client_ip", "")}
            g["events"] += 1
            if ev.get("action") in ("block", "challenge"):
                g["blocked"] += 1
            for r in ev.get("rule_ids", ()):
                g["rules"][r] = g["rules"].get(r, 0) + 1
        core = behaviour_core(self.pipeline)
        now = self.runtime.clock.now()
        out = []
        for g in groups.values():
            g["top_rules"] = [r for r, _ in sorted(g.pop("rules").items(), key=lambda kv: -kv[1])[:5]]
            ent = _find_entity(core, g["id"]) if core is not None else None
            g["risk"] = round(core.risk.current(ent, now), 1) if core is not None and ent is not None else None
            g["blocked_until"] = ent.blocked_until if ent is not None and ent.blocked_until > now else None
            g["keys"] = ent.keys()[:8] if ent is not None else [g["id"]]
            out.append(g)
        out.sort(key=lambda g: (-(g["risk"] or 0.0), -g["events"]))
        return json_response({"entities": out[:limit], "count": min(limit, len(out)),
                              "scope": "this worker" if self.config.server.workers > 1 else "gateway"})

    async def entity(self, req: Request, eid: str) -> Response:
        """One entity. Live state (risk, history, keys) comes from this worker's entity graph; an
        entity the graph does not hold (after a restart, or blocked before it was ever linked) is
        still shown from its stored events, with `live: false`."""
        core = behaviour_core(self.pipeline)
        ent = _find_entity(core, eid) if core is not None else None
        now = self.runtime.clock.now()
        if ent is not None:
            keys = ent.keys()
        else:
            ip = _bare_ip(eid.removeprefix("ip:"))
            keys = [f"ip:{ip}"] if ip else [eid]
        ips = [k[3:] for k in keys if k.startswith("ip:")][:16]
        try:
            recent = await asyncio.to_thread(self._query, limit=MAX_EVENTS)
        except Exception:
            recent = []
        ipset = set(ips)
        ids = {eid, ent.id} if ent is not None else {eid, *keys}
        events = [e for e in recent if e.get("entity") in ids or e.get("client_ip") in ipset][:100]
        if ent is None and not events:
            return problem(404, f"no entity {eid[:80]!r} (unknown, or forgotten after idle_ttl)")
        decisions = []
        if core is not None:
            keyset = set(keys)
            index = core.store.index
            for d in index:
                if d.active(now) and (f"{d.kind.value}:{d.value}" in keyset or (
                        d.kind == KeyKind.IP and any(index.lookup_ip(ip, now) is d for ip in ips))):
                    decisions.append(_decision_dict(d, now))
        rs = self.config.behaviour.risk
        out: dict[str, Any] = {
            "id": ent.id if ent is not None else keys[0], "live": ent is not None, "keys": keys[:64],
            "key_count": len(keys), "risk": None, "risk_history": [],
            "thresholds": {"watch": rs.watch, "throttle": rs.throttle, "challenge": rs.challenge, "block": rs.block},
            "half_life": rs.half_life, "blocked_until": None, "offenses": 0, "identified": False,
            "last_seen": events[0]["time"] if events else None, "good_requests": 0,
            "decisions": decisions, "events": events,
        }
        if ent is not None and core is not None:
            hl = rs.half_life
            history: list[dict[str, Any]] = []
            r, t_prev = 0.0, None
            for t, rule, pts in ent.history or ():
                r = (decayed(r, t - t_prev, hl) if t_prev is not None else 0.0) + pts
                t_prev = t
                history.append({"time": t, "rule": rule, "points": pts, "risk": round(r, 2)})
            out.update({
                "risk": round(core.risk.current(ent, now), 2), "risk_history": history,
                "blocked_until": ent.blocked_until if ent.blocked_until > now else None,
                "offenses": ent.offenses, "identified": ent.identified, "last_seen": ent.seen,
                "good_requests": ent.good,
            })
        return json_response(out)


def _bare_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return ""


def _find_entity(core: Any, eid: str) -> Any | None:
    nodes = core.graph.nodes
    n = nodes.get(eid)
    if n is None and ":" not in eid.split("/")[0].replace("::", ""):
        n = nodes.get(f"ip:{eid}")  # a bare address
    if n is None:
        try:
            n = nodes.get(f"ip:{ipaddress.ip_address(eid)}")
        except ValueError:
            pass
    return None if n is None else n.entity


def _decision_dict(d: Decision, now: float) -> dict[str, Any]:
    out = d.as_dict()
    out["expires_in"] = d.remaining(now)
    out["active"] = d.active(now)
    return out


def _endpoint_summary(e: Any) -> dict[str, Any]:
    return {
        "host": e.host, "method": e.method, "template": e.template, "calls": e.calls, "errors": e.errors,
        "error_rate": round(e.error_ratio(), 4), "first_seen": e.first_seen, "last_seen": e.last_seen,
        "status": e.status, "auth": e.main_auth(), "sensitive": e.sensitive_kinds(),
        "p50_ms": round(e.latency.quantile(0.5) * 1000.0, 2), "p95_ms": round(e.latency.quantile(0.95) * 1000.0, 2),
        "parameters": {
            "path": sorted(e.path)[:50], "query": sorted(e.query)[:50], "headers": sorted(e.headers)[:50],
            "cookies": sorted(e.cookies)[:50],
        },
        "request_types": sorted(e.req_types), "response_types": sorted(e.resp_types),
    }
