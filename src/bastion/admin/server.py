"""The admin listener: REST API, Prometheus metrics and the console, inside a gateway worker.

`start_admin(runtime)` is called by the proxy worker after its runtime started. It always installs
the per-endpoint metrics sink; it opens the admin listener when `admin.enabled` (with `--workers
N`, only worker 0 has it enabled: `worker_config`, used by run.py); and with several workers every
worker publishes its metrics snapshot so that the admin's /metrics adds them all up.

Nothing here is on the request path: the listener is its own socket, its handlers run between the
proxy's callbacks, slow reads go to threads, and any failure is contained to one admin request
(or, at start-up, to the admin: a port already in use is logged and the gateway serves anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from importlib import resources
from typing import Any

import orjson

from bastion.admin import metrics as m
from bastion.admin.api import AdminApi, BadInput
from bastion.admin.auth import (
    COOKIE,
    CSRF_HEADER,
    Authenticator,
    clear_cookie_header,
    cookie_header,
    resolve_token,
)
from bastion.admin.http import HttpServer, Request, Response, json_response, problem
from bastion.admin.openapi import openapi_spec

log = logging.getLogger("bastion.admin")

PUBLISH_INTERVAL = 2.0
CONSOLE_FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
                 "app.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}
CONSOLE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _console_asset(name: str) -> bytes:
    return resources.files("bastion.admin").joinpath("console", name).read_bytes()


class AdminApp:
    """Routing and authentication over AdminApi."""

    def __init__(self, runtime: Any, endpoints: m.EndpointMetrics | None, token: str, started: float) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.admin = runtime.config.admin
        self.endpoints = endpoints
        self.started = started
        self.auth = Authenticator(token, self.admin)
        self.api = AdminApi(runtime, endpoints, started)
        self.tls = bool(self.admin.tls)
        self._assets: dict[str, bytes] = {}

    # --- metrics ----------------------------------------------------------------------------------

    async def metrics(self) -> Response:
        own = m.snapshot(self.runtime, self.endpoints, self.started)
        snaps = [own]
        if self.config.server.workers > 1:
            snaps += await asyncio.to_thread(m.read_peer_snapshots, m.run_dir(self.config), os.getpid())
        return Response(200, m.render(m.merge(snaps)).encode(), "text/plain; version=0.0.4; charset=utf-8")

    # --- dispatch ---------------------------------------------------------------------------------

    async def __call__(self, req: Request) -> Response:
        path = req.path
        method = req.method
        if path == "/healthz":
            return json_response({"status": "ok"}) if method in ("GET", "HEAD") else _not_allowed("GET")
        if path in ("/", "/console"):
            return Response(302, b"", "text/plain", [("Location", "/console/")])
        if path.startswith("/console/"):
            return self._console(path.removeprefix("/console/") or "index.html", method)
        if path == "/api/v1/login":
            if method in ("GET", "HEAD"):  # what the login form must ask for (no secret in it)
                return json_response({"totp": self.auth.totp is not None})
            return await self._login(req) if method == "POST" else _not_allowed("GET, POST")
        if path == "/metrics" and self.admin.public_metrics and method in ("GET", "HEAD"):
            return await self.metrics()
        denied = self._authenticate(req)
        if denied is not None:
            return denied
        try:
            return await self._route(req, path, method)
        except BadInput as exc:
            return problem(400, str(exc))

    async def _route(self, req: Request, path: str, method: str) -> Response:
        get = method in ("GET", "HEAD")
        api = self.api
        if path == "/metrics":
            return await self.metrics() if get else _not_allowed("GET")
        if path == "/api/v1/openapi.json":
            return json_response(openapi_spec()) if get else _not_allowed("GET")
        if path == "/api/v1/session":
            return json_response({"authenticated": True, "totp": self.auth.totp is not None,
                                  "csrf": req.csrf or None}) if get else _not_allowed("GET")
        if path == "/api/v1/logout":
            if method != "POST":
                return _not_allowed("POST")
            self.auth.logout(req.cookie(COOKIE))
            return Response(204, headers=[("Set-Cookie", clear_cookie_header(self.tls))])
        if path == "/api/v1/events":
            return await api.events(req) if get else _not_allowed("GET")
        if path == "/api/v1/stats":
            return await api.stats(req) if get else _not_allowed("GET")
        if path == "/api/v1/catalog":
            return await api.catalog(req) if get else _not_allowed("GET")
        if path == "/api/v1/decisions":
            if get:
                return await api.decisions(req)
            return await api.add_decision(req) if method == "POST" else _not_allowed("GET, POST")
        if path.startswith("/api/v1/decisions/"):
            did = path.removeprefix("/api/v1/decisions/")
            if not did or "/" in did:
                return problem(404, "no such resource")
            return await api.delete_decision(req, did) if method == "DELETE" else _not_allowed("DELETE")
        if path == "/api/v1/entities":
            return await api.entities(req) if get else _not_allowed("GET")
        if path.startswith("/api/v1/entities/"):
            eid = path.removeprefix("/api/v1/entities/")
            if not eid:
                return problem(404, "no such resource")
            return await api.entity(req, eid) if get else _not_allowed("GET")
        return problem(404, "no such resource")

    # --- authentication ---------------------------------------------------------------------------

    def _authenticate(self, req: Request) -> Response | None:
        wait = self.auth.locked_out(req.client_ip)
        if wait:
            return problem(429, "too many failed attempts from this address", headers=[("Retry-After", str(wait))])
        authz = req.headers.get("authorization")
        if authz is not None:
            if self.auth.bearer_ok(authz):
                return None
            self.auth.failed(req.client_ip)
            return _unauthorized("the bearer token is not valid")
        sess = self.auth.session(req.cookie(COOKIE))
        if sess is None:
            return _unauthorized("authentication required: send `Authorization: Bearer <admin token>` or log in")
        if req.method not in ("GET", "HEAD"):
            # Cookie-authenticated writes must prove they come from the console (CSRF).
            presented = req.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(presented.encode(), sess.csrf.encode()):
                return problem(403, f"missing or wrong {CSRF_HEADER} header")
        req.csrf = sess.csrf
        return None

    async def _login(self, req: Request) -> Response:
        wait = self.auth.locked_out(req.client_ip)
        if wait:
            return problem(429, "too many failed attempts from this address", headers=[("Retry-After", str(wait))])
        try:
            body = orjson.loads(req.body or b"{}")
        except orjson.JSONDecodeError:
            return problem(400, "send {\"token\": ..., \"code\": ...} as JSON")
        if not isinstance(body, dict) or not isinstance(body.get("token", ""), str) \
                or not isinstance(body.get("code", ""), str):
            return problem(400, "send {\"token\": ..., \"code\": ...} as JSON")
        got = self.auth.login(body.get("token", ""), body.get("code", ""))
        if got is None:
            self.auth.failed(req.client_ip)
            detail = "wrong token or code" if self.auth.totp is not None else "wrong token"
            return problem(401, detail)
        sid, sess = got
        return json_response({"authenticated": True, "csrf": sess.csrf, "expires": sess.expires},
                             headers=[("Set-Cookie", cookie_header(sid, int(self.auth.ttl), self.tls))])

    # --- console ----------------------------------------------------------------------------------

    def _console(self, name: str, method: str) -> Response:
        if method not in ("GET", "HEAD"):
            return _not_allowed("GET")
        ctype = CONSOLE_FILES.get(name)
        if ctype is None:
            return problem(404, "no such console file")
        body = self._assets.get(name)
        if body is None:
            body = self._assets[name] = _console_asset(name)
        # The console's shell holds no data: every piece of data comes from the authenticated API.
        return Response(200, body, ctype, [("Content-Security-Policy", CONSOLE_CSP)])


def _unauthorized(detail: str) -> Response:
    return problem(401, detail, headers=[("WWW-Authenticate", 'Bearer realm="bastion-admin"')])


def _not_allowed(allow: str) -> Response:
    return problem(405, f"use {allow}", headers=[("Allow", allow)])


# --- metrics across workers ----------------------------------------------------------------------


class _Publisher:
    """Writes this worker's snapshot every PUBLISH_INTERVAL seconds (atomically, off the loop)."""

    def __init__(self, runtime: Any, endpoints: m.EndpointMetrics, started: float) -> None:
        self.runtime = runtime
        self.endpoints = endpoints
        self.started = started
        self.path = m.run_dir(runtime.config) / f"metrics-{os.getpid()}.json"
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    def _write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)

    async def _run(self) -> None:
        while True:
            try:
                data = orjson.dumps(m.snapshot(self.runtime, self.endpoints, self.started))
                await asyncio.to_thread(self._write, data)
            except Exception as exc:
                log.debug("cannot publish metrics: %s", exc)
            await asyncio.sleep(PUBLISH_INTERVAL)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        with contextlib.suppress(OSError):
            self.path.unlink()


# --- the worker hook -----------------------------------------------------------------------------


class AdminHandle:
    """What start_admin started; `close()` stops it (listener, publisher)."""

    def __init__(self, endpoints: m.EndpointMetrics, server: HttpServer | None, app: AdminApp | None,
                 publisher: _Publisher | None) -> None:
        self.endpoints = endpoints
        self.server = server
        self.app = app
        self.publisher = publisher

    @property
    def port(self) -> int:
        return self.server.port if self.server is not None else 0

    async def close(self) -> None:
        if self.publisher is not None:
            await self.publisher.stop()
        if self.server is not None:
            await self.server.close()
        if self.app is not None:
            try:
                await asyncio.to_thread(self.app.api.close)
            except Exception as exc:
                log.debug("closing the admin's event store failed: %s", exc)


async def start_admin(runtime: Any, sock: Any = None) -> AdminHandle:
    """Install metrics and (when enabled) serve the admin API. Never raises: a failure is logged and
    the gateway runs without the admin listener."""
    started = time.time()
    endpoints = m.EndpointMetrics()
    runtime.pipeline.sinks.append(endpoints)
    config = runtime.config
    publisher = None
    if config.server.workers > 1:
        publisher = _Publisher(runtime, endpoints, started)
        publisher.start()
    admin = config.admin
    if not admin.enabled:
        return AdminHandle(endpoints, None, None, publisher)
    server = None
    try:
        token, source = resolve_token(admin, config.data_dir)
        app = AdminApp(runtime, endpoints, token, started)
        ssl_ctx = None
        if admin.tls:
            from bastion.frontends.proxy.tls import server_context

            ssl_ctx = server_context(config.server.tls)
            if ssl_ctx is None:
                raise ValueError("admin.tls needs server.tls.cert and server.tls.key")
        if sock is None:
            from bastion.frontends.proxy.run import bind_socket

            sock = bind_socket(admin.listen, reuse_port=False, backlog=64)
        server = HttpServer(app, ssl_context=ssl_ctx)
        await server.start(sock)
    except Exception as exc:
        log.error("admin API not started on %s: %s (the gateway serves without it)", admin.listen,
                  getattr(exc, "strerror", None) or exc)
        if server is not None:
            await server.close()
        return AdminHandle(endpoints, None, None, publisher)
    host = admin.listen.rpartition(":")[0] or "0.0.0.0"
    scheme = "https" if ssl_ctx is not None else "http"
    log.info("admin API and console on %s://%s:%d/console/ (token from %s)", scheme, host, server.port, source)
    return AdminHandle(endpoints, server, app, publisher)


def worker_config(config: Any, index: int, workers: int) -> Any:
    """Worker `index`'s config under `run_proxy(config, workers)`: `server.workers` says how many
    there are (so each one publishes its metrics), and only worker 0 keeps the admin listener."""
    update: dict[str, Any] = {"server": config.server.model_copy(update={"workers": workers})}
    if index != 0:
        update["admin"] = config.admin.model_copy(update={"enabled": False})
    return config.model_copy(update=update)
