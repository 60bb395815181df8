"""Page weight in Debian chromium: what a phone downloads to open the participant page.

Cold load = a new browser context (empty HTTP cache) that already holds the participant's
cookie (set through Playwright's API client, which does not touch the browser's cache), then
one navigation to /b/CODE until the page is live (its websocket is open).

Measured with the Chrome DevTools Protocol (Network domain of the page's target):
- HTTP: `Network.loadingFinished.encodedDataLength`, what DevTools shows as "transferred":
  response headers + the body as sent (gzipped). Request headers are not counted.
- the websocket counts as one request; its bytes are its handshake response headers plus the
  payloads of the frames received during the measurement (permessage-deflate is off).
- JS: the transferred bytes of the `Script` responses (headers included).
Budgets (issue 6) apply to the participant page; the join, projector and animator pages are
measured and reported only. Figures: test-artifacts/page-weight.json.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, CDPSession, Page, expect

from tests.conftest import LiveServer
from tests.e2e.conftest import LAPTOP, PHONE, PROJECTOR

pytestmark = pytest.mark.e2e

KB = 1000  # budgets in kilobytes of 1,000 bytes (as DevTools shows "kB")
BUDGET = {"total_bytes": 60 * KB, "js_bytes": 25 * KB, "requests": 6}
CARDS = [  # a board in the middle of an atelier: 12 cards over the three columns
    "Les bus ne passent plus après 20 h", "Trop de voitures devant l'école",
    "Le marché du samedi rassemble tout le monde", "Peu de bancs pour les personnes âgées",
    "Rendre les trottoirs praticables en fauteuil", "Partager les jardins familiaux",
    "Une navette vers la gare le dimanche", "Des pistes cyclables continues",
    "Un lieu pour les jeunes le soir", "Mieux éclairer le chemin du stade",
    "Informer des travaux à l'avance", "Un covoiturage organisé par le quartier",
]
HASHED = ("/static/favicon.", "/static/board.", "/static/bundles/")


class NetworkLog:
    """Every request of one page as the DevTools Protocol reports it."""

    def __init__(self, page: Page) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.cdp: CDPSession = page.context.new_cdp_session(page)
        for name in ("requestWillBeSent", "responseReceived", "loadingFinished",
                     "loadingFailed", "requestServedFromCache", "webSocketCreated",
                     "webSocketHandshakeResponseReceived", "webSocketFrameReceived"):
            self.cdp.on(f"Network.{name}", getattr(self, "_" + name))
        self.cdp.send("Network.enable")

    def reset(self) -> None:
        self.records.clear()

    def _record(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.records.setdefault(event["requestId"], {
            "url": "", "type": "", "status": None, "bytes": 0, "encoding": "",
            "from_cache": False, "failed": False})

    def _requestWillBeSent(self, event: dict[str, Any]) -> None:
        record = self._record(event)
        record.update(url=event["request"]["url"], type=event.get("type", ""))

    def _responseReceived(self, event: dict[str, Any]) -> None:
        response = event["response"]
        headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
        self._record(event).update(
            status=response["status"], encoding=headers.get("content-encoding", ""),
            cache_control=headers.get("cache-control", ""),
            from_cache=bool(response.get("fromDiskCache") or response.get("fromPrefetchCache")
                            or self._record(event)["from_cache"]))

    def _loadingFinished(self, event: dict[str, Any]) -> None:
        self._record(event)["bytes"] = int(event["encodedDataLength"])

    def _loadingFailed(self, event: dict[str, Any]) -> None:
        self._record(event)["failed"] = True

    def _requestServedFromCache(self, event: dict[str, Any]) -> None:
        self._record(event)["from_cache"] = True

    def _webSocketCreated(self, event: dict[str, Any]) -> None:
        self._record(event).update(url=event["url"], type="WebSocket")

    def _webSocketHandshakeResponseReceived(self, event: dict[str, Any]) -> None:
        response = event["response"]
        text = response.get("headersText") or "".join(
            f"{k}: {v}\r\n" for k, v in response.get("headers", {}).items())
        record = self._record(event)
        record.update(status=response["status"])
        record["bytes"] += len(text.encode())

    def _webSocketFrameReceived(self, event: dict[str, Any]) -> None:
        self._record(event)["bytes"] += len(event["response"]["payloadData"].encode())

    def network(self) -> list[dict[str, Any]]:
        """What went over the network: data: URLs and cache hits left out."""
        return [r for r in self.records.values()
                if r["url"] and not r["url"].startswith("data:") and not r["from_cache"]]


def summary(log: NetworkLog) -> dict[str, Any]:
    requests = log.network()
    js = [r for r in requests if r["type"] == "Script"]
    return {
        "requests": len(requests),
        "total_bytes": sum(r["bytes"] for r in requests),
        "js_bytes": sum(r["bytes"] for r in js),
        "by_request": [{"url": urlsplit(r["url"]).path, "type": r["type"],
                        "status": r["status"], "bytes": r["bytes"],
                        "encoding": r["encoding"]} for r in requests],
    }


@pytest.fixture(scope="module")
def board(module_server: LiveServer) -> dict[str, Any]:
    """A board with a dozen cards from three people, as in the middle of an atelier."""
    url = module_server.url
    response = httpx.post(f"{url}/api/v1/boards", timeout=10, json={
        "title": "Mobilités du quotidien", "question": "Comment se déplacer mieux au quartier ?",
        "template": "constats-enjeux-besoins", "anonymous": False})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    code = created["join_code"]
    tokens = []
    for name in ("Amina", "Bruno", "Chloé"):
        joined = httpx.post(f"{url}/api/v1/boards/{code}/participants", json={"name": name},
                            timeout=10)
        assert joined.status_code == 201, joined.text
        tokens.append(joined.json()["token"])
    columns = [c["id"] for c in created["columns"]]
    for i, text in enumerate(CARDS):
        posted = httpx.post(f"{url}/api/v1/boards/{code}/cards", timeout=10,
                            headers={"Authorization": f"Bearer {tokens[i % 3]}"},
                            json={"column_id": columns[i % 3], "text": text,
                                  "client_id": uuid.uuid4().hex})
        assert posted.status_code == 201, posted.text
    return created


NewContext = Callable[..., BrowserContext]


@pytest.fixture
def context(browser: Browser) -> Iterator[NewContext]:
    """context(**options): a new browser context (its own empty cache), closed at the end."""
    contexts: list[BrowserContext] = []

    def new(**options: Any) -> BrowserContext:
        made = browser.new_context(locale="fr-FR", **options)
        made.set_default_timeout(10_000)
        contexts.append(made)
        return made

    yield new
    for made in contexts:
        made.close()


def load(page: Page, log: NetworkLog, url: str, *, reload: bool = False) -> dict[str, Any]:
    log.reset()
    if reload:
        page.reload()
    else:
        page.goto(url)
    if page.locator("#live").count():  # live pages: until the websocket is open
        expect(page.locator("body")).to_have_class(re.compile(r"\bis-live\b"))
    page.wait_for_timeout(500)  # anything late (a favicon, a presence frame) is counted too
    return summary(log)


def cold(new_context: NewContext, server: LiveServer, path: str, *, login: str | None = None,
         **options: Any) -> tuple[Page, NetworkLog, dict[str, Any]]:
    browser_context = new_context(**options)
    if login:  # the cookie, through the API client: the browser's cache stays empty
        if login.startswith("/b/") and login.endswith("/join"):
            response = browser_context.request.post(server.url + login, form={"name": "Zoé"})
        else:
            response = browser_context.request.get(server.url + login)
        assert response.ok, response.status
    page = browser_context.new_page()
    log = NetworkLog(page)
    figures = load(page, log, server.url + path)
    return page, log, figures


def test_participant_page_cold_load_within_budget(
    module_server: LiveServer, board: dict[str, Any], context: NewContext, artifacts: Path,
) -> None:
    """Participant page, cold cache: ≤ 60 kB transferred, JS ≤ 25 kB, ≤ 6 requests, nothing
    from another origin, no font; a reload and the next visit take the hashed files from the
    cache without asking the server. Join, projector and animator pages measured too."""
    code = board["join_code"]
    origin = module_server.url
    report: dict[str, Any] = {"method": __doc__.split("Budgets")[0].strip() if __doc__ else "",
                              "budget_participant": BUDGET, "cards_on_board": len(CARDS)}

    page, log, participant = cold(context, module_server, f"/b/{code}",
                                  login=f"/b/{code}/join", **PHONE)
    expect(page.locator("#post-form")).to_be_visible()
    report["participant"] = participant

    # Warm: a reload, and the next visit of the page in the same browser.
    reloaded = load(page, log, "", reload=True)
    revisit = load(page, log, origin + f"/b/{code}")
    report["participant_reload"] = reloaded
    report["participant_revisit"] = revisit

    _, _, joining = cold(context, module_server, f"/b/{code}", **PHONE)
    report["join"] = joining
    _, _, projector = cold(context, module_server, f"/b/{code}/projector", **PROJECTOR)
    report["projector"] = projector
    key = urlsplit(board["urls"]["animator"])
    _, _, animator = cold(context, module_server, f"/b/{code}/animator",
                          login=f"{key.path}?{key.query}", **LAPTOP)
    report["animator"] = animator

    artifacts.joinpath("page-weight.json").write_text(
        json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for label in ("participant", "participant_reload", "participant_revisit", "join",
                  "projector", "animator"):
        figures = report[label]
        print(f"{label:20} {figures['requests']} requests, "
              f"{figures['total_bytes'] / KB:.1f} kB transferred, "
              f"JS {figures['js_bytes'] / KB:.1f} kB")
        for request in figures["by_request"]:
            print(f"    {request['status']} {request['type']:10} {request['bytes']:>7} B "
                  f"{request['encoding']:4} {request['url']}")

    # Budgets, participant page, cold.
    requests = participant["by_request"]
    assert participant["requests"] <= BUDGET["requests"], requests
    assert participant["total_bytes"] <= BUDGET["total_bytes"], requests
    assert participant["js_bytes"] <= BUDGET["js_bytes"], requests
    assert [r["type"] for r in requests].count("Script") == 1, requests  # one bundle
    assert all(r["url"].startswith(("/b/", "/static/", "/api/v1/")) for r in requests)
    for record in log.records.values():  # nothing from elsewhere, no font at all
        assert not record["url"].startswith("http") or record["url"].startswith(
            (origin, module_server.ws_url)), record
        assert record["type"] != "Font", record
    assert not [r for r in participant["by_request"] if r["url"].endswith(
        (".woff", ".woff2", ".ttf", ".otf"))]
    # Compressed: the page, the stylesheet and the script came gzipped.
    for request in requests:
        if request["type"] in ("Document", "Stylesheet", "Script"):
            assert request["encoding"] == "gzip", request

    # Warm: the hashed files are not asked for again (served from the browser's cache).
    for figures in (reloaded, revisit):
        fetched = [r["url"] for r in figures["by_request"] if r["url"].startswith(HASHED)]
        assert fetched == [], figures["by_request"]
        assert figures["js_bytes"] == 0
