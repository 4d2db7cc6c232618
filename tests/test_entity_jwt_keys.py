"""Identity claims: a JWT `sub` is the `user` key only once verified (behaviour.entity.jwt); an
unverified claim never links entities and never draws a ban onto the user it names."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bastion.decision import KeyKind
from bastion.detect.behaviour.settings import JwtSettings
from bastion.entity import CLAIM, KeySettings, extract_keys
from bastion.errors import ConfigError
from bastion.exchange import Client, Exchange, Headers, Request
from bastion.jwtauth import JwtVerifier
from behaviour_helpers import TOOL, Harness
from test_risk import Flagger, add_flagger

SECRET = "a-test-secret-of-at-least-32-bytes!!"


def token(sub: str = "alice", key: Any = SECRET, alg: str = "HS256", **claims: Any) -> str:
    body: dict[str, Any] = {"sub": sub, "exp": int(time.time()) + 600, **claims}
    headers = {"kid": claims.pop("_kid")} if "_kid" in claims else None
    body.pop("_kid", None)
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def unsigned(sub: str) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    return f"{enc({'alg': 'none'})}.{enc({'sub': sub})}.x"


def ex(headers: list[tuple[str, str]], ip: str = "127.0.0.1") -> Exchange:
    return Exchange(id="t", client=Client(peer_ip=ip), request=Request("GET", "/", Headers([*TOOL, *headers])),
                    started=0.0)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pub_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


# --- the verifier ------------------------------------------------------------------------------


def test_hmac_verification_claims_and_cache() -> None:
    v = JwtVerifier(JwtSettings(secrets=[SECRET], issuer=["https://id.test"], audience="api"))
    good = token(iss="https://id.test", aud="api")
    assert v.check(good) == ("alice", True)
    for _ in range(50):
        assert v.check(good) == ("alice", True)
    assert v.checks == 1  # the cache answers a repeated token
    assert v.check(token(key="another-secret-of-at-least-32-bytes", iss="https://id.test", aud="api")) == ("", False)
    assert v.check(token(iss="https://evil.test", aud="api")) == ("", False)
    assert v.check(token(iss="https://id.test", aud="other")) == ("", False)
    assert v.check(token(aud="api")) == ("", False)  # issuer required once configured
    expired = token(iss="https://id.test", aud="api", exp=int(time.time()) - 3600)
    assert v.check(expired) == ("", False)
    assert v.check(unsigned("alice")) == ("", False)  # alg none is never accepted
    assert v.check("not.a.jwt") == ("", False)
    assert v.check("x" * 100_000) == ("", False)


def test_exp_is_required_by_default_and_cache_is_bounded() -> None:
    v = JwtVerifier(JwtSettings(secrets=[SECRET], cache_size=10))
    assert v.check(jwt.encode({"sub": "a"}, SECRET, algorithm="HS256")) == ("", False)  # no exp
    for i in range(100):
        assert v.check(token(f"u{i}")) == (f"u{i}", True)
    assert len(v.cache) == 10


def test_cached_token_expires() -> None:
    now = [time.time()]
    v = JwtVerifier(JwtSettings(secrets=[SECRET], leeway=0), now=lambda: now[0])
    t = token(exp=int(now[0]) + 5)
    assert v.check(t) == ("alice", True)
    now[0] += 10
    assert v.check(t)[0] == ""  # re-checked, and refused, once past its exp


def test_public_keys_jwks_and_no_algorithm_confusion(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    pem = tmp_path / "rsa.pem"
    pem.write_bytes(_pub_pem(rsa_key))
    v = JwtVerifier(JwtSettings(public_keys=[pem]))
    assert v.check(token(key=rsa_key, alg="RS256")) == ("alice", True)
    assert v.check(token(key=rsa_key, alg="PS384")) == ("alice", True)
    # HS256 signed with the public key's PEM as the HMAC secret: the classic confusion attack
    forged = jwt.api_jws.PyJWS(algorithms=["HS256"])
    body = json.dumps({"sub": "admin", "exp": int(time.time()) + 60}).encode()
    try:
        confused = forged.encode(body, pem.read_bytes(), algorithm="HS256")
    except jwt.InvalidKeyError:  # newer PyJWT refuses to even sign it
        confused = ""
    if confused:
        assert v.check(confused) == ("", False)
    assert v.check(token(alg="HS256")) == ("", False)  # no HMAC key configured: HS* refused
    # JWKS with kids: an EC key and the RSA key
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwks = {"keys": [
        json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key())) | {"kid": "ec1", "use": "sig"},
        json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key())) | {"kid": "rsa1"},
    ]}
    f = tmp_path / "jwks.json"
    f.write_text(json.dumps(jwks))
    v2 = JwtVerifier(JwtSettings(jwks_file=f, algorithms=["ES256", "RS256"]))
    assert v2.check(token("bob", key=ec_key, alg="ES256", _kid="ec1")) == ("bob", True)
    assert v2.check(token("bob", key=rsa_key, alg="RS256", _kid="rsa1")) == ("bob", True)
    assert v2.check(token("bob", key=rsa_key, alg="RS512", _kid="rsa1")) == ("", False)  # not an accepted alg
    other = ec.generate_private_key(ec.SECP256R1())
    assert v2.check(token("bob", key=other, alg="ES256", _kid="ec1")) == ("", False)


def test_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError):
        JwtVerifier(JwtSettings(public_keys=[tmp_path / "missing.pem"]))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(ConfigError):
        JwtVerifier(JwtSettings(public_keys=[bad]))
    with pytest.raises(ConfigError):
        JwtVerifier(JwtSettings(secrets=[SECRET], algorithms=["RS256"]))  # no key for the accepted alg
    with pytest.raises(ConfigError):
        JwtVerifier(JwtSettings(secrets=["env:BASTION_TEST_UNSET_SECRET"]))
    monkeypatch.setenv("BASTION_TEST_JWT_SECRET", SECRET)
    assert JwtVerifier(JwtSettings(secrets=["env:BASTION_TEST_JWT_SECRET"])).check(token()) == ("alice", True)
    with pytest.raises(ValueError):
        JwtSettings(algorithms=["none"])
    with pytest.raises(ConfigError):
        JwtVerifier(JwtSettings(secrets=["short-secret"]))  # brute-forceable
    v = JwtVerifier(JwtSettings(secrets=[SECRET]))  # 36 bytes: HS256 only
    assert v.algorithms == {"HS256"}


# --- keys --------------------------------------------------------------------------------------


def test_keys_verified_invalid_and_unverified() -> None:
    verified = KeySettings(jwt=JwtVerifier(JwtSettings(secrets=[SECRET])))
    k = extract_keys(ex([("Authorization", f"Bearer {token()}")]), verified)
    assert k["user"] == "alice" and CLAIM not in k
    k = extract_keys(ex([("Authorization", f"Bearer {unsigned('alice')}")]), verified)
    assert "user" not in k and "api_key" not in k and k[CLAIM] == "invalid"
    no_sub = jwt.encode({"exp": int(time.time()) + 60, "client_id": "c1"}, SECRET, algorithm="HS256")
    k = extract_keys(ex([("Authorization", f"Bearer {no_sub}")]), verified)
    assert "user" not in k and "api_key" in k and CLAIM not in k  # verified, no subject: a credential
    k = extract_keys(ex([("Authorization", "Bearer opaque-token")]), verified)
    assert "api_key" in k and CLAIM not in k  # an opaque bearer is still an API key
    plain = KeySettings()
    k = extract_keys(ex([("Authorization", f"Bearer {unsigned('alice')}")]), plain)
    assert k["user"] == "alice" and k[CLAIM] == "unverified"
    k = extract_keys(ex([("Authorization", "Basic " + base64.b64encode(b"bob:pw").decode())]), plain)
    assert k["user"] == "bob" and k[CLAIM] == "unverified"
    k = extract_keys(ex([("Authorization", f"Bearer {unsigned('alice')}"), ("X-User", "carol")]),
                     KeySettings(user_header="x-user"))
    assert k["user"] == "carol" and CLAIM not in k  # a trusted front's header is verified


# --- through the pipeline ----------------------------------------------------------------------


async def test_forged_sub_never_bans_the_victim() -> None:
    """Not configured: an attacker forging the victim's sub is banned on its own keys only."""
    h = await Harness({"behaviour": {"risk": {"exploit_cap": 90.0}}}).start()
    add_flagger(h, Flagger(score=5))
    victim = [("Authorization", f"Bearer {unsigned('alice')}")]
    for _ in range(3):
        assert not (await h.send("127.40.0.1", headers=[*TOOL, *victim])).blocked
    blocked = False
    for _ in range(15):
        blocked = (await h.send("127.40.0.2", target="/attack", headers=[*TOOL, *victim])).blocked or blocked
    assert blocked  # the attacker is stopped...
    kinds = {(d.kind, d.value) for d in h.core.store.index}
    assert (KeyKind.IP, "127.40.0.2") in kinds
    assert not any(k == KeyKind.USER for k, _ in kinds)  # ...but never through the forged user
    assert (KeyKind.IP, "127.40.0.1") not in kinds
    assert h.core.graph.get("user:alice") is None  # the claim is not in the graph: it links nothing
    s = await h.send("127.40.0.1", headers=[*TOOL, *victim])
    assert not s.blocked and s.ex.keys["user"] == "alice"  # the victim is still served
    await h.stop()


async def test_verified_sub_links_and_forged_token_gets_no_user() -> None:
    h = await Harness({"behaviour": {"entity": {"jwt": {"secrets": [SECRET]}},
                                     "risk": {"exploit_cap": 90.0}}}).start()
    add_flagger(h, Flagger(score=5))
    good = [("Authorization", f"Bearer {token('alice')}")]
    a = await h.send("127.41.0.1", headers=[*TOOL, *good])
    b = await h.send("127.41.0.2", headers=[*TOOL, *good])
    assert a.ex.keys["user"] == "alice" and a.ex.entity == b.ex.entity  # a verified identity links
    forged = [("Authorization", f"Bearer {token('alice', key='attacker-secret-of-at-least-32-bytes')}")]
    for _ in range(15):
        s = await h.send("127.41.0.9", target="/attack", headers=[*TOOL, *forged])
        assert "user" not in s.ex.keys
    assert "invalid-jwt" in s.rules() or s.blocked
    first = await h.send("127.41.0.9", headers=[*TOOL, *forged], advance=0.0)
    assert first.blocked
    assert not any(d.kind == KeyKind.USER for d in h.core.store.index)
    assert not (await h.send("127.41.0.1", headers=[*TOOL, *good])).blocked
    await h.stop()


async def test_invalid_jwt_finding_adds_no_risk() -> None:
    h = await Harness({"behaviour": {"entity": {"jwt": {"secrets": [SECRET]}}}}).start()
    s = await h.send("127.42.0.1", headers=[*TOOL, ("Authorization", f"Bearer {unsigned('alice')}")])
    assert "invalid-jwt" in s.rules() and not s.blocked and s.ex.risk == 0.0
    await h.stop()
