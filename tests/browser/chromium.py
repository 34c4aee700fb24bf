"""Headless Chromium from the system's packages, driven by playwright; never a downloaded browser."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "chromium"]

# Debian's package (`apt-get install chromium`); `.ci/install_browser.sh` installs it.
CHROMIUM = os.environ.get("SHARESCAN_CHROMIUM", "/usr/bin/chromium")
# No network of its own: no updates, sync or first-run fetches while a page is checked.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextmanager
def chromium() -> Iterator[Any]:
    """A launched browser; raises RuntimeError saying what to install when Chromium or playwright is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(f"{CHROMIUM} not found: the HTML report is checked in a real browser; install it with `apt-get install -y chromium` (or .ci/install_browser.sh), or point SHARESCAN_CHROMIUM at a Chromium binary")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise RuntimeError("playwright is not installed: `pip install -e '.[dev]'` (it drives the system Chromium; no `playwright install` needed)") from None
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
