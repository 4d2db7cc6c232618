"""The `signatures` detector: zones -> views -> one multi-pattern scan -> confirmed, scored findings.

Scoring follows the OWASP Core Rule Set: each finding adds its rule's severity (critical 5,
error 4, warning 3, notice 2) and the evaluator blocks at the inbound threshold (default 5).
Rules up to `paranoia` score; rules above it, up to `detection_paranoia`, run as observe-only
findings so a stricter level can be trialled on live traffic before it blocks anything.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Sequence
from typing import Any

from bastion.detect.signatures.confirm import Confirm, load_confirms
from bastion.detect.signatures.matcher import CompiledRule, Excluded, Hit, Matcher, compile_rule
from bastion.detect.signatures.rules import Rule, load_rules, rule_selector_matches
from bastion.detect.signatures.settings import SignatureExclusion, SignaturesConfig
from bastion.detect.signatures.zones import (
    Value,
    ZoneOptions,
    request_body_values,
    request_head_values,
    response_values,
)
from bastion.exchange import Exchange
from bastion.verdict import Finding, Severity

log = logging.getLogger("bastion.signatures")

_SENSITIVE_NAME = re.compile(r"pass|secret|token|api[-_]?key|auth|session|card|cvv|ssn", re.IGNORECASE)
_EVIDENCE_MAX = 64


def mask_evidence(evidence: str, value: Value) -> str:
    """What an event may show of a match: short, printable, never a secret-looking field's content."""
    if _SENSITIVE_NAME.search(value.name):
        return f"<{len(evidence)} chars in a sensitive field>"
    if len(evidence) > _EVIDENCE_MAX:
        evidence = evidence[: _EVIDENCE_MAX - 3] + "..."
    if evidence.isprintable():
        return evidence
    return "".join(c if c.isprintable() else f"\\x{ord(c) & 0xFF:02x}" for c in evidence)


def select_rules(
    rules: Sequence[Rule], settings: SignaturesConfig, confirms: dict[str, Confirm]
) -> list[tuple[Rule, bool, Confirm | None]]:
    """The rules that run under `settings`, each with its observe flag and confirm step."""
    out: list[tuple[Rule, bool, Confirm | None]] = []
    detect_level = settings.effective_detection_paranoia
    for r in rules:
        if any(rule_selector_matches(s, r) for s in settings.disabled_rules):
            continue
        if r.paranoia > detect_level:
            continue
        if r.response_side and not settings.inspect_response:
            continue
        confirm: Confirm | None = None
        if r.confirm is not None:
            confirm = confirms.get(r.confirm)
            if confirm is None:
                log.warning("rule %s needs confirm step %r, which is not available: rule skipped", r.id, r.confirm)
                continue
        observe = r.paranoia > settings.paranoia or any(rule_selector_matches(s, r) for s in settings.observe_rules)
        out.append((r, observe, confirm))
    return out


class SignaturesDetector:
    name = "signatures"

    def __init__(self, settings: SignaturesConfig, rules: Sequence[Rule] | None = None) -> None:
        self.settings = settings
        all_rules = list(rules) if rules is not None else load_rules(extra=settings.rule_files)
        selected = select_rules(all_rules, settings, load_confirms())
        req: list[CompiledRule] = []
        resp: list[CompiledRule] = []
        for r, observe, confirm in selected:
            side = resp if r.response_side else req
            side.append(compile_rule(r, len(side), confirm, observe))
        self.request_matcher = Matcher(req, settings.engine)
        self.response_matcher = Matcher(resp, settings.engine)
        self.zone_options = ZoneOptions(
            base64=settings.zones.base64,
            multipart_file_content=settings.zones.multipart_file_content,
            max_values=settings.zones.max_values,
        )
        self.exclusions: list[SignatureExclusion] = list(settings.exclusions)
        if not resp:
            self.response_body = None  # type: ignore[assignment]  # the pipeline skips a None hook

    @property
    def rule_count(self) -> int:
        return len(self.request_matcher.rules) + len(self.response_matcher.rules)

    # --- hooks ---------------------------------------------------------------------------------

    def request_headers(self, ex: Exchange) -> None:
        self._inspect_request(ex, request_head_values(ex.request, self.zone_options))

    def request_body(self, ex: Exchange) -> None:
        if not ex.request.body:
            return
        self._inspect_request(ex, request_body_values(ex.request, self.zone_options))

    def response_body(self, ex: Exchange) -> None:
        resp = ex.response
        if resp is None or not resp.body or resp.from_bastion:
            return
        values = response_values(resp.body, resp.headers.get("content-type") or "")
        if not values:
            return  # a binary body: nothing to match
        hits = self.response_matcher.match(values, self._excluder(ex) if self.exclusions else None)
        if hits:  # (calls only when needed: a Python call costs ~1k instructions per response)
            self._report(ex, hits)

    # --- internals -----------------------------------------------------------------------------

    def inspect_values(self, values: Sequence[Value], response: bool = False) -> list[Hit]:
        """Match already-extracted values (rule tests, `bastion rules test`, benchmarks)."""
        return (self.response_matcher if response else self.request_matcher).match(values)

    def _inspect_request(self, ex: Exchange, values: list[Value]) -> None:
        matcher = self.request_matcher
        hits = matcher.match(values, self._excluder(ex) if self.exclusions else None)
        if hits:
            self._report(ex, hits)
        if matcher.exhausted:  # (tested here: _budget is called only when it has a finding to add)
            self._budget(ex, matcher)

    def _excluder(self, ex: Exchange) -> Excluded | None:
        if not self.exclusions:
            return None
        path = ex.request.path
        method = ex.request.method.upper()
        applicable = [
            e for e in self.exclusions
            if (e.method is None or e.method.upper() == method)
            and (fnmatch.fnmatchcase(path, e.path) or (ex.route and fnmatch.fnmatchcase(ex.route, e.path)))
        ]
        if not applicable:
            return None

        def excluded(cr: CompiledRule, v: Value) -> bool:
            for e in applicable:
                if (e.param == "*" or fnmatch.fnmatchcase(v.name, e.param)
                        or fnmatch.fnmatchcase(v.label, e.param)) and rule_selector_matches(e.rule, cr.rule):
                    return True
            return False

        return excluded

    def _budget(self, ex: Exchange, matcher: Matcher) -> None:
        """A request whose inspection ran out of budget is refused, not let through half-read: its
        values set off so many patterns that confirming them all would cost a core for a while."""
        if matcher.exhausted:
            ex.add(Finding(
                rule_id="signatures-budget", detector=self.name,
                message="too many signature candidates to confirm within the inspection budget",
                severity=Severity.CRITICAL, score=int(Severity.CRITICAL), tags=("inspection-budget",),
            ))

    def _report(self, ex: Exchange, hits: list[Hit]) -> None:
        for h in hits:
            cr = h.rule
            r = cr.rule
            ex.add(
                Finding(
                    rule_id=r.id,
                    detector=self.name,
                    message=r.message,
                    severity=cr.severity,
                    score=r.score,
                    zone=h.value.source,
                    name=h.value.name,
                    evidence=mask_evidence(h.evidence, h.value),
                    tags=cr.finding_tags,
                    observe=cr.observe,
                )
            )


def settings_of(config: Any) -> SignaturesConfig:
    s = getattr(config, "signatures", None)
    return s if isinstance(s, SignaturesConfig) else SignaturesConfig()


def make(config: Any, ctx: Any) -> SignaturesDetector | None:
    """Registry factory: the detector with the shipped rules plus the configured rule files."""
    det = SignaturesDetector(settings_of(config))
    return det if det.rule_count else None
