"""The evaluator alone turns findings into verdicts."""

from __future__ import annotations

from bastion.config import BastionConfig, ScoringConfig
from bastion.engine.scoring import Evaluator
from bastion.exchange import Client, Exchange, Headers, Request
from bastion.verdict import Action, Finding, Phase, Severity


def ex_with(*findings: Finding) -> Exchange:
    ex = Exchange("id1", Client("10.0.0.1"), Request("GET", "/", Headers()), started=0.0)
    ex.findings.extend(findings)
    return ex


def test_nothing_to_say_without_findings() -> None:
    assert Evaluator(BastionConfig()).evaluate(ex_with()) is None


def test_threshold_is_configurable() -> None:
    f = Finding("r", "d", "m", Severity.WARNING, score=3)
    assert Evaluator(BastionConfig()).evaluate(ex_with(f)) is None
    strict = Evaluator(BastionConfig(scoring=ScoringConfig(inbound_threshold=3)))
    v = strict.evaluate(ex_with(f))
    assert v is not None and v.action == Action.BLOCK


def test_explicit_action_beats_score_and_keeps_status() -> None:
    f = Finding("limit-body", "limits", "too big", action=Action.BLOCK, reason="body-too-large")
    v = Evaluator(BastionConfig()).evaluate(ex_with(f))
    assert v is not None and v.status == 413 and v.title == "Content too large" and v.close


def test_rate_limit_headers_travel_to_the_verdict() -> None:
    f = Finding(
        "rl-1", "ratelimit", "over", action=Action.BLOCK, reason="rate-limited", retry_after=7,
        headers=(("RateLimit-Policy", "20;w=10"),),
    )
    v = Evaluator(BastionConfig()).evaluate(ex_with(f))
    assert v is not None and v.status == 429 and v.retry_after == 7 and v.headers == (("RateLimit-Policy", "20;w=10"),)


def test_inbound_and_outbound_are_scored_apart() -> None:
    a = Finding("in", "d", "m", Severity.WARNING, score=3, phase=Phase.REQUEST_BODY)
    b = Finding("out", "d", "m", Severity.WARNING, score=3, phase=Phase.RESPONSE_BODY)
    assert Evaluator(BastionConfig(scoring=ScoringConfig(outbound_threshold=4))).evaluate(ex_with(a, b)) is None


def test_final_verdict_logs_observed_findings() -> None:
    ev = Evaluator(BastionConfig())
    f = Finding("r", "d", "m", Severity.CRITICAL, score=5, observe=True)
    ex = ex_with(f)
    assert ev.evaluate(ex) is None
    assert ev.final(ex).action == Action.LOG


def test_an_attack_from_a_challenged_entity_is_blocked_not_challenged() -> None:
    challenge = Finding("risk-challenge", "risk", "risk over the challenge threshold", action=Action.CHALLENGE,
                        status=401, reason="challenge-required")
    sqli = Finding("942100", "signatures", "SQL injection", Severity.CRITICAL, score=5)
    v = Evaluator(BastionConfig()).evaluate(ex_with(challenge, sqli))
    assert v is not None and v.action == Action.BLOCK and v.status == 403 and v.reason == "request-blocked"
    # a clean request from the same entity is challenged (step-up can clear it)
    v = Evaluator(BastionConfig()).evaluate(ex_with(challenge))
    assert v is not None and v.action == Action.CHALLENGE and v.status == 401
    # an explicit block (a ban) keeps its own answer
    ban = Finding("decision-risk", "decisions", "deny", action=Action.BLOCK, status=403, reason="access-denied")
    v = Evaluator(BastionConfig()).evaluate(ex_with(ban, sqli))
    assert v is not None and v.reason == "access-denied"
