"""The `graphql:` config section (kept apart from the detector so config loading stays light)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


GraphQLCheck = Literal["introspection", "batch", "aliases", "depth", "directives", "fragments", "get_mutation", "*"]


class GraphQLExclusion(_Section):
    """One endpoint where a check does not apply: `{path: "/internal/graphql", check: introspection}`."""

    path: str = Field(..., min_length=1, description="glob on the request path")
    method: str | None = None
    check: GraphQLCheck = "*"


class GraphQLConfig(_Section):
    """`graphql:`: limits for GraphQL requests (JSON with a `query`, `application/graphql`, `?query=`).

    The defaults are what a production GraphQL API wants (Apollo Server refuses introspection in
    production by default; GraphQL Armor limits aliases, depth and directives)."""

    introspection: bool = Field(
        False, description="allow introspection (`__schema`, `__type`); a schema explorer needs it"
    )
    max_batch: int = Field(10, ge=1, description="operations in one batched (JSON array) request")
    max_aliases: int = Field(
        20, ge=1, description="times one field may be selected (under aliases) in one selection set"
    )
    max_credential_aliases: int = Field(
        3, ge=1, description="the same for a field that checks a secret (login, OTP, password, code) in one request"
    )
    max_depth: int = Field(15, ge=1, description="nesting of fields, fragments expanded")
    max_directives: int = Field(50, ge=1, description="directives in one document")
    exclusions: list[GraphQLExclusion] = Field(default_factory=list)
