"""The simulator end to end: generated benign users and attackers through the engine, targets met."""

from __future__ import annotations

from bastion.detect.behaviour.simulate import FAST, run_simulation


async def test_simulation_meets_the_targets() -> None:
    r = await run_simulation(benign=300, attackers=3, hours=12.0, seed=21, only={"decisions", "risk", "behaviour"})
    by = {row["kind"]: row for row in r.rows}
    for kind, row in by.items():
        assert row["recall"] >= 0.95, (kind, row)
        if kind in FAST:
            assert row["median"] is not None and row["median"] <= 20, (kind, row)
    assert r.benign_blocked <= 0.001 * r.benign, r.text()
    assert r.requests > 5000


def test_bastion_simulate_command() -> None:
    from typer.testing import CliRunner

    from bastion.cli import app

    res = CliRunner().invoke(app, ["simulate", "--benign", "100", "--attackers", "1", "--hours", "24",
                                   "--behaviour-only", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert "distributed_stuffing" in res.output and "benign users: 100" in res.output
