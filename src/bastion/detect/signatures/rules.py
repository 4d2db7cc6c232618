"""The signature rule model: typed YAML, validated at load time with the file and rule named.

    rules:
      - id: "942100"
        class: sqli
        message: SQL injection confirmed by the SQL tokenizer
        severity: critical          # critical 5, error 4, warning 3, notice 2 anomaly points
        paranoia: 1                 # 1 (default set) .. 4 (strictest)
        zones: [args, arg_names, cookies, "headers:user-agent"]   # "headers:!referer": all headers but one
        transforms: [decode]        # views to match: raw, decode, sql, cmd, path
        patterns: ["..."]           # Python/PCRE syntax; case-insensitive unless caseless: false
        unless: ["..."]             # a value matching one of these is not a hit
        names: "..."                # only values whose name (parameter, JSON path) this regex finds
        confirm: sqli               # a precise check that must agree (see confirm.py)
        tags: [paranoia-level/1]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bastion.detect.signatures.transforms import VIEW_NAMES
from bastion.detect.signatures.zones import ZONES
from bastion.errors import ConfigError
from bastion.verdict import Severity

AttackClass = Literal[
    "sqli", "xss", "rce", "lfi", "rfi", "ssrf", "xxe", "nosqli", "ssti", "log4shell",
    "php", "java", "node", "deserialization", "crlf", "scanner", "protocol", "leak", "ldap",
    "session-fixation", "xpath", "redirect",
]
ATTACK_CLASSES: tuple[str, ...] = AttackClass.__args__  # type: ignore[attr-defined]

SEVERITIES: dict[str, Severity] = {
    "critical": Severity.CRITICAL,
    "error": Severity.ERROR,
    "warning": Severity.WARNING,
    "notice": Severity.NOTICE,
}

# Anchors on the whole subject would differ between the per-value `re` check and the
# multi-value hyperscan buffer; rules anchor with ^/$ (per value), never \A \Z \z.
_FORBIDDEN = re.compile(r"\\[AZz]")


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    id: str = Field(pattern=r"^\d{6}$")
    attack_class: AttackClass = Field(alias="class")
    message: str = Field(min_length=3)
    severity: Literal["critical", "error", "warning", "notice"] = "critical"
    paranoia: int = Field(1, ge=1, le=4)
    zones: list[str] = Field(min_length=1)
    transforms: list[str] = Field(default_factory=lambda: ["decode"], min_length=1)
    patterns: list[str] = Field(min_length=1)
    unless: list[str] = Field(default_factory=list)
    names: str | None = None
    caseless: bool = True
    confirm: str | None = None
    tags: list[str] = Field(default_factory=list)

    @field_validator("zones")
    @classmethod
    def _zones(cls, v: list[str]) -> list[str]:
        for z in v:
            base, _, header = z.partition(":")
            if base not in ZONES:
                raise ValueError(f"unknown zone {z!r} (known: {', '.join(ZONES)})")
            if header and base != "headers":
                raise ValueError(f"only headers take a name filter, got {z!r}")
        return v

    @field_validator("transforms")
    @classmethod
    def _transforms(cls, v: list[str]) -> list[str]:
        for t in v:
            if t not in VIEW_NAMES:
                raise ValueError(f"unknown transform {t!r} (known: {', '.join(VIEW_NAMES)})")
        return v

    @field_validator("names")
    @classmethod
    def _names(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"names {v!r} does not compile: {exc}") from None
        return v

    @field_validator("patterns", "unless")
    @classmethod
    def _patterns(cls, v: list[str]) -> list[str]:
        for p in v:
            if _FORBIDDEN.search(p.replace("\\\\", "")):
                raise ValueError(f"pattern {p!r}: use ^/$ instead of \\A, \\Z, \\z")
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"pattern {p!r} does not compile: {exc}") from None
        return v

    @property
    def score(self) -> int:
        return int(SEVERITIES[self.severity])

    @property
    def response_side(self) -> bool:
        return "response" in self.zones


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[Rule]


def builtin_rule_files() -> list[Path]:
    """The shipped rule files: src/bastion/rules/9xx-*.yaml."""
    root = resources.files("bastion") / "rules"
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.startswith("9") and p.name.endswith(".yaml"))


def _load_file(path: Path) -> list[Rule]:
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read rules: {exc}"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError([f"{path}{line}: invalid YAML: {getattr(exc, 'problem', exc)}"]) from None
    try:
        return RuleFile.model_validate(data).rules
    except ValidationError as exc:
        problems = []
        raw_rules = data.get("rules") if isinstance(data, dict) else None
        for err in exc.errors():
            loc = list(err["loc"])
            rid = ""
            if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int) and isinstance(raw_rules, list):
                item = raw_rules[loc[1]] if loc[1] < len(raw_rules) else None
                rid = f" rule {item.get('id')}" if isinstance(item, dict) else ""
            where = ".".join(str(p) for p in loc)
            problems.append(f"{path}:{rid} {where}: {err['msg']}")
        raise ConfigError(problems) from None


def load_rules(paths: Iterable[Path] | None = None, extra: Iterable[Path] = ()) -> list[Rule]:
    """Load rule files (the shipped ones by default, plus `extra`); ids must be unique."""
    files = list(paths) if paths is not None else builtin_rule_files()
    files += list(extra)
    rules: list[Rule] = []
    seen: dict[str, Path] = {}
    for f in files:
        for r in _load_file(f):
            if r.id in seen:
                raise ConfigError([f"{f}: rule {r.id} is already defined in {seen[r.id]}"])
            seen[r.id] = f
            rules.append(r)
    return rules


def rule_selector_matches(selector: str, rule: Rule) -> bool:
    """A selector names a rule id (942100), an id prefix glob (942*), a class (sqli) or all (*)."""
    if selector in ("*", rule.id, rule.attack_class):
        return True
    if selector.endswith("*"):
        return rule.id.startswith(selector[:-1])
    return False
