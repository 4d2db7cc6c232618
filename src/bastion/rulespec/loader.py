"""Loading rules: the config's inline list, rule files, and the shipped starter set, validated and
compiled with errors that name the file, the line, the rule and the field."""

from __future__ import annotations

import glob
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bastion.config import _line_of, _LineLoader
from bastion.errors import ConfigError
from bastion.rulespec.compile import CompiledRule, RuleError, compile_rule
from bastion.rulespec.model import RulesConfig, RuleSpec


def _read_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError([f"{source}{line}: invalid YAML: {getattr(exc, 'problem', exc)}"]) from None


def parse_rules(data: Any, source: str) -> list[RuleSpec]:
    """Rules from a parsed YAML document: a list of rules, or a mapping with a `rules:` list."""
    if isinstance(data, dict) and set(data) == {"rules"}:
        doc, items = data, data["rules"]
        base: tuple[int | str, ...] = ("rules",)
    else:
        doc, items, base = data, data, ()
    if items is None:
        return []
    if not isinstance(items, list):
        raise ConfigError([f"{source}:1: a rule file holds a list of rules (or `rules:` with a list)"])
    out: list[RuleSpec] = []
    problems: list[str] = []
    for i, item in enumerate(items):
        rid = item.get("id", f"#{i + 1}") if isinstance(item, dict) else f"#{i + 1}"
        try:
            out.append(RuleSpec.model_validate(item))
        except ValidationError as exc:
            for err in exc.errors():
                loc = (*base, i, *err["loc"])
                line = _line_of(doc, loc)
                where = f"{source}:{line}" if line else source
                field = ".".join(str(p) for p in err["loc"]) or "(rule)"
                problems.append(f"{where}: rule {rid}: {field}: {err['msg']}")
    if problems:
        raise ConfigError(problems)
    return out


def load_rule_file(path: str | Path) -> list[RuleSpec]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{p}: cannot read: {exc}"]) from None
    return parse_rules(_read_yaml(text, str(p)), str(p))


def starter_rules() -> list[RuleSpec]:
    """Every rule of the shipped starter set (src/bastion/rules/starter/*.yaml)."""
    out: list[RuleSpec] = []
    folder = resources.files("bastion").joinpath("rules", "starter")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            src = f"bastion/rules/starter/{entry.name}"
            out.extend(parse_rules(_read_yaml(entry.read_text(encoding="utf-8"), src), src))
    return out


def collect(cfg: RulesConfig, source: str = "config") -> list[RuleSpec]:
    """All the rules a config switches on, in order: starter, files, inline. Ids must be unique."""
    specs: list[RuleSpec] = []
    problems: list[str] = []
    if cfg.starter:
        shipped = {r.id: r for r in starter_rules()}
        wanted = list(shipped) if cfg.starter == "all" else cfg.starter
        for rid in wanted:
            if rid not in shipped:
                problems.append(f"{source}: rules.starter: no starter rule {rid!r} (have: {', '.join(shipped)})")
                continue
            spec = shipped[rid]
            if rid in cfg.overrides:
                merged = spec.model_dump(by_alias=True, exclude_unset=True)
                merged.update(cfg.overrides[rid])
                try:
                    spec = RuleSpec.model_validate(merged)
                except ValidationError as exc:
                    problems += [f"{source}: rules.overrides.{rid}.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in exc.errors()]
                    continue
            specs.append(spec)
    for rid in cfg.overrides:
        if not cfg.starter or (cfg.starter != "all" and rid not in cfg.starter):
            problems.append(f"{source}: rules.overrides.{rid}: not an enabled starter rule")
    for pattern in cfg.files:
        paths = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        if not paths:
            problems.append(f"{source}: rules.rule_files: nothing matches {pattern!r}")
        for p in paths:
            try:
                specs.extend(load_rule_file(p))
            except ConfigError as exc:
                problems.extend(exc.problems)
    specs.extend(cfg.list_)
    seen: set[str] = set()
    for s in specs:
        if s.id in seen:
            problems.append(f"{source}: rule id {s.id!r} is defined twice")
        seen.add(s.id)
    if problems:
        raise ConfigError(problems)
    return specs


def compile_all(specs: list[RuleSpec], groups: dict[str, list[str]], source: str = "config") -> list[CompiledRule]:
    out: list[CompiledRule] = []
    problems: list[str] = []
    for s in specs:
        try:
            out.append(compile_rule(s, groups))
        except RuleError as exc:
            problems.append(f"{source}: rule {s.id}: {exc}")
    if problems:
        raise ConfigError(problems)
    return out


def load_rules(cfg: RulesConfig, source: str = "config") -> list[CompiledRule]:
    return compile_all(collect(cfg, source), cfg.groups, source)
