"""End to end: the people in the room, not only the average phone user.

Keyboard-only participants and animators (focus always visible), one-thumb posting, touch
targets, 200 % text, easy-to-read wording (FALC), the accessibility statement and the choice
of language. Debian chromium, French UI unless said.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer
from tests.e2e.conftest import LAPTOP, PHONE, PROJECTOR, ConsoleLog, OpenPage
from tests.e2e.test_live_board import (
    LIVE,
    api_participant,
    api_post_card,
    card_in,
    expect_live,
    join,
)

pytestmark = pytest.mark.e2e

TEMPLATE = "constats-enjeux-besoins"


# --- helpers ---------------------------------------------------------------------------------


def make_board(server: LiveServer, *, anonymous: bool = False) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/api/v1/boards", timeout=10, json={
        "title": "Coopération", "question": "Comment mieux coopérer ?",
        "template": TEMPLATE, "anonymous": anonymous})
    assert response.status_code == 201, response.text
    board: dict[str, Any] = response.json()
    return board


def patch_board(server: LiveServer, board: dict[str, Any], **settings: Any) -> None:
    response = httpx.patch(f"{server.url}/api/v1/boards/{board['join_code']}",
                           headers={"Authorization": f"Bearer {board['animator_token']}"},
                           json=settings, timeout=10)
    assert response.status_code == 200, response.text


def ballot_left(page: Page, n: int) -> None:
    expect(page.locator("#ballot p").first).to_have_text(
        f"Il vous reste {n} point" + ("s" if n > 1 else ""), timeout=LIVE)


# What the focused element is, and whether a sighted keyboard user can see where focus is.
FOCUS = """() => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  let what = el.tagName.toLowerCase();
  if (el.id) what += '#' + el.id;
  else {
    if (el.getAttribute('name')) what += `[name=${el.getAttribute('name')}]`;
    if (el.getAttribute('value') && el.tagName !== 'TEXTAREA')
      what += `[value=${el.getAttribute('value')}]`;
    if (typeof el.className === 'string' && el.className.trim())
      what += '.' + el.className.trim().split(/\\s+/).join('.');
  }
  // A visually hidden radio (the column chips) shows its focus on the pill right after it.
  const shown = (el.matches('input[type=radio]') && getComputedStyle(el).opacity === '0'
                 && el.nextElementSibling) ? el.nextElementSibling : el;
  const cs = getComputedStyle(shown);
  const outline = cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) > 0
    ? `${cs.outlineStyle} ${cs.outlineWidth} ${cs.outlineColor}` : null;
  const shadow = cs.boxShadow !== 'none' ? cs.boxShadow : null;
  const r = shown.getBoundingClientRect();
  const onScreen = r.width > 0 && r.height > 0 && r.right > 0 && r.bottom > 0
                   && r.left < innerWidth && r.top < innerHeight;
  const text = (el.innerText || el.value || el.getAttribute('aria-label') || '')
    .replace(/\\s+/g, ' ').trim().slice(0, 40);
  return {what, text, outline, shadow, onScreen, focusVisible: el.matches(':focus-visible')};
}"""


class Keyboard:
    """Drives a page with page.keyboard only, and notes every element that gets focus."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.seen: list[dict[str, Any]] = []

    def focused(self) -> dict[str, Any] | None:
        info: dict[str, Any] | None = self.page.evaluate(FOCUS)
        if info is not None:
            self.seen.append(info)
        return info

    def press(self, key: str) -> dict[str, Any] | None:
        self.page.keyboard.press(key)
        return self.focused()

    def type(self, text: str) -> None:
        self.page.keyboard.type(text)

    def on(self, selector: str) -> bool:
        return bool(self.page.evaluate(
            "s => !!document.activeElement && document.activeElement.matches(s)", selector))

    def expect_on(self, selector: str) -> None:
        assert self.on(selector), f"focus is on {self.page.evaluate(FOCUS)}, not {selector}"

    def tab_to(self, selector: str, *, back: bool = False, limit: int = 120) -> None:
        path = []
        for _ in range(limit):
            info = self.press("Shift+Tab" if back else "Tab")
            path.append(info["what"] if info else "body")
            if self.on(selector):
                return
        raise AssertionError(f"{selector} not reached with {'Shift+' if back else ''}Tab in "
                             f"{limit} presses; focus went: {' > '.join(path)}")

    def arrow_to_radio(self, value: str, limit: int = 30) -> None:
        """In a radio group, arrow keys move focus and check: go down until value is focused."""
        for _ in range(limit):
            if self.on(f"input[type=radio][value='{value}']"):
                return
            self.press("ArrowDown")
        raise AssertionError(f"radio {value} not reached with the arrow keys")

    def invisible_focus(self) -> list[str]:
        bad: dict[str, str] = {}
        for info in self.seen:
            why = []
            if not info["outline"] and not info["shadow"]:
                why.append("no outline nor box-shadow")
            if not info["onScreen"]:
                why.append("off screen")
            if why:
                bad[info["what"]] = f"{info['what']} «{info['text']}»: {', '.join(why)}"
        return list(bad.values())


def hidden_from_screen_readers_missing(page: Page) -> list[str]:
    """Pictograms (emoji) outside an aria-hidden="true" element (user content left out)."""
    bad: list[str] = page.evaluate("""() => {
      const re = /\\p{Extended_Pictographic}/u, bad = [];
      const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      while (walker.nextNode()) {
        const node = walker.currentNode, host = node.parentElement;
        if (!re.test(node.data) || host.closest('[aria-hidden=true], [hx-ignore], script, style'))
          continue;
        bad.push(host.outerHTML.slice(0, 160));
      }
      return bad;
    }""")
    return bad


def pictograms(page: Page) -> int:
    """Drawn pictograms and step numbers, hidden from screen readers (the words say it all),
    and actually drawn (not an empty box)."""
    count: int = page.evaluate("""() => [...document.querySelectorAll(
        'svg.picto[aria-hidden=true], .step[aria-hidden=true]')]
        .filter(e => e.getBoundingClientRect().width >= 12).length""")
    return count


# --- 1-3. keyboard only ----------------------------------------------------------------------


@pytest.mark.parametrize("device", ["phone", "laptop"])
def test_keyboard_only_posting(device: str, module_server: LiveServer, open_page: OpenPage,
                               console: ConsoleLog) -> None:
    """Join, choose the 2nd column with the arrow keys, write and post: keyboard only."""
    board = make_board(module_server)
    columns = [c["id"] for c in board["columns"]]
    page = open_page("participant", **(PHONE if device == "phone" else LAPTOP))
    page.goto(board["urls"]["participant"])
    expect(page.locator("#name")).to_be_visible()
    kb = Keyboard(page)

    kb.tab_to("#name")
    kb.type("Amina")
    kb.press("Tab")
    kb.expect_on("form.join-form button[type=submit]")
    page.keyboard.press("Enter")  # a navigation: focus is noted on the new page
    expect(page.locator("#post-form")).to_be_visible()
    expect_live(page)
    kb.focused()

    kb.tab_to("#post-form input[name=column_id]")  # lands on the checked one: the first
    kb.expect_on(f"input[name=column_id][value='{columns[0]}']")
    kb.press("ArrowRight")
    kb.expect_on(f"input[name=column_id][value='{columns[1]}']")
    expect(page.locator(f"input[name=column_id][value='{columns[1]}']")).to_be_checked()
    kb.press("Tab")
    kb.expect_on("#card-text")
    text = "Se parler avant de décider"
    kb.type(text)
    kb.press("Shift+Tab")  # back to the radio group: on the chosen column
    kb.expect_on(f"input[name=column_id][value='{columns[1]}']")
    kb.press("Tab")
    kb.expect_on("#card-text")
    kb.press("Tab")
    kb.expect_on("#post-form button[type=submit]")
    kb.press("Enter")

    expect(card_in(page, columns[1], text)).to_have_count(1, timeout=LIVE)
    expect(page.locator("#post-form .post-feedback .ok")).to_be_visible()
    expect(page.locator("#card-text")).to_have_value("")
    expect(page.locator("article.card")).to_have_count(1)
    kb.focused()

    assert not kb.invisible_focus(), "focus not visible:\n" + "\n".join(kb.invisible_focus())
    console.assert_no_errors("participant")


def test_keyboard_only_voting(module_server: LiveServer, open_page: OpenPage,
                              console: ConsoleLog) -> None:
    """Put a dot and take it back with Enter and Space only; the ballot follows."""
    board = make_board(module_server)
    code, column = board["join_code"], board["columns"][0]["id"]
    token = api_participant(module_server, code, "Bruno")
    first = api_post_card(module_server, code, token, column, "Trop de réunions")
    second = api_post_card(module_server, code, token, column, "Peu de retours")
    patch_board(module_server, board, phase="vote")

    page = open_page("participant", **PHONE)
    page.goto(board["urls"]["participant"])
    page.locator("#name").fill("Chloé")
    page.locator("form.join-form button[type=submit]").click()
    expect(page.locator("#ballot")).to_be_visible()  # no post form in the vote phase
    expect_live(page)
    ballot_left(page, 3)
    kb = Keyboard(page)

    kb.tab_to(f"#card-{second['id']} .vote-add")
    kb.press("Enter")
    ballot_left(page, 2)
    expect(page.locator(f"[data-mine='c{second['id']}']")).to_have_text("●")
    kb.expect_on(f"#card-{second['id']} .vote-add")  # focus stays where it was

    kb.press("Shift+Tab")  # the "−" of the same card
    kb.expect_on(f"#card-{second['id']} button[value=remove]")
    kb.press("Space")
    ballot_left(page, 3)
    expect(page.locator(f"[data-mine='c{second['id']}']")).to_have_text("")

    kb.tab_to(f"#card-{first['id']} .vote-add", back=True)
    kb.press("Space")
    ballot_left(page, 2)
    expect(page.locator(f"[data-mine='c{first['id']}']")).to_have_text("●")
    expect(page.locator("#ballot .error")).to_have_count(0)

    assert not kb.invisible_focus(), "focus not visible:\n" + "\n".join(kb.invisible_focus())
    console.assert_no_errors("participant")


def test_keyboard_only_grouping(module_server: LiveServer, open_page: OpenPage,
                                console: ConsoleLog) -> None:
    """The animator makes a theme, moves a card into it and merges two cards: keyboard only."""
    board = make_board(module_server)
    code, column = board["join_code"], board["columns"][0]["id"]
    token = api_participant(module_server, code, "Dana")
    pistes = api_post_card(module_server, code, token, column, "Pistes discontinues")
    peur = api_post_card(module_server, code, token, column, "Peur de la circulation")
    double = api_post_card(module_server, code, token, column, "Des pistes qui s'arrêtent")
    patch_board(module_server, board, phase="regroupement")

    page = open_page("animator", **LAPTOP)
    page.goto(board["urls"]["animator"])
    expect(page).to_have_url(re.compile(rf"/b/{code}/animator$"))
    expect_live(page)
    kb = Keyboard(page)

    # A new theme, with the "Nouveau thème" form.
    kb.tab_to("#theme-title")
    kb.type("Sécurité")
    kb.press("Tab")
    kb.expect_on("#theme-column")
    assert page.locator("#theme-column").input_value() == str(column)
    kb.press("Tab")
    kb.expect_on("form.new-theme button[type=submit]")
    kb.press("Enter")
    theme = page.locator(f"#themes-{column} section.theme", has_text="Sécurité")
    expect(theme).to_have_count(1, timeout=LIVE)
    theme_id = theme.get_attribute("data-key")
    expect(page.locator(f"#move-target option[value='theme-{theme_id}']")).to_have_count(1)
    expect(page.locator("#flash .error")).to_have_count(0)
    kb.focused()

    # Select a card ("Sélectionner" radio), choose the theme in "Déplacer vers", "Déplacer".
    kb.tab_to("input[name=card_id]")
    kb.arrow_to_radio(str(peur["id"]))
    kb.press("Space")
    expect(page.locator(f"input[name=card_id][value='{peur['id']}']")).to_be_checked()
    kb.tab_to("#move-target", back=True)
    for _ in range(10):
        if page.locator("#move-target").input_value() == f"theme-{theme_id}":
            break
        kb.press("ArrowDown")
    assert page.locator("#move-target").input_value() == f"theme-{theme_id}"
    kb.press("Tab")
    kb.expect_on("#toolbar button[name=action][value=move]")
    kb.press("Enter")
    expect(page.locator(f"#theme-cards-{theme_id} #card-{peur['id']}")).to_have_count(
        1, timeout=LIVE)
    expect(page.locator("#flash .error")).to_have_count(0)
    kb.focused()

    # Merge the duplicate into the first card: "Fusionner avec la carte n°".
    kb.tab_to("input[name=card_id]")
    kb.arrow_to_radio(str(double["id"]))
    kb.press("Space")
    expect(page.locator(f"input[name=card_id][value='{double['id']}']")).to_be_checked()
    kb.tab_to("#merge-into", back=True)
    kb.type(str(pistes["id"]))
    kb.press("Tab")
    kb.expect_on("#toolbar button[name=action][value=merge]")
    kb.press("Enter")
    expect(page.locator(f"#card-{double['id']}")).to_have_count(0, timeout=LIVE)
    expect(page.locator(f"#card-{pistes['id']} ul.merged li")).to_have_text([double["text"]])
    expect(page.locator("#flash .error")).to_have_count(0)
    kb.focused()

    assert not kb.invisible_focus(), "focus not visible:\n" + "\n".join(kb.invisible_focus())
    console.assert_no_errors("animator")


@pytest.mark.parametrize("action", ["new-theme", "phase"])
def test_focus_stays_in_the_console_after_an_action(
    action: str, module_server: LiveServer, open_page: OpenPage,
) -> None:
    """After a console button pressed with Enter, focus stays in the console."""
    board = make_board(module_server)
    patch_board(module_server, board, phase="regroupement" if action == "new-theme" else "collecte")
    page = open_page("animator", **LAPTOP)
    page.goto(board["urls"]["animator"])
    expect_live(page)
    kb = Keyboard(page)
    if action == "new-theme":
        kb.tab_to("#theme-title")
        kb.type("Lieux partagés")
        kb.tab_to("form.new-theme button[type=submit]")
        kb.press("Enter")
        expect(page.locator("section.theme", has_text="Lieux partagés")).to_have_count(
            1, timeout=LIVE)
    else:
        kb.tab_to("button[name=phase][value=regroupement]")
        kb.press("Enter")
        expect(page.locator("button[name=phase][value=regroupement]")).to_have_attribute(
            "aria-pressed", "true", timeout=LIVE)
    page.wait_for_timeout(300)  # the swap has settled
    where = page.evaluate(FOCUS)
    assert where is not None, f"focus fell back to <body> after the {action} action"
    assert kb.on("#controls *"), f"focus left the console: {where}"


# --- 4-6. one thumb, touch targets, big text -------------------------------------------------


def test_posting_in_two_taps_after_joining(module_server: LiveServer, open_page: OpenPage,
                                           console: ConsoleLog) -> None:
    """After joining, the first column is chosen: tap the text box, type, tap Envoyer."""
    board = make_board(module_server)
    first = board["columns"][0]["id"]
    page = open_page("participant", **PHONE)
    join(page, board["urls"]["participant"], name="Élise")
    expect(page.locator(f"#post-form input[name=column_id][value='{first}']")).to_be_checked()
    assert page.evaluate("scrollY") == 0
    box = page.locator("#card-text").bounding_box()
    assert box is not None
    assert box["y"] + box["height"] <= 740, (
        f"the text box ends at {box['y'] + box['height']:.0f} px, below the first screen")

    text = "Un lieu pour se retrouver"
    taps = 0
    page.locator("#card-text").tap()
    taps += 1
    page.keyboard.type(text)
    page.locator("#post-form button[type=submit]").tap()
    taps += 1

    expect(card_in(page, first, text)).to_have_count(1, timeout=LIVE)
    expect(page.locator("#post-form .post-feedback .ok")).to_be_visible()
    assert taps <= 2
    console.assert_no_errors("participant")


TARGETS = """() => {
  const out = [];
  const sel = 'button, a[href], summary, select, textarea, label.chip,'
            + ' input:not([type=hidden]):not([type=radio]):not([type=checkbox])';
  const squash = s => (s || '').replace(/\\s+/g, ' ').trim();
  for (const el of document.querySelectorAll(sel)) {
    const r = el.getBoundingClientRect(), cs = getComputedStyle(el);
    if (r.width === 0 || r.height === 0 || cs.visibility === 'hidden') continue;
    if (el.closest('.sr-only, [hidden]')) continue;
    let what = el.tagName.toLowerCase();
    if (el.id) what += '#' + el.id;
    if (typeof el.className === 'string' && el.className.trim())
      what += '.' + el.className.trim().split(/\\s+/).join('.');
    const parent = el.parentElement;
    if (!el.id && parent) {
      let p = parent.tagName.toLowerCase();
      if (parent.id) p += '#' + parent.id;
      else if (typeof parent.className === 'string' && parent.className.trim())
        p += '.' + parent.className.trim().split(/\\s+/).join('.');
      what = p + ' > ' + what;
    }
    let exempt = null;
    if (el.matches('a') && r.right <= 0) exempt = 'skip link, off screen until focused';
    else if (el.matches('a')) {
      const p = el.closest('p');
      if (p && squash(p.textContent).length > squash(el.textContent).length)
        exempt = 'inline link in running text';
    }
    out.push({what, text: squash(el.innerText || el.value || el.getAttribute('aria-label'))
                .slice(0, 40),
              width: r.width, height: r.height, button: el.matches('button'), exempt});
  }
  return out;
}"""


def small_targets(page: Page, where: str, exempted: list[str]) -> list[str]:
    bad = []
    for t in page.evaluate(TARGETS):
        label = f"{where}: {t['what']} «{t['text']}» {t['width']:.0f}×{t['height']:.0f} px"
        if t["exempt"]:
            exempted.append(f"{label} ({t['exempt']})")
        elif t["height"] < 44 - 0.01 or (t["button"] and t["width"] < 44 - 0.01):
            bad.append(label)
    return bad


def test_touch_targets_are_44_px_on_a_phone(module_server: LiveServer, open_page: OpenPage,
                                            artifacts: Path) -> None:
    """Every visible button, link, chip, summary, select and text box is ≥ 44 px high
    (buttons also ≥ 44 px wide), on the join page and the participant page (collecte, vote)."""
    board = make_board(module_server)
    code, columns = board["join_code"], [c["id"] for c in board["columns"]]
    token = api_participant(module_server, code, "Yanis")
    cards = [api_post_card(module_server, code, token, columns[i % 3], f"Idée {i}")
             for i in range(3)]
    theme = httpx.post(f"{module_server.url}/api/v1/boards/{code}/themes", timeout=10,
                       headers={"Authorization": f"Bearer {board['animator_token']}"},
                       json={"column_id": columns[0], "title": "Coopération"})
    assert theme.status_code == 201, theme.text
    patch_board(module_server, board, phase="regroupement")
    httpx.patch(f"{module_server.url}/api/v1/boards/{code}/cards/{cards[0]['id']}", timeout=10,
                headers={"Authorization": f"Bearer {board['animator_token']}"},
                json={"theme_id": theme.json()["id"]}).raise_for_status()
    patch_board(module_server, board, phase="collecte")

    page = open_page("participant", **PHONE)
    exempted: list[str] = []
    page.goto(board["urls"]["participant"])
    expect(page.locator("form.join-form")).to_be_visible()
    failures = small_targets(page, "join page", exempted)
    join(page, board["urls"]["participant"], name="Maëlle")
    expect_live(page)
    failures += small_targets(page, "participant collecte", exempted)
    patch_board(module_server, board, phase="vote")
    expect(page.locator("#ballot")).to_be_visible(timeout=LIVE)
    expect(page.locator("form.vote-form")).to_have_count(4)
    failures += small_targets(page, "participant vote", exempted)
    page.screenshot(path=artifacts / "touch-targets-vote-phone.png", full_page=True,
                    animations="disabled", caret="initial")

    print("exempted:\n" + "\n".join(exempted))
    assert not failures, "touch targets under 44 px:\n" + "\n".join(failures)


def test_text_zoom_200_percent_on_a_phone(module_server: LiveServer, open_page: OpenPage,
                                          console: ConsoleLog, artifacts: Path) -> None:
    """Text at 200 % (root font size; device_scale_factor unchanged): no sideways scroll, and
    the text box and the button still work."""
    board = make_board(module_server)
    second = board["columns"][1]
    page = open_page("participant", **PHONE)
    join(page, board["urls"]["participant"], name="Jean-Pierre")
    expect_live(page)
    assert page.evaluate("devicePixelRatio") == PHONE["device_scale_factor"]
    page.evaluate("document.documentElement.style.fontSize = '200%'")
    assert page.evaluate("getComputedStyle(document.body).fontSize") == "32px"

    def sticking_out() -> list[str]:
        out: list[str] = page.evaluate("""() => [...document.querySelectorAll('body *')]
          .filter(e => e.getBoundingClientRect().right > innerWidth + 1
                       && getComputedStyle(e).position !== 'absolute')
          .map(e => `${e.tagName.toLowerCase()}${e.id ? '#' + e.id : ''}`
                    + `${typeof e.className === 'string' && e.className
                         ? '.' + e.className.trim().split(/\\s+/).join('.') : ''}`
                    + ` right=${Math.round(e.getBoundingClientRect().right)}`).slice(0, 12)""")
        return out

    def assert_no_sideways_scroll(when: str) -> None:
        width, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert width <= inner, (f"{when}: scrolls sideways at 200 % ({width} > {inner} px): "
                                f"{sticking_out()}")

    assert_no_sideways_scroll("participant page")
    for selector in ("#card-text", "#post-form button[type=submit]"):
        target = page.locator(selector)
        target.scroll_into_view_if_needed()
        expect(target).to_be_visible()
        box = target.bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= 360, f"{selector} cut off: {box}"

    text = "Des horaires compatibles avec le travail"
    page.locator("label.chip", has_text=second["title"]).tap()
    expect(page.locator(f"input[name=column_id][value='{second['id']}']")).to_be_checked()
    page.locator("#card-text").tap()
    page.keyboard.type(text)
    page.locator("#post-form button[type=submit]").tap()
    expect(card_in(page, second["id"], text)).to_have_count(1, timeout=LIVE)
    expect(page.locator("#post-form .post-feedback .ok")).to_be_visible()
    page.screenshot(path=artifacts / "zoom-200-participant-phone.png", full_page=True,
                    animations="disabled", caret="initial")
    assert_no_sideways_scroll("after posting")
    console.assert_no_errors("participant")


# --- 7. easy to read (FALC) ------------------------------------------------------------------


def falc_cookie(page: Page) -> str | None:
    for cookie in page.context.cookies():
        if cookie["name"] == "falc":
            return str(cookie["value"])
    return None


def test_easy_to_read_wording(module_server: LiveServer, open_page: OpenPage,
                              console: ConsoleLog, artifacts: Path) -> None:
    """The "Facile à lire" link switches the join and participant pages to FALC wording (cookie
    falc=1), pictograms hidden from screen readers; "Textes habituels" switches back."""
    board = make_board(module_server)
    code = board["join_code"]
    page = open_page("participant", **PHONE)
    page.goto(board["urls"]["participant"])
    join_button = page.locator("form.join-form button[type=submit]")
    expect(join_button).to_have_text("Rejoindre l'atelier")

    # Join page: on, off, on again.
    page.locator(".falc-switch a").tap()
    expect(page).to_have_url(re.compile(rf"/b/{code}$"))
    assert falc_cookie(page) == "1"
    expect(page.get_by_role("button", name="Entrer dans l'atelier", exact=True)).to_be_visible()
    expect(page.locator(".falc-switch a")).to_have_text("Textes habituels")
    assert pictograms(page) >= 2
    assert not hidden_from_screen_readers_missing(page), hidden_from_screen_readers_missing(page)
    page.screenshot(path=artifacts / "falc-join-phone.png", full_page=True,
                    animations="disabled", caret="initial")
    page.locator(".falc-switch a").tap()
    expect(join_button).to_have_text("Rejoindre l'atelier")
    assert falc_cookie(page) is None
    page.locator(".falc-switch a", has_text="Facile à lire").tap()
    expect(join_button).to_contain_text("Entrer dans l'atelier")

    page.locator("#name").fill("Maëlle")
    join_button.tap()
    expect(page.locator("#post-form")).to_be_visible()
    expect_live(page)

    # Participant page, FALC.
    label = page.locator("label[for=card-text]")
    expect(label).to_be_visible()
    expect(label).to_have_text(re.compile(r"Écrivez une idée\.$"))
    box = label.bounding_box()
    assert box is not None and box["width"] > 20 and box["height"] > 10, f"label hidden: {box}"
    expect(page.get_by_role("textbox", name="Écrivez une idée.", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Envoyer", exact=True)).to_be_visible()
    expect(page.locator("#board-status")).to_contain_text("Vous pouvez écrire vos idées.")
    expect(page.locator(".falc-switch a")).to_have_text("Textes habituels")
    assert pictograms(page) >= 4
    assert not hidden_from_screen_readers_missing(page), hidden_from_screen_readers_missing(page)
    page.screenshot(path=artifacts / "falc-participant-phone.png", full_page=True,
                    animations="disabled", caret="initial")

    # Still FALC after posting (the form comes back from the server) and after a live change.
    page.locator("#card-text").fill("Des réunions plus courtes")
    page.get_by_role("button", name="Envoyer", exact=True).tap()
    expect(card_in(page, board["columns"][0]["id"], "Des réunions plus courtes")
           ).to_have_count(1, timeout=LIVE)
    expect(page.locator("label[for=card-text]")).to_have_text(re.compile(r"Écrivez une idée\.$"))
    patch_board(module_server, board, silent=True)
    expect(page.locator("#board-status")).to_contain_text(
        "Écrivez vos idées. Pour l'instant, vous seul les voyez.", timeout=LIVE)
    patch_board(module_server, board, silent=False)
    expect(page.locator("#board-status")).to_contain_text("Vous pouvez écrire vos idées.",
                                                          timeout=LIVE)
    assert not hidden_from_screen_readers_missing(page), hidden_from_screen_readers_missing(page)

    # And back to the usual wording.
    page.locator(".falc-switch a").tap()
    expect(page).to_have_url(re.compile(rf"/b/{code}$"))
    assert falc_cookie(page) is None
    expect(page.locator("#board-status")).to_contain_text("Les contributions sont ouvertes")
    expect(page.locator("label[for=card-text]")).to_have_class(re.compile(r"\bsr-only\b"))
    expect(page.get_by_role("textbox", name="Votre carte", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Envoyer", exact=True)).to_be_visible()
    expect(page.locator(".falc-switch").get_by_role("link", name="Facile à lire", exact=True)
           ).to_be_visible()
    console.assert_no_errors("participant")


# --- 8-9. statement and language -------------------------------------------------------------

SECTIONS_FR = ["État de conformité", "Résultats des tests", "Contenus non accessibles",
               "Établissement de cette déclaration", "Voies de recours"]
SECTIONS_EN = ["Compliance status", "Test results", "Non-accessible content",
               "Preparation of this statement", "Remedies"]


def test_accessibility_statement_in_french_and_english(
    module_server: LiveServer, open_page: OpenPage, console: ConsoleLog,
) -> None:
    """/accessibilite in French, /accessibility in English (lang=en cookie); every page's footer
    links to it with "Accessibilité : partiellement conforme"."""
    board = make_board(module_server)
    code = board["join_code"]
    token = api_participant(module_server, code, "Camille")
    event = httpx.post(f"{module_server.url}/api/v1/events", json={"title": "Journée"},
                       timeout=10).json()

    page = open_page("visitor", **LAPTOP)
    paths = ["/", f"/b/{code}", f"/b/{code}/projector", "/archive", f"/e/{event['id']}",
             "/accessibilite", "/page-qui-n-existe-pas"]
    for path in paths:
        page.goto(module_server.url + path)
        link = page.locator("footer.site-footer a",
                            has_text="Accessibilité : partiellement conforme")
        expect(link).to_have_count(1)
        assert link.get_attribute("href") == "/accessibilite", path
    page.context.add_cookies([{"name": f"ab_p_{code}", "value": token,
                               "url": module_server.url}])
    page.goto(board["urls"]["participant"])
    expect(page.locator("#post-form")).to_be_visible()
    page.locator("footer.site-footer a", has_text="Accessibilité : partiellement conforme").click()

    expect(page).to_have_url(re.compile(r"/accessibilite$"))
    assert page.evaluate("document.documentElement.lang") == "fr"
    expect(page.locator("h1")).to_have_text("Déclaration d'accessibilité")
    headings = [h.strip() for h in page.locator("main h2").all_inner_texts()]
    for section in SECTIONS_FR:
        assert section in headings, f"{section!r} missing from {headings}"
    expect(page).to_have_title(re.compile("Déclaration d'accessibilité"))

    english = open_page("english", **LAPTOP)
    english.context.add_cookies([{"name": "lang", "value": "en", "url": module_server.url}])
    english.goto(module_server.url + "/accessibility")
    assert english.evaluate("document.documentElement.lang") == "en"
    expect(english.locator("h1")).to_have_text("Accessibility statement")
    headings = [h.strip() for h in english.locator("main h2").all_inner_texts()]
    for section in SECTIONS_EN:
        assert section in headings, f"{section!r} missing from {headings}"
    for path in ("/", f"/b/{code}", "/archive"):
        english.goto(module_server.url + path)
        link = english.locator("footer.site-footer a",
                               has_text="Accessibility: partially compliant")
        expect(link).to_have_count(1)
    link.click()
    expect(english.locator("h1")).to_have_text("Accessibility statement")
    console.assert_no_errors("visitor", "english", allow=lambda e: e.url.endswith(
        "/page-qui-n-existe-pas") and "404" in e.text)


def test_language_follows_the_browser_then_the_switch(
    module_server: LiveServer, open_page: OpenPage, console: ConsoleLog,
) -> None:
    """An English browser gets English; the FR/EN switch changes it, and it sticks."""
    page = open_page("english-browser", locale="en-GB",
                     extra_http_headers={"Accept-Language": "en-GB,en;q=0.9"}, **PROJECTOR)
    page.goto(module_server.url + "/")
    assert page.evaluate("document.documentElement.lang") == "en"
    expect(page.locator("h1")).to_have_text("Join an atelier")
    langs = page.locator("header.topbar nav.langs")
    expect(langs.locator("[aria-current=true]")).to_have_text("EN")

    langs.get_by_role("link", name="FR").click()
    expect(page).to_have_url(module_server.url + "/")
    assert page.evaluate("document.documentElement.lang") == "fr"
    expect(page.locator("h1")).to_have_text("Rejoindre un atelier")
    expect(langs.locator("[aria-current=true]")).to_have_text("FR")
    assert {c["name"]: c["value"] for c in page.context.cookies()}.get("lang") == "fr"

    # It sticks: other pages, a new tab, despite the browser's English.
    page.goto(module_server.url + "/archive")
    assert page.evaluate("document.documentElement.lang") == "fr"
    other = page.context.new_page()
    other.goto(module_server.url + "/")
    expect(other.locator("h1")).to_have_text("Rejoindre un atelier")
    other.close()

    # Back to English, from another page: it stays on that page.
    langs.get_by_role("link", name="EN").click()
    expect(page).to_have_url(module_server.url + "/archive")
    assert page.evaluate("document.documentElement.lang") == "en"
    page.goto(module_server.url + "/")
    expect(page.locator("h1")).to_have_text("Join an atelier")
    console.assert_no_errors("english-browser")
