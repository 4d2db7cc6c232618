"""Prometheus metrics: the per-endpoint sink, the exposition text (parsed by the reference
parser), merging across workers, and the multi-worker gateway adding its workers up."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from admin_helpers import TOKEN, admin_gateway
from bastion.admin import metrics as m
from bastion.admin.metrics import read_peer_snapshots
from bastion.exchange import Client, Exchange, Headers, Request, Response
from bastion.verdict import Action, Verdict
from proxy_helpers import free_port, get, request, upstream_server

SQLI = "/search?q=1%27%20OR%20%271%27=%271%27%20UNION%20SELECT%20password%20FROM%20users--"


def parse(text: str) -> dict[str, list]:
    """name -> samples, through prometheus_client's own parser (it raises on malformed text)."""
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(samples: dict[str, list], name: str, **labels: str) -> float:
    found = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


async def test_metrics_per_rule_and_endpoint_parse_as_prometheus_text(tmp_path):
    async with admin_gateway(tmp_path) as gw:
        for _ in range(2):
            assert (await request(gw.proxy_port, get("/hello"))).status == 200
        assert (await request(gw.proxy_port, get("/status/404"))).status == 404
        assert (await request(gw.proxy_port, get(SQLI))).status == 403
        await gw.flush_events()
        async with gw.client(token=None) as c:
            assert (await c.get("/metrics")).status_code == 401
        async with gw.client() as c:
            r = await c.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        s = parse(r.text)
        assert value(s, "bastion_exchanges_total") == 4
        assert value(s, "bastion_exchanges_blocked_total") == 1
        assert any(x.labels["rule"].startswith("942") and x.value >= 1 for x in s["bastion_findings_total"])
        assert value(s, "bastion_endpoint_requests_total", method="GET", route="/hello", code="2xx") == 2
        # the 404 and the 403 of the block (a 404 may have no route template: nothing to learn there)
        assert sum(x.value for x in s["bastion_endpoint_requests_total"] if x.labels["code"] == "4xx") == 2
        blocked = s["bastion_endpoint_blocked_total"]
        assert sum(x.value for x in blocked) == 1
        # the histogram is cumulative, ends at +Inf, and its count is the endpoint's requests
        buckets = [x for x in s["bastion_endpoint_duration_seconds_bucket"] if x.labels["route"] == "/hello"]
        values = [x.value for x in buckets]
        assert values == sorted(values) and buckets[-1].labels["le"] == "+Inf" and values[-1] == 2
        assert value(s, "bastion_endpoint_duration_seconds_count", method="GET", route="/hello") == 2
        assert value(s, "bastion_endpoint_duration_seconds_sum", method="GET", route="/hello") > 0
        assert value(s, "bastion_events_written_total") >= 1
        assert value(s, "bastion_workers_reporting") == 1
        assert value(s, "bastion_info")  == 1
        assert "bastion_decisions_active" in s


async def test_public_metrics_need_no_token(tmp_path):
    async with admin_gateway(tmp_path, admin={"public_metrics": True}) as gw, gw.client(token=None) as c:
        r = await c.get("/metrics")
        assert r.status_code == 200 and "bastion_exchanges_total 0" in r.text
        assert (await c.get("/api/v1/stats")).status_code == 401, "only /metrics is public"


def _exchange(method: str, route: str, status: int | None, duration: float, blocked: bool = False) -> Exchange:
    ex = Exchange(id="r", client=Client(peer_ip="10.0.0.1"),
                  request=Request(method=method, target=route, headers=Headers([])), started=0.0, started_mono=0.0)
    ex.route = route
    ex.duration = duration
    if status is not None:
        ex.response = Response(status=status, headers=Headers([]))
    if blocked:
        ex.verdict = Verdict(Action.BLOCK, status=403)
    return ex


def test_series_are_capped_and_labels_escaped():
    sink = m.EndpointMetrics(max_series=2)
    sink.exchange_done(_exchange("GET", '/a"b\\c\nd', 200, 0.003))
    sink.exchange_done(_exchange("BREW", "/b", None, 20.0, blocked=True))
    sink.exchange_done(_exchange("GET", "/c", 500, 0.2))
    sink.exchange_done(_exchange("GET", "/d", 201, 0.2))
    assert set(sink.series) == {("GET", '/a"b\\c\nd'), ("OTHER", "/b"), ("GET", m.OTHER)}
    other = sink.series[("GET", m.OTHER)]
    assert other.codes[1] == 1 and other.codes[4] == 1
    none = sink.series[("OTHER", "/b")]
    assert none.codes[5] == 1 and none.blocked == 1 and none.buckets[-1] == 1, "20 s lands in +Inf"

    class RT:  # the smallest runtime snapshot() reads
        class pipeline:
            class counters:
                exchanges, blocked, logged = 4, 1, 0
                detector_errors = {'det"x': 1}
                findings_by_rule = {"942100": 3}
            detectors = ()
        services: dict = {}

    s = parse(m.render(m.merge([m.snapshot(RT, sink, 1.0)])))
    assert value(s, "bastion_endpoint_requests_total", method="GET", route='/a"b\\c\nd', code="2xx") == 1
    assert value(s, "bastion_endpoint_requests_total", method="OTHER", route="/b", code="none") == 1
    assert value(s, "bastion_detector_errors_total", detector='det"x') == 1
    assert value(s, "bastion_findings_total", rule="942100") == 3


def test_merge_adds_counters_and_histograms_and_maxes_shared_gauges():
    a = {"started": 5.0, "counters": {"c_total": {"": 2, 'k="x"': 1}}, "gauges": {"g": {"": 1}},
         "gauges_max": {"d": {"": 3}}, "histograms": {'route="/a"': {"buckets": [1, 0] + [0] * 12, "sum": 0.1}}}
    b = {"started": 3.0, "counters": {"c_total": {"": 5}}, "gauges": {"g": {"": 1}},
         "gauges_max": {"d": {"": 3}}, "histograms": {'route="/a"': {"buckets": [0, 2] + [0] * 12, "sum": 0.2}}}
    out = m.merge([a, b])
    assert out["counters"]["c_total"] == {"": 7, 'k="x"': 1}
    assert out["gauges"]["g"] == {"": 2} and out["gauges_max"]["d"] == {"": 3} and out["started"] == 3.0
    h = out["histograms"]['route="/a"']
    assert h["buckets"][:2] == [1, 2] and abs(h["sum"] - 0.3) < 1e-9


def test_peer_snapshots_skip_self_stale_and_broken_files(tmp_path):
    good = {"counters": {"x_total": {"": 1}}}
    (tmp_path / "metrics-1.json").write_bytes(orjson.dumps(good))
    (tmp_path / "metrics-2.json").write_bytes(orjson.dumps(good))
    (tmp_path / "metrics-3.json").write_bytes(b"{broken")
    (tmp_path / "metrics-4.json").write_bytes(orjson.dumps(good))
    old = time.time() - 60
    os.utime(tmp_path / "metrics-4.json", (old, old))
    assert read_peer_snapshots(tmp_path, own_pid=2) == [good]


SCRIPT = """
import sys
from bastion.config import parse_config
from bastion.frontends.proxy.run import run_proxy
cfg = parse_config({"upstream": {"url": sys.argv[1]}, "server": {"listen": "127.0.0.1:0"}, "data_dir": sys.argv[2],
                    "admin": {"listen": "127.0.0.1:" + sys.argv[3], "token": sys.argv[4]}})
run_proxy(cfg, workers=2, ready=lambda port: print(port, flush=True))
"""


@pytest.mark.timeout(60)
async def test_two_workers_one_admin_and_metrics_of_both(tmp_path):
    admin_port = free_port()
    async with upstream_server() as up:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SCRIPT, up.url, str(tmp_path), str(admin_port), TOKEN,
            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        try:
            assert proc.stdout is not None
            port = int(await asyncio.wait_for(proc.stdout.readline(), 20))
            sent = 0
            lost = 0  # attempts that failed on our side (a timeout on a busy machine): counted or not
            prefixes = set()
            deadline = time.monotonic() + 20
            while len(prefixes) < 2 and time.monotonic() < deadline:
                try:
                    resp = await request(port, get("/hello"), wait=2)
                except (ConnectionError, OSError):  # (TimeoutError is an OSError)
                    lost += 1
                    await asyncio.sleep(0.1)
                    continue
                sent += 1
                prefixes.add((resp.header("x-request-id") or "")[:8])
            assert len(prefixes) == 2, "both workers answered"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{admin_port}",
                                         headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5) as c:
                samples: dict = {}
                while time.monotonic() < deadline + 15:
                    try:
                        samples = parse((await c.get("/metrics")).text)
                    except httpx.HTTPError:
                        await asyncio.sleep(0.2)
                        continue
                    if value(samples, "bastion_workers_reporting") == 2 and \
                            sent <= (value(samples, "bastion_exchanges_total") or 0) <= sent + lost:
                        break
                    await asyncio.sleep(0.5)
                assert value(samples, "bastion_workers_reporting") == 2
                total = value(samples, "bastion_exchanges_total")
                assert sent <= total <= sent + lost
                assert value(samples, "bastion_endpoint_requests_total", method="GET", route="/hello",
                             code="2xx") == total
                stats = (await c.get("/api/v1/stats")).json()
                assert stats["workers"] == 2 and stats["workers_reporting"] == 2
                assert stats["exchanges"] == total and stats["endpoints"][0]["requests"] == total
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 20)
    assert not list((tmp_path / "run").glob("metrics-*.json")), "workers remove their snapshot on exit"


def test_worker_config_keeps_the_admin_on_worker_zero_only():
    from bastion.admin.server import worker_config
    from bastion.config import BastionConfig

    cfg = BastionConfig()
    w0, w1 = worker_config(cfg, 0, 4), worker_config(cfg, 1, 4)
    assert w0.admin.enabled and not w1.admin.enabled
    assert w0.server.workers == w1.server.workers == 4
    assert cfg.admin.enabled and cfg.server.workers == 1, "the parent's config is not changed"
