"""Every shipped rule's cases (tests/rules/<id>.yaml), on hyperscan and on the pure-Python engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.detect.signatures.cases import run_cases
from bastion.detect.signatures.detector import SignaturesDetector
from bastion.detect.signatures.matcher import HYPERSCAN_AVAILABLE, hyperscan_form
from bastion.detect.signatures.rules import load_rules, rule_selector_matches
from bastion.detect.signatures.settings import SignaturesConfig
from bastion.errors import ConfigError

CASES = Path(__file__).parent / "rules"

ENGINES = ["python"] + (["hyperscan"] if HYPERSCAN_AVAILABLE else [])


@pytest.fixture(scope="module", params=ENGINES)
def detector(request: pytest.FixtureRequest) -> SignaturesDetector:
    return SignaturesDetector(SignaturesConfig(paranoia=4, engine=request.param))


def test_every_rule_case_passes(detector: SignaturesDetector) -> None:
    report = run_cases(CASES, detector)
    failures = [f"{r.case.rule_id} expected {'match' if r.case.expect else 'no match'}: {r.case.value!r}"
                for r in report.failures]
    assert not failures, "\n".join(failures)
    assert not report.unknown


def test_every_rule_id_has_cases_that_match_and_that_do_not() -> None:
    report = run_cases(CASES, SignaturesDetector(SignaturesConfig(paranoia=4)))
    assert report.missing == []
    by_rule: dict[str, set[bool]] = {}
    for r in report.results:
        by_rule.setdefault(r.case.rule_id, set()).add(r.case.expect)
    assert all(kinds == {True, False} for kinds in by_rule.values()), by_rule


def test_shipped_rules_are_unique_and_grouped_by_class() -> None:
    rules = load_rules()
    assert len({r.id for r in rules}) == len(rules)
    assert {r.attack_class for r in rules} >= {"sqli", "xss", "rce", "lfi", "ssrf", "rfi", "xxe", "nosqli", "ssti",
                                               "log4shell", "php", "java", "node", "deserialization", "crlf",
                                               "scanner", "leak"}


def write(tmp: Path, text: str) -> Path:
    p = tmp / "9xx-test.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_a_broken_rule_is_a_config_error_naming_file_and_rule(tmp_path: Path) -> None:
    p = write(tmp_path, 'rules:\n  - {id: "990001", class: sqli, message: bad one, zones: [nowhere], '
                        'patterns: ["a"]}\n')
    with pytest.raises(ConfigError) as err:
        load_rules([p])
    text = str(err.value)
    assert "9xx-test.yaml" in text and "990001" in text and "nowhere" in text


def test_a_bad_regex_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, 'rules:\n  - {id: "990002", class: xss, message: bad regex, zones: [args], patterns: ["(a"]}\n')
    with pytest.raises(ConfigError, match="990002"):
        load_rules([p])


def test_whole_subject_anchors_are_refused(tmp_path: Path) -> None:
    p = write(tmp_path, 'rules:\n  - {id: "990003", class: xss, message: anchors, zones: [args], '
                        'patterns: ["\\\\Aa"]}\n')
    with pytest.raises(ConfigError, match="990003"):
        load_rules([p])


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    rule = '  - {id: "990004", class: xss, message: dup, zones: [args], patterns: ["a"]}\n'
    p = write(tmp_path, "rules:\n" + rule + rule)
    with pytest.raises(ConfigError, match="990004"):
        load_rules([p])


def test_hyperscan_form_widens_only_wide_repeats() -> None:
    assert hyperscan_form("a{0,200}b{2,5}") == ("a{0,}b{2,5}", False)
    assert hyperscan_form(r"(a)\1")[1] is True
    assert hyperscan_form(r"a(?!b)")[1] is True


def test_selectors() -> None:
    rule = next(r for r in load_rules() if r.id == "942100")
    assert rule_selector_matches("942100", rule)
    assert rule_selector_matches("942*", rule)
    assert rule_selector_matches("sqli", rule)
    assert rule_selector_matches("*", rule)
    assert not rule_selector_matches("941*", rule)
    assert not rule_selector_matches("xss", rule)


def test_cli_rules_list_and_test() -> None:
    from typer.testing import CliRunner

    from bastion.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["rules", "list", "--class", "sqli"])
    assert listed.exit_code == 0, listed.output
    assert "942100" in listed.output and "941110" not in listed.output
    tested = runner.invoke(app, ["rules", "test", "--cases", str(CASES)])
    assert tested.exit_code == 0, tested.output
    assert " 0 failed" in tested.output


def test_cli_rules_test_fails_on_a_broken_case(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bastion.cli import app

    for f in CASES.glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "942110.yaml").write_text('rule: "942110"\nmatch: ["hello world"]\nno_match: []\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["rules", "test", "--cases", str(tmp_path)])
    assert result.exit_code == 1 and "FAIL 942110" in result.output


def test_a_header_exclusion_zone_inspects_every_header_but_the_named_ones() -> None:
    from bastion.detect.signatures.matcher import compile_rule
    from bastion.detect.signatures.rules import Rule
    from bastion.detect.signatures.zones import Value

    rule = Rule.model_validate({"id": "999001", "class": "ssrf", "message": "test rule",
                                "zones": ["args", "headers", "headers:!referer"], "patterns": ["x"]})
    cr = compile_rule(rule, 0, None)
    assert cr.wants(Value("headers", "header", "x-callback", "x"))
    assert cr.wants(Value("args", "query", "referer", "x"))  # only the header is left out
    assert not cr.wants(Value("headers", "header", "referer", "x"))
    assert not cr.wants(Value("cookies", "cookie", "a", "x"))


def test_a_names_filter_limits_a_rule_to_values_whose_name_it_finds(tmp_path: Path) -> None:
    from bastion.detect.signatures.matcher import compile_rule
    from bastion.detect.signatures.rules import Rule
    from bastion.detect.signatures.zones import Value

    rule = Rule.model_validate({"id": "999002", "class": "rfi", "message": "test rule", "zones": ["args"],
                                "names": "(?:path|dir)$", "patterns": ["^https?://"]})
    cr = compile_rule(rule, 0, None)
    assert cr.wants(Value("args", "query", "include_PATH", "http://x/"))  # case-insensitive
    assert not cr.wants(Value("args", "query", "avatar_url", "http://x/"))
    p = write(tmp_path, 'rules:\n  - {id: "990005", class: rfi, message: bad names, zones: [args], names: "(a", '
                        'patterns: ["a"]}\n')
    with pytest.raises(ConfigError, match="990005"):
        load_rules([p])
