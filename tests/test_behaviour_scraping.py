"""Scraping: distinct-resource coverage far above the population baseline."""

from __future__ import annotations

import random

from behaviour_helpers import CHROME, Harness


async def test_scraper_far_above_population_is_blocked_and_users_are_not() -> None:
    h = await Harness().start()
    rng = random.Random(5)
    for u in range(100):  # a population of ordinary users, 5-25 pages each
        for _ in range(rng.randint(5, 25)):
            s = await h.send(f"127.60.{u}.1", target=f"/catalog/item-{rng.randint(1, 5000)}", headers=CHROME,
                             advance=0.5)
            assert not s.blocked
    sent = [await h.send("127.61.0.1", target=f"/catalog/item-{rng.randint(1, 100_000)}?p={i}", advance=0.5)
            for i in range(400)]
    first = next(i for i, s in enumerate(sent) if s.blocked)
    assert 100 <= first <= 250
    await h.stop()
