"""Freezing a board into a synthesis, through the real server: versions and permalinks, every
export (HTML, Markdown, CSV, JSON, PDF) and its escaping, import, search, data protection
(delete, anonymise) and the cross-atelier synthesis of an event."""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from markdown_it import MarkdownIt

from tests.conftest import ON_POSTGRESQL, LiveServer, fresh_database_url
from tests.integration.helpers import (
    api,
    assert_error,
    bearer,
    create_board,
    join,
    post,
    quiet,
    subscribe,
)

EXPORTS = ("html", "md", "csv", "json", "pdf")
TEXT_EXPORTS = ("html", "md", "csv", "json")
HOSTILE = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "**bold**",
    "# title",
)


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
async def http(module_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=module_server.url, timeout=60) as client:
        yield client


@pytest.fixture
async def own_http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a server of its own (search sees every frozen board of its database)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        yield client


@dataclass
class Board:
    code: str
    animator: str
    columns: dict[str, int]  # title -> id


async def new_board(http: httpx.AsyncClient, title: str = "Mobilités rurales", *,
                    anonymous: bool = False, event: tuple[str, str] | None = None) -> Board:
    body = {"title": title, "template": "constats-enjeux-besoins", "anonymous": anonymous}
    if event is None:
        created = await create_board(http, **body)
    else:
        response = await http.post(f"/api/v1/events/{event[0]}/boards",
                                   headers=bearer(event[1]), json=body)
        assert response.status_code == 201, response.text
        created = response.json()
    columns = {c["title"]: c["id"] for c in created["columns"]}
    assert list(columns) == ["Constats", "Enjeux", "Besoins"]
    return Board(created["join_code"], created["animator_token"], columns)


_posted = 0


async def card(http: httpx.AsyncClient, board: Board, token: str, column: str, text: str,
               client_id: str | None = None) -> dict[str, Any]:
    global _posted
    _posted += 1
    response = await post(http, board.code, token, board.columns[column], text,
                          client_id or f"c-{_posted}")
    assert response.status_code == 201, response.text
    return dict(response.json())


async def freeze(http: httpx.AsyncClient, board: Board, **body: Any) -> dict[str, Any]:
    response = await http.post(api(board.code, "/freeze"), headers=bearer(board.animator),
                               json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def reopen(http: httpx.AsyncClient, board: Board) -> dict[str, Any]:
    response = await http.post(api(board.code, "/reopen"), headers=bearer(board.animator))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def patch(http: httpx.AsyncClient, board: Board, path: str = "", **body: Any
                ) -> httpx.Response:
    return await http.patch(api(board.code, path), headers=bearer(board.animator), json=body)


async def fetch(http: httpx.AsyncClient, url: str) -> httpx.Response:
    """A permalink, read like anyone would: no token, no cookie."""
    response = await http.get(url, headers={"Authorization": ""})
    assert response.status_code == 200, (url, response.text[:500])
    return response


async def export_json(http: httpx.AsyncClient, frozen: dict[str, Any]) -> dict[str, Any]:
    return dict((await fetch(http, frozen["urls"]["json"])).json())


async def get_board(http: httpx.AsyncClient, code: str, token: str | None = None
                    ) -> dict[str, Any]:
    response = await http.get(api(code), headers=bearer(token) if token else {})
    assert response.status_code == 200, response.text
    return dict(response.json())


def sha256_of(content: dict[str, Any]) -> str:
    """The documented hash, computed here independently: SHA-256 of canonical JSON."""
    canonical = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def all_cards(content: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for column in content["columns"]:
        found.extend(column["cards"])
        for theme in column["themes"]:
            found.extend(theme["cards"])
    return found


def texts_of_board(board: dict[str, Any]) -> dict[str, list[str]]:
    return {column["title"]: sorted(c["text"] for c in column["cards"])
            for column in board["columns"]}


async def search(http: httpx.AsyncClient, q: str) -> list[dict[str, Any]]:
    response = await http.get("/api/v1/search", params={"q": q})
    assert response.status_code == 200, response.text
    return list(response.json())


# --- freezing, versions and permalinks --------------------------------------------------------


async def test_freeze_answers_version_hash_and_public_permalinks(
        http: httpx.AsyncClient) -> None:
    board = await new_board(http, "Mobilités rurales")
    lea = await join(http, board.code, "Léa")
    await card(http, board, lea, "Constats", "Peu de bus le dimanche")
    frozen = await freeze(http, board, notes={str(board.columns["Constats"]): "**Peu**"},
                          conclusion="On continue")
    assert set(frozen) == {"version", "hash", "urls"}
    assert frozen["version"] == 1
    assert re.fullmatch(r"[0-9a-f]{64}", frozen["hash"])
    assert set(frozen["urls"]) == set(EXPORTS)
    slug = frozen["urls"]["html"].rsplit("/", 1)[1].removesuffix(".html")
    content = await export_json(http, frozen)
    assert content["hash"] == frozen["hash"]
    assert sha256_of({k: v for k, v in content.items() if k != "hash"}) == frozen["hash"]
    day = content["frozen_at"][:10]
    media = {"html": "text/html", "md": "text/markdown", "csv": "text/csv",
             "json": "application/json", "pdf": "application/pdf"}
    for fmt, url in frozen["urls"].items():
        assert url.endswith(f"/s/{slug}.{fmt}")
        response = await fetch(http, url)
        assert response.headers["content-type"].startswith(media[fmt])
        disposition = response.headers["content-disposition"]
        assert disposition.endswith(f'filename="{day}-mobilites-rurales-synthese-v1.{fmt}"'), \
            disposition
    bare = await fetch(http, frozen["urls"]["html"].removesuffix(".html"))
    assert bare.headers["content-type"].startswith("text/html")
    assert bare.text == (await fetch(http, frozen["urls"]["html"])).text
    listed = await http.get(api(board.code, "/syntheses"), headers=bearer(board.animator))
    assert listed.status_code == 200
    assert [(v["version"], v["hash"], v["urls"]) for v in listed.json()] == [
        (1, frozen["hash"], frozen["urls"])]
    assert listed.json()[0]["frozen_at"][:10] == day
    assert_error(await http.get(api(board.code, "/syntheses"), headers=bearer(lea)),
                 403, "animator_only")


async def test_only_the_animator_freezes_and_only_once(http: httpx.AsyncClient) -> None:
    board = await new_board(http)
    lea = await join(http, board.code, "Léa")
    assert_error(await http.post(api(board.code, "/freeze"), headers=bearer(lea), json={}),
                 403, "animator_only")
    no_token = await http.post(api(board.code, "/freeze"), json={})
    assert no_token.status_code in (401, 403), no_token.text
    assert (await get_board(http, board.code))["frozen"] is False
    await freeze(http, board)
    assert (await get_board(http, board.code))["frozen"] is True
    assert_error(await http.post(api(board.code, "/freeze"), headers=bearer(board.animator),
                                 json={}), 409, "board_frozen")


async def test_frozen_board_refuses_changes_but_keeps_idempotent_posts(
        http: httpx.AsyncClient) -> None:
    board = await new_board(http)
    lea = await join(http, board.code, "Léa")
    first = await card(http, board, lea, "Constats", "Une carte", client_id="same-id")
    theme = await http.post(api(board.code, "/themes"), headers=bearer(board.animator),
                            json={"column_id": board.columns["Constats"], "title": "Transport"})
    assert theme.status_code == 201, theme.text
    await patch(http, board, phase="vote")
    await freeze(http, board)

    constats = board.columns["Constats"]
    attempts = {
        "post": await post(http, board.code, lea, constats, "Trop tard", "late-1"),
        "animator post": await post(http, board.code, board.animator, constats, "Aussi", "a-1"),
        "vote": await http.post(api(board.code, "/votes"), headers=bearer(lea),
                                json={"card_id": first["id"]}),
        "settings": await patch(http, board, phase="restitution"),
        "theme": await http.post(api(board.code, "/themes"), headers=bearer(board.animator),
                                 json={"column_id": constats, "title": "Autre"}),
        "move": await patch(http, board, f"/cards/{first['id']}",
                            theme_id=theme.json()["id"]),
        "hide": await patch(http, board, f"/cards/{first['id']}", hidden=True),
        "timer": await http.post(api(board.code, "/timer"), headers=bearer(board.animator),
                                 json={"action": "start", "seconds": 60}),
    }
    for name, response in attempts.items():
        assert response.status_code == 409, (name, response.text)
        assert_error(response, 409, "board_frozen")

    again = await post(http, board.code, lea, constats, "Une carte", "same-id")
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first["id"] and again.json()["text"] == "Une carte"
    seen = await get_board(http, board.code, board.animator)
    texts = [c["text"] for column in seen["columns"] for c in column["cards"]]
    assert texts == ["Une carte"]
    assert seen["phase"] == "vote" and all(not c["hidden"] for c in seen["columns"][0]["cards"])


async def test_reopen_then_refreeze_keeps_version_one_byte_for_byte(
        http: httpx.AsyncClient) -> None:
    board = await new_board(http)
    lea = await join(http, board.code, "Léa")
    await card(http, board, lea, "Constats", "Avant le gel")
    assert_error(await http.post(api(board.code, "/reopen"), headers=bearer(board.animator)),
                 409, "not_frozen")
    v1 = await freeze(http, board)
    before = {fmt: (await fetch(http, v1["urls"][fmt])).content for fmt in TEXT_EXPORTS}
    assert_error(await http.post(api(board.code, "/reopen"), headers=bearer(lea)),
                 403, "animator_only")
    settings = await reopen(http, board)
    assert settings["frozen"] is False
    assert_error(await http.post(api(board.code, "/reopen"), headers=bearer(board.animator)),
                 409, "not_frozen")
    await card(http, board, lea, "Enjeux", "Après la réouverture")
    v2 = await freeze(http, board)
    assert v2["version"] == 2 and v2["hash"] != v1["hash"]
    assert set(v2["urls"].values()).isdisjoint(v1["urls"].values())
    for fmt in TEXT_EXPORTS:
        assert (await fetch(http, v1["urls"][fmt])).content == before[fmt], fmt
    assert (await export_json(http, v1))["hash"] == v1["hash"]
    old_texts = [c["text"] for c in all_cards(await export_json(http, v1))]
    new_texts = [c["text"] for c in all_cards(await export_json(http, v2))]
    assert old_texts == ["Avant le gel"]
    assert sorted(new_texts) == ["Après la réouverture", "Avant le gel"]
    assert "v2.md" in (await fetch(http, v2["urls"]["md"])).headers["content-disposition"]
    listed = (await http.get(api(board.code, "/syntheses"),
                             headers=bearer(board.animator))).json()
    assert [(v["version"], v["hash"]) for v in listed] == [(1, v1["hash"]), (2, v2["hash"])]


async def test_notes_left_out_of_a_freeze_keep_the_saved_draft(
        http: httpx.AsyncClient) -> None:
    board = await new_board(http)
    constats, enjeux = str(board.columns["Constats"]), str(board.columns["Enjeux"])
    v1 = await freeze(http, board, notes={constats: "Note des constats"}, conclusion="Fin 1")
    await reopen(http, board)
    v2 = await freeze(http, board, notes={enjeux: "Note des enjeux"})
    notes = {c["title"]: c["notes"] for c in (await export_json(http, v2))["columns"]}
    assert notes == {"Constats": "Note des constats", "Enjeux": "Note des enjeux",
                     "Besoins": ""}
    assert (await export_json(http, v2))["conclusion"] == "Fin 1"
    first = {c["title"]: c["notes"] for c in (await export_json(http, v1))["columns"]}
    assert first["Enjeux"] == ""
    await reopen(http, board)
    unknown = await http.post(api(board.code, "/freeze"), headers=bearer(board.animator),
                              json={"notes": {"999999": "x"}})
    assert unknown.status_code == 422, unknown.text
    assert (await get_board(http, board.code))["frozen"] is False


async def test_unknown_permalink_is_an_html_404(http: httpx.AsyncClient) -> None:
    for path in ("/s/nosuchsynthesis", "/s/nosuchsynthesis.json", "/s/" + "x" * 60):
        response = await http.get(path)
        assert response.status_code == 404, (path, response.text[:200])
        assert response.headers["content-type"].startswith("text/html"), path
    board = await new_board(http)
    frozen = await freeze(http, board)
    wrong_format = frozen["urls"]["html"].removesuffix(".html") + ".exe"
    assert (await http.get(wrong_format)).status_code == 404


async def test_cards_racing_a_freeze_are_either_in_it_or_refused(
        http: httpx.AsyncClient) -> None:
    """No card is acknowledged (201) and yet missing from the synthesis that froze it out."""
    board = await new_board(http, "Course")
    tokens = [await join(http, board.code, f"P{i}") for i in range(4)]
    await card(http, board, tokens[0], "Constats", "Déjà là")

    async def one_post(i: int) -> httpx.Response:
        await asyncio.sleep(0.002 * (i % 10))
        return await post(http, board.code, tokens[i % 4], board.columns["Enjeux"],
                          f"Course {i}", f"race-{i}")

    async def late_freeze() -> httpx.Response:
        await asyncio.sleep(0.01)
        return await http.post(api(board.code, "/freeze"), headers=bearer(board.animator),
                               json={})

    *posts, frozen_response = await asyncio.gather(*(one_post(i) for i in range(40)),
                                                   late_freeze())
    assert frozen_response.status_code == 201, frozen_response.text
    accepted = {r.json()["text"] for r in posts if r.status_code == 201}
    for response in posts:
        assert response.status_code in (201, 409), response.text
        if response.status_code == 409:
            assert response.json()["error"]["code"] == "board_frozen"
    content = await export_json(http, frozen_response.json())
    in_synthesis = {c["text"] for c in all_cards(content)}
    assert in_synthesis == accepted | {"Déjà là"}
    assert content["cards_count"] == len(in_synthesis)
    board_now = await get_board(http, board.code, board.animator)
    assert {c["text"] for col in board_now["columns"] for c in col["cards"]} == in_synthesis


async def test_two_simultaneous_freezes_make_one_version(http: httpx.AsyncClient) -> None:
    board = await new_board(http, "Double gel")
    responses = await asyncio.gather(*(
        http.post(api(board.code, "/freeze"), headers=bearer(board.animator), json={})
        for _ in range(5)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409], [r.text for r in responses]
    listed = (await http.get(api(board.code, "/syntheses"),
                             headers=bearer(board.animator))).json()
    assert [v["version"] for v in listed] == [1]


# --- HTML and Markdown: escaping, notes, CSP --------------------------------------------------


async def test_html_export_is_a_standalone_page_with_a_strict_csp(
        http: httpx.AsyncClient) -> None:
    board = await new_board(http)
    lea = await join(http, board.code, "Léa")
    await card(http, board, lea, "Besoins", "Un car scolaire partagé")
    frozen = await freeze(http, board)
    response = await fetch(http, frozen["urls"]["html"])
    csp = response.headers["content-security-policy"]
    directives = {d.strip().split(" ", 1)[0]: d.strip() for d in csp.split(";")}
    assert directives["default-src"] == "default-src 'none'"
    styles = re.findall(r"<style>(.*?)</style>", response.text, re.S)
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    assert directives["style-src"] == f"style-src 'sha256-{digest}'"
    assert "script-src" not in csp or "'none'" in directives["script-src"]
    assert "<script" not in response.text.lower()
    assert "Un car scolaire partagé" in response.text
    assert response.headers["content-disposition"].startswith("inline")


async def test_participants_words_never_become_markup(http: httpx.AsyncClient) -> None:
    board = await new_board(http)
    lea = await join(http, board.code, "<b>Léa</b>")
    for i, text in enumerate(HOSTILE):
        await card(http, board, lea, ("Constats", "Enjeux", "Besoins")[i % 3], text)
    theme = await http.post(api(board.code, "/themes"), headers=bearer(board.animator),
                            json={"column_id": board.columns["Enjeux"],
                                  "title": "<script>alert(2)</script>"})
    assert theme.status_code == 201, theme.text
    frozen = await freeze(http, board)

    html = (await fetch(http, frozen["urls"]["html"])).text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;b&gt;Léa&lt;/b&gt;" in html
    lowered = html.lower()
    for forbidden in ("<script", "<img", "javascript:alert(1)\"", "href=\"javascript",
                      "<strong>bold", "<h1>title", "<b>léa"):
        assert forbidden not in lowered, forbidden
    assert "**bold**" in html and "# title" in html and "[x](javascript:alert(1))" in html

    md = (await fetch(http, frozen["urls"]["md"])).text
    assert r"\<script\>alert\(1\)\</script\>" in md
    assert re.search(r"(?<!\\)<", md) is None, "an unescaped < in the Markdown export"
    rendered = MarkdownIt("commonmark").render(md)
    for forbidden in ("<script", "<img", "href=\"javascript", "<strong>bold",
                      "<h1>title", "<b>"):
        assert forbidden not in rendered.lower(), forbidden
    # Escaped, not lost: rendered Markdown shows each text as it was typed.
    for text in HOSTILE:
        shown = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert shown in rendered, text


async def test_animator_notes_are_markdown_without_html_or_images(
        http: httpx.AsyncClient) -> None:
    board = await new_board(http)
    notes = ("**Peu** de transport\n\n<b>brut</b> <script>alert(3)</script>\n\n"
             "![img](http://evil/x.png) [lien](javascript:alert(4))")
    frozen = await freeze(http, board, notes={str(board.columns["Constats"]): notes},
                          conclusion="Une *priorité* <iframe src=x></iframe>")
    html = (await fetch(http, frozen["urls"]["html"])).text
    assert "<strong>Peu</strong>" in html
    assert "<em>priorité</em>" in html
    assert "&lt;b&gt;brut&lt;/b&gt;" in html and "<b>brut" not in html
    assert "<script" not in html.lower() and "<iframe" not in html.lower()
    assert "<img" not in html.lower()
    assert "href=\"javascript" not in html.lower()
    md = (await fetch(http, frozen["urls"]["md"])).text
    assert "**Peu** de transport" in md
    assert re.search(r"(?<!\\)<", md) is None, "raw HTML left in the Markdown export"
    rendered = MarkdownIt("commonmark").render(md).lower()
    assert "<strong>peu</strong>" in rendered
    for forbidden in ("<script", "<iframe", "<b>brut"):
        assert forbidden not in rendered, forbidden


# --- CSV, JSON, PDF ---------------------------------------------------------------------------


async def test_csv_has_votes_themes_safe_cells_and_no_hidden_card(
        http: httpx.AsyncClient) -> None:
    board = await new_board(http)
    lea = await join(http, board.code, "Léa")
    tom = await join(http, board.code, "Tom")
    formulas = ["=SUM(A1:A9)", "+33 6 00", "-2 bus", "@cmd"]
    posted = {text: await card(http, board, lea, "Constats", text) for text in formulas}
    voted = await card(http, board, tom, "Enjeux", "Le covoiturage")
    hidden = await card(http, board, tom, "Besoins", "Carte masquée secrète")
    themed = await card(http, board, lea, "Besoins", "Navette du marché")
    theme = (await http.post(api(board.code, "/themes"), headers=bearer(board.animator),
                             json={"column_id": board.columns["Besoins"],
                                   "title": "Transports"})).json()
    assert (await patch(http, board, f"/cards/{themed['id']}",
                        theme_id=theme["id"])).status_code == 200
    assert (await patch(http, board, f"/cards/{hidden['id']}", hidden=True)).status_code == 200
    await patch(http, board, phase="vote")
    for token in (lea, tom):
        response = await http.post(api(board.code, "/votes"), headers=bearer(token),
                                   json={"card_id": voted["id"]})
        assert response.status_code == 201, response.text
    frozen = await freeze(http, board)

    text = (await fetch(http, frozen["urls"]["csv"])).text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["column", "theme", "text", "votes", "merged_texts", "author", "card_id"]
    by_id = {row[6]: dict(zip(rows[0], row, strict=True)) for row in rows[1:]}
    assert len(by_id) == len(rows) - 1 == 6
    for formula, posted_card in posted.items():
        assert by_id[str(posted_card["id"])]["text"] == "'" + formula
    assert by_id[str(voted["id"])]["votes"] == "2"
    assert by_id[str(voted["id"])]["author"] == "Tom"
    assert by_id[str(voted["id"])]["column"] == "Enjeux"
    assert by_id[str(themed["id"])]["theme"] == "Transports"
    assert by_id[str(posted["=SUM(A1:A9)"]["id"])]["votes"] == "0"
    assert str(hidden["id"]) not in by_id
    for fmt in TEXT_EXPORTS:
        assert "Carte masquée secrète" not in (await fetch(http, frozen["urls"][fmt])).text, fmt
    content = await export_json(http, frozen)
    assert content["cards_count"] == 6
    assert hidden["id"] not in [c["id"] for c in all_cards(content)]


async def test_merged_and_deleted_cards_in_exports(http: httpx.AsyncClient) -> None:
    board = await new_board(http, "Fusions")
    lea = await join(http, board.code, "Léa")
    merged = await card(http, board, lea, "Constats", "Texte fusionné")
    target = await card(http, board, lea, "Constats", "Texte cible")
    gone = await card(http, board, lea, "Constats", "Texte supprimé")
    response = await http.post(api(board.code, f"/cards/{merged['id']}/merge"),
                               headers=bearer(board.animator), json={"into": target["id"]})
    assert response.status_code == 200, response.text
    response = await http.delete(api(board.code, f"/cards/{gone['id']}"),
                                 headers=bearer(board.animator))
    assert response.status_code == 200, response.text
    frozen = await freeze(http, board)
    content = await export_json(http, frozen)
    assert [(c["text"], c["merged_texts"]) for c in all_cards(content)] == [
        ("Texte cible", ["Texte fusionné"])]
    rows = list(csv.DictReader(io.StringIO((await fetch(http, frozen["urls"]["csv"])).text)))
    assert [(r["text"], r["merged_texts"]) for r in rows] == [("Texte cible", "Texte fusionné")]
    html = (await fetch(http, frozen["urls"]["html"])).text
    assert "Texte fusionné" in html and "Texte supprimé" not in html


async def test_markdown_export_of_a_merged_card(http: httpx.AsyncClient) -> None:
    board = await new_board(http, "Fusion en Markdown")
    lea = await join(http, board.code, "Léa")
    merged = await card(http, board, lea, "Constats", "Texte <fusionné>")
    target = await card(http, board, lea, "Constats", "Texte cible")
    response = await http.post(api(board.code, f"/cards/{merged['id']}/merge"),
                               headers=bearer(board.animator), json={"into": target["id"]})
    assert response.status_code == 200, response.text
    frozen = await freeze(http, board)
    response = await http.get(frozen["urls"]["md"])
    assert response.status_code == 200, response.text[:300]
    assert "Texte cible" in response.text
    assert r"Texte \<fusionné\>" in response.text


async def test_pdf_export_holds_the_cards_as_text(http: httpx.AsyncClient,
                                                  tmp_path: Path) -> None:
    board = await new_board(http)
    lea = await join(http, board.code, "Léa")
    texts = ["Peu de bus le dimanche", "<script>alert(1)</script>", "Covoiturage solidaire"]
    for text in texts:
        await card(http, board, lea, "Constats", text)
    frozen = await freeze(http, board)
    response = await fetch(http, frozen["urls"]["pdf"])
    assert response.headers["content-type"] == "application/pdf"
    assert response.content.startswith(b"%PDF-")
    assert response.headers["content-disposition"].startswith("attachment")
    assert response.headers["content-disposition"].endswith('-synthese-v1.pdf"')
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext is not installed: PDF text not checked")
    pdf = tmp_path / "synthese.pdf"
    pdf.write_bytes(response.content)
    done = await asyncio.to_thread(
        subprocess.run, ["pdftotext", "-enc", "UTF-8", str(pdf), "-"],
        capture_output=True, check=True, text=True)
    extracted = done.stdout
    flat = " ".join(extracted.split())
    for text in texts:
        assert text in flat, text


# --- import -----------------------------------------------------------------------------------


async def test_import_recreates_a_frozen_board_with_an_identical_synthesis(
        http: httpx.AsyncClient) -> None:
    board = await new_board(http, "Énergie citoyenne")
    lea = await join(http, board.code, "Léa")
    themed = await card(http, board, lea, "Enjeux", "Des toits solaires")
    await card(http, board, lea, "Constats", "Factures en hausse")
    await card(http, board, lea, "Besoins", "Un conseiller énergie")
    theme = (await http.post(api(board.code, "/themes"), headers=bearer(board.animator),
                             json={"column_id": board.columns["Enjeux"],
                                   "title": "Production"})).json()
    await patch(http, board, f"/cards/{themed['id']}", theme_id=theme["id"])
    await patch(http, board, phase="vote")
    await http.post(api(board.code, "/votes"), headers=bearer(lea),
                    json={"card_id": themed["id"]})
    frozen = await freeze(http, board, notes={str(board.columns["Enjeux"]): "**Oui**"},
                          conclusion="Conclusion")
    original = (await fetch(http, frozen["urls"]["json"])).content

    imported = await http.post("/api/v1/import", content=original,
                               headers={"content-type": "application/json"})
    assert imported.status_code == 201, imported.text
    body = imported.json()
    assert {"join_code", "animator_token", "version", "hash", "urls"} <= set(body)
    assert body["version"] == 1 and body["hash"] == frozen["hash"]
    assert body["join_code"] != board.code
    assert (await fetch(http, body["urls"]["json"])).content == original
    assert body["urls"]["json"] != frozen["urls"]["json"]

    copy = await get_board(http, body["join_code"], body["animator_token"])
    source = await get_board(http, board.code, board.animator)
    assert copy["frozen"] is True
    assert [c["title"] for c in copy["columns"]] == [c["title"] for c in source["columns"]]
    assert texts_of_board(copy) == texts_of_board(source)
    assert [[t["title"] for t in c.get("themes", [])] for c in copy["columns"]] == \
        [[t["title"] for t in c.get("themes", [])] for c in source["columns"]]
    new = Board(body["join_code"], body["animator_token"],
                {c["title"]: c["id"] for c in copy["columns"]})
    assert_error(await post(http, new.code, new.animator, new.columns["Constats"], "x", "i-1"),
                 409, "board_frozen")
    listed = (await http.get(api(new.code, "/syntheses"), headers=bearer(new.animator))).json()
    assert [(v["version"], v["hash"]) for v in listed] == [(1, frozen["hash"])]


async def test_an_imported_board_reopens_and_refreezes_to_the_same_content(
        http: httpx.AsyncClient) -> None:
    board = await new_board(http, "Réimport")
    lea = await join(http, board.code, "Léa")
    await join(http, board.code, "Tom")
    voted = await card(http, board, lea, "Constats", "Carte votée")
    theme = (await http.post(api(board.code, "/themes"), headers=bearer(board.animator),
                             json={"column_id": board.columns["Enjeux"],
                                   "title": "Thème voté"})).json()
    await patch(http, board, phase="vote")
    for target in ({"card_id": voted["id"]}, {"theme_id": theme["id"]},
                   {"card_id": voted["id"]}):
        response = await http.post(api(board.code, "/votes"), headers=bearer(lea), json=target)
        assert response.status_code == 201, response.text
    v1 = await export_json(http, await freeze(http, board))
    imported = await http.post("/api/v1/import", json=v1)
    assert imported.status_code == 201, imported.text
    copy = Board(imported.json()["join_code"], imported.json()["animator_token"], {})
    await reopen(http, copy)
    v2 = await export_json(http, await freeze(http, copy))
    assert v2["version"] == 2

    def shape(content: dict[str, Any]) -> list[Any]:
        return [(c["title"], [(t["title"], t["votes"]) for t in c["themes"]],
                 [(k["text"], k["votes"], k["author"]) for k in c["cards"]])
                for c in content["columns"]]

    assert shape(v2) == shape(v1)
    assert (v2["votes_total"], v2["participants"], v2["cards_count"]) == (
        v1["votes_total"], v1["participants"], v1["cards_count"]) == (3, 2, 1)


async def test_import_refuses_tampered_and_non_json_bodies(http: httpx.AsyncClient) -> None:
    board = await new_board(http)
    lea = await join(http, board.code, "Léa")
    await card(http, board, lea, "Constats", "Texte d'origine")
    frozen = await freeze(http, board)
    content = await export_json(http, frozen)
    tampered = json.loads(json.dumps(content))
    all_cards(tampered)[0]["text"] = "Texte modifié"
    assert_error(await http.post("/api/v1/import", json=tampered), 422, "bad_import")
    no_hash = {k: v for k, v in content.items() if k != "hash"}
    assert_error(await http.post("/api/v1/import", json=no_hash), 422, "bad_import")
    assert_error(await http.post("/api/v1/import", content=b"not json {",
                                 headers={"content-type": "application/json"}),
                 400, "invalid_json")
    assert_error(await http.post("/api/v1/import", json=[content]), 400, "invalid_json")
    hits = await search(http, "modifié")
    assert all(hit["text"] != "Texte modifié" for hit in hits)


async def test_import_accepts_a_large_synthesis(http: httpx.AsyncClient) -> None:
    board = await new_board(http, "Grand atelier")
    lea = await join(http, board.code, "Léa")
    for i in range(300):
        text = f"Carte {i:03d} " + "mobilité partagée " * 16
        await card(http, board, lea, ("Constats", "Enjeux", "Besoins")[i % 3], text[:300])
    frozen = await freeze(http, board)
    original = (await fetch(http, frozen["urls"]["json"])).content
    assert len(original) > 65536 * 1.2
    imported = await http.post("/api/v1/import", content=original,
                               headers={"content-type": "application/json"})
    assert imported.status_code == 201, imported.text[:500]
    assert (await fetch(http, imported.json()["urls"]["json"])).content == original
    copy = await get_board(http, imported.json()["join_code"])
    assert sum(len(c["cards"]) for c in copy["columns"]) == 300


# --- search -----------------------------------------------------------------------------------


async def test_search_folds_accents_and_plurals_over_frozen_boards_only(
        own_http: httpx.AsyncClient) -> None:
    http = own_http
    assert await search(http, "") == []
    assert await search(http, "   ") == []
    board = await new_board(http, "Territoires")
    lea = await join(http, board.code, "Léa")
    await card(http, board, lea, "Constats", "Les cooperations entre communes")
    await card(http, board, lea, "Enjeux", "Mobilités douces")
    await card(http, board, lea, "Besoins", "Une coopération avec chaque élu")
    draft = await new_board(http, "Brouillon")
    tom = await join(http, draft.code, "Tom")
    await card(http, draft, tom, "Constats", "Coopération non gelée")
    assert await search(http, "coopération") == []  # nothing frozen yet
    await freeze(http, board)

    hits = await search(http, "coopération")
    assert sorted(h["text"] for h in hits) == ["Les cooperations entre communes",
                                              "Une coopération avec chaque élu"]
    assert all(h["board_title"] == "Territoires" and h["kind"] == "card" for h in hits)
    assert {h["column"] for h in hits} == {"Constats", "Besoins"}
    assert [h["text"] for h in await search(http, "cooperations")] != []
    assert {h["text"] for h in await search(http, "cooperations")} == {h["text"] for h in hits}
    assert [h["text"] for h in await search(http, "mobilité")] == ["Mobilités douces"]
    assert [h["text"] for h in await search(http, "élus")] == ["Une coopération avec chaque élu"]
    assert await search(http, "gelée") == []
    url = hits[0]["url"]
    assert re.search(r"/s/[^/#]+#card-\d+$", url), url
    page = await fetch(http, url.split("#")[0])
    assert url.split("#")[1] in page.text

    await reopen(http, board)
    await card(http, board, lea, "Constats", "Coopération intercommunale")
    await freeze(http, board)
    again = await search(http, "coopération")
    texts = [h["text"] for h in again]
    assert sorted(texts) == ["Coopération intercommunale", "Les cooperations entre communes",
                             "Une coopération avec chaque élu"]
    assert len(set(h["url"] for h in again)) == 3
    assert "Coopération non gelée" not in texts


async def test_deleting_a_board_removes_it_everywhere(own_http: httpx.AsyncClient) -> None:
    http = own_http
    board = await new_board(http, "À supprimer")
    lea = await join(http, board.code, "Léa")
    await card(http, board, lea, "Constats", "Zèbres sauvages du plateau")
    v1 = await freeze(http, board)
    await reopen(http, board)
    v2 = await freeze(http, board)
    assert len(await search(http, "zèbre")) == 1
    assert_error(await http.delete(api(board.code), headers=bearer(lea)), 403, "animator_only")
    deleted = await http.delete(api(board.code), headers=bearer(board.animator))
    assert deleted.status_code == 200, deleted.text
    assert (await http.get(api(board.code))).status_code == 404
    for frozen in (v1, v2):
        for url in frozen["urls"].values():
            assert (await http.get(url)).status_code == 404, url
    assert await search(http, "zèbre") == []
    # A later board's index entries are not mistaken for the deleted ones.
    other = await new_board(http, "Autre")
    tom = await join(http, other.code, "Tom")
    await card(http, other, tom, "Constats", "Girafes du bocage")
    await freeze(http, other)
    assert await search(http, "zèbre") == []
    assert [h["text"] for h in await search(http, "girafe")] == ["Girafes du bocage"]


# --- anonymise --------------------------------------------------------------------------------


async def test_anonymise_strips_pseudonyms_and_records_previous_hashes(
        http: httpx.AsyncClient) -> None:
    board = await new_board(http, "Nommé")
    lea = await join(http, board.code, "Léa Zorglub")
    tom = await join(http, board.code, "Tom Zorglub")
    await card(http, board, lea, "Constats", "Carte de Léa")
    await card(http, board, tom, "Enjeux", "Carte de Tom")
    v1 = await freeze(http, board)
    await reopen(http, board)
    v2 = await freeze(http, board)
    for frozen in (v1, v2):
        assert "Léa Zorglub" in (await fetch(http, frozen["urls"]["json"])).text
    assert_error(await http.post(api(board.code, "/anonymise"), headers=bearer(lea)),
                 403, "animator_only")

    response = await http.post(api(board.code, "/anonymise"), headers=bearer(board.animator))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["anonymous"] is True
    listed = {v["version"]: v for v in body["syntheses"]}
    assert set(listed) == {1, 2}
    seen = await get_board(http, board.code, board.animator)
    assert seen["anonymous"] is True
    assert all(c["author"] is None for column in seen["columns"] for c in column["cards"])
    for old in (v1, v2):
        new = listed[old["version"]]
        assert new["hash"] != old["hash"]
        content = await export_json(http, new)
        assert content["hash"] == new["hash"]
        assert sha256_of({k: v for k, v in content.items() if k != "hash"}) == new["hash"]
        assert content["anonymised"]["previous_hash"] == old["hash"]
        assert content["anonymised"]["at"]
        assert all(c["author"] is None for c in all_cards(content))
        assert sorted(c["text"] for c in all_cards(content)) == ["Carte de Léa", "Carte de Tom"]
        for fmt in TEXT_EXPORTS:
            assert "Zorglub" not in (await fetch(http, new["urls"][fmt])).text, fmt
    again = (await http.get(api(board.code, "/syntheses"),
                            headers=bearer(board.animator))).json()
    assert {v["version"]: v["hash"] for v in again} == {
        k: v["hash"] for k, v in listed.items()}


async def test_anonymise_also_strips_pseudonyms_from_the_replayed_log(
        module_server: LiveServer, http: httpx.AsyncClient) -> None:
    board = await new_board(http, "Journal nommé")
    lea = await join(http, board.code, "Léa Quetzal")
    posted = await card(http, board, lea, "Constats", "Carte journalisée")
    assert posted["author"] == "Léa Quetzal"
    await patch(http, board, f"/cards/{posted['id']}", text="Carte journalisée, corrigée")
    await freeze(http, board)
    response = await http.post(api(board.code, "/anonymise"), headers=bearer(board.animator))
    assert response.status_code == 200, response.text
    for token in (board.animator, lea):
        async with subscribe(module_server.ws_url, board.code, since=0, token=token) as ws:
            frames = await quiet(ws, 1.0)
        assert any(f["type"] == "card.posted" for f in frames), frames
        assert "Quetzal" not in json.dumps(frames, ensure_ascii=False)
    for token in (board.animator, lea, None):
        seen = json.dumps(await get_board(http, board.code, token), ensure_ascii=False)
        assert "Quetzal" not in seen


async def test_anonymise_leaves_an_anonymous_boards_syntheses_unchanged(
        http: httpx.AsyncClient) -> None:
    board = await new_board(http, "Déjà anonyme", anonymous=True)
    lea = await join(http, board.code, "Léa")
    await card(http, board, lea, "Constats", "Sans nom")
    frozen = await freeze(http, board)
    before = (await fetch(http, frozen["urls"]["json"])).content
    response = await http.post(api(board.code, "/anonymise"), headers=bearer(board.animator))
    assert response.status_code == 200, response.text
    assert [(v["version"], v["hash"]) for v in response.json()["syntheses"]] == [
        (1, frozen["hash"])]
    assert (await fetch(http, frozen["urls"]["json"])).content == before
    assert json.loads(before)["anonymised"] is None


# --- events -----------------------------------------------------------------------------------


async def test_event_synthesis_groups_frozen_ateliers_and_redacts_deleted_ones(
        http: httpx.AsyncClient) -> None:
    created = await http.post("/api/v1/events", json={"title": "Journée des territoires"})
    assert created.status_code == 201, created.text
    event_id, organiser = created.json()["id"], created.json()["organiser_token"]
    one = await new_board(http, "Atelier mobilité", event=(event_id, organiser))
    two = await new_board(http, "Atelier énergie", event=(event_id, organiser))
    for board, text in ((one, "Bus à la demande"), (two, "Panneaux solaires")):
        token = await join(http, board.code, "Léa")
        await card(http, board, token, "Constats", text)
    live = f"/api/v1/events/{event_id}/synthesis"

    await freeze(http, one)
    state = (await http.get(live + ".json")).json()
    assert [a["title"] for a in state["ateliers"]] == ["Atelier mobilité"]
    assert [p["title"] for p in state["pending"]] == ["Atelier énergie"]
    await freeze(http, two)
    state = (await http.get(live + ".json")).json()
    assert sorted(a["title"] for a in state["ateliers"]) == ["Atelier mobilité",
                                                            "Atelier énergie"]
    assert state["pending"] == []
    for atelier in state["ateliers"]:
        assert {"title", "url", "top", "columns"} <= set(atelier)
        assert "/s/" in atelier["url"]
        assert [c["title"] for c in atelier["columns"]] == ["Constats", "Enjeux", "Besoins"]
    assert [g["title"] for g in state["by_column"]] == ["Constats", "Enjeux", "Besoins"]
    assert all(len(g["ateliers"]) == 2 for g in state["by_column"])
    for fmt in ("md", "html"):
        page = await http.get(f"{live}.{fmt}")
        assert page.status_code == 200, page.text[:300]
        assert "Bus à la demande" in page.text and "Panneaux solaires" in page.text

    refused = await http.post(f"/api/v1/events/{event_id}/freeze")
    assert refused.status_code in (401, 403), refused.text
    refused = await http.post(f"/api/v1/events/{event_id}/freeze", headers=bearer(one.animator))
    assert refused.status_code in (401, 403), refused.text
    frozen = await http.post(f"/api/v1/events/{event_id}/freeze", headers=bearer(organiser))
    assert frozen.status_code == 201, frozen.text
    version = frozen.json()
    assert version["version"] == 1 and re.fullmatch(r"[0-9a-f]{64}", version["hash"])
    assert set(version["urls"]) == {"html", "md", "json", "pdf"}
    assert (await fetch(http, version["urls"]["pdf"])).content.startswith(b"%PDF-")
    event_json = await fetch(http, version["urls"]["json"])
    assert event_json.json()["hash"] == version["hash"]
    assert len(event_json.json()["ateliers"]) == 2 and event_json.json()["redactions"] == []

    deleted = await http.delete(api(one.code), headers=bearer(one.animator))
    assert deleted.status_code == 200, deleted.text
    after = (await fetch(http, version["urls"]["json"])).json()
    assert [a["title"] for a in after["ateliers"]] == ["Atelier énergie"]
    assert all(len(g["ateliers"]) == 1 for g in after["by_column"])
    assert len(after["redactions"]) == 1
    assert after["redactions"][0]["previous_hash"] == version["hash"]
    assert after["hash"] != version["hash"]
    assert sha256_of({k: v for k, v in after.items() if k != "hash"}) == after["hash"]
    for fmt in ("html", "md"):
        assert "Bus à la demande" not in (await fetch(http, version["urls"][fmt])).text
    state = (await http.get(live + ".json")).json()
    assert [a["title"] for a in state["ateliers"]] == ["Atelier énergie"]


def test_bench_archive_reports_every_figure(tmp_path: Path,
                                            request: pytest.FixtureRequest) -> None:
    """`board bench-archive` runs end to end on its own server and reports each measure.

    The server it starts itself is on SQLite (board/bench.py): on PostgreSQL, it measures a
    fresh test server instead (--url)."""
    own_server = [] if not ON_POSTGRESQL else [
        "--url", request.getfixturevalue("server").url]
    done = subprocess.run(
        [sys.executable, "-m", "board", "bench-archive", "--big", "6", "--boards", "2",
         "--cards", "3", "--json", *own_server],
        capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["archived_cards"] == 6 * 2 + 2 * 3
    assert set(result["exports_of_big"]) >= {"html", "md", "csv", "json"}
    assert all(e["kb"] > 0 for e in result["exports_of_big"].values())
    assert result["freeze_each"]["boards"] == 2
    assert result["search"]["with_results"] > 0


def board_cli(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    """`board …` on the database at URL `db` (the server's `database_url`, or a new one)."""
    return subprocess.run([sys.executable, "-m", "board", *args, "--database", db],
                          capture_output=True, text=True, timeout=120, check=False)


async def test_retention_anonymises_only_boards_frozen_long_enough(
        server: LiveServer, own_http: httpx.AsyncClient) -> None:
    """`board retention --days N` strips pseudonyms of boards frozen N days ago or more."""
    http = own_http
    old, recent = await new_board(http, "Ancien atelier"), await new_board(http, "Récent")
    for board in (old, recent):
        lea = await join(http, board.code, "Léa")
        await card(http, board, lea, "Constats", f"Une carte de {board.code}")
    frozen_old, frozen_recent = await freeze(http, old), await freeze(http, recent)
    # Not due yet: frozen just now, retention of 30 days.
    kept = board_cli("retention", "--days", "30", db=server.database_url)
    assert kept.returncode == 0, kept.stderr
    assert "0 board" in kept.stdout
    assert (await export_json(http, frozen_old))["hash"] == frozen_old["hash"]
    # Age the old board's synthesis by 40 days, as if it had been frozen then.
    older = ("datetime(frozen_at, '-40 days')" if server.dialect == "sqlite"
             else "frozen_at - interval '40 days'")
    server.query(f"UPDATE synthesis SET frozen_at = {older} "
                 "WHERE board_id = (SELECT id FROM board WHERE join_code = ?)", old.code)
    done = board_cli("retention", "--days", "30", db=server.database_url)
    assert done.returncode == 0, done.stderr
    assert old.code in done.stdout and recent.code not in done.stdout
    stripped = await export_json(http, frozen_old)
    assert stripped["hash"] != frozen_old["hash"]
    assert stripped["anonymised"]["previous_hash"] == frozen_old["hash"]
    assert all(c["author"] is None for c in all_cards(stripped))
    assert all(c["author"] is None for column in (await get_board(http, old.code))["columns"]
               for c in column["cards"])
    untouched = await export_json(http, frozen_recent)
    assert untouched["hash"] == frozen_recent["hash"]
    assert [c["author"] for c in all_cards(untouched)] == ["Léa"]


async def test_cli_export_and_import_round_trip(
        server: LiveServer, own_http: httpx.AsyncClient, tmp_path: Path) -> None:
    """`board export CODE --format json` then `board import FILE` on another database gives
    a board whose synthesis exports the same bytes."""
    http = own_http
    board = await new_board(http, "Export en ligne de commande")
    lea = await join(http, board.code, "Léa")
    await card(http, board, lea, "Enjeux", "=SOMME(A1:A9) et « guillemets »")
    frozen = await freeze(http, board, conclusion="**Fin**")
    out = tmp_path / "synthese.json"
    exported = board_cli("export", board.code, "--format", "json", "-o", str(out),
                         db=server.database_url)
    assert exported.returncode == 0, exported.stderr
    assert out.read_bytes() == (await fetch(http, frozen["urls"]["json"])).content
    for fmt in ("md", "csv", "html"):
        path = tmp_path / f"export.{fmt}"
        done = board_cli("export", board.code, "--format", fmt, "-o", str(path),
                         db=server.database_url)
        assert done.returncode == 0, done.stderr
        assert path.read_bytes() == (await fetch(http, frozen["urls"][fmt])).content
    other = fresh_database_url(tmp_path / "other.db")
    imported = board_cli("import", str(out), db=other)
    assert imported.returncode == 0, imported.stderr
    code = re.search(r"board (\w{6})", imported.stdout)
    assert code is not None, imported.stdout
    again = board_cli("export", code.group(1), "--format", "json", "-o", "-", db=other)
    assert again.returncode == 0, again.stderr
    assert again.stdout.encode() == out.read_bytes()
    missing = board_cli("export", "ZZZZZZ", db=other)
    assert missing.returncode != 0 and "ZZZZZZ" in missing.stderr
    assert "Traceback" not in missing.stderr
    broken = tmp_path / "broken.json"
    broken.write_text(out.read_text().replace("Fin", "Début"))
    refused = board_cli("import", str(broken), db=other)
    assert refused.returncode != 0 and "bad_import" not in refused.stderr
    assert "intacte" in refused.stderr and "Traceback" not in refused.stderr
