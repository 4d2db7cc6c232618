"""Config loading and `bastion config check`: every mistake points at file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from bastion.cli import app
from bastion.config import BastionConfig, load_config, parse_config
from bastion.errors import ConfigError

runner = CliRunner()

BAD = """\
mode: enforce
server:
  listen: "127.0.0.1:99999"
  max_connections: -3
limits:
  max_uri_bytes: lots
  unknown_thing: 1
decisions:
  - action: deny
    cidr: 10.0.0.0/8
  - action: maybe
    cidr: not-a-network
"""


def write(tmp_path: Path, text: str, name: str = "bastion.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_need_no_file() -> None:
    cfg = load_config(None)
    assert cfg.mode == "enforce" and cfg.store.url == "" and cfg.server.workers == 1


def test_every_problem_has_file_line_and_field(tmp_path: Path) -> None:
    p = write(tmp_path, BAD)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    problems = exc.value.problems
    expected = [
        (3, "server.listen"),
        (4, "server.max_connections"),
        (6, "limits.max_uri_bytes"),
        (7, "limits.unknown_thing"),
        (11, "decisions.1.action"),
        (12, "decisions.1.cidr"),
    ]
    assert len(problems) == len(expected)
    for (line, field), problem in zip(expected, problems, strict=True):
        assert problem.startswith(f"{p}:{line}: {field}: "), problem


def test_config_check_cli_reports_and_fails(tmp_path: Path) -> None:
    p = write(tmp_path, BAD)
    result = runner.invoke(app, ["config", "check", str(p)])
    assert result.exit_code == 1
    assert f"{p}:7: limits.unknown_thing: Extra inputs are not permitted" in result.output
    assert f"{p}:11: decisions.1.action:" in result.output


def test_config_check_ok(tmp_path: Path) -> None:
    p = write(tmp_path, "mode: observe\nupstream:\n  url: http://127.0.0.1:9000\nlogging:\n  json: false\n")
    result = runner.invoke(app, ["config", "check", str(p)])
    assert result.exit_code == 0, result.output
    assert "ok (observe mode" in result.output
    assert "detectors:" in result.output


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("mode: enforce\nserver:\n\tlisten: x\n", ":3: invalid YAML"),
        ("- just\n- a list\n", ":1: the top level must be a mapping"),
        ("server:\n  listen: 8080\n", ":2: server.listen:"),
        ("mode: observe\nmode2: enforce\n", ":2: mode2: Extra inputs"),
        ("scoring:\n  inbound_threshold: 0\n", ":2: scoring.inbound_threshold:"),
    ],
)
def test_config_check_points_at_the_line(tmp_path: Path, text: str, expect: str) -> None:
    p = write(tmp_path, text)
    result = runner.invoke(app, ["config", "check", str(p)])
    assert result.exit_code == 1
    assert f"{p}{expect}" in result.output, result.output


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "cannot read" in result.output
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    result = runner.invoke(app, ["config", "check", str(binary)])
    assert result.exit_code == 1 and str(binary) in result.output


def test_empty_file_is_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == BastionConfig(data_dir=load_config(None).data_dir)


def test_parse_config_source_name() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({"mode": "loud"}, "command line")
    assert exc.value.problems[0].startswith("command line: mode: ")


def test_defaults_file_round_trips_to_the_defaults(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "defaults"])
    assert result.exit_code == 0
    p = write(tmp_path, result.stdout)
    assert load_config(p) == load_config(None)
    assert "max_body_bytes: 10485760  # 413 beyond this" in result.stdout


def test_reference_lists_every_section() -> None:
    result = runner.invoke(app, ["config", "defaults", "--markdown"])
    assert result.exit_code == 0
    for name, field in BastionConfig.model_fields.items():
        assert f"`{field.alias or name}`" in result.stdout
    assert "| `limits.max_body_bytes` | `int` | `10485760` | 413 beyond this |" in result.stdout



_yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**12), st.floats(allow_nan=True),
                          st.text(max_size=20))
_yaml_trees = st.recursive(
    _yaml_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["mode", "server", "listen", "limits", "max_body_bytes", "store", "url",
                                       "decisions", "cidr", "action", "x", "detectors", "signatures", "on"])
                      | st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_any_text_is_a_config_or_a_clear_error(tmp_path: Path, text: str) -> None:
    p = tmp_path / "fuzz.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(p)
    except ConfigError as exc:
        assert exc.problems and all(line.startswith(str(p)) for line in exc.problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_yaml_trees)
def test_any_yaml_document_is_a_config_or_a_clear_error(tmp_path: Path, doc: object) -> None:
    p = tmp_path / "fuzz.yaml"
    p.write_text(yaml.safe_dump(doc), encoding="utf-8")
    try:
        load_config(p)
    except ConfigError as exc:
        assert exc.problems and all(line.startswith(str(p)) for line in exc.problems)


def test_config_check_rejects_an_unknown_store(tmp_path: Path) -> None:
    p = write(tmp_path, "store:\n  url: mongodb://x/y\n")
    result = runner.invoke(app, ["config", "check", str(p)])
    assert result.exit_code == 1 and "store.url: unsupported event store 'mongodb'" in result.output
