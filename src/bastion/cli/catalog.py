"""`bastion catalog list|show|export|diff`: the API catalog the gateway learned from traffic.

Reads the catalog file in the gateway's data directory (`--data-dir`, or the config's), and works
while the gateway runs (the gateway writes it every `catalog.flush_interval` seconds).
"""

from __future__ import annotations

import enum
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
import yaml
from rich.console import Console
from rich.table import Table

from bastion.catalog.diff import diff as spec_diff
from bastion.catalog.endpoint import Endpoint
from bastion.catalog.openapi import export_openapi
from bastion.catalog.paths import split_path
from bastion.catalog.spec import load_spec
from bastion.catalog.store import read_catalog
from bastion.cli.common import fail, fail_problems, load_or_exit
from bastion.errors import ConfigError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="The API catalog learned from traffic.")

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="The gateway's data directory [default: .bastion].")]
ConfigFile = Annotated[Path | None, typer.Option("--config", "-c", help="Read the catalog this config names.")]
Host = Annotated[str | None, typer.Option("--host", help="Only this host (site).")]
AsJson = Annotated[bool, typer.Option("--json", help="JSON instead of a table.")]


class Format(enum.StrEnum):
    openapi = "openapi"
    json = "json"


def _load(data_dir: Path | None, config_file: Path | None, host: str | None = None) -> list[Endpoint]:
    config = load_or_exit(config_file, {"data_dir": data_dir} if data_dir is not None else None)
    path = config.catalog.path or (config.data_dir / "catalog.db")
    try:
        eps = read_catalog(path)
    except FileNotFoundError:
        fail(f"no catalog yet: {path} does not exist (is --data-dir right? has the gateway seen traffic?)")
    except Exception as exc:
        fail(f"cannot read the catalog {path}: {type(exc).__name__}: {exc}")
    return [e for e in eps if host is None or e.host == host]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}" if seconds else "-"


def _summary(template: str, eps: list[Endpoint]) -> dict[str, Any]:
    calls = sum(e.calls for e in eps)
    errors = sum(e.errors for e in eps)
    busiest = max(eps, key=lambda e: e.calls)
    auth: dict[str, int] = {}
    for e in eps:
        for k, n in e.auth.items():
            auth[k] = auth.get(k, 0) + n
    return {
        "host": eps[0].host, "endpoint": template, "methods": sorted(e.method for e in eps), "calls": calls,
        "error_rate": round(errors / calls, 4) if calls else 0.0,
        "p95_ms": round(busiest.latency.quantile(0.95) * 1000, 2),
        "auth": sorted(auth, key=lambda k: -auth[k]),
        "sensitive": sorted({k for e in eps for k in e.sensitive_kinds()}),
        "last_seen": max(e.last_seen for e in eps),
    }


@app.command("list")
def list_endpoints(data_dir: DataDir = None, config_file: ConfigFile = None, host: Host = None,
                   as_json: AsJson = False) -> None:
    """One line per endpoint: methods, calls, error rate, p95 latency, auth, sensitive data."""
    eps = _load(data_dir, config_file, host)
    groups: dict[tuple[str, str], list[Endpoint]] = {}
    for e in eps:
        groups.setdefault((e.host, e.template), []).append(e)
    rows = [_summary(t, g) for (_, t), g in sorted(groups.items())]
    if as_json:
        out = typer.get_binary_stream("stdout")
        for r in rows:
            out.write(orjson.dumps(r) + b"\n")
        out.flush()
        return
    table = Table(show_lines=False)
    for col in ("host", "endpoint", "methods", "calls", "errors", "p95 ms", "auth", "sensitive"):
        table.add_column(col, justify="right" if col in ("calls", "errors", "p95 ms") else "left")
    for r in rows:
        table.add_row(r["host"], r["endpoint"], ",".join(r["methods"]), str(r["calls"]),
                      f"{r['error_rate'] * 100:.1f}%", f"{r['p95_ms']:.1f}", ",".join(r["auth"]),
                      ",".join(r["sensitive"]) or "-")
    Console(width=200).print(table)
    typer.echo(f"{len(rows)} endpoints, {len(eps)} operations")


def _pick(eps: list[Endpoint], endpoint: str) -> list[Endpoint]:
    method, _, path = endpoint.partition(" ") if " " in endpoint.strip() else ("", "", endpoint)
    method = method.upper()
    path = path.strip()
    hits = [e for e in eps if e.template == path and (not method or e.method == method)]
    if hits:
        return hits
    segs = split_path(path) or []

    def fits(template: str) -> bool:
        t = split_path(template) or []
        return len(t) == len(segs) and all(a == b or a.startswith("{") for a, b in zip(t, segs, strict=True))

    return [e for e in eps if fits(e.template) and (not method or e.method == method)]


def _shape_line(name: str, s: Any, sampled: int) -> str:
    sch = s.json_schema(text=True)
    t = sch.get("type")
    fmt = f" ({sch['format']})" if "format" in sch else ""
    enum_ = f" enum {sch['enum']}" if "enum" in sch else ""
    ratio = f"{min(1.0, s.n / sampled) * 100:.0f}%" if sampled else "-"
    return f"    {name}: {t}{fmt}{enum_}  present {ratio}"


@app.command("show")
def show(endpoint: Annotated[str, typer.Argument(help="'/users/{id}', 'GET /users/{id}' or a path '/users/42'.")],
         data_dir: DataDir = None, config_file: ConfigFile = None, host: Host = None, as_json: AsJson = False) -> None:
    """Everything the catalog knows about one endpoint."""
    eps = _pick(_load(data_dir, config_file, host), endpoint)
    if not eps:
        fail(f"no endpoint matches {endpoint!r} (see `bastion catalog list`)")
    if as_json:
        typer.echo(orjson.dumps([e.to_dict() for e in eps], option=orjson.OPT_INDENT_2).decode())
        return
    for e in eps:
        typer.echo(f"{e.method} {e.template}  (host {e.host or '-'})")
        span = max(e.last_seen - e.first_seen, 1.0)
        typer.echo(f"  calls {e.calls}  errors {e.errors} ({e.error_ratio() * 100:.1f}%)  "
                   f"rate {e.calls / span * 60:.2f}/min on average, {e.rate.rate(e.last_seen) * 60:.2f}/min "
                   f"recently (errors {e.error_rate.rate(e.last_seen) * 60:.2f}/min)")
        typer.echo(f"  first seen {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(e.first_seen))} UTC, "
                   f"last seen {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(e.last_seen))} UTC")
        q = e.latency.quantile
        typer.echo(f"  latency ms p50 {_ms(q(0.5))} p95 {_ms(q(0.95))} p99 {_ms(q(0.99))} max {_ms(e.latency.max)}")
        typer.echo(f"  status {dict(sorted(e.status.items()))}")
        typer.echo(f"  auth {dict(sorted(e.auth.items()))}")
        if e.req_types:
            typer.echo(f"  request types {e.req_types}")
        if e.resp_types:
            typer.echo(f"  response types {e.resp_types}")
        for title, shapes in (("path", e.path), ("query", e.query), ("headers", e.headers), ("cookies", e.cookies)):
            if shapes:
                typer.echo(f"  {title} parameters:")
                for name, s in sorted(shapes.items()):
                    typer.echo(_shape_line(name, s, e.sampled))
        for ct, s in sorted(e.body.items()):
            typer.echo(f"  body {ct}: {orjson.dumps(s.json_schema()).decode()[:400]}")
        for status, s in sorted(e.responses.items()):
            typer.echo(f"  response {status}: {orjson.dumps(s.json_schema(strict=False)).decode()[:400]}")
        if e.sensitive:
            typer.echo("  sensitive data in responses:")
            for f, kinds in sorted(e.sensitive.items()):
                typer.echo(f"    {f}: " + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())))
        typer.echo(f"  entities ~{e.distinct_entities.estimate()} distinct; top "
                   + ", ".join(f"{k} ({n})" for k, n in e.entities.top(5)))
        typer.echo("")


@app.command("export")
def export(fmt: Annotated[Format, typer.Option("--format", "-f", help="openapi (YAML) or json (OpenAPI as JSON).")]
           = Format.openapi,
           output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
           data_dir: DataDir = None, config_file: ConfigFile = None, host: Host = None) -> None:
    """The catalog as an OpenAPI 3.1 document (`bastion catalog export > api.yaml`)."""
    doc = export_openapi(_load(data_dir, config_file, host), host=host)
    if fmt == Format.json:
        text = orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"
    else:
        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {len(doc['paths'])} paths to {output}", err=True)


@app.command("diff")
def diff(spec: Annotated[Path, typer.Argument(help="The declared OpenAPI spec (YAML or JSON).")],
         data_dir: DataDir = None, config_file: ConfigFile = None, host: Host = None, as_json: AsJson = False,
         check: Annotated[bool, typer.Option("--check", help="Exit 1 when there are shadow, zombie or drift findings.")]
         = False) -> None:
    """Compare traffic with a spec: shadow, zombie, unused endpoints and drift."""
    try:
        api = load_spec(spec)
    except ConfigError as exc:
        fail_problems(exc.problems)
    d = spec_diff(_load(data_dir, config_file, host), api)
    if as_json:
        typer.echo(orjson.dumps(d.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(f"{d.matched} endpoints match the spec")
        for title, items in (("shadow (in traffic, not in the spec)", d.shadow),
                             ("zombie (deprecated, still called)", d.zombie),
                             ("unused (declared, never called)", d.unused)):
            typer.echo(f"{title}: {len(items)}")
            for it in items:
                typer.echo(f"  {it}")
        typer.echo(f"drift: {len(d.drift)}")
        for dr in d.drift:
            typer.echo(f"  {dr.endpoint}: {dr.kind} {dr.where} {dr.name} {dr.detail}".rstrip())
    if check and not d.clean:
        raise typer.Exit(1)
