"""Configuration: one typed model, loaded from YAML, that fails loudly with file, line and field.

Every section has safe defaults, so `bastion proxy --upstream URL` with no file protects an API.
Unknown keys are errors (a typo must not silently disable a protection).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bastion.admin.settings import AdminConfig
from bastion.alerts.settings import AlertsConfig
from bastion.catalog.settings import CatalogConfig, SpecConfig
from bastion.detect.access_settings import AccessConfig
from bastion.detect.behaviour.settings import BehaviourConfig
from bastion.detect.graphql_settings import GraphQLConfig
from bastion.detect.signatures.settings import SignaturesConfig
from bastion.detect.symptoms_settings import SymptomsConfig
from bastion.errors import ConfigError
from bastion.rulespec.model import RulesConfig
from bastion.state.settings import StateConfig


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class LimitsConfig(Section):
    """Sizes beyond which a request is refused before it reaches the API."""

    max_uri_bytes: int = Field(8192, ge=64)
    max_header_bytes: int = Field(32768, ge=1024, description="all request header lines together")
    max_header_count: int = Field(100, ge=8)
    max_header_value_bytes: int = Field(8192, ge=256)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=0, description="413 beyond this")
    inspect_body_bytes: int = Field(128 * 1024, ge=0, description="body prefix buffered for inspection")
    uninspected_body: Literal["refuse", "pass"] = Field(
        "refuse",
        description="a JSON, form, XML, GraphQL or text body (or one without a type) longer than "
                    "inspect_body_bytes: refused with 413 (an attack padded past the inspected prefix is a classic "
                    "WAF bypass), or passed with its prefix inspected. Multipart and binary bodies always pass "
                    "(their files are not inspected)",
    )
    max_query_args: int = Field(256, ge=1)
    inspect_response_bytes: int = Field(64 * 1024, ge=0)


class TimeoutsConfig(Section):
    """Seconds. Slow clients (slowloris, slow POST) are cut at these limits."""

    header: float = Field(10.0, gt=0)
    body: float = Field(30.0, gt=0, description="between two body reads")
    body_min_rate: float = Field(
        500.0, ge=0, description="bytes/s: a body must arrive within `body` s plus 1 s per this many bytes (0: off)"
    )
    idle: float = Field(60.0, gt=0, description="keep-alive idle time between requests")
    upstream_connect: float = Field(5.0, gt=0)
    upstream_response: float = Field(60.0, gt=0, description="upstream silence before 504")


class TLSConfig(Section):
    cert: Path | None = None
    key: Path | None = None
    hsts: bool = False
    hsts_max_age: int = 31536000
    ja4: bool = Field(True, description="fingerprint each ClientHello (JA4) into the `tls` entity key")


class UpstreamConfig(Section):
    url: str | None = None
    verify_tls: bool = True
    ca_file: Path | None = None
    pool_size: int = Field(256, ge=1, description="idle keep-alive connections kept per worker")


class ServerConfig(Section):
    listen: str = "127.0.0.1:8080"
    workers: int = Field(1, ge=1, le=256)
    max_connections: int = Field(4096, ge=1, description="beyond this, new clients get 503 and close")
    max_connections_per_ip: int = Field(
        512, ge=0, description="open connections one client address may hold (0: no cap; trusted proxies exempt)"
    )
    max_pipelined: int = Field(16, ge=1, description="requests queued on one connection before pausing reads")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="CIDRs whose X-Forwarded-For / Forwarded is believed"
    )
    tls: TLSConfig = Field(default_factory=TLSConfig)
    websocket: bool = True

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for c in v:
            ipaddress.ip_network(c, strict=False)
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_hostport(v)
        return v


class ErrorsConfig(Section):
    scrub_upstream_errors: bool = Field(True, description="replace 5xx debug pages/stack traces")
    strip_banners: bool = Field(True, description="remove Server and X-Powered-By")


class DecisionEntry(Section):
    """A manual decision: allow or deny an address or network, optionally until a time."""

    action: Literal["allow", "deny"]
    cidr: str
    reason: str = ""
    until: float | None = Field(None, description="epoch seconds; none = permanent")
    ttl: float | None = Field(None, gt=0, description="seconds from start-up")

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        ipaddress.ip_network(v, strict=False)
        return v


class DetectorSettings(Section):
    """Per-detector switches; detector-specific options live in their own sections."""

    enabled: bool = True
    observe: bool = False


class ScoringConfig(Section):
    inbound_threshold: int = Field(5, ge=1)
    outbound_threshold: int = Field(4, ge=1)


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    json_lines: bool = Field(True, alias="json")
    events_to_log: bool = True


class StoreConfig(Section):
    url: str = Field("", description="empty: sqlite in the data dir; or postgresql://...")
    batch_size: int = Field(500, ge=1)
    flush_interval: float = Field(0.5, gt=0)
    queue_size: int = Field(100_000, ge=100)
    backlog_size: int = Field(
        50_000, ge=0, description="events kept in memory for a retry while the store refuses writes"
    )
    retention_days: float = Field(30, gt=0)


class ProtocolConfig(Section):
    """HTTP protocol-anomaly checks (bastion.detect.protocol)."""

    allowed_methods: list[str] = Field(
        default_factory=lambda: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        description="other methods get 405; add WebDAV methods etc. here if the API uses them",
    )
    allowed_charsets: list[str] = Field(
        default_factory=lambda: ["utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "iso-8859-15", "latin1",
                                 "latin-1", "windows-1252", "utf-16", "utf-16le", "utf-16be"],
        description="request charsets that add no points; EBCDIC/UTF-7/UTF-32 always score critical",
    )
    max_ranges: int = Field(10, ge=1, description="byte ranges in one Range header")
    allowed_content_types: list[str] = Field(
        default_factory=list,
        description="media types a request body may declare (e.g. application/json); others score critical. "
        "Empty (the default): any well-formed type",
    )
    check_bodies: bool = Field(True, description="check bodies against their declared Content-Type")


class BastionConfig(Section):
    mode: Literal["enforce", "observe"] = "enforce"
    fail_mode: Literal["open", "closed"] = Field(
        "open", description="what happens to a request when a detector or backend fails"
    )
    data_dir: Path = Field(default_factory=lambda: Path(os.environ.get("BASTION_DATA_DIR", ".bastion")))
    upstream: UpstreamConfig = Field(default_factory=UpstreamConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    errors: ErrorsConfig = Field(default_factory=ErrorsConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    decisions: list[DecisionEntry] = Field(default_factory=list)
    behaviour: BehaviourConfig = Field(default_factory=BehaviourConfig)
    detectors: dict[str, DetectorSettings] = Field(default_factory=dict)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    rules: RulesConfig = Field(default_factory=RulesConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    signatures: SignaturesConfig = Field(default_factory=SignaturesConfig)
    graphql: GraphQLConfig = Field(default_factory=GraphQLConfig)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    symptoms: SymptomsConfig = Field(default_factory=SymptomsConfig)
    access: AccessConfig = Field(default_factory=AccessConfig)
    spec: SpecConfig | None = None
    admin: AdminConfig = Field(default_factory=AdminConfig)

    def detector(self, name: str) -> DetectorSettings:
        return self.detectors.get(name) or DetectorSettings()


def parse_hostport(v: str) -> tuple[str, int]:
    host, sep, port = v.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {v!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


# --- loading with line numbers -------------------------------------------------------------


class _LineLoader(yaml.SafeLoader):
    """A safe loader that remembers the line of every mapping key, to point at mistakes."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    lines = {}
    for key_node, _ in node.value:
        lines[loader.construct_object(key_node)] = key_node.start_mark.line + 1
    mapping_with_lines = _LinedDict(mapping)
    mapping_with_lines.lines = lines
    mapping_with_lines.line = node.start_mark.line + 1
    return mapping_with_lines


class _LinedDict(dict[Any, Any]):
    lines: dict[Any, int]
    line: int


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_of(doc: Any, loc: tuple[int | str, ...]) -> int | None:
    node, line = doc, getattr(doc, "line", None)
    for part in loc:
        if isinstance(node, _LinedDict):
            line = node.lines.get(part, node.line)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            line = getattr(node, "line", line)
        else:
            break
    return line


def parse_config(data: Any, source: str = "<config>", model: type[BastionConfig] = BastionConfig) -> BastionConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{source}:1: the top level must be a mapping of sections"])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _line_of(data, loc)
            where = f"{source}:{line}" if line else source
            field = ".".join(str(p) for p in loc) or "(top level)"
            problems.append(f"{where}: {field}: {err['msg']}")
        raise ConfigError(problems) from None


def load_config(path: str | Path | None) -> BastionConfig:
    """Load and validate a YAML config; no path gives the defaults."""
    if path is None:
        return BastionConfig()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{p}: cannot read: {exc}"]) from None
    try:
        data = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError([f"{p}{line}: invalid YAML: {getattr(exc, 'problem', exc)}"]) from None
    return parse_config(data, str(p))
