"""Rules through the real engine pipeline with a manual clock, over memory:// and a real Redis."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from bastion.clock import ManualClock
from bastion.config import BastionConfig, ConfigError, load_config, parse_config
from bastion.engine import build_pipeline
from bastion.exchange import Client, Headers, Response
from bastion.verdict import Action
from state_backends import REDIS_URL, redis_up, wipe

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
T0 = 1_700_000_000.0


@pytest.fixture(params=["memory", "redis"])
async def make(request):
    """make(config) -> pipeline on this backend, with a manual clock; cleaned up afterwards."""
    prefix = f"bastion-test-h6:{uuid.uuid4().hex[:8]}:"
    pipelines = []
    if request.param == "redis" and not redis_up():
        pytest.skip("Redis is not reachable at 127.0.0.1:6379 (CI runs these tests against a real Redis)")

    async def _make(cfg: BastionConfig, clock: ManualClock | None = None):
        if request.param == "redis":
            cfg.state.url = REDIS_URL
            cfg.state.timeout = 2.0
        cfg.state.prefix = prefix
        p = build_pipeline(cfg, clock=clock or ManualClock(T0), only={"ratelimit"})
        await p.startup()
        pipelines.append(p)
        return p

    yield _make
    for p in pipelines:
        await p.shutdown()
    if request.param == "redis":
        await wipe(prefix)


async def send(p, ip="127.0.0.2", method="GET", target="/", *, status=200, headers=(), body=b"", size=0,
               latency=0.01):
    """One exchange through every phase; the response is the upstream's unless a phase refused."""
    ex = p.new_exchange(Client(ip), method, target, Headers(list(headers)))
    v = await p.request_headers(ex)
    if v is None and body:
        ex.request.body, ex.request.body_size = body, len(body)
        v = await p.request_body(ex)
    if v is not None and v.action >= Action.CHALLENGE:
        ex.response = Response(v.status, Headers(), from_bastion=True)
    else:
        ex.response = Response(status, Headers(), body_size=size)
    ex.duration = latency
    p.complete(ex)
    await p.drain()
    return v, ex


def cfg(rules: list[dict], **extra) -> BastionConfig:
    return parse_config({"rules": rules, **extra})


def blocked(v) -> bool:
    return v is not None and v.action == Action.BLOCK


# --- the two shipped examples ----------------------------------------------------------------


async def test_per_ip_limit_example(make):
    clock = ManualClock(T0)
    p = await make(load_config(EXAMPLES / "per-ip-limit.yaml"), clock)
    results = [await send(p, "127.0.0.2") for _ in range(21)]
    assert [blocked(v) for v, _ in results] == [False] * 20 + [True]
    v = results[-1][0]
    assert v.status == 429 and v.reason == "rate-limited" and v.retry_after and v.retry_after >= 1
    hdrs = dict(v.headers)
    assert hdrs["RateLimit-Policy"] == '"per-ip-limit";q=20;w=10'
    assert hdrs["RateLimit"].startswith('"per-ip-limit";r=0;t=')
    # Another client is untouched.
    assert not blocked((await send(p, "127.0.0.3"))[0])
    # The refused request did not use quota; after Retry-After the client gets through again.
    clock.advance(v.retry_after)
    assert not blocked((await send(p, "127.0.0.2"))[0])


async def test_scanner_404_example_blocks_next_requests_then_expires(make):
    clock = ManualClock(T0)
    p = await make(load_config(EXAMPLES / "scanner-404.yaml"), clock)
    for i in range(11):
        v, ex = await send(p, "127.0.0.5", target=f"/probe/{i}", status=404)
        assert not blocked(v)  # the 11th 404 is served: the rule counts after the response
    fired = [f for f in ex.findings if f.rule_id == "scanner-404"]
    assert len(fired) == 1 and fired[0].risk == 40 and "scanner" in fired[0].tags
    v, ex = await send(p, "127.0.0.5", target="/products")
    assert blocked(v) and v.status == 403 and v.rule_ids == ("scanner-404",)
    assert v.retry_after is not None and 290 <= v.retry_after <= 300
    assert ex.findings[0].risk == 0  # the ban's own refusals add no risk and do not re-trigger it
    assert not blocked((await send(p, "127.0.0.6", target="/products"))[0])
    for _ in range(30):  # the gateway's own 403s are not counted
        await send(p, "127.0.0.5")
    clock.advance(301)
    assert not blocked((await send(p, "127.0.0.5", target="/products"))[0])


# --- counters ---------------------------------------------------------------------------------


async def test_distinct_counter_catches_enumeration_not_repetition(make):
    p = await make(cfg([{
        "id": "email-enum", "scope": {"paths": ["/api/lookup"]}, "match": {"query.email": {"present": True}},
        "key": "ip", "counter": {"distinct": "query.email"}, "window": "1m", "threshold": 10,
        "actions": {"block": 403, "cooldown": "10m", "risk": 50},
    }]))
    # A client asking about the same account again and again is one distinct value.
    for _ in range(50):
        assert not blocked((await send(p, "127.0.1.1", target="/api/lookup?email=me%40example.com"))[0])
    outcomes = [blocked((await send(p, "127.0.1.2", target=f"/api/lookup?email=user{i}%40example.com"))[0])
                for i in range(15)]
    assert outcomes == [False] * 10 + [True] * 5
    # The cooldown covers the whole scope, including a value it had asked before.
    assert blocked((await send(p, "127.0.1.2", target="/api/lookup?email=user0%40example.com"))[0])
    assert not blocked((await send(p, "127.0.1.2", target="/elsewhere"))[0])  # out of scope


async def test_sum_of_response_sizes_adds_risk_once_per_cooldown(make):
    clock = ManualClock(T0)
    p = await make(cfg([{
        "id": "bulk", "match": {"status": "2xx"}, "key": "ip", "counter": {"sum": "response.size"},
        "window": "10m", "threshold": "1MB", "actions": {"risk": 25, "alert": True, "cooldown": "10m"},
    }]), clock)
    risks = []
    for _ in range(6):
        _, ex = await send(p, "127.0.2.1", size=300_000)
        risks += [f.risk for f in ex.findings]
    assert risks == [25]  # 1.2 MB > 1 MB on the 4th response; not again during the cooldown
    _, ex = await send(p, "127.0.2.1", size=10)
    assert ex.verdict is not None and not ex.verdict.blocks


async def test_token_bucket_rule_and_api_key_hashed(make):
    p = await make(cfg([{
        "id": "per-key", "key": "api_key", "algorithm": "token_bucket", "window": "10s", "threshold": 3,
        "actions": {"block": 429},
    }]))
    h = [("X-API-Key", "sk_live_TOPSECRET")]
    res = [await send(p, f"127.0.3.{i}", headers=h) for i in range(1, 5)]  # one key, many IPs
    assert [blocked(v) for v, _ in res] == [False, False, False, True]
    f = res[-1][1].findings[0]
    assert "TOPSECRET" not in f.evidence and f.evidence.startswith("api_key=#")
    assert not blocked((await send(p, "127.0.3.1"))[0])  # no key: the rule does not apply


async def test_entity_key_follows_the_linked_attacker(make):
    p = await make(cfg([{"id": "per-entity", "key": "entity", "window": "1m", "threshold": 2,
                         "actions": {"block": 429}}]))

    async def from_entity(ip: str, entity: str):
        ex = p.new_exchange(Client(ip), "GET", "/", Headers([]))
        ex.entity = entity  # set by the behaviour engine, which links keys seen together
        return await p.request_headers(ex)

    # One attacker rotating addresses is one counter; an exchange with no entity is not counted.
    outs = [blocked(await from_entity(f"127.0.17.{i}", "e:attacker")) for i in range(1, 4)]
    assert outs == [False, False, True]
    assert not blocked(await from_entity("127.0.17.9", ""))


async def test_throttle_and_observe(make):
    p = await make(cfg([
        {"id": "slow-down", "key": "ip", "window": "10s", "threshold": 2, "actions": {"throttle": "250ms"}},
        {"id": "watch", "key": "ip", "window": "10s", "threshold": 1, "actions": {"block": 429}, "mode": "observe"},
    ]))
    vs = [(await send(p, "127.0.4.1"))[0] for _ in range(3)]
    assert vs[0] is None
    assert vs[2].action == Action.THROTTLE and vs[2].delay == pytest.approx(0.25)
    _, ex = await send(p, "127.0.4.1")
    watch = [f for f in ex.findings if f.rule_id == "watch"]
    assert watch and watch[0].observe  # reported, never enforced


async def test_matching_on_request_and_response_signals(make):
    p = await make(cfg([
        {"id": "slow-search", "scope": {"methods": ["GET"], "paths": ["/search"]},
         "match": {"latency": {"gt": "2s"}}, "key": "ip", "window": "1m", "threshold": 0,
         "actions": {"tags": ["slow"]}},
        {"id": "admin-json", "scope": {"sites": ["*.example.com"], "routes": ["/users/{id}"]},
         "match": {"json.role": {"in": ["admin", "root"]}, "header.x-debug": {"present": False},
                   "ip": {"cidr": "127.0.5.0/24"}},
         "key": ["ip", "json.user"], "window": "1m", "threshold": 0, "actions": {"tags": ["mass-assign"]}},
        {"id": "curl", "match": {"header.user-agent": {"regex": "^curl/"}}, "key": "ip", "window": "1m",
         "threshold": 0, "actions": {"tags": ["tool"]}},
    ]))
    _, ex = await send(p, target="/search?q=x", latency=2.5)
    assert [f.rule_id for f in ex.findings] == ["slow-search"]
    _, ex = await send(p, target="/search?q=x", latency=1.0)
    assert ex.findings == []
    body = b'{"user": "bob", "role": "admin"}'
    hj = [("Host", "api.example.com:8443"), ("Content-Type", "application/json")]


    async def put(ip: str, route: str, path: str = "/users/7") -> list[str]:
        ex = p.new_exchange(Client(ip), "PUT", path, Headers(list(hj)))
        ex.route = route  # the route template comes from the catalog at run time
        await p.request_headers(ex)
        ex.request.body = body
        await p.request_body(ex)
        return [f.rule_id for f in ex.findings]

    assert await put("127.0.5.9", "/users/{id}") == ["admin-json"]
    assert await put("127.0.6.9", "/users/{id}") == []  # outside the CIDR
    assert await put("127.0.5.9", "/orders/{id}", "/orders/7") == []  # outside the scope
    assert await put("127.0.5.9", "", "/users/8") == ["admin-json"]  # no route yet: the path's shape
    _, ex = await send(p, headers=[("User-Agent", "curl/8.1")])
    assert [f.rule_id for f in ex.findings] == ["curl"] and "tool" in ex.tags


async def test_login_failure_starter_rule(make):
    clock = ManualClock(T0)
    rules = {"starter": ["login-failure-burst"], "overrides": {"login-failure-burst": {"threshold": 3}}}
    p = await make(parse_config({"rules": rules}), clock)
    for _ in range(4):
        v, _ = await send(p, "127.0.7.1", "POST", "/api/v1/login", status=401)
        assert not blocked(v)
    v, _ = await send(p, "127.0.7.1", "GET", "/api/v1/login")
    assert not blocked(v)  # the scope is POST to login endpoints: the rest of the API is not refused
    v, _ = await send(p, "127.0.7.1", "POST", "/api/v1/login", status=200)
    assert blocked(v) and v.status == 403
    clock.advance(15 * 60 + 1)
    assert not blocked((await send(p, "127.0.7.1", "POST", "/api/v1/login"))[0])


# --- configuration errors --------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "needle"), [
    ({"id": "x", "window": "10 parsecs", "threshold": 1, "actions": {"block": 429}}, "window"),
    ({"id": "x", "window": "10s", "threshold": 1, "actions": {}}, "at least one action"),
    ({"id": "x", "window": "10s", "threshold": 1, "actions": {"block": 429, "throttle": "1s"}}, "exclude"),
    ({"id": "x", "window": "10s", "threshold": 1, "actions": {"block": 500}}, "actions.block"),
    ({"id": "x y", "window": "10s", "threshold": 1, "actions": {"block": 429}}, "rule ids"),
    ({"id": "x", "window": "10s", "threshold": 1, "actions": {"block": 429}, "key": "bogus"}, "unknown key"),
    ({"id": "x", "window": "10s", "threshold": 1, "actions": {"block": 429}, "match": {"stauts": 404}},
     "unknown signal"),
    ({"id": "x", "window": "10s", "threshold": 1, "actions": {"block": 429}, "match": {"path": {"regex": "("}}},
     "invalid regex"),
    ({"id": "x", "window": "10s", "threshold": 1, "actions": {"block": 403}, "key": "response.header.x-user"},
     "known before the response"),
    ({"id": "x", "window": "10s", "threshold": 1, "actions": {"block": 429}, "typo": 1}, "typo"),
])
def test_bad_rules_are_refused_with_the_field(rule, needle):
    from bastion.rulespec.loader import load_rules

    with pytest.raises(ConfigError) as err:
        load_rules(parse_config({"rules": [rule]}).rules)
    assert needle in str(err.value)


def test_rule_file_errors_name_file_and_line(tmp_path):
    from bastion.rulespec.loader import load_rule_file

    f = tmp_path / "r.yaml"
    f.write_text("- id: ok\n  window: 10s\n  threshold: 3\n  actions: {block: 429}\n"
                 "- id: bad\n  window: 10s\n  threshold: -1\n  actions: {block: 429}\n")
    with pytest.raises(ConfigError) as err:
        load_rule_file(f)
    assert f"{f}:7: rule bad: threshold" in str(err.value)


def test_duplicate_ids_and_unknown_starter():
    from bastion.rulespec.loader import load_rules

    r = {"id": "dup", "window": "1s", "threshold": 1, "actions": {"block": 429}}
    with pytest.raises(ConfigError, match="defined twice"):
        load_rules(parse_config({"rules": [r, r]}).rules)
    with pytest.raises(ConfigError, match="no starter rule"):
        load_rules(parse_config({"rules": {"starter": ["nope"]}}).rules)


def test_no_rules_no_detector():
    assert build_pipeline(BastionConfig(), only={"ratelimit"}).detectors == []


# --- backend failures ------------------------------------------------------------------------


@pytest.mark.parametrize(("fail", "expect_block"), [("open", False), ("closed", True)])
async def test_unreachable_redis_follows_the_fail_mode(fail, expect_block):
    c = parse_config({"rules": [{"id": "r", "window": "10s", "threshold": 5, "actions": {"block": 429}}],
                      "state": {"url": "redis://127.0.0.1:1/0?connect_timeout=0.1", "fail": fail}})
    p = build_pipeline(c, clock=ManualClock(T0), only={"ratelimit"})
    await p.startup()
    v, _ = await send(p)
    assert blocked(v) == expect_block
    if expect_block:
        assert v.status == 503
    await p.shutdown()


async def test_approximate_rule_counts_locally_and_syncs():
    if not redis_up():
        pytest.skip("Redis is not reachable at 127.0.0.1:6379")
    prefix = f"bastion-test-h6:{uuid.uuid4().hex[:8]}:"
    rule = {"id": "hot", "key": "ip", "window": "1m", "threshold": 10, "actions": {"block": 429}, "approximate": True}
    clock = ManualClock(T0)
    pipes = []
    for _ in range(2):
        c = parse_config({"rules": [rule], "state": {"url": REDIS_URL, "prefix": prefix, "sync_interval": 5}})
        p = build_pipeline(c, clock=clock, only={"ratelimit"})
        await p.startup()
        pipes.append(p)
    a, b = pipes
    assert not blocked((await send(b, "127.0.8.1"))[0])
    for _ in range(6):
        assert not blocked((await send(a, "127.0.8.1"))[0])
    assert a.detectors[0].storage.calls == 0  # no round trip per request
    await a.detectors[0].approx.sync_once(clock.now())
    await b.detectors[0].approx.sync_once(clock.now())
    results = [blocked((await send(b, "127.0.8.1"))[0]) for _ in range(4)]
    assert results == [False] * 3 + [True]  # after one sync b knows of a's 6: 7 + 3 = 10
    for p in pipes:
        await p.shutdown()
    await wipe(prefix)


# --- the starter set: cases that must trigger and cases that must not ---------------------------


async def starter(rule_id: str, clock: ManualClock):
    p = build_pipeline(parse_config({"rules": {"starter": [rule_id]}}), clock=clock, only={"ratelimit"})
    await p.startup()
    return p


async def test_starter_scan_404_burst():
    clock = ManualClock(T0)
    p = await starter("scan-404-burst", clock)
    for _ in range(100):  # one missing resource asked again and again is not a scan
        await send(p, "127.0.12.1", target="/favicon.ico", status=404)
    assert not blocked((await send(p, "127.0.12.1", target="/"))[0])
    for i in range(16):  # 16 distinct missing paths within 30 s is
        await send(p, "127.0.12.2", target=f"/backup-{i}.zip", status=404)
        clock.advance(1)
    v, _ = await send(p, "127.0.12.2", target="/")
    assert blocked(v) and v.status == 403
    clock.advance(301)
    assert not blocked((await send(p, "127.0.12.2", target="/"))[0])
    await p.shutdown()


async def test_starter_login_failure_burst():
    clock = ManualClock(T0)
    p = await starter("login-failure-burst", clock)
    for _ in range(11):  # failures elsewhere, or GETs of the login page, are not login failures
        await send(p, "127.0.13.1", "POST", "/api/orders", status=401)
        await send(p, "127.0.13.1", "GET", "/auth/login", status=401)
    assert not blocked((await send(p, "127.0.13.1", "POST", "/auth/login"))[0])
    for _ in range(11):
        _, ex = await send(p, "127.0.13.2", "POST", "/auth/login", status=401)
    assert "alert" in ex.findings[-1].tags
    assert blocked((await send(p, "127.0.13.2", "POST", "/auth/login"))[0])
    await p.shutdown()


async def test_starter_per_key_rate():
    p = await starter("per-key-rate", ManualClock(T0))
    auth = [("Authorization", "Bearer opaque-token-1")]
    results = [blocked((await send(p, "127.0.14.1", headers=auth))[0]) for _ in range(601)]
    assert results.count(True) == 1 and results[-1]
    assert not any([blocked((await send(p, "127.0.14.1"))[0]) for _ in range(50)])  # no key: not counted
    await p.shutdown()


async def test_starter_exports():
    clock = ManualClock(T0)
    p = await starter("oversized-export", clock)
    _, ex = await send(p, "127.0.15.1", target="/api/reports/export.csv", size=25_000_000)
    assert [f.rule_id for f in ex.findings] == ["oversized-export"] and ex.findings[0].risk == 10
    _, ex = await send(p, "127.0.15.1", target="/api/items", size=25_000_000)
    assert ex.findings == []  # large, but not an export endpoint
    _, ex = await send(p, "127.0.15.2", target="/api/export", size=1_000)
    assert ex.findings == []
    await p.shutdown()
    p = await starter("export-volume", clock)
    risks = []
    for _ in range(25):
        _, ex = await send(p, "127.0.15.3", target="/api/items", size=10_000_000)
        risks += [f.risk for f in ex.findings]
    assert risks == [25]  # 210 MB > 200 MB once, not again during the cooldown
    for _ in range(25):
        _, ex = await send(p, "127.0.15.4", target="/api/items", status=404, size=10_000_000)
        assert ex.findings == []  # only successful responses carry data away
    await p.shutdown()


async def test_findings_rules_count_blocked_attacks(make):
    """A rule on other detectors' findings counts the requests Bastion refused (unlike a rule on status)."""
    from bastion.engine.pipeline import Pipeline
    from bastion.verdict import Finding

    class Sqli:
        name = "sig"

        def request_headers(self, ex):
            if "union" in ex.request.target:
                ex.add(Finding("942100", "sig", "sqli", score=5, tags=("sqli",)))

    base = await make(cfg([{"id": "repeat-sqli", "match": {"findings.tags": {"in": ["sqli", "xss"]}},
                            "key": "ip", "window": "10m", "threshold": 2,
                            "actions": {"block": 403, "cooldown": "1h"}}]))
    rl = base.detectors[0]
    p = Pipeline(base.config, [rl, Sqli()], clock=base.clock)
    for _ in range(3):
        v, _ = await send(p, "127.0.18.1", target="/items?id=1%20union%20select")
        assert blocked(v) and v.rule_ids == ("942100",)  # the signature blocks each attempt
    v, _ = await send(p, "127.0.18.1", target="/items?id=1")
    assert blocked(v) and v.rule_ids == ("repeat-sqli",)  # and after 3, the client is shut out


async def test_alert_action_reaches_the_webhook_alerter():
    """`alert: true` on a rule that only scores still asks the alerter (which sends blocks by default)."""
    from bastion.alerts.settings import AlertsConfig
    from bastion.alerts.webhooks import WebhookAlerter
    from bastion.events import event_from_exchange

    p = build_pipeline(cfg([
        {"id": "loud", "key": "ip", "window": "1m", "threshold": 0, "actions": {"risk": 1, "alert": True}},
        {"id": "quiet", "key": "ip", "window": "1m", "threshold": 0, "actions": {"risk": 1}},
    ]), clock=ManualClock(T0), only={"ratelimit"})
    _, ex = await send(p)
    assert {f.rule_id for f in ex.findings} == {"loud", "quiet"}
    alerter = WebhookAlerter(AlertsConfig(webhooks=[{"url": "http://127.0.0.1:9/hook"}]), sender=lambda h, b: None)
    assert alerter._wanted(event_from_exchange(ex))
    ex.findings = [f for f in ex.findings if f.rule_id == "quiet"]
    assert not alerter._wanted(event_from_exchange(ex))
