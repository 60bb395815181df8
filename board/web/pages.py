"""HTML pages: htmx-enhanced, and every form also works as a plain post without JavaScript."""

from __future__ import annotations

import io
import uuid
from typing import Any

import segno
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from board.commands import PUBLIC, Actor, BoardView
from board.domain import parse_id
from board.errors import RuleViolation
from board.presets import FREE
from board.security import (
    animator_cookie,
    origin_allowed,
    participant_cookie,
)
from board.tables import Board, BoardColumn
from board.web.api import board_urls
from board.web.common import (
    client_ip,
    error_json,
    error_page,
    find_board,
    is_htmx,
    lan_hint,
    limit_post,
    pick_lang,
    room_url,
    services,
)

COOKIE_AGE = 60 * 60 * 24 * 30  # a month: a day of ateliers, and the synthesis weeks later


def render(request: Request, template: str, /, *, status: int = 200, **context: Any
           ) -> HTMLResponse:
    lang = pick_lang(request)
    context.setdefault("falc", request.cookies.get("falc") == "1")
    html = services(request).renderer.page(template, lang, request=request,
                                           lan_hint=lan_hint(request), **context)
    response = HTMLResponse(html, status_code=status)
    response.headers["cache-control"] = "no-store"
    return response


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(name, value, max_age=COOKIE_AGE, httponly=True, samesite="lax",
                        secure=services(request).settings.secure_cookies)


async def form_data(request: Request) -> dict[str, str]:
    if not origin_allowed(request.headers, services(request).settings.allowed_origins):
        raise RuleViolation("origin_not_allowed", origin=request.headers.get("origin", "")[:80])
    form = await request.form(max_files=0, max_fields=50)
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def _safe_auth(request: Request, board: Board, token: str) -> Actor:
    try:
        return await services(request).commands.authenticate(board, token)
    except RuleViolation:
        return PUBLIC


async def _board(request: Request) -> Board:
    return await find_board(request, request.path_params["join_code"])


async def _actor_from_cookie(request: Request, board: Board, cookie: str) -> Actor:
    token = request.cookies.get(cookie)
    try:
        return await services(request).commands.authenticate(board, token)
    except RuleViolation:
        return PUBLIC


def _page_context(request: Request, view: BoardView, audience: str) -> dict[str, Any]:
    lang = pick_lang(request)
    code = view.board.join_code
    return {
        "bv": view,
        "board": view.board,
        "view": audience,
        "join_url": f"{room_url(request)}/b/{code}",
        "join_host": room_url(request).split("://", 1)[-1],
        "ws_url": f"/api/v1/boards/{code}/events?since={view.board.seq}&view={audience}"
                  f"&lang={lang}",
        "presence": services(request).fanout.presence(view.id),
    }


# --- home and creation ------------------------------------------------------------------


async def home(request: Request) -> HTMLResponse:
    return render(request, "home.html", form={}, error=None)


async def create(request: Request) -> HTMLResponse:
    form = await form_data(request)
    template = form.get("template") or FREE
    columns = [line for line in form.get("columns", "").splitlines() if line.strip()]
    try:
        created = await services(request).commands.create_board(
            title=form.get("title"), question=form.get("question", ""),
            template=template, columns=columns or None,
            anonymous=form.get("anonymous") == "1",
        )
    except RuleViolation as error:
        return render(request, "home.html", status=error.status, form=form,
                      error=error.message(pick_lang(request)))
    code = created.board.join_code
    return render(request, "created.html", board=created.board,
                  urls=board_urls(request, code, created.animator_token),
                  room=room_url(request))


async def join_by_code(request: Request) -> Response:
    raw = request.query_params.get("code", "")
    try:
        board = await find_board(request, raw)
    except RuleViolation as error:
        if error.code != "unknown_board":
            raise
        return render(request, "unknown.html", status=404, code=raw[:20],
                      message=error.message(pick_lang(request)))
    return RedirectResponse(f"/b/{board.join_code}", status_code=303)


def _back(request: Request) -> RedirectResponse:
    """Back to ?next= (a path of this site only: never an open redirect)."""
    target = request.query_params.get("next", "/")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    return RedirectResponse(target, status_code=303)


def _preference(response: Response, name: str, value: str | None) -> None:
    """A reader's choice (language, easy-to-read wording), kept a year."""
    if value is None:
        response.delete_cookie(name)
    else:
        response.set_cookie(name, value, max_age=COOKIE_AGE * 12, samesite="lax")


async def switch_lang(request: Request) -> Response:
    lang = request.path_params["lang"]
    response = _back(request)
    if lang in ("fr", "en"):
        _preference(response, "lang", lang)
    return response


async def switch_falc(request: Request) -> Response:
    """Easy-to-read wording (FALC) for the participant pages: on or off."""
    response = _back(request)
    _preference(response, "falc", "1" if request.path_params["state"] == "on" else None)
    return response


async def accessibility(request: Request) -> Response:
    """The accessibility statement (RGAA style), one document per language."""
    return render(request, f"accessibility_{pick_lang(request)}.html")


# --- participant --------------------------------------------------------------------------


async def participant_page(request: Request) -> Response:
    try:
        board = await _board(request)
    except RuleViolation as error:
        if error.code != "unknown_board":
            raise
        raw = request.path_params["join_code"]
        return render(request, "unknown.html", status=404, code=raw[:20],
                      message=error.message(pick_lang(request)))
    actor = await _actor_from_cookie(request, board, participant_cookie(board.join_code))
    if actor.role != "participant":
        return render(request, "join.html", board=board, error=None, name="")
    view = await services(request).commands.view(board, actor)
    return render(request, "participant.html", me=actor, post=_blank_post(view.columns),
                  **_page_context(request, view, "participant"))


def _blank_post(columns: list[BoardColumn], column_id: int | None = None) -> dict[str, Any]:
    first = columns[0].id if columns else None
    return {"client_id": uuid.uuid4().hex, "column_id": column_id or first, "text": "",
            "error": None, "sent": False}


async def join_submit(request: Request) -> Response:
    board = await _board(request)
    form = await form_data(request)
    try:
        await services(request).limits.hit("join_ip", client_ip(request))
        _, _, token = await services(request).commands.join(board.join_code,
                                                             name=form.get("name"))
    except RuleViolation as error:
        return render(request, "join.html", status=error.status, board=board,
                      error=error.message(pick_lang(request)), name=form.get("name", ""))
    response = RedirectResponse(f"/b/{board.join_code}", status_code=303)
    set_cookie(request, response, participant_cookie(board.join_code), token)
    return response


async def post_card(request: Request) -> Response:
    """The post form: a plain post (redirect), htmx (fresh form + the card), or the phone
    outbox (`X-Outbox: 1`: the card fragment, or a JSON error it can show and act on)."""
    board = await _board(request)
    form = await form_data(request)
    svc = services(request)
    actor = await _actor_from_cookie(request, board, participant_cookie(board.join_code))
    if actor.role == "public":
        actor = await _actor_from_cookie(request, board, animator_cookie(board.join_code))
    view_name = "animator" if actor.is_animator else "participant"
    back = f"/b/{board.join_code}" + ("/animator" if actor.is_animator else "")
    outbox = request.headers.get("x-outbox") == "1"
    try:
        if actor.role != "public":
            await limit_post(request, board.join_code, actor.author_key)
        result = await svc.commands.post_card(
            board, actor, column_id=form.get("column_id"), text=form.get("text"),
            client_id=form.get("client_id"),
        )
    except RuleViolation as error:
        lang = pick_lang(request)
        if outbox:
            return error_json(error, text=error.message(lang))
        if error.code == "auth_required" and not is_htmx(request):
            return RedirectResponse(f"/b/{board.join_code}", status_code=303)
        post = {"client_id": form.get("client_id") or uuid.uuid4().hex,
                "column_id": _int(form.get("column_id")), "text": form.get("text", ""),
                "error": error.message(lang), "sent": False}
        if is_htmx(request):
            return render(request, "partials/_post_form.html", status=error.status, post=post,
                          columns=await svc.commands.columns(board), view=view_name,
                          code=board.join_code)
        view = await svc.commands.view(board, actor)
        page = "animator.html" if actor.is_animator else "participant.html"
        return render(request, page, status=error.status, me=actor, post=post,
                      urls=board_urls(request, board.join_code),
                      **_page_context(request, view, view_name))
    status = 201 if result.created else 200
    if outbox:
        return render(request, "partials/_card.html", status=status, card=result.card,
                      view=view_name, code=board.join_code, st=board, fresh=True)
    if not is_htmx(request):
        return RedirectResponse(f"{back}#card-{result.card.id}", status_code=303)
    columns = await svc.commands.columns(board)
    post = _blank_post(columns, result.card.column_id)
    post["sent"] = True
    return render(request, "partials/_post_form.html", post=post, columns=columns,
                  view=view_name, new_card=result.card, code=board.join_code, st=board)


def _int(value: str | None) -> int | None:
    return parse_id(value)


async def viewer(request: Request, board: Board, view_name: str) -> Actor:
    """Who is asking for this view: the animator (cookie), a participant (cookie), or nobody."""
    if view_name == "animator":
        actor = await _actor_from_cookie(request, board, animator_cookie(board.join_code))
        if not actor.is_animator:
            raise RuleViolation("animator_only")
        return actor
    if view_name == "participant":
        return await _actor_from_cookie(request, board, participant_cookie(board.join_code))
    return PUBLIC


async def board_area(request: Request) -> Response:
    """The phase-dependent part of a page, re-fetched by pages when the board changes shape."""
    board = await _board(request)
    view_name = request.query_params.get("view", "participant")
    if view_name not in ("participant", "projector", "animator"):
        raise RuleViolation("invalid_field", field="view")
    actor = await viewer(request, board, view_name)
    view = await services(request).commands.view(board, actor)
    template = ("partials/_results.html" if request.query_params.get("part") == "results"
                else "partials/_board_area.html")
    return render(request, template, bv=view, view=view_name, code=board.join_code)


async def vote(request: Request) -> Response:
    board = await _board(request)
    form = await form_data(request)
    actor = await _actor_from_cookie(request, board, participant_cookie(board.join_code))
    target = {k: form[k] for k in ("card_id", "theme_id") if form.get(k)}
    error: RuleViolation | None = None
    try:
        await services(request).commands.vote(board, actor, target,
                                              remove=form.get("action") == "remove")
    except RuleViolation as exc:
        if not is_htmx(request) and exc.code == "auth_required":
            return RedirectResponse(f"/b/{board.join_code}", status_code=303)
        error = exc
    if not is_htmx(request):
        if error is not None:
            return error_page(request, error)
        return RedirectResponse(f"/b/{board.join_code}", status_code=303)
    view = await services(request).commands.view(board, actor)
    # The refusal is shown in the ballot itself (role=status), so htmx gets a 200 to swap.
    return render(request, "partials/_ballot.html", bv=view,
                  vote_error=error.message(pick_lang(request)) if error else None)


# --- projector ----------------------------------------------------------------------------


async def projector_page(request: Request) -> Response:
    board = await _board(request)
    view = await services(request).commands.view(board, PUBLIC)
    return render(request, "projector.html", **_page_context(request, view, "projector"))


async def qr_code(request: Request) -> Response:
    board = await _board(request)
    url = f"{room_url(request)}/b/{board.join_code}"
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="svg", xmldecl=False, scale=10, border=2,
                                    dark="#000", light="#fff")
    return Response(buffer.getvalue(), media_type="image/svg+xml",
                    headers={"cache-control": "public, max-age=3600"})


routes = [
    Route("/", home),
    Route("/boards", create, methods=["POST"]),
    Route("/join", join_by_code),
    Route("/lang/{lang}", switch_lang),
    Route("/falc/{state:str}", switch_falc),
    Route("/accessibilite", accessibility),
    Route("/accessibility", accessibility),
    Route("/b/{join_code}", participant_page),
    Route("/b/{join_code}/join", join_submit, methods=["POST"]),
    Route("/b/{join_code}/cards", post_card, methods=["POST"]),
    Route("/b/{join_code}/projector", projector_page),
    Route("/b/{join_code}/qr.svg", qr_code),
    Route("/b/{join_code}/area", board_area),
    Route("/b/{join_code}/votes", vote, methods=["POST"]),
]
