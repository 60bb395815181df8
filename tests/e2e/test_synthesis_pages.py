"""End to end: freezing ateliers into syntheses, and the pages that show them, in chromium.

The animator's synthesis panel (drafts kept across live refreshes, freezing seen live by the
phones and the projector), the standalone synthesis page (styled under its strict CSP, cards
shown as text), the plenary's live page of the day's synthesis, and the archive's search.
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.conftest import LiveServer
from tests.e2e.conftest import LAPTOP, PHONE, PROJECTOR, ConsoleLog, OpenPage
from tests.e2e.test_live_board import (
    LIVE,
    api_participant,
    api_post_card,
    assert_no_horizontal_overflow,
    assert_not_reloaded,
    expect_live,
    join,
    mark_page,
)

pytestmark = pytest.mark.e2e

TEMPLATE = "constats-enjeux-besoins"
EVENT_REFRESH = 15_000  # ms: the plenary's page polls every 10 s
FROZEN_STATUS = "L'atelier est terminé : sa synthèse est figée."
SLUG = re.compile(r"/s/([A-Za-z0-9_-]+)$")


# --- helpers ---------------------------------------------------------------------------------


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_board(server: LiveServer, title: str, question: str = "",
              anonymous: bool = False) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/api/v1/boards", timeout=10, json={
        "title": title, "question": question, "template": TEMPLATE, "anonymous": anonymous})
    assert response.status_code == 201, response.text
    board: dict[str, Any] = response.json()
    return board


def columns_of(board: dict[str, Any]) -> dict[str, int]:
    return {c["title"]: int(c["id"]) for c in board["columns"]}


def set_phase(server: LiveServer, board: dict[str, Any], phase: str) -> None:
    response = httpx.patch(f"{server.url}/api/v1/boards/{board['join_code']}",
                           json={"phase": phase}, headers=auth(board["animator_token"]),
                           timeout=10)
    assert response.status_code == 200, response.text


def freeze(server: LiveServer, board: dict[str, Any], notes: dict[str, str],
           conclusion: str) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/api/v1/boards/{board['join_code']}/freeze",
                          json={"notes": notes, "conclusion": conclusion},
                          headers=auth(board["animator_token"]), timeout=30)
    assert response.status_code == 201, response.text
    version: dict[str, Any] = response.json()
    return version


def vote(server: LiveServer, code: str, token: str, card_id: int) -> None:
    response = httpx.post(f"{server.url}/api/v1/boards/{code}/votes",
                          json={"card_id": card_id}, headers=auth(token), timeout=10)
    assert response.status_code == 201, response.text


def fill_board(server: LiveServer, board: dict[str, Any],
               cards: list[tuple[str, str]], voters: int = 0) -> list[dict[str, Any]]:
    """Participants post (column title, text) cards; then `voters` of them put one dot each on
    the first cards (the first card gets the most)."""
    code, cols = board["join_code"], columns_of(board)
    names = ["Camille", "Yanis", "Maëlle", "Jean-Pierre"]
    tokens = [api_participant(server, code, name) for name in names]
    posted = [api_post_card(server, code, tokens[i % len(tokens)], cols[column], text)
              for i, (column, text) in enumerate(cards)]
    if voters:
        set_phase(server, board, "vote")
        for i, token in enumerate(tokens[:voters]):
            for k in range(3):
                vote(server, code, token, posted[min(k, i)]["id"])
    return posted


def open_animator(open_page: OpenPage, board: dict[str, Any], **options: Any) -> Page:
    page = open_page("animator", **(options or LAPTOP))
    page.goto(board["urls"]["animator"])
    expect(page).to_have_url(re.compile(rf"/b/{board['join_code']}/animator$"))
    expect_live(page)
    return page


def shot(page: Page, path: Path) -> None:
    # caret="initial": see tests/e2e/test_atelier.py (a hidden caret leaves style="" behind,
    # which the CSP then refuses at the next htmx swap).
    page.screenshot(path=path, full_page=True, animations="disabled", caret="initial")


def csp_entry(entry: Any) -> bool:
    return "Content Security Policy" in entry.text or "Content-Security-Policy" in entry.text


# --- the animator's panel, live on every screen ----------------------------------------------


def test_animator_freezes_from_panel_and_phone_and_projector_see_it_live(
    module_server: LiveServer, open_page: OpenPage, console: ConsoleLog, artifacts: Path,
) -> None:
    """Restitution shows the panel; a draft is saved, then frozen; the panel offers the
    permalink, the exports and reopening; the phone and the projector learn it live."""
    server = module_server
    board = new_board(server, "Tiers-lieux et coopération",
                      "Comment les tiers-lieux renforcent-ils les coopérations locales ?")
    cols = columns_of(board)
    fill_board(server, board, [
        ("Constats", "Des tiers-lieux isolés les uns des autres"),
        ("Enjeux", "Mutualiser l'ingénierie entre territoires"),
        ("Besoins", "Un poste d'animateur financé sur trois ans"),
    ])

    animator = open_animator(open_page, board)
    phone = open_page("phone", **PHONE)
    join(phone, board["urls"]["participant"], "Lucie")
    expect_live(phone)
    projector = open_page("projector", **PROJECTOR)
    projector.goto(board["urls"]["projector"])
    expect_live(projector)
    for page in (animator, phone, projector):
        mark_page(page)

    expect(animator.locator("#synthesis-panel")).to_have_count(0)
    animator.locator("#controls button[name=phase][value=restitution]").click()
    panel = animator.locator("#board-area #synthesis-panel")
    expect(panel).to_be_visible(timeout=LIVE)
    form = panel.locator("form.synthesis-form")
    for title, cid in cols.items():
        expect(form.locator(f"label[for='notes-{cid}']")).to_have_text(
            re.compile(rf"^{title}\s*:\s*ce que l'on retient$"))
        expect(form.locator(f"textarea#notes-{cid}")).to_be_visible()
    expect(form.locator("textarea#conclusion")).to_be_visible()
    save = form.locator("button[name=action][value=save]")
    expect(save).to_have_text("Enregistrer le brouillon")
    expect(form.locator("button[name=action][value=freeze]")).to_have_text("Figer la synthèse")

    # Save a draft: in place, a short message in #flash, no navigation.
    animator.locator(f"#notes-{cols['Constats']}").fill("- Des lieux **isolés**\n- Peu de liens")
    animator.locator("#conclusion").fill("Créer un réseau régional des tiers-lieux.")
    save.click()
    expect(animator.locator("#flash")).to_contain_text("Enregistré")
    expect(animator.locator("#flash .error")).to_have_count(0)
    shot(animator, artifacts / "animator-synthesis-draft-laptop.png")
    # The draft is kept by the server: a fresh page shows it.
    animator.reload()
    expect_live(animator)
    expect(animator.locator(f"#notes-{cols['Constats']}")).to_have_value(
        "- Des lieux **isolés**\n- Peu de liens")
    expect(animator.locator("#conclusion")).to_have_value(
        "Créer un réseau régional des tiers-lieux.")
    mark_page(animator)

    animator.locator(f"#notes-{cols['Besoins']}").fill("Des moyens humains **pérennes**.")
    animator.locator("#synthesis-panel button[name=action][value=freeze]").click()
    expect(animator.locator("#flash .error")).to_have_count(0)
    expect(panel.locator(".frozen-note")).to_contain_text("Figée : version 1", timeout=LIVE)
    expect(panel.locator("form.synthesis-form")).to_have_count(0)
    opener = panel.get_by_role("link", name="Ouvrir la synthèse")
    href = opener.get_attribute("href") or ""
    match = SLUG.search(href)
    assert match, href
    slug = match.group(1)
    downloads = panel.locator(".exports a[download]")
    expect(downloads).to_have_text(["HTML", "MD", "CSV", "JSON", "PDF"])
    for fmt, link in zip(("html", "md", "csv", "json", "pdf"), downloads.all(), strict=True):
        assert link.get_attribute("href") == f"/s/{slug}.{fmt}"
        response = httpx.get(f"{server.url}/s/{slug}.{fmt}", timeout=60)
        assert response.status_code == 200, (fmt, response.text[:300])
        assert "attachment" in response.headers["content-disposition"] or fmt == "html"
    expect(panel.get_by_role("button", name="Rouvrir le tableau")).to_be_visible()
    shot(animator, artifacts / "animator-synthesis-panel-laptop.png")

    # The phone and the projector: the status line says it, with the link, live.
    for page in (phone, projector):
        status = page.locator("#board-status")
        expect(status).to_contain_text(FROZEN_STATUS, timeout=LIVE)
        link = status.get_by_role("link", name="Lire la synthèse")
        expect(link).to_have_attribute("href", f"/s/{slug}")
    expect(phone.locator("#post-form")).to_be_hidden()
    assert_not_reloaded(animator)
    assert_not_reloaded(phone)
    assert_not_reloaded(projector)
    shot(phone, artifacts / "participant-frozen-phone.png")
    assert_no_horizontal_overflow(phone)

    # The phone follows the link: the synthesis holds the notes frozen from the panel.
    phone.locator("#board-status a").tap()
    expect(phone).to_have_url(re.compile(rf"/s/{slug}$"))
    expect(phone.locator("h1")).to_have_text("Tiers-lieux et coopération")
    expect(phone.locator(f"#col-{cols['Besoins']} .retained strong")).to_have_text("pérennes")
    expect(phone.locator(f"#col-{cols['Constats']} .retained li")).to_have_count(2)
    expect(phone.locator("#conclusion")).to_have_text("Créer un réseau régional des tiers-lieux.")

    # Reopening: the panel's form comes back, and the phone may post again.
    animator.get_by_role("button", name="Rouvrir le tableau").click()
    expect(animator.locator("#synthesis-panel form.synthesis-form")).to_be_visible(timeout=LIVE)
    expect(animator.locator("#board-status")).not_to_contain_text(FROZEN_STATUS)
    expect(animator.locator(f"#notes-{cols['Besoins']}")).to_have_value(
        "Des moyens humains **pérennes**.")
    expect(animator.locator("#synthesis-panel details.versions summary")).to_have_text(
        "1 version")
    expect(projector.locator("#board-status")).not_to_contain_text(FROZEN_STATUS, timeout=LIVE)
    assert_not_reloaded(projector)
    console.assert_no_errors()


def test_unsaved_notes_survive_a_live_refresh_of_the_board_area(
    module_server: LiveServer, open_page: OpenPage, console: ConsoleLog,
) -> None:
    """Text typed in the panel but not saved stays when the area is re-fetched (hx-preserve):
    the animator shows the results, a phone posts a theme-changing event, etc."""
    server = module_server
    board = new_board(server, "Mobilités rurales")
    cols = columns_of(board)
    fill_board(server, board, [("Constats", "Peu de transports en commun le soir"),
                               ("Besoins", "Un service de covoiturage solidaire")], voters=2)
    set_phase(server, board, "restitution")
    animator = open_animator(open_page, board)
    mark_page(animator)

    typed = {f"#notes-{cols['Constats']}": "Les jeunes sans permis restent chez eux",
             f"#notes-{cols['Enjeux']}": "Garder les services en centre-bourg",
             "#conclusion": "Lancer une expérimentation avec la communauté de communes"}
    for selector, text in typed.items():
        animator.locator(selector).fill(text)
    # Leave the caret in a field, as someone in the middle of a sentence.
    animator.locator(f"#notes-{cols['Besoins']}").press_sequentially("Un arrêt à la demande")
    typed[f"#notes-{cols['Besoins']}"] = "Un arrêt à la demande"

    # 1. The animator shows the results: board.updated makes every screen re-fetch the area.
    area = animator.locator("#board-area").element_handle()
    animator.locator("#controls button[name=results_visible][value='1']").click()
    expect(animator.locator("#controls button[name=results_visible][value='0']")).to_be_visible(
        timeout=LIVE)
    expect(animator.locator("#results")).to_be_visible()
    assert area is not None
    assert not area.evaluate("el => el.isConnected"), "#board-area was not swapped"
    for selector, text in typed.items():
        expect(animator.locator(selector)).to_have_value(text)

    # 2. A settings change made elsewhere (the API, another tab) refreshes it again.
    response = httpx.patch(f"{server.url}/api/v1/boards/{board['join_code']}",
                           json={"results_visible": False},
                           headers=auth(board["animator_token"]), timeout=10)
    assert response.status_code == 200, response.text
    expect(animator.locator("#controls button[name=results_visible][value='1']")).to_be_visible(
        timeout=LIVE)
    for selector, text in typed.items():
        expect(animator.locator(selector)).to_have_value(text)

    # 3. Still nothing saved: the server's draft is empty, until the animator saves.
    fresh = open_page("animator-2", **LAPTOP)
    fresh.goto(board["urls"]["animator"])
    expect(fresh.locator(f"#notes-{cols['Constats']}")).to_have_value("")
    animator.locator("#synthesis-panel button[name=action][value=save]").click()
    expect(animator.locator("#flash")).to_contain_text("Enregistré")
    fresh.reload()
    for selector, text in typed.items():
        expect(fresh.locator(selector)).to_have_value(text)
    assert_not_reloaded(animator)
    console.assert_no_errors()


# --- the standalone synthesis page -----------------------------------------------------------


def test_synthesis_page_is_styled_under_its_csp_and_shows_markup_as_text(
    module_server: LiveServer, open_page: OpenPage, console: ConsoleLog, artifacts: Path,
) -> None:
    """/s/<slug>: no script, inline style allowed by its hash (so styled, no CSP error), a
    card holding markup shown as text, no dialog, readable on a phone and a laptop."""
    server = module_server
    xss = "<script>alert(1)</script>"
    board = new_board(server, "Ingénierie territoriale",
                      "Quelle ingénierie pour accompagner les transitions ?")
    cols = columns_of(board)
    long_word = "https://www.exemple-de-territoire.fr/ressources/" + "ingenierie-" * 12
    fill_board(server, board, [
        ("Constats", "Des élus qui manquent d'ingénierie dans les petites communes"),
        ("Constats", xss),
        ("Enjeux", "Articuler les dynamiques locales et régionales"),
        ("Besoins", f"Une boîte à outils partagée {long_word}"),
        ("Besoins", '<img src=x onerror="alert(2)"> Des formations-actions'),
    ], voters=3)
    version = freeze(server, board, {
        str(cols["Constats"]): "- Ingénierie **inégalement répartie**\n- <b>pas</b> de HTML",
        str(cols["Besoins"]): "Mutualiser à l'échelle du bassin de vie.",
    }, "Créer un centre de ressources partagé entre intercommunalités.")
    assert version["version"] == 1
    url = version["urls"]["html"].removesuffix(".html")
    assert SLUG.search(url), url

    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    for label, options in (("synthesis-phone", PHONE), ("synthesis-laptop", LAPTOP)):
        page = open_page(label, **options)
        page.on("dialog", on_dialog)
        response = page.goto(url)
        assert response is not None and response.status == 200
        csp = response.headers.get("content-security-policy", "")
        assert "default-src 'none'" in csp and "script-src" not in csp, csp
        expect(page.locator("h1")).to_have_text("Ingénierie territoriale")
        expect(page.locator("script")).to_have_count(0)
        expect(page.locator("img")).to_have_count(0)
        card = page.locator("ul.cards li", has_text="alert(1)")
        expect(card).to_have_count(1)
        assert card.inner_text().startswith(xss)
        expect(page.locator("ul.cards li", has_text="onerror")).to_contain_text(
            '<img src=x onerror="alert(2)"> Des formations-actions')
        # Markdown notes: bold rendered, raw HTML escaped.
        retained = page.locator(f"#col-{cols['Constats']} .retained")
        expect(retained.locator("strong")).to_have_text("inégalement répartie")
        expect(retained.locator("b")).to_have_count(0)
        expect(retained).to_contain_text("<b>pas</b> de HTML")
        # The inline stylesheet applied (refused by the CSP, these would be UA defaults).
        style = page.evaluate("""() => {
            const body = getComputedStyle(document.body), h1 = document.querySelector('h1');
            return {maxWidth: body.maxWidth, font: body.fontFamily,
                    h1: getComputedStyle(h1).fontSize,
                    header: getComputedStyle(document.querySelector('header')).borderBottomStyle};
        }""")
        assert style["maxWidth"] != "none", style
        assert style["h1"] == "28.8px", style  # 1.8rem, not the UA's 2em (32px)
        assert style["header"] == "solid", style
        assert "system-ui" in style["font"], style
        # Priorities from the vote: the most voted card first.
        expect(page.locator("ol.ranking li").first).to_contain_text(
            "Des élus qui manquent d'ingénierie")
        assert_no_horizontal_overflow(page)
        shot(page, artifacts / f"{label}.png".replace("synthesis-", "synthesis-page-"))
        # The download links in the document resolve next to it.
        for fmt in ("md", "csv", "json"):
            link = page.locator(f".exports a[data-fmt={fmt}]")
            target = httpx.get(f"{server.url}/s/{link.get_attribute('href')}", timeout=10)
            assert target.status_code == 200, (fmt, target.text[:200])

    page.wait_for_timeout(300)  # a late dialog or CSP report would show up by now
    assert not dialogs, dialogs
    assert not [e for e in console.entries if csp_entry(e)], console.entries
    console.assert_no_errors()


# --- the day's synthesis, live in the plenary ------------------------------------------------


EVENT_ATELIERS: list[dict[str, Any]] = [
    {"title": "Gouvernance et coopération", "slot": "14h00", "room": "Salle Jean Jaurès",
     "question": "Comment coopérer entre acteurs d'un même territoire ?",
     "cards": [("Constats", "Les coopérations intercommunales restent fragiles"),
               ("Constats", "Beaucoup de réunions, peu de décisions partagées"),
               ("Enjeux", "Associer les habitants aux choix du tiers-lieu"),
               ("Besoins", "Une charte de gouvernance partagée")]},
    {"title": "Économie sociale et solidaire", "slot": "14h00", "room": "Salle des fêtes",
     "question": "Quels modèles économiques pour les tiers-lieux ?",
     "cards": [("Constats", "Des tiers-lieux très dépendants des subventions"),
               ("Enjeux", "Hybrider les ressources : ventes, services, adhésions"),
               ("Besoins", "Un fonds d'amorçage régional"),
               ("Besoins", "Former les bénévoles à la gestion")]},
    {"title": "Participation citoyenne", "slot": "15h30", "room": "Médiathèque",
     "question": "Comment faire vivre le pouvoir d'agir des habitants ?",
     "cards": [("Constats", "Toujours les mêmes personnes mobilisées"),
               ("Enjeux", "Aller vers les publics éloignés"),
               ("Besoins", "Des temps d'échange en soirée")]},
]


def test_event_synthesis_fills_in_live_and_the_organiser_freezes_it(
    module_server: LiveServer, open_page: OpenPage, console: ConsoleLog, artifacts: Path,
) -> None:
    """Three ateliers of a day: two frozen side by side, the third listed as pending, then
    arriving on the plenary's page by itself; the organiser freezes the day's synthesis."""
    server = module_server
    response = httpx.post(f"{server.url}/api/v1/events",
                          json={"title": "Journée des tiers-lieux"}, timeout=10)
    assert response.status_code == 201, response.text
    event = response.json()
    boards = []
    for spec in EVENT_ATELIERS:
        created = httpx.post(
            f"{server.url}/api/v1/events/{event['id']}/boards",
            headers=auth(event["organiser_token"]), timeout=10,
            json={"title": spec["title"], "question": spec["question"], "template": TEMPLATE,
                  "slot": spec["slot"], "room": spec["room"]})
        assert created.status_code == 201, created.text
        board = created.json()
        fill_board(server, board, spec["cards"], voters=3)
        set_phase(server, board, "restitution")
        boards.append(board)
    for board, conclusion in zip(boards[:2], (
            "Écrire ensemble une **charte** de coopération.",
            "Construire un modèle économique hybride."), strict=True):
        cols = columns_of(board)
        freeze(server, board, {str(cols["Constats"]): "Un constat partagé par tous."},
               conclusion)

    # The organiser's link sets the cookie that shows the freeze button.
    laptop = open_page("plenary-laptop", **LAPTOP)
    laptop.goto(event["urls"]["dashboard"])
    expect(laptop).to_have_url(re.compile(rf"/e/{event['id']}/dashboard$"))
    laptop.goto(f"{server.url}/e/{event['id']}/synthesis")
    projector = open_page("plenary-projector", **PROJECTOR)
    projector.goto(f"{server.url}/e/{event['id']}/synthesis")
    for page in (laptop, projector):
        mark_page(page)
        expect(page.locator("h1")).to_have_text("Journée des tiers-lieux")
        cards = page.locator("#event-synthesis .ateliers article.atelier")
        expect(cards.locator("h3")).to_have_text([a["title"] for a in EVENT_ATELIERS[:2]])
        expect(cards.first.locator(".conclusion strong")).to_have_text("charte")
        expect(cards.first.locator("p.by")).to_contain_text("Salle Jean Jaurès")
        expect(page.get_by_role("heading", name="Les ateliers côte à côte")).to_be_visible()
        pending = page.locator("section[aria-labelledby=pending-title]")
        expect(pending.locator("h2")).to_have_text("Pas encore figés")
        expect(pending.locator("li")).to_have_text([re.compile("^Participation citoyenne")])
    # Side by side: same top, the second to the right of the first.
    first, second = (laptop.locator("article.atelier").nth(i).bounding_box() for i in (0, 1))
    assert first and second
    assert abs(first["y"] - second["y"]) < 2 and second["x"] > first["x"] + first["width"] - 1
    expect(projector.locator("article.atelier")).to_have_count(2)
    expect(laptop.get_by_role("button", name="Figer la synthèse de la journée")).to_be_visible()
    expect(projector.get_by_role("button", name="Figer la synthèse de la journée")
           ).to_have_count(0)
    assert_no_horizontal_overflow(laptop)
    assert_no_horizontal_overflow(projector)

    # The third atelier freezes during the plenary: both pages show it within ~15 s.
    cols = columns_of(boards[2])
    freeze(server, boards[2], {str(cols["Besoins"]): "Des horaires adaptés aux habitants."},
           "Aller vers les habitants là où ils sont.")
    started = time.monotonic()
    for page in (laptop, projector):
        expect(page.locator("article.atelier h3")).to_have_text(
            [a["title"] for a in EVENT_ATELIERS], timeout=EVENT_REFRESH)
        expect(page.locator("section[aria-labelledby=pending-title]")).to_have_count(0)
    assert time.monotonic() - started < EVENT_REFRESH / 1000
    assert_not_reloaded(laptop)
    assert_not_reloaded(projector)
    shot(laptop, artifacts / "event-synthesis-laptop.png")
    shot(projector, artifacts / "event-synthesis-projector.png")

    laptop.get_by_role("button", name="Figer la synthèse de la journée").click()
    expect(laptop).to_have_url(re.compile(r"/s/[A-Za-z0-9_-]+$"))
    expect(laptop.locator("h1")).to_have_text("Journée des tiers-lieux")
    expect(laptop.locator("article.atelier")).to_have_count(3)
    expect(laptop.locator("script")).to_have_count(0)
    style = laptop.evaluate("getComputedStyle(document.body).maxWidth")
    assert style != "none", style
    console.assert_no_errors()


# --- the archive -----------------------------------------------------------------------------


def test_archive_lists_frozen_syntheses_and_finds_words_without_accents(
    module_server: LiveServer, open_page: OpenPage, console: ConsoleLog, artifacts: Path,
) -> None:
    """/archive lists the syntheses; searching “coopération” finds a card written
    “Les cooperations intercommunales” (accents and plural folded), linked to its anchor."""
    server = module_server
    title = f"Coopérations territoriales {uuid.uuid4().hex[:4]}"
    board = new_board(server, title, "Où en sont les coopérations entre collectivités ?")
    posted = fill_board(server, board, [
        ("Constats", "Les cooperations intercommunales"),
        ("Enjeux", "Partager l'ingénierie entre communes rurales"),
    ])
    version = freeze(server, board, {}, "")
    slug = SLUG.search(version["urls"]["html"].removesuffix(".html"))
    assert slug

    page = open_page("archive", **LAPTOP)
    page.goto(f"{server.url}/archive")
    expect(page.locator("h1")).to_have_text("Archives des synthèses")
    row = page.locator("table.archive tbody tr", has_text=title)
    expect(row).to_have_count(1)
    expect(row.get_by_role("link", name=title)).to_have_attribute("href", f"/s/{slug.group(1)}")
    expect(row).to_contain_text("v1")

    page.locator("#q").fill("coopération")
    page.locator("form.search button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/archive\?q=coop%C3%A9ration$"))
    expect(page.locator("#q")).to_have_value("coopération")
    result = page.locator("ul.search-results li", has_text="Les cooperations intercommunales")
    expect(result).to_have_count(1)
    expect(result).to_contain_text(title)
    link = result.locator("a")
    href = link.get_attribute("href") or ""
    assert href.startswith(f"/s/{slug.group(1)}#"), href
    shot(page, artifacts / "archive-laptop.png")
    assert_no_horizontal_overflow(page)
    link.click()
    expect(page).to_have_url(re.compile(rf"/s/{slug.group(1)}#"))
    anchor = href.split("#", 1)[1]
    expect(page.locator(f"[id='{anchor}']")).to_contain_text(posted[0]["text"])

    page.goto(f"{server.url}/archive?q=zzzzqqq")
    expect(page.get_by_role("heading", name="0 résultat pour « zzzzqqq »")).to_be_visible()
    expect(page.get_by_text("Aucun résultat. Essayez un autre mot")).to_be_visible()
    expect(page.locator("ul.search-results")).to_have_count(0)
    console.assert_no_errors()


def test_archive_search_result_of_a_note_shows_no_markdown_syntax(
    module_server: LiveServer, open_page: OpenPage,
) -> None:
    """A conclusion written in Markdown is found by the search and listed as plain text."""
    server = module_server
    board = new_board(server, "Alimentation locale")
    fill_board(server, board, [("Constats", "Des cantines qui achètent loin")])
    freeze(server, board, {}, "Signer une **charte** d'approvisionnement en circuit court.")

    page = open_page("archive-markdown", **LAPTOP)
    page.goto(f"{server.url}/archive?q=approvisionnement")
    result = page.locator("ul.search-results li", has_text="approvisionnement")
    expect(result).to_have_count(1)
    expect(result.locator("a")).to_have_text(
        "Signer une charte d'approvisionnement en circuit court.")
