"""The animator's page and its forms. Each form works as a plain post (redirect back) and,
with htmx, answers a short message into the page's #flash region; the board itself changes
through the websocket like on every other screen."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from board.commands import Actor
from board.domain import normalize_join_code
from board.errors import RuleViolation
from board.security import animator_cookie
from board.tables import Board
from board.web.api import board_urls
from board.web.common import is_htmx, pick_lang, services
from board.web.pages import (
    _actor_from_cookie,
    _blank_post,
    _board,
    _int,
    _page_context,
    _safe_auth,
    form_data,
    render,
    set_cookie,
)


async def animator_page(request: Request) -> Response:
    board = await _board(request)
    key = request.query_params.get("key")
    if key is not None:
        # Trade the secret link for an HttpOnly cookie, then drop it from the address bar.
        actor = await _safe_auth(request, board, key)
        if not actor.is_animator:
            return render(request, "forbidden.html", status=403, board=board)
        response = RedirectResponse(f"/b/{board.join_code}/animator", status_code=303)
        set_cookie(request, response, animator_cookie(board.join_code), key)
        return response
    actor = await _actor_from_cookie(request, board, animator_cookie(board.join_code))
    if not actor.is_animator:
        return render(request, "forbidden.html", status=403, board=board)
    view = await services(request).commands.view(board, actor)
    return render(request, "animator.html", me=actor, post=_blank_post(view.columns),
                  urls=board_urls(request, board.join_code),
                  **_page_context(request, view, "animator"))


async def _animator(request: Request) -> tuple[Board, Actor, dict[str, str]]:
    board = await _board(request)
    form = await form_data(request)
    actor = await _actor_from_cookie(request, board, animator_cookie(board.join_code))
    if not actor.is_animator:
        raise RuleViolation("animator_only")
    return board, actor, form


def _done(request: Request, board: Board, anchor: str = "") -> Response:
    if is_htmx(request):
        return HTMLResponse("")
    return RedirectResponse(f"/b/{board.join_code}/animator{anchor}", status_code=303)


async def _run(request: Request, action: Any, *, saved: bool = False) -> Response:
    """Run one animator action; errors go to #flash (htmx) or an error page. ``saved``:
    say so in #flash (an action whose result is not otherwise visible at once)."""
    try:
        board, actor, form = await _animator(request)
        anchor = await action(board, actor, form)
    except RuleViolation as error:
        if not is_htmx(request):
            raise
        message = error.message(pick_lang(request))
        return HTMLResponse(f'<p class="error" role="alert">{_escape(message)}</p>',
                            status_code=error.status)
    if saved and is_htmx(request):
        return render(request, "partials/_saved.html")
    return _done(request, board, anchor or "")


def _escape(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def _path_int(request: Request, name: str, code: str) -> int:
    value = _int(request.path_params[name])
    if value is None:
        raise RuleViolation(code)
    return value


async def card_visibility(request: Request) -> Response:
    async def action(board: Board, actor: Actor, form: dict[str, str]) -> str:
        card_id = _path_int(request, "card_id", "unknown_card")
        await services(request).commands.set_hidden(board, actor, card_id=card_id,
                                                    hidden=form.get("hidden") == "1")
        return f"#card-{card_id}"
    return await _run(request, action)


async def card_edit(request: Request) -> Response:
    async def action(board: Board, actor: Actor, form: dict[str, str]) -> str:
        card_id = _path_int(request, "card_id", "unknown_card")
        commands = services(request).commands
        if form.get("delete") == "1":
            await commands.delete_card(board, actor, card_id=card_id)
            return ""
        await commands.update_card(board, actor, card_id=card_id,
                                   changes={"text": form.get("text", "")})
        return f"#card-{card_id}"
    return await _run(request, action)


async def card_move(request: Request) -> Response:
    """Toolbar (select a card, then move or merge) and drag-and-drop both post here."""
    async def action(board: Board, actor: Actor, form: dict[str, str]) -> str:
        raw = request.path_params.get("card_id") or form.get("card_id")
        card_id = _int(raw)
        if card_id is None:
            raise RuleViolation("invalid_field", field="card_id")
        commands = services(request).commands
        if form.get("action") == "merge":
            await commands.merge_cards(board, actor, card_id=card_id, into=form.get("into", ""))
            return f"#card-{form.get('into', '')}"
        target = form.get("target", "")
        kind, _, number = target.partition("-")
        if kind == "col":
            changes: dict[str, Any] = {"column_id": number, "theme_id": None}
        elif kind == "theme":
            changes = {"theme_id": number}
        else:
            raise RuleViolation("invalid_field", field="target")
        await commands.update_card(board, actor, card_id=card_id, changes=changes)
        return f"#card-{card_id}"
    return await _run(request, action)


async def column_rename(request: Request) -> Response:
    async def action(board: Board, actor: Actor, form: dict[str, str]) -> str:
        column_id = _path_int(request, "column_id", "unknown_column")
        await services(request).commands.rename_column(board, actor, column_id=column_id,
                                                       title=form.get("title"))
        return ""
    return await _run(request, action)


async def theme_create(request: Request) -> Response:
    async def action(board: Board, actor: Actor, form: dict[str, str]) -> str:
        theme = await services(request).commands.create_theme(
            board, actor, column_id=form.get("column_id"), title=form.get("title"))
        return f"#theme-{theme.id}"
    return await _run(request, action)


async def theme_edit(request: Request) -> Response:
    async def action(board: Board, actor: Actor, form: dict[str, str]) -> str:
        theme_id = _path_int(request, "theme_id", "unknown_theme")
        commands = services(request).commands
        if form.get("delete") == "1":
            await commands.delete_theme(board, actor, theme_id=theme_id)
            return ""
        await commands.rename_theme(board, actor, theme_id=theme_id, title=form.get("title"))
        return f"#theme-{theme_id}"
    return await _run(request, action)


async def board_settings(request: Request) -> Response:
    async def action(board: Board, actor: Actor, form: dict[str, str]) -> str:
        changes: dict[str, Any] = {}
        for key in ("locked", "silent", "results_visible"):
            if key in form:
                changes[key] = form[key] == "1"
        if "phase" in form:
            changes["phase"] = form["phase"]
        if form.get("vote_form") == "1":
            budget = _int(form.get("vote_budget"))
            if budget is None:
                raise RuleViolation("bad_budget", limit=20)
            changes["vote_budget"] = budget
            changes["max_votes_per_item"] = 1 if form.get("max_one") == "1" else None
        await services(request).commands.update_settings(board, actor, changes)
        return ""
    return await _run(request, action)


async def timer(request: Request) -> Response:
    async def action(board: Board, actor: Actor, form: dict[str, str]) -> str:
        minutes = _int(form.get("minutes"))
        seconds = 60 if form.get("action") == "add" else (minutes * 60 if minutes else None)
        await services(request).commands.timer(board, actor, action=form.get("action"),
                                               seconds=seconds)
        return ""
    return await _run(request, action)


async def synthesis_form(request: Request) -> Response:
    """Save the draft of the synthesis, or freeze it (form fields notes-<column id>)."""
    async def action(board: Board, actor: Actor, form: dict[str, str]) -> str:
        notes = {key.removeprefix("notes-"): value for key, value in form.items()
                 if key.startswith("notes-")}
        archive = services(request).archive
        if form.get("action") == "freeze":
            await archive.freeze(board, actor, notes=notes, conclusion=form.get("conclusion"),
                                 lang=pick_lang(request))
        else:
            await archive.save_draft(board, actor, notes=notes,
                                     conclusion=form.get("conclusion"))
        return "#synthesis-panel"
    return await _run(request, action, saved=True)


async def reopen(request: Request) -> Response:
    async def action(board: Board, actor: Actor, form: dict[str, str]) -> str:
        await services(request).archive.reopen(board, actor)
        return ""
    return await _run(request, action)


async def anonymise(request: Request) -> Response:
    async def action(board: Board, actor: Actor, form: dict[str, str]) -> str:
        await services(request).archive.anonymise(board, actor)
        return "#synthesis-panel"
    return await _run(request, action, saved=True)


async def delete_board(request: Request) -> Response:
    """A confirmation page (GET), then the deletion itself: the join code must be typed."""
    if request.method == "GET":
        board = await _board(request)
        actor = await _actor_from_cookie(request, board, animator_cookie(board.join_code))
        if not actor.is_animator:
            return render(request, "forbidden.html", status=403, board=board)
        return render(request, "delete_board.html", board=board)
    board, actor, form = await _animator(request)
    if normalize_join_code(form.get("confirm", "")) != board.join_code:
        error = RuleViolation("confirm_mismatch", code=board.join_code)
        return render(request, "delete_board.html", status=error.status, board=board,
                      error=error.message(pick_lang(request)))
    await services(request).archive.delete_board(board, actor)
    response = render(request, "deleted.html")
    response.delete_cookie(animator_cookie(board.join_code))
    return response


routes = [
    Route("/b/{join_code}/animator", animator_page),
    Route("/b/{join_code}/animator/synthesis", synthesis_form, methods=["POST"]),
    Route("/b/{join_code}/animator/reopen", reopen, methods=["POST"]),
    Route("/b/{join_code}/animator/anonymise", anonymise, methods=["POST"]),
    Route("/b/{join_code}/animator/delete", delete_board, methods=["GET", "POST"]),
    Route("/b/{join_code}/animator/cards/{card_id}", card_visibility, methods=["POST"]),
    Route("/b/{join_code}/animator/cards/{card_id}/edit", card_edit, methods=["POST"]),
    Route("/b/{join_code}/animator/cards/{card_id}/move", card_move, methods=["POST"]),
    Route("/b/{join_code}/animator/move", card_move, methods=["POST"]),
    Route("/b/{join_code}/animator/columns/{column_id}", column_rename, methods=["POST"]),
    Route("/b/{join_code}/animator/themes", theme_create, methods=["POST"]),
    Route("/b/{join_code}/animator/themes/{theme_id}", theme_edit, methods=["POST"]),
    Route("/b/{join_code}/animator/settings", board_settings, methods=["POST"]),
    Route("/b/{join_code}/animator/timer", timer, methods=["POST"]),
]
