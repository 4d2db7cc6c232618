"""The `signatures:` config section. Imported by bastion.config, so it imports nothing of Bastion's."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignatureExclusion(_Section):
    """One line of tuning: rule(s) not applied to one parameter of one endpoint.

        - {path: "/api/posts/*", param: "json:body", rule: xss}
        - {path: "/search", method: GET, param: "q", rule: "942*"}

    `path` is a glob over the request path or the route template (`/users/{id}`); `param` a glob
    over the value's name (`user.bio`) or its label (`json:user.bio`, `header:user-agent`);
    `rule` a rule id, an id glob (`942*`), an attack class (`sqli`) or `*`.
    """

    path: str = "*"
    method: str | None = None
    param: str = "*"
    rule: str = "*"


class ZoneSettings(_Section):
    base64: bool = Field(True, description="also inspect the decoded text of base64 argument values")
    multipart_file_content: bool = Field(False, description="inspect textual file uploads too")
    max_values: int = Field(1024, ge=16, description="values per phase inspected one by one")


class SignaturesConfig(_Section):
    """Injection signatures with anomaly scoring (see docs/detection.md)."""

    paranoia: int = Field(1, ge=1, le=4, description="rules up to this level add anomaly points")
    detection_paranoia: int | None = Field(
        None, ge=1, le=4, description="rules up to this level run; those above `paranoia` only observe"
    )
    inspect_response: bool = Field(True, description="leak rules on response bodies (SQL errors, traces)")
    exclusions: list[SignatureExclusion] = Field(default_factory=list)
    observe_rules: list[str] = Field(default_factory=list, description="rule ids/classes that only observe")
    disabled_rules: list[str] = Field(default_factory=list, description="rule ids/classes never run")
    rule_files: list[Path] = Field(default_factory=list, description="extra rule files, added to the shipped ones")
    zones: ZoneSettings = Field(default_factory=ZoneSettings)
    engine: Literal["auto", "hyperscan", "python"] = "auto"

    @model_validator(mode="after")
    def _levels(self) -> SignaturesConfig:
        if self.detection_paranoia is not None and self.detection_paranoia < self.paranoia:
            raise ValueError("detection_paranoia must be >= paranoia")
        return self

    @property
    def effective_detection_paranoia(self) -> int:
        return self.detection_paranoia or self.paranoia
