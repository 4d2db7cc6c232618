"""Request limits: each limit refuses with its own status and reason, and normal requests pass."""

from __future__ import annotations

import pytest

from bastion.detect.limits import (
    RULE_BODY,
    RULE_HEADER_BYTES,
    RULE_HEADER_COUNT,
    RULE_HEADER_VALUE,
    RULE_QUERY_ARGS,
    RULE_URI,
    declared_length,
)
from bastion.testing import make_exchange, make_pipeline, run_request
from bastion.verdict import Action

LIMITS = {
    "limits": {
        "max_uri_bytes": 200,
        "max_header_bytes": 2048,
        "max_header_count": 20,
        "max_header_value_bytes": 512,
        "max_body_bytes": 1000,
        "max_query_args": 10,
        "inspect_body_bytes": 100,
    }
}


@pytest.fixture
def pipeline():
    return make_pipeline(LIMITS, only={"limits"})


def rules(ex) -> set[str]:
    return {f.rule_id for f in ex.findings}


@pytest.mark.parametrize(
    ("kwargs", "rule", "status", "reason"),
    [
        ({"target": "/" + "a" * 250}, RULE_URI, 414, "uri-too-long"),
        ({"target": "/s?" + "&".join(f"a{i}=1" for i in range(11))}, RULE_QUERY_ARGS, 400, "bad-request"),
        ({"headers": [(f"X-H{i}", "v") for i in range(25)]}, RULE_HEADER_COUNT, 431, "headers-too-large"),
        ({"headers": {"X-Big": "v" * 600}}, RULE_HEADER_VALUE, 431, "headers-too-large"),
        ({"headers": [(f"X-H{i}", "v" * 400) for i in range(6)]}, RULE_HEADER_BYTES, 431, "headers-too-large"),
        ({"method": "POST", "headers": {"Content-Length": "1001"}}, RULE_BODY, 413, "body-too-large"),
        ({"method": "POST", "headers": {"Content-Length": "5, 2000"}}, RULE_BODY, 413, "body-too-large"),
        ({"method": "POST", "body": b"x" * 1500}, RULE_BODY, 413, "body-too-large"),
        (
            {"method": "POST", "headers": {"Transfer-Encoding": "chunked"}, "body": b"x" * 1001},
            RULE_BODY, 413, "body-too-large",
        ),
    ],
)
async def test_over_limit_is_refused_with_its_status(pipeline, kwargs, rule, status, reason):
    method = kwargs.pop("method", "GET")
    target = kwargs.pop("target", "/")
    ex = make_exchange(method, target, pipeline=pipeline, inspect_bytes=100, **kwargs)
    verdict = await run_request(pipeline, exchange=ex)
    assert rule in rules(ex)
    assert verdict.action == Action.BLOCK
    assert (verdict.status, verdict.reason) == (status, reason)
    assert verdict.close is (status != 405)
    # evidence is sizes, never content
    assert all("vvvv" not in f.evidence and "xxxx" not in f.evidence for f in ex.findings)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target": "/" + "a" * 190},
        {"target": "/s?" + "&".join(f"a{i}=1" for i in range(10))},
        {"target": "/s?a=1&&&&&&&&&&&&&&&&b=2"},  # empty parts are not arguments
        {"headers": [(f"X-H{i}", "v") for i in range(18)]},
        {"headers": {"Authorization": "Bearer " + "t" * 500}},
        {"method": "POST", "body": b"x" * 1000},
        {"method": "POST", "headers": {"Content-Length": "1000"}},
        {"method": "POST", "headers": {"Content-Length": "abc"}},  # unparsable: protocol's job
    ],
)
async def test_within_limits_passes(pipeline, kwargs):
    method = kwargs.pop("method", "GET")
    target = kwargs.pop("target", "/")
    verdict = await run_request(pipeline, method, target, **kwargs)
    assert verdict.action == Action.ALLOW


async def test_body_limit_reported_once(pipeline):
    ex = make_exchange("POST", "/up", headers={"Content-Length": "5000"}, body=b"x" * 5000, pipeline=pipeline)
    await pipeline.request_headers(ex)
    await pipeline.request_body(ex)
    assert [f.rule_id for f in ex.findings] == [RULE_BODY]


async def test_observe_mode_records_without_blocking():
    pipeline = make_pipeline({**LIMITS, "mode": "observe"}, only={"limits"})
    verdict = await run_request(pipeline, "GET", "/" + "a" * 300)
    assert verdict.action == Action.LOG
    assert verdict.would_block and verdict.status == 414


async def test_detector_observe_setting():
    pipeline = make_pipeline({**LIMITS, "detectors": {"limits": {"observe": True}}}, only={"limits"})
    ex = make_exchange("GET", "/" + "a" * 300, pipeline=pipeline)
    verdict = await run_request(pipeline, exchange=ex)
    assert verdict.action != Action.BLOCK
    assert ex.findings and all(f.observe for f in ex.findings)


def test_declared_length_parsing():
    assert declared_length(make_exchange(headers={"Content-Length": "12"})) == 12
    assert declared_length(make_exchange(headers=[("Content-Length", "3"), ("Content-Length", "9")])) == 9
    assert declared_length(make_exchange(headers={"Content-Length": "-1"})) is None
    assert declared_length(make_exchange(headers={"Content-Length": "١٢"})) is None  # non-ASCII digits
    assert declared_length(make_exchange()) is None
