"""Hostile input through the behaviour detectors: no detector error, ever."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from behaviour_helpers import Harness

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
header = st.tuples(st.sampled_from(["Authorization", "Cookie", "X-API-Key", "User-Agent", "Accept", "Content-Type",
                                    "X-User", "Accept-Language", "Host"]), text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "get", "BREW"]),
    path=st.lists(st.one_of(text, st.sampled_from(["login", "orders", "123", "a@b.co", "+15550001111", "{id}"])),
                  max_size=5),
    query=st.lists(st.tuples(st.sampled_from(["email", "id", "q", "api_key", "user", "x"]), text), max_size=4),
    headers=st.lists(header, max_size=8),
    body=st.one_of(st.binary(max_size=200), st.just(b'{"username": 5, "password": null}'), st.just(b"[1,2]"),
                   st.just(b'{"email": {"$ne": 1}}'), st.just(b"username=a%40b&password=x")),
    status=st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 500]),
    resp_body=st.one_of(st.binary(max_size=100), st.just(b'{"found":false}'), st.just(b"[]")),
)
def test_no_detector_error_on_hostile_input(method: str, path: list[str], query: list[tuple[str, str]],
                                            headers: list[tuple[str, str]], body: bytes, status: int,
                                            resp_body: bytes) -> None:
    async def run() -> None:
        h = await Harness({"behaviour": {"entity": {"user_header": "X-User"}}}).start()
        target = "/" + "/".join(p.replace("?", "").replace("#", "") for p in path)
        if query:
            target += "?" + "&".join(f"{k}={v}" for k, v in query)
        for ip in ("127.5.5.5", "::1", "2001:db8::7"):
            s = await h.send(ip, method, target, status=status, body=body, resp_body=resp_body, headers=headers)
            assert not s.ex.errors, s.ex.errors
        await h.stop()

    asyncio.run(run())


async def test_activity_table_is_bounded_under_invented_addresses() -> None:
    # H11: `activity` (one entry per subject) had only a day-long idle expiry and no size cap, so an
    # attacker inventing addresses or API keys grew it without limit.
    h = await Harness().start()
    det = h.detector("behaviour")
    det._activity_max = 1000
    for i in range(3000):
        await h.send(f"10.9.{i >> 8}.{i & 255}", target=f"/items?n={i}", advance=0.01)
    assert 0 < len(det.activity) <= 1000
    await h.stop()
