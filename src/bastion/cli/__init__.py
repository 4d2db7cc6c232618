"""`bastion <noun> <verb>`: the command line. Each noun is a typer sub-app in its own module.

Adding a noun is one line here: `app.add_typer(module.app, name="noun")`.
"""

from __future__ import annotations

import typer

from bastion.cli import analyze as analyze_cli
from bastion.cli import catalog as catalog_cli
from bastion.cli import config as config_cli
from bastion.cli import decisions as decisions_cli
from bastion.cli import demo as demo_cli
from bastion.cli import events as events_cli
from bastion.cli import proxy as proxy_cli
from bastion.cli import rules as rules_cli
from bastion.cli import simulate as simulate_cli

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Bastion: API attack protection gateway.")

app.command("proxy")(proxy_cli.proxy)
app.command("demo")(demo_cli.demo)
app.add_typer(config_cli.app, name="config")
app.add_typer(events_cli.app, name="events")
app.add_typer(rules_cli.rules_app, name="rules")
app.add_typer(catalog_cli.app, name="catalog")
app.add_typer(decisions_cli.app, name="decisions")
app.command("simulate")(simulate_cli.simulate)
app.command("analyze")(analyze_cli.analyze)


def main() -> None:
    app()
