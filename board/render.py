"""Jinja2 environments (one per language) and the HTML fragments pushed to each audience."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from jinja2 import Environment, FileSystemLoader, select_autoescape

from board import assets, paths
from board.commands import timer_dict
from board.events import Event, for_public
from board.presets import TEMPLATES

LANGS = ("fr", "en")
DEFAULT_LANG = "fr"
VIEWS = ("participant", "projector", "animator", "api")
DEFAULT_TIMEZONE = "Europe/Paris"


@dataclass(frozen=True, slots=True)
class Audience:
    """Who a frame is rendered for; every socket of one audience gets the same bytes."""

    view: str  # participant | projector | animator (HTML) | api (JSON)
    lang: str = ""  # HTML views only
    animator: bool = False  # sees hidden cards

    @property
    def html(self) -> bool:
        return self.view != "api"


def load_translations(lang: str) -> NullTranslations:
    po_path = paths.LOCALES / lang / "LC_MESSAGES" / "messages.po"
    if lang == "en" or not po_path.is_file():
        return NullTranslations()
    with po_path.open("rb") as po_file:
        catalog = read_po(po_file, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(fp=buffer)


def merged_texts(card: Any) -> list[str]:
    """Texts folded into a card, whether it is a table row (JSON text) or an event's dict."""
    raw = card["merged_texts"] if isinstance(card, dict) else getattr(card, "merged_texts", [])
    texts = json.loads(raw) if isinstance(raw, str) else raw
    return [str(t) for t in texts or []]


def when_filter(lang: str, timezone: str) -> Any:
    """An ISO date-time as people read it: "21 novembre 2026 à 14:05" / "21 November 2026…"."""
    try:
        zone: tzinfo = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC

    def when(value: object) -> str:
        if not isinstance(value, str | datetime) or not value:
            return ""
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        pattern = "d MMMM y 'à' HH:mm" if lang == "fr" else "d MMMM y, HH:mm"
        return str(format_datetime(moment.astimezone(zone), pattern, locale=lang))

    return when


def make_environment(lang: str, timezone: str = DEFAULT_TIMEZONE) -> Environment:
    env = Environment(
        loader=FileSystemLoader(paths.TEMPLATES),
        # Markdown exports are not HTML: their own escaping (board.synthesis.md_text) applies.
        autoescape=select_autoescape(default=True, default_for_string=True,
                                     disabled_extensions=("md",)),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    translations = load_translations(lang)
    env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    env.globals.update(
        lang=lang, langs=LANGS, templates=TEMPLATES, board_timer=timer_dict,
        merged_texts=merged_texts, asset=assets.url,
    )
    env.filters["when"] = when_filter(lang, timezone)
    return env


class Renderer:
    def __init__(self, timezone: str = DEFAULT_TIMEZONE) -> None:
        self.envs = {lang: make_environment(lang, timezone) for lang in LANGS}

    def page(self, template: str, lang: str, /, **context: Any) -> str:
        return self.envs[lang].get_template(template).render(**context)

    # --- websocket frames -------------------------------------------------------------
    # A frame is {"seq", "type", "data"} for API clients, {"seq", "type", "content"} (HTML
    # partials that hx-ws swaps in) for pages. Each is built once per audience.

    def frame(self, event: Event, audience: Audience, code: str, st: dict[str, Any],
              invisible_now: frozenset[int] | None = None) -> str:
        """One event for one audience; ``st`` holds the board's settings as of this event."""
        data = event.data if audience.animator else for_public(
            event, invisible_now, results_visible=bool(st.get("results_visible")))
        return self._frame(event.seq, event.type, audience, data, code=code, st=st)

    def snapshot_frame(self, board_view: Any, audience: Audience) -> str:
        board = board_view.board
        data = board_view.to_dict() if not audience.html else {}
        return self._frame(board.seq, "snapshot", audience, data, bv=board_view,
                           code=board.join_code, st=board)

    def presence_frame(self, count: int, audience: Audience) -> str:
        return self._frame(None, "presence", audience, {"participants": count}, code="",
                           st={})

    def _frame(self, seq: int | None, type_: str, audience: Audience, data: dict[str, Any],
               **context: Any) -> str:
        body: dict[str, Any] = {"seq": seq, "type": type_}
        if audience.html:
            body["content"] = self.envs[audience.lang].get_template(
                "partials/_push.html").render(view=audience.view, type=type_, data=data,
                                              **context)
        else:
            body["data"] = data
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
