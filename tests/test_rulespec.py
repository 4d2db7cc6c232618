"""The rule language itself: units, signals, scopes, explain, the CLI, and hostile rule files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bastion.cli import app
from bastion.config import parse_config
from bastion.errors import ConfigError
from bastion.exchange import Client, Exchange, Headers, Request, Response
from bastion.rulespec.compile import compile_rule, compile_scope
from bastion.rulespec.explain import explain
from bastion.rulespec.loader import load_rules, parse_rules, starter_rules
from bastion.rulespec.model import RuleSpec, Scope
from bastion.rulespec.units import format_duration, parse_duration, parse_size
from bastion.state.redis import load_script

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def ex(method="GET", target="/", headers=(), ip="10.0.0.1", status=None, body=b"", route="", site="api.test"):
    e = Exchange(id="x", client=Client(ip), request=Request(method, target, Headers(list(headers)), body=body),
                 started=0.0, route=route, site=site)
    if status is not None:
        e.response = Response(status, Headers())
    return e


def test_units():
    assert parse_duration("500ms") == 0.5 and parse_duration("5m") == 300 and parse_duration(3) == 3
    assert parse_size("1MB") == 1_000_000 and parse_size("2KiB") == 2048 and parse_size("64k") == 64_000
    assert format_duration(300) == "5m" and format_duration(0.25) == "250ms" and format_duration(12.5) == "12.5s"
    for bad in ("ten seconds", "-1s", True, None):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_path_globs_and_sites():
    scope = compile_scope(Scope(paths=["/api/*/orders", "/admin/**"], sites=["*.example.com"]), {})
    assert scope(ex(target="/api/v1/orders?x=1", site="shop.example.com"))
    assert not scope(ex(target="/api/v1/x/orders", site="shop.example.com"))  # * is one segment
    assert scope(ex(target="/admin/a/b/c", site="a.example.com"))
    assert scope(ex(target="/%61dmin/x", site="a.example.com"))  # percent-decoded before matching
    assert not scope(ex(target="/admin/x", site="example.org"))


def test_groups_by_patterns_or_tags():
    scope = compile_scope(Scope(groups=["auth"]), {"auth": ["/login", "/api/*/token"]})
    assert scope(ex(target="/login")) and scope(ex(target="/api/v2/token"))
    assert not scope(ex(target="/products"))
    tagged = ex(target="/products")
    tagged.tags.add("auth")
    assert scope(tagged)


def test_match_tests():
    rule = compile_rule(RuleSpec.model_validate({
        "id": "t", "window": "1m", "threshold": 1, "actions": {"tags": ["x"]},
        "match": {"status": {"in": ["4xx"], "not_in": [404]}, "header.x-api-key": {"present": False},
                  "query.page": {"gt": 100}, "ip": {"cidr": ["10.0.0.0/8"]}},
    }))
    assert rule.matches(ex(target="/?page=101", status=403))
    assert not rule.matches(ex(target="/?page=101", status=404))
    assert not rule.matches(ex(target="/?page=99", status=403))
    assert not rule.matches(ex(target="/?page=abc", status=403))
    assert not rule.matches(ex(target="/?page=101", status=403, ip="192.168.1.1"))
    assert not rule.matches(ex(target="/?page=101", status=403, headers=[("X-API-Key", "k")]))


def test_json_fields_and_keys():
    rule = compile_rule(RuleSpec.model_validate({
        "id": "j", "window": "1m", "threshold": 1, "actions": {"tags": ["x"]},
        "match": {"json.user.role": "admin", "json.items.0.qty": {"ge": 10}},
        "key": ["network/16", "json.user.name"],
    }))
    body = b'{"user": {"role": "admin", "name": "bob"}, "items": [{"qty": 12}]}'
    e = ex("POST", "/x", [("Content-Type", "application/json")], ip="10.1.2.3", body=body)
    assert rule.matches(e)
    assert rule.key(e) == "10.1.0.0/16\x1fbob"
    bad = ex("POST", "/x", [("Content-Type", "application/json")], body=b"{not json")
    assert not rule.matches(bad) and rule.key(bad) is None


def test_every_starter_rule_compiles_and_explains():
    rules = starter_rules()
    assert {r.id for r in rules} >= {"scan-404-burst", "login-failure-burst", "per-key-rate", "oversized-export"}
    for spec in rules:
        text = explain(spec)
        assert text.startswith(spec.id) and "Then:" in text


def test_explain_words():
    cfg = parse_config({"rules": [{"id": "e", "description": "enumeration", "scope": {"paths": ["/lookup"]},
                                   "key": "fingerprint", "counter": {"distinct": "query.email"}, "window": "1m",
                                   "threshold": 10, "actions": {"block": 403, "cooldown": "10m", "risk": 50}}]})
    text = explain(cfg.rules.list_[0])
    assert "distinct values of query.email within the last 1m" in text
    assert "client fingerprint" in text and "403 for 10m" in text and "50 risk points" in text


def test_cli_explain():
    runner = CliRunner()
    r = runner.invoke(app, ["rules", "explain", "scanner-404", "--config", str(EXAMPLES / "scanner-404.yaml")])
    assert r.exit_code == 0, r.output
    assert "status is 404" in r.output and "after the response was sent" in r.output
    r = runner.invoke(app, ["rules", "explain", "login-failure-burst"])
    assert r.exit_code == 0 and "failed logins" in r.output
    r = runner.invoke(app, ["rules", "explain", "no-such-rule"])
    assert r.exit_code == 1


def test_config_roundtrip_keeps_rules_meaning():
    """The CLI re-validates a dumped config (flags over a file): rules must mean the same after."""
    from bastion.cli.common import with_overrides
    from bastion.config import load_config

    cfg = with_overrides(load_config(EXAMPLES / "scanner-404.yaml"), {"state": {"url": "redis://h:1/2"}})
    assert cfg.state.url == "redis://h:1/2"
    rule = load_rules(cfg.rules)[0]
    assert rule.matches(ex(status=404)) and not rule.matches(ex(status=200))


def test_lua_script_ships_with_the_package():
    assert b"redis.call" in load_script("hit.lua")


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=12), st.sampled_from(["10s", "1MB", "4xx", "ip", "status", "(", "**"]))
_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(
    st.sampled_from(["equals", "in", "regex", "gt", "cidr", "present", "sum", "distinct", "block", "risk",
                     "paths", "methods", "x"]), c, max_size=3), max_leaves=8)
_rules = st.dictionaries(
    st.sampled_from(["id", "window", "threshold", "key", "match", "scope", "counter", "actions", "algorithm",
                     "mode", "approximate", "bogus"]), _values, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_rules, max_size=3))
def test_hostile_rule_files_give_clear_errors(rules):
    """Whatever a rule file holds, loading either works or raises ConfigError naming the problem."""
    try:
        specs = parse_rules(rules, "fuzz.yaml")
        load_rules(parse_config({"rules": [s.model_dump(by_alias=True) for s in specs]}).rules)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


_pieces = st.sampled_from(["- ", "id: x", "id: [", "window: 1s", "window: -", "threshold: 2", "threshold: x",
                           "actions: {block: 429}", "actions:", "  block: 403", "key: ", "match: {status: }", "\n",
                           "\t", "{", "}", "[", "]", "&a", "*a", "!!python/object:os.system", ":", "'", '"', "#"])


@settings(max_examples=200, deadline=None)
@given(st.lists(_pieces, max_size=30).map("".join))
def test_hostile_rule_file_text(tmp_path_factory, text):
    """Any text in a rule file loads or fails with ConfigError lines naming the file (no tracebacks)."""
    from bastion.rulespec.loader import load_rule_file

    f = tmp_path_factory.mktemp("r") / "rules.yaml"
    f.write_text(text)
    try:
        load_rules(parse_config({"rules": [s.model_dump(by_alias=True) for s in load_rule_file(f)]}).rules)
    except ConfigError as exc:
        assert exc.problems and all(p.startswith((str(f), "config")) for p in exc.problems)


def test_yaml_alias_bomb_in_a_duration_or_size_is_refused_fast(tmp_path):
    # H11: the error message repr'd the whole value; an alias bomb (9^8 strings) took seconds and GBs.
    import itertools
    import time

    from bastion.config import load_config

    levels = "abcdefgh"
    anchors = '      a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for prev, cur in itertools.pairwise(levels):
        anchors += f"      {cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]\n"
    for field in ("window", "threshold"):
        path = tmp_path / f"{field}.yaml"
        path.write_text("rules:\n  starter: all\n  overrides:\n    export-volume:\n" + anchors
                        + f"      {field}: *h\n", encoding="utf-8")
        t0 = time.perf_counter()
        with pytest.raises(ConfigError) as err:
            load_rules(load_config(path).rules)
        assert time.perf_counter() - t0 < 1.0
        assert any(field in p for p in err.value.problems)
        assert max(len(p) for p in err.value.problems) < 1000
    with pytest.raises(ValueError, match="got 'ten seconds'"):
        parse_duration("ten seconds")
