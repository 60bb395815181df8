"""End to end: a real `board serve` process driven through real chromium pages."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.conftest import LiveServer
from tests.e2e.conftest import LAPTOP, PHONE, PROJECTOR, ConsoleEntry, ConsoleLog, OpenPage

pytestmark = pytest.mark.e2e

LIVE = 5_000  # ms: a card must reach the other screens within this
RECONNECT = 15_000  # ms: a page must be live again this long after a server restart

BOARD = {"title": "Coopération", "question": "Comment mieux coopérer ?",
         "template": "constats-enjeux-besoins", "anonymous": False}


# --- helpers ---------------------------------------------------------------------------------


def create_board(server: LiveServer) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/api/v1/boards", json=BOARD, timeout=10)
    assert response.status_code == 201, response.text
    board: dict[str, Any] = response.json()
    assert [c["title"] for c in board["columns"]] == ["Constats", "Enjeux", "Besoins"]
    return board


def api_participant(server: LiveServer, code: str, name: str) -> str:
    response = httpx.post(f"{server.url}/api/v1/boards/{code}/participants",
                          json={"name": name}, timeout=10)
    assert response.status_code == 201, response.text
    token: str = response.json()["token"]
    return token


def api_post_card(server: LiveServer, code: str, token: str, column_id: int, text: str
                  ) -> dict[str, Any]:
    response = httpx.post(
        f"{server.url}/api/v1/boards/{code}/cards",
        headers={"Authorization": f"Bearer {token}"},
        json={"column_id": column_id, "text": text, "client_id": uuid.uuid4().hex},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    card: dict[str, Any] = response.json()
    return card


def board_seq(server: LiveServer, code: str) -> int:
    response = httpx.get(f"{server.url}/api/v1/boards/{code}", timeout=10)
    assert response.status_code == 200, response.text
    seq: int = response.json()["seq"]
    return seq


def expect_seq(page: Page, seq: int, timeout: int = LIVE) -> None:
    """Wait until the page's socket has delivered the event numbered seq (board.js notes it)."""
    page.wait_for_function("seq => Number(document.body.dataset.seq) >= seq", arg=seq,
                           timeout=timeout)


def mark_page(page: Page) -> None:
    """Put a flag in the page's JS state: it survives live swaps, not a reload or navigation."""
    page.evaluate("window.__e2eNoReload = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__e2eNoReload === true"), f"{page.url} was reloaded"


def expect_live(page: Page, timeout: int = LIVE) -> None:
    expect(page.locator("body")).to_have_class(re.compile(r"\bis-live\b"), timeout=timeout)


def join(page: Page, url: str, name: str = "") -> None:
    """Open the participant link and go through the join form."""
    page.goto(url)
    expect(page.locator("#name")).to_be_visible()
    if name:
        page.locator("#name").fill(name)
    page.locator("form.join-form button[type=submit]").click()
    expect(page.locator("#post-form")).to_be_visible()
    expect(page.locator("#board")).to_be_visible()


def card_in(page: Page, column_id: int, text: str) -> Locator:
    return page.locator(f"#cards-{column_id} article.card", has_text=text)


def assert_no_horizontal_overflow(page: Page) -> None:
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"{page.url} scrolls sideways: {widths[0]} > {widths[1]} px"


def websocket_failure(entry: ConsoleEntry) -> bool:
    """Chromium's own report of a refused socket, or htmx's log of the same error event."""
    return entry.kind == "error" and (
        "WebSocket connection to" in entry.text or entry.text.startswith("htmx: htmx:ws:error"))


# --- tests -----------------------------------------------------------------------------------


def test_card_from_phone_reaches_projector_and_other_phone_live(
    server: LiveServer, open_page: OpenPage, console: ConsoleLog, artifacts: Path,
) -> None:
    """A card posted from a phone shows up live on the projector, the animator and another phone."""
    board = create_board(server)
    code, urls = board["join_code"], board["urls"]
    enjeux = board["columns"][1]

    projector = open_page("projector", **PROJECTOR)
    projector.goto(urls["projector"])
    expect(projector.locator("#join-code")).to_have_text(code)
    expect(projector.locator("img.qr")).to_be_visible()
    expect_live(projector)

    animator = open_page("animator", **LAPTOP)
    animator.goto(urls["animator"])
    expect(animator).to_have_url(re.compile(rf"/b/{code}/animator$"))  # the key left the URL
    expect(animator.locator(".card-tools")).to_have_count(0)
    expect_live(animator)

    phone = open_page("participant", **PHONE)
    join(phone, urls["participant"], name="Amina")
    expect_live(phone)

    other_phone = open_page("participant-2", **PHONE)
    join(other_phone, urls["participant"])  # anonymous
    expect_live(other_phone)

    for page in (phone, projector, animator, other_phone):
        mark_page(page)

    text = "Se parler avant de décider"
    phone.locator("label.chip", has_text=enjeux["title"]).tap()
    expect(phone.locator(f"input[name=column_id][value='{enjeux['id']}']")).to_be_checked()
    phone.locator("#card-text").fill(text)
    phone.locator("#post-form button[type=submit]").tap()

    # The poster: a confirmation, an empty text box, and the card exactly once.
    expect(phone.locator("#post-form .post-feedback .ok")).to_be_visible(timeout=LIVE)
    expect(phone.locator("#card-text")).to_have_value("")
    expect(card_in(phone, enjeux["id"], text)).to_have_count(1, timeout=LIVE)
    assert_not_reloaded(phone)  # posted through htmx, not a plain form submission

    for page in (projector, other_phone, animator):
        card = card_in(page, enjeux["id"], text)
        expect(card).to_have_count(1, timeout=LIVE)
        expect(card).to_be_visible()
        expect(card.locator(".card-text")).to_have_text(text)
        expect(card.locator(".card-author")).to_have_text("Amina")
        expect(page.locator("article.card")).to_have_count(1)
        assert_not_reloaded(page)
    expect(card_in(animator, enjeux["id"], text).locator(".card-tools")).to_be_visible()

    phone.screenshot(path=artifacts / "e2e-participant.png", full_page=True, animations="disabled")
    animator.screenshot(path=artifacts / "e2e-animator.png", full_page=True, animations="disabled")
    projector.screenshot(path=artifacts / "e2e-projector.png", animations="disabled")

    # Checked after the screenshots, so that they exist even when these fail.
    assert projector.evaluate(
        "() => { const img = document.querySelector('img.qr');"
        " return img.complete && img.naturalWidth > 0; }"), "the projector's QR code is broken"
    assert_no_horizontal_overflow(phone)
    console.assert_no_errors("participant", "participant-2", "projector")


def test_animator_hides_and_restores_a_card_live(
    server: LiveServer, open_page: OpenPage, console: ConsoleLog, artifacts: Path,
) -> None:
    """A card the animator hides leaves the projector and phones live, and comes back on restore."""
    board = create_board(server)
    code, urls = board["join_code"], board["urls"]
    constats = board["columns"][0]["id"]
    token = api_participant(server, code, "Bruno")
    first = api_post_card(server, code, token, constats, "Trop de réunions")
    second = api_post_card(server, code, token, constats, "Peu de retours")

    projector = open_page("projector", **PROJECTOR)
    projector.goto(urls["projector"])
    phone = open_page("participant", **PHONE)
    join(phone, urls["participant"], name="Chloé")
    animator = open_page("animator", **LAPTOP)
    animator.goto(urls["animator"])
    for page in (projector, phone, animator):
        expect_live(page)
        expect(page.locator(f"#cards-{constats} article.card")).to_have_count(2)
        mark_page(page)

    hidden_card = f"#card-{first['id']}"
    seq = board_seq(server, code)
    animator.locator(hidden_card).get_by_role("button", name="Masquer").click()

    # Animator: still there, marked hidden, and its button now restores.
    expect(animator.locator(hidden_card)).to_have_class(re.compile(r"\bis-hidden\b"))
    expect(animator.locator(f"{hidden_card} .badge")).to_be_visible()
    expect(animator.locator(f"{hidden_card} input[name=hidden]")).to_have_value("0")
    # Projector and phone: gone, the other card untouched.
    for page in (projector, phone):
        expect(page.locator(hidden_card)).to_have_count(0, timeout=LIVE)
        expect(page.locator(f"#card-{second['id']}")).to_be_visible()
    # Once the animator's own socket has brought the event back, the card is still shown hidden.
    assert board_seq(server, code) == seq + 1
    expect_seq(animator, seq + 1)
    expect(animator.locator(hidden_card)).to_have_class(re.compile(r"\bis-hidden\b"))
    expect(animator.locator(f"#cards-{constats} article.card")).to_have_count(2)
    animator.screenshot(path=artifacts / "e2e-animator-hidden.png", full_page=True,
                        animations="disabled")

    animator.locator(hidden_card).get_by_role("button", name="Réafficher").click()

    expect(animator.locator(hidden_card)).not_to_have_class(re.compile(r"\bis-hidden\b"))
    expect(animator.locator(f"{hidden_card} input[name=hidden]")).to_have_value("1")
    for page in (projector, phone):
        expect(page.locator(hidden_card)).to_be_visible(timeout=LIVE)
        # Back in its place: cards are kept in posting order.
        expect(page.locator(f"#cards-{constats} article.card .card-text")).to_have_text(
            ["Trop de réunions", "Peu de retours"])
    for page in (projector, phone, animator):
        assert_not_reloaded(page)

    console.assert_no_errors("participant", "projector")


def test_projector_reconnects_after_server_restart(
    server: LiveServer, open_page: OpenPage, console: ConsoleLog,
) -> None:
    """After a server restart the projector reconnects by itself and shows new cards, no reload."""
    board = create_board(server)
    code, urls = board["join_code"], board["urls"]
    besoins = board["columns"][2]["id"]
    token = api_participant(server, code, "Dana")
    api_post_card(server, code, token, besoins, "Avant le redémarrage")

    projector = open_page("projector", **PROJECTOR)
    projector.goto(urls["projector"])
    expect_live(projector)
    expect(card_in(projector, besoins, "Avant le redémarrage")).to_be_visible()
    mark_page(projector)
    outage_start = len(console.entries)

    server.restart()  # same port, same database file

    text = "Après le redémarrage"
    api_post_card(server, code, token, besoins, text)
    expect(card_in(projector, besoins, text)).to_be_visible(timeout=RECONNECT)
    expect_live(projector, timeout=RECONNECT)
    outage = console.entries[outage_start:]  # socket failures are expected here, only here
    expect(projector.locator(f"#cards-{besoins} article.card .card-text")).to_have_text(
        ["Avant le redémarrage", text])
    assert_not_reloaded(projector)

    # And it stays live on the new connection.
    api_post_card(server, code, token, besoins, "Encore une")
    expect(card_in(projector, besoins, "Encore une")).to_be_visible(timeout=LIVE)

    console.assert_no_errors(
        "projector", allow=lambda e: websocket_failure(e) and any(e is o for o in outage))


def test_participant_without_javascript_joins_and_posts(
    server: LiveServer, open_page: OpenPage, console: ConsoleLog,
) -> None:
    """Without JavaScript a participant joins and posts through plain forms and sees the card."""
    board = create_board(server)
    code, urls = board["join_code"], board["urls"]
    besoins = board["columns"][2]

    phone = open_page("participant", java_script_enabled=False, **PHONE)
    join(phone, urls["participant"], name="Élise")
    expect(phone).to_have_url(re.compile(rf"/b/{code}$"))

    text = "Un lieu pour se retrouver"
    phone.locator("label.chip", has_text=besoins["title"]).click()
    expect(phone.locator(f"input[name=column_id][value='{besoins['id']}']")).to_be_checked()
    phone.locator("#card-text").fill(text)
    phone.locator("#post-form button[type=submit]").click()

    expect(phone).to_have_url(re.compile(rf"/b/{code}#card-\d+$"))
    card_id = phone.url.rsplit("#", 1)[1]
    card = phone.locator(f"#cards-{besoins['id']} #{card_id}")
    expect(card).to_be_visible()
    expect(card.locator(".card-text")).to_have_text(text)
    expect(card.locator(".card-author")).to_have_text("Élise")
    expect(phone.locator("article.card")).to_have_count(1)

    # Stored server-side too, in the chosen column.
    response = httpx.get(f"{server.url}/api/v1/boards/{code}", timeout=10)
    columns = {c["id"]: c for c in response.json()["columns"]}
    assert [c["text"] for c in columns[besoins["id"]]["cards"]] == [text]

    console.assert_no_errors("participant")
