"""`bastion rules ...`: rules from the command line.

    bastion rules list [--class sqli] [--paranoia 2]   the signature rules that would run
    bastion rules test [--cases tests/rules]          run every signature rule's match/no-match cases
    bastion rules explain RULE_ID                     describe a rate/behaviour rule in words
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bastion.cli.common import fail, fail_problems
from bastion.config import load_config
from bastion.errors import ConfigError

rules_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Signature, rate and behaviour rules.")
app = rules_app


@rules_app.command("explain")
def explain(
    rule_id: Annotated[str, typer.Argument(help="A rule id: from the config, its rule files, or the starter set.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="The YAML config file.")] = None,
) -> None:
    """Print what rule RULE_ID does, in words."""
    from bastion.rulespec.explain import explain as explain_rule
    from bastion.rulespec.loader import collect, starter_rules

    try:
        cfg = load_config(config)
        specs = {s.id: s for s in starter_rules()}
        specs.update({s.id: s for s in collect(cfg.rules, str(config or "config"))})
        spec = specs.get(rule_id)
        if spec is None:
            fail(f"no rule {rule_id!r} (known: {', '.join(sorted(specs))})")
        typer.echo(explain_rule(spec, cfg.rules.groups))
    except ConfigError as exc:
        fail_problems(exc.problems)
    except ValueError as exc:
        fail(f"rule {rule_id}: {exc}")


@rules_app.command("list")
def list_rules(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="The YAML config file.")] = None,
    attack_class: Annotated[str | None, typer.Option("--class", help="Only this attack class (sqli, xss...).")] = None,
    paranoia: Annotated[
        int | None, typer.Option("--paranoia", min=1, max=4, help="Override signatures.paranoia.")
    ] = None,
) -> None:
    """List the signature rules: id, class, severity, paranoia level, mode (score/observe/off), zones."""
    from bastion.detect.signatures.confirm import load_confirms
    from bastion.detect.signatures.detector import select_rules
    from bastion.detect.signatures.rules import load_rules

    try:
        cfg = load_config(config)
        settings = cfg.signatures
        if paranoia is not None:
            settings = settings.model_copy(update={"paranoia": paranoia, "detection_paranoia": None})
        rules = load_rules(extra=settings.rule_files)
    except ConfigError as exc:
        fail_problems(exc.problems)
    running = {r.id: observe for r, observe, _ in select_rules(rules, settings, load_confirms())}
    shown = 0
    for r in rules:
        if attack_class and r.attack_class != attack_class:
            continue
        mode = "off" if r.id not in running else ("observe" if running[r.id] else "score")
        confirm = f" confirm={r.confirm}" if r.confirm else ""
        typer.echo(f"{r.id}  {r.attack_class:<15} {r.severity:<8} PL{r.paranoia}  {mode:<7} "
                   f"{','.join(r.zones)[:48]:<48}  {r.message}{confirm}")
        shown += 1
    typer.echo(f"{shown} rules; {sum(1 for o in running.values() if not o)} scoring, "
               f"{sum(1 for o in running.values() if o)} observing at paranoia {settings.paranoia}")


@rules_app.command("test")
def test_rules(
    cases: Annotated[Path, typer.Option("--cases", help="Folder of <rule id>.yaml case files.")] = Path("tests/rules"),
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print every case.")] = False,
) -> None:
    """Run each signature rule's must-match and must-not-match cases; exit 1 on any failure."""
    from bastion.detect.signatures.cases import run_cases

    if not cases.is_dir():
        fail(f"{cases}: no such folder of rule cases")
    try:
        report = run_cases(cases)
    except ConfigError as exc:
        fail_problems(exc.problems)
    for res in report.results:
        if verbose or not res.ok:
            want = "match" if res.case.expect else "no match"
            status = "ok  " if res.ok else "FAIL"
            typer.echo(f"{status} {res.case.rule_id} expected {want}: {res.case.zone}:{res.case.name} "
                       f"{res.case.value[:80]!r}")
    for rid in report.missing:
        typer.echo(f"MISSING rule {rid} has no case file in {cases}")
    for stem in report.unknown:
        typer.echo(f"UNKNOWN {cases / stem}.yaml names no loaded rule")
    failed = len(report.failures)
    typer.echo(f"{len(report.results)} cases, {failed} failed, {len(report.missing)} rules without cases")
    if failed or report.missing:
        raise typer.Exit(1)
