"""The gateway's req/s with rules on Redis vs no rules, in one run (used by bench/rules.py).

Starts a small upstream (its own process), then `bastion proxy` twice (no rules; N rules on Redis),
drives each with wrk (keep-alive, paths spread over the rules' endpoint groups), alternating A and
B three times, and prints the medians and their ratio. Needs wrk: `apt-get install -y wrk`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from procs import stop_all

UPSTREAM = r'''
import asyncio, sys
try:
    import uvloop; uvloop.install()
except ImportError:
    pass
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
class P(asyncio.Protocol):
    def connection_made(self, t): self.t = t; self.buf = b""
    def data_received(self, d):
        self.buf += d
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4:]
            self.t.write(RESP * n)
async def main():
    s = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    await s.serve_forever()
asyncio.run(main())
'''

WRK_SCRIPT = '''
local paths = {}
for g = 0, 9 do paths[#paths + 1] = "/api/g" .. g .. "/items/" .. (g * 7) end
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
'''


CONNECTIONS = 32  # wrk keep-alive connections


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(args: list[str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a process; its stderr goes to `log` (a file: a pipe nobody reads would stall it)."""
    err = log.open("wb") if log is not None else None
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=dict(os.environ))


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = log.read_text(errors="replace") if log is not None and log.exists() else ""
            raise RuntimeError(f"process exited: {err[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


def wrk(port: int, seconds: float, script: str) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, int(seconds))}s", "-s", script, f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        print(f"  warning: {non2xx.group(1)} non-2xx responses", flush=True)
    return float(m.group(1)) if m else 0.0


async def gateway_ratio(redis_url: str, seconds: float, rules: list[dict], *, with_memory: bool = True) -> None:
    """req/s of the gateway with no rules, the rules on memory:// and the rules on `redis_url`."""
    if shutil.which("wrk") is None:
        print("gateway: skipped (wrk not installed: apt-get install -y wrk)")
        return
    from bastion.engine.registry import DETECTORS

    tmp = Path(tempfile.mkdtemp(prefix="bench-h6-"))
    prefix = f"bench-h6:{uuid.uuid4().hex[:6]}:"
    only_rules = {name: {"enabled": name == "ratelimit"} for name, _ in DETECTORS}
    variants = {"none": {"detectors": only_rules}}
    if with_memory:
        variants["memory"] = {"detectors": only_rules, "rules": rules, "state": {"url": "memory://"}}
    variants["redis"] = {"detectors": only_rules, "rules": rules, "state": {"url": redis_url, "prefix": prefix}}
    for name, conf in variants.items():
        (tmp / f"{name}.yaml").write_text(yaml.safe_dump(conf))
    (tmp / "wrk.lua").write_text(WRK_SCRIPT)
    up_port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        up = spawn([sys.executable, "-c", UPSTREAM, str(up_port)])
        procs.append(up)
        wait_port(up_port, up)
        ports = {}
        for name in variants:
            port = free_port()
            p = spawn(
                [sys.executable, "-c", "from bastion.cli import main; main()", "proxy", "--upstream",
                 f"http://127.0.0.1:{up_port}", "--listen", f"127.0.0.1:{port}", "--config", str(tmp / f"{name}.yaml"),
                 "--data-dir", str(tmp / name)],
                tmp / f"{name}.log",
            )
            procs.append(p)
            wait_port(port, p, log=tmp / f"{name}.log")
            ports[name] = port
        results: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(3):  # alternate, so that a noisy neighbour hurts every variant alike
            for name in variants:
                results[name].append(wrk(ports[name], seconds, str(tmp / "wrk.lua")))
        med = {name: statistics.median(v) for name, v in results.items()}
        base = med["none"]
        parts = [f"no rules {base:.0f}"] + [
            f"{len(rules)} rules on {name} {med[name]:.0f} (ratio {med[name] / base:.2f})" for name in variants
            if name != "none"
        ]
        print(f"gateway req/s (wrk -t1 -c{CONNECTIONS}, alternated, median of 3): " + ", ".join(parts))
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"gateway: could not run: {exc}")
    finally:
        stop_all(procs)
        if redis_url.startswith("redis"):
            from state_cleanup import wipe_prefix

            await wipe_prefix(redis_url, prefix)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from rules import rules as make_rules

    asyncio.run(gateway_ratio("redis://127.0.0.1:6379/13", 3.0, make_rules(20, "scoped")))
