"""A day of ateliers: the organiser's dashboard and the single join page of the event."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from board.errors import RuleViolation
from board.presets import FREE
from board.security import organiser_cookie, secret_matches
from board.tables import OrgEvent
from board.web.api import board_urls, event_urls
from board.web.common import pick_lang, room_url, services
from board.web.pages import form_data, render, set_cookie


async def create_event(request: Request) -> Response:
    form = await form_data(request)
    try:
        org, token = await services(request).commands.create_event(title=form.get("title"))
    except RuleViolation as error:
        return render(request, "home.html", status=error.status, form={},
                      error=error.message(pick_lang(request)))
    return render(request, "event_created.html", org=org,
                  urls=event_urls(request, org.code, token))


def _is_organiser(request: Request, org: OrgEvent) -> bool:
    token = request.cookies.get(organiser_cookie(org.code))
    return bool(token) and secret_matches(token or "", org.organiser_secret_hash)


async def _overview(request: Request, org: OrgEvent) -> list[dict[str, object]]:
    svc = services(request)
    ateliers = await svc.commands.event_boards(org)
    for atelier in ateliers:
        board_id = atelier["id"]
        assert isinstance(board_id, int)
        atelier["participants_connected"] = svc.fanout.presence(board_id)
    return ateliers


async def dashboard(request: Request) -> Response:
    commands = services(request).commands
    org = await commands.find_event(request.path_params["event_code"])
    key = request.query_params.get("key")
    if key is not None:
        if not secret_matches(key, org.organiser_secret_hash):
            raise RuleViolation("organiser_only")
        response = RedirectResponse(f"/e/{org.code}/dashboard", status_code=303)
        set_cookie(request, response, organiser_cookie(org.code), key)
        return response
    if not _is_organiser(request, org):
        raise RuleViolation("organiser_only")
    template = ("partials/_event_table.html" if request.query_params.get("part") == "table"
                else "event_dashboard.html")
    return render(request, template, org=org, ateliers=await _overview(request, org),
                  urls=event_urls(request, org.code), form={}, error=None)


async def add_atelier(request: Request) -> Response:
    commands = services(request).commands
    org = await commands.find_event(request.path_params["event_code"])
    if not _is_organiser(request, org):
        raise RuleViolation("organiser_only")
    form = await form_data(request)
    columns = [line for line in form.get("columns", "").splitlines() if line.strip()]
    try:
        created = await commands.create_board(
            title=form.get("title"), question=form.get("question", ""),
            template=form.get("template") or FREE, columns=columns or None,
            anonymous=form.get("anonymous") == "1", event_id=org.id,
            slot=form.get("slot", ""), room=form.get("room", ""),
            animator_name=form.get("animator_name", ""))
    except RuleViolation as error:
        return render(request, "event_dashboard.html", status=error.status, org=org,
                      ateliers=await _overview(request, org), urls=event_urls(request, org.code),
                      form=form, error=error.message(pick_lang(request)))
    return render(request, "created.html", board=created.board, org=org,
                  urls=board_urls(request, created.board.join_code, created.animator_token),
                  room=room_url(request))


async def join_page(request: Request) -> Response:
    org = await services(request).commands.find_event(request.path_params["event_code"])
    ateliers = await _overview(request, org)
    open_now = [a for a in ateliers if a["phase"] not in ("preparation", "restitution")]
    later = [a for a in ateliers if a not in open_now]
    return render(request, "event_join.html", org=org, open_now=open_now, later=later)


routes = [
    Route("/events", create_event, methods=["POST"]),
    Route("/e/{event_code}", join_page),
    Route("/e/{event_code}/dashboard", dashboard),
    Route("/e/{event_code}/boards", add_atelier, methods=["POST"]),
]
