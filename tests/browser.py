"""A real browser for the page's tests: Debian's `chromium`, driven by Playwright.

Playwright's own browser download is not used (it needs a host other than the package
registries); `executable_path` points it at the system's Chromium instead. Locally the
browser tests skip when Chromium is missing; under CI they fail, since `.ci/run` installs it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from playwright.async_api import Browser, async_playwright

# Headless, as root in CI, on a machine without a network: no sandbox (root), no GPU, and
# none of the background services that would try to reach Google's servers.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
)


def chromium_executable() -> str | None:
    """CHROMIUM (a path) when set, else `chromium` on PATH."""
    return os.environ.get("CHROMIUM") or shutil.which("chromium")


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium with a fresh profile; skips (locally) when there is none."""
    executable = chromium_executable()
    if executable is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=list(CHROMIUM_ARGS)
        )
        try:
            yield browser
        finally:
            await browser.close()
