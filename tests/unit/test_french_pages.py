"""No untranslated English in the French UI.

Every page reachable without a browser is rendered in French (cookie `lang=fr`) through
a real `board serve` process (the `module_server` fixture, on a temporary SQLite file; starlette's
httpx.Client would need `httpx2` here). For every
message of the French catalogue whose French string differs from its English msgid, the English
msgid (or, for a msgid with placeholders, each literal piece of it) of at least 12 characters
must not appear in the page's text, nor in the attributes a person meets (placeholder,
aria-label, title, alt, and the data-* messages the scripts show). Text inside `hx-ignore`
elements is user content (board titles, cards) and is left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from board.i18n import PLACEHOLDER, read_catalog
from tests.conftest import LiveServer

MIN_LENGTH = 12
SHOWN_ATTRIBUTES = ("placeholder", "aria-label", "title", "alt")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}
TEMPLATE = "constats-enjeux-besoins"


# --- what a person reads on a page -----------------------------------------------------------


class VisibleText(HTMLParser):
    """Text and shown attributes of a page, without <script>/<style> and hx-ignore subtrees."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self.attributes: list[str] = []
        self.stack: list[tuple[str, bool]] = []  # (tag, skipped)

    def skipping(self) -> bool:
        return any(skipped for _, skipped in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        skipped = tag in ("script", "style") or "hx-ignore" in names
        if not skipped and not self.skipping():
            for name, value in attrs:
                if value and (name in SHOWN_ATTRIBUTES or name.startswith("data-")):
                    self.attributes.append(f"{tag}[{name}]={value}")
        if tag not in VOID:
            self.stack.append((tag, skipped))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.handle_starttag(tag, attrs)
            self.handle_endtag(tag)
        else:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):  # tolerate unclosed <p>, <li>…
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        if not self.skipping():
            self.texts.append(data)


def page_text(html: str) -> tuple[str, list[str]]:
    parser = VisibleText()
    parser.feed(html)
    parser.close()
    text = re.sub(r"\s+", " ", unescape(" ".join(parser.texts)))
    return text, [re.sub(r"\s+", " ", a) for a in parser.attributes]


# --- the catalogue ---------------------------------------------------------------------------


def english_pieces() -> dict[str, str]:
    """Piece of English to look for -> the msgid it comes from (translated messages only)."""
    pieces: dict[str, str] = {}
    for message in read_catalog("fr"):
        if not message.id:
            continue
        ids = (message.id,) if isinstance(message.id, str) else tuple(message.id)
        strings = message.string if isinstance(message.string, (list, tuple)) else (
            message.string,)
        for msgid in ids:
            if not msgid or msgid in strings:
                continue  # untranslated on purpose (same in both languages)
            for piece in PLACEHOLDER.split(msgid):
                piece = re.sub(r"\s+", " ", piece).strip()
                if len(piece) >= MIN_LENGTH and all(piece not in s for s in strings if s):
                    pieces[piece] = msgid
    return pieces


def test_catalogue_has_long_english_messages() -> None:
    """The check below has something to look for (a broken catalogue path would pass it)."""
    pieces = english_pieces()
    assert len(pieces) > 100
    assert pieces["Join the atelier"] == "Join the atelier"


# --- the pages -------------------------------------------------------------------------------


@dataclass
class Site:
    client: httpx.Client
    pages: dict[str, str]  # name -> HTML rendered in French


def _ok(response: Any, *statuses: int) -> Any:
    assert response.status_code in (statuses or (200, 201)), (
        f"{response.request.method} {response.request.url}: {response.status_code} "
        f"{response.text[:300]}")
    return response


def _fresh(client: httpx.Client, **cookies: str) -> None:
    client.cookies.clear()
    client.cookies.set("lang", "fr")
    for name, value in cookies.items():
        client.cookies.set(name, value)


def _get(client: httpx.Client, url: str, status: int = 200, **cookies: str) -> str:
    _fresh(client, **cookies)
    return str(_ok(client.get(url), status).text)


def _api(client: httpx.Client, method: str, url: str, token: str | None = None,
         **kwargs: Any) -> Any:
    client.cookies.clear()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return _ok(client.request(method, url, headers=headers, **kwargs)).json()


def _build(client: httpx.Client) -> dict[str, str]:
    pages: dict[str, str] = {}
    event = _api(client, "POST", "/api/v1/events", json={"title": "Journée des territoires"})
    boards: dict[str, dict[str, Any]] = {}
    cards: dict[str, list[dict[str, Any]]] = {}
    for key, anonymous in (("collecte", False), ("regroupement", True), ("vote", True),
                           ("restitution", False), ("frozen", False)):
        board = _api(client, "POST", f"/api/v1/events/{event['id']}/boards",
                     event["organiser_token"],
                     json={"title": f"Atelier {key}", "question": "Comment coopérer ?",
                           "template": TEMPLATE, "anonymous": anonymous, "slot": "9h30",
                           "room": "Salle Jean Jaurès", "animator_name": "Claire Dubois"})
        boards[key] = board
        code, token = board["join_code"], board["animator_token"]
        person = _api(client, "POST", f"/api/v1/boards/{code}/participants",
                      json={"name": "Camille"})["token"]
        board["participant_token"] = person
        cols = [c["id"] for c in board["columns"]]
        cards[key] = [
            _api(client, "POST", f"/api/v1/boards/{code}/cards", person,
                 json={"column_id": cols[i % 3], "text": f"Idée numéro {i}",
                       "client_id": f"{key}-{i}"})
            for i in range(4)]
        if key == "collecte":
            continue
        theme = _api(client, "POST", f"/api/v1/boards/{code}/themes", token,
                     json={"column_id": cols[0], "title": "Coopération"})
        _api(client, "PATCH", f"/api/v1/boards/{code}/cards/{cards[key][0]['id']}", token,
             json={"theme_id": theme["id"]})
        _api(client, "PATCH", f"/api/v1/boards/{code}", token, json={"phase": "regroupement"})
        if key == "regroupement":
            continue
        _api(client, "PATCH", f"/api/v1/boards/{code}", token, json={"phase": "vote"})
        _api(client, "POST", f"/api/v1/boards/{code}/votes", person,
             json={"card_id": cards[key][1]["id"]})
        if key == "vote":
            continue
        _api(client, "PATCH", f"/api/v1/boards/{code}", token,
             json={"results_visible": True, "phase": "restitution"})
    frozen = boards["frozen"]
    version = _api(client, "POST", f"/api/v1/boards/{frozen['join_code']}/freeze",
                   frozen["animator_token"],
                   json={"notes": {str(frozen["columns"][0]["id"]): "- Des **lieux**"},
                         "conclusion": "Une coopérative régionale."})
    slug = re.search(r"/s/([A-Za-z0-9_-]+)", version["urls"]["html"])
    assert slug, version

    def code(key: str) -> str:
        return str(boards[key]["join_code"])

    pages["home"] = _get(client, "/")
    pages["join-unknown-code"] = _get(client, "/join?code=BADCOD", 404)
    pages["not-found"] = _get(client, "/page-qui-n-existe-pas", 404)
    pages["statement"] = _get(client, "/accessibilite")
    pages["join-page-named"] = _get(client, f"/b/{code('collecte')}")
    pages["join-page-anonymous"] = _get(client, f"/b/{code('vote')}")
    pages["join-page-falc"] = _get(client, f"/b/{code('collecte')}", falc="1")

    # The participant page, reached the way a phone does: the join form, then its cookie.
    _fresh(client)
    response = _ok(client.post(f"/b/{code('collecte')}/join", data={"name": "Maëlle"}))
    assert str(response.url).endswith(f"/b/{code('collecte')}"), response.url
    assert "post-form" in response.text
    pages["participant-collecte"] = response.text
    client.cookies.set("falc", "1")
    pages["participant-collecte-falc"] = _ok(client.get(f"/b/{code('collecte')}")).text
    for key in ("regroupement", "vote", "restitution", "frozen"):
        cookie = {f"ab_p_{code(key)}": boards[key]["participant_token"]}
        pages[f"participant-{key}"] = _get(client, f"/b/{code(key)}", **cookie)
        pages[f"participant-{key}-falc"] = _get(client, f"/b/{code(key)}", falc="1", **cookie)
    for key in ("collecte", "vote", "restitution"):
        pages[f"projector-{key}"] = _get(client, f"/b/{code(key)}/projector")

    for key in ("collecte", "regroupement", "vote", "restitution", "frozen"):
        _fresh(client)
        response = _ok(client.get(boards[key]["urls"]["animator"]))
        assert str(response.url).endswith(f"/b/{code(key)}/animator"), response.url
        pages[f"animator-{key}"] = response.text
    pages["delete-confirmation"] = _get(
        client, f"/b/{code('collecte')}/animator/delete",
        **{f"ab_a_{code('collecte')}": boards["collecte"]["animator_token"]})

    _fresh(client)
    pages["board-created"] = _ok(client.post("/boards", data={
        "title": "Politique de la ville", "question": "Comment coopérer ?",
        "template": TEMPLATE, "anonymous": "1"})).text
    _fresh(client)
    pages["board-create-error"] = _ok(client.post("/boards", data={"title": ""}), 400, 422).text
    _fresh(client)
    pages["event-created"] = _ok(client.post("/events", data={"title": "Carrefour"})).text

    _fresh(client)
    response = _ok(client.get(event["urls"]["dashboard"]))
    pages["event-dashboard"] = response.text
    pages["event-join"] = _get(client, f"/e/{event['id']}")
    pages["plenary"] = _get(client, f"/e/{event['id']}/synthesis")
    pages["archive"] = _get(client, "/archive")
    pages["archive-search"] = _get(client, "/archive?q=coopérative")
    pages["synthesis-permalink"] = _get(client, f"/s/{slug.group(1)}")
    return pages


@pytest.fixture(scope="module")
def site(module_server: LiveServer) -> Iterator[Site]:
    with httpx.Client(base_url=module_server.url, follow_redirects=True, timeout=30) as client:
        yield Site(client, _build(client))


PAGE_NAMES = [
    "home", "join-unknown-code", "not-found", "statement", "join-page-named",
    "join-page-anonymous", "join-page-falc", "participant-collecte", "participant-collecte-falc",
    *[f"participant-{k}{f}" for k in ("regroupement", "vote", "restitution", "frozen")
      for f in ("", "-falc")],
    "projector-collecte", "projector-vote", "projector-restitution",
    *[f"animator-{k}" for k in ("collecte", "regroupement", "vote", "restitution", "frozen")],
    "delete-confirmation", "board-created", "board-create-error", "event-created",
    "event-dashboard", "event-join", "plenary", "archive", "archive-search",
    "synthesis-permalink",
]


# Something each page must hold: proves the cookies (participant, animator, FALC) worked.
MARKERS = {
    "join-page-named": 'id="name"', "join-page-falc": "Entrer dans l'atelier",
    "participant-collecte": 'id="post-form"', "participant-collecte-falc": "Écrivez une idée.",
    "participant-vote": 'id="ballot"', "participant-vote-falc": "Votez.",
    "participant-frozen": "is-frozen", "animator-collecte": 'id="controls"',
    "animator-regroupement": 'id="toolbar"', "animator-restitution": 'id="synthesis-panel"',
    "board-created": 'id="animator-link"', "event-created": 'id="dashboard-link"',
    "statement": "Déclaration d'accessibilité",
}


def test_every_page_was_rendered(site: Site) -> None:
    assert sorted(site.pages) == sorted(PAGE_NAMES)
    for name, html in site.pages.items():
        assert '<html lang="fr">' in html, f"{name} is not in French"
        assert MARKERS.get(name, "</main>") in html, f"{name}: not the expected page"


def test_the_check_finds_english(site: Site) -> None:
    """The same check on English pages does find the msgids (it is not blind)."""
    for url in ("/", "/accessibilite"):
        site.client.cookies.clear()
        site.client.cookies.set("lang", "en")
        text, _ = page_text(_ok(site.client.get(url)).text)
        found = [piece for piece in english_pieces() if piece in text]
        assert len(found) >= 3, (url, found)


@pytest.mark.parametrize("name", PAGE_NAMES)
def test_no_english_left_in_french_page(name: str, site: Site) -> None:
    """No English msgid of the catalogue (≥ 12 characters, translated) shows on the page."""
    text, attributes = page_text(site.pages[name])
    hits = []
    for piece, msgid in english_pieces().items():
        if piece in text:
            at = text.index(piece)
            hits.append(f"text: {piece!r} (msgid {msgid!r}) in …{text[max(0, at - 40):at + 80]}…")
        hits += [f"attribute {a[:160]!r}: {piece!r} (msgid {msgid!r})"
                 for a in attributes if piece in a]
    assert not hits, f"English left in the French {name} page:\n" + "\n".join(hits)
