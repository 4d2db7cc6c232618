"""The detector contract.

A detector is a plain object with a `name` and any of the phase hooks below. Each hook looks at
the exchange and appends Findings with `ex.add(...)`; it never answers the client itself. A hook
may return an awaitable (a shared-state lookup); most return None and cost no coroutine.

    connection(ex)        client known, nothing read yet (decisions by IP)
    request_headers(ex)   method, target, headers
    request_body(ex)      the inspected body prefix is in ex.request.body
    response_headers(ex)  ex.response.status and headers
    response_body(ex)     the inspected response body prefix
    complete(ex)          after the response was sent: count, learn, score risk. Never blocks.

`startup(ctx)`/`shutdown()` are optional too, for detectors that hold connections or tasks.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol, runtime_checkable

from bastion.exchange import Exchange
from bastion.verdict import Phase

HOOKS: dict[Phase, str] = {
    Phase.CONNECTION: "connection",
    Phase.REQUEST_HEADERS: "request_headers",
    Phase.REQUEST_BODY: "request_body",
    Phase.RESPONSE_HEADERS: "response_headers",
    Phase.RESPONSE_BODY: "response_body",
    Phase.COMPLETE: "complete",
}

HookResult = Awaitable[None] | None


@runtime_checkable
class Detector(Protocol):
    name: str


class HookFn(Protocol):
    def __call__(self, ex: Exchange, /) -> HookResult: ...
