"""Syntheses on the web: the freeze API, permalinks and exports, the archive and its search,
the event's cross-atelier synthesis, import, and data protection (delete, anonymise)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from board import paths
from board import synthesis as syn
from board.archive import synthesis_path
from board.errors import RuleViolation
from board.render import LANGS, Renderer
from board.security import bearer_token
from board.tables import OrgEvent, Synthesis
from board.web.api import _animator_of
from board.web.common import base_url, pick_lang, read_json, services
from board.web.event_pages import _is_organiser
from board.web.pages import render

STYLE = (paths.TEMPLATES / "export" / "synthesis.css").read_text(encoding="utf-8")
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
# A synthesis page is a standalone document: its one stylesheet is inline (so a saved copy
# works offline), allowed by its hash; no script, no outside resource of any kind.
EXPORT_CSP = (f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; img-src data:; "
              "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
MEDIA = {"html": "text/html; charset=utf-8", "md": "text/markdown; charset=utf-8",
         "csv": "text/csv; charset=utf-8", "json": "application/json",
         "pdf": "application/pdf"}


def synthesis_urls(request: Request, version: Synthesis) -> dict[str, str]:
    base = base_url(request) + synthesis_path(version.slug)
    return {fmt: f"{base}.{fmt}" for fmt in services(request).archive.exports(
        event=version.event_id is not None)}


def version_dict(request: Request, version: Synthesis) -> dict[str, Any]:
    return {"version": version.version, "hash": version.hash,
            "frozen_at": version.frozen_at.isoformat() if version.frozen_at else None,
            "urls": synthesis_urls(request, version)}


# --- rendering a synthesis ------------------------------------------------------------------


def export_body(renderer: Renderer, content: dict[str, Any], hash_: str, fmt: str, *,
                base_name: str = "synthesis",
                exports: tuple[str, ...] = ("md", "csv", "json")) -> str:
    """One synthesis in one text format, from its content alone (same bytes every time)."""
    event = content.get("format") == syn.EVENT_FORMAT
    lang = str(content["lang"]) if content.get("lang") in LANGS else "fr"
    if fmt == "json":
        return syn.to_json(content, hash_)
    if fmt == "csv" and not event:
        return syn.to_csv(content)
    name = "event_synthesis" if event else "synthesis"
    if fmt == "md":
        return renderer.page(f"export/{name}.md", lang, c=content, hash=hash_,
                             md=syn.md_text, md_notes=syn.md_notes)
    if fmt == "html":
        return renderer.page(f"export/{name}.html", lang, c=content, hash=hash_,
                             notes_html=syn.notes_html, css=Markup(STYLE),
                             base_name=base_name,
                             exports=tuple(f for f in exports if f != "html"))
    raise RuleViolation("not_found")


def to_pdf(html: str) -> bytes:
    try:
        import weasyprint  # optional extra: pip install 'atelier-board[pdf]'
    except (ImportError, OSError) as exc:
        raise RuleViolation("pdf_unavailable") from exc

    def no_fetch(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise ValueError(f"a synthesis loads no outside resource ({url[:40]})")

    document: bytes = weasyprint.HTML(string=html, url_fetcher=no_fetch).write_pdf()
    return document


async def export_response(request: Request, content: dict[str, Any], hash_: str, fmt: str,
                          *, base_name: str = "synthesis") -> Response:
    svc = services(request)
    renderer = svc.renderer
    event = content.get("format") == syn.EVENT_FORMAT
    live = event and content.get("version") is None  # an event's synthesis as it stands now
    exports = svc.archive.exports(event=event)
    if fmt == "pdf":
        if not svc.archive.pdf:
            raise RuleViolation("pdf_unavailable")
        html = export_body(renderer, content, hash_, "html", base_name=base_name,
                           exports=exports)
        body: bytes | str = await asyncio.to_thread(to_pdf, html)
    else:
        body = export_body(renderer, content, hash_, fmt, base_name=base_name,
                           exports=exports)
    response = Response(body, media_type=MEDIA[fmt])
    disposition = "inline" if fmt == "html" and request.query_params.get("download") != "1" \
        else "attachment"
    response.headers["content-disposition"] = (
        f'{disposition}; filename="{syn.filename(content, fmt)}"')
    if fmt == "html":
        response.headers["content-security-policy"] = EXPORT_CSP
    response.headers["cache-control"] = "no-store" if live else "private, max-age=300"
    response.headers["x-robots-tag"] = "noindex"
    return response


# --- permalinks -----------------------------------------------------------------------------


async def permalink(request: Request) -> Response:
    """/s/{slug} (the HTML page) and /s/{slug}.{html,md,csv,json,pdf}."""
    slug, _, fmt = request.path_params["name"].partition(".")
    archive = services(request).archive
    version, content = await archive.by_slug(slug)
    if fmt not in archive.exports(event=version.event_id is not None) and fmt != "":
        raise RuleViolation("pdf_unavailable" if fmt == "pdf" else "not_found")
    return await export_response(request, content, version.hash, fmt or "html",
                                 base_name=slug)


# --- board API ------------------------------------------------------------------------------


async def freeze(request: Request) -> JSONResponse:
    board, actor = await _animator_of(request)
    data = await read_json(request)
    unknown = sorted(set(data) - {"notes", "conclusion"})
    if unknown:
        raise RuleViolation("invalid_field", field=unknown[0])
    version = await services(request).archive.freeze(board, actor, notes=data.get("notes"),
                                            conclusion=data.get("conclusion"),
                                            lang=pick_lang(request))
    body = version_dict(request, version)
    del body["frozen_at"]
    return JSONResponse(body, status_code=201)


async def reopen(request: Request) -> JSONResponse:
    board, actor = await _animator_of(request)
    return JSONResponse(await services(request).archive.reopen(board, actor))


async def list_syntheses(request: Request) -> JSONResponse:
    board, _ = await _animator_of(request)
    versions = await services(request).archive.versions(board)
    return JSONResponse([version_dict(request, v) for v in versions])


async def delete_board(request: Request) -> JSONResponse:
    board, actor = await _animator_of(request)
    await services(request).archive.delete_board(board, actor)
    return JSONResponse({"join_code": board.join_code, "deleted": True})


async def anonymise(request: Request) -> JSONResponse:
    board, actor = await _animator_of(request)
    versions = await services(request).archive.anonymise(board, actor)
    return JSONResponse({"join_code": board.join_code, "anonymous": True,
                         "syntheses": [version_dict(request, v) for v in versions]})


async def import_synthesis(request: Request) -> JSONResponse:
    svc = services(request)
    await svc.limits.hit("join_ip", request.client.host if request.client else "unknown")
    data = await read_json(request, svc.settings.max_import_bytes)
    board, version, token = await services(request).archive.import_synthesis(data)
    from board.web.api import board_urls

    return JSONResponse({"join_code": board.join_code, "animator_token": token,
                         "version": version.version, "hash": version.hash,
                         "urls": synthesis_urls(request, version),
                         "board_urls": board_urls(request, board.join_code, token)},
                        status_code=201)


async def search_api(request: Request) -> JSONResponse:
    found = await services(request).archive.search(request.query_params.get("q", ""))
    base = base_url(request)
    return JSONResponse([{"text": f.doc.text, "board_title": f.doc.board_title,
                          "column": f.doc.column, "kind": f.doc.kind,
                          "url": f"{base}{synthesis_path(f.slug)}#{f.doc.anchor}"}
                         for f in found])


# --- the event's synthesis ------------------------------------------------------------------


async def _event(request: Request) -> OrgEvent:
    code = request.path_params.get("event_id") or request.path_params["event_code"]
    return await services(request).commands.find_event(code)


async def event_synthesis_api(request: Request) -> Response:
    """/api/v1/events/{id}/synthesis[.html|.md|.json]: live, as the ateliers stand now."""
    org = await _event(request)
    fmt = request.url.path.rsplit("/", 1)[-1].partition(".")[2] or "json"
    content = await services(request).archive.event_synthesis(org, lang=pick_lang(request))
    return await export_response(request, content, syn.content_hash(content), fmt)


async def freeze_event_api(request: Request) -> JSONResponse:
    org = await _event(request)
    services(request).commands.check_organiser(org, bearer_token(request.headers))
    version = await services(request).archive.freeze_event(org, lang=pick_lang(request))
    body = version_dict(request, version)
    del body["frozen_at"]
    return JSONResponse(body, status_code=201)


async def event_synthesis_page(request: Request) -> Response:
    """The plenary's page: live (refreshed every few seconds), freezable by the organiser."""
    org = await _event(request)
    content = await services(request).archive.event_synthesis(org, lang=pick_lang(request))
    if request.query_params.get("part") == "body":  # the 10-second refresh: the body only
        return render(request, "partials/_event_synthesis_body.html", org=org, c=content,
                      notes_html=syn.notes_html)
    return render(request, "event_synthesis.html", org=org, c=content,
                  notes_html=syn.notes_html, organiser=_is_organiser(request, org),
                  versions=await services(request).archive.event_versions(org))


async def freeze_event_page(request: Request) -> Response:
    from board.web.pages import form_data

    org = await _event(request)
    await form_data(request)  # Origin check
    if not _is_organiser(request, org):
        raise RuleViolation("organiser_only")
    version = await services(request).archive.freeze_event(org, lang=pick_lang(request))
    return RedirectResponse(synthesis_path(version.slug), status_code=303)


# --- the archive page -----------------------------------------------------------------------


async def archive_page(request: Request) -> HTMLResponse:
    query = request.query_params.get("q", "")[:200]
    found = await services(request).archive.search(query) if query.strip() else None
    entries = await services(request).archive.listing()
    return render(request, "archive.html", entries=entries, query=query, found=found,
                  synthesis_path=synthesis_path)


routes = [
    Route("/api/v1/boards/{join_code}", delete_board, methods=["DELETE"]),
    Route("/api/v1/boards/{join_code}/freeze", freeze, methods=["POST"]),
    Route("/api/v1/boards/{join_code}/reopen", reopen, methods=["POST"]),
    Route("/api/v1/boards/{join_code}/syntheses", list_syntheses, methods=["GET"]),
    Route("/api/v1/boards/{join_code}/anonymise", anonymise, methods=["POST"]),
    Route("/api/v1/import", import_synthesis, methods=["POST"]),
    Route("/api/v1/search", search_api, methods=["GET"]),
    Route("/api/v1/events/{event_id}/synthesis", event_synthesis_api, methods=["GET"]),
    Route("/api/v1/events/{event_id}/synthesis.html", event_synthesis_api, methods=["GET"]),
    Route("/api/v1/events/{event_id}/synthesis.md", event_synthesis_api, methods=["GET"]),
    Route("/api/v1/events/{event_id}/synthesis.json", event_synthesis_api, methods=["GET"]),
    Route("/api/v1/events/{event_id}/freeze", freeze_event_api, methods=["POST"]),
    Route("/s/{name}", permalink),
    Route("/archive", archive_page),
    Route("/e/{event_code}/synthesis", event_synthesis_page),
    Route("/e/{event_code}/freeze", freeze_event_page, methods=["POST"]),
]
