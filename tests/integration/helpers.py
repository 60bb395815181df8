"""Small API client used by the integration tests (speaks only the documented contract)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect


async def create_board(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    body.setdefault("title", "Coopération et transitions")
    body.setdefault("template", "constats-enjeux-besoins")
    body.setdefault("anonymous", False)
    response = await http.post("/api/v1/boards", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def join(http: httpx.AsyncClient, code: str, name: str | None = None) -> str:
    response = await http.post(f"/api/v1/boards/{code}/participants",
                               json={} if name is None else {"name": name})
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post(http: httpx.AsyncClient, code: str, token: str, column_id: int, text: str,
               client_id: str) -> httpx.Response:
    return await http.post(f"/api/v1/boards/{code}/cards", headers=bearer(token),
                           json={"column_id": column_id, "text": text, "client_id": client_id})


def subscribe(ws_base: str, code: str, *, since: int | None = 0, token: str | None = None,
              query: str = "", **kwargs: Any) -> Any:
    params = [] if since is None else [f"since={since}"]
    if query:
        params.append(query)
    url = f"{ws_base}/api/v1/boards/{code}/events" + ("?" + "&".join(params) if params else "")
    headers = bearer(token) if token else {}
    return connect(url, additional_headers=headers, open_timeout=10, **kwargs)


async def next_event(ws: ClientConnection, *, skip_presence: bool = True,
                     timeout: float = 5) -> dict[str, Any]:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if skip_presence and frame["type"] == "presence":
            continue
        return dict(frame)


async def events_until(ws: ClientConnection, count: int, timeout: float = 10
                       ) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < count:
        got.append(await next_event(ws, timeout=timeout))
    return got


async def quiet(ws: ClientConnection, seconds: float = 0.5) -> list[dict[str, Any]]:
    """Frames other than presence that arrive within `seconds` (expected: none)."""
    extra: list[dict[str, Any]] = []
    try:
        while True:
            extra.append(await next_event(ws, timeout=seconds))
    except TimeoutError:
        return extra


def api(code: str, path: str = "") -> str:
    return f"/api/v1/boards/{code}{path}"


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The documented error body, the right status, and never a stack trace."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "fr", "en"}
    assert error["code"] == code, error
    assert error["fr"] and error["en"] and error["fr"] != error["en"]
    assert error["message"] == f"{error['fr']} / {error['en']}"
    assert "Traceback" not in response.text
