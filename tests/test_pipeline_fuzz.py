"""Hostile input through every default detector, with access control and JWT verification on: no
detector error, ever (a failing detector would fail open or closed, never as designed)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.engine.registry import DETECTORS
from behaviour_helpers import Harness

SECRET = "s3cret-that-is-long-enough-for-hs256!!"
CONFIG = {
    "behaviour": {"entity": {"jwt": {"secrets": [SECRET]}}},
    "access": {"api_keys": [{"name": "k", "sha256": "0" * 64}],
               "rules": [{"path": "/admin/*", "require": "jwt", "scopes": ["admin"]}, {"path": "/api/*"}]},
}
Running = tuple[asyncio.AbstractEventLoop, Harness]
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# tokens shaped like JWTs: real base64url parts around hostile JSON (or not JSON at all)
jwt_like = st.builds(
    lambda h, p, s: f"{b64(h)}.{b64(p)}.{s}",
    st.one_of(st.binary(max_size=40), st.sampled_from([b'{"alg":"none"}', b'{"alg":"HS256","kid":[1]}',
                                                       b'{"alg":null}', b"[]", b'{"alg":"NONE","typ":7}'])),
    st.one_of(st.binary(max_size=40), st.just(b'{"sub":{"x":1},"scope":[1,null],"exp":"soon"}')),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", max_size=20),
)
header = st.one_of(
    st.tuples(st.sampled_from(["Authorization"]), st.builds(lambda t: "Bearer " + t, st.one_of(jwt_like, text))),
    st.tuples(st.sampled_from(["X-API-Key", "Cookie", "User-Agent", "Accept", "Content-Type", "Content-Range",
                               "Content-Encoding", "Accept-Charset", "X-Forwarded-For", "Host"]), text),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=st.sampled_from(["/admin/users", "/api/items/3", "/graphql", "/login", "/users/sign_in", "/x"]),
    query=st.lists(st.tuples(st.sampled_from(["email", "q", "filter", "x"]), text), max_size=3),
    headers=st.lists(header, max_size=6),
    body=st.one_of(st.binary(max_size=200), st.just(b'{"variables": {"email": {"$ne": 1}}}'),
                   st.just(b'{"user": {"email": [1], "password": null}}'), st.just(b"user%5Bemail%5D=%FF")),
    status=st.sampled_from([200, 400, 401, 404, 422, 500]),
    resp_body=st.one_of(st.binary(max_size=100), st.just(b'{"data":{"u":null}}')),
)
def test_no_detector_error_on_hostile_input(method: str, path: str, query: list[tuple[str, str]],
                                            headers: list[tuple[str, str]], body: bytes, status: int,
                                            resp_body: bytes, harness: Running) -> None:
    loop, h = harness
    target = path + ("?" + "&".join(f"{k}={v}" for k, v in query) if query else "")
    s = loop.run_until_complete(h.send("127.6.6.6", method, target, status=status, body=body, resp_body=resp_body,
                                       headers=headers))
    assert not s.ex.errors, s.ex.errors


@pytest.fixture(scope="module")
def harness() -> Iterator[Running]:
    """One pipeline for every example (its rules compile once), on a loop of its own."""
    loop = asyncio.new_event_loop()
    h = loop.run_until_complete(Harness(CONFIG, only={name for name, _ in DETECTORS}).start())
    yield loop, h
    loop.run_until_complete(h.stop())
    loop.close()
