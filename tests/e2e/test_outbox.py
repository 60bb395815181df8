"""The phone outbox in Debian chromium: cards typed offline are kept, then sent exactly once."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import LiveServer
from tests.e2e.conftest import PHONE, PROJECTOR, ConsoleLog, OpenPage
from tests.e2e.test_live_board import LIVE, expect_live, join, websocket_failure


@pytest.mark.e2e
def test_cards_posted_offline_are_sent_once_when_back_online(
        server: LiveServer, open_page: OpenPage, console: ConsoleLog, artifacts: Path) -> None:
    """Offline, two cards wait on the phone; back online, the projector shows each once."""
    board = httpx.post(f"{server.url}/api/v1/boards", timeout=10,
                       json={"title": "Mobilités", "template": "constats-enjeux-besoins",
                             "anonymous": False}).json()
    code, column = board["join_code"], board["columns"][0]["id"]
    projector = open_page("projector", **PROJECTOR)
    projector.goto(board["urls"]["projector"])
    expect_live(projector)
    phone = open_page("phone", **PHONE)
    join(phone, board["urls"]["participant"])
    expect_live(phone)

    phone.context.set_offline(True)
    texts = ["Pas de bus le soir", "Covoiturage à organiser"]
    for text in texts:
        phone.locator("#card-text").fill(text)
        phone.locator("#post-form button[type=submit]").click()
    pending = phone.locator(f"#cards-{column} article.card.is-pending")
    expect(pending).to_have_count(2)
    expect(pending.first).to_contain_text("En attente")
    stored = phone.evaluate(f"JSON.parse(localStorage.getItem('atelier-outbox:{code}'))")
    assert [item["text"] for item in stored] == texts
    assert len({item["client_id"] for item in stored}) == 2
    phone.screenshot(path=artifacts / "e2e-outbox-offline.png", full_page=True,
                     animations="disabled")
    # Nothing reached the server while offline.
    state = httpx.get(f"{server.url}/api/v1/boards/{code}", timeout=10).json()
    assert state["columns"][0]["cards"] == []

    phone.context.set_offline(False)
    phone.evaluate("window.dispatchEvent(new Event('online'))")
    for text in texts:
        expect(projector.locator(f"#cards-{column} article.card", has_text=text)).to_have_count(
            1, timeout=LIVE)
        expect(phone.locator(f"#cards-{column} article.card", has_text=text)).to_have_count(
            1, timeout=LIVE)
    expect(phone.locator("article.card.is-pending")).to_have_count(0)
    assert phone.evaluate(f"localStorage.getItem('atelier-outbox:{code}')") == "[]"
    state = httpx.get(f"{server.url}/api/v1/boards/{code}", timeout=10).json()
    assert [c["text"] for c in state["columns"][0]["cards"]] == texts  # in order, once each
    expect(phone.locator(".post-feedback")).to_have_text(re.compile("Carte envoyée"))
    console.assert_no_errors("projector")
    assert [e for e in console.errors("phone") if not websocket_failure(e)
            and "net::ERR_INTERNET_DISCONNECTED" not in e.text] == []


@pytest.mark.e2e
def test_a_refused_card_gives_its_text_back(
        server: LiveServer, open_page: OpenPage, console: ConsoleLog) -> None:
    """A card the server refuses (board locked) shows why, and its text can be taken back."""
    board = httpx.post(f"{server.url}/api/v1/boards", timeout=10,
                       json={"title": "Logement", "template": "freins-leviers",
                             "anonymous": False}).json()
    phone = open_page("phone", **PHONE)
    join(phone, board["urls"]["participant"])
    httpx.patch(f"{server.url}/api/v1/boards/{board['join_code']}", timeout=10,
                headers={"Authorization": f"Bearer {board['animator_token']}"},
                json={"locked": True})
    phone.locator("#card-text").fill("Loyers trop chers")
    phone.locator("#post-form button[type=submit]").click()
    refused = phone.locator("article.card.is-refused")
    expect(refused).to_contain_text("suspendu")
    refused.get_by_role("button").click()
    expect(phone.locator("#card-text")).to_have_value("Loyers trop chers")
    expect(refused).to_have_count(0)
