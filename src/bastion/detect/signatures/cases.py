"""Rule cases: per rule id, values that must match and values that must not (tests/rules/<id>.yaml).

    rule: "942100"
    match:
      - "1' OR '1'='1"
      - {zone: headers, name: user-agent, value: "sqlmap/1.7"}
    no_match:
      - "O'Brien"

A bare string is placed in the rule's first zone. Each case runs through the full matcher (the
hyperscan prefilter, then `re` and the confirm step), with every rule loaded, and checks whether
*this* rule fires on the value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bastion.detect.signatures.detector import SignaturesDetector
from bastion.detect.signatures.rules import Rule
from bastion.detect.signatures.settings import SignaturesConfig
from bastion.detect.signatures.zones import Value
from bastion.errors import ConfigError

_SOURCES = {"args": "query", "arg_names": "query", "headers": "header", "cookies": "cookie", "path": "path",
            "filenames": "multipart", "body": "body", "response": "response"}


@dataclass(slots=True)
class Case:
    rule_id: str
    expect: bool
    zone: str
    name: str
    value: str
    source_file: Path | None = None


@dataclass(slots=True)
class CaseResult:
    case: Case
    fired: bool

    @property
    def ok(self) -> bool:
        return self.fired == self.case.expect


@dataclass(slots=True)
class CaseReport:
    results: list[CaseResult] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # rule ids without a case file
    unknown: list[str] = field(default_factory=list)  # case files naming no loaded rule

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if not r.ok]


def _default_zone(rule: Rule) -> tuple[str, str]:
    z = rule.zones[0]
    base, _, header = z.partition(":")
    return base, header or ("q" if base in ("args", "arg_names") else "")


def load_cases(path: Path, rules: dict[str, Rule]) -> list[Case]:
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError([f"{path}: cannot read rule cases: {exc}"]) from None
    if not isinstance(data, dict) or "rule" not in data:
        raise ConfigError([f"{path}: expected a mapping with `rule`, `match` and `no_match`"])
    rid = str(data["rule"])
    rule = rules.get(rid)
    if rule is None:
        return []
    out: list[Case] = []
    for key, expect in (("match", True), ("no_match", False)):
        for item in data.get(key) or []:
            zone, name = _default_zone(rule)
            if isinstance(item, dict):
                if "value" not in item:
                    raise ConfigError([f"{path}: a {key} case written as a mapping needs `value` (got {item!r});"
                                       " quote a value that contains ': '"])
                zone = str(item.get("zone", zone))
                name = str(item.get("name", name))
                value = str(item["value"])
            else:
                value = str(item)
            out.append(Case(rid, expect, zone, name, value, path))
    return out


def run_cases(case_dir: Path, detector: SignaturesDetector | None = None,
              rules: Sequence[Rule] | None = None) -> CaseReport:
    """Run every case file in `case_dir` against all rules (paranoia 4, so every rule runs)."""
    det = detector or SignaturesDetector(SignaturesConfig(paranoia=4), rules)
    loaded = {cr.rule.id: cr.rule for cr in (*det.request_matcher.rules, *det.response_matcher.rules)}
    report = CaseReport()
    seen: set[str] = set()
    for f in sorted(case_dir.glob("*.yaml")):
        cases = load_cases(f, loaded)
        if not cases:
            report.unknown.append(f.stem)
            continue
        for c in cases:
            seen.add(c.rule_id)
            report.results.append(CaseResult(c, fires(det, c)))
    report.missing = sorted(set(loaded) - seen)
    return report


def fires(det: SignaturesDetector, case: Case) -> bool:
    value = Value(case.zone, _SOURCES.get(case.zone, case.zone), case.name, case.value)
    hits = det.inspect_values([value], response=case.zone == "response")
    return any(h.rule.rule.id == case.rule_id for h in hits)


def rule_ids_fired(det: SignaturesDetector, values: Iterable[Value], response: bool = False) -> list[str]:
    return [h.rule.rule.id for h in det.inspect_values(list(values), response=response)]
