"""Serve the demo shop with uvicorn on a background thread (its own event loop).

The demo upstream is not the fast path; a thread keeps it off the gateway's loop and out of the
way of Ctrl-C handling (uvicorn only installs signal handlers on the main thread).
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from bastion.demo.app import ShopApp


class DemoUpstream:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, app: ShopApp | None = None) -> None:
        self.host = host
        self.requested_port = port
        self.port = 0
        self.app = app or ShopApp()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Bind (port 0 picks a free one), start serving, and return once it accepts requests."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", loop="asyncio", server_header=False
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="bastion-demo-upstream", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the demo upstream did not start")
            time.sleep(0.01)

    def stop(self, timeout: float = 5.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = self._thread = None
