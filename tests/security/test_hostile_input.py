"""Hostile input on every surface; forged tokens, cross-site requests, limits, headers, logs.

Each hostile payload goes into every field that reaches markup (board title, question, free
column, pseudonym, card text, theme, column rename, card edit, merged text, event fields) and is
read back on every surface: pages, htmx answers and partials, websocket HTML frames, the JSON
API and the event pages. It is either refused with a clear 4xx error or stored and shown
escaped: never markup, never a template expression, never a 5xx.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from markupsafe import escape
from playwright.sync_api import Dialog, Page, Request, expect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from board import domain
from board.netaddr import lan_addresses
from tests.conftest import LiveServer
from tests.e2e.conftest import LAPTOP, PROJECTOR, ConsoleLog, OpenPage
from tests.integration.helpers import bearer, next_event

# --- payloads and the fields they go into ----------------------------------------------------

PAYLOADS: dict[str, str] = {
    "script": "<script>alert(1)</script>",
    "img-onerror": "<img src=x onerror=alert(1)>",
    "pwned": '<img src=x onerror="window.__pwned=1">',
    "dq-breakout": '" onmouseover="alert(1)',
    "sq-breakout": "'><svg onload=alert(1)>",
    "backtick": "`><img src=x onerror=alert`1`>`",
    "unquoted-attr": "x onfocus=alert(1) autofocus x=",
    "textarea-end": "</textarea><script>window.__pwned=1</script>",
    "title-end": "</title><svg onload=alert(1)>",
    "hx-get": '<div hx-get="/api/v1/boards" hx-trigger="load">x</div>',
    "hx-on": "<button hx-on:click=alert(1)>hx-on:click=alert(1)</button>",
    "jinja-expr": "{{ 7*7 }}",
    "jinja-raw": "{% raw %}{{ config }}{% endraw %}",
    "jinja-stmt": "{% for i in range(9) %}{{ i }}{% endfor %}",
    "js-url": "javascript:alert(1)",
    "data-url": "data:text/html,<script>alert(1)</script>",
    "entities": "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &#60;b&#62;",
    "iframe-style": '<iframe src="javascript:alert(1)"></iframe><style>*{display:none}</style>',
    "comment-cdata": "<!-- ]]><![CDATA[ --!>",
    "json-breakout": '"}]},"content":"<img src=x onerror=alert(1)>',
    "rtl-override": "facture\u202egnp.exe <b>",
    "zwj-flood": "a" + "\u200d" * 400 + "b",
    "zwj-over": "a" + "\u200d" * 600,
    "combining": "e" + "\u0301" * 300,
    "combining-over": "e" + "\u0301" * 600,
    "nul": "a\x00b<script>",
    "emoji": "\U0001f469\u200d\U0001f469\u200d\U0001f467 \U0001f525 <b>gras</b>",
    "crlf": "ligne\r\nSet-Cookie: ab=1",
    "limit-500": "<" * 500,
    "limit-501": "<" * 501,
}

# One-line fields (whitespace folded) and their limits; card texts (trimmed) have 500.
LINE_LIMITS = {
    "event_title": domain.MAX_TITLE, "title": domain.MAX_TITLE, "question": domain.MAX_QUESTION,
    "column": domain.MAX_COLUMN_TITLE, "renamed": domain.MAX_COLUMN_TITLE,
    "theme": domain.MAX_THEME_TITLE, "name": 40, "slot": 40, "room": 60, "animator_name": 60,
}
TEXT_FIELDS = ("card", "acard", "edited")
CARD_LIMIT = 500
REFUSAL_CODES = {"field_too_long", "text_too_long", "empty_text", "title_required",
                 "bad_columns", "invalid_field"}

# What the board area shows (every page, area partial and snapshot frame).
BOARD_FIELDS = ("column", "renamed", "card", "acard", "edited", "theme", "name", "merged")
# What replayed events carry (board creation and themes are not card frames).
REPLAY_FIELDS = ("renamed", "card", "acard", "edited", "name", "merged")

SURFACES = frozenset({
    "api writes", "join page", "join answer", "participant page", "projector page",
    "animator page", "area participant", "area projector", "area animator",
    "htmx post answer", "outbox answer", "animator forms",
    "ws snapshot projector", "ws snapshot participant", "ws snapshot animator",
    "ws replay projector", "ws replay participant", "ws replay animator", "ws replay api",
    "api board animator", "api board participant", "api board public",
    "projector results", "results partial", "api results",
    "event join page", "dashboard", "dashboard table", "api event",
    "dashboard form answer", "home form answer", "home form re-render", "unknown code page",
})


def line_length(text: str) -> int:
    """Length of a one-line field as documented: NFC, whitespace folded."""
    return len(" ".join(unicodedata.normalize("NFC", text).split()))


def text_length(text: str) -> int:
    """Length of a card text as documented: NFC, trimmed, control characters dropped."""
    trimmed = unicodedata.normalize("NFC", text).strip()
    return len("".join(c for c in trimmed if c in "\n\t" or unicodedata.category(c) != "Cc"))


# --- what an HTML answer may contain ----------------------------------------------------------

TAGS = frozenset(
    "html head meta title link body header a nav span main div p h1 h2 h3 form fieldset legend "
    "label input button textarea section article ul ol li small strong details summary select "
    "option aside img table caption thead tbody tr th td br script hx-partial hx-upsert footer "
    "code svg path circle rect".split())
ATTRIBUTES = frozenset(
    "action alt autocapitalize autocomplete autofocus charset checked class content for form "
    "height hidden href hreflang hx-get hx-ignore hx-post hx-swap hx-target hx-trigger "
    "hx-ws:connect id inputmode key lang max maxlength method min name pattern placeholder rel "
    "required role rows scope selected size sort spellcheck src target title type value "
    "width download hx-preserve tabindex".split())
# The pictograms (templates/partials/_picto.html): drawing attributes only on drawing tags.
SVG_TAGS = frozenset("svg path circle rect".split())
SVG_ATTRIBUTES = frozenset(
    "focusable viewbox fill stroke stroke-width stroke-linecap stroke-linejoin d cx cy r x y "
    "rx".split())
URL_ATTRIBUTES = ("href", "src", "action", "hx-get", "hx-post", "hx-ws:connect")


class MarkupAudit(HTMLParser):
    """Every tag and attribute of an answer must be one the templates write, with safe URLs."""

    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        # This server, as opened (127.0.0.1) and as phones reach it (the loopback hint links
        # to the same page on the LAN address: board/netaddr.py).
        port = base.rsplit(":", 1)[-1]
        self.bases = (base, *(f"http://{ip}:{port}" for ip in lan_addresses()))
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._check(tag, attrs)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._check(tag, attrs)

    def _check(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag not in TAGS:
            self.problems.append(f"tag <{tag}>")
        if tag == "script" and not re.fullmatch(r"/static/[\w./-]+\.js", values.get("src") or ""):
            self.problems.append(f"script {values}")
        if tag == "img" and not re.fullmatch(r"/b/\w+/qr\.svg", values.get("src") or ""):
            self.problems.append(f"img {values}")
        for name, value in attrs:
            drawing = tag in SVG_TAGS and name in SVG_ATTRIBUTES
            if not (name in ATTRIBUTES or drawing or name.startswith(("data-", "aria-"))):
                self.problems.append(f"attribute {name}={value!r} on <{tag}>")
            if name.startswith("on") or "hx-on" in name:
                self.problems.append(f"handler {name}={value!r} on <{tag}>")
            url = (value or "").strip()
            if name in ("hx-get", "hx-post") and not re.match(r"/[be]/\w+/", url):
                self.problems.append(f"htmx request {name}={value!r} on <{tag}>")
            if name == "hx-ws:connect" and not re.match(r"/api/v1/boards/\w+/events\?", url):
                self.problems.append(f"socket {name}={value!r} on <{tag}>")
            if name in URL_ATTRIBUTES and not (
                    (url.startswith("/") and not url.startswith("//")) or url.startswith("#")
                    or url.startswith(tuple(b + "/" for b in self.bases))):
                self.problems.append(f"url {name}={value!r} on <{tag}>")


def audit_markup(body: str, base: str) -> list[str]:
    parser = MarkupAudit(base)
    parser.feed(body)
    parser.close()
    return parser.problems


def test_markup_audit_catches_what_an_injection_would_leave() -> None:
    """The sweep's checker is not vacuous: each kind of injection shows up as a problem."""
    base = "http://127.0.0.1:8000"
    clean = ('<p class="card-text" hx-ignore>&lt;script&gt;</p><a href="/b/ABC/projector">x</a>'
             '<script src="/static/board.js"></script><img class="qr" src="/b/ABC/qr.svg">'
             f'<a href="{base}/b/ABC">y</a><div hx-get="/b/ABC/area" hx-trigger="load"></div>')
    assert audit_markup(clean, base) == []
    for injected in ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
                     '<p title="" onmouseover="alert(1)">', "<svg onload=alert(1)>",
                     '<div hx-get="/api/v1/boards" hx-trigger="load">',
                     "<button hx-on:click=alert(1)>", '<a href="javascript:alert(1)">',
                     '<a href=" //evil.example">', "<iframe src=x>", "<style>*{}</style>",
                     "<p x=1 autofocus>", "<b>gras</b>", '<svg><path d="M0" onclick="x"/></svg>',
                     '<div d="M0" fill="red">'):
        assert audit_markup(clean + injected, base), injected


def assert_error(response: httpx.Response, status: int | None = None,
                 code: str | None = None) -> str:
    """The documented error body: {"error": {"code", "message", "fr", "en"}}; returns code."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if status is not None:
        assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert set(error) >= {"code", "message", "fr", "en"}, error
    assert all(isinstance(error[k], str) and error[k] for k in ("code", "message", "fr", "en"))
    assert error["message"] == f"{error['fr']} / {error['en']}"
    assert "Traceback" not in response.text
    if code is not None:
        assert error["code"] == code, error
    return str(error["code"])


# --- servers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for the payload sweep (unknown codes are part of it: no guessing limit)."""
    path = tmp_path_factory.mktemp("hostile")
    server = LiveServer(path / "board.db", path / "server.log",
                        env={"BOARD_RATE_CODE_MISSES_PER_IP": "1000000/minute"})
    server.start()
    try:
        yield server
    finally:
        server.stop()


STRICT_LIMITS = {"BOARD_RATE_POSTS_PER_PARTICIPANT": "3/minute",
                 "BOARD_RATE_WS_MESSAGES": "10/minute"}


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with tight posting and websocket-message limits, logging at info level."""
    path = tmp_path_factory.mktemp("strict")
    server = LiveServer(path / "board.db", path / "server.log", env=STRICT_LIMITS,
                        log_level="info")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def http(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
        yield client


async def new_board(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("title", "Atelier")
    body.setdefault("columns", ["Constats", "Enjeux"])
    body.setdefault("anonymous", False)
    response = await http.post("/api/v1/boards", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def api_join(http: httpx.AsyncClient, code: str, name: str = "Dana") -> str:
    response = await http.post(f"/api/v1/boards/{code}/participants", json={"name": name})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


async def api_post(http: httpx.AsyncClient, code: str, token: str, column: int, text: str,
                   client_id: str | None = None) -> httpx.Response:
    return await http.post(f"/api/v1/boards/{code}/cards", headers=bearer(token),
                           json={"column_id": column, "text": text,
                                 "client_id": client_id or uuid.uuid4().hex})


def ws_url(server: LiveServer, code: str, query: str) -> str:
    return f"{server.ws_url}/api/v1/boards/{code}/events?{query}"


# --- the sweep: one payload, every field, every surface --------------------------------------


class Sweep:
    """Writes one payload everywhere a user can, then reads every surface back."""

    def __init__(self, server: LiveServer, payload: str, http: httpx.AsyncClient,
                 participant: httpx.AsyncClient, animator: httpx.AsyncClient,
                 organiser: httpx.AsyncClient) -> None:
        self.server, self.payload, self.http = server, payload, http
        self.participant, self.animator, self.organiser = participant, animator, organiser
        self.stored: dict[str, str] = {}  # field -> value as stored (and to be shown)
        self.refused: dict[str, str] = {}  # field -> error code
        self.checked: set[str] = set()

    # -- outcomes --

    def settle(self, field: str, response: httpx.Response,
               value: Callable[[dict[str, Any]], str] | None = None) -> bool:
        """A write is either stored (2xx) or refused with a clear 4xx, as its length says."""
        assert response.status_code < 500, (field, response.status_code, response.text[:300])
        if field in LINE_LIMITS:
            length, limit = line_length(self.payload), LINE_LIMITS[field]
        else:
            length, limit = text_length(self.payload), CARD_LIMIT
        if 200 <= response.status_code < 300:
            assert 0 < length <= limit, f"{field}: {length} characters accepted (limit {limit})"
            if value is not None:
                self.stored[field] = value(response.json())
            return True
        code = assert_error(response)
        assert code in REFUSAL_CODES, (field, code)
        assert not 0 < length <= limit, f"{field} refused although it fits: {response.text}"
        self.refused[field] = code
        return False

    def html(self, surface: str, response: httpx.Response, *fields: str,
             raw_shown: Iterable[str] = ()) -> str:
        """Markup only from the templates; stored values escaped; the raw payload absent."""
        assert response.status_code < 500, (surface, response.status_code, response.text[:500])
        assert response.headers["content-type"].startswith("text/html"), (surface, response)
        self.check_markup(surface, response.text, fields, raw_shown)
        return response.text

    def check_markup(self, surface: str, body: str, fields: Iterable[str],
                     raw_shown: Iterable[str] = ()) -> None:
        problems = audit_markup(body, self.server.url)
        assert not problems, f"{surface}: unexpected markup {problems[:5]}"
        for text in [self.stored[f] for f in fields if f in self.stored] + list(raw_shown):
            assert str(escape(text)) in body, f"{surface}: {text[:80]!r} not shown escaped"
        for raw in {self.payload, *self.stored.values()}:
            if str(escape(raw)) != raw:
                assert raw not in body, f"{surface}: {raw[:80]!r} written unescaped"
        self.checked.add(surface)

    def api(self, surface: str, response: httpx.Response) -> Any:
        assert response.status_code == 200, (surface, response.text[:300])
        assert response.headers["content-type"].startswith("application/json")
        assert response.headers["x-content-type-options"] == "nosniff"
        self.checked.add(surface)
        return response.json()

    # -- writes --

    async def write_everything(self) -> None:
        p, http = self.payload, self.http
        response = await http.post("/api/v1/events", json={"title": p})
        if not self.settle("event_title", response, lambda j: str(j["title"])):
            response = await http.post("/api/v1/events", json={"title": "Journée"})
        self.event = response.json()
        org = bearer(self.event["organiser_token"])
        event_boards = f"/api/v1/events/{self.event['id']}/boards"
        base: dict[str, Any] = {"title": "Atelier", "columns": ["Constats", "Enjeux"],
                                "anonymous": False, "slot": "9h", "room": "A"}
        body = dict(base)
        for field in ("title", "question", "column", "slot", "room", "animator_name"):
            change: dict[str, Any] = {"columns": [p, "Enjeux"]} if field == "column" else {
                field: p}
            if self.settle(field, await http.post(event_boards, headers=org,
                                                  json={**base, **change})):
                body.update(change)
        response = await http.post(event_boards, headers=org, json=body)
        assert response.status_code == 201, response.text
        self.board = response.json()
        code, self.token = self.board["join_code"], self.board["animator_token"]
        self.code = code
        col0, col1 = (c["id"] for c in self.board["columns"])
        if "column" not in self.refused:
            self.stored["column"] = self.board["columns"][0]["title"]
        seen = (await http.get(f"/api/v1/boards/{code}")).json()
        for field in ("title", "question"):
            if field not in self.refused:
                self.stored[field] = seen[field]
        atelier = next(a for a in (await http.get(f"/api/v1/events/{self.event['id']}")).json()[
            "ateliers"] if a["join_code"] == code)
        for field in ("slot", "room", "animator_name"):
            if field not in self.refused:
                self.stored[field] = atelier[field]

        # A participant through the page (cookie) and one through the API (token).
        self.html("join page", await self.participant.get(f"/b/{code}"), "title", "question")
        answer = await self.participant.post(f"/b/{code}/join", data={"name": p})
        page_named = answer.status_code == 303
        if not page_named:
            self.html("join answer", answer, raw_shown=[p])
            answer = await self.participant.post(f"/b/{code}/join", data={"name": "Dana"})
        assert answer.status_code == 303, answer.text[:300]
        self.checked.add("join answer")
        response = await http.post(f"/api/v1/boards/{code}/participants", json={"name": p})
        named = self.settle("name", response)
        assert named == page_named, "page and API disagree on the pseudonym"
        self.ptoken = response.json()["token"] if named else await api_join(http, code)

        # Cards: by the participant (then moved into a theme), by the animator, an edit, a merge.
        response = await api_post(http, code, self.ptoken, col0, p)
        if not self.settle("card", response, lambda j: str(j["text"])):
            response = await api_post(http, code, self.ptoken, col0, "Carte simple")
        self.pcard = response.json()
        if named:
            assert self.pcard["author"], self.pcard
            self.stored["name"] = self.pcard["author"]
        self.settle("acard", await api_post(http, code, self.token, col0, p),
                    lambda j: str(j["text"]))
        plain = (await api_post(http, code, self.token, col1, "À modifier")).json()
        self.settle("edited", await http.patch(f"/api/v1/boards/{code}/cards/{plain['id']}",
                                               headers=bearer(self.token), json={"text": p}),
                    lambda j: str(j["text"]))
        self.settle("renamed", await http.patch(f"/api/v1/boards/{code}/columns/{col1}",
                                                headers=bearer(self.token), json={"title": p}),
                    lambda j: str(j["title"]))
        response = await http.post(f"/api/v1/boards/{code}/themes", headers=bearer(self.token),
                                   json={"column_id": col0, "title": p})
        if not self.settle("theme", response, lambda j: str(j["title"])):
            response = await http.post(f"/api/v1/boards/{code}/themes",
                                       headers=bearer(self.token),
                                       json={"column_id": col0, "title": "Thème"})
        self.theme = response.json()
        moved = await http.patch(f"/api/v1/boards/{code}/cards/{self.pcard['id']}",
                                 headers=bearer(self.token), json={"theme_id": self.theme["id"]})
        assert moved.status_code == 200, moved.text
        if "acard" in self.stored:
            target = (await api_post(http, code, self.token, col1, "Cible")).json()
            source = (await api_post(http, code, self.token, col0, p)).json()
            merged = await http.post(f"/api/v1/boards/{code}/cards/{source['id']}/merge",
                                     headers=bearer(self.token), json={"into": target["id"]})
            assert merged.status_code == 200, merged.text
            assert merged.json()["merged_texts"] == [self.stored["acard"]]
            self.stored["merged"] = self.stored["acard"]
        self.checked.add("api writes")

        # The page forms: the participant's post (htmx, then the phone outbox) …
        form = {"column_id": str(col0), "text": p, "client_id": uuid.uuid4().hex}
        answer = await self.participant.post(f"/b/{code}/cards", data=form,
                                             headers={"HX-Request": "true"})
        if answer.status_code in (200, 201):
            self.html("htmx post answer", answer, "card")
        else:
            self.html("htmx post answer", answer, raw_shown=[p])
        answer = await self.participant.post(f"/b/{code}/cards",
                                             data={**form, "client_id": uuid.uuid4().hex},
                                             headers={"X-Outbox": "1"})
        if answer.status_code in (200, 201):
            self.html("outbox answer", answer, "card")
        else:
            assert_error(answer)
            self.checked.add("outbox answer")
        # … and the animator's (the secret link becomes a cookie).
        opened = await self.animator.get(self.board["urls"]["animator"])
        assert opened.status_code == 303 and "key=" not in opened.headers["location"]
        forms = [(f"/b/{code}/animator/columns/{col1}", {"title": p}),
                 (f"/b/{code}/animator/themes", {"column_id": str(col1), "title": p}),
                 (f"/b/{code}/animator/cards/{plain['id']}/edit", {"text": p})]
        for url, data in forms:
            answer = await self.animator.post(url, data=data, headers={"HX-Request": "true"})
            self.html("animator forms", answer)

    # -- reads --

    async def check_pages(self) -> None:
        code = self.code
        everything = ("title", "question", *BOARD_FIELDS)
        self.html("participant page", await self.participant.get(f"/b/{code}"), *everything)
        self.html("projector page", await self.http.get(f"/b/{code}/projector"), *everything)
        self.html("animator page", await self.animator.get(f"/b/{code}/animator"), *everything)
        for view, client in (("participant", self.participant), ("projector", self.http),
                             ("animator", self.animator)):
            self.html(f"area {view}", await client.get(f"/b/{code}/area", params={"view": view}),
                      *BOARD_FIELDS)
        texts = {f: self.stored[f] for f in ("card", "acard", "edited") if f in self.stored}
        for who, headers in (("animator", bearer(self.token)),
                             ("participant", bearer(self.ptoken)), ("public", {})):
            board = self.api(f"api board {who}",
                             await self.http.get(f"/api/v1/boards/{code}", headers=headers))
            cards = [c for column in board["columns"] for c in column["cards"]]
            assert set(texts.values()) <= {c["text"] for c in cards}, (who, texts)
            titles = {c["title"] for c in board["columns"]}
            assert {self.stored[f] for f in ("column", "renamed") if f in self.stored} <= titles
            themes = {t["title"] for column in board["columns"] for t in column["themes"]}
            assert self.theme["title"] in themes
            if "name" in self.stored:
                assert self.stored["name"] in {c["author"] for c in cards}
            for field in ("title", "question"):
                if field in self.stored:
                    assert board[field] == self.stored[field]

    async def check_sockets(self) -> None:
        code, server = self.code, self.server
        cookie = self.participant.cookies.get(f"ab_p_{code}")
        assert cookie, "the join form set no participant cookie"
        views: list[tuple[str, str, dict[str, str]]] = [
            ("projector", "fr", {}), ("participant", "en", {"Cookie": f"ab_p_{code}={cookie}"}),
            ("animator", "fr", bearer(self.token))]
        seq = (await self.http.get(f"/api/v1/boards/{code}")).json()["seq"]
        for view, lang, headers in views:
            query = f"view={view}&lang={lang}"
            async with connect(ws_url(server, code, query), additional_headers=headers,
                               open_timeout=10) as ws:
                frame = await next_event(ws)
                assert frame["type"] == "snapshot" and "data" not in frame
                self.check_markup(f"ws snapshot {view}", frame["content"], BOARD_FIELDS)
            async with connect(ws_url(server, code, f"since=0&{query}"),
                               additional_headers=headers, open_timeout=10) as ws:
                contents = []
                for frame in await frames_until(ws, seq):
                    self.check_markup(f"ws replay {view}", frame["content"], ())
                    contents.append(frame["content"])
                self.check_markup(f"ws replay {view}", "\n".join(contents), REPLAY_FIELDS)
        async with connect(ws_url(server, code, "since=0"), additional_headers=bearer(self.token),
                           open_timeout=10) as ws:
            frames = await frames_until(ws, seq)
        posted = {f["data"]["text"] for f in frames if f["type"] in ("card.posted",
                                                                     "card.updated")}
        expected = {self.stored[f] for f in ("card", "acard", "edited") if f in self.stored}
        assert expected <= posted, (expected, posted)
        renames = [f["data"]["title"] for f in frames if f["type"] == "column.renamed"]
        if "renamed" in self.stored:
            assert self.stored["renamed"] in renames
        self.checked.add("ws replay api")

    async def check_results(self) -> None:
        code, animator = self.code, bearer(self.token)
        assert (await self.http.patch(f"/api/v1/boards/{code}", headers=animator,
                                      json={"phase": "vote"})).status_code == 200
        for target in ({"card_id": self.pcard["id"]}, {"theme_id": self.theme["id"]}):
            vote = await self.http.post(f"/api/v1/boards/{code}/votes",
                                        headers=bearer(self.ptoken), json=target)
            assert vote.status_code == 201, vote.text
        assert (await self.http.patch(f"/api/v1/boards/{code}", headers=animator, json={
            "phase": "restitution", "results_visible": True})).status_code == 200
        shown = ("card", "theme", "column")
        self.html("projector results", await self.http.get(f"/b/{code}/projector"), *shown)
        self.html("results partial", await self.http.get(
            f"/b/{code}/area", params={"view": "projector", "part": "results"}), *shown)
        ranking = self.api("api results", await self.http.get(f"/api/v1/boards/{code}/results"))
        assert {self.pcard["text"], self.theme["title"]} <= {item["text"] for item in ranking}

    async def check_event_pages(self) -> None:
        event = self.event["id"]
        self.html("event join page", await self.http.get(f"/e/{event}"),
                  "event_title", "title", "slot", "room")
        opened = await self.organiser.get(self.event["urls"]["dashboard"])
        assert opened.status_code == 303 and "key=" not in opened.headers["location"]
        self.html("dashboard", await self.organiser.get(f"/e/{event}/dashboard"),
                  "event_title", "title", "slot", "room", "animator_name")
        self.html("dashboard table", await self.organiser.get(
            f"/e/{event}/dashboard", params={"part": "table"}),
            "title", "slot", "room", "animator_name")
        data = self.api("api event", await self.http.get(f"/api/v1/events/{event}"))
        atelier = next(a for a in data["ateliers"] if a["join_code"] == self.code)
        for field in ("title", "slot", "room", "animator_name"):
            if field in self.stored:
                assert atelier[field] == self.stored[field]
        if "event_title" in self.stored:
            assert data["title"] == self.stored["event_title"]
        p = self.payload
        fields = {"title": p, "question": p, "slot": p, "room": p, "animator_name": p,
                  "template": p}
        answer = await self.organiser.post(f"/e/{event}/boards", data=fields)
        assert 400 <= answer.status_code < 500, "an unknown template was accepted"
        self.html("dashboard form answer", answer, raw_shown=[p])

    async def check_home_forms(self) -> None:
        p = self.payload
        answer = await self.http.post("/boards", data={
            "title": p, "question": p, "columns": p, "template": "free", "anonymous": "1"})
        if answer.status_code == 200:
            self.html("home form answer", answer, "title")
        else:
            self.html("home form answer", answer, raw_shown=[p])
        answer = await self.http.post("/boards", data={"title": p, "question": p, "template": p})
        assert answer.status_code == 422, answer.status_code
        self.html("home form re-render", answer, raw_shown=[p])
        answer = await self.http.get("/join", params={"code": p})
        assert answer.status_code == 404, answer.status_code
        self.html("unknown code page", answer, raw_shown=[p[:20]])


async def frames_until(ws: ClientConnection, seq: int) -> list[dict[str, Any]]:
    """Replayed frames (presence skipped) up to and including the board's seq."""
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["seq"] < seq:
        frames.append(await next_event(ws, timeout=5))
    return frames


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
async def test_payload_is_refused_or_shown_escaped_everywhere(live: LiveServer,
                                                              payload: str) -> None:
    """One payload in every field: a clear 4xx or stored, then escaped on every surface."""
    async with (httpx.AsyncClient(base_url=live.url, timeout=10) as http,
                httpx.AsyncClient(base_url=live.url, timeout=10) as participant,
                httpx.AsyncClient(base_url=live.url, timeout=10) as animator,
                httpx.AsyncClient(base_url=live.url, timeout=10) as organiser):
        sweep = Sweep(live, payload, http, participant, animator, organiser)
        await sweep.write_everything()
        await sweep.check_pages()
        await sweep.check_sockets()
        await sweep.check_results()
        await sweep.check_event_pages()
        await sweep.check_home_forms()
        assert (await http.get("/api/v1/health")).status_code == 200
    assert sweep.checked == SURFACES, SURFACES - sweep.checked
    if "{{" in payload:
        assert sweep.stored["card"] == payload  # literal, never evaluated (7*7 stays 7*7)


def test_length_limits_count_every_code_point() -> None:
    """The sweep's expectations: combining marks and joiners count towards the limits."""
    assert text_length(PAYLOADS["combining"]) == 300  # é + 299 marks after NFC
    assert text_length(PAYLOADS["combining-over"]) > CARD_LIMIT
    assert text_length(PAYLOADS["zwj-over"]) > CARD_LIMIT
    assert text_length(PAYLOADS["limit-500"]) == CARD_LIMIT
    assert len(PAYLOADS) >= 20


async def test_over_long_floods_are_refused_with_their_lengths(http: httpx.AsyncClient) -> None:
    """600 combining marks or joiners after one letter are too long: 422 naming the length."""
    board = await new_board(http)
    code, column = board["join_code"], board["columns"][0]["id"]
    for text in (PAYLOADS["combining-over"], PAYLOADS["zwj-over"], PAYLOADS["limit-501"]):
        response = await api_post(http, code, board["animator_token"], column, text)
        assert_error(response, 422, "text_too_long")
        assert str(text_length(text)) in response.json()["error"]["en"]
    cards = (await http.get(f"/api/v1/boards/{code}")).json()["columns"][0]["cards"]
    assert cards == []


async def test_control_characters_cannot_make_a_blank_card(http: httpx.AsyncClient) -> None:
    """A card of control characters and spaces is blank: 422 empty_text, nothing stored."""
    board = await new_board(http)
    code, column = board["join_code"], board["columns"][0]["id"]
    for text in ("\x00 \x00", "\x00\n\x00", "\x07\t\x1b"):
        response = await api_post(http, code, board["animator_token"], column, text)
        assert response.status_code == 422, (text, response.text)
        assert_error(response, 422, "empty_text")


async def test_control_characters_are_dropped_from_one_line_fields(
        http: httpx.AsyncClient) -> None:
    """Titles, columns and pseudonyms lose control characters like card texts do."""
    assert_error(await http.post("/api/v1/boards", json={"title": "\x00\x1b"}), 422,
                 "title_required")
    board = await new_board(http, title="a\x00b", columns=["c\x00d"])
    code = board["join_code"]
    await api_join(http, code, "e\x07f")
    seen = (await http.get(f"/api/v1/boards/{code}")).json()
    assert (seen["title"], seen["columns"][0]["title"]) == ("ab", "cd")
    page = await http.get(f"/b/{code}/projector")
    assert "\x00" not in page.text


# --- lone surrogates and other undecodable input -----------------------------------------------


def raw_json(**fields: str) -> bytes:
    """A JSON object whose string values are written verbatim (escapes like \\ud800 kept)."""
    return ("{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}").encode()


LONE = '"a\\ud800b"'


async def test_lone_surrogates_are_refused_cleanly(live: LiveServer) -> None:
    """A lone surrogate in any text field gets a clear 4xx (or is stored cleaned), never 500."""
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        board = await new_board(http)
        event = (await http.post("/api/v1/events", json={"title": "Jour"})).json()
        code, token = board["join_code"], board["animator_token"]
        col = board["columns"][0]["id"]
        card = (await api_post(http, code, token, col, "carte")).json()
        theme = (await http.post(f"/api/v1/boards/{code}/themes", headers=bearer(token),
                                 json={"column_id": col, "title": "t"})).json()
    a = bearer(token)
    cases: list[tuple[str, str, dict[str, str], bytes]] = [
        ("POST", "/api/v1/boards", {}, raw_json(title=LONE)),
        ("POST", "/api/v1/boards", {}, raw_json(title='"t"', question=LONE)),
        ("POST", "/api/v1/boards", {}, raw_json(title='"t"', columns=f"[{LONE}]")),
        ("POST", "/api/v1/events", {}, raw_json(title=LONE)),
        ("POST", f"/api/v1/events/{event['id']}/boards", bearer(event["organiser_token"]),
         raw_json(title='"t"', room=LONE)),
        ("POST", f"/api/v1/boards/{code}/participants", {}, raw_json(name=LONE)),
        ("POST", f"/api/v1/boards/{code}/cards", a,
         raw_json(column_id=str(col), text=LONE, client_id='"s1"')),
        ("POST", f"/api/v1/boards/{code}/cards", a,
         raw_json(column_id=str(col), text='"ok"', client_id=LONE)),
        ("PATCH", f"/api/v1/boards/{code}/cards/{card['id']}", a, raw_json(text=LONE)),
        ("PATCH", f"/api/v1/boards/{code}/columns/{col}", a, raw_json(title=LONE)),
        ("POST", f"/api/v1/boards/{code}/themes", a, raw_json(column_id=str(col), title=LONE)),
        ("PATCH", f"/api/v1/boards/{code}/themes/{theme['id']}", a, raw_json(title=LONE)),
        ("PATCH", f"/api/v1/boards/{code}", a, raw_json(phase=LONE)),
    ]
    failures = []
    for method, url, headers, body in cases:
        # A fresh connection each: after a 500 the server drops the connection.
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as fresh:
            response = await fresh.request(method, url, content=body, headers={
                **headers, "content-type": "application/json"})
        if response.status_code >= 500:
            failures.append((method, url, body.decode(), response.status_code))
        elif response.status_code >= 400:
            assert_error(response)
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        for page in (f"/b/{code}/projector", f"/api/v1/boards/{code}"):
            assert (await http.get(page)).status_code == 200
    assert not failures, failures


async def test_deeply_nested_json_is_a_clear_400(live: LiveServer) -> None:
    """30,000 nested brackets (under the body limit) are invalid JSON for us: 400, not 500."""
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        board = await new_board(http)
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as fresh:
        response = await fresh.post(
            f"/api/v1/boards/{board['join_code']}/cards", headers={
                **bearer(board["animator_token"]), "content-type": "application/json"},
            content=b"[" * 30_000 + b"]" * 30_000)
    assert_error(response, 400, "invalid_json")


async def test_exotic_digits_in_forms_are_4xx(live: LiveServer) -> None:
    """Page forms given '²' or 10**20 as a column, a budget, a timer or a card get a 4xx."""
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        board = await new_board(http)
    code = board["join_code"]
    failures = []
    for bad in ("²", "١٢", "99999999999999999999", "-1", "1e3"):
        for url, data, who in (
                (f"/b/{code}/cards", {"column_id": bad, "text": "x", "client_id": "e1"}, "p"),
                (f"/b/{code}/cards", {"column_id": bad, "text": "x", "client_id": "e2"}, "a"),
                (f"/b/{code}/votes", {"card_id": bad}, "p"),
                (f"/b/{code}/animator/settings", {"vote_form": "1", "vote_budget": bad}, "a"),
                (f"/b/{code}/animator/timer", {"action": "start", "minutes": bad}, "a"),
                (f"/b/{code}/animator/move", {"card_id": bad, "target": "col-1"}, "a"),
                (f"/b/{code}/animator/cards/{bad}/edit", {"text": "x"}, "a"),
                (f"/b/{code}/animator/themes/{bad}", {"title": "x"}, "a")):
            async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
                if who == "a":
                    assert (await client.get(board["urls"]["animator"])).status_code == 303
                else:
                    assert (await client.post(f"/b/{code}/join", data={})).status_code == 303
                response = await client.post(url, data=data, headers={"HX-Request": "true"})
            if response.status_code >= 500:
                failures.append((url, data, response.status_code))
    assert not failures, failures


async def test_animator_plain_form_refusals_are_4xx_pages(live: LiveServer) -> None:
    """The animator's post form without htmx: an empty, too long or misplaced card is a 4xx."""
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        board = await new_board(http)
    code, col = board["join_code"], str(board["columns"][0]["id"])
    statuses = []
    for data in ({"column_id": col, "text": " ", "client_id": "p1"},
                 {"column_id": col, "text": "x" * 501, "client_id": "p2"},
                 {"column_id": "nope", "text": "x", "client_id": "p3"}):
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as animator:
            assert (await animator.get(board["urls"]["animator"])).status_code == 303
            response = await animator.post(f"/b/{code}/cards", data=data)
        statuses.append(response.status_code)
    assert all(400 <= status < 500 for status in statuses), statuses


# --- forged credentials ------------------------------------------------------------------------


async def test_forged_tokens_are_refused(live: LiveServer, http: httpx.AsyncClient) -> None:
    """Random tokens, another board's tokens, A's animator token on B: refused, B unchanged.

    Animator actions answer 403 animator_only to anyone else; participant actions (post,
    vote) answer 401 to a token that is not valid here."""
    a, b = await new_board(http), await new_board(http)
    code_b, col_b = b["join_code"], b["columns"][0]["id"]
    participant_a = await api_join(http, a["join_code"])
    participant_b = await api_join(http, code_b)
    card_b = (await api_post(http, code_b, b["animator_token"], col_b, "à garder")).json()
    before = (await http.get(f"/api/v1/boards/{code_b}",
                             headers=bearer(b["animator_token"]))).json()
    forged = {"random": uuid.uuid4().hex + uuid.uuid4().hex,
              "animator of A": a["animator_token"], "participant of A": participant_a,
              "huge": "x" * 4000, "a's hash": "0" * 64}
    for label, token in forged.items():
        h = bearer(token)
        for method, url, body, status, code in (
                ("POST", f"/api/v1/boards/{code_b}/cards",
                 {"column_id": col_b, "text": "intrus", "client_id": label}, 401,
                 "invalid_token"),
                ("PATCH", f"/api/v1/boards/{code_b}", {"phase": "vote"}, 403, "animator_only"),
                ("PATCH", f"/api/v1/boards/{code_b}/cards/{card_b['id']}", {"hidden": True},
                 403, "animator_only"),
                ("DELETE", f"/api/v1/boards/{code_b}/cards/{card_b['id']}", None, 403,
                 "animator_only"),
                ("PATCH", f"/api/v1/boards/{code_b}/columns/{col_b}", {"title": "pris"}, 403,
                 "animator_only"),
                ("POST", f"/api/v1/boards/{code_b}/timer", {"action": "start"}, 403,
                 "animator_only"),
                ("POST", f"/api/v1/boards/{code_b}/votes", {"card_id": card_b["id"]}, 401,
                 "invalid_token")):
            response = await http.request(method, url, headers=h, json=body)
            assert_error(response, status, code)
    for method, url, body in (("PATCH", f"/api/v1/boards/{code_b}", {"locked": True}),
                              ("DELETE", f"/api/v1/boards/{code_b}/cards/{card_b['id']}", None)):
        response = await http.request(method, url, headers=bearer(participant_b), json=body)
        assert_error(response, 403, "animator_only")
    for headers in ({"Authorization": "Bearer"}, {"Authorization": "Basic " + "a" * 20}, {}):
        response = await http.patch(f"/api/v1/boards/{code_b}", headers=headers,
                                    json={"phase": "vote"})
        assert_error(response, 403, "animator_only")
        response = await http.post(f"/api/v1/boards/{code_b}/votes", headers=headers,
                                   json={"card_id": card_b["id"]})
        assert_error(response, 401, "auth_required")
    # Pages: A's key or cookie does not open B's animator page or forms.
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as intruder:
        response = await intruder.get(f"/b/{code_b}/animator",
                                      params={"key": a["animator_token"]})
        assert response.status_code == 403 and "set-cookie" not in response.headers
        intruder.cookies.set(f"ab_a_{code_b}", a["animator_token"])
        assert (await intruder.get(f"/b/{code_b}/animator")).status_code == 403
        response = await intruder.post(f"/b/{code_b}/animator/settings", data={"phase": "vote"})
        assert response.status_code == 403
        response = await intruder.post(f"/b/{code_b}/animator/cards/{card_b['id']}",
                                       data={"hidden": "1"})
        assert response.status_code == 403
        intruder.cookies.set(f"ab_p_{code_b}", participant_a)
        response = await intruder.post(f"/b/{code_b}/cards", headers={"X-Outbox": "1"}, data={
            "column_id": str(col_b), "text": "intrus", "client_id": "cookie"})
        assert_error(response, 401, "auth_required")
    # Sockets: A's animator token is not B's; a participant cannot take the animator view.
    for headers, query, status in ((bearer(a["animator_token"]), "view=animator&lang=fr", 401),
                                   (bearer(a["animator_token"]), "since=0", 401),
                                   ({"Cookie": f"ab_a_{code_b}={a['animator_token']}"},
                                    "view=animator&lang=fr", 403),
                                   (bearer(participant_b), "view=animator&lang=fr", 403)):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(live, code_b, query), additional_headers=headers,
                               open_timeout=10):
                pass
        assert refused.value.response.status_code == status
    # Events: another event's organiser token is refused.
    one = (await http.post("/api/v1/events", json={"title": "Un"})).json()
    two = (await http.post("/api/v1/events", json={"title": "Deux"})).json()
    response = await http.post(f"/api/v1/events/{two['id']}/boards",
                               headers=bearer(one["organiser_token"]), json={"title": "x"})
    assert_error(response, 403, "organiser_only")
    response = await http.get(f"/e/{two['id']}/dashboard",
                              params={"key": one["organiser_token"]})
    assert response.status_code == 403 and "set-cookie" not in response.headers
    after = (await http.get(f"/api/v1/boards/{code_b}",
                            headers=bearer(b["animator_token"]))).json()
    assert after == before


# --- cross-site requests -----------------------------------------------------------------------


async def test_cross_origin_websocket_handshakes_are_refused(live: LiveServer,
                                                             http: httpx.AsyncClient) -> None:
    """Origin of another site (or null) gets 403 origin_not_allowed; the same host is fine."""
    board = await new_board(http)
    code = board["join_code"]
    for origin in ("https://evil.example", "null", f"http://127.0.0.1:{live.port}.evil.example",
                   f"http://evil.example@127.0.0.1:{live.port}x"):
        for query in ("since=0", "view=projector&lang=fr"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(ws_url(live, code, query), origin=origin,
                                   open_timeout=10):
                    pass
            response = refused.value.response
            assert response.status_code == 403, origin
            assert json.loads(response.body)["error"]["code"] == "origin_not_allowed"
    async with connect(ws_url(live, code, "view=projector&lang=fr"),
                       origin=f"http://127.0.0.1:{live.port}",
                       open_timeout=10) as ws:
        assert (await next_event(ws))["type"] == "snapshot"


CROSS_SITE: list[dict[str, str]] = [
    {"Origin": "https://evil.example"},
    {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
    {"Origin": "null"},
    {"Origin": "https://x.example/<img src=x onerror=alert(1)>"},
]


async def test_cross_site_form_posts_are_refused(live: LiveServer,
                                                 http: httpx.AsyncClient) -> None:
    """Forms posted from another site (or an opaque origin) get 403 and change nothing."""
    board = await new_board(http)
    code, col = board["join_code"], board["columns"][0]["id"]
    card = (await api_post(http, code, board["animator_token"], col, "à garder")).json()
    event = (await http.post("/api/v1/events", json={"title": "Jour"})).json()
    async with (httpx.AsyncClient(base_url=live.url, timeout=10) as participant,
                httpx.AsyncClient(base_url=live.url, timeout=10) as animator,
                httpx.AsyncClient(base_url=live.url, timeout=10) as organiser):
        assert (await participant.post(f"/b/{code}/join", data={"name": "Ana"})
                ).status_code == 303
        assert (await animator.get(board["urls"]["animator"])).status_code == 303
        assert (await organiser.get(event["urls"]["dashboard"])).status_code == 303
        before = (await http.get(f"/api/v1/boards/{code}",
                                 headers=bearer(board["animator_token"]))).json()
        posts: list[tuple[httpx.AsyncClient, str, dict[str, str]]] = [
            (http, f"/b/{code}/join", {"name": "Eve"}),
            (participant, f"/b/{code}/cards",
             {"column_id": str(col), "text": "csrf", "client_id": "csrf"}),
            (participant, f"/b/{code}/votes", {"card_id": str(card["id"])}),
            (animator, f"/b/{code}/animator/settings", {"phase": "vote"}),
            (animator, f"/b/{code}/animator/cards/{card['id']}", {"hidden": "1"}),
            (animator, f"/b/{code}/animator/cards/{card['id']}/edit", {"text": "csrf"}),
            (animator, f"/b/{code}/animator/cards/{card['id']}/move", {"target": "col-1"}),
            (animator, f"/b/{code}/animator/columns/{col}", {"title": "csrf"}),
            (animator, f"/b/{code}/animator/themes", {"column_id": str(col), "title": "csrf"}),
            (animator, f"/b/{code}/animator/timer", {"action": "start"}),
            (http, "/boards", {"title": "csrf"}),
            (http, "/events", {"title": "csrf"}),
            (organiser, f"/e/{event['id']}/boards", {"title": "csrf"}),
        ]
        for client, url, data in posts:
            for headers in CROSS_SITE:
                for extra in ({}, {"HX-Request": "true"}):
                    response = await client.post(url, data=data, headers={**headers, **extra})
                    assert response.status_code == 403, (url, headers, response.status_code)
                    assert "origin" in response.text.lower() or "site" in response.text.lower()
                    assert "<img src=x" not in response.text
            same = await client.post(url, data=data, headers={
                "Origin": "null", "Sec-Fetch-Site": "same-site"})
            assert same.status_code == 403, (url, "same-site is not same-origin")
        after = (await http.get(f"/api/v1/boards/{code}",
                                headers=bearer(board["animator_token"]))).json()
        assert after == before
        ateliers = (await http.get(f"/api/v1/events/{event['id']}")).json()["ateliers"]
        assert ateliers == []
    for table in ("board", "org_event"):
        assert live.query(f"select count(*) from {table} where title = 'csrf'"
                          )[0][0] == 0, table


# --- join-code guessing ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guessed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, str]]:
    """A server allowing 5 unknown codes a minute, after 5 unknown codes from 127.0.0.1."""
    path = tmp_path_factory.mktemp("guessing")
    server = LiveServer(path / "board.db", path / "server.log",
                        env={"BOARD_RATE_CODE_MISSES_PER_IP": "5/minute"})
    server.start()
    try:
        board = httpx.post(f"{server.url}/api/v1/boards", json={"title": "Vrai"}, timeout=10)
        code = board.json()["join_code"]
        for guess in ("ZZZZZ1", "ZZZZZ2", "ZZZZZ3", "ZZZZZ4", "ZZZZZ6"):
            miss = httpx.get(f"{server.url}/api/v1/boards/{guess}", timeout=10)
            assert_error(miss, 404, "unknown_board")
        yield server, code
    finally:
        server.stop()


def test_code_guessing_then_even_a_valid_code_waits(guessed: tuple[LiveServer, str]) -> None:
    """After 5 unknown codes the 6th lookup, of a valid code too, is 429 with Retry-After."""
    server, code = guessed
    for path in (f"/api/v1/boards/{code}", "/api/v1/boards/ZZZZZ7",
                 f"/api/v1/boards/{code}/participants"):
        method = "POST" if path.endswith("participants") else "GET"
        response = httpx.request(method, f"{server.url}{path}", json={}, timeout=10)
        assert_error(response, 429, "too_many")
        assert int(response.headers["retry-after"]) > 0
    projector = httpx.get(f"{server.url}/b/{code}/projector", timeout=10)
    assert projector.status_code == 429 and int(projector.headers["retry-after"]) > 0


def test_code_guessing_pages_answer_429(guessed: tuple[LiveServer, str]) -> None:
    """The participant page and /join also answer 429 with Retry-After while guessing waits."""
    server, code = guessed
    for path in (f"/b/{code}", f"/join?code={code}"):
        response = httpx.get(f"{server.url}{path}", timeout=10)
        assert response.status_code == 429, (path, response.status_code)
        assert int(response.headers["retry-after"]) > 0


async def test_code_guessing_websocket_answers_429_with_retry_after(
        guessed: tuple[LiveServer, str]) -> None:
    """The websocket handshake is refused with 429 too_many and a Retry-After header."""
    server, code = guessed
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(server, code, "since=0"), open_timeout=10):
            pass
    response = refused.value.response
    assert response.status_code == 429
    assert json.loads(response.body)["error"]["code"] == "too_many"
    assert int(response.headers.get("retry-after", "0")) > 0


# --- websocket frames from clients -------------------------------------------------------------


async def expect_close(ws: ClientConnection, timeout: float = 5) -> int | None:
    """Read until the server closes; its close code."""
    with pytest.raises(ConnectionClosed):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await asyncio.wait_for(ws.recv(), timeout)
    return ws.close_code


async def test_oversize_frame_closes_1009(strict: LiveServer) -> None:
    """A frame over BOARD_WS_MAX_FRAME_BYTES closes the socket with 1009; the server lives on."""
    async with httpx.AsyncClient(base_url=strict.url, timeout=10) as http:
        code = (await new_board(http))["join_code"]
        for query, payload in (("since=0", "x" * 70_000),
                               ("view=projector&lang=fr", b"\x00" * 66_000)):
            async with connect(ws_url(strict, code, query), open_timeout=10,
                               max_size=None) as ws:
                await ws.send(payload)
                assert await expect_close(ws) == 1009
        assert (await http.get("/api/v1/health")).status_code == 200


async def test_binary_and_unknown_messages_are_ignored(strict: LiveServer) -> None:
    """Binary frames, unknown JSON types and junk are ignored: the socket still gets cards."""
    async with httpx.AsyncClient(base_url=strict.url, timeout=10) as http:
        board = await new_board(http)
        code, col = board["join_code"], board["columns"][0]["id"]
        participant, poster = await api_join(http, code), await api_join(http, code, "Bo")
        async with connect(ws_url(strict, code, "since=0"), additional_headers=bearer(
                participant), open_timeout=10) as ws:
            for junk in (b"\x00\xff\xfe binary", json.dumps({"type": "card.posted", "data": {
                    "text": "<script>alert(1)</script>"}}), json.dumps({"type": "nope"}),
                         "[1,2", json.dumps({"type": "snapshot", "since": -1}), "",
                         json.dumps({"seq": 10**30, "type": "board.updated"}), b""):
                await ws.send(junk)
            posted = (await api_post(http, code, poster, col, "toujours là")).json()
            frame = await next_event(ws)
            assert frame["type"] == "card.posted" and frame["data"]["id"] == posted["id"]
        board_now = (await http.get(f"/api/v1/boards/{code}")).json()
        assert [c["text"] for c in board_now["columns"][0]["cards"]] == ["toujours là"]


async def test_message_flood_closes_1008(strict: LiveServer) -> None:
    """Past BOARD_RATE_WS_MESSAGES (10/minute here) the socket is closed with 1008."""
    async with httpx.AsyncClient(base_url=strict.url, timeout=10) as http:
        code = (await new_board(http))["join_code"]
        async with connect(ws_url(strict, code, "view=projector&lang=fr"),
                           open_timeout=10) as ws:
            sent = 0
            with pytest.raises(ConnectionClosed):
                for _ in range(200):
                    await ws.send("flood")
                    sent += 1
                    await asyncio.sleep(0.005)
            assert ws.close_code == 1008
            assert sent >= 10
        assert (await http.get("/api/v1/health")).status_code == 200


async def test_message_limit_is_per_socket(strict: LiveServer) -> None:
    """80 sockets one after another, each sending exactly the limit (10): none is closed."""
    async with httpx.AsyncClient(base_url=strict.url, timeout=10) as http:
        code = (await new_board(http))["join_code"]
    closed = []
    for i in range(80):  # ~11 % of new sockets reuse a freed Client's id(): stop at the first
        async with connect(ws_url(strict, code, "since=0"), open_timeout=10) as ws:
            for _ in range(10):
                await ws.send("ping")
            try:
                await next_event(ws, timeout=0.05)
            except TimeoutError:
                continue
            except ConnectionClosed:
                closed.append((i, ws.close_code))
                break
    assert not closed, f"socket {closed} closed after 10 messages, within its own limit"


# --- posting limits ----------------------------------------------------------------------------


def stored_cards(server: LiveServer, code: str) -> list[str]:
    return [row[0] for row in server.query(
        "select card.text from card join board on board.id = card.board_id "
        "where board.join_code = ? order by card.id", code)]


async def test_posting_rate_limit_answers_429(strict: LiveServer) -> None:
    """3 cards a minute (here): the 4th is 429 too_many with Retry-After and is not stored."""
    async with httpx.AsyncClient(base_url=strict.url, timeout=10) as http:
        board = await new_board(http)
        code, col = board["join_code"], board["columns"][0]["id"]
        token = await api_join(http, code)
        for i in range(3):
            assert (await api_post(http, code, token, col, f"carte {i}", f"c{i}")
                    ).status_code == 201
        for _ in range(2):  # the outbox retries with the same client_id: still refused
            response = await api_post(http, code, token, col, "une de trop", "c3")
            assert_error(response, 429, "too_many")
            assert int(response.headers["retry-after"]) > 0
        assert stored_cards(strict, code) == ["carte 0", "carte 1", "carte 2"]
        async with httpx.AsyncClient(base_url=strict.url, timeout=10) as phone:
            assert (await phone.post(f"/b/{code}/join", data={})).status_code == 303
            for i in range(4):
                response = await phone.post(f"/b/{code}/cards", headers={"X-Outbox": "1"},
                                            data={"column_id": str(col), "text": f"tel {i}",
                                                  "client_id": f"t{i}"})
                assert response.status_code == (201 if i < 3 else 429), response.text[:200]
            assert_error(response, 429, "too_many")
            assert int(response.headers["retry-after"]) > 0
            assert response.json()["text"]
        assert len(stored_cards(strict, code)) == 6


async def test_each_animator_has_its_own_posting_budget(strict: LiveServer) -> None:
    """Board A's animator spending its 3 cards a minute leaves board B's animator its own."""
    async with httpx.AsyncClient(base_url=strict.url, timeout=10) as http:
        a, b = await new_board(http), await new_board(http)
        for i in range(4):  # until A's animator is refused (other tests may have posted)
            response = await api_post(http, a["join_code"], a["animator_token"],
                                      a["columns"][0]["id"], f"a{i}")
            if response.status_code == 429:
                break
            assert response.status_code == 201, response.text
        assert_error(response, 429, "too_many")
        response = await api_post(http, b["join_code"], b["animator_token"],
                                  b["columns"][0]["id"], "b0")
        assert response.status_code == 201, response.text


# --- headers and logs --------------------------------------------------------------------------


def assert_security_headers(label: str, response: httpx.Response) -> None:
    csp = response.headers.get("content-security-policy", "")
    directives = {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.strip()}
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, (label, csp)
    assert directives.get("script-src") == ["'self'"], (label, csp)
    assert directives.get("frame-ancestors") == ["'none'"], (label, csp)
    assert directives.get("object-src") == ["'none'"], (label, csp)
    assert "*" not in csp and "data:" not in " ".join(directives.get("script-src", []))
    assert response.headers.get("referrer-policy") == "no-referrer", label
    assert response.headers.get("x-content-type-options") == "nosniff", label


async def test_every_html_page_has_strict_security_headers(live: LiveServer,
                                                           http: httpx.AsyncClient) -> None:
    """CSP without unsafe-inline/eval, frame-ancestors 'none', no-referrer, on every page."""
    board = await new_board(http)
    code = board["join_code"]
    event = (await http.post("/api/v1/events", json={"title": "Jour"})).json()
    responses: dict[str, httpx.Response] = {}
    async with (httpx.AsyncClient(base_url=live.url, timeout=10) as participant,
                httpx.AsyncClient(base_url=live.url, timeout=10) as animator,
                httpx.AsyncClient(base_url=live.url, timeout=10) as organiser):
        responses["home"] = await http.get("/")
        responses["join"] = await participant.get(f"/b/{code}")
        joined = await participant.post(f"/b/{code}/join", data={"name": "Ana"})
        responses["join redirect"] = joined
        cookie = joined.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        responses["participant"] = await participant.get(f"/b/{code}")
        responses["projector"] = await http.get(f"/b/{code}/projector")
        opened = await animator.get(board["urls"]["animator"])
        responses["animator redirect"] = opened
        cookie = opened.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        responses["animator"] = await animator.get(f"/b/{code}/animator")
        responses["forbidden"] = await http.get(f"/b/{code}/animator")
        responses["area"] = await participant.get(f"/b/{code}/area?view=participant")
        responses["unknown code"] = await http.get("/join", params={"code": "ZZ"})
        responses["not found"] = await http.get("/nothing/here")
        responses["created"] = await http.post("/boards", data={"title": "Form"})
        responses["event created"] = await http.post("/events", data={"title": "Jour"})
        responses["event join"] = await http.get(f"/e/{event['id']}")
        assert (await organiser.get(event["urls"]["dashboard"])).status_code == 303
        responses["dashboard"] = await organiser.get(f"/e/{event['id']}/dashboard")
        responses["error page"] = await http.post(f"/b/{code}/votes", data={"card_id": "1"},
                                                  headers={"Origin": "https://evil.example"})
        responses["qr"] = await http.get(f"/b/{code}/qr.svg")
        responses["api"] = await http.get(f"/api/v1/boards/{code}")
        responses["static"] = await http.get("/static/board.js")
    for label, response in responses.items():
        assert response.status_code < 500, label
        assert_security_headers(label, response)
    html = [k for k, r in responses.items() if r.headers.get("content-type", "").startswith(
        "text/html")]
    assert len(html) >= 14, html
    for label in ("created", "event created", "animator", "dashboard"):
        assert "no-store" in responses[label].headers.get("cache-control", ""), label
    for label in html:
        body = responses[label].text
        assert not re.search(r"<script(?![^>]*\bsrc=)", body), label  # no inline script
        assert not re.search(r"\son[a-z]+\s*=", body), label  # no inline handler


async def test_animator_and_organiser_keys_never_reach_the_log(strict: LiveServer) -> None:
    """Opening the secret links (right and wrong keys) logs the path, never the key itself."""
    async with httpx.AsyncClient(base_url=strict.url, timeout=10) as http:
        board = await new_board(http)
        other = await new_board(http)
        event = (await http.post("/api/v1/events", json={"title": "Jour"})).json()
        secrets = [board["animator_token"], other["animator_token"], event["organiser_token"]]
        async with httpx.AsyncClient(base_url=strict.url, timeout=10) as browser:
            assert (await browser.get(board["urls"]["animator"])).status_code == 303
            assert (await browser.get(f"/b/{board['join_code']}/animator")).status_code == 200
            wrong = await browser.get(f"/b/{board['join_code']}/animator",
                                      params={"key": other["animator_token"]})
            assert wrong.status_code == 403
            assert (await browser.get(event["urls"]["dashboard"])).status_code == 303
            response = await browser.get(f"/b/{board['join_code']}/animator",
                                         params={"lang": "fr", "key": secrets[0]})
            assert response.status_code == 303
    deadline = time.monotonic() + 5
    log = ""
    while time.monotonic() < deadline:  # access lines are written asynchronously
        log = strict.log_path.read_text(errors="replace")
        if log.count("key=[redacted]") >= 4:
            break
        await asyncio.sleep(0.1)
    assert log.count("key=[redacted]") >= 4, log[-2000:]
    assert f"/b/{board['join_code']}/animator" in log
    for secret in secrets:
        assert secret not in log


# --- the browser: payload cards on the projector and the animator page ------------------------
# Last in this module: Playwright's sync API runs its own event loop while its browser fixture
# lives, and the asyncio tests above need theirs.


PWNING = {k: v for k, v in PAYLOADS.items() if text_length(v) <= CARD_LIMIT} | {
    "pwned-svg": "<svg onload=\"window.__pwned=1\"></svg>",
    "pwned-hx": '<div hx-get="/api/v1/boards" hx-trigger="load" hx-on:htmx:load="'
                'window.__pwned=1">x</div>',
    "pwned-attr": '" autofocus onfocus="window.__pwned=1" x="',
    "pwned-style": "<style>body{background:url(/pwned)}</style>",
}


@pytest.mark.e2e
def test_payloads_never_run_in_chromium(live: LiveServer, open_page: OpenPage,
                                        console: ConsoleLog) -> None:
    """Projector and animator pages showing every payload card: no dialog, no script, no error."""
    columns = ['<img src=x onerror="window.__pwned=1">', "{{ 7*7 }}"]
    response = httpx.post(f"{live.url}/api/v1/boards", timeout=10, json={
        "title": '<img src=x onerror="window.__pwned=1">',
        "question": "<script>window.__pwned=1</script>", "columns": columns,
        "anonymous": False})
    assert response.status_code == 201, response.text
    board = response.json()
    code, token = board["join_code"], board["animator_token"]
    col0, col1 = (c["id"] for c in board["columns"])
    participant = httpx.post(f"{live.url}/api/v1/boards/{code}/participants", timeout=10,
                             json={"name": "<svg onload=window.__pwned=1>"}).json()["token"]

    def post_all(tag: str) -> list[dict[str, Any]]:
        cards = []
        for i, text in enumerate(PWNING.values()):
            who = token if i % 2 else participant
            answer = httpx.post(f"{live.url}/api/v1/boards/{code}/cards", timeout=10,
                                headers=bearer(who), json={"column_id": (col0, col1)[i % 2],
                                                           "text": text,
                                                           "client_id": f"{tag}-{i}"})
            assert answer.status_code == 201, answer.text
            cards.append(answer.json())
        return cards

    before = post_all("before")
    dialogs: list[str] = []
    requests: list[str] = []
    pages: list[Page] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    def on_request(request: Request) -> None:
        requests.append(request.url)

    for label, options, url in (("projector", PROJECTOR, f"{live.url}/b/{code}/projector"),
                                ("animator", LAPTOP, board["urls"]["animator"])):
        page = open_page(label, **options)
        page.on("dialog", on_dialog)
        page.on("request", on_request)
        page.goto(url)
        page.wait_for_selector("body.is-live", timeout=10_000)
        pages.append(page)
    projector, animator = pages
    assert "key=" not in animator.url

    # Live: cards, an edit, a rename and a theme arrive through the socket and area re-fetches.
    after = post_all("after")
    headers = bearer(token)
    httpx.patch(f"{live.url}/api/v1/boards/{code}/cards/{before[0]['id']}", headers=headers,
                json={"text": PAYLOADS["pwned"]}, timeout=10).raise_for_status()
    httpx.patch(f"{live.url}/api/v1/boards/{code}/columns/{col1}", headers=headers,
                json={"title": PAYLOADS["sq-breakout"]}, timeout=10).raise_for_status()
    httpx.post(f"{live.url}/api/v1/boards/{code}/themes", headers=headers, timeout=10,
               json={"column_id": col0, "title": PWNING["pwned-attr"]}).raise_for_status()
    for page in pages:
        for card in after:
            page.wait_for_selector(f"#card-{card['id']}", state="attached", timeout=10_000)
        page.wait_for_function("document.querySelectorAll('.theme').length >= 1",
                               timeout=10_000)
    projector.mouse.move(200, 400)
    projector.mouse.move(1200, 700)
    for page in pages:
        texts = page.locator(".card-text").all_text_contents()
        assert PAYLOADS["script"] in texts and "{{ 7*7 }}" in texts
        expect(page.locator(f"#col-title-{col1}")).to_have_text(PAYLOADS["sq-breakout"])
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.evaluate("document.querySelectorAll('.card-body img, .card-body svg, "
                             ".card-body script, .card-body iframe, .card-body style').length"
                             ) == 0
        assert page.title().startswith('<img src=x onerror="window.__pwned=1">')
    assert dialogs == []
    assert all(url.startswith(live.url + "/") for url in requests), requests
    paths = {httpx.URL(url).path for url in requests}
    assert not {"/api/v1/boards", "/pwned"} & paths and not any(
        p.endswith("/x") for p in paths), paths
    console.assert_no_errors()
