"""Every bad input gets a clear French/English error, the right 4xx, and stores nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from tests.conftest import LiveServer
from tests.integration.helpers import bearer, create_board, join, post, subscribe


@pytest.fixture
async def ctx(server: LiveServer) -> AsyncIterator[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        board = await create_board(http)
        token = await join(http, board["join_code"], "Dana")
        yield {"http": http, "board": board, "code": board["join_code"], "token": token,
               "column": board["columns"][0]["id"], "server": server}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["fr"] and error["en"] and error["fr"] != error["en"]
    assert error["message"] == f"{error['fr']} / {error['en']}"
    assert "Traceback" not in response.text


def stored_cards(server: LiveServer) -> int:
    return int(server.query("select count(*) from card")[0][0])


@pytest.mark.parametrize(
    ("text", "code"),
    [("", "empty_text"), ("   \n\t ", "empty_text"), ("x" * 501, "text_too_long"),
     (42, "invalid_field"), (None, "invalid_field")],
)
async def test_bad_card_text_is_refused(ctx: dict[str, Any], text: object, code: str) -> None:
    """Empty, blank, over-long or non-text cards are refused with 422 and not stored."""
    response = await ctx["http"].post(
        f"/api/v1/boards/{ctx['code']}/cards", headers=bearer(ctx["token"]),
        json={"column_id": ctx["column"], "text": text, "client_id": "bad"})
    assert_error(response, 422, code)
    assert stored_cards(ctx["server"]) == 0


async def test_control_characters_in_keys_are_refused_not_a_500(ctx: dict[str, Any]) -> None:
    """A NUL (which PostgreSQL cannot store) or another control character in an idempotency
    key is a 422, and in a permalink a 404: the same on every database."""
    for client_id in ("a\x00b", "tab\tkey"):
        response = await ctx["http"].post(
            f"/api/v1/boards/{ctx['code']}/cards", headers=bearer(ctx["token"]),
            json={"column_id": ctx["column"], "text": "Une carte", "client_id": client_id})
        assert_error(response, 422, "invalid_field")
    assert stored_cards(ctx["server"]) == 0
    for path in ("/s/ab%00cd", "/s/ab%00cd.json", "/s/ab%01cd"):
        assert (await ctx["http"].get(path)).status_code == 404, path


async def test_500_characters_is_the_limit(ctx: dict[str, Any]) -> None:
    """Exactly 500 characters (after trimming) is accepted: the limit is inclusive."""
    response = await post(ctx["http"], ctx["code"], ctx["token"], ctx["column"],
                          "  " + "é" * 500 + "  ", "limit")
    assert response.status_code == 201
    assert len(response.json()["text"]) == 500


async def test_too_long_message_names_the_lengths(ctx: dict[str, Any]) -> None:
    """The error says how long the text is and what the limit is, in both languages."""
    response = await post(ctx["http"], ctx["code"], ctx["token"], ctx["column"], "y" * 612, "l")
    error = response.json()["error"]
    assert "612" in error["fr"] and "500" in error["fr"]
    assert "612" in error["en"] and "500" in error["en"]


async def test_unknown_join_code(ctx: dict[str, Any]) -> None:
    """An unknown code is a 404 with a clear message, on the API and on the page."""
    http = ctx["http"]
    assert_error(await http.get("/api/v1/boards/ZZZZZZ"), 404, "unknown_board")
    assert_error(await http.post("/api/v1/boards/ZZZZZZ/participants", json={}), 404,
                 "unknown_board")
    page = await http.get("/join", params={"code": "zz zz zz"})
    assert page.status_code == 404
    assert "ZZZZZZ" in page.text and "text/html" in page.headers["content-type"]


async def test_join_code_is_forgiving(ctx: dict[str, Any]) -> None:
    """Lower case, spaces and dashes in a typed code still find the board."""
    code = ctx["code"]
    messy = f" {code[:3].lower()} - {code[3:].lower()} "
    response = await ctx["http"].get("/join", params={"code": messy})
    assert response.status_code == 303
    assert response.headers["location"] == f"/b/{code}"


async def test_unknown_column_or_another_boards_column(ctx: dict[str, Any]) -> None:
    """A column that does not exist, or belongs to another board, is refused."""
    other = await create_board(ctx["http"], title="Autre atelier")
    for column in (999_999, other["columns"][0]["id"]):
        response = await post(ctx["http"], ctx["code"], ctx["token"], column, "texte", "c")
        assert_error(response, 422, "unknown_column")
    response = await post(ctx["http"], ctx["code"], ctx["token"], "abc", "texte", "c")  # type: ignore[arg-type]
    assert_error(response, 422, "invalid_field")
    assert stored_cards(ctx["server"]) == 0


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
async def test_malformed_json(ctx: dict[str, Any], body: bytes) -> None:
    """A body that is not a JSON object is a 400 invalid_json."""
    response = await ctx["http"].post(
        f"/api/v1/boards/{ctx['code']}/cards", content=body,
        headers={**bearer(ctx["token"]), "content-type": "application/json"})
    assert_error(response, 400, "invalid_json")


async def test_missing_or_wrong_token(ctx: dict[str, Any]) -> None:
    """No token is 401 auth_required; a wrong one, or another board's, is 401 invalid_token."""
    http, code = ctx["http"], ctx["code"]
    body = {"column_id": ctx["column"], "text": "sans jeton", "client_id": "t"}
    assert_error(await http.post(f"/api/v1/boards/{code}/cards", json=body), 401,
                 "auth_required")
    assert_error(await http.post(f"/api/v1/boards/{code}/cards", json=body,
                                 headers=bearer("not-a-token")), 401, "invalid_token")
    other = await create_board(http, title="Autre")
    foreign = await join(http, other["join_code"])
    assert_error(await http.post(f"/api/v1/boards/{code}/cards", json=body,
                                 headers=bearer(foreign)), 401, "invalid_token")
    assert_error(await http.post(f"/api/v1/boards/{code}/cards", json=body,
                                 headers=bearer(other["animator_token"])), 401, "invalid_token")
    assert stored_cards(ctx["server"]) == 0


async def test_participant_cannot_act_as_animator(ctx: dict[str, Any]) -> None:
    """Hiding, renaming and settings need the animator token: anyone else gets 403."""
    http, code, token = ctx["http"], ctx["code"], ctx["token"]
    card = (await post(http, code, token, ctx["column"], "à moi", "own")).json()
    assert_error(await http.patch(f"/api/v1/boards/{code}/cards/{card['id']}",
                                  headers=bearer(token), json={"hidden": True}),
                 403, "animator_only")
    assert_error(await http.patch(f"/api/v1/boards/{code}/columns/{ctx['column']}",
                                  headers=bearer(token), json={"title": "X"}),
                 403, "animator_only")
    assert_error(await http.patch(f"/api/v1/boards/{code}", headers=bearer(token),
                                  json={"locked": True}), 403, "animator_only")
    assert_error(await http.patch(f"/api/v1/boards/{code}", json={"locked": True}),
                 403, "animator_only")


async def test_animator_cannot_touch_another_boards_card(ctx: dict[str, Any]) -> None:
    """A card id from another board is unknown here, even to this board's animator."""
    http = ctx["http"]
    other = await create_board(http, title="Autre")
    other_token = await join(http, other["join_code"])
    foreign = (await post(http, other["join_code"], other_token, other["columns"][0]["id"],
                          "ailleurs", "f")).json()
    response = await http.patch(f"/api/v1/boards/{ctx['code']}/cards/{foreign['id']}",
                                headers=bearer(ctx["board"]["animator_token"]),
                                json={"hidden": True})
    assert_error(response, 404, "unknown_card")


async def test_card_to_a_board_that_is_not_open(ctx: dict[str, Any]) -> None:
    """Locked posting, or a phase other than collecte, refuses participants' cards (409)."""
    http, code, animator = ctx["http"], ctx["code"], ctx["board"]["animator_token"]
    locked = await http.patch(f"/api/v1/boards/{code}", headers=bearer(animator),
                              json={"locked": True})
    assert locked.json()["phase"] == "collecte" and locked.json()["locked"] is True
    response = await post(http, code, ctx["token"], ctx["column"], "trop tard", "late")
    assert_error(response, 409, "board_locked")
    await http.patch(f"/api/v1/boards/{code}", headers=bearer(animator),
                     json={"locked": False, "phase": "vote"})
    response = await post(http, code, ctx["token"], ctx["column"], "trop tard", "late")
    assert_error(response, 409, "board_closed")
    assert stored_cards(ctx["server"]) == 0
    assert_error(await http.patch(f"/api/v1/boards/{code}", headers=bearer(animator),
                                  json={"phase": "bientôt"}), 422, "bad_phase")


async def test_oversized_body_is_413(ctx: dict[str, Any]) -> None:
    """A request body over the limit is refused before it is read."""
    response = await ctx["http"].post(
        f"/api/v1/boards/{ctx['code']}/cards", headers=bearer(ctx["token"]),
        content=b"{" + b" " * 70_000 + b"}")
    assert_error(response, 413, "body_too_large")


async def test_unknown_route_and_method_are_json_errors(ctx: dict[str, Any]) -> None:
    """404 and 405 on the API speak the same error shape."""
    assert_error(await ctx["http"].get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(await ctx["http"].delete("/api/v1/boards"), 405, "method_not_allowed")


async def test_oversize_websocket_frame_is_closed_with_1009(ctx: dict[str, Any]) -> None:
    """A frame over 64 KB closes the socket with 1009 instead of being buffered."""
    async with subscribe(ctx["server"].ws_url, ctx["code"], token=ctx["token"]) as ws:
        await ws.send("x" * 70_000)
        with pytest.raises(ConnectionClosedError):
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1009


async def test_websocket_from_another_site_is_refused(ctx: dict[str, Any]) -> None:
    """A handshake whose Origin is another site gets 403; the same host is accepted."""
    server = ctx["server"]
    with pytest.raises(InvalidStatus) as refused:
        async with subscribe(server.ws_url, ctx["code"], origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    async with subscribe(server.ws_url, ctx["code"],
                         origin=f"http://127.0.0.1:{server.port}") as ws:
        assert ws.protocol.state.name == "OPEN"


async def test_websocket_errors_before_accept(ctx: dict[str, Any]) -> None:
    """Unknown board, bad token or a participant asking for the animator view: refused."""
    server = ctx["server"]
    cases = [("ZZZZZZ", {}, "", 404), (ctx["code"], {"token": "nope"}, "", 401),
             (ctx["code"], {"token": ctx["token"]}, "view=animator&lang=fr", 403)]
    for code, kwargs, query, status in cases:
        with pytest.raises(InvalidStatus) as refused:
            async with subscribe(server.ws_url, code, query=query, **kwargs):
                pass
        assert refused.value.response.status_code == status


async def test_trailing_slash_or_encoded_slash_is_a_json_404(ctx: dict[str, Any]) -> None:
    """No redirect dance: a path with a trailing or encoded slash is a plain 404 error."""
    http, code = ctx["http"], ctx["code"]
    token = bearer(ctx["board"]["animator_token"])
    for method, path in (("DELETE", f"/api/v1/boards/{code}/cards/%2F"),
                         ("GET", f"/api/v1/boards/{code}/"),
                         ("POST", "/api/v1/boards/")):
        response = await http.request(method, path, headers=token)
        assert_error(response, 404, "not_found")
