"""Running the proxy: one process, or N worker processes sharing one port through SO_REUSEPORT.

Each worker is a whole gateway (its own Runtime, pipeline, upstream pool and event loop); the
kernel spreads new connections over the workers' listening sockets. SIGINT/SIGTERM stop
accepting, let in-flight requests finish, then stop the runtime (flushing events).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

from bastion.config import BastionConfig, parse_hostport
from bastion.errors import ConfigError

log = logging.getLogger("bastion.proxy")

GRACE_SECONDS = 10.0
_EXIT_CONFIG = 78  # EX_CONFIG (sysexits.h): a worker refused the configuration


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def bind_socket(listen: str, reuse_port: bool, backlog: int = 2048) -> socket.socket:
    """A TCP socket bound to HOST:PORT (IPv6 hosts in brackets), non-blocking, listening unless
    `backlog` is 0."""
    host, port = parse_hostport(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if backlog:
        sock.listen(backlog)
    sock.setblocking(False)
    return sock


async def serve(
    config: BastionConfig,
    sock: socket.socket | None = None,
    ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run one gateway in the current event loop until `stop` is set or SIGINT/SIGTERM arrives."""
    from bastion.frontends.proxy.server import ProxyServer
    from bastion.runtime import Runtime

    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    runtime = Runtime.create(config)
    await runtime.start()
    server = ProxyServer(runtime)
    admin = None
    try:
        await server.start(sock)
        from bastion.admin.server import start_admin  # metrics sink + admin API/console (never raises)

        admin = await start_admin(runtime)
        if ready is not None:
            ready(server.port)
        await stop.wait()
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
        await server.close(GRACE_SECONDS)
        if admin is not None:
            await admin.close()
        await runtime.stop()


def _run_one(config: BastionConfig, sock: socket.socket | None, ready: Callable[[int], None] | None) -> None:
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(config, sock, ready))


def run_proxy(config: BastionConfig, workers: int = 1, ready: Callable[[int], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM. `workers` > 1 forks that many processes on one port.

    `ready(port)` is called once listening (in the single process, or in the parent once every
    worker was started).
    """
    if workers <= 1:
        _run_one(config, None, ready)
        return
    # Bind once in the parent to fail early (address in use) and to learn the port when 0 was asked;
    # each worker then opens its own SO_REUSEPORT socket on that port.
    probe = bind_socket(config.server.listen, reuse_port=True, backlog=0)
    host = config.server.listen.rpartition(":")[0]
    port = probe.getsockname()[1]
    listen = f"{host}:{port}"
    children: dict[int, int] = {}  # pid -> worker index
    stopping = False
    refused = False  # a worker refused the configuration

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:  # worker
            code = 0
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                probe.close()
                from bastion.admin.server import worker_config  # only worker 0 serves the admin API

                _run_one(worker_config(config, index, workers), bind_socket(listen, reuse_port=True), None)
            except ConfigError as exc:  # every worker would refuse it the same way: no restart loop
                log.error("worker %d: %s", index, exc)
                code = _EXIT_CONFIG
            except BaseException:
                log.exception("worker %d failed", index)
                code = 1
            finally:
                os._exit(code)
        children[pid] = index

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        for i in range(workers):
            spawn(i)
        # The probe stays bound (holding the port) but never listens: connections go to the workers.
        if ready is not None:
            ready(port)
        restarts: list[float] = []
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            index = children.pop(pid, None)
            if index is None or stopping:
                continue
            if os.waitstatus_to_exitcode(status) == _EXIT_CONFIG:
                refused = True
                on_signal(signal.SIGTERM, None)
                continue
            now = time.monotonic()
            restarts = [t for t in restarts if now - t < 60] + [now]
            if len(restarts) > 5 * workers:
                log.error("workers keep dying; stopping")
                on_signal(signal.SIGTERM, None)
                continue
            log.warning("worker %d exited (status %d); restarting", index, status)
            spawn(index)
    finally:
        probe.close()
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    sys.stdout.flush()
    if refused:
        raise ConfigError(["the workers refused the configuration (the reason is logged above)"])
