"""Prometheus metrics: engine counters per rule and detector, per-endpoint traffic and latency,
event writer and alert statistics, in the text exposition format 0.0.4.

`EndpointMetrics` is an ExchangeSink: after each response it adds one to a per-(method, route)
series and one latency bucket (a dict lookup, a bisect and a few integer adds: about a
microsecond). Series are capped (`max_series`); beyond the cap, new endpoints share one
`route="(other)"` series, so a scanner inventing paths cannot blow up the scrape.

A snapshot is a plain JSON-able dict; with several workers each one publishes its snapshot to
`data_dir/run/metrics-<pid>.json` and the worker serving the admin adds them up (`merge`).
"""

from __future__ import annotations

import bisect
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bastion.admin.sources import behaviour_core, version
from bastion.detect.symptoms import symptoms_of
from bastion.engine import ExchangeSink
from bastion.exchange import Exchange

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})
CODES = ("1xx", "2xx", "3xx", "4xx", "5xx")
NO_ROUTE = "(none)"
OTHER = "(other)"


@dataclass(slots=True)
class Series:
    codes: list[int]  # 1xx..5xx, then "none" (no response: refused before or cut)
    blocked: int
    buckets: list[int]  # len(BUCKETS) + 1, not cumulative; the last one is +Inf
    total: float


def _series() -> Series:
    return Series([0] * 6, 0, [0] * (len(BUCKETS) + 1), 0.0)


class EndpointMetrics(ExchangeSink):
    """Per-endpoint request counts by status class, blocks and a latency histogram."""

    def __init__(self, max_series: int = 1000) -> None:
        self.max_series = max_series
        self.series: dict[tuple[str, str], Series] = {}

    def exchange_done(self, ex: Exchange) -> None:
        method = ex.request.method
        if method not in METHODS:
            method = "OTHER"
        key = (method, ex.route or NO_ROUTE)
        s = self.series.get(key)
        if s is None:
            if len(self.series) >= self.max_series:
                key = (method, OTHER)
                s = self.series.get(key)
            if s is None:
                s = self.series[key] = _series()
        resp = ex.response
        cls = resp.status // 100 - 1 if resp is not None else 5
        s.codes[cls if 0 <= cls < 5 else 5] += 1
        v = ex.verdict
        if v is not None and v.blocks:
            s.blocked += 1
        d = ex.duration or 0.0
        s.buckets[bisect.bisect_left(BUCKETS, d)] += 1
        s.total += d


# --- snapshots --------------------------------------------------------------------------------
# {"counters": {name: {labels: value}}, "gauges": {...}, "gauges_max": {...}, "histograms": {labels: {...}}}
# where `labels` is 'k="v",k2="v2"' already escaped, so merging is adding by key.


def escape(value: str) -> str:
    """A label value as the exposition format wants it (backslash, double quote and newline escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(**kv: str) -> str:
    return ",".join(f'{k}="{escape(v)}"' for k, v in kv.items())


def snapshot(runtime: Any, endpoints: EndpointMetrics | None, started: float) -> dict[str, Any]:
    """What this process knows now. `runtime` is a bastion.runtime.Runtime."""
    pipe = runtime.pipeline
    c = pipe.counters
    counters: dict[str, dict[str, float]] = {
        "bastion_exchanges_total": {"": c.exchanges},
        "bastion_exchanges_blocked_total": {"": c.blocked},
        "bastion_exchanges_flagged_total": {"": c.logged},
        "bastion_findings_total": {labels(rule=r): n for r, n in c.findings_by_rule.items()},
        "bastion_detector_errors_total": {labels(detector=d): n for d, n in c.detector_errors.items()},
    }
    gauges: dict[str, dict[str, float]] = {}
    gauges_max: dict[str, dict[str, float]] = {}
    writer = runtime.services.get("events")
    if writer is not None:
        ws = writer.stats
        for name in ("queued", "written", "dropped", "failed", "batches"):
            counters[f"bastion_events_{name}_total"] = {"": getattr(ws, name)}
        q = getattr(writer, "_queue", None)
        gauges["bastion_events_queue_length"] = {"": q.qsize() if q is not None else 0}
        gauges["bastion_events_backlog_length"] = {"": ws.pending}
    alerter = runtime.services.get("alerts")
    if alerter is not None:
        st = alerter.stats
        for name in ("sent", "deduplicated", "dropped", "failed"):
            counters[f"bastion_alerts_{name}_total"] = {"": getattr(st, name)}
    core = behaviour_core(pipe)
    if core is not None:
        now = runtime.clock.now()
        active = sum(1 for d in core.store.index if d.active(now))
        # every worker holds every decision (they are shared): the max, not the sum
        gauges_max["bastion_decisions_active"] = {"": active}
        gauges["bastion_entity_keys"] = {"": len(core.graph)}
        counters["bastion_risk_blocks_total"] = {"": core.risk.blocks}
        su = core.step_up
        if su is not None:
            for name in ("issued", "passed", "refused", "exhausted"):
                counters[f"bastion_step_up_{name}_total"] = {"": getattr(su.stats, name)}
            for name in ("sent", "failed", "dropped"):
                counters[f"bastion_step_up_deliveries_{name}_total"] = {"": getattr(su.deliverer.stats, name)}
    symptoms = symptoms_of(pipe)
    if symptoms is not None:
        # 1 per symptom in progress (signal, endpoint; route "*" is the whole API); any worker seeing it is enough
        gauges_max["bastion_symptom_active"] = {
            labels(signal=signal, method=method, route=route): 1 for signal, method, route, _ in symptoms.active()
        }
    histograms: dict[str, dict[str, Any]] = {}
    if endpoints is not None:
        req: dict[str, float] = {}
        blocked: dict[str, float] = {}
        for (method, route), s in list(endpoints.series.items()):
            base = labels(method=method, route=route)
            for i, code in enumerate((*CODES, "none")):
                if s.codes[i]:
                    req[f'{base},code="{code}"'] = s.codes[i]
            if s.blocked:
                blocked[base] = s.blocked
            histograms[base] = {"buckets": list(s.buckets), "sum": s.total}
        counters["bastion_endpoint_requests_total"] = req
        counters["bastion_endpoint_blocked_total"] = blocked
    gauges["bastion_workers_reporting"] = {"": 1}
    # the same numbers in a shape the stats API and the console read (no label parsing)
    eps: dict[str, list[float]] = {}
    if endpoints is not None:
        for (method, route), s in list(endpoints.series.items()):
            eps[f"{method} {route}"] = [*s.codes, s.blocked, s.total]
    summary = {"exchanges": c.exchanges, "blocked": c.blocked, "flagged": c.logged,
               "rules": dict(c.findings_by_rule), "detector_errors": dict(c.detector_errors), "endpoints": eps}
    return {"pid": os.getpid(), "time": time.time(), "started": started, "counters": counters, "gauges": gauges,
            "gauges_max": gauges_max, "histograms": histograms, "summary": summary}


def merge_summaries(snaps: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up the `summary` parts of several snapshots."""
    out: dict[str, Any] = {"exchanges": 0, "blocked": 0, "flagged": 0, "rules": {}, "detector_errors": {},
                           "endpoints": {}}
    for snap in snaps:
        s = snap.get("summary")
        if not isinstance(s, dict):
            continue
        for k in ("exchanges", "blocked", "flagged"):
            out[k] += int(s.get(k, 0))
        for k in ("rules", "detector_errors"):
            for name, n in s.get(k, {}).items():
                out[k][name] = out[k].get(name, 0) + n
        for key, row in s.get("endpoints", {}).items():
            cur = out["endpoints"].get(key)
            out["endpoints"][key] = list(row) if cur is None or len(cur) != len(row) else [
                a + b for a, b in zip(cur, row, strict=True)]
    return out


def run_dir(config: Any) -> Path:
    """Where workers publish their snapshots."""
    return Path(config.data_dir) / "run"


STALE_AFTER = 15.0


def read_peer_snapshots(directory: Path, own_pid: int, now: float | None = None) -> list[dict[str, Any]]:
    """Other workers' recent snapshots (a worker that stopped publishing is left out after STALE_AFTER)."""
    now = time.time() if now is None else now
    out: list[dict[str, Any]] = []
    try:
        entries = list(directory.glob("metrics-*.json"))
    except OSError:
        return out
    for p in entries:
        if p.name == f"metrics-{own_pid}.json":
            continue
        try:
            if now - p.stat().st_mtime > STALE_AFTER:
                continue
            snap = orjson.loads(p.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        if isinstance(snap, dict) and isinstance(snap.get("counters"), dict):
            out.append(snap)
    return out


def merge(snaps: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up several processes' snapshots (counters and gauges summed, `gauges_max` maxed)."""
    out: dict[str, Any] = {"counters": {}, "gauges": {}, "gauges_max": {}, "histograms": {},
                           "started": min((s.get("started", 0.0) for s in snaps), default=0.0)}
    for s in snaps:
        for kind in ("counters", "gauges"):
            for name, series in s.get(kind, {}).items():
                dst = out[kind].setdefault(name, {})
                for k, v in series.items():
                    dst[k] = dst.get(k, 0) + v
        for name, series in s.get("gauges_max", {}).items():
            dst = out["gauges_max"].setdefault(name, {})
            for k, v in series.items():
                dst[k] = max(dst.get(k, v), v)
        for k, h in s.get("histograms", {}).items():
            cur = out["histograms"].get(k)
            if cur is None or len(cur["buckets"]) != len(h["buckets"]):
                out["histograms"][k] = {"buckets": list(h["buckets"]), "sum": h["sum"]}
            else:
                cur["buckets"] = [a + b for a, b in zip(cur["buckets"], h["buckets"], strict=True)]
                cur["sum"] += h["sum"]
    return out


HELP = {
    "bastion_exchanges_total": "Exchanges finished (answered, refused or cut).",
    "bastion_exchanges_blocked_total": "Exchanges refused (blocked or challenged).",
    "bastion_exchanges_flagged_total": "Exchanges with findings that were let through (observe, log).",
    "bastion_findings_total": "Findings by rule id (observe-mode findings included).",
    "bastion_detector_errors_total": "Detector hook failures by detector (the exchange went on, fail mode applied).",
    "bastion_events_queued_total": "Events handed to the event writer.",
    "bastion_events_written_total": "Events written to the event store.",
    "bastion_events_dropped_total": "Events dropped because the writer queue was full.",
    "bastion_events_failed_total": "Events lost because the event store refused them.",
    "bastion_events_batches_total": "Batches written by the event writer.",
    "bastion_events_queue_length": "Events waiting in the writer queue.",
    "bastion_alerts_sent_total": "Webhook alerts sent.",
    "bastion_alerts_deduplicated_total": "Alerts folded into an earlier one.",
    "bastion_alerts_dropped_total": "Alerts dropped (rate limit or full queue).",
    "bastion_alerts_failed_total": "Webhook deliveries that failed.",
    "bastion_decisions_active": "Decisions currently enforced.",
    "bastion_entity_keys": "Entity keys (addresses, API keys, users, sessions, fingerprints) tracked in memory.",
    "bastion_risk_blocks_total": "Entities blocked by the risk engine.",
    "bastion_step_up_issued_total": "Step-up challenges whose one-time code was queued for delivery.",
    "bastion_step_up_passed_total": "Step-up codes verified (a pass granted).",
    "bastion_step_up_refused_total": "Step-up values refused (wrong, unknown, expired, malformed, another user's).",
    "bastion_step_up_exhausted_total": "Step-up challenges that ran out of attempts (a block).",
    "bastion_step_up_deliveries_sent_total": "Step-up codes the API's delivery webhook accepted.",
    "bastion_step_up_deliveries_failed_total": "Step-up deliveries that failed (the challenge was withdrawn).",
    "bastion_step_up_deliveries_dropped_total": "Step-up codes not sent: delivery rate cap or full queue.",
    "bastion_endpoint_requests_total": "Requests per endpoint (method, route template) and status class.",
    "bastion_endpoint_blocked_total": "Requests refused per endpoint.",
    "bastion_workers_reporting": "Gateway worker processes whose metrics are included.",
}


def _num(v: float) -> str:
    if isinstance(v, int) or float(v).is_integer():
        return str(int(v))
    return repr(float(v))


def render(snap: dict[str, Any]) -> str:
    """The Prometheus text exposition (version 0.0.4) of a (merged) snapshot."""
    out: list[str] = []

    def family(name: str, kind: str, series: dict[str, float]) -> None:
        out.append(f"# HELP {name} {HELP.get(name, name)}")
        out.append(f"# TYPE {name} {kind}")
        for k in sorted(series):
            out.append(f"{name}{{{k}}} {_num(series[k])}" if k else f"{name} {_num(series[k])}")

    out.append("# HELP bastion_info Bastion version.")
    out.append("# TYPE bastion_info gauge")
    out.append(f"bastion_info{{{labels(version=version())}}} 1")
    out.append("# HELP bastion_start_time_seconds When the gateway started (epoch seconds).")
    out.append("# TYPE bastion_start_time_seconds gauge")
    out.append(f"bastion_start_time_seconds {_num(round(snap.get('started', 0.0), 3))}")
    for name, series in sorted(snap["counters"].items()):
        family(name, "counter", series)
    for kind in ("gauges", "gauges_max"):
        for name, series in sorted(snap[kind].items()):
            family(name, "gauge", series)
    hist = snap["histograms"]
    name = "bastion_endpoint_duration_seconds"
    out.append(f"# HELP {name} Time from request start to response end, per endpoint.")
    out.append(f"# TYPE {name} histogram")
    for k in sorted(hist):
        h = hist[k]
        acc = 0
        for bound, n in zip((*BUCKETS, None), h["buckets"], strict=True):
            acc += n
            le = "+Inf" if bound is None else repr(bound)
            out.append(f'{name}_bucket{{{k},le="{le}"}} {acc}')
        out.append(f"{name}_sum{{{k}}} {_num(round(h['sum'], 6))}")
        out.append(f"{name}_count{{{k}}} {acc}")
    return "\n".join(out) + "\n"
