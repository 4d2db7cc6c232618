"""Events are built from finished exchanges: masked, truncated, no body, no query, no secret."""

from __future__ import annotations

import logging

import orjson
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from bastion.events import MASK, MAX_PATH, Event, event_from_exchange, is_notable, mask_secrets
from bastion.exchange import Client, Exchange, Headers, Request, Response
from bastion.logs import JsonFormatter
from bastion.verdict import Action, Finding, Verdict


def exchange(target: str = "/api/users?id=1", *, body: bytes = b"", findings: list[Finding] | None = None,
             verdict: Verdict | None = None, status: int | None = 200) -> Exchange:
    ex = Exchange(
        id="req-1",
        client=Client(peer_ip="10.0.0.1", ip="203.0.113.7"),
        request=Request(method="POST", target=target, headers=Headers([("Authorization", "Bearer s3cr3tt0ken")]),
                        body=body),
        started=1_700_000_000.0,
        site="shop.example",
        route="/api/users",
        duration=0.0123,
    )
    if status is not None:
        ex.response = Response(status=status, headers=Headers())
    for f in findings or []:
        ex.add(f)
    ex.verdict = verdict
    return ex


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer abcdef.ghijkl.mnopqr", "abcdef"),
        ("Cookie: sessionid=9f8e7d6c5b4a; theme=dark", "9f8e7d6c5b4a"),
        ('{"email": "a@b.c", "password": "hunter2!"}', "hunter2"),
        ("/login?api_key=KEY123456789&x=1", "KEY123456789"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl here", "eyJhbGciOiJIUzI1NiJ9"),
        ("x-api-key: sk_live_abcdefghijklmnop", "sk_live_abcdefghijklmnop"),
        ("leaked AKIAIOSFODNN7EXAMPLE in body", "AKIAIOSFODNN7EXAMPLE"),
        ("Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
    ],
)
def test_mask_secrets_removes_credentials(text: str, secret: str) -> None:
    masked = mask_secrets(text)
    assert secret not in masked
    assert MASK in masked


@pytest.mark.parametrize("text", ["1' OR '1'='1' --", "<script>alert(1)</script>", "/api/products/42", "q=lamp"])
def test_mask_secrets_keeps_attack_evidence(text: str) -> None:
    assert mask_secrets(text) == text


def test_event_from_blocked_exchange() -> None:
    f = Finding(rule_id="942100", detector="signatures", message="SQL injection in password=hunter2",
                score=5, zone="body", name="q", evidence="1' OR 1=1--", tags=("sqli",))
    v = Verdict(Action.BLOCK, status=403, reason="request-blocked", score=5, rule_ids=("942100",))
    ex = exchange(body=b'{"q": "1\' OR 1=1--", "password": "hunter2"}', findings=[f], verdict=v, status=403)
    ev = event_from_exchange(ex, mode="enforce")
    assert ev.action == "block" and ev.blocked
    assert ev.status == 403
    assert ev.path == "/api/users"  # no query
    assert ev.client_ip == "203.0.113.7" and ev.peer_ip == "10.0.0.1"
    assert ev.rule_ids == ("942100",)
    assert ev.reason == "request-blocked"
    assert ev.duration_ms == pytest.approx(12.3)
    assert ev.findings[0]["evidence"] == "1' OR 1=1--"
    assert ev.findings[0]["zone"] == "body"
    text = repr(ev.as_dict())
    assert "hunter2" not in text  # from the message, and the body is never copied
    assert "s3cr3tt0ken" not in text


def test_secret_named_field_evidence_is_masked_whole() -> None:
    f = Finding(rule_id="x1", detector="d", message="odd header", zone="header", name="Authorization",
                evidence="Negotiate YIIabcdefgh")
    ev = event_from_exchange(exchange(findings=[f]))
    assert ev.findings[0]["evidence"] == MASK


def test_observe_mode_event_records_would_block() -> None:
    f = Finding(rule_id="941100", detector="signatures", message="XSS", score=5)
    v = Verdict(Action.LOG, status=403, reason="request-blocked", score=5, rule_ids=("941100",), would_block=True)
    ev = event_from_exchange(exchange(findings=[f], verdict=v), mode="observe")
    assert ev.action == "log" and ev.would_block and not ev.blocked
    assert ev.status == 200  # what the client really got
    assert ev.mode == "observe"


def test_long_path_is_truncated_and_round_trips() -> None:
    ev = event_from_exchange(exchange("/" + "a" * 5000, findings=[Finding("r", "d", "m")]))
    assert len(ev.path) == MAX_PATH
    again = Event.from_dict(ev.as_dict())
    assert again == ev


def test_is_notable() -> None:
    assert not is_notable(exchange(verdict=Verdict(Action.ALLOW)))
    assert not is_notable(exchange(verdict=None))
    assert is_notable(exchange(findings=[Finding("r", "d", "m")]))
    assert is_notable(exchange(verdict=Verdict(Action.BLOCK, status=403)))


def test_event_without_response_uses_verdict_status() -> None:
    v = Verdict(Action.BLOCK, status=413, reason="body-too-large")
    ev = event_from_exchange(exchange(verdict=v, status=None, findings=[Finding("limits-body", "limits", "big")]))
    assert ev.status == 413


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.", min_size=12, max_size=40)


@settings(max_examples=200, deadline=None)
@given(prefix=st.text(max_size=40), token=_token, suffix=st.text(max_size=40),
       form=st.sampled_from(["Authorization: Bearer {t}", "Cookie: session={t}", "api_key={t}",
                             '{{"password": "{t}"}}', "X-Api-Key: {t}", "access_token={t}&x=1"]))
def test_secrets_never_survive_masking(prefix: str, token: str, suffix: str, form: str) -> None:
    assume(token not in prefix + " " + suffix)
    text = prefix + " " + form.format(t=token) + " " + suffix
    assert token not in mask_secrets(text)


@settings(max_examples=200, deadline=None)
@given(target=st.text(max_size=200), message=st.text(max_size=300), evidence=st.text(max_size=300),
       name=st.text(max_size=20))
def test_any_exchange_becomes_a_bounded_event(target: str, message: str, evidence: str, name: str) -> None:
    f = Finding(rule_id="r", detector="d", message=message, evidence=evidence, name=name)
    ev = event_from_exchange(exchange("/" + target, findings=[f]))
    assert len(ev.path) <= MAX_PATH and "?" not in ev.path
    assert len(ev.findings[0]["message"]) <= 240
    assert len(ev.findings[0].get("evidence", "")) <= 160
    assert Event.from_dict(ev.as_dict()) == ev


def test_url_passwords_are_masked() -> None:
    # H11: a redis:// or postgresql:// URL with a password went into the logs as is.
    for url, secret in (("redis://:hunter2secret@10.0.0.1:6379/0", "hunter2secret"),
                        ("postgresql://bastion:s3cret-pw@db.internal/bastion", "s3cret-pw"),
                        ("rediss://default:pw123456@cache:6380", "pw123456")):
        masked = mask_secrets(f"cannot load from {url} (ConnectionError)")
        assert secret not in masked and f":{MASK}@" in masked
    # Paths, redirects and e-mail addresses are left alone.
    for text in ("GET /a?next=http://x.test/@y", "mailto:a@b.c", "http://user@host/", "https://a.test/p:q@r"):
        assert mask_secrets(text) == text


_ANY_CHAR = st.text(st.characters(blacklist_categories=()), max_size=60)  # lone surrogates included


@settings(max_examples=200, deadline=None)
@given(target=_ANY_CHAR, evidence=_ANY_CHAR, name=_ANY_CHAR)
@example(target="", evidence="", name="PASSWORD")
def test_client_bytes_that_are_not_utf8_still_make_an_encodable_event(target: str, evidence: str, name: str) -> None:
    """`%AD` in a query is kept by the decoders as a surrogate escape; orjson and the stores refuse
    surrogates, and one such event once stopped every later store write."""
    f = Finding(rule_id="r", detector="d", message="m \udcad", evidence="a\udcad" + evidence, name=name)
    ev = event_from_exchange(exchange("/x\udcad" + target, findings=[f]))
    doc = orjson.loads(orjson.dumps(ev.as_dict()))
    evidence_doc = doc["findings"][0]["evidence"]
    # (a parameter named like a secret, `PASSWORD`, has its evidence masked whole)
    assert doc["path"].startswith("/x\\xad") and (evidence_doc.startswith("a\\xad") or set(evidence_doc) == {"*"})


def test_json_log_lines_survive_undecodable_client_bytes() -> None:
    record = logging.makeLogRecord({"msg": "path %s", "args": ("/x\udcad\ud800",), "levelname": "WARNING"})
    line = orjson.loads(JsonFormatter().format(record))
    assert line["msg"] == "path /x\\xad\ufffd"
