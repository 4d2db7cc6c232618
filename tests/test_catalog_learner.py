"""The learner on a ~40-endpoint test API: templates, types, determinism, bounded memory."""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.catalog.learner import Learner, LearnerLimits, auth_kind
from bastion.catalog.openapi import export_openapi
from bastion.exchange import Headers, Response
from bastion.testing import make_exchange
from catalog_traffic import HOST, SPECS, normalize, to_exchange, traffic, truth


def learn(n: int, seed: int = 7, learner: Learner | None = None, scanner: float = 0.1) -> Learner:
    lr = learner or Learner()
    for i, call in enumerate(traffic(n, seed, scanner)):
        lr.observe(to_exchange(call, 1_700_000_000.0 + i))
    return lr


@pytest.fixture(scope="module")
def learned() -> Learner:
    return learn(4000)


def templates(lr: Learner) -> set[tuple[str, str]]:
    return {(e.method, normalize(e.template)) for e in lr.endpoints()}


def test_templates_match_the_api(learned: Learner) -> None:
    want = truth()
    got = templates(learned)
    right = want & got
    extra = got - want
    assert len(want) >= 40
    assert len(right) / len(want) >= 0.95, sorted(want - got)
    assert len(extra) <= 0.10 * len(want), sorted(extra)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_templates_hold_for_other_traffic(seed: int) -> None:
    got = templates(learn(3000, seed))
    want = truth()
    assert len(want & got) / len(want) >= 0.95, sorted(want - got)
    assert len(got - want) <= 0.10 * len(want), sorted(got - want)


def test_scanner_404s_never_become_endpoints(learned: Learner) -> None:
    for e in learned.endpoints():
        assert "404" not in e.status or e.status["404"] < e.calls
        assert not e.template.endswith(".php")
    assert learned.unmatched > 0


def test_me_sibling_and_versions_stay_apart(learned: Learner) -> None:
    ts = {e.template for e in learned.endpoints()}
    assert "/api/v1/users/me" in ts
    assert "/api/v1/users/{id}" in ts
    assert "/api/v2/users/me" in ts and "/api/v2/users/{id}" in ts
    assert "/api/v1/articles/search" in ts


def test_kinds_name_the_parameters(learned: Learner) -> None:
    ts = {e.template for e in learned.endpoints()}
    for t in ("/api/v1/users/{id}/orders/{uuid}", "/api/v1/files/{hash}", "/api/v1/reports/{date}",
              "/api/v1/accounts/{email}", "/api/v1/sessions/{token}", "/api/v1/orders/{uuid}/items/{id}"):
        assert t in ts


def test_parameter_types_are_right(learned: Learner) -> None:
    ep = learned.find(HOST, "GET", "/api/v1/users/{id}")
    assert ep is not None
    assert ep.path["id"].json_schema(text=True)["type"] == "integer"
    orders = learned.find(HOST, "GET", "/api/v1/orders/{uuid}")
    assert orders is not None and orders.path["uuid"].json_schema(text=True)["format"] == "uuid"
    users = learned.find(HOST, "GET", "/api/v1/users")
    assert users is not None
    assert users.query["page"].json_schema(text=True)["type"] == "integer"
    assert users.query["sort"].json_schema(text=True)["enum"] == ["asc", "desc"]
    assert 0.5 < users.query["page"].n / users.sampled < 0.9  # optional, present ~70%
    post = learned.find(HOST, "POST", "/api/v1/users")
    assert post is not None
    body = post.body["application/json"].json_schema()
    assert body["properties"]["age"]["type"] == "integer"
    assert body["properties"]["email"]["format"] == "email"
    assert set(body["required"]) == {"name", "email", "age"}
    assert body["additionalProperties"] is False
    login = learned.find(HOST, "POST", "/login")
    assert login is not None
    form = login.body["application/x-www-form-urlencoded"]
    assert form.props is not None and set(form.props) == {"username", "password"}
    assert form.props["password"].enum is None  # a secret field keeps no values
    orders_post = learned.find(HOST, "POST", "/api/v1/orders")
    assert orders_post is not None
    sch = orders_post.body["application/json"].json_schema()
    assert sch["properties"]["coupon"]["type"] == ["string", "null"]
    assert sch["properties"]["items"]["items"]["properties"]["qty"]["type"] == "integer"
    resp = post.responses["201"].json_schema()
    assert resp["properties"]["created"]["format"] == "date-time"


def test_counts_statuses_auth_and_content_types(learned: Learner) -> None:
    ep = learned.find(HOST, "DELETE", "/api/v1/sessions/{token}")
    assert ep is not None and set(ep.status) == {"204"} and ep.errors == 0
    assert set(ep.auth) <= {"bearer", "none"} and ep.auth["bearer"] > ep.auth.get("none", 0)
    up = learned.find(HOST, "POST", "/api/v1/uploads")
    assert up is not None and "multipart/form-data" in up.req_types
    assert ep.first_seen < ep.last_seen


def test_replaying_the_same_traffic_gives_the_same_catalog() -> None:
    a = export_openapi(learn(2500).endpoints())
    b = export_openapi(learn(2500).endpoints())
    assert orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(b, option=orjson.OPT_SORT_KEYS)
    twice = learn(2500, learner=learn(2500))
    assert templates(twice) == templates(learn(2500))


def test_memory_is_bounded_with_many_distinct_paths() -> None:
    limits = LearnerLimits(max_nodes=2000, max_endpoints=500)
    lr = Learner(limits)
    r = random.Random(3)
    for i in range(40_000):
        # An attacker inventing paths that a catch-all route answers with 200.
        words = ["".join(r.choice("abcdefghij") for _ in range(6)) for _ in range(r.randint(1, 4))]
        ex = make_exchange("GET", "/" + "/".join(words), host=HOST)
        ex.started = 1_700_000_000.0 + i
        ex.response = Response(200, Headers())
        lr.observe(ex)
    assert lr.budget[0] <= 2000
    assert lr.n_endpoints <= 500
    assert sum(t.count_nodes() for t in lr.trees.values()) <= 2000 + len(lr.trees)
    # Cardinality folded the invented words into parameters instead of filling the caps.
    assert len(lr.endpoints()) < 50


def test_hosts_are_capped() -> None:
    lr = Learner(LearnerLimits(max_hosts=3))
    for i in range(10):
        ex = make_exchange("GET", "/x", host=f"h{i}.test")
        ex.response = Response(200, Headers())
        lr.observe(ex)
    assert len(lr.trees) == 3 and lr.dropped == 7


def test_blocked_and_unanswered_exchanges_are_not_learned() -> None:
    lr = Learner()
    ex = make_exchange("GET", "/admin", host=HOST)
    ex.response = Response(403, Headers(), from_bastion=True)
    lr.observe(ex)
    ex2 = make_exchange("GET", "/admin", host=HOST)
    lr.observe(ex2)
    assert lr.endpoints() == []


def test_route_is_set_for_events() -> None:
    lr = Learner()
    ex = make_exchange("GET", "/users/42", host=HOST)
    ex.response = Response(200, Headers())
    lr.observe(ex)
    assert ex.route == "/users/{id}"


@pytest.mark.parametrize(
    ("headers", "target", "kind"),
    [
        ({"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"}, "/", "bearer-jwt"),
        ({"Authorization": "Bearer abc"}, "/", "bearer"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "/", "basic"),
        ({"X-API-Key": "k"}, "/", "api-key"),
        ({"Cookie": "theme=dark; sessionid=abc"}, "/", "cookie"),
        ({}, "/?api_key=abc", "api-key-query"),
        ({"Cookie": "theme=dark"}, "/?page=2", "none"),
    ],
)
def test_auth_kinds(headers: dict[str, str], target: str, kind: str) -> None:
    assert auth_kind(make_exchange("GET", target, headers=headers)) == kind


def test_sampling_keeps_the_cost_down_but_counts_everything() -> None:
    lr = Learner(LearnerLimits(full_samples=10, sample_every=5))
    for i in range(100):
        ex = make_exchange("GET", f"/items/{i}?q=x", host=HOST)
        ex.response = Response(200, Headers())
        lr.observe(ex)
    ep = lr.find(HOST, "GET", "/items/{id}")
    assert ep is not None and ep.calls == 100 and ep.sampled == 10 + 18
    assert ep.query["q"].n == ep.sampled


def test_all_specs_are_exercised() -> None:
    seen = {c.spec.template for c in traffic(4000) if c.status != 404}
    assert seen == {s.template for s in SPECS}


def test_junk_bodies_cannot_grow_an_endpoint_without_bound() -> None:
    from bastion.catalog.endpoint import MAX_SHAPES
    from bastion.catalog.shapes import size

    lr = Learner(LearnerLimits(full_samples=10**9))
    r = random.Random(9)

    def junk(depth: int) -> object:
        if depth == 0:
            return r.random()
        return {f"k{r.getrandbits(32)}": junk(depth - 1) for _ in range(5)}

    for _ in range(300):
        body = orjson.dumps(junk(4))
        ex = make_exchange("POST", "/upload", headers={"Content-Type": "application/json",
                                                       f"X-Junk-{r.getrandbits(32)}": "1"}, body=body, host=HOST)
        ex.response = Response(200, Headers([("Content-Type", f"application/x-{r.getrandbits(32)}")]))
        lr.observe(ex)
    ep = lr.find(HOST, "POST", "/upload")
    assert ep is not None and ep.calls == 300
    assert sum(size(s) for s in ep.body.values()) <= MAX_SHAPES + 1
    assert len(ep.headers) <= 64 and len(ep.resp_types) <= 17


def test_global_shape_budget() -> None:
    from bastion.catalog.shapes import size

    lr = Learner(LearnerLimits(max_shapes=60))
    for i in range(40):
        body = orjson.dumps({f"f{j}": {"x": j} for j in range(5)})
        ex = make_exchange("POST", f"/r{i}/x", headers={"Content-Type": "application/json"}, body=body, host=HOST)
        ex.response = Response(201, Headers())
        lr.observe(ex)
    total = sum(size(s) - 1 for e in lr.endpoints() for s in e.body.values())
    assert total <= 60 and lr.shapes.left <= 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.text(min_size=0, max_size=80),
    query=st.text(max_size=60),
    body=st.binary(max_size=200) | st.builds(lambda d: orjson.dumps(d), st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=20)),
    ct=st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", "", "x/y;;"]),
    status=st.sampled_from([200, 201, 204, 302, 400, 404, 500]),
    method=st.sampled_from(["GET", "POST", "get", "M-SEARCH", "PROPFIND", ""]),
)
def test_hostile_exchanges_never_crash_the_learner(path: str, query: str, body: bytes, ct: str, status: int,
                                                    method: str) -> None:
    lr = _FUZZ
    target = "/" + path.replace("?", "%3F") + ("?" + query if query else "")
    ex = make_exchange(method or "GET", target, headers={"Content-Type": ct, "Cookie": query, "X-" + ct: path},
                       body=body, host=HOST)
    ex.response = Response(status, Headers([("Content-Type", ct)]), body=body, body_size=len(body))
    lr.observe(ex)
    export_openapi(lr.endpoints())


_FUZZ = Learner(LearnerLimits(max_nodes=500, max_endpoints=50))
