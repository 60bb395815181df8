"""End to end: a whole atelier, from the home page to the restitution, in Debian chromium.

One animator (laptop), one projector (1080p) and five phones go through every phase:
silent writing, reveal, grouping into themes (toolbar, drag and drop, merge), dot vote,
results and restitution. Each step is checked on the screens concerned, live, without reload.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.conftest import LiveServer
from tests.e2e.conftest import LAPTOP, PHONE, PROJECTOR, ConsoleLog, OpenPage
from tests.e2e.test_live_board import LIVE, board_seq, expect_live, expect_seq, mark_page

TITLE = "Le vélo au quotidien"
QUESTION = "Qu'est-ce qui freine ou favorise le vélo pour aller au travail ?"
TEMPLATE = "freins-leviers"
FREINS, LEVIERS, CONDITIONS = "Freins", "Leviers", "Conditions de réussite"

# What each of the five phones writes during the silent writing: (column, text), two each.
PISTES = "Pistes cyclables discontinues"
DUPLICATE = "Des pistes qui s'arrêtent net"  # merged into PISTES while grouping
PEUR = "Peur de la circulation"
VOLS = "Vols de vélos fréquents"
COTES = "Côtes difficiles"
NUIT = "Rues mal éclairées la nuit"  # dragged into a theme (SortableJS)
GARAGES = "Garages à vélos sécurisés"
PRIME = "Prime à l'achat"
ATELIERS = "Ateliers de réparation"
BUDGET = "Un budget voté sur cinq ans"
WRITES: list[list[tuple[str, str]]] = [
    [(FREINS, PISTES), (LEVIERS, GARAGES)],
    [(FREINS, PEUR), (CONDITIONS, BUDGET)],
    [(FREINS, DUPLICATE), (LEVIERS, ATELIERS)],
    [(FREINS, VOLS), (LEVIERS, PRIME)],
    [(FREINS, COTES), (FREINS, NUIT)],
]
ALL_TEXTS = [text for cards in WRITES for _, text in cards]

AMENAGEMENTS, SECURITE = "Aménagements", "Sécurité"  # themes of the Freins column
BY_TOOLBAR = {AMENAGEMENTS: [PISTES, COTES], SECURITE: [PEUR, VOLS]}

# The dots each phone puts (budget 3), as ("theme" | "card", title or text). The totals are
# all different so that the ranking has a single right order.
VOTE_BUDGET = 3
VOTES: list[list[tuple[str, str]]] = [
    [("theme", SECURITE), ("card", PISTES), ("theme", AMENAGEMENTS)],
    [("theme", SECURITE), ("card", PISTES), ("theme", AMENAGEMENTS)],
    [("theme", SECURITE), ("card", PISTES), ("theme", AMENAGEMENTS)],
    [("theme", SECURITE), ("card", PISTES), ("card", PRIME)],
    [("theme", SECURITE), ("card", GARAGES), ("card", GARAGES)],
]


# --- helpers ---------------------------------------------------------------------------------


def settle(server: LiveServer, code: str, *pages: Page) -> None:
    """Every page has received every event so far: what is absent now will not come later."""
    seq = board_seq(server, code)
    for page in pages:
        expect_seq(page, seq)


def assert_not_reloaded(*pages: Page) -> None:
    for page in pages:
        assert page.evaluate("window.__e2eNoReload === true"), f"{page.url} was reloaded"


def shoot(artifacts: Path, phase: str, **pages: Page) -> None:
    for who, page in pages.items():
        # The projector is shot as the room sees it (no scrolling); the others whole.
        # caret="initial": hiding the caret makes Playwright leave style="" on every input,
        # which htmx's settle step then copies with setAttribute("style") at the next swap:
        # the CSP (style-src 'self') refuses it and logs an error the app did not cause.
        page.screenshot(path=artifacts / f"atelier-{phase}-{who}.png",
                        full_page=who != "projector", animations="disabled", caret="initial")


def press(animator: Page, selector: str) -> None:
    """Press one of the animator's console buttons; the console answers into #flash."""
    animator.locator(f"#controls {selector}").click()
    expect(animator.locator("#flash .error")).to_have_count(0)


def card_texts(page: Page, container: str) -> Locator:
    return page.locator(f"{container} article.card .card-text")


def status_changed(page: Page, before: str) -> None:
    expect(page.locator("#board-status")).not_to_have_text(before, timeout=LIVE)


def ballot_left(page: Page, n: int) -> None:
    expect(page.locator("#ballot p").first).to_contain_text(re.compile(rf"(?<!\d){n}(?!\d)"),
                                                           timeout=LIVE)


# --- the atelier -----------------------------------------------------------------------------


@pytest.mark.e2e
def test_whole_atelier_from_silent_writing_to_restitution(
    server: LiveServer, open_page: OpenPage, console: ConsoleLog, artifacts: Path,
) -> None:
    """An animator, a projector and five phones run a whole atelier, every phase checked live."""
    # App bugs met on the way that do not stop the atelier: reported at the end, so that the
    # later phases are still checked and shot.
    deferred: list[str] = []

    # --- the animator creates the board from the home page --------------------------------
    animator = open_page("animator", **LAPTOP)
    animator.goto(server.url + "/")
    create = animator.locator("form[action='/boards']")
    create.locator("#title").fill(TITLE)
    create.locator("#question").fill(QUESTION)
    create.locator(f"input[name=template][value='{TEMPLATE}']").check()
    expect(create.locator("input[name=anonymous]")).to_be_checked()
    create.locator("button[type=submit]").click()

    expect(animator.locator("#animator-link")).to_be_visible()
    code = animator.locator("#join-code").inner_text().strip()
    participant_url = animator.locator("#participant-link").get_attribute("href")
    projector_url = animator.locator("#projector-link").get_attribute("href")
    assert participant_url and projector_url
    animator.locator("#animator-link").click()
    expect(animator).to_have_url(re.compile(rf"/b/{code}/animator$"))  # key traded for a cookie
    expect_live(animator)
    columns: dict[str, int] = {
        title: int(cid) for title, cid in animator.locator("#board section.column").evaluate_all(
            "els => els.map(e => [e.querySelector('h2').textContent.trim(),"
            " e.id.replace('col-', '')])")}
    assert list(columns) == [FREINS, LEVIERS, CONDITIONS]

    projector = open_page("projector", **PROJECTOR)
    projector.goto(projector_url)
    expect(projector.locator("#join-code")).to_have_text(code)
    expect_live(projector)

    phones: list[Page] = []
    for i in range(5):
        phone = open_page(f"phone-{i + 1}", **PHONE)
        phone.goto(participant_url)
        expect(phone.locator("#name")).to_have_count(0)  # anonymous: nothing to fill in
        phone.locator("form.join-form button[type=submit]").tap()
        expect(phone.locator("#post-form")).to_be_visible()
        expect_live(phone)
        phones.append(phone)
    phone = phones[0]  # the one in the screenshots
    screens = [animator, projector, *phones]
    for page in screens:
        mark_page(page)
    expect(animator.locator("#presence")).to_contain_text("5", timeout=LIVE)

    # --- 1. collecte, silent writing ------------------------------------------------------
    expect(animator.locator("button[name=phase][value=collecte]")).to_have_attribute(
        "aria-pressed", "true")
    before = phone.locator("#board-status").inner_text()
    press(animator, "button[name=silent][value='1']")
    expect(animator.locator("#controls button[name=silent][value='0']")).to_be_visible()
    for page in phones:
        status_changed(page, before)

    for page, cards in zip(phones, WRITES, strict=True):
        for k, (column, text) in enumerate(cards):
            page.locator("#post-form label.chip", has_text=column).tap()
            expect(page.locator(f"#post-form input[name=column_id][value='{columns[column]}']")
                   ).to_be_checked()
            page.locator("#card-text").fill(text)
            page.locator("#post-form button[type=submit]").tap()
            expect(card_texts(page, "#board")).to_have_text(
                [t for _, t in cards[:k + 1]], timeout=LIVE)
            expect(page.locator("#card-text")).to_have_value("")

    expect(card_texts(animator, "#board")).to_have_count(10, timeout=LIVE)
    for text in ALL_TEXTS:
        expect(card_texts(animator, "#board").filter(has_text=text)).to_have_count(1)
    settle(server, code, *screens)
    for page, cards in zip(phones, WRITES, strict=True):
        expect(card_texts(page, "#board")).to_have_text([t for _, t in cards])
    expect(projector.locator("article.card")).to_have_count(0)
    for text in ALL_TEXTS:
        expect(projector.locator("main")).not_to_contain_text(text)
    assert_not_reloaded(*screens)
    shoot(artifacts, "collecte", animator=animator, projector=projector, phone=phone)

    ids: dict[str, int] = {
        text: int(cid) for cid, text in animator.locator("#board article.card").evaluate_all(
            "els => els.map(e => [e.dataset.card,"
            " e.querySelector('.card-text').textContent.trim()])")}
    assert sorted(ids) == sorted(ALL_TEXTS)

    # --- 2. reveal ------------------------------------------------------------------------
    press(animator, "button[name=silent][value='0']")
    expect(animator.locator("#controls button[name=silent][value='1']")).to_be_visible()
    by_column = {column: [t for t in sorted(ALL_TEXTS, key=ids.__getitem__)
                          if any((column, t) in cards for cards in WRITES)]
                 for column in columns}
    for page in [projector, *phones]:
        expect(page.locator("#board article.card")).to_have_count(10, timeout=LIVE)
        for column, texts in by_column.items():
            expect(card_texts(page, f"#cards-{columns[column]}")).to_have_text(texts)
    assert_not_reloaded(*screens)
    shoot(artifacts, "reveal", animator=animator, projector=projector, phone=phone)

    # --- 3. regroupement: themes, toolbar moves, drag and drop, merge ---------------------
    before = phone.locator("#board-status").inner_text()
    press(animator, "button[name=phase][value=regroupement]")
    expect(animator.locator("button[name=phase][value=regroupement]")).to_have_attribute(
        "aria-pressed", "true")
    for page in phones:
        status_changed(page, before)

    themes: dict[str, int] = {}
    for title in (AMENAGEMENTS, SECURITE):
        animator.locator("#theme-title").fill(title)
        animator.locator("#theme-column").select_option(str(columns[FREINS]))
        animator.locator("#controls form.new-theme button[type=submit]").click()
        theme = animator.locator(f"#themes-{columns[FREINS]} section.theme", has_text=title)
        expect(theme).to_have_count(1, timeout=LIVE)
        themes[title] = int(theme.get_attribute("data-key") or 0)
        expect(animator.locator(f"#move-target option[value='theme-{themes[title]}']")
               ).to_have_count(1)

    for title, texts in BY_TOOLBAR.items():
        for text in texts:
            animator.locator(f"input[name=card_id][value='{ids[text]}']").check()
            animator.locator("#move-target").select_option(f"theme-{themes[title]}")
            animator.locator("#toolbar button[name=action][value=move]").click()
            expect(animator.locator(f"#theme-cards-{themes[title]} #card-{ids[text]}")
                   ).to_have_count(1, timeout=LIVE)
            expect(animator.locator("#flash .error")).to_have_count(0)

    # Drag and drop (SortableJS, native HTML5 drag in Chromium) of one card into a theme.
    # Dropped in the theme's free space below its last card: SortableJS then appends it.
    # (Dropped on the middle of a card, SortableJS wants a swap gesture and does nothing.)
    drop = animator.locator(f"#theme-cards-{themes[SECURITE]}")
    box = drop.bounding_box()
    assert box is not None
    animator.locator(f"#card-{ids[NUIT]} .card-text").drag_to(
        drop, target_position={"x": box["width"] / 2, "y": box["height"] - 4})
    expect(animator.locator(f"#theme-cards-{themes[SECURITE]} #card-{ids[NUIT]}")
           ).to_have_count(1, timeout=LIVE)

    # Merge the duplicate into the first card about cycle lanes.
    animator.locator(f"input[name=card_id][value='{ids[DUPLICATE]}']").check()
    animator.locator("#merge-into").fill(str(ids[PISTES]))
    animator.locator("#toolbar button[name=action][value=merge]").click()
    expect(animator.locator(f"#card-{ids[DUPLICATE]}")).to_have_count(0, timeout=LIVE)
    expect(animator.locator(f"#card-{ids[PISTES]} ul.merged li")).to_have_text([DUPLICATE])
    expect(animator.locator("#flash .error")).to_have_count(0)

    grouped = {AMENAGEMENTS: [PISTES, COTES], SECURITE: [PEUR, VOLS, NUIT]}
    for page in [projector, *phones, animator]:
        for title, texts in grouped.items():
            theme = page.locator(f"#theme-{themes[title]}")
            expect(theme.locator("h3")).to_have_text(title, timeout=LIVE)
            expect(card_texts(page, f"#theme-cards-{themes[title]}")).to_have_text(
                texts, timeout=LIVE)
        expect(page.locator(f"#card-{ids[PISTES]} ul.merged li")).to_have_text([DUPLICATE])
        expect(page.locator(f"#card-{ids[DUPLICATE]}")).to_have_count(0)
        expect(card_texts(page, f"#cards-{columns[FREINS]}")).to_have_count(0)
        expect(page.locator("#board article.card")).to_have_count(9)
    settle(server, code, *screens)
    expect(animator.locator("#flash")).to_have_text("")  # the drag's own post went through
    assert_not_reloaded(*screens)
    shoot(artifacts, "regroupement", animator=animator, projector=projector, phone=phone)

    # --- 4. vote --------------------------------------------------------------------------
    animator.locator("#vote-budget").fill(str(VOTE_BUDGET))
    animator.locator("#controls form:has(#vote-budget) button[type=submit]").click()
    expect(animator.locator("#vote-budget")).to_have_value(str(VOTE_BUDGET))
    press(animator, "button[name=phase][value=vote]")
    expect(animator.locator("button[name=phase][value=vote]")).to_have_attribute(
        "aria-pressed", "true")

    def key(kind: str, name: str) -> str:
        return f"t{themes[name]}" if kind == "theme" else f"c{ids[name]}"

    def plus(page: Page, kind: str, name: str) -> Locator:
        item = (f"#theme-{themes[name]} > .theme-head" if kind == "theme"
                else f"#card-{ids[name]}")
        return page.locator(f"{item} form.vote-form button[value=add]")

    totals: Counter[tuple[str, str]] = Counter(dot for dots in VOTES for dot in dots)
    ranking = totals.most_common()
    assert len(set(totals.values())) == len(totals)  # one right order

    for page in phones:
        ballot_left(page, VOTE_BUDGET)
    for page, dots in zip(phones, VOTES, strict=True):
        mine: Counter[str] = Counter()
        for n, (kind, name) in enumerate(dots, start=1):
            plus(page, kind, name).tap()
            mine[key(kind, name)] += 1
            ballot_left(page, VOTE_BUDGET - n)
            expect(page.locator(f"[data-mine='{key(kind, name)}']")).to_have_text(
                "●" * mine[key(kind, name)])
            expect(page.locator("#ballot .error")).to_have_count(0)
    ballot_left(phone, 0)

    # A fourth dot is refused, and the ballot says why.
    plus(phone, "card", ATELIERS).tap()
    expect(phone.locator("#ballot .error[role=alert]")).to_be_visible(timeout=LIVE)
    expect(phone.locator("#ballot .error")).to_contain_text(str(VOTE_BUDGET))
    ballot_left(phone, 0)
    expect(phone.locator(f"[data-mine='c{ids[ATELIERS]}']")).to_have_text("")

    settle(server, code, *screens)
    for (kind, name), n in totals.items():  # the animator counts live
        expect(animator.locator(f"#votes-{key(kind, name)}")).to_have_text(str(n))
    try:  # ... and the ranked list above the board too ("live counts always", README)
        expect(animator.locator("#results ol > li > .votes")).to_have_text(
            [str(n) for _, n in ranking], timeout=LIVE)
    except AssertionError:
        seen = " / ".join(animator.locator("#results").inner_text().split("\n"))
        deferred.append(f"vote phase, results hidden: the animator's #results stays stale "
                        f"({seen!r}) while the counts on the cards say {dict(totals)}")
    for page in [projector, *phones]:  # nobody else sees counts yet
        expect(page.locator(".votes")).to_have_count(0)
        expect(page.locator("#results")).to_have_count(0)
    assert_not_reloaded(*screens)
    shoot(artifacts, "vote", animator=animator, projector=projector, phone=phone)

    # --- 5. results -----------------------------------------------------------------------
    press(animator, "button[name=results_visible][value='1']")
    expect(animator.locator("#controls button[name=results_visible][value='0']")).to_be_visible()

    def expect_results(page: Page) -> None:
        items = page.locator("#results ol > li")
        expect(items).to_have_count(len(ranking), timeout=LIVE)
        expect(items.locator("> .votes")).to_have_text([str(n) for _, n in ranking])
        expect(items.locator("> span[hx-ignore]")).to_have_text([name for (_, name), _ in ranking])

    expect_results(projector)
    for (kind, name), n in totals.items():
        expect(projector.locator(f"#votes-{key(kind, name)}")).to_have_text(str(n))
    expect(projector.locator(f"#votes-c{ids[ATELIERS]}")).to_have_text("0")
    assert_not_reloaded(*screens)
    shoot(artifacts, "results", animator=animator, projector=projector, phone=phone)

    # --- 6. restitution -------------------------------------------------------------------
    befores = {page: page.locator("#board-status").inner_text() for page in [projector, *phones]}
    press(animator, "button[name=phase][value=restitution]")
    status_changed(projector, befores[projector])
    expect_results(projector)
    for title, texts in grouped.items():
        expect(projector.locator(f"#theme-{themes[title]} h3")).to_have_text(title)
        expect(projector.locator(f"#theme-{themes[title]} h3")).to_be_visible()
        expect(card_texts(projector, f"#theme-cards-{themes[title]}")).to_have_text(texts)
        expect(projector.locator(f"#votes-t{themes[title]}")).to_have_text(
            str(totals["theme", title]))
    for page in phones:
        status_changed(page, befores[page])
        expect(page.locator("form.vote-form")).to_have_count(0)
    assert_not_reloaded(*screens)
    shoot(artifacts, "restitution", animator=animator, projector=projector, phone=phone)
    projector.screenshot(path=artifacts / "atelier-restitution-projector-full.png",
                         full_page=True, animations="disabled", caret="initial")

    # Checked last, so that every screenshot exists even when this fails.
    errors = console.errors()
    grouped_errors = Counter(f"[{e.page}] {e.kind}: {e.text[:160]} ({e.url})" for e in errors)
    deferred += [f"console error, {n} ×: {text}" for text, n in grouped_errors.most_common()]
    assert not deferred, "\n".join(deferred)
