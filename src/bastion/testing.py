"""Helpers for detector and rule authors: build exchanges and run them through a pipeline.

    from bastion.testing import make_exchange, make_pipeline, run_request

    pipeline = make_pipeline(only={"protocol"})
    verdict = await run_request(pipeline, "POST", "/login", headers={"Content-Type": "application/json"},
                                body=b"{not json")
    assert verdict.blocks

`run_request` drives the same phases, in the same order, as the proxy and the ASGI middleware
(connection, request headers, request body) and stops at the first blocking verdict, so what a
test sees is what a client would get. This module's API is stable: other test suites build on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bastion.clock import Clock, ManualClock
from bastion.config import BastionConfig, parse_config
from bastion.engine import Pipeline, build_pipeline
from bastion.exchange import Client, Exchange, Headers, Request, Response
from bastion.verdict import ALLOW, Action, Verdict

HeadersLike = Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None

__all__ = [
    "ManualClock",
    "inspect_request",
    "make_config",
    "make_exchange",
    "make_pipeline",
    "rule_ids",
    "run_exchange",
    "run_request",
    "run_response",
]


def _headers(headers: HeadersLike) -> Headers:
    if headers is None:
        return Headers()
    if isinstance(headers, Headers):
        return Headers(list(headers.items))
    if isinstance(headers, Mapping):
        return Headers([(str(k), str(v)) for k, v in headers.items()])
    return Headers([(str(k), str(v)) for k, v in headers])


def make_config(data: Mapping[str, Any] | BastionConfig | None = None) -> BastionConfig:
    """A validated config from a dict shaped like the YAML file (None: the defaults)."""
    if isinstance(data, BastionConfig):
        return data
    return parse_config(dict(data or {}), "<test config>")


def make_pipeline(
    config: Mapping[str, Any] | BastionConfig | None = None,
    *,
    only: set[str] | None = None,
    clock: Clock | None = None,
    services: dict[str, Any] | None = None,
) -> Pipeline:
    """The pipeline every front-end builds, from a config dict; `only` keeps just those detectors.

    The clock defaults to a fresh ManualClock so time-based detectors are deterministic.
    """
    return build_pipeline(make_config(config), clock=clock or ManualClock(), only=only, services=services)


def make_exchange(
    method: str = "GET",
    target: str = "/",
    *,
    headers: HeadersLike = None,
    body: bytes | str = b"",
    client_ip: str = "127.0.0.1",
    peer_ip: str | None = None,
    http_version: str = "1.1",
    host: str | None = "testserver",
    content_length: bool = True,
    inspect_bytes: int | None = None,
    pipeline: Pipeline | None = None,
    request_id: str | None = None,
    tls: bool = False,
) -> Exchange:
    """One exchange as a front-end would build it.

    - `headers`: a dict, a list of (name, value) pairs (duplicates kept) or a Headers.
    - `host`: added as a Host header when `headers` has none; pass None to leave Host out.
    - `body`: the request body; when non-empty and `content_length` is true, a Content-Length is
      added unless the headers already carry Content-Length or Transfer-Encoding.
    - `inspect_bytes`: keep only this prefix in `request.body` (and set `body_truncated`), as a
      front-end does with a large body; `body_size` always holds the full length.
    - `client_ip` is the resolved client; `peer_ip` the socket peer (defaults to client_ip).
    - `pipeline`: build through `pipeline.new_exchange` (its clock stamps the start time).
    """
    hdrs = _headers(headers)
    raw = body.encode() if isinstance(body, str) else bytes(body)
    if host is not None and "host" not in hdrs:
        hdrs.items.insert(0, ("Host", host))
        hdrs = Headers(hdrs.items)
    if raw and content_length and "content-length" not in hdrs and "transfer-encoding" not in hdrs:
        hdrs.add("Content-Length", str(len(raw)))
    client = Client(peer_ip=peer_ip or client_ip, ip=client_ip, tls=tls)
    if pipeline is not None:
        ex = pipeline.new_exchange(client, method, target, hdrs, http_version=http_version, request_id=request_id)
    else:
        host_value = (hdrs.get("host") or "").strip()
        ex = Exchange(
            id=request_id or "test-request",
            client=client,
            request=Request(method=method, target=target, headers=hdrs, http_version=http_version, host=host_value),
            started=0.0,
            site=host_value.rsplit(":", 1)[0].lower() if not host_value.endswith("]") else host_value.lower(),
            keys={"ip": client_ip},
        )
    ex.request.body_size = len(raw)
    if inspect_bytes is not None and len(raw) > inspect_bytes:
        ex.request.body = raw[:inspect_bytes]
        ex.request.body_truncated = True
    else:
        ex.request.body = raw
    return ex


async def run_exchange(pipeline: Pipeline, ex: Exchange) -> Verdict:
    """Run the request phases over `ex` in order; stop at the first blocking/throttling verdict.

    Returns that verdict, else the recorded one (LOG in observe mode / below threshold with
    findings), else ALLOW. `ex.findings` holds what every detector reported.
    """
    for phase in (pipeline.connection, pipeline.request_headers, pipeline.request_body):
        verdict = await phase(ex)
        if verdict is not None:
            return verdict
    if ex.verdict is not None:
        return ex.verdict
    if ex.findings:
        return pipeline.evaluator.final(ex)
    return ALLOW


async def rule_ids(pipeline: Pipeline, **kwargs: Any) -> set[str]:
    """The rule ids that the request phases find in `make_exchange(**kwargs)` (body not capped)."""
    ex = make_exchange(pipeline=pipeline, **kwargs)
    await run_exchange(pipeline, ex)
    return {f.rule_id for f in ex.findings}


async def run_request(
    pipeline: Pipeline,
    method: str = "GET",
    target: str = "/",
    *,
    exchange: Exchange | None = None,
    **kwargs: Any,
) -> Verdict:
    """Build an exchange with `make_exchange(method, target, **kwargs)` (or take `exchange`) and
    run the request phases; the body prefix is capped at the config's `inspect_body_bytes`."""
    if exchange is None:
        kwargs.setdefault("inspect_bytes", pipeline.config.limits.inspect_body_bytes)
        exchange = make_exchange(method, target, pipeline=pipeline, **kwargs)
    return await run_exchange(pipeline, exchange)


async def inspect_request(
    pipeline: Pipeline, method: str = "GET", target: str = "/", **kwargs: Any
) -> tuple[Exchange, Verdict]:
    """Like `run_request`, but also returns the exchange (its findings, tags, keys)."""
    kwargs.setdefault("inspect_bytes", pipeline.config.limits.inspect_body_bytes)
    ex = make_exchange(method, target, pipeline=pipeline, **kwargs)
    return ex, await run_exchange(pipeline, ex)


async def run_response(
    pipeline: Pipeline,
    ex: Exchange,
    status: int = 200,
    *,
    headers: HeadersLike = None,
    body: bytes | str = b"",
    complete: bool = True,
) -> Verdict:
    """Attach a response to `ex`, run the response phases, then (by default) `complete` and wait
    for the background work of the complete phase. Returns the blocking verdict or the final one."""
    raw = body.encode() if isinstance(body, str) else bytes(body)
    cap = pipeline.config.limits.inspect_response_bytes
    ex.response = Response(status=status, headers=_headers(headers), body=raw[:cap], body_size=len(raw))
    blocked: Verdict | None = None
    for phase in (pipeline.response_headers, pipeline.response_body):
        blocked = await phase(ex)
        if blocked is not None and blocked.action >= Action.CHALLENGE:
            break
    if complete:
        pipeline.complete(ex)
        await pipeline.drain()
    if blocked is not None:
        return blocked
    return pipeline.evaluator.final(ex)


def behaviour_state_bytes(det: Any) -> int:
    """Bytes traced by tracemalloc (started by the caller), with the behaviour detector's bounded
    memo tables emptied first so that they do not blur a measure of its per-client state."""
    import gc
    import tracemalloc

    from bastion import entity

    det.core._memo.clear()
    det.core._header_memo.clear()
    det._routes.clear()
    det.templates.cache.clear()
    entity._fp_cache.clear()
    gc.collect()
    return int(tracemalloc.get_traced_memory()[0])
