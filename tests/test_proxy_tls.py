"""TLS: terminating client TLS (1.2+, HSTS) and verifying an https upstream."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from proxy_helpers import gateway, get, make_config, read_response, upstream_server

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=Bastion Test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key"}


async def _tls_get(port: int, ctx: ssl.SSLContext, path: str = "/echo"):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    try:
        writer.write(get(path))
        resp = await read_response(reader)
        version = writer.get_extra_info("ssl_object").version()
        return resp, version
    finally:
        writer.close()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
async def test_tls_termination_with_hsts(pki):
    async with upstream_server() as up:
        cfg = make_config(up.url, server={"tls": {"cert": str(pki["cert"]), "key": str(pki["key"]), "hsts": True}})
        async with gateway(cfg, only=set()) as gw:
            client = ssl.create_default_context(cafile=str(pki["ca"]))
            resp, version = await _tls_get(gw.port, client)
            assert resp.status == 200
            assert version in ("TLSv1.2", "TLSv1.3")
            assert resp.header("strict-transport-security", ).startswith("max-age=31536000")
            hdrs = {k.lower(): v for k, v in resp.json()["headers"]}
            assert hdrs["x-forwarded-proto"] == "https"
            # TLS 1.2 works; anything older is refused.
            tls12 = ssl.create_default_context(cafile=str(pki["ca"]))
            tls12.maximum_version = ssl.TLSVersion.TLSv1_2
            assert (await _tls_get(gw.port, tls12))[1] == "TLSv1.2"
            old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            old.load_verify_locations(str(pki["ca"]))
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
            old.set_ciphers("ALL:@SECLEVEL=0")
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await _tls_get(gw.port, old)
            # Plain HTTP on the TLS port gets nothing useful, and the gateway keeps serving.
            r, w = await asyncio.open_connection("127.0.0.1", gw.port)
            w.write(get("/hello"))
            data = await asyncio.wait_for(r.read(100), 5)
            assert not data.startswith(b"HTTP/1.1 200")
            w.close()
            assert (await _tls_get(gw.port, client, "/hello"))[0].status == 200


async def test_https_upstream_is_verified(pki):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(pki["cert"]), str(pki["key"]))
    async with upstream_server(server_ctx) as up:
        url = f"https://127.0.0.1:{up.port}"
        async with gateway(make_config(url), only=set()) as gw:  # system store: our test CA is unknown
            from proxy_helpers import request

            assert (await request(gw.port, get("/hello"))).status == 502
        async with gateway(make_config(url, upstream={"ca_file": str(pki["ca"])}), only=set()) as gw:
            resp = await request(gw.port, get("/hello"))
            assert resp.status == 200 and resp.body == b"hello world\n"
        async with gateway(make_config(url, upstream={"verify_tls": False}), only=set()) as gw:
            assert (await request(gw.port, get("/hello"))).status == 200


def test_tls_config_errors(tmp_path):
    from bastion.config import TLSConfig
    from bastion.errors import ConfigError
    from bastion.frontends.proxy.tls import server_context

    assert server_context(TLSConfig()) is None
    with pytest.raises(ConfigError):
        server_context(TLSConfig(cert=tmp_path / "missing.pem"))
    with pytest.raises(ConfigError):
        server_context(TLSConfig(cert=tmp_path / "missing.pem", key=tmp_path / "missing.key"))
