"""The public JSON API under /api/v1 (documented in the README; a contract)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from board.commands import Actor, card_dict
from board.errors import RuleViolation
from board.presets import TEMPLATES
from board.security import bearer_token
from board.tables import Board
from board.web.common import base_url, read_json, services
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
    svc = services(request)
    board = await svc.commands.find_board(request.path_params["join_code"])
    actor = await svc.commands.authenticate(board, bearer_token(request.headers),
                                            required=required)
    return board, actor


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def list_templates(request: Request) -> JSONResponse:
    return JSONResponse(
        [{"id": t.id, "title": t.title, "columns": list(t.columns)} for t in TEMPLATES]
    )


async def create_board(request: Request) -> JSONResponse:
    data = await read_json(request)
    created = await services(request).commands.create_board(
        title=data.get("title"),
        question=data.get("question", ""),
        template=data.get("template"),
        columns=data.get("columns"),
    )
    code = created.board.join_code
    return JSONResponse(
        {
            "id": created.board.id,
            "join_code": code,
            "animator_token": created.animator_token,
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
    board, actor = await _board_and_actor(request, required=True)
    data = await read_json(request)
    settings = await services(request).commands.update_settings(board, actor, data)
    return JSONResponse(settings)


async def join(request: Request) -> JSONResponse:
    svc = services(request)
    board = await svc.commands.find_board(request.path_params["join_code"])
    data = await read_json(request)
    participant, token = await svc.commands.join(board, name=data.get("name"))
    return JSONResponse({"participant_id": participant.id, "token": token}, status_code=201)


async def post_card(request: Request) -> JSONResponse:
    board, actor = await _board_and_actor(request, required=True)
    data = await read_json(request)
    result = await services(request).commands.post_card(
        board, actor, column_id=data.get("column_id"), text=data.get("text"),
        client_id=data.get("client_id"),
    )
    return JSONResponse(card_dict(result.card), status_code=201 if result.created else 200)


def _path_id(request: Request, name: str) -> int:
    raw = request.path_params[name]
    if not raw.isdigit():
        raise RuleViolation("unknown_card" if name == "card_id" else "unknown_column")
    return int(raw)


async def patch_card(request: Request) -> JSONResponse:
    board, actor = await _board_and_actor(request, required=True)
    data = await read_json(request)
    if set(data) - {"hidden"} or "hidden" not in data:
        raise RuleViolation("invalid_field", field="hidden")
    card = await services(request).commands.set_hidden(
        board, actor, card_id=_path_id(request, "card_id"), hidden=data["hidden"]
    )
    return JSONResponse(card_dict(card))


async def patch_column(request: Request) -> JSONResponse:
    board, actor = await _board_and_actor(request, required=True)
    data = await read_json(request)
    column = await services(request).commands.rename_column(
        board, actor, column_id=_path_id(request, "column_id"), title=data.get("title")
    )
    return JSONResponse({"id": column.id, "title": column.title})


routes = [
    Route("/api/v1/health", health),
    Route("/api/v1/templates", list_templates),
    Route("/api/v1/boards", create_board, methods=["POST"]),
    Route("/api/v1/boards/{join_code}", get_board, methods=["GET"]),
    Route("/api/v1/boards/{join_code}", patch_board, methods=["PATCH"]),
    Route("/api/v1/boards/{join_code}/participants", join, methods=["POST"]),
    Route("/api/v1/boards/{join_code}/cards", post_card, methods=["POST"]),
    Route("/api/v1/boards/{join_code}/cards/{card_id}", patch_card, methods=["PATCH"]),
    Route("/api/v1/boards/{join_code}/columns/{column_id}", patch_column, methods=["PATCH"]),
    WebSocketRoute("/api/v1/boards/{join_code}/events", events_endpoint),
]
