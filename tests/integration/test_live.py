"""The live path end to end: real server process, real websocket clients, real SQLite file."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import LiveServer
from tests.integration.helpers import (
    bearer,
    create_board,
    events_until,
    join,
    next_event,
    post,
    quiet,
    subscribe,
)


@pytest.fixture
async def http(server: LiveServer):  # type: ignore[no-untyped-def]
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


async def test_two_participants_and_projector_receive_a_card(server: LiveServer,
                                                             http: httpx.AsyncClient) -> None:
    """A card posted by one phone reaches both phones and the projector, live."""
    board = await create_board(http)
    code, column = board["join_code"], board["columns"][1]["id"]
    ana, ben = await join(http, code, "Ana"), await join(http, code, "Ben")
    async with (
        subscribe(server.ws_url, code, token=ana) as ws_ana,
        subscribe(server.ws_url, code, token=ben) as ws_ben,
        subscribe(server.ws_url, code, query="view=projector&lang=fr") as ws_projector,
    ):
        response = await post(http, code, ana, column, "Manque de lieux de rencontre", "a-1")
        assert response.status_code == 201
        card = response.json()
        assert card["author"] == "Ana" and card["column_id"] == column
        for ws in (ws_ana, ws_ben):
            event = await next_event(ws)
            assert event == {"seq": card["seq"], "type": "card.posted", "data": card}
        pushed = await next_event(ws_projector)
        assert pushed["type"] == "card.posted" and pushed["seq"] == card["seq"]
        assert "Manque de lieux de rencontre" in pushed["content"]
        assert f'hx-target="#cards-{column}"' in pushed["content"]


async def test_reconnect_with_since_gets_exactly_the_missed_events(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    """A client back with ?since=N receives seq N+1… in order, nothing before, nothing twice."""
    board = await create_board(http)
    code, column = board["join_code"], board["columns"][0]["id"]
    token = await join(http, code)
    seqs = []
    for i in range(6):
        response = await post(http, code, token, column, f"idée {i}", f"c{i}")
        seqs.append(response.json()["seq"])
    async with subscribe(server.ws_url, code, since=seqs[2], token=token) as ws:
        replayed = await events_until(ws, 3)
        assert [e["seq"] for e in replayed] == seqs[3:]
        assert [e["data"]["text"] for e in replayed] == ["idée 3", "idée 4", "idée 5"]
        live = await post(http, code, token, column, "après", "c-live")
        event = await next_event(ws)
        assert event["seq"] == live.json()["seq"] == seqs[-1] + 1
        assert await quiet(ws) == []


async def test_since_missing_or_forged_gets_a_snapshot(server: LiveServer,
                                                       http: httpx.AsyncClient) -> None:
    """No since, a negative one, or one past the end: a snapshot of the board, not an error."""
    board = await create_board(http)
    code, column = board["join_code"], board["columns"][0]["id"]
    token = await join(http, code)
    await post(http, code, token, column, "première", "s1")
    for since in (None, -5, 999):
        async with subscribe(server.ws_url, code, since=since, token=token) as ws:
            event = await next_event(ws)
            assert event["type"] == "snapshot"
            assert event["seq"] == 1
            texts = [c["text"] for col in event["data"]["columns"] for c in col["cards"]]
            assert texts == ["première"]


async def test_a_newcomer_after_a_card_finds_it_in_the_snapshot(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    """Newcomers of a wave share one snapshot; once a card has gone by, the next newcomer does
    not get that stale snapshot: the card is in the one it gets, and does not come twice."""
    board = await create_board(http)
    code, column = board["join_code"], board["columns"][0]["id"]
    token = await join(http, code)
    async with (
        subscribe(server.ws_url, code, since=None) as first,
        subscribe(server.ws_url, code, since=None) as second,
    ):
        for ws in (first, second):
            snapshot = await next_event(ws)
            assert (snapshot["type"], snapshot["seq"]) == ("snapshot", 0)
        card = (await post(http, code, token, column, "Après la vague", "w1")).json()
        # The feed of this board has delivered the card: the shared snapshot is behind it.
        assert (await next_event(first))["seq"] == card["seq"]
        async with subscribe(server.ws_url, code, since=None) as late:
            snapshot = await next_event(late)
            assert (snapshot["type"], snapshot["seq"]) == ("snapshot", card["seq"])
            texts = [c["text"] for col in snapshot["data"]["columns"] for c in col["cards"]]
            assert texts == ["Après la vague"]
            assert await quiet(late) == []


async def test_a_socket_at_the_feeds_seq_gets_nothing_replayed_then_every_next_card(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    """A page's socket opens at the seq the page was rendered at: with the board's feed at that
    seq, nothing is replayed and the next card comes once; one seq behind, it is replayed."""
    board = await create_board(http)
    code, column = board["join_code"], board["columns"][0]["id"]
    token = await join(http, code)
    seqs = [(await post(http, code, token, column, f"idée {i}", f"f{i}")).json()["seq"]
            for i in range(2)]
    async with subscribe(server.ws_url, code, since=seqs[1], token=token) as holder:
        async with (
            subscribe(server.ws_url, code, since=seqs[1], token=token) as level,
            subscribe(server.ws_url, code, since=seqs[0], token=token) as behind,
        ):
            assert [e["data"]["text"] for e in await events_until(behind, 1)] == ["idée 1"]
            assert await quiet(level) == []
            card = (await post(http, code, token, column, "la suivante", "f2")).json()
            for ws in (holder, level, behind):
                event = await next_event(ws)
                assert (event["seq"], event["data"]["text"]) == (card["seq"], "la suivante")
                assert await quiet(ws, 0.2) == []


async def test_same_client_id_twice_stores_one_card(server: LiveServer,
                                                    http: httpx.AsyncClient) -> None:
    """A retried post (same client_id) returns the same card with 200 and stores nothing new."""
    board = await create_board(http)
    code, column = board["join_code"], board["columns"][0]["id"]
    token = await join(http, code)
    async with subscribe(server.ws_url, code, since=0, token=token) as ws:
        first = await post(http, code, token, column, "Une seule fois", "dup-1")
        again = await post(http, code, token, column, "Une seule fois", "dup-1")
        assert (first.status_code, again.status_code) == (201, 200)
        assert again.json()["id"] == first.json()["id"]
        assert (await next_event(ws))["data"]["id"] == first.json()["id"]
        assert await quiet(ws) == []
    state = (await http.get(f"/api/v1/boards/{code}")).json()
    assert sum(len(c["cards"]) for c in state["columns"]) == 1
    assert server.query("select count(*) from card") == [(1,)]
    assert server.query("select count(*) from board_event") == [(1,)]


async def test_concurrent_duplicate_posts_store_one_card(server: LiveServer,
                                                         http: httpx.AsyncClient) -> None:
    """Ten simultaneous retries of one post (flaky network) still make exactly one card."""
    board = await create_board(http)
    code, column = board["join_code"], board["columns"][0]["id"]
    token = await join(http, code)
    responses = await asyncio.gather(
        *(post(http, code, token, column, "Réseau instable", "flaky") for _ in range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["id"] for r in responses}) == 1


async def test_server_restart_keeps_the_board_and_clients_catch_up(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    """After a stop and start, the board, its cards and its log are there; replay resumes."""
    board = await create_board(http, title="Atelier du matin")
    code, column = board["join_code"], board["columns"][2]["id"]
    token = await join(http, code, "Chloé")
    first = (await post(http, code, token, column, "Avant l'arrêt", "r1")).json()
    server.restart()
    second = (await post(http, code, token, column, "Après le redémarrage", "r2")).json()
    state = (await http.get(f"/api/v1/boards/{code}")).json()
    assert state["title"] == "Atelier du matin"
    assert [c["text"] for c in state["columns"][2]["cards"]] == [
        "Avant l'arrêt", "Après le redémarrage"]
    async with subscribe(server.ws_url, code, since=first["seq"], token=token) as ws:
        event = await next_event(ws)
        assert event["seq"] == second["seq"] and event["data"]["text"] == "Après le redémarrage"
    # The animator token still works after the restart.
    hide = await http.patch(f"/api/v1/boards/{code}/cards/{first['id']}",
                            headers=bearer(board["animator_token"]), json={"hidden": True})
    assert hide.status_code == 200


async def test_hidden_cards_vanish_for_participants_not_for_the_animator(
        server: LiveServer, http: httpx.AsyncClient) -> None:
    """Hiding reaches every screen; only the animator still sees the text."""
    board = await create_board(http)
    code, column, animator = board["join_code"], board["columns"][0]["id"], board[
        "animator_token"]
    token = await join(http, code)
    card = (await post(http, code, token, column, "Hors sujet", "h1")).json()
    async with (
        subscribe(server.ws_url, code, since=card["seq"], token=token) as ws_participant,
        subscribe(server.ws_url, code, since=card["seq"], token=animator) as ws_animator,
        subscribe(server.ws_url, code, since=card["seq"],
                  query="view=projector&lang=fr") as ws_projector,
    ):
        response = await http.patch(f"/api/v1/boards/{code}/cards/{card['id']}",
                                    headers=bearer(animator), json={"hidden": True})
        assert response.status_code == 200 and response.json()["hidden"] is True
        seen_by_participant = await next_event(ws_participant)
        assert seen_by_participant["type"] == "card.hidden"
        assert "text" not in seen_by_participant["data"]
        seen_by_animator = await next_event(ws_animator)
        assert seen_by_animator["data"]["text"] == "Hors sujet"
        projector = await next_event(ws_projector)
        assert 'hx-swap="delete"' in projector["content"]
        assert "Hors sujet" not in projector["content"]
    public = (await http.get(f"/api/v1/boards/{code}", headers=bearer(token))).json()
    assert public["columns"][0]["cards"] == []
    private = (await http.get(f"/api/v1/boards/{code}", headers=bearer(animator))).json()
    assert private["columns"][0]["cards"][0]["hidden"] is True
    # A participant replaying from the start does not get the hidden text back.
    async with subscribe(server.ws_url, code, since=0, token=token) as ws:
        replay = await events_until(ws, 2)
        assert all("text" not in e["data"] for e in replay)
    restored = await http.patch(f"/api/v1/boards/{code}/cards/{card['id']}",
                                headers=bearer(animator), json={"hidden": False})
    assert restored.json()["hidden"] is False
    public = (await http.get(f"/api/v1/boards/{code}")).json()
    assert [c["text"] for c in public["columns"][0]["cards"]] == ["Hors sujet"]


async def test_animator_renames_a_column_live(server: LiveServer,
                                              http: httpx.AsyncClient) -> None:
    """A column rename is stored, logged and pushed to every subscriber."""
    board = await create_board(http)
    code, column = board["join_code"], board["columns"][0]["id"]
    async with subscribe(server.ws_url, code, since=0) as ws:
        response = await http.patch(f"/api/v1/boards/{code}/columns/{column}",
                                    headers=bearer(board["animator_token"]),
                                    json={"title": "Ce que nous observons"})
        assert response.json() == {"id": column, "title": "Ce que nous observons"}
        event = await next_event(ws)
        assert event["type"] == "column.renamed"
        assert event["data"] == {"id": column, "title": "Ce que nous observons"}


async def test_presence_counts_connected_participants(server: LiveServer,
                                                      http: httpx.AsyncClient) -> None:
    """Two participants connected (one with two tabs) count as two; projectors do not count."""
    board = await create_board(http)
    code = board["join_code"]
    ana, ben = await join(http, code), await join(http, code)
    async with (
        subscribe(server.ws_url, code, query="view=projector&lang=fr"),
        subscribe(server.ws_url, code, token=ana),
        subscribe(server.ws_url, code, token=ana),
        subscribe(server.ws_url, code, token=ben),
    ):
        for _ in range(50):
            state = (await http.get(f"/api/v1/boards/{code}")).json()
            if state["participants_connected"] == 2:
                break
            await asyncio.sleep(0.1)
        assert state["participants_connected"] == 2
