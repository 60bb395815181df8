"""Syntheses: what freezing a board produces, and every export of it. No I/O here.

A synthesis is a dict (the *content*) stored as canonical JSON; its SHA-256 is the version's
hash. Every export (HTML, Markdown, CSV, JSON, PDF) is derived from the content alone, the same
way each time, so a version's permalinks serve the same bytes for as long as it exists.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from markdown_it import MarkdownIt

from board import domain
from board.commands import as_utc
from board.errors import RuleViolation
from board.presets import BY_ID
from board.search import WORD, fold, stems

FORMAT = "atelier-board.synthesis"
EVENT_FORMAT = "atelier-board.event-synthesis"
FORMAT_VERSION = 1
MAX_NOTES = 5000
MAX_CONCLUSION = 10000
TOP_ITEMS = 3

# --- content --------------------------------------------------------------------------------


def canonical(content: dict[str, Any]) -> str:
    """The stored, hashed form: keys sorted, no spaces, UTF-8 text as is."""
    return json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def content_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(content).encode()).hexdigest()


def board_content(*, view: Any, version: int, frozen_at: datetime, lang: str,
                  participants: int, notes: dict[int, str], conclusion: str,
                  event_title: str | None) -> dict[str, Any]:
    """A board (as its animator sees it, hidden cards left out) frozen into a synthesis."""
    board = view.board
    cards = [c for c in view.cards if not c.hidden]

    def card(c: Any) -> dict[str, Any]:
        return {"id": c.id, "text": c.text, "merged_texts": json.loads(c.merged_texts or "[]"),
                "author": c.author, "by_animator": c.by_animator,
                "votes": view.card_votes[c.id or 0],
                "created_at": _iso(c.created_at)}

    columns = []
    for column in view.columns:
        themes = [{"id": t.id, "title": t.title, "votes": view.theme_votes[t.id or 0],
                   "cards": [card(c) for c in cards
                             if c.column_id == column.id and c.theme_id == t.id]}
                  for t in view.themes_of(column.id)]
        columns.append({
            "id": column.id, "title": column.title, "notes": notes.get(column.id or 0, ""),
            "themes": themes,
            "cards": [card(c) for c in cards if c.column_id == column.id and c.theme_id is None],
        })
    authors = {c.author_key for c in cards if not c.by_animator}
    preset = BY_ID.get(board.template)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": version,
        "lang": lang,
        "frozen_at": _iso(frozen_at),
        "board": {
            "title": board.title, "question": board.question, "template": board.template,
            "template_title": preset.title if preset else "",
            "anonymous": board.anonymous, "created_at": _iso(board.created_at),
            "slot": board.slot, "room": board.room, "animator_name": board.animator_name,
            "event": event_title,
        },
        "participants": participants,
        "contributors": len(authors),
        "cards_count": len(cards),
        "vote_budget": board.vote_budget,
        "votes_total": sum(view.card_votes.values()) + sum(view.theme_votes.values()),
        "columns": columns,
        "ranking": [{"kind": item["kind"], "id": item["id"], "text": item["text"],
                     "column": item["column"], "votes": item["votes"]}
                    for item in view.ranking()[:10]],
        "conclusion": conclusion,
        "anonymised": None,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else as_utc(moment).isoformat(timespec="seconds")


def clean_notes(raw: object, column_ids: Iterable[int]) -> dict[int, str]:
    """{column id (JSON key or int): markdown} for columns of this board."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RuleViolation("invalid_field", field="notes")
    known = set(column_ids)
    notes: dict[int, str] = {}
    for key, value in raw.items():
        column_id = domain.parse_id(key)
        if column_id is None or column_id not in known:
            raise RuleViolation("unknown_column")
        notes[column_id] = clean_markdown(value, field="notes", limit=MAX_NOTES)
    return notes


def clean_markdown(value: object, *, field: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RuleViolation("invalid_field", field=field)
    cleaned = domain.multiline(value)
    if len(cleaned) > limit:
        raise RuleViolation("field_too_long", field=field, length=len(cleaned), limit=limit)
    return cleaned


def anonymised(content: dict[str, Any], *, at: datetime, previous_hash: str
               ) -> dict[str, Any]:
    """The same synthesis without pseudonyms, recording when and what it replaced."""
    out: dict[str, Any] = json.loads(json.dumps(content))
    for column in out.get("columns", []):
        for card in _column_cards(column):
            card["author"] = None
    out["board"]["anonymous"] = True
    out["anonymised"] = {"at": _iso(at), "previous_hash": previous_hash}
    return out


def has_pseudonyms(content: dict[str, Any]) -> bool:
    return any(card.get("author") for column in content.get("columns", [])
               for card in _column_cards(column))


def _column_cards(column: dict[str, Any]) -> list[dict[str, Any]]:
    cards = list(column.get("cards", []))
    for theme in column.get("themes", []):
        cards.extend(theme.get("cards", []))
    return cards


def search_docs(content: dict[str, Any]) -> list[dict[str, Any]]:
    """What full-text search indexes of one synthesis: cards, themes, notes, conclusion."""
    title = content["board"]["title"]
    docs: list[dict[str, Any]] = []

    def add(kind: str, anchor: str, column: str, text: str) -> None:
        if text.strip():
            docs.append({"kind": kind, "anchor": anchor, "board_title": title,
                         "column": column, "text": text, "stems": stems(text)})

    for column in content["columns"]:
        add("note", f"col-{column['id']}", column["title"], plain_text(column["notes"]))
        for theme in column["themes"]:
            add("theme", f"theme-{theme['id']}", column["title"], theme["title"])
        for card in _column_cards(column):
            add("card", f"card-{card['id']}", column["title"],
                "\n".join([card["text"], *card["merged_texts"]]))
    add("conclusion", "conclusion", "", plain_text(content["conclusion"]))
    return docs


# --- import ---------------------------------------------------------------------------------


def parse_import(data: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A synthesis JSON export, checked: its format, and its hash against its content."""
    content = {k: v for k, v in data.items() if k != "hash"}
    claimed = data.get("hash")
    if content.get("format") != FORMAT or content.get("format_version") != FORMAT_VERSION:
        raise RuleViolation("bad_import", reason="format")
    if not isinstance(claimed, str) or content_hash(content) != claimed:
        raise RuleViolation("bad_import", reason="hash")
    try:
        _check_shape(content)
    except (KeyError, TypeError, ValueError) as exc:
        raise RuleViolation("bad_import", reason="shape") from exc
    return content, claimed


def _check_shape(content: dict[str, Any]) -> None:
    board = content["board"]
    for key in ("title", "question", "template", "slot", "room", "animator_name"):
        if not isinstance(board[key], str):
            raise TypeError(key)
    if not isinstance(content["version"], int) or content["version"] < 1:
        raise ValueError("version")
    datetime.fromisoformat(content["frozen_at"])
    if not isinstance(content["columns"], list) or not content["columns"]:
        raise ValueError("columns")
    for column in content["columns"]:
        for key in ("title", "notes"):
            if not isinstance(column[key], str):
                raise TypeError(key)
        for theme in column["themes"]:
            if not isinstance(theme["title"], str) or not isinstance(theme["votes"], int):
                raise TypeError("theme")
        for card in _column_cards(column):
            if not isinstance(card["text"], str) or not isinstance(card["votes"], int):
                raise TypeError("card")
            if not all(isinstance(t, str) for t in card["merged_texts"]):
                raise TypeError("merged_texts")
    if not isinstance(content["conclusion"], str):
        raise TypeError("conclusion")
    if _holds_nul(content):
        # No text of ours ever has one (cleaning drops control characters), and PostgreSQL
        # cannot store it: an export with one was edited.
        raise ValueError("NUL character")


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


# --- the cross-atelier synthesis of an event -----------------------------------------------


def event_content(*, title: str, code: str, lang: str, at: datetime, version: int | None,
                  ateliers: list[tuple[dict[str, Any], str]],
                  pending: list[dict[str, str]]) -> dict[str, Any]:
    """Every frozen atelier of an event, side by side and regrouped by column title.

    ``ateliers`` holds (latest synthesis content, its permalink path) for each atelier."""
    entries = []
    groups: dict[str, dict[str, Any]] = {}
    for content, path in ateliers:
        board = content["board"]
        columns = []
        for column in content["columns"]:
            items = [{"kind": "theme", "text": t["title"], "votes": t["votes"],
                      "url": f"{path}#theme-{t['id']}",
                      "cards": [_event_card(c, path) for c in t["cards"]]}
                     for t in column["themes"]]
            items += [{"kind": "card", **_event_card(c, path), "cards": []}
                      for c in column["cards"]]
            items.sort(key=lambda item: -item["votes"])
            columns.append({"title": column["title"], "notes": column["notes"],
                            "items": items})
            key = fold_title(column["title"])
            group = groups.setdefault(key, {"title": column["title"], "ateliers": []})
            group["ateliers"].append({"atelier": board["title"], "url": path,
                                      "notes": column["notes"], "items": items})
        entries.append({
            "title": board["title"], "question": board["question"],
            "template_title": board["template_title"], "slot": board["slot"],
            "room": board["room"], "animator_name": board["animator_name"],
            "version": content["version"], "hash": content_hash(content),
            "frozen_at": content["frozen_at"], "url": path,
            "participants": content["participants"], "cards_count": content["cards_count"],
            "top": _top(content, path), "columns": columns,
            "conclusion": content["conclusion"],
        })
    return {
        "format": EVENT_FORMAT,
        "format_version": FORMAT_VERSION,
        "event": {"title": title, "code": code},
        "lang": lang,
        "version": version,
        "at": _iso(at),
        "ateliers": entries,
        "by_column": list(groups.values()),
        "pending": pending,
        "redactions": [],
    }


def _event_card(card: dict[str, Any], path: str) -> dict[str, Any]:
    return {"text": card["text"], "merged_texts": card["merged_texts"],
            "votes": card["votes"], "url": f"{path}#card-{card['id']}"}


def _top(content: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """The atelier's most-voted themes (cards when it grouped nothing); by size if no votes."""
    themes = [(t, column["title"]) for column in content["columns"] for t in column["themes"]]
    if themes:
        ranked = sorted(themes, key=lambda tc: (-tc[0]["votes"], -len(tc[0]["cards"])))
        return [{"text": t["title"], "votes": t["votes"], "column": col,
                 "url": f"{path}#theme-{t['id']}"} for t, col in ranked[:TOP_ITEMS]]
    cards = [(c, column["title"]) for column in content["columns"] for c in column["cards"]]
    ranked_cards = sorted((cc for cc in cards if cc[0]["votes"]), key=lambda cc: -cc[0]["votes"])
    return [{"text": c["text"], "votes": c["votes"], "column": col,
             "url": f"{path}#card-{c['id']}"} for c, col in ranked_cards[:TOP_ITEMS]]


def fold_title(title: str) -> str:
    """Column titles that name the same thing across ateliers: 'Constats' = 'constat'."""
    words = " ".join(WORD.findall(fold(title)))
    return words[:-1] if words.endswith("s") else words


def without_atelier(content: dict[str, Any], paths: set[str], *, at: datetime,
                    previous_hash: str) -> dict[str, Any]:
    """An event synthesis with a (deleted) atelier taken out, recording the change; ``paths``
    are the permalinks of the atelier's versions."""
    out: dict[str, Any] = json.loads(json.dumps(content))
    out["ateliers"] = [a for a in out["ateliers"] if a["url"] not in paths]
    for group in out["by_column"]:
        group["ateliers"] = [a for a in group["ateliers"] if a["url"] not in paths]
    out["by_column"] = [g for g in out["by_column"] if g["ateliers"]]
    out["redactions"].append({"at": _iso(at), "previous_hash": previous_hash,
                              "reason": "atelier_deleted"})
    return out


# --- exports --------------------------------------------------------------------------------

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_markdown.disable(["image", "html_block", "html_inline"])


def notes_html(text: str) -> str:
    """An animator's Markdown as HTML: raw HTML is shown as text, images are not loaded."""
    return str(_markdown.render(text or ""))


def plain_text(markdown: str) -> str:
    """An animator's Markdown as the words a reader sees (for search results)."""
    without_tags = re.sub(r"<[^>]+>", " ", notes_html(markdown))
    return " ".join(html.unescape(without_tags).split())


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#|~!&])")
_LEADING_SPACE = re.compile(r"^[ \t]+", re.MULTILINE)
_MD_LINE_START = re.compile(r"^(\s*)(?:([-+=>])|(\d+)([.)]))", re.MULTILINE)


def _escape_line_start(match: re.Match[str]) -> str:
    indent, mark, number, delimiter = match.groups()
    if mark:
        return f"{indent}\\{mark}"  # "- item", "+ item", "===", "> quote"
    return f"{indent}{number}\\{delimiter}"  # "1. item": the delimiter is what counts


def md_text(text: str) -> str:
    """Participants' words as Markdown text: no character of theirs can become markup."""
    escaped = _MD_SPECIAL.sub(r"\\\1", text)
    escaped = _LEADING_SPACE.sub("", escaped)  # four spaces would start a code block
    escaped = _MD_LINE_START.sub(_escape_line_start, escaped)
    return escaped.replace("\n", "\\\n")


def md_notes(text: str) -> str:
    """An animator's notes are Markdown already; raw HTML and images are neutralised (a
    Markdown viewer would load an image from anywhere)."""
    return text.replace("<", "\\<").replace("&", "\\&").replace("![", "!\\[")


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CSV_FIELDS = ("column", "theme", "text", "votes", "merged_texts", "author", "card_id")


def csv_cell(value: object) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula (=, +, -, @ …)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def to_csv(content: dict[str, Any]) -> str:
    """One row per card kept in the synthesis (hidden cards never are)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_FIELDS)
    for column in content["columns"]:
        rows = [(theme["title"], card) for theme in column["themes"] for card in theme["cards"]]
        rows += [("", card) for card in column["cards"]]
        for theme_title, card in rows:
            writer.writerow([csv_cell(v) for v in (
                column["title"], theme_title, card["text"], card["votes"],
                " | ".join(card["merged_texts"]), card["author"] or "", card["id"])])
    return out.getvalue()


def to_json(content: dict[str, Any], hash_: str) -> str:
    """The complete synthesis, re-importable with `board import` (hash checked)."""
    return json.dumps({**content, "hash": hash_}, ensure_ascii=False, indent=2) + "\n"


def filename(content: dict[str, Any], ext: str) -> str:
    """e.g. 2026-11-21-mobilites-rurales-synthese-v2.md (ASCII, safe everywhere)."""
    if content.get("format") == EVENT_FORMAT:
        title, stamp = content["event"]["title"], content["at"] or ""
        suffix = f"synthese-evenement-v{content['version']}" if content["version"] else (
            "synthese-evenement")
    else:
        title, stamp = content["board"]["title"], content["frozen_at"] or ""
        suffix = f"synthese-v{content['version']}"
    decomposed = unicodedata.normalize("NFKD", title)
    ascii_title = decomposed.encode("ascii", "ignore").decode().lower()
    slug = "-".join(re.findall(r"[a-z0-9]+", ascii_title))[:60].strip("-") or "atelier"
    return f"{stamp[:10]}-{slug}-{suffix}.{ext}".lstrip("-")
