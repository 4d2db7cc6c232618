"""Campaigns and legitimate habits found by bench/eval_campaigns.py: code guessing, password-reset
enumeration, pollers, integrations, signed-in users under an enumeration, one address using a whole API."""

from __future__ import annotations

import pytest

from bastion.detect.behaviour.scenarios import stable_target
from behaviour_helpers import CHROME, TOOL, Harness

NOW = 1_796_292_700.0  # (a clock near 2026-12: stable_target compares times with it)


def test_stable_target_collapses_the_client_clock_and_cache_busters() -> None:
    now = NOW
    assert stable_target("/n?since=1796292701", now) == "/n?since=*"
    assert stable_target("/n?_=1796292701234&page=2", now) == "/n?_=*&page=2"
    assert stable_target("/n?updated_after=2026-12-03t10:00:00z", now) == "/n?updated_after=*"
    assert stable_target("/n?cb=83hd7&q=shoes", now) == "/n?cb=*&q=shoes"
    # not the client's clock: resources of their own
    for target in ("/reports?date=2019-04-01", "/n?since=1496292701", "/items?id=1234567", "/p?page=17", "/p"):
        assert stable_target(target, now) == target


@pytest.mark.parametrize("path", ["/api/v1/auth/password-reset", "/auth/token/refresh", "/api/login/verify",
                                  "/auth/mfa/verify", "/auth/forgot-password", "/api/auth/register"])
async def test_account_actions_under_a_login_path_are_not_logins(path: str) -> None:
    h = await Harness().start()
    s = await h.send("127.70.0.1", "POST", path, body={"email": "a@b.test"}, status=401)
    assert h.core.request_class(s.ex) != "login"
    for path in ("/api/v1/auth/login", "/auth/token", "/oauth/token", "/login/password", "/users/sign_in.json"):
        s = await h.send("127.70.0.1", "POST", path, body={"email": "a@b.test"}, status=401)
        assert h.core.request_class(s.ex) == "login", path
    await h.stop()


async def test_password_reset_enumeration_is_caught_as_enumeration() -> None:
    h = await Harness().start()
    sent = [await h.send("127.70.0.2", "POST", "/api/v1/auth/password-reset", body={"email": f"u{i}@mail.test"},
                         status=404 if i % 10 else 200, resp_body=b'{"error":"unknown_email"}', headers=TOOL,
                         advance=0.2) for i in range(60)]
    first = next(i for i, s in enumerate(sent) if s.blocked)
    assert first <= 20
    assert any(r == "bhv-enumeration" for s in sent for r in s.rules())
    await h.stop()


async def test_a_user_who_forgot_a_password_asks_twice() -> None:
    h = await Harness().start()
    await h.send("127.70.0.3", "GET", "/login", headers=CHROME)
    for _ in range(2):
        s = await h.send("127.70.0.3", "POST", "/api/v1/auth/password-reset", body={"email": "me@mail.test"},
                         headers=CHROME, advance=45)
        assert not s.blocked and not s.rules()
    await h.stop()


@pytest.mark.parametrize(("path", "field", "status"), [("/api/v1/otp/verify", "code", 401),
                                                         ("/api/v1/gift-cards/redeem", "code", 404),
                                                         ("/api/checkout/voucher", "voucher_code", 422)])
async def test_code_guessing_is_refused(path: str, field: str, status: int) -> None:
    h = await Harness().start()
    sent = [await h.send("127.70.1.1", "POST", path, body={"challenge_id": "ch_1", field: f"{i:06d}"},
                         status=status, headers=TOOL, advance=0.1) for i in range(40)]
    first = next(i for i, s in enumerate(sent) if s.blocked)
    assert first <= 12
    assert "bhv-guessing" in [r for s in sent for r in s.rules()]
    await h.stop()


async def test_codes_in_the_query_are_guesses_too() -> None:
    h = await Harness().start()
    sent = [await h.send("127.70.1.2", "GET", f"/api/promo?promo_code=SAVE{i:03d}", status=404, headers=TOOL,
                         advance=0.5) for i in range(30)]
    assert any(s.blocked for s in sent)
    await h.stop()


async def test_mistyped_codes_and_form_errors_are_not_guesses() -> None:
    h = await Harness().start()
    # a user mistypes the one-time code twice, then gets it right; another tries three gift cards
    for k in range(2):
        s = await h.send("127.70.2.1", "POST", "/api/v1/otp/verify", body={"code": f"12345{k}"}, status=401,
                         headers=CHROME, advance=5)
        assert not s.rules()
    s = await h.send("127.70.2.1", "POST", "/api/v1/otp/verify", body={"code": "987654"}, headers=CHROME)
    assert not s.rules()
    for k in range(3):
        s = await h.send("127.70.2.2", "POST", "/api/v1/gift-cards/redeem", body={"code": f"AB12-CD34-EF5{k}"},
                         status=404, headers=CHROME, advance=20)
        assert not s.rules()
    # a form refused twenty times for its other fields: its country code and anti-forgery token are no codes
    for k in range(20):
        s = await h.send("127.70.2.3", "POST", "/api/addresses", headers=CHROME, status=422, advance=3,
                         body={"country_code": "FR", "csrf_token": f"t{k:08d}", "street": f"{k} rue X"})
        assert not s.blocked and not s.rules(), k
    await h.stop()


async def test_slow_code_guessing_is_caught_over_hours() -> None:
    h = await Harness().start()
    sent = [await h.send("127.70.3.1", "POST", "/api/v1/otp/verify", body={"code": f"{i * 7919 % 10**6:06d}"},
                         status=401, headers=TOOL, advance=600) for i in range(40)]
    assert any(r == "bhv-guessing-slow" for s in sent for r in s.rules())
    await h.stop()


async def test_a_poller_asking_what_is_new_since_its_clock_is_no_scraper() -> None:
    h = await Harness().start()
    t0 = h.clock.now()  # the poller's clock is the server's, near enough
    for k in range(400):
        s = await h.send("127.70.4.1", "GET", f"/api/v1/notifications?since={int(t0) + k - 1}", headers=TOOL,
                         advance=1.0)
        assert not s.blocked and not s.rules(), k
    await h.stop()


async def test_one_address_using_the_whole_api_is_no_scraper_but_a_harvest_is() -> None:
    h = await Harness().start()
    # a test harness or an office behind one address: 300 distinct requests over 60 kinds of resource
    for k in range(300):
        s = await h.send("127.70.5.1", "GET", f"/api/r{k % 60}/items?filter=f{k}", headers=TOOL, advance=0.5)
        assert not s.blocked and not s.rules(), k
    # a catalog harvest: listing pages and product pages (two routes), caught by its distinct resources
    # (or first by the coverage of the product ids: no one else fetches them)
    sent = [await h.send("127.70.5.2", "GET", f"/api/products?page={k}" if k % 2 else f"/api/products/{k * 37}",
                         headers=TOOL, advance=0.5) for k in range(300)]
    first = next(i for i, s in enumerate(sent) if s.blocked)
    assert first <= 160
    assert "bhv-scraping" in sent[first].rules() or "bhv-scraping" in sent[first - 1].rules()
    await h.stop()


async def test_an_integration_syncing_its_own_objects_is_not_a_walker() -> None:
    h = await Harness().start()
    key = [*TOOL, ("X-API-Key", "sk_live_0123456789abcdef")]
    for k in range(10):
        await h.send("127.70.6.1", "GET", f"/api/v1/orders?page={k + 1}&per_page=50", headers=key, advance=0.05)
    for oid in range(300000, 300500):
        s = await h.send("127.70.6.1", "GET", f"/api/v1/orders/{oid}", headers=key, advance=0.05)
        assert not s.blocked and not s.rules(), oid
    # the same walk with a user's opaque bearer token is judged (tests/test_behaviour_generalise.py too)
    bearer = [*TOOL, ("Authorization", "Bearer opaque-user-session")]
    sent = [await h.send("127.70.6.2", "GET", f"/api/v1/orders/{oid}", headers=bearer, advance=0.05)
            for oid in range(300000, 300100)]
    assert any(s.blocked for s in sent)
    await h.stop()


async def test_a_signed_in_user_finding_friends_during_an_enumeration_is_served() -> None:
    h = await Harness().start()
    lookup = "/api/v1/users/lookup?phone=%2B1555010{:04d}"
    # an enumeration from rotating addresses puts the endpoint under pressure
    for i in range(120):
        await h.send(f"127.71.{i // 4}.1", "GET", lookup.format(i), status=404, headers=TOOL, advance=0.2)
    # a user signs in and looks up eight contacts, half of whom are not customers
    ip = "127.72.0.1"
    await h.send(ip, "POST", "/api/v1/auth/login", body={"email": "ana@mail.test", "password": "ok"},
                 resp_body=b'{"token": "x"}', headers=CHROME)
    auth = [*CHROME, ("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMDA1In0.c2ln")]
    for k in range(8):
        s = await h.send(ip, "GET", lookup.format(5000 + k), status=404 if k % 2 else 200, headers=auth,
                         advance=1.0)
        assert not s.blocked, (k, s.rules())
    await h.stop()


async def test_a_bearer_token_spread_over_many_addresses_is_refused_everywhere() -> None:
    # one user's token (a JWT Bastion cannot verify) walking objects from 30 rotating addresses
    h = await Harness().start()
    auth = [*TOOL, ("Authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjgwIn0.c2lnbmF0dXJlLW9mLXRoZS1pc3N1ZXI")]
    sent = [await h.send(f"127.73.{i % 30}.1", "GET", f"/api/v1/orders/{100000 + i}", status=403, headers=auth,
                         advance=0.2) for i in range(60)]
    first = next(i for i, s in enumerate(sent) if s.blocked)
    assert first <= 12
    # the token itself is refused, from an address it was never used from
    s = await h.send("127.74.0.1", "GET", "/api/v1/users/me", headers=auth)
    assert s.blocked
    # and a forged token with the same claim is not the user's session: another requester, not refused
    forged = [*TOOL, ("Authorization",
                      "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjgwIn0.Zm9yZ2VkLXNpZ25hdHVyZS1ieS1hdHRhY2tlcg")]
    s = await h.send("127.75.0.1", "GET", "/api/v1/users/me", headers=forged)
    assert not s.blocked
    await h.stop()


def test_stable_target_survives_odd_values() -> None:
    for target in ("/n?since=²²²²²²²²²²", "/n?since=١٧٩٦٢٩٢٧٠١", "/n?a=2026-", "/n?=&&=x&_", "/n?d=20x6-12-03",
                   "/n?" + "x=1&" * 500):
        assert stable_target(target, NOW).startswith("/n?")
