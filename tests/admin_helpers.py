"""A running gateway with its admin listener (real sockets), as `bastion proxy` assembles it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from bastion.admin.server import AdminHandle, start_admin
from bastion.frontends.proxy.server import ProxyServer
from bastion.runtime import Runtime
from proxy_helpers import make_config, upstream_server

TOKEN = "test-admin-token-0123456789abcdef"


@dataclass
class AdminGateway:
    runtime: Runtime
    proxy: ProxyServer
    admin: AdminHandle
    upstream: Any

    @property
    def proxy_port(self) -> int:
        return self.proxy.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.admin.port}"

    def client(self, token: str | None = TOKEN) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)

    async def flush_events(self) -> None:
        import asyncio

        await self.runtime.pipeline.drain()
        writer = self.runtime.events
        if writer is not None:
            await asyncio.to_thread(writer.flush)


@contextlib.asynccontextmanager
async def admin_gateway(tmp_path: Any, admin: dict[str, Any] | None = None, **sections: Any
                        ) -> AsyncIterator[AdminGateway]:
    async with upstream_server() as up:
        adm = {"listen": "127.0.0.1:0", "token": TOKEN}
        adm.update(admin or {})
        cfg = make_config(up.url, data_dir=str(tmp_path), admin=adm, **sections)
        runtime = Runtime.create(cfg)
        await runtime.start()
        proxy = ProxyServer(runtime)
        await proxy.start()
        handle = await start_admin(runtime)
        try:
            yield AdminGateway(runtime, proxy, handle, up)
        finally:
            await proxy.close(grace=1.0)
            await handle.close()
            await runtime.stop()
