"""The console in a real browser: Debian's chromium, driven by Playwright, against a running gateway.

Skips (with the reason) where the browser or Playwright is missing, as on a fresh machine:
`apt-get install chromium` and `pip install playwright` (no browser download needed; the test
uses the system chromium, or $BASTION_CHROMIUM).
"""

from __future__ import annotations

import os
import shutil

import pytest

from admin_helpers import TOKEN, admin_gateway
from proxy_helpers import get, request

CHROMIUM = os.environ.get("BASTION_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser") or ""
async_api = pytest.importorskip("playwright.async_api", reason="Playwright is not installed (pip install playwright)")
pytestmark = [
    pytest.mark.skipif(not CHROMIUM, reason="no chromium on this machine (apt-get install chromium)"),
    pytest.mark.timeout(120),
]

SQLI = "/search?q=1%27%20OR%20%271%27=%271%27%20UNION%20SELECT%20password%20FROM%20users--"
XSS_PATH = "/profile/%3Cimg%20src=x%20onerror=alert(1)%3E"


@pytest.fixture
async def browser():
    async with async_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            await b.close()


async def test_console_login_live_events_attackers_catalog_decisions(tmp_path, browser):
    async with admin_gateway(tmp_path) as gw:
        assert (await request(gw.proxy_port, get("/hello"))).status == 200
        page = await browser.new_page()
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
        # script errors and CSP violations; failed fetches (the 401 before login, the 400 of a bad
        # decision) are expected answers, shown in the page
        page.on("console", lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error"
                and not msg.text.startswith("Failed to load resource") else None)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        expect = async_api.expect

        await page.goto(f"{gw.url}/console/")
        await expect(page.locator("#login-form")).to_be_visible()
        await expect(page.locator("#code-row")).to_be_hidden()  # no TOTP configured
        await page.fill("#login-token", "wrong-token-wrong")
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#login-error")).to_contain_text("wrong token")
        await page.fill("#login-token", TOKEN)
        await page.click("#login-form button[type=submit]")
        await expect(page.locator("#tabs")).to_be_visible()
        await expect(page.locator("#cards .card").first).to_be_visible()
        await expect(page.locator("#mode")).to_contain_text("enforce")
        await expect(page.locator("#traffic svg.spark")).to_have_count(1)

        # live traffic: a blocked request shows up while the page polls
        await page.click("nav button[data-tab=live]")
        await expect(page.locator("#live-status")).to_contain_text("updated")
        assert (await request(gw.proxy_port, get(SQLI), local_ip="127.0.0.66")).status == 403
        assert (await request(gw.proxy_port, get(XSS_PATH), local_ip="127.0.0.66")).status == 403
        row = page.locator("#events tbody tr.event", has_text="/search")
        await expect(row).to_be_visible(timeout=15_000)
        await expect(row.locator(".badge")).to_have_text("block")
        await expect(row).to_contain_text("127.0.0.66")
        await expect(row).to_contain_text("942")
        # attacker-controlled text (the decoded evidence of an XSS attempt) is shown as text, never run
        xss_row = page.locator("#events tbody tr.event", has_text="/profile/%3Cimg")
        await expect(xss_row).to_be_visible(timeout=15_000)
        await xss_row.click()
        await expect(page.locator("#events td.findings").filter(has_text="onerror").first).to_be_visible()
        assert await page.locator("#events img").count() == 0
        await row.click()  # the findings open under the row
        await expect(page.locator("#events td.findings").filter(has_text="942").first).to_be_visible()

        # attackers: the entity with its risk and risk history
        await page.click("nav button[data-tab=attackers]")
        ent = page.locator("#entities tbody tr", has_text="ip:127.0.0.66")
        await expect(ent).to_be_visible(timeout=15_000)
        await ent.click()
        await expect(page.locator("#entity-detail h2").first).to_have_text("Entity ip:127.0.0.66")
        await expect(page.locator("#entity-detail svg.spark polyline")).to_have_count(1)
        # block it from the console: the decision is enforced by the proxy at once
        await page.click("#entity-detail button.danger")
        await expect(page.locator("#entity-detail li", has_text="deny ip 127.0.0.66")).to_be_visible()
        assert (await request(gw.proxy_port, get("/hello"), local_ip="127.0.0.66")).status == 403

        # catalog
        await page.click("nav button[data-tab=catalog]")
        await expect(page.locator("#endpoints tbody tr", has_text="/hello")).to_be_visible(timeout=15_000)

        # decisions: add, then revoke
        await page.click("nav button[data-tab=decisions]")
        await expect(page.locator("#decision-list tbody tr", has_text="127.0.0.66")).to_be_visible()
        await page.fill("#d-value", "198.51.100.0/24")
        await page.fill("#d-reason", "console test")
        await page.click("#decision-form button[type=submit]")
        added = page.locator("#decision-list tbody tr", has_text="198.51.100.0/24")
        await expect(added).to_be_visible()
        await page.fill("#d-value", "not an address")
        await page.click("#decision-form button[type=submit]")
        await expect(page.locator("#decision-error")).to_contain_text("not an address")
        await added.locator("button.revoke").click()
        await expect(added).to_have_count(0)
        blocked = page.locator("#decision-list tbody tr", has_text="127.0.0.66")
        await blocked.locator("button.revoke").click()
        await expect(blocked).to_have_count(0)
        assert (await request(gw.proxy_port, get("/hello"), local_ip="127.0.0.66")).status == 200

        # the session is a cookie the page's scripts cannot read; logging out ends it
        assert "bastion_session" not in await page.evaluate("document.cookie")
        cookies = await page.context.cookies()
        assert any(c["name"] == "bastion_session" and c["httpOnly"] and c["sameSite"] == "Strict" for c in cookies)
        await page.click("#logout")
        await expect(page.locator("#login-form")).to_be_visible()
        await page.reload()
        await expect(page.locator("#login-form")).to_be_visible()

        assert not dialogs, dialogs
        assert not problems, problems
