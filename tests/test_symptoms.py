"""The symptoms detector: per-endpoint baselines, spikes and surges found, normal drift left alone."""

from __future__ import annotations

import random
from typing import Any

from bastion.alerts.settings import AlertsConfig, WebhookConfig
from bastion.alerts.webhooks import WebhookAlerter
from bastion.config import BastionConfig
from bastion.detect.symptoms import Scope, SymptomsDetector, lat_bucket, p95
from bastion.engine.registry import BuildContext
from bastion.events import Event
from bastion.exchange import Headers, Response
from bastion.testing import ManualClock, make_exchange, make_pipeline
from bastion.verdict import Action, Verdict


class Events:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def submit(self, ev: Event) -> bool:
        self.events.append(ev)
        return True

    def started(self, rule: str, route: str | None = None) -> list[Event]:
        return [e for e in self.events if e.rule_ids == (rule,) and e.reason == rule
                and (route is None or e.route == route)]

    def ended(self, rule: str) -> list[Event]:
        return [e for e in self.events if e.reason == f"{rule}-ended"]


def detector(**settings: Any) -> tuple[SymptomsDetector, ManualClock, Events]:
    clock = ManualClock()
    sink = Events()
    cfg = BastionConfig.model_validate({"symptoms": settings}).symptoms
    return SymptomsDetector(cfg, BuildContext(clock=clock, services={"events": sink})), clock, sink


def feed(det: SymptomsDetector, clock: ManualClock, seconds: float, per_bucket: int, *,
         method: str = "GET", route: str = "/products/{id}", status: Any = 200, latency: float = 0.02,
         blocked: bool = False, rng: random.Random | None = None) -> None:
    """`per_bucket` exchanges every 10 s for `seconds`, spread evenly; status may be a callable(rng)."""
    rng = rng or random.Random(1)
    for _ in range(int(seconds // 10)):
        step = 10.0 / per_bucket if per_bucket else 10.0
        for _ in range(per_bucket):
            ex = make_exchange(method, route.replace("{id}", str(rng.randint(1, 10**6))))
            ex.route = route
            st = status(rng) if callable(status) else status
            ex.response = Response(status=st, headers=Headers())
            ex.duration = latency * rng.uniform(0.8, 1.2)
            if blocked:
                ex.verdict = Verdict(Action.BLOCK, status=403)
            det.complete(ex)
            clock.advance(step)
        if not per_bucket:
            clock.advance(step)


def normal(rng: random.Random) -> int:
    return 404 if rng.random() < 0.02 else 200


def test_steady_traffic_with_normal_noise_raises_nothing() -> None:
    det, clock, sink = detector()
    rng = random.Random(7)
    for _ in range(12):  # two hours in 10-minute steps with a +-50% wobble
        feed(det, clock, 600, rng.randint(10, 30), status=normal, rng=rng)
    assert sink.events == []


def test_traffic_spike_alerts_on_the_api_and_the_endpoint_then_ends() -> None:
    det, clock, sink = detector()
    feed(det, clock, 1200, 20, status=normal)
    feed(det, clock, 120, 400, status=normal)  # 20x for two minutes
    starts = sink.started("symptom-traffic")
    assert {e.route for e in starts} == {"", "/products/{id}"}  # the whole API, and the endpoint
    ev = starts[0]
    assert "traffic spike" in ev.findings[0]["message"] and "alert" in ev.findings[0]["tags"]
    assert ("traffic", "GET", "/products/{id}") in {(s, m, r) for s, m, r, _ in det.active()}
    feed(det, clock, 300, 20, status=normal)
    assert len(sink.ended("symptom-traffic")) == 2 and det.active() == []
    assert "alert" not in sink.ended("symptom-traffic")[0].findings[0]["tags"]  # the end is logged, not paged


def test_a_spike_during_warmup_is_not_an_incident() -> None:
    det, clock, sink = detector()
    feed(det, clock, 120, 20)
    feed(det, clock, 120, 400)
    assert sink.events == []


def test_a_slow_daily_ramp_is_not_a_spike() -> None:
    det, clock, sink = detector()
    for rate in range(10, 60, 2):  # from 60/min to 350/min over four hours
        feed(det, clock, 600, rate, status=normal)
    assert sink.started("symptom-traffic") == []


def test_failed_login_surge_on_the_login_route() -> None:
    det, clock, sink = detector()
    rng = random.Random(3)
    feed(det, clock, 1200, 5, method="POST", route="/login", rng=rng,
         status=lambda r: 401 if r.random() < 0.1 else 200)
    feed(det, clock, 120, 40, method="POST", route="/login", status=401)
    ev = sink.started("symptom-auth_failures", "/login")
    assert ev and ev[0].method == "POST" and "brute force" in ev[0].findings[0]["message"]
    assert sink.started("symptom-client_errors") == []


def test_scanner_404_surge_and_5xx_surge() -> None:
    det, clock, sink = detector()
    feed(det, clock, 1200, 20, route="/search", status=normal)
    feed(det, clock, 60, 40, route="/search", status=404)
    assert sink.started("symptom-client_errors", "/search")
    det2, clock2, sink2 = detector()
    feed(det2, clock2, 1200, 20, route="/orders", status=lambda r: 500 if r.random() < 0.005 else 200)
    feed(det2, clock2, 120, 20, route="/orders", status=lambda r: 500 if r.random() < 0.5 else 200)
    assert sink2.started("symptom-errors", "/orders")


def test_slow_responses_against_the_latency_baseline() -> None:
    det, clock, sink = detector()
    feed(det, clock, 1200, 20, route="/report", latency=0.03)
    feed(det, clock, 60, 20, route="/report", latency=0.9)
    ev = sink.started("symptom-latency", "/report")
    assert ev and "p95" in ev[0].findings[0]["evidence"]
    det2, clock2, sink2 = detector()
    feed(det2, clock2, 1200, 20, route="/report", latency=0.03)
    feed(det2, clock2, 60, 20, route="/report", latency=0.09)  # 3x but only +60 ms: not an incident
    assert sink2.started("symptom-latency") == []


def test_bastions_own_blocks_count_as_blocked_not_as_auth_failures() -> None:
    det, clock, sink = detector()
    feed(det, clock, 1200, 20, route="/api/items", status=normal)
    feed(det, clock, 60, 40, route="/api/items", status=403, blocked=True)
    assert sink.started("symptom-blocked", "/api/items")
    assert sink.started("symptom-auth_failures") == []


def test_endpoint_scopes_are_bounded() -> None:
    det, clock, _ = detector(max_endpoints=5)
    for i in range(50):
        feed(det, clock, 10, 1, route=f"/r{i}")
    assert len(det.scopes) <= 7  # the API-wide scope, then at most max_endpoints + 1


def test_symptom_events_reach_webhooks_whatever_send_on_says() -> None:
    det, clock, sink = detector()
    feed(det, clock, 1200, 20)
    feed(det, clock, 60, 400)
    alerter = WebhookAlerter(AlertsConfig(webhooks=[WebhookConfig(url="http://127.0.0.1:9/hook")], send_on="block"))
    assert alerter._wanted(sink.started("symptom-traffic")[0])
    assert not alerter._wanted(sink.ended("symptom-traffic")[0] if sink.ended("symptom-traffic") else Event(
        time=0.0, request_id="x", client_ip=""))


def test_latency_histogram_helpers() -> None:
    assert lat_bucket(0.0005) == 0 and lat_bucket(0.001) == 0
    assert lat_bucket(0.0016) == 2 and lat_bucket(3600.0) == 33
    hist = [0] * 34
    hist[lat_bucket(0.02)] = 95
    hist[lat_bucket(1.0)] = 5
    assert 0.02 <= p95(hist) <= 0.03
    assert p95([0] * 34) == 0.0


def test_the_detector_runs_in_the_default_pipeline_and_can_be_turned_off() -> None:
    assert "symptoms" in [d.name for d in make_pipeline().detectors]
    assert "symptoms" not in [d.name for d in make_pipeline({"detectors": {"symptoms": {"enabled": False}}}).detectors]


def test_active_symptoms_are_a_metrics_gauge(tmp_path: Any) -> None:
    from bastion.admin.metrics import render, snapshot
    from bastion.detect.symptoms import symptoms_of
    from bastion.runtime import Runtime

    clock = ManualClock()
    rt = Runtime.create(BastionConfig(data_dir=tmp_path), clock=clock, with_store=False)
    det = symptoms_of(rt.pipeline)
    assert det is not None
    feed(det, clock, 1200, 20)
    feed(det, clock, 60, 400)
    text = render(snapshot(rt, None, 0.0))
    assert 'bastion_symptom_active{signal="traffic",method="GET",route="/products/{id}"} 1' in text
    assert 'bastion_symptom_active{signal="traffic",method="*",route="*"} 1' in text


async def test_symptoms_in_progress_in_the_admin_stats(tmp_path: Any) -> None:
    from admin_helpers import admin_gateway
    from bastion.detect.symptoms import symptoms_of

    async with admin_gateway(tmp_path) as gw:
        det = symptoms_of(gw.runtime.pipeline)
        assert det is not None
        async with gw.client() as c:
            assert (await c.get("/api/v1/stats")).json()["symptoms"] == []
            det.scopes[("POST", "/login")] = scope = Scope()
            scope.active["auth_failures"] = 1_700_000_000.0
            got = (await c.get("/api/v1/stats")).json()["symptoms"]
    assert got == [{"signal": "auth_failures", "method": "POST", "route": "/login", "since": 1_700_000_000.0}]
