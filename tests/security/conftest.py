"""The browser fixtures of tests/e2e (Debian chromium through Playwright), shared here."""

from __future__ import annotations

from tests.e2e.conftest import browser, console, open_page

__all__ = ["browser", "console", "open_page"]
