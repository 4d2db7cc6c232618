"""Logins: brute force, credential stuffing (one source, distributed), account attack, ATO indicators."""

from __future__ import annotations

import orjson

from behaviour_helpers import CHROME, TOOL, Harness

LOGIN = "/api/v1/login"


def creds(user: str, pw: str = "x") -> dict[str, str]:
    return {"username": user, "password": pw}


async def test_brute_force_on_one_account() -> None:
    h = await Harness().start()
    sent = [await h.send("127.31.0.1", "POST", LOGIN, body=creds("alice", f"p{i}"), status=401) for i in range(30)]
    first = next(i for i, s in enumerate(sent) if s.blocked)
    assert first <= 10
    await h.stop()


async def test_stuffing_from_one_address() -> None:
    h = await Harness().start()
    sent = [await h.send("127.31.0.2", "POST", "/auth/token", body=creds(f"u{i}@x.test"), status=403)
            for i in range(30)]
    first = next(i for i, s in enumerate(sent) if s.blocked)
    assert first <= 6
    await h.stop()


async def test_distributed_stuffing_shares_a_fingerprint() -> None:
    h = await Harness().start()
    blocked = []
    for i in range(120):
        ip = f"127.31.{1 + i % 60}.{7 + i // 60}"  # 60 addresses, two attempts each, round robin
        s = await h.send(ip, "POST", "/signin", body=creds(f"leak{i}@x.test"), status=401, advance=0.2)
        blocked.append(s.blocked)
    assert any(blocked[:20]), "the shared tool fingerprint should be blocked early"
    assert sum(blocked) > 80
    await h.stop()


async def test_benign_mistypes_and_login_are_fine() -> None:
    h = await Harness().start()
    for u in range(30):
        ip = f"127.32.0.{u + 1}"
        await h.send(ip, "GET", "/login", headers=CHROME)
        for _ in range(u % 3):  # up to two mistypes
            s = await h.send(ip, "POST", LOGIN, body=creds(f"user{u}", "oops"), status=401, headers=CHROME)
            assert not s.blocked
        s = await h.send(ip, "POST", LOGIN, body=creds(f"user{u}", "right"), status=200, headers=CHROME)
        assert not s.blocked and s.ex.risk < h.core.settings.risk.throttle
    await h.stop()


async def test_success_after_many_failures_is_an_ato_indicator() -> None:
    h = await Harness({"behaviour": {"scenarios": {"brute_force": {"threshold": 50, "window": 600}}}}).start()
    for i in range(6):
        await h.send("127.31.0.3", "GET", "/login", headers=CHROME)
        await h.send("127.31.0.3", "POST", LOGIN, body=creds("bob", f"p{i}"), status=401, headers=CHROME)
    s = await h.send("127.31.0.3", "POST", LOGIN, body=creds("bob", "right"), status=200, headers=CHROME)
    assert "bhv-ato-success" in s.rules()
    await h.stop()


async def test_one_account_failing_from_many_addresses_adds_risk_to_each() -> None:
    h = await Harness().start()
    rules: list[str] = []
    for i in range(15):
        software = [*CHROME[:3], ("Accept-Language", f"l{i}")]  # many different clients
        s = await h.send(f"127.33.{i}.1", "POST", LOGIN, body=creds("victim"), status=401, headers=software)
        rules += s.rules()
    assert "bhv-account-attack" in rules
    await h.stop()


async def test_stolen_session_from_many_networks() -> None:
    h = await Harness().start()
    sent = []
    for i in range(20):
        sent.append(await h.send(f"127.34.{i}.9", "GET", "/api/profile", headers=[*TOOL, ("Cookie", "sid=stolen")]))
    first = next(i for i, s in enumerate(sent) if s.blocked)
    assert first <= 6
    assert any("bhv-token-spread" in s.rules() for s in sent)
    # the owner's session is revoked everywhere: the decision is on the session key
    assert (await h.send("127.35.0.1", "GET", "/api/profile", headers=[*CHROME, ("Cookie", "sid=stolen")])).blocked
    await h.stop()


async def test_login_failure_by_body_marker() -> None:
    h = await Harness().start()
    sent = [await h.send("127.31.0.9", "POST", LOGIN, body=creds(f"m{i}"), status=200,
                         resp_body=b'{"error":"Invalid credentials"}') for i in range(12)]
    assert any(s.blocked for s in sent)
    await h.stop()


async def test_login_failures_said_in_other_words() -> None:
    for i, (status, body) in enumerate([(200, b'{"ok": false, "message": "Invalid email or password"}'),
                                        (422, b'{"errors": {"password": ["is wrong_password"]}}'),
                                        (200, b'{"error": "Incorrect username or passcode."}')]):
        h = await Harness().start()
        sent = [await h.send(f"127.31.3.{i + 1}", "POST", LOGIN, body=creds(f"w{n}"), status=status, resp_body=body)
                for n in range(12)]
        assert any(s.blocked for s in sent), body
        await h.stop()
    # a successful login that mentions false things is a success
    h = await Harness().start()
    sent = [await h.send("127.31.4.1", "POST", LOGIN, body=creds("me"), status=200,
                         resp_body=b'{"ok": true, "user": {"email_verified": false, "mfa": false}}') for _ in range(12)]
    assert not any(s.blocked for s in sent)
    await h.stop()


async def test_form_logins_that_redirect_back_are_failures() -> None:
    form = [("Content-Type", "application/x-www-form-urlencoded")]
    for i, location in enumerate(("/login?error", "https://shop.test/users/sign_in",
                                  "/auth/callback?error=access_denied&state=x")):
        h = await Harness().start()
        sent = [await h.send(f"127.31.5.{i + 1}", "POST", "/login", body=f"username=f{n}&password=x".encode(),
                             headers=[*TOOL, *form], status=302, resp_headers=[("Location", location)])
                for n in range(12)]
        assert any(s.blocked for s in sent), location
        await h.stop()
    # a redirect into the application is a successful login, however often it happens
    h = await Harness().start()
    sent = [await h.send("127.31.5.9", "POST", "/login", body=b"username=me&password=right",
                         headers=[*TOOL, *form], status=302, resp_headers=[("Location", "/dashboard?errors_seen=0")])
            for _ in range(12)]
    assert not any(s.blocked for s in sent)
    await h.stop()


async def test_oauth_token_endpoint_failures_are_400_invalid_grant() -> None:
    h = await Harness().start()
    sent = [await h.send("127.31.1.9", "POST", "/oauth/token", body=creds(f"o{i}"), status=400,
                         resp_body=b'{"error":"invalid_grant","error_description":"Bad credentials"}')
            for i in range(12)]
    assert any(s.blocked for s in sent)
    # a 400 that is not about credentials (a client bug) is not a failed login
    h2 = await Harness().start()
    sent = [await h2.send("127.31.2.9", "POST", "/oauth/token", body=creds(f"p{i}"), status=400,
                          resp_body=b'{"error":"unsupported_grant_type"}') for i in range(12)]
    assert not any(s.blocked for s in sent)
    await h.stop()
    await h2.stop()


async def test_framework_login_routes_and_nested_credentials_are_recognised() -> None:
    # Rails/Devise (JSON nested under "user", and its HTML form), WordPress, Java EE form login
    for i, (path, body, ctype) in enumerate([
        ("/users/sign_in", lambda n: orjson.dumps({"user": {"email": f"v{n}@mail.test", "password": "x"}}),
         "application/json"),
        ("/users/sign_in", lambda n: f"user%5Bemail%5D=v{n}%40mail.test&user%5Bpassword%5D=x".encode(),
         "application/x-www-form-urlencoded"),
        ("/wp-login.php", lambda n: f"log=v{n}&pwd=x".encode(), "application/x-www-form-urlencoded"),
        ("/j_security_check", lambda n: f"j_username=v{n}&j_password=x".encode(), "application/x-www-form-urlencoded"),
    ]):
        h = await Harness().start()
        sent = [await h.send(f"127.37.{i}.{n % 5 + 1}", "POST", path, body=body(n), status=401,
                             headers=[*TOOL, ("Content-Type", ctype)]) for n in range(40)]
        assert any(s.blocked for s in sent), path
        assert any(r.startswith(("bhv-stuffing", "bhv-brute-force")) for s in sent for r in s.rules()), path
        await h.stop()


async def test_office_behind_one_nat_address_mistyping_all_day() -> None:
    # 60 people behind one address, each logging in once or twice a day, a third mistyping first
    h = await Harness().start()
    for u in range(60):
        browser = [*CHROME[:3], ("Accept-Language", f"l{u % 7}")]
        await h.send("127.36.0.1", "GET", "/login", headers=browser, advance=600)
        if u % 3 == 0:
            s = await h.send("127.36.0.1", "POST", LOGIN, body=creds(f"emp{u}", "typo"), status=401,
                             headers=browser)
            assert not s.blocked, (u, s.rules())
        s = await h.send("127.36.0.1", "POST", LOGIN, body=creds(f"emp{u}", "ok"), status=200, headers=browser)
        assert not s.blocked, (u, s.rules())
        await h.send("127.36.0.1", "GET", "/api/profile", headers=[*browser, ("Cookie", f"sid=emp{u}")])
    await h.stop()
