"""End to end: the projector read from the back of the room, in chromium at 1920×1080.

Card text is sized so that 60 cards fit the screen without scrolling, a bigger board switches
to a compact layout, the join code and QR code stay visible while collecting, new cards stand
out for a few seconds, and the full-screen and contrast toggles work by keyboard.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer
from tests.e2e.conftest import PROJECTOR, ConsoleLog, OpenPage
from tests.e2e.test_live_board import api_participant, api_post_card, expect_live

pytestmark = pytest.mark.e2e

IDEAS = ["Des tiers-lieux isolés les uns des autres", "Un seul bus par jour vers la ville",
         "Mutualiser l'ingénierie entre intercommunalités", "Former les bénévoles à la gestion",
         "Des horaires adaptés aux habitants", "Un fonds d'amorçage régional pour les projets"]


def board_with_cards(server: LiveServer, count: int) -> tuple[str, dict[str, Any]]:
    created = httpx.post(f"{server.url}/api/v1/boards", timeout=10, json={
        "title": "Plénière : les tiers-lieux demain", "question": "Quels besoins pour demain ?",
        "template": "constats-enjeux-besoins"}).json()
    code = created["join_code"]
    columns = [c["id"] for c in created["columns"]]
    token = api_participant(server, code, "Léa")
    for n in range(count):
        api_post_card(server, code, token, columns[n % 3], f"{IDEAS[n % len(IDEAS)]} ({n + 1})")
    return code, created


def layout(page: Page) -> dict[str, Any]:
    info: dict[str, Any] = page.evaluate("""() => {
        const card = document.querySelector('#board .card .card-text');
        const qr = document.querySelector('.join-card .qr').getBoundingClientRect();
        const code = document.querySelector('#join-code').getBoundingClientRect();
        return {
          scroll: document.documentElement.scrollHeight, height: window.innerHeight,
          width: document.documentElement.scrollWidth, viewport: window.innerWidth,
          cards: document.querySelectorAll('#board .card').length,
          font: parseFloat(getComputedStyle(card).fontSize),
          perRow: document.getElementById('board').getAttribute('data-per-row'),
          qr: [qr.width, qr.height, qr.top >= 0 && qr.bottom <= window.innerHeight],
          code: code.top >= 0 && code.bottom <= window.innerHeight,
        };
    }""")
    return info


@pytest.mark.parametrize("count", [60, 120])
def test_projector_fits_the_board_on_one_screen(
        module_server: LiveServer, open_page: OpenPage, console: ConsoleLog, artifacts: Any,
        count: int) -> None:
    code, _ = board_with_cards(module_server, count)
    page = open_page("projector", **PROJECTOR)
    page.goto(f"{module_server.url}/b/{code}/projector")
    expect_live(page)
    expect(page.locator("#board .card")).to_have_count(count)
    page.wait_for_timeout(300)  # one animation frame for the fit
    info = layout(page)
    page.screenshot(path=str(artifacts / f"projector-{count}-cards.png"))
    assert info["scroll"] <= info["height"], info
    assert info["width"] <= info["viewport"], info
    assert info["qr"][2] and info["qr"][0] >= 150 and info["code"], info
    # Readable from the back of a room: 60 cards at 18 px or more on a 1080p screen, all on
    # one page; a plenary's 120 on pages that turn, at 16 px or more.
    assert info["font"] >= (18 if count == 60 else 16), info
    shown = page.locator("#board .card:visible").count()
    pager = page.locator("#pager")
    if count == 60:
        assert shown == 60
        expect(pager).to_be_hidden()
    else:
        assert 30 <= shown < count, shown
        expect(pager).to_have_text(re.compile(r"^Page 1 / [2-4]$"))
        first = page.locator("#board .card:visible").first.get_attribute("id")
        page.wait_for_timeout(12_500)
        expect(pager).to_have_text(re.compile(r"^Page 2 / [2-4]$"))
        assert page.locator("#board .card:visible").first.get_attribute("id") != first
        assert layout(page)["scroll"] <= info["height"]
    console.assert_no_errors()


def test_new_cards_stand_out_then_settle_and_toggles_work_by_keyboard(
        module_server: LiveServer, open_page: OpenPage, console: ConsoleLog) -> None:
    code, created = board_with_cards(module_server, 3)
    page = open_page("projector", **PROJECTOR)
    page.goto(f"{module_server.url}/b/{code}/projector")
    expect_live(page)
    token = api_participant(module_server, code, "Yanis")
    card = api_post_card(module_server, code, token, created["columns"][0]["id"],
                         "Une nouvelle carte arrive")
    fresh = page.locator(f"#card-{card['id']}")
    expect(fresh).to_have_class(re.compile(r"\bis-new\b"))
    expect(page.locator("#announcer")).to_have_text(
        "Nouvelle carte : Une nouvelle carte arrive", timeout=5000)
    expect(fresh).not_to_have_class(re.compile(r"\bis-new\b"), timeout=9000)

    contrast = page.locator("#contrast-toggle")
    contrast.focus()
    page.keyboard.press("Enter")
    expect(page.locator("body")).to_have_class(re.compile(r"\bhigh-contrast\b"))
    expect(contrast).to_have_attribute("aria-pressed", "true")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(0, 0, 0)"
    page.reload()
    expect(page.locator("body")).to_have_class(re.compile(r"\bhigh-contrast\b"))
    full = page.locator("#fullscreen-toggle")
    expect(full).to_have_text("Plein écran")
    assert page.evaluate("document.fullscreenEnabled") is True
    full.focus()
    page.keyboard.press("Enter")
    expect(full).to_have_attribute("aria-pressed", "true")
    expect(full).to_have_text("Quitter le plein écran")
    assert page.evaluate("!!document.fullscreenElement") is True
    page.keyboard.press("Enter")
    expect(full).to_have_attribute("aria-pressed", "false")
    console.assert_no_errors()
