"""TLS contexts: terminating client TLS, and verifying an https upstream.

Server side follows Mozilla's "intermediate" profile: TLS 1.2 and 1.3 only, forward-secret AEAD
ciphers for 1.2 (1.3 suites are fixed by OpenSSL and all modern), no compression, no
renegotiation. The upstream side verifies the certificate chain and the host name by default;
turning verification off is an explicit config choice.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from bastion.config import TLSConfig, UpstreamConfig
from bastion.errors import ConfigError
from bastion.frontends.proxy import ja4

# Mozilla intermediate (TLS 1.2 part): ECDHE/DHE key exchange, AES-GCM and ChaCha20-Poly1305 only.
TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
    ]
)


def server_context(tls: TLSConfig) -> ssl.SSLContext | None:
    """The listener's context, or None when no certificate is configured (plain HTTP)."""
    if tls.cert is None and tls.key is None:
        return None
    if tls.cert is None or tls.key is None:
        raise ConfigError(["server.tls: cert and key must be given together"])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    ctx.set_alpn_protocols(["http/1.1"])
    try:
        ctx.load_cert_chain(str(tls.cert), str(tls.key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"server.tls: cannot load {tls.cert} / {tls.key}: {exc}"]) from None
    if tls.ja4:
        ja4.install(ctx)  # every ClientHello read is fingerprinted (see ja4.py)
    return ctx


def client_context(upstream: UpstreamConfig) -> ssl.SSLContext:
    """Context for an https upstream: verified against the system store or `ca_file`."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if upstream.ca_file is not None:
        path = Path(upstream.ca_file)
        try:
            ctx.load_verify_locations(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError([f"upstream.ca_file: cannot load {path}: {exc}"]) from None
    if not upstream.verify_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def hsts_header(tls: TLSConfig) -> bytes:
    """The Strict-Transport-Security line to add to every response, or b"" when off."""
    if not tls.hsts:
        return b""
    return b"Strict-Transport-Security: max-age=%d; includeSubDomains\r\n" % tls.hsts_max_age
