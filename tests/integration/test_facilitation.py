"""Facilitation through the real server: settings, silent writing, anonymity, themes, card
edits, merges, dot votes, results, timer and events of several ateliers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from tests.conftest import LiveServer
from tests.integration.helpers import (
    api,
    assert_error,
    bearer,
    create_board,
    events_until,
    join,
    next_event,
    post,
    subscribe,
)

SETTINGS = {"phase", "silent", "locked", "vote_budget", "max_votes_per_item",
            "results_visible", "anonymous", "frozen"}


@pytest.fixture
async def http(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


async def get_board(http: httpx.AsyncClient, code: str, token: str | None = None
                    ) -> dict[str, Any]:
    response = await http.get(api(code), headers=bearer(token) if token else {})
    assert response.status_code == 200, response.text
    return dict(response.json())


def cards_of(board: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {card["id"]: card for column in board["columns"] for card in column["cards"]}


async def board_seq(http: httpx.AsyncClient, code: str) -> int:
    return int((await get_board(http, code))["seq"])


async def patch_settings(http: httpx.AsyncClient, code: str, token: str,
                         **changes: Any) -> dict[str, Any]:
    response = await http.patch(api(code), headers=bearer(token), json=changes)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def vote(http: httpx.AsyncClient, code: str, token: str, *, remove: bool = False,
               **target: Any) -> httpx.Response:
    return await http.request("DELETE" if remove else "POST", api(code, "/votes"),
                              headers=bearer(token), json=target)


async def results(http: httpx.AsyncClient, code: str, token: str | None) -> httpx.Response:
    return await http.get(api(code, "/results"), headers=bearer(token) if token else {})


async def wait_for(ws: ClientConnection, type_: str,
                   match: Callable[[dict[str, Any]], bool] = lambda data: True
                   ) -> dict[str, Any]:
    """The next frame of this type (earlier frames of other types are skipped)."""
    while True:
        event = await next_event(ws)
        if event["type"] == type_ and match(event["data"]):
            return event


def stored(server: LiveServer, sql: str, *params: object) -> list[tuple[Any, ...]]:
    return server.query(sql, *params)


# --- anonymous boards -----------------------------------------------------------------------


async def test_boards_are_anonymous_unless_asked_otherwise(http: httpx.AsyncClient) -> None:
    """Board creation takes `anonymous: bool`, defaults to true, and refuses other types."""
    omitted = await http.post("/api/v1/boards", json={"title": "Sans avis"})
    assert omitted.status_code == 201, omitted.text
    assert omitted.json()["anonymous"] is True
    assert (await get_board(http, omitted.json()["join_code"]))["anonymous"] is True
    named = await http.post("/api/v1/boards", json={"title": "Nommé", "anonymous": False})
    assert named.status_code == 201 and named.json()["anonymous"] is False
    assert (await get_board(http, named.json()["join_code"]))["anonymous"] is False
    assert_error(await http.post("/api/v1/boards", json={"title": "x", "anonymous": "yes"}),
                 422, "invalid_field")


async def test_anonymous_board_never_shows_a_pseudonym(server: LiveServer,
                                                       http: httpx.AsyncClient) -> None:
    """On an anonymous board a named participant's card has author null everywhere."""
    created = await http.post("/api/v1/boards", json={"title": "Anonyme",
                                                      "columns": ["Idées"]})
    assert created.status_code == 201
    board = created.json()
    code, animator, column = board["join_code"], board["animator_token"], board["columns"][0]["id"]
    ana = await join(http, code, "Ana")
    async with (subscribe(server.ws_url, code, token=ana) as ws_ana,
                subscribe(server.ws_url, code, token=animator) as ws_animator):
        response = await post(http, code, ana, column, "Plus de bancs", "anon-1")
        assert response.status_code == 201
        card = response.json()
        assert card["author"] is None
        for ws in (ws_ana, ws_animator):
            event = await next_event(ws)
            assert event["type"] == "card.posted" and event["data"]["id"] == card["id"]
            assert event["data"]["author"] is None
    for token in (animator, ana, None):
        seen = cards_of(await get_board(http, code, token))[card["id"]]
        assert seen["text"] == "Plus de bancs" and seen["author"] is None
    assert stored(server, "select name from participant") == [(None,)]
    assert stored(server, "select author from card") == [(None,)]


# --- settings ---------------------------------------------------------------------------------


async def test_settings_patch_answers_all_settings_and_is_broadcast(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    """Each settings PATCH answers every setting and emits board.updated with them."""
    board = await create_board(http)
    code, animator = board["join_code"], board["animator_token"]
    ana = await join(http, code, "Ana")
    expected = {"phase": "collecte", "silent": False, "locked": False, "vote_budget": 3,
                "max_votes_per_item": None, "results_visible": False, "anonymous": False,
                "frozen": False}
    changes: list[dict[str, Any]] = [
        {"phase": "regroupement"}, {"locked": True}, {"vote_budget": 20}, {"vote_budget": 1},
        {"max_votes_per_item": 2}, {"results_visible": True}, {"max_votes_per_item": None},
        {"phase": "vote", "locked": False, "vote_budget": 5},
    ]
    async with (subscribe(server.ws_url, code, token=ana) as ws_ana,
                subscribe(server.ws_url, code, token=animator) as ws_animator):
        for change in changes:
            expected.update(change)
            answer = await patch_settings(http, code, animator, **change)
            assert answer == expected
            for ws in (ws_ana, ws_animator):
                event = await next_event(ws)
                assert event["type"] == "board.updated"
                assert event["data"] == expected
    body = await get_board(http, code)
    assert {key: body[key] for key in SETTINGS} == expected


async def test_bad_settings_are_refused_and_change_nothing(http: httpx.AsyncClient) -> None:
    """Unknown phase, budget 0 or 21, unknown keys and wrong types get 422, nothing stored."""
    board = await create_board(http)
    code, animator = board["join_code"], board["animator_token"]
    before = await get_board(http, code)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"phase": "pause"}, "bad_phase"),
        ({"phase": None}, "bad_phase"),
        ({"vote_budget": 0}, "bad_budget"),
        ({"vote_budget": 21}, "bad_budget"),
        ({"colour": "red"}, "invalid_field"),
        ({"phase": "vote", "anonymous": True}, "invalid_field"),
        ({"silent": "yes"}, "invalid_field"),
        ({"locked": 1}, "invalid_field"),
        ({"results_visible": None}, "invalid_field"),
        ({"max_votes_per_item": 0}, "invalid_field"),
        ({"max_votes_per_item": "2"}, "invalid_field"),
        ({"max_votes_per_item": 1.5}, "invalid_field"),
    ]
    for body, code_expected in bad:
        assert_error(await http.patch(api(code), headers=bearer(animator), json=body),
                     422, code_expected)
    assert_error(await http.patch(api(code), headers=bearer(animator), content=b"[1]"),
                 400, "invalid_json")
    assert await get_board(http, code) == before


# --- silent writing ---------------------------------------------------------------------------


async def test_silent_writing_then_reveal(server: LiveServer, http: httpx.AsyncClient) -> None:
    """While silent, participants see only their own cards; the reveal shows every card."""
    board = await create_board(http)
    code, animator, column = board["join_code"], board["animator_token"], board["columns"][0]["id"]
    ana, ben = await join(http, code, "Ana"), await join(http, code, "Ben")
    await patch_settings(http, code, animator, silent=True)
    async with (subscribe(server.ws_url, code, token=ben) as ws_ben,
                subscribe(server.ws_url, code, token=animator) as ws_animator):
        await wait_for(ws_ben, "board.updated")
        await wait_for(ws_animator, "board.updated")
        card_a = (await post(http, code, ana, column, "Idée secrète d'Ana", "a1")).json()
        event = await next_event(ws_ben)
        assert event["type"] == "card.posted"
        assert event["data"] == {"id": card_a["id"], "column_id": column, "silent": True,
                                 "seq": card_a["seq"]}
        full = await next_event(ws_animator)
        assert full["data"]["text"] == "Idée secrète d'Ana" and full["data"]["author"] == "Ana"
        card_b = (await post(http, code, ben, column, "Idée de Ben", "b1")).json()
        await wait_for(ws_animator, "card.posted")

        assert set(cards_of(await get_board(http, code, ana))) == {card_a["id"]}
        assert set(cards_of(await get_board(http, code, ben))) == {card_b["id"]}
        assert set(cards_of(await get_board(http, code))) == set()
        assert set(cards_of(await get_board(http, code, animator))) == {card_a["id"], card_b["id"]}

        async with subscribe(server.ws_url, code, since=0, token=ben) as replay:
            frames = await events_until(replay, 3)
        posted = {f["data"]["id"]: f["data"] for f in frames if f["type"] == "card.posted"}
        assert "text" not in posted[card_a["id"]] and "author" not in posted[card_a["id"]]
        assert posted[card_b["id"]]["text"] == "Idée de Ben"

        reveal = await patch_settings(http, code, animator, silent=False)
        assert reveal["silent"] is False
        for ws in (ws_ben, ws_animator):
            event = await wait_for(ws, "board.updated")
            assert event["data"]["revealed"] is True and event["data"]["silent"] is False

    both = {card_a["id"]: "Idée secrète d'Ana", card_b["id"]: "Idée de Ben"}
    for token in (ana, ben, None):
        seen = cards_of(await get_board(http, code, token))
        assert {card_id: card["text"] for card_id, card in seen.items()} == both
    async with subscribe(server.ws_url, code, since=0, token=ben) as replay:
        frames = await events_until(replay, 4)
    posted = {f["data"]["id"]: f["data"] for f in frames if f["type"] == "card.posted"}
    assert posted[card_a["id"]]["text"] == "Idée secrète d'Ana"
    assert posted[card_a["id"]]["author"] == "Ana"


async def test_silent_writing_animator_edits_do_not_leak_text(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    """While silent, moving, restoring or merging A's card never sends its text to B."""
    board = await create_board(http)
    code, animator = board["join_code"], board["animator_token"]
    first, second = board["columns"][0]["id"], board["columns"][1]["id"]
    ana, ben = await join(http, code, "Ana"), await join(http, code, "Ben")
    await patch_settings(http, code, animator, silent=True)
    one = (await post(http, code, ana, first, "secret un", "s1")).json()
    two = (await post(http, code, ana, first, "secret deux", "s2")).json()
    received: list[dict[str, Any]] = []
    async with subscribe(server.ws_url, code, since=await board_seq(http, code),
                         token=ben) as ws_ben:
        headers = bearer(animator)
        assert (await http.patch(api(code, f"/cards/{one['id']}"), headers=headers,
                                 json={"column_id": second})).status_code == 200
        assert (await http.patch(api(code, f"/cards/{one['id']}"), headers=headers,
                                 json={"hidden": True})).status_code == 200
        assert (await http.patch(api(code, f"/cards/{one['id']}"), headers=headers,
                                 json={"hidden": False})).status_code == 200
        assert (await http.post(api(code, f"/cards/{two['id']}/merge"), headers=headers,
                                json={"into": one["id"]})).status_code == 200
        received = await events_until(ws_ben, 4)
    assert [e["type"] for e in received] == ["card.updated", "card.hidden", "card.restored",
                                             "card.merged"]
    for event in received:
        assert "secret" not in str(event["data"]), event


async def test_silent_writing_animator_card_live_agrees_with_get(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    """While silent, a participant's live view of the animator's card agrees with their GET."""
    board = await create_board(http)
    code, animator, column = board["join_code"], board["animator_token"], board["columns"][0]["id"]
    ben = await join(http, code, "Ben")
    await patch_settings(http, code, animator, silent=True)
    async with subscribe(server.ws_url, code, since=await board_seq(http, code),
                         token=ben) as ws_ben:
        card = (await post(http, code, animator, column, "Consigne de l'animation", "an1")).json()
        event = await next_event(ws_ben)
    assert event["type"] == "card.posted" and event["data"]["id"] == card["id"]
    shown_live = "text" in event["data"]
    shown_by_get = card["id"] in cards_of(await get_board(http, code, ben))
    assert shown_live == shown_by_get


async def test_snapshot_during_silent_writing_shows_own_cards(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    """While silent, a participant's websocket snapshot holds their own cards, like their GET."""
    board = await create_board(http)
    code, animator, column = board["join_code"], board["animator_token"], board["columns"][0]["id"]
    ana = await join(http, code, "Ana")
    await patch_settings(http, code, animator, silent=True)
    card = (await post(http, code, ana, column, "à moi", "own-1")).json()
    assert set(cards_of(await get_board(http, code, ana))) == {card["id"]}
    async with subscribe(server.ws_url, code, since=None, token=ana) as ws:
        snapshot = await next_event(ws)
    assert snapshot["type"] == "snapshot"
    assert set(cards_of(snapshot["data"])) == {card["id"]}


# --- themes ---------------------------------------------------------------------------------


async def test_themes_created_renamed_deleted_live(server: LiveServer,
                                                   http: httpx.AsyncClient) -> None:
    """Themes are created, renamed, deleted (cards stay unthemed in the column), all live."""
    board = await create_board(http)
    code, animator, column = board["join_code"], board["animator_token"], board["columns"][1]["id"]
    other = await create_board(http)
    ana = await join(http, code, "Ana")
    card = (await post(http, code, ana, column, "Mobilité douce", "t1")).json()
    headers = bearer(animator)
    async with subscribe(server.ws_url, code, since=await board_seq(http, code),
                         token=ana) as ws:
        created = await http.post(api(code, "/themes"), headers=headers,
                                  json={"column_id": column, "title": "Transports"})
        assert created.status_code == 201, created.text
        theme = created.json()
        assert set(theme) == {"id", "column_id", "title"}
        assert theme["column_id"] == column and theme["title"] == "Transports"
        assert await next_event(ws) == {"seq": await board_seq(http, code),
                                        "type": "theme.created", "data": theme}

        renamed = await http.patch(api(code, f"/themes/{theme['id']}"), headers=headers,
                                   json={"title": "Déplacements"})
        assert renamed.status_code == 200
        assert renamed.json() == {**theme, "title": "Déplacements"}
        event = await next_event(ws)
        assert event["type"] == "theme.updated" and event["data"] == renamed.json()

        moved = await http.patch(api(code, f"/cards/{card['id']}"), headers=headers,
                                 json={"theme_id": theme["id"]})
        assert moved.status_code == 200 and moved.json()["theme_id"] == theme["id"]
        await wait_for(ws, "card.updated")

        deleted = await http.delete(api(code, f"/themes/{theme['id']}"), headers=headers)
        assert deleted.status_code == 200
        event = await next_event(ws)
        assert event["type"] == "theme.deleted"
        assert event["data"] == {"id": theme["id"], "column_id": column}

    after = await get_board(http, code, animator)
    column_body = next(c for c in after["columns"] if c["id"] == column)
    assert column_body["themes"] == []
    assert [(c["id"], c["theme_id"]) for c in column_body["cards"]] == [(card["id"], None)]

    for response in (
        await http.patch(api(code, f"/themes/{theme['id']}"), headers=headers,
                         json={"title": "x"}),
        await http.delete(api(code, f"/themes/{theme['id']}"), headers=headers),
        await http.delete(api(code, "/themes/999999"), headers=headers),
        await http.patch(api(code, f"/cards/{card['id']}"), headers=headers,
                         json={"theme_id": 999999}),
    ):
        assert_error(response, 404, "unknown_theme")
    foreign = await http.post(api(code, "/themes"), headers=headers,
                              json={"column_id": other["columns"][0]["id"], "title": "Ailleurs"})
    assert_error(foreign, 422, "unknown_column")
    assert_error(await http.post(api(code, "/themes"), headers=headers,
                                 json={"column_id": column, "title": "  "}), 422, "title_required")


async def test_theme_of_another_board_is_unknown_here(http: httpx.AsyncClient) -> None:
    """A theme id of another board can be neither renamed, deleted nor used for a card here."""
    board, other = await create_board(http), await create_board(http)
    foreign = await http.post(api(other["join_code"], "/themes"),
                              headers=bearer(other["animator_token"]),
                              json={"column_id": other["columns"][0]["id"], "title": "Autre"})
    assert foreign.status_code == 201
    theme_id = foreign.json()["id"]
    code, headers = board["join_code"], bearer(board["animator_token"])
    card = (await post(http, code, board["animator_token"], board["columns"][0]["id"], "x",
                       "f1")).json()
    assert_error(await http.patch(api(code, f"/themes/{theme_id}"), headers=headers,
                                  json={"title": "Pris"}), 404, "unknown_theme")
    assert_error(await http.delete(api(code, f"/themes/{theme_id}"), headers=headers),
                 404, "unknown_theme")
    assert_error(await http.patch(api(code, f"/cards/{card['id']}"), headers=headers,
                                  json={"theme_id": theme_id}), 404, "unknown_theme")
    assert (await get_board(http, other["join_code"]))["columns"][0]["themes"][0]["title"] == (
        "Autre")


# --- cards: move, edit, delete, merge -------------------------------------------------------


async def test_animator_moves_cards_between_themes_and_columns(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    """theme_id moves a card into the theme's column; null unthemes; column_id clears it."""
    board = await create_board(http)
    code, animator = board["join_code"], board["animator_token"]
    first, second = board["columns"][0]["id"], board["columns"][1]["id"]
    headers = bearer(animator)
    theme = (await http.post(api(code, "/themes"), headers=headers,
                             json={"column_id": second, "title": "Lieux"})).json()
    ana = await join(http, code, "Ana")
    card = (await post(http, code, ana, first, "Tiers-lieux", "m1")).json()
    async with subscribe(server.ws_url, code, since=await board_seq(http, code),
                         token=ana) as ws:
        steps: list[tuple[dict[str, Any], int, int | None]] = [
            ({"theme_id": theme["id"]}, second, theme["id"]),
            ({"theme_id": None}, second, None),
            ({"theme_id": theme["id"]}, second, theme["id"]),
            ({"column_id": first}, first, None),
        ]
        for change, column_id, theme_id in steps:
            response = await http.patch(api(code, f"/cards/{card['id']}"), headers=headers,
                                        json=change)
            assert response.status_code == 200, response.text
            moved = response.json()
            assert (moved["column_id"], moved["theme_id"]) == (column_id, theme_id)
            assert moved["text"] == "Tiers-lieux"
            event = await next_event(ws)
            assert event["type"] == "card.updated" and event["data"] == moved
            seen = cards_of(await get_board(http, code, ana))[card["id"]]
            assert (seen["column_id"], seen["theme_id"]) == (column_id, theme_id)
    assert_error(await http.patch(api(code, f"/cards/{card['id']}"), headers=headers,
                                  json={"column_id": 999999}), 422, "unknown_column")


async def test_edited_text_keeps_the_original_in_the_log(server: LiveServer,
                                                         http: httpx.AsyncClient) -> None:
    """An edit emits card.updated with the new text; the replayed card.posted keeps the old."""
    board = await create_board(http)
    code, animator, column = board["join_code"], board["animator_token"], board["columns"][0]["id"]
    ana = await join(http, code, "Ana")
    card = (await post(http, code, ana, column, "Pas assez de velos", "e1")).json()
    response = await http.patch(api(code, f"/cards/{card['id']}"), headers=bearer(animator),
                                json={"text": "  Pas assez de vélos  "})
    assert response.status_code == 200
    assert response.json()["text"] == "Pas assez de vélos"
    assert cards_of(await get_board(http, code, ana))[card["id"]]["text"] == "Pas assez de vélos"
    for token in (ana, animator):
        async with subscribe(server.ws_url, code, since=0, token=token) as ws:
            posted, updated = await events_until(ws, 2)
        assert posted["type"] == "card.posted" and posted["data"]["text"] == "Pas assez de velos"
        assert updated["type"] == "card.updated" and updated["data"]["text"] == (
            "Pas assez de vélos")
        assert updated["seq"] > posted["seq"]
    assert_error(await http.patch(api(code, f"/cards/{card['id']}"), headers=bearer(animator),
                                  json={"text": "   "}), 422, "empty_text")


async def test_deleted_card_is_gone_everywhere(server: LiveServer,
                                               http: httpx.AsyncClient) -> None:
    """DELETE removes a card from every GET and emits card.deleted {id, column_id}."""
    board = await create_board(http)
    code, animator, column = board["join_code"], board["animator_token"], board["columns"][2]["id"]
    ana = await join(http, code, "Ana")
    card = (await post(http, code, ana, column, "Doublon", "d1")).json()
    kept = (await post(http, code, ana, column, "Gardée", "d2")).json()
    async with (subscribe(server.ws_url, code, since=await board_seq(http, code),
                          token=ana) as ws_ana,
                subscribe(server.ws_url, code, since=await board_seq(http, code),
                          token=animator) as ws_animator):
        response = await http.delete(api(code, f"/cards/{card['id']}"), headers=bearer(animator))
        assert response.status_code == 200, response.text
        for ws in (ws_ana, ws_animator):
            event = await next_event(ws)
            assert event["type"] == "card.deleted"
            assert event["data"] == {"id": card["id"], "column_id": column}
    for token in (animator, ana, None):
        assert set(cards_of(await get_board(http, code, token))) == {kept["id"]}
    assert_error(await http.patch(api(code, f"/cards/{card['id']}"), headers=bearer(animator),
                                  json={"text": "revenue"}), 409, "card_unavailable")
    assert_error(await http.delete(api(code, "/cards/999999"), headers=bearer(animator)),
                 404, "unknown_card")


async def test_merge_folds_text_and_votes_into_the_target(server: LiveServer,
                                                          http: httpx.AsyncClient) -> None:
    """Merging moves the source's text and dots into the target; the source disappears."""
    board = await create_board(http)
    code, animator, column = board["join_code"], board["animator_token"], board["columns"][0]["id"]
    ana, ben = await join(http, code, "Ana"), await join(http, code, "Ben")
    source = (await post(http, code, ana, column, "Manque de bancs", "g1")).json()
    target = (await post(http, code, ben, column, "Pas de bancs", "g2")).json()
    await patch_settings(http, code, animator, phase="vote", vote_budget=5)
    for token, card_id in ((ana, source["id"]), (ben, source["id"]), (ana, target["id"])):
        assert (await vote(http, code, token, card_id=card_id)).status_code == 201
    async with subscribe(server.ws_url, code, since=await board_seq(http, code),
                         token=animator) as ws:
        response = await http.post(api(code, f"/cards/{source['id']}/merge"),
                                   headers=bearer(animator), json={"into": target["id"]})
        assert response.status_code == 200, response.text
        merged = response.json()
        assert merged["id"] == target["id"] and merged["text"] == "Pas de bancs"
        assert "Manque de bancs" in merged["merged_texts"]
        event = await next_event(ws)
        assert event["type"] == "card.merged"
        assert event["data"]["id"] == source["id"]
        assert event["data"]["into"]["id"] == target["id"]
    for token in (animator, ana):
        seen = cards_of(await get_board(http, code, token))
        assert set(seen) == {target["id"]}
        assert seen[target["id"]]["merged_texts"] == ["Manque de bancs"]
    ranking = (await results(http, code, animator)).json()
    assert [(item["kind"], item["id"], item["votes"]) for item in ranking] == [
        ("card", target["id"], 3)]
    assert_error(await http.post(api(code, f"/cards/{target['id']}/merge"),
                                 headers=bearer(animator), json={"into": target["id"]}),
                 422, "merge_into_self")
    assert_error(await http.post(api(code, f"/cards/{source['id']}/merge"),
                                 headers=bearer(animator), json={"into": target["id"]}),
                 409, "card_unavailable")
    assert_error(await http.post(api(code, f"/cards/{target['id']}/merge"),
                                 headers=bearer(animator), json={"into": 999999}),
                 404, "unknown_card")
    assert_error(await vote(http, code, ana, card_id=source["id"]), 409, "card_unavailable")


async def test_replayed_merge_hides_text_of_a_card_hidden_since(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    """A participant's replay never carries the text of a card hidden since, merges included."""
    board = await create_board(http)
    code, animator, column = board["join_code"], board["animator_token"], board["columns"][0]["id"]
    ana = await join(http, code, "Ana")
    kept = (await post(http, code, ana, column, "texte masqué", "h1")).json()
    dup = (await post(http, code, ana, column, "doublon masqué", "h2")).json()
    headers = bearer(animator)
    assert (await http.post(api(code, f"/cards/{dup['id']}/merge"), headers=headers,
                            json={"into": kept["id"]})).status_code == 200
    assert (await http.patch(api(code, f"/cards/{kept['id']}"), headers=headers,
                             json={"hidden": True})).status_code == 200
    async with subscribe(server.ws_url, code, since=0, token=ana) as ws:
        frames = await events_until(ws, 4)
    assert [f["type"] for f in frames] == ["card.posted", "card.posted", "card.merged",
                                           "card.hidden"]
    assert "masqué" not in str([f["data"] for f in frames])


async def test_concurrent_moves_later_one_wins_everywhere(server: LiveServer,
                                                          http: httpx.AsyncClient) -> None:
    """Two animator clients moving one card at once: every subscriber ends on the final state."""
    board = await create_board(http)
    code, animator = board["join_code"], board["animator_token"]
    columns = [c["id"] for c in board["columns"]]
    ana = await join(http, code, "Ana")
    card = (await post(http, code, ana, columns[0], "Se déplace", "cc1")).json()
    path, headers = api(code, f"/cards/{card['id']}"), bearer(animator)
    start = await board_seq(http, code)
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=10) as laptop,
        httpx.AsyncClient(base_url=server.url, timeout=10) as tablet,
        subscribe(server.ws_url, code, since=start, token=ana) as ws_ana,
        subscribe(server.ws_url, code, since=start, token=animator) as ws_animator,
        subscribe(server.ws_url, code, since=start) as ws_public,
    ):
        for round_ in range(8):
            a, b = columns[(round_ + 1) % 3], columns[(round_ + 2) % 3]
            answers = await asyncio.gather(
                laptop.patch(path, headers=headers, json={"column_id": a}),
                tablet.patch(path, headers=headers, json={"column_id": b}))
            assert [r.status_code for r in answers] == [200, 200]
        final_seq = await board_seq(http, code)
        final = cards_of(await get_board(http, code, ana))[card["id"]]
        assert final_seq > start
        streams = []
        for ws in (ws_ana, ws_animator, ws_public):
            frames = await events_until(ws, final_seq - start)
            assert [f["seq"] for f in frames] == list(range(start + 1, final_seq + 1))
            updates = [f for f in frames if f["type"] == "card.updated"]
            assert updates and updates[-1]["data"] == final
            streams.append([(f["seq"], f["data"]["column_id"]) for f in updates])
    assert streams[0] == streams[1] == streams[2]
    assert cards_of(await get_board(http, code, ana))[card["id"]] == final


# --- votes and results ------------------------------------------------------------------------


async def test_votes_count_down_the_budget(http: httpx.AsyncClient) -> None:
    """Dots only in the vote phase; remaining counts down from 3, refuses past it, refunds."""
    board = await create_board(http)
    code, animator, column = board["join_code"], board["animator_token"], board["columns"][0]["id"]
    ana = await join(http, code, "Ana")
    one = (await post(http, code, ana, column, "un", "v1")).json()
    two = (await post(http, code, ana, column, "deux", "v2")).json()
    assert_error(await vote(http, code, ana, card_id=one["id"]), 409, "not_voting")
    assert_error(await vote(http, code, ana, remove=True, card_id=one["id"]), 409, "not_voting")
    await patch_settings(http, code, animator, phase="vote")
    left = []
    for card_id in (one["id"], one["id"], two["id"]):
        response = await vote(http, code, ana, card_id=card_id)
        assert response.status_code == 201, response.text
        left.append(response.json())
    assert left == [{"remaining": 2}, {"remaining": 1}, {"remaining": 0}]
    assert_error(await vote(http, code, ana, card_id=two["id"]), 409, "vote_budget_spent")
    removed = await vote(http, code, ana, remove=True, card_id=one["id"])
    assert removed.status_code == 200 and removed.json() == {"remaining": 1}
    again = await vote(http, code, ana, card_id=two["id"])
    assert again.status_code == 201 and again.json() == {"remaining": 0}
    ranking = (await results(http, code, animator)).json()
    assert [(item["id"], item["votes"]) for item in ranking] == [(two["id"], 2), (one["id"], 1)]
    await patch_settings(http, code, animator, phase="restitution")
    assert_error(await vote(http, code, ana, remove=True, card_id=two["id"]), 409, "not_voting")
    assert [(i["id"], i["votes"]) for i in (await results(http, code, animator)).json()] == [
        (two["id"], 2), (one["id"], 1)]


async def test_vote_limits_and_refusals(http: httpx.AsyncClient) -> None:
    """Per-item limit, nothing to remove, hidden card, bad targets, and no dots for the animator."""
    board = await create_board(http)
    code, animator, column = board["join_code"], board["animator_token"], board["columns"][0]["id"]
    ana = await join(http, code, "Ana")
    one = (await post(http, code, ana, column, "un", "l1")).json()
    two = (await post(http, code, ana, column, "deux", "l2")).json()
    hidden = (await post(http, code, ana, column, "masquée", "l3")).json()
    assert (await http.patch(api(code, f"/cards/{hidden['id']}"), headers=bearer(animator),
                             json={"hidden": True})).status_code == 200
    settings = await patch_settings(http, code, animator, phase="vote", max_votes_per_item=1)
    assert settings["max_votes_per_item"] == 1
    assert (await vote(http, code, ana, card_id=one["id"])).json() == {"remaining": 2}
    assert_error(await vote(http, code, ana, card_id=one["id"]), 409, "vote_item_limit")
    assert_error(await vote(http, code, ana, remove=True, card_id=two["id"]),
                 409, "no_vote_to_remove")
    assert_error(await vote(http, code, ana, card_id=hidden["id"]), 409, "card_unavailable")
    assert_error(await vote(http, code, ana, card_id=999999), 404, "unknown_card")
    assert_error(await vote(http, code, ana, theme_id=999999), 404, "unknown_theme")
    assert_error(await vote(http, code, ana), 422, "invalid_field")
    assert_error(await vote(http, code, ana, card_id=one["id"], theme_id=1), 422,
                 "invalid_field")
    assert_error(await vote(http, code, animator, card_id=two["id"]), 401, "invalid_token")
    assert_error(await http.post(api(code, "/votes"), json={"card_id": two["id"]}),
                 401, "auth_required")
    assert (await vote(http, code, ana, card_id=two["id"])).json() == {"remaining": 1}
    ranking = (await results(http, code, animator)).json()
    assert sorted((i["id"], i["votes"]) for i in ranking) == [(one["id"], 1), (two["id"], 1)]


async def test_theme_votes_and_ranked_results(http: httpx.AsyncClient) -> None:
    """Themes take dots; results rank cards and themes, most dots first, for the animator."""
    board = await create_board(http)
    code, animator, column = board["join_code"], board["animator_token"], board["columns"][1]["id"]
    theme = (await http.post(api(code, "/themes"), headers=bearer(animator),
                             json={"column_id": column, "title": "Gouvernance"})).json()
    ana, ben = await join(http, code, "Ana"), await join(http, code, "Ben")
    card = (await post(http, code, ana, column, "Budget participatif", "r1")).json()
    await patch_settings(http, code, animator, phase="vote")
    for token in (ana, ben):
        response = await vote(http, code, token, theme_id=theme["id"])
        assert response.status_code == 201 and response.json() == {"remaining": 2}
    assert (await vote(http, code, ben, card_id=card["id"])).status_code == 201
    response = await results(http, code, animator)
    assert response.status_code == 200
    ranking = response.json()
    assert [(i["kind"], i["id"], i["votes"]) for i in ranking] == [
        ("theme", theme["id"], 2), ("card", card["id"], 1)]
    assert ranking[0]["text"] == "Gouvernance" and ranking[0]["column_id"] == column
    assert ranking[1]["text"] == "Budget participatif" and ranking[1]["column_id"] == column
    removed = await vote(http, code, ana, remove=True, theme_id=theme["id"])
    assert removed.status_code == 200 and removed.json() == {"remaining": 3}
    assert_error(await vote(http, code, ana, remove=True, theme_id=theme["id"]),
                 409, "no_vote_to_remove")
    ranking = (await results(http, code, animator)).json()
    assert sorted((i["kind"], i["votes"]) for i in ranking) == [("card", 1), ("theme", 1)]


async def test_results_hidden_from_participants_until_shown(server: LiveServer,
                                                            http: httpx.AsyncClient) -> None:
    """Participants get 403 results_hidden and empty vote.changed until results are shown."""
    board = await create_board(http)
    code, animator, column = board["join_code"], board["animator_token"], board["columns"][0]["id"]
    ana, ben = await join(http, code, "Ana"), await join(http, code, "Ben")
    card = (await post(http, code, ana, column, "Compost", "rv1")).json()
    await patch_settings(http, code, animator, phase="vote")
    async with (subscribe(server.ws_url, code, since=await board_seq(http, code),
                          token=ben) as ws_ben,
                subscribe(server.ws_url, code, since=await board_seq(http, code),
                          token=animator) as ws_animator):
        assert (await vote(http, code, ana, card_id=card["id"])).status_code == 201
        hidden_event = await next_event(ws_ben)
        assert hidden_event["type"] == "vote.changed" and hidden_event["data"] == {}
        counted = await next_event(ws_animator)
        assert counted["type"] == "vote.changed"
        assert counted["data"]["card_id"] == card["id"] and counted["data"]["votes"] == 1
        for token in (ana, ben, None):
            assert_error(await results(http, code, token), 403, "results_hidden")
        assert (await results(http, code, animator)).status_code == 200

        await patch_settings(http, code, animator, results_visible=True)
        await wait_for(ws_ben, "board.updated")
        await wait_for(ws_animator, "board.updated")
        assert (await vote(http, code, ben, card_id=card["id"])).status_code == 201
        for ws in (ws_ben, ws_animator):
            shown = await next_event(ws)
            assert shown["type"] == "vote.changed"
            assert shown["data"]["card_id"] == card["id"] and shown["data"]["votes"] == 2
    expected = (await results(http, code, animator)).json()
    assert [(i["kind"], i["id"], i["votes"]) for i in expected] == [("card", card["id"], 2)]
    for token in (ana, None):
        response = await results(http, code, token)
        assert response.status_code == 200 and response.json() == expected


# --- timer -----------------------------------------------------------------------------------


async def test_timer_start_pause_add(server: LiveServer, http: httpx.AsyncClient) -> None:
    """The animator starts, pauses and extends the timer; each change is broadcast."""
    board = await create_board(http)
    code, animator = board["join_code"], board["animator_token"]
    ana = await join(http, code, "Ana")
    url, headers = api(code, "/timer"), bearer(animator)
    async with subscribe(server.ws_url, code, since=await board_seq(http, code),
                         token=ana) as ws:
        before = time.time()
        started = await http.post(url, headers=headers, json={"action": "start", "seconds": 300})
        assert started.status_code == 200, started.text
        state = started.json()
        assert state["running"] is True and state["remaining"] == 300
        ends_at = datetime.fromisoformat(state["ends_at"])
        assert ends_at.tzinfo is not None
        assert before + 295 <= ends_at.astimezone(UTC).timestamp() <= time.time() + 305
        event = await next_event(ws)
        assert event["type"] == "timer.updated" and event["data"] == state

        paused = (await http.post(url, headers=headers, json={"action": "pause"})).json()
        assert paused["running"] is False and 0 < paused["remaining"] <= 300
        assert (await next_event(ws))["data"] == paused
        added = (await http.post(url, headers=headers, json={"action": "add"})).json()
        assert added["running"] is False
        assert added["remaining"] == paused["remaining"] + 60
        assert (await next_event(ws))["data"] == added
        assert (await get_board(http, code))["timer"]["remaining"] == added["remaining"]

    seq = await board_seq(http, code)
    for body in ({"action": "explode"}, {}, {"action": "start", "seconds": 0},
                 {"action": "start", "seconds": "60"}, {"action": "start", "seconds": 10**6},
                 {"action": "start", "minutes": 5}):
        assert_error(await http.post(url, headers=headers, json=body), 422, "invalid_field")
    assert_error(await http.post(url, headers=bearer(ana),
                                 json={"action": "start", "seconds": 60}), 403, "animator_only")
    assert await board_seq(http, code) == seq


# --- events of several ateliers ---------------------------------------------------------------


async def test_event_groups_ateliers_for_the_organiser(server: LiveServer,
                                                       http: httpx.AsyncClient) -> None:
    """An event lists its ateliers with phase, connected participants and cards posted."""
    created = await http.post("/api/v1/events", json={"title": "Journée des transitions"})
    assert created.status_code == 201, created.text
    event = created.json()
    assert {"id", "organiser_token", "urls"} <= set(event)
    assert set(event["urls"]) == {"dashboard", "join"}
    event_id, organiser = event["id"], event["organiser_token"]
    url = f"/api/v1/events/{event_id}/boards"
    body = {"title": "Mobilités", "template": "freins-leviers", "slot": "9h30",
            "room": "Salle B", "anonymous": False}
    added = await http.post(url, headers=bearer(organiser), json=body)
    assert added.status_code == 201, added.text
    atelier = added.json()
    assert {"id", "join_code", "animator_token", "columns", "urls", "anonymous"} <= set(atelier)
    assert {"participant", "animator", "projector"} <= set(atelier["urls"])
    assert [c["title"] for c in atelier["columns"]] == ["Freins", "Leviers",
                                                         "Conditions de réussite"]
    assert_error(await http.post(url, json=body), 401, "auth_required")
    assert_error(await http.post(url, headers=bearer("pas-le-bon-jeton"), json=body),
                 403, "organiser_only")
    assert_error(await http.post(url, headers=bearer(atelier["animator_token"]), json=body),
                 403, "organiser_only")

    code = atelier["join_code"]
    await patch_settings(http, code, atelier["animator_token"], phase="regroupement")
    for text in ("un", "deux"):
        await post(http, code, atelier["animator_token"], atelier["columns"][0]["id"], text, text)
    ana = await join(http, code, "Ana")

    async def listing() -> list[dict[str, Any]]:
        response = await http.get(f"/api/v1/events/{event_id}")
        assert response.status_code == 200, response.text
        return list(response.json()["ateliers"])

    ateliers = await listing()
    assert len(ateliers) == 1
    assert ateliers[0]["join_code"] == code and ateliers[0]["title"] == "Mobilités"
    assert (ateliers[0]["slot"], ateliers[0]["room"]) == ("9h30", "Salle B")
    assert (ateliers[0]["phase"], ateliers[0]["cards"]) == ("regroupement", 2)
    assert ateliers[0]["participants_connected"] == 0
    async with subscribe(server.ws_url, code, token=ana):
        deadline = time.monotonic() + 5
        while (await listing())[0]["participants_connected"] != 1:
            assert time.monotonic() < deadline, "presence never reached 1"
            await asyncio.sleep(0.05)
    assert_error(await http.get("/api/v1/events/ZZZZZZ"), 404, "unknown_event")
    assert_error(await http.post("/api/v1/events/ZZZZZZ/boards", headers=bearer(organiser),
                                 json=body), 404, "unknown_event")


# --- every animator action is refused to others -----------------------------------------------

Endpoint = tuple[str, Callable[[dict[str, Any]], str], Callable[[dict[str, Any]], dict[str, Any]]]

ANIMATOR_ENDPOINTS: dict[str, Endpoint] = {
    "settings": ("PATCH", lambda w: "", lambda w: {"phase": "vote"}),
    "theme-create": ("POST", lambda w: "/themes",
                     lambda w: {"column_id": w["column"], "title": "Nouveau"}),
    "theme-rename": ("PATCH", lambda w: f"/themes/{w['theme']}", lambda w: {"title": "Autre"}),
    "theme-delete": ("DELETE", lambda w: f"/themes/{w['theme']}", lambda w: {}),
    "card-move": ("PATCH", lambda w: f"/cards/{w['card']}",
                  lambda w: {"column_id": w["column2"]}),
    "card-edit": ("PATCH", lambda w: f"/cards/{w['card']}", lambda w: {"text": "réécrite"}),
    "card-hide": ("PATCH", lambda w: f"/cards/{w['card']}", lambda w: {"hidden": True}),
    "card-delete": ("DELETE", lambda w: f"/cards/{w['card']}", lambda w: {}),
    "card-merge": ("POST", lambda w: f"/cards/{w['card']}/merge",
                   lambda w: {"into": w["card2"]}),
    "timer": ("POST", lambda w: "/timer", lambda w: {"action": "start", "seconds": 60}),
    "column-rename": ("PATCH", lambda w: f"/columns/{w['column']}",
                      lambda w: {"title": "Renommée"}),
}


@pytest.fixture
async def shared_http(module_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=module_server.url, timeout=10) as client:
        yield client


@pytest.mark.parametrize("name", list(ANIMATOR_ENDPOINTS))
async def test_animator_action_refused_to_anyone_else(shared_http: httpx.AsyncClient,
                                                      name: str) -> None:
    """Participant token, no token, another board's animator: all 403; then it works."""
    http = shared_http
    board, other = await create_board(http), await create_board(http)
    code, animator = board["join_code"], board["animator_token"]
    ana = await join(http, code, "Ana")
    headers = bearer(animator)
    theme = (await http.post(api(code, "/themes"), headers=headers,
                             json={"column_id": board["columns"][0]["id"], "title": "T"})).json()
    card = (await post(http, code, ana, board["columns"][0]["id"], "une", "w1")).json()
    card2 = (await post(http, code, ana, board["columns"][0]["id"], "deux", "w2")).json()
    world = {"column": board["columns"][0]["id"], "column2": board["columns"][1]["id"],
             "theme": theme["id"], "card": card["id"], "card2": card2["id"]}
    method, path, body = ANIMATOR_ENDPOINTS[name]
    url = api(code, path(world))
    before = await get_board(http, code, animator)
    for token, status, error in ((ana, 403, "animator_only"), (None, 403, "animator_only"),
                                 (other["animator_token"], 403, "animator_only")):
        response = await http.request(method, url, json=body(world),
                                      headers=bearer(token) if token else {})
        assert_error(response, status, error)
    assert await get_board(http, code, animator) == before
    allowed = await http.request(method, url, json=body(world), headers=headers)
    assert allowed.status_code in (200, 201), allowed.text
    assert await board_seq(http, code) == before["seq"] + 1


# --- errors -----------------------------------------------------------------------------------


async def test_bad_requests_get_the_error_body_never_a_500(http: httpx.AsyncClient) -> None:
    """Malformed facilitation requests get a 4xx with the documented bilingual error body."""
    board = await create_board(http)
    code, animator, column = board["join_code"], board["animator_token"], board["columns"][0]["id"]
    ana = await join(http, code, "Ana")
    card = (await post(http, code, ana, column, "une", "x1")).json()
    organiser = (await http.post("/api/v1/events", json={"title": "Jour"})).json()
    await patch_settings(http, code, animator, phase="vote")
    a, p = bearer(animator), bearer(ana)
    cases: list[tuple[str, str, dict[str, str], Any, int, str]] = [
        ("POST", "/api/v1/boards", {}, b"{not json", 400, "invalid_json"),
        ("POST", "/api/v1/boards", {}, [], 400, "invalid_json"),
        ("PATCH", api(code), a, b"", 400, "invalid_json"),
        ("PATCH", api(code), a, {"phase": 3}, 422, "bad_phase"),
        ("POST", api(code, "/themes"), a, {"column_id": "abc", "title": "x"}, 422,
         "invalid_field"),
        ("POST", api(code, "/themes"), a, {"column_id": -1, "title": "x"}, 422,
         "invalid_field"),
        ("POST", api(code, "/themes"), a, {"column_id": column, "title": "x" * 81}, 422,
         "field_too_long"),
        ("PATCH", api(code, "/themes/abc"), a, {"title": "x"}, 404, "unknown_theme"),
        ("PATCH", api(code, "/cards/abc"), a, {"hidden": True}, 404, "unknown_card"),
        ("PATCH", api(code, f"/cards/{card['id']}"), a, {}, 422, "invalid_field"),
        ("PATCH", api(code, f"/cards/{card['id']}"), a, {"colour": "red"}, 422,
         "invalid_field"),
        ("PATCH", api(code, f"/cards/{card['id']}"), a, {"theme_id": "x"}, 422,
         "invalid_field"),
        ("PATCH", api(code, f"/cards/{card['id']}"), a, {"text": "x" * 501}, 422,
         "text_too_long"),
        ("POST", api(code, f"/cards/{card['id']}/merge"), a, {"into": None}, 422,
         "invalid_field"),
        ("POST", api(code, f"/cards/{card['id']}/merge"), a, {}, 422, "invalid_field"),
        ("POST", api(code, "/votes"), p, {"card_id": card["id"], "extra": 1}, 422,
         "invalid_field"),
        ("POST", api(code, "/votes"), p, {"card_id": True}, 422, "invalid_field"),
        ("POST", api(code, "/votes"), p, {"card_id": 1.5}, 422, "invalid_field"),
        ("POST", api(code, "/votes"), p, {"card_id": card["id"], "theme_id": None,
                                          "x": None}, 422, "invalid_field"),
        ("POST", api(code, "/votes"), bearer("inconnu"), {"card_id": card["id"]}, 401,
         "invalid_token"),
        ("POST", api(code, "/timer"), a, ["start"], 400, "invalid_json"),
        ("POST", "/api/v1/events", {}, {}, 422, "title_required"),
        ("POST", "/api/v1/events", {}, {"title": "x", "when": "demain"}, 422, "invalid_field"),
        ("POST", f"/api/v1/events/{organiser['id']}/boards", bearer(organiser["organiser_token"]),
         {"title": "x", "colour": "red"}, 422, "invalid_field"),
        ("POST", f"/api/v1/events/{organiser['id']}/boards", bearer(organiser["organiser_token"]),
         {"title": "x", "slot": 9}, 422, "invalid_field"),
        ("GET", "/api/v1/boards/ZZZZZZ/results", {}, None, 404, "unknown_board"),
        ("PUT", api(code, "/timer"), a, {"action": "start"}, 405, "method_not_allowed"),
        ("GET", api(code, "/votes"), p, None, 405, "method_not_allowed"),
    ]
    for method, url, headers, body, status, error in cases:
        kwargs: dict[str, Any] = {"headers": headers}
        if isinstance(body, bytes):
            kwargs["content"] = body
        elif body is not None:
            kwargs["json"] = body
        response = await http.request(method, url, **kwargs)
        assert response.status_code != 500, (method, url, body, response.text)
        assert_error(response, status, error)


async def test_out_of_range_or_exotic_ids_are_4xx(server: LiveServer,
                                                  http: httpx.AsyncClient) -> None:
    """Ids like '²' or 10**20 in a path or a body get a 4xx error, never a 500."""
    board = await create_board(http)
    code, animator, column = board["join_code"], board["animator_token"], board["columns"][0]["id"]
    ana = await join(http, code, "Ana")
    card = (await post(http, code, ana, column, "une", "o1")).json()
    await patch_settings(http, code, animator, phase="vote")
    a, p = bearer(animator), bearer(ana)
    cases: list[tuple[str, str, dict[str, str], dict[str, Any]]] = [
        ("PATCH", api(code, "/cards/%C2%B2"), a, {"hidden": True}),
        ("PATCH", api(code, "/cards/99999999999999999999"), a, {"hidden": True}),
        ("PATCH", api(code, f"/cards/{card['id']}"), a, {"column_id": 10**20}),
        ("POST", api(code, "/themes"), a, {"column_id": 10**20, "title": "x"}),
        ("PATCH", api(code), a, {"max_votes_per_item": 10**20}),
        ("POST", api(code, "/votes"), p, {"card_id": "²"}),
    ]
    statuses = []
    for method, url, headers, body in cases:
        # A fresh connection each: the server drops the connection after a 500.
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as fresh:
            response = await fresh.request(method, url, headers=headers, json=body)
        statuses.append((url, body, response.status_code, response.json()["error"]["code"]))
    assert all(400 <= status < 500 for _, _, status, _ in statuses), statuses
