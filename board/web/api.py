"""The public JSON API under /api/v1 (documented in the README; a contract)."""

from __future__ import annotations

import os
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from board.commands import Actor, card_dict, theme_dict
from board.domain import parse_id
from board.errors import RuleViolation
from board.presets import TEMPLATES
from board.security import bearer_token
from board.tables import Board
from board.web.common import (
    base_url,
    client_ip,
    find_board_and_actor,
    find_caller,
    guarded_lookup,
    limit_post,
    read_json,
    services,
)
from board.web.live import events_endpoint


def board_urls(request: Request, join_code: str, animator_token: str | None = None
               ) -> dict[str, str]:
    base = base_url(request)
    urls = {
        "participant": f"{base}/b/{join_code}",
        "projector": f"{base}/b/{join_code}/projector",
    }
    if animator_token is not None:
        urls["animator"] = f"{base}/b/{join_code}/animator?key={animator_token}"
    return urls


async def _board_and_actor(request: Request, *, required: bool) -> tuple[Board, Actor]:
    return await find_board_and_actor(request, request.path_params["join_code"],
                                      bearer_token(request.headers), required=required)


async def _animator_of(request: Request) -> tuple[Board, Actor]:
    """An animator-only action: no token, a token of another board or a participant's token
    are all the same refusal, 403 animator_only (as the facilitation API specifies)."""
    try:
        board, actor = await _board_and_actor(request, required=True)
    except RuleViolation as error:
        if error.code in ("auth_required", "invalid_token"):
            raise RuleViolation("animator_only") from error
        raise
    if not actor.is_animator:
        raise RuleViolation("animator_only")
    return board, actor


async def health(request: Request) -> JSONResponse:
    hub = services(request).hub
    return JSONResponse({"status": "ok", "worker": os.getpid(), "pubsub": hub.kind,
                         "pubsub_connected": hub.is_connected})


async def list_templates(request: Request) -> JSONResponse:
    return JSONResponse(
        [{"id": t.id, "title": t.title, "columns": list(t.columns)} for t in TEMPLATES]
    )


BOARD_FIELDS = {"title", "question", "template", "columns", "anonymous"}
EVENT_BOARD_FIELDS = BOARD_FIELDS | {"slot", "room", "animator_name"}


async def create_board(request: Request) -> JSONResponse:
    data = await read_json(request)
    return await _create_board(request, data, event_id=None)


async def _create_board(request: Request, data: dict[str, Any], *,
                        event_id: int | None) -> JSONResponse:
    allowed = EVENT_BOARD_FIELDS if event_id is not None else BOARD_FIELDS
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise RuleViolation("invalid_field", field=unknown[0])
    created = await services(request).commands.create_board(
        event_id=event_id, **{k: v for k, v in data.items() if k in allowed})
    code = created.board.join_code
    return JSONResponse(
        {
            "id": created.board.id,
            "join_code": code,
            "animator_token": created.animator_token,
            "anonymous": created.board.anonymous,
            "columns": [{"id": c.id, "title": c.title} for c in created.columns],
            "urls": board_urls(request, code, created.animator_token),
        },
        status_code=201,
    )


async def get_board(request: Request) -> JSONResponse:
    board, actor = await _board_and_actor(request, required=False)
    view = await services(request).commands.view(board, actor)
    body: dict[str, Any] = view.to_dict()
    body["participants_connected"] = services(request).fanout.presence(view.id)
    return JSONResponse(body)


async def patch_board(request: Request) -> JSONResponse:
    board, actor = await _animator_of(request)
    data = await read_json(request)
    settings = await services(request).commands.update_settings(board, actor, data)
    return JSONResponse(settings)


async def join(request: Request) -> JSONResponse:
    svc = services(request)
    await svc.limits.hit("join_ip", client_ip(request))
    data = await read_json(request)
    _, participant_id, token = await guarded_lookup(request, svc.commands.join(
        request.path_params["join_code"], name=data.get("name")))
    return JSONResponse({"participant_id": participant_id, "token": token}, status_code=201)


async def post_card(request: Request) -> JSONResponse:
    board, actor = await find_caller(request, request.path_params["join_code"],
                                     bearer_token(request.headers), required=True)
    await limit_post(request, board.join_code, actor.author_key)
    data = await read_json(request)
    result = await services(request).commands.post_card(
        board, actor, column_id=data.get("column_id"), text=data.get("text"),
        client_id=data.get("client_id"),
    )
    return JSONResponse(card_dict(result.card), status_code=201 if result.created else 200)


def _path_id(request: Request, name: str) -> int:
    value = parse_id(request.path_params[name])
    if value is None:
        raise RuleViolation({"card_id": "unknown_card", "theme_id": "unknown_theme"}.get(
            name, "unknown_column"))
    return value


async def patch_card(request: Request) -> JSONResponse:
    board, actor = await _animator_of(request)
    data = await read_json(request)
    card = await services(request).commands.update_card(
        board, actor, card_id=_path_id(request, "card_id"), changes=data)
    return JSONResponse(card_dict(card))


async def delete_card(request: Request) -> JSONResponse:
    board, actor = await _animator_of(request)
    card_id = _path_id(request, "card_id")
    await services(request).commands.delete_card(board, actor, card_id=card_id)
    return JSONResponse({"id": card_id, "deleted": True})


async def merge_card(request: Request) -> JSONResponse:
    board, actor = await _animator_of(request)
    data = await read_json(request)
    card = await services(request).commands.merge_cards(
        board, actor, card_id=_path_id(request, "card_id"), into=data.get("into"))
    return JSONResponse(card_dict(card))


async def create_theme(request: Request) -> JSONResponse:
    board, actor = await _animator_of(request)
    data = await read_json(request)
    theme = await services(request).commands.create_theme(
        board, actor, column_id=data.get("column_id"), title=data.get("title"))
    return JSONResponse(theme_dict(theme), status_code=201)


async def patch_theme(request: Request) -> JSONResponse:
    board, actor = await _animator_of(request)
    data = await read_json(request)
    if set(data) != {"title"}:
        raise RuleViolation("invalid_field", field="title")
    theme = await services(request).commands.rename_theme(
        board, actor, theme_id=_path_id(request, "theme_id"), title=data["title"])
    return JSONResponse(theme_dict(theme))


async def delete_theme(request: Request) -> JSONResponse:
    board, actor = await _animator_of(request)
    theme_id = _path_id(request, "theme_id")
    await services(request).commands.delete_theme(board, actor, theme_id=theme_id)
    return JSONResponse({"id": theme_id, "deleted": True})


async def vote(request: Request) -> JSONResponse:
    board, actor = await _board_and_actor(request, required=True)
    data = await read_json(request)
    remove = request.method == "DELETE"
    remaining = await services(request).commands.vote(board, actor, data, remove=remove)
    return JSONResponse({"remaining": remaining}, status_code=200 if remove else 201)


async def results(request: Request) -> JSONResponse:
    board, actor = await _board_and_actor(request, required=False)
    return JSONResponse(await services(request).commands.results(board, actor))


async def timer(request: Request) -> JSONResponse:
    board, actor = await _animator_of(request)
    data = await read_json(request)
    if set(data) - {"action", "seconds"}:
        raise RuleViolation("invalid_field", field=sorted(set(data) - {"action", "seconds"})[0])
    state = await services(request).commands.timer(board, actor, action=data.get("action"),
                                                   seconds=data.get("seconds"))
    return JSONResponse(state)


# --- events: a day of ateliers --------------------------------------------------------------


def event_urls(request: Request, code: str, token: str | None = None) -> dict[str, str]:
    base = base_url(request)
    urls = {"join": f"{base}/e/{code}"}
    if token is not None:
        urls["dashboard"] = f"{base}/e/{code}/dashboard?key={token}"
    return urls


async def create_event(request: Request) -> JSONResponse:
    data = await read_json(request)
    if set(data) - {"title"}:
        raise RuleViolation("invalid_field", field=sorted(set(data) - {"title"})[0])
    org, token = await services(request).commands.create_event(title=data.get("title"))
    return JSONResponse({"id": org.code, "title": org.title, "organiser_token": token,
                         "urls": event_urls(request, org.code, token)}, status_code=201)


async def add_event_board(request: Request) -> JSONResponse:
    commands = services(request).commands
    org = await commands.find_event(request.path_params["event_id"])
    commands.check_organiser(org, bearer_token(request.headers))
    data = await read_json(request)
    return await _create_board(request, data, event_id=org.id)


async def get_event(request: Request) -> JSONResponse:
    svc = services(request)
    org = await svc.commands.find_event(request.path_params["event_id"])
    ateliers = await svc.commands.event_boards(org)
    for atelier in ateliers:
        atelier["participants_connected"] = svc.fanout.presence(atelier.pop("id"))
        atelier["urls"] = board_urls(request, atelier["join_code"])
    return JSONResponse({"id": org.code, "title": org.title, "ateliers": ateliers,
                         "urls": event_urls(request, org.code)})


async def patch_column(request: Request) -> JSONResponse:
    board, actor = await _animator_of(request)
    data = await read_json(request)
    column = await services(request).commands.rename_column(
        board, actor, column_id=_path_id(request, "column_id"), title=data.get("title")
    )
    return JSONResponse({"id": column.id, "title": column.title})


# The live socket (pages and API clients); the app serves it ahead of its middleware.
events_route = WebSocketRoute("/api/v1/boards/{join_code}/events", events_endpoint)

routes = [
    Route("/api/v1/health", health),
    Route("/api/v1/templates", list_templates),
    Route("/api/v1/boards", create_board, methods=["POST"]),
    Route("/api/v1/boards/{join_code}", get_board, methods=["GET"]),
    Route("/api/v1/boards/{join_code}", patch_board, methods=["PATCH"]),
    Route("/api/v1/boards/{join_code}/participants", join, methods=["POST"]),
    Route("/api/v1/boards/{join_code}/cards", post_card, methods=["POST"]),
    Route("/api/v1/boards/{join_code}/cards/{card_id}", patch_card, methods=["PATCH"]),
    Route("/api/v1/boards/{join_code}/cards/{card_id}", delete_card, methods=["DELETE"]),
    Route("/api/v1/boards/{join_code}/cards/{card_id}/merge", merge_card, methods=["POST"]),
    Route("/api/v1/boards/{join_code}/columns/{column_id}", patch_column, methods=["PATCH"]),
    Route("/api/v1/boards/{join_code}/themes", create_theme, methods=["POST"]),
    Route("/api/v1/boards/{join_code}/themes/{theme_id}", patch_theme, methods=["PATCH"]),
    Route("/api/v1/boards/{join_code}/themes/{theme_id}", delete_theme, methods=["DELETE"]),
    Route("/api/v1/boards/{join_code}/votes", vote, methods=["POST", "DELETE"]),
    Route("/api/v1/boards/{join_code}/results", results, methods=["GET"]),
    Route("/api/v1/boards/{join_code}/timer", timer, methods=["POST"]),
    Route("/api/v1/events", create_event, methods=["POST"]),
    Route("/api/v1/events/{event_id}", get_event, methods=["GET"]),
    Route("/api/v1/events/{event_id}/boards", add_event_board, methods=["POST"]),
    events_route,
]
