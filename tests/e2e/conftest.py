"""Browser fixtures for the end-to-end tests: Debian chromium driven by Playwright (sync API)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    sync_playwright,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

PHONE: dict[str, Any] = {
    "viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True,
    "device_scale_factor": 2,
}
LAPTOP: dict[str, Any] = {"viewport": {"width": 1366, "height": 768}}
PROJECTOR: dict[str, Any] = {"viewport": {"width": 1920, "height": 1080}}


@dataclass
class ConsoleEntry:
    page: str  # the label given to open_page
    kind: str  # console message type, or "pageerror" for an uncaught exception
    text: str
    url: str

    def __str__(self) -> str:
        return f"[{self.page}] {self.kind}: {self.text} ({self.url})"


@dataclass
class ConsoleLog:
    """Every console message and uncaught exception of the pages a test opened."""

    entries: list[ConsoleEntry] = field(default_factory=list)

    def errors(self, *labels: str, allow: Callable[[ConsoleEntry], bool] | None = None
               ) -> list[ConsoleEntry]:
        return [e for e in self.entries
                if e.kind in ("error", "pageerror") and (not labels or e.page in labels)
                and not (allow is not None and allow(e))]

    def assert_no_errors(self, *labels: str,
                         allow: Callable[[ConsoleEntry], bool] | None = None) -> None:
        errors = self.errors(*labels, allow=allow)
        assert not errors, "console errors:\n" + "\n".join(map(str, errors))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def console() -> ConsoleLog:
    return ConsoleLog()


OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(browser: Browser, console: ConsoleLog) -> Iterator[OpenPage]:
    """open_page(label, **context_options): a page in a fresh context (own cookies), logged.

    Contexts default to a French browser (the app's main audience); console messages and
    uncaught exceptions land in the `console` fixture under the given label.
    """
    contexts: list[BrowserContext] = []

    def open_(label: str, **options: Any) -> Page:
        options.setdefault("locale", "fr-FR")
        context = browser.new_context(**options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()

        def on_console(message: ConsoleMessage) -> None:
            location = message.location or {}
            console.entries.append(
                ConsoleEntry(label, message.type, message.text, location.get("url", "")))

        def on_error(error: Error) -> None:
            console.entries.append(ConsoleEntry(label, "pageerror", str(error), page.url))

        page.on("console", on_console)
        page.on("pageerror", on_error)
        return page

    yield open_
    for context in contexts:
        context.close()
