"""Headless Chromium (Debian's package, driven by Playwright) and a page that records what it
did: console errors, every HTTP request and every WebSocket it opened."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright
from tests.e2e.conftest import model, pipeline_env, sample  # noqa: F401 - fixtures

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


@dataclass
class Recorded:
    page: Page
    console_errors: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)


@pytest.fixture
async def browser_page() -> AsyncIterator[Recorded]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        page.set_default_timeout(30_000)
        recorded = Recorded(page)
        page.on("console", lambda m: recorded.console_errors.append(m.text)
                if m.type == "error" else None)
        page.on("pageerror", lambda e: recorded.console_errors.append(str(e)))
        page.on("request", lambda r: recorded.requests.append(
            {"url": r.url, "headers": dict(r.headers)}))
        page.on("websocket", lambda ws: recorded.sockets.append(ws.url))
        try:
            yield recorded
        finally:
            await context.close()
            await browser.close()
