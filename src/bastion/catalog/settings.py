"""The `catalog:` and `spec:` config sections.

    catalog:                  # learning the API from traffic (on by default)
      path: /var/lib/bastion/catalog.db
    spec: api.yaml            # positive security: check requests against an OpenAPI document
    spec:                     # ...or with options
      path: api.yaml
      responses: true
      observe: ["/legacy/*", "POST /users"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bastion.catalog.sensitive import KINDS


class CatalogConfig(BaseModel):
    """The API catalog learned from traffic (bastion.catalog, detector `catalog`)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    path: Path | None = Field(None, description="SQLite file; default: catalog.db in data_dir")
    persist: bool = Field(True, description="write the catalog to `path` (off: memory only)")
    flush_interval: float = Field(10.0, gt=0, description="seconds between writes to the catalog file")
    max_hosts: int = Field(64, ge=1)
    max_endpoints: int = Field(5000, ge=1, description="endpoints learned at most (per process)")
    max_nodes: int = Field(50_000, ge=16, description="path-tree nodes at most: the memory bound")
    max_shapes: int = Field(100_000, ge=0, description="body/response field shapes at most (~0.5 KB each)")
    full_samples: int = Field(100, ge=0, description="first exchanges of an endpoint inspected in full")
    sample_every: int = Field(10, ge=1, description="then one exchange in this many")
    min_siblings: int = Field(8, ge=2, description="distinct words at one position before it may be a parameter")
    max_siblings: int = Field(100, ge=4, description="distinct words at one position that always make a parameter")
    sensitive: bool = Field(True, description="tag sensitive data seen in responses")
    hold_responses: bool = Field(
        False,
        description="make the proxy buffer each response's inspected prefix so response schemas and sensitive "
        "data are learned (the ASGI middleware always provides it); costs time-to-first-byte on large responses",
    )


class SpecConfig(BaseModel):
    """Positive security from an OpenAPI 3.x document (bastion.detect.schema, detector `schema`)."""

    model_config = ConfigDict(extra="forbid")

    path: Path
    base_path: str | None = Field(None, description="prefix of every path; default: from servers[0].url")
    unknown_params: bool = Field(True, description="flag query parameters the spec does not declare")
    strict_properties: bool = Field(
        False, description="treat objects without additionalProperties as closed (mass assignment)"
    )
    responses: bool = Field(False, description="also check JSON responses: undeclared fields, sensitive data")
    block_sensitive: list[str] = Field(
        default_factory=lambda: ["card", "ssn", "private_key", "password_hash"],
        description="sensitive kinds that count as a leak in responses (with responses: true)",
    )
    max_value_length: int = Field(0, ge=0, description="string values longer than this are oversized (0: spec only)")
    observe: list[str] = Field(
        default_factory=list, description="endpoints in observe mode: '/path/*' or 'METHOD /path/{id}'"
    )
    ignore: list[str] = Field(
        default_factory=list, description="paths outside the spec's scope: '/health', '/static/*'"
    )

    @field_validator("block_sensitive")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown sensitive kinds {unknown}; known: {', '.join(KINDS)}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, data: Any) -> Any:
        # `spec: api.yaml` is the short form of `spec: {path: api.yaml}`.
        if isinstance(data, str | Path):
            return {"path": data}
        return data
