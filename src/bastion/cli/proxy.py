"""`bastion proxy`: run the gateway in front of an upstream API."""

from __future__ import annotations

import enum
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli.common import check_upstream, fail, fail_problems, load_or_exit
from bastion.config import BastionConfig
from bastion.errors import ConfigError


class Mode(enum.StrEnum):
    enforce = "enforce"
    observe = "observe"


def proxy_overrides(
    *,
    upstream: str | None = None,
    listen: str | None = None,
    mode: str | None = None,
    data_dir: Path | None = None,
    workers: int | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    state: str | None = None,
    admin: str | None = None,
    no_admin: bool = False,
) -> dict[str, Any]:
    """The config tree that the command-line flags stand for (flags win over the file)."""
    o: dict[str, Any] = {}
    if upstream is not None:
        o.setdefault("upstream", {})["url"] = upstream
    if listen is not None:
        o.setdefault("server", {})["listen"] = listen
    if workers is not None:
        o.setdefault("server", {})["workers"] = workers
    if tls_cert is not None or tls_key is not None:
        if tls_cert is None or tls_key is None:
            fail("--tls-cert and --tls-key go together")
        for flag, p in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
            if not p.is_file():
                fail(f"{flag}: no such file: {p}")
        o.setdefault("server", {})["tls"] = {"cert": tls_cert, "key": tls_key}
    if mode is not None:
        o["mode"] = mode
    if data_dir is not None:
        o["data_dir"] = data_dir
    if state is not None:
        if "state" not in BastionConfig.model_fields:
            fail("--state: this build has no shared-state backend configuration")
        o["state"] = {"url": state}
    if admin is not None:
        o.setdefault("admin", {})["listen"] = admin
        o["admin"]["enabled"] = True
    if no_admin:
        o.setdefault("admin", {})["enabled"] = False
    return o


def proxy(
    upstream: Annotated[
        str | None, typer.Option("--upstream", "-u", help="The API to protect, e.g. http://127.0.0.1:9000.")
    ] = None,
    listen: Annotated[
        str | None, typer.Option("--listen", "-l", help="HOST:PORT to listen on [default: 127.0.0.1:8080].")
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML config file (flags override it).")
    ] = None,
    mode: Annotated[
        Mode | None, typer.Option("--mode", help="enforce blocks; observe only records what it would block.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="Where embedded state lives (events.db) [default: .bastion].")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-w", min=1, max=256, help="Processes sharing the port.")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="PEM certificate chain: serve HTTPS.")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key for --tls-cert.")] = None,
    state: Annotated[
        str | None, typer.Option("--state", help="Shared state URL (memory:// or redis://HOST:PORT/DB).")
    ] = None,
    admin: Annotated[
        str | None, typer.Option("--admin", help="HOST:PORT of the admin API and console [default: 127.0.0.1:9090].")
    ] = None,
    no_admin: Annotated[bool, typer.Option("--no-admin", help="No admin API, metrics or console.")] = False,
) -> None:
    """Run the gateway in front of an API: inspect every request, block attacks, record events."""
    overrides = proxy_overrides(
        upstream=upstream, listen=listen, mode=mode.value if mode else None, data_dir=data_dir,
        workers=workers, tls_cert=tls_cert, tls_key=tls_key, state=state,
        admin=admin, no_admin=no_admin,
    )
    config = load_or_exit(config_file, overrides)
    check_upstream(config.upstream.url)

    from bastion.logs import configure_logging, unconfigure_logging

    configure_logging(config)
    try:
        from bastion.frontends.proxy.run import run_proxy
    except ImportError as exc:  # pragma: no cover - only while the proxy is being built
        fail(f"the proxy front-end is not available: {exc}")
    scheme = "https" if config.server.tls.cert else "http"
    logging.getLogger("bastion.cli").info(
        "protecting %s on %s://%s (%s mode, %d worker(s), events in %s)",
        config.upstream.url, scheme, config.server.listen, config.mode, config.server.workers,
        config.store.url.split("@")[-1] if config.store.url else Path(config.data_dir) / "events.db",
    )
    try:
        run_proxy(config, config.server.workers)
    except KeyboardInterrupt:
        pass
    except ConfigError as exc:  # found while building the pipeline: a rule that does not compile
        fail_problems(exc.problems)
    except OSError as exc:
        fail(f"cannot serve on {config.server.listen}: {exc.strerror or exc}")
    finally:
        unconfigure_logging()
