"""What detectors report (Finding) and what the one evaluator decides (Verdict)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Severity(enum.IntEnum):
    """Anomaly points per finding, as in the OWASP Core Rule Set."""

    NOTICE = 2
    WARNING = 3
    ERROR = 4
    CRITICAL = 5


class Action(enum.IntEnum):
    """Ordered by strength: the evaluator keeps the strongest action asked for."""

    ALLOW = 0
    LOG = 1
    THROTTLE = 2
    CHALLENGE = 3
    BLOCK = 4


class Phase(enum.IntEnum):
    CONNECTION = 0
    REQUEST_HEADERS = 1
    REQUEST_BODY = 2
    RESPONSE_HEADERS = 3
    RESPONSE_BODY = 4
    COMPLETE = 5


@dataclass(slots=True)
class Finding:
    """One thing one detector saw.

    `score` adds to the exchange's anomaly score. `action`/`status` let a detector ask for a
    specific outcome without scoring (a deny decision asks for BLOCK/403, a body limit for 413).
    `evidence` is already masked by the detector: it never holds a secret or a whole payload.
    """

    rule_id: str
    detector: str
    message: str
    severity: Severity = Severity.CRITICAL
    score: int = 0
    zone: str = ""
    name: str = ""
    evidence: str = ""
    tags: tuple[str, ...] = ()
    action: Action | None = None
    status: int | None = None
    reason: str = ""
    retry_after: int | None = None
    delay: float = 0.0  # seconds, for THROTTLE
    risk: float | None = None  # points for the entity's risk; None: derived from severity/score
    headers: tuple[tuple[str, str], ...] = ()
    observe: bool = False
    phase: Phase = Phase.REQUEST_HEADERS
    extra: tuple[tuple[str, str | int], ...] = ()  # members added to the problem document (a challenge id)

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "rule_id": self.rule_id,
            "detector": self.detector,
            "message": self.message,
            "severity": self.severity.name.lower(),
            "score": self.score,
        }
        if self.zone:
            d["zone"] = self.zone
        if self.name:
            d["name"] = self.name
        if self.evidence:
            d["evidence"] = self.evidence
        if self.tags:
            d["tags"] = list(self.tags)
        if self.action is not None:
            d["action"] = self.action.name.lower()
        if self.observe:
            d["observe"] = True
        return d


@dataclass(slots=True)
class Verdict:
    """The evaluator's decision on an exchange.

    `reason` is the public, stable problem code (it never describes the payload);
    `rule_ids` explains the decision to operators (events, logs), never to the client.
    Never changed once made: the evaluator shares one ALLOW verdict per status between exchanges.
    """

    action: Action
    status: int = 200
    reason: str = ""
    title: str = ""
    score: int = 0
    rule_ids: tuple[str, ...] = ()
    retry_after: int | None = None
    delay: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()
    would_block: bool = False  # observe mode: what enforce mode would have done
    close: bool = False  # close the client connection after answering
    extra: tuple[tuple[str, str | int], ...] = ()  # members added to the problem document

    @property
    def blocks(self) -> bool:
        return self.action >= Action.CHALLENGE


ALLOW = Verdict(Action.ALLOW)


@dataclass(slots=True)
class ScoreBoard:
    """Running anomaly totals of one exchange, split by side as CRS does."""

    inbound: int = 0
    outbound: int = 0
    by_tag: dict[str, int] = field(default_factory=dict)
