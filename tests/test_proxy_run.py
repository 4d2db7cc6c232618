"""Running the proxy: in-process serve() with a graceful stop, and multi-worker run_proxy()."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

from bastion.frontends.proxy.run import serve
from proxy_helpers import get, make_config, request, upstream_server


async def test_serve_until_stopped(tmp_path):
    async with upstream_server() as up:
        cfg = make_config(up.url, data_dir=str(tmp_path))
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        task = asyncio.create_task(serve(cfg, ready=ready.set_result, stop=stop))
        port = await asyncio.wait_for(ready, 10)
        assert (await request(port, get("/hello"))).status == 200
        stop.set()
        await asyncio.wait_for(task, 10)
        try:
            await request(port, get("/hello"), wait=1)
            raise AssertionError("still serving after stop")
        except (ConnectionError, OSError):
            pass


SCRIPT = """
import sys
from bastion.config import parse_config
from bastion.frontends.proxy.run import run_proxy
cfg = parse_config({"upstream": {"url": sys.argv[1]}, "server": {"listen": "127.0.0.1:0"}, "data_dir": sys.argv[2]})
run_proxy(cfg, workers=2, ready=lambda port: print(port, flush=True))
"""


async def test_two_workers_share_the_port_and_stop_on_sigterm(tmp_path):
    async with upstream_server() as up:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SCRIPT, up.url, str(tmp_path), stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        try:
            assert proc.stdout is not None
            port = int(await asyncio.wait_for(proc.stdout.readline(), 20))
            prefixes = set()
            deadline = time.monotonic() + 15
            while len(prefixes) < 2 and time.monotonic() < deadline:
                try:
                    resp = await request(port, get("/hello"), wait=2)
                except (ConnectionError, OSError):
                    await asyncio.sleep(0.1)  # workers still starting
                    continue
                assert resp.status == 200
                prefixes.add((resp.header("x-request-id") or "")[:8])
            assert len(prefixes) == 2, "both workers should answer"
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
