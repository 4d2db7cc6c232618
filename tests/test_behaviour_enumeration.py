"""Enumeration: many distinct identifiers on one lookup endpoint, mostly misses."""

from __future__ import annotations

from behaviour_helpers import CHROME, TOOL, Harness


async def test_email_enumeration_is_blocked() -> None:
    h = await Harness().start()
    sent = []
    for i in range(60):
        hit = i % 5 == 0
        sent.append(await h.send("127.40.0.1", target=f"/api/users/lookup?email=p{i}%40mail.test",
                                 status=200 if hit else 404, resp_body=b'{"found":true}' if hit else b"{}"))
    first = next(i for i, s in enumerate(sent) if s.blocked)
    assert first <= 20
    await h.stop()


async def test_enumeration_with_200_and_empty_answers() -> None:
    h = await Harness().start()
    sent = [await h.send("127.40.0.2", "POST", "/api/v2/check-phone", body={"phone": f"+1555000{i:04d}"},
                         status=200, resp_body=b'{"exists": false}') for i in range(40)]
    assert any(s.blocked for s in sent[:20])
    await h.stop()


async def test_enumeration_through_a_form_post() -> None:
    h = await Harness().start()
    form = [*TOOL, ("Content-Type", "application/x-www-form-urlencoded")]
    sent = [await h.send("127.40.0.3", "POST", "/account/check-email", body=f"email=u{i}%40mail.test".encode(),
                         headers=form, status=404) for i in range(40)]
    assert any(s.blocked for s in sent[:20])
    await h.stop()


async def test_identifiers_in_the_path_from_rotating_addresses_with_one_browser_fingerprint() -> None:
    h = await Harness().start()
    sent = [await h.send(f"127.42.{i // 250}.{i % 250 + 1}", target=f"/api/users/by-email/v{i}%40mail.test",
                         status=404, headers=CHROME, advance=0.5) for i in range(60)]
    first = next(i for i, s in enumerate(sent) if s.blocked)
    assert first <= 20  # the fingerprint's lookups are refused: identifiers in the path are lookups too
    # its users' other requests are not
    assert not (await h.send("127.42.9.9", target="/api/products/3", headers=CHROME)).blocked
    await h.stop()


async def test_graphql_lookups_by_variables_with_null_answers() -> None:
    h = await Harness().start()
    query = "query($e: String!) { userByEmail(email: $e) { id } }"
    sent = [await h.send("127.40.0.4", "POST", "/graphql",
                         body={"query": query, "variables": {"email": f"v{i}@x.test"}},
                         resp_body=b'{"data":{"userByEmail":null}}') for i in range(40)]
    assert any(s.blocked for s in sent[:20])
    await h.stop()


async def test_rotating_addresses_with_one_api_key() -> None:
    h = await Harness().start()
    sent = []
    for i in range(60):
        sent.append(await h.send(f"127.41.{i // 3}.1", target=f"/lookup?username=n{i}", status=404,
                                 headers=[*TOOL, ("X-API-Key", "k-1")]))
    assert any(s.blocked for s in sent[:20])
    await h.stop()


async def test_user_looking_up_a_few_friends_is_fine() -> None:
    h = await Harness().start()
    for i in range(8):
        s = await h.send("127.40.0.3", target=f"/api/users/lookup?email=friend{i}%40mail.test",
                         status=404 if i % 2 else 200, headers=CHROME, advance=20)
        assert not s.blocked and "bhv-enumeration" not in s.rules()
    await h.stop()
