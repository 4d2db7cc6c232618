"""`bastion rules ...`: the rule language from the command line (`explain` describes a rule in words)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bastion.cli.common import fail, fail_problems
from bastion.config import load_config
from bastion.errors import ConfigError

rules_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Rate and behaviour rules.")
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
