"""Pure board rules: no I/O. Each check returns the cleaned value or raises RuleViolation."""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Sequence

from board.errors import RuleViolation
from board.presets import BY_ID, FREE

PHASES = ("preparation", "collecte", "regroupement", "vote", "restitution")
POSTING_PHASE = "collecte"
MAX_COLUMNS = 8
MAX_TITLE = 120
MAX_QUESTION = 500
MAX_COLUMN_TITLE = 60

# No 0/O, 1/I/L, 5/S, 2/Z: codes are read from a projector and typed on phones.
JOIN_ALPHABET = "ABCDEFGHJKMNPQRTUVWXY346789"
JOIN_LENGTH = 6


def new_join_code() -> str:
    return "".join(secrets.choice(JOIN_ALPHABET) for _ in range(JOIN_LENGTH))


def normalize_join_code(raw: str) -> str:
    """Accept what people type: lower case, spaces, dashes."""
    return "".join(ch for ch in raw.upper() if ch.isalnum())[:32]


def clean_text(text: object, *, limit: int, field: str = "text") -> str:
    """Trim a card text; refuse empty or over-long text (length counted after trimming)."""
    if not isinstance(text, str):
        raise RuleViolation("invalid_field", field=field)
    cleaned = unicodedata.normalize("NFC", text).strip()
    cleaned = "".join(ch for ch in cleaned if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    if not cleaned:
        raise RuleViolation("empty_text")
    if len(cleaned) > limit:
        raise RuleViolation("text_too_long", length=len(cleaned), limit=limit)
    return cleaned


def clean_line(value: object, *, field: str, limit: int, required: bool = False) -> str:
    """A one-line field (title, pseudonym, column title): whitespace folded."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise RuleViolation("invalid_field", field=field)
    cleaned = " ".join(unicodedata.normalize("NFC", value).split())
    if required and not cleaned:
        raise RuleViolation("title_required" if field == "title" else "invalid_field", field=field)
    if len(cleaned) > limit:
        raise RuleViolation("field_too_long", field=field, length=len(cleaned), limit=limit)
    return cleaned


def board_columns(template: object, columns: object) -> tuple[str, list[str]]:
    """Resolve a template id or a free list of column titles into (template id, titles)."""
    if template not in (None, "", FREE):
        if not isinstance(template, str) or template not in BY_ID:
            raise RuleViolation("unknown_template", template=str(template)[:40])
        return template, list(BY_ID[template].columns)
    if columns is None:
        columns = ["Idées"]
    if not isinstance(columns, Sequence) or isinstance(columns, str):
        raise RuleViolation("invalid_field", field="columns")
    titles = [clean_line(c, field="columns", limit=MAX_COLUMN_TITLE) for c in columns]
    titles = [t for t in titles if t]
    if not 1 <= len(titles) <= MAX_COLUMNS:
        raise RuleViolation("bad_columns", limit=MAX_COLUMNS)
    return FREE, titles


def check_phase(phase: object) -> str:
    if phase not in PHASES:
        raise RuleViolation("bad_phase", phase=str(phase)[:40])
    return str(phase)


def check_can_post(*, phase: str, locked: bool, is_animator: bool) -> None:
    """Participants post during 'collecte' while unlocked; the animator may always add."""
    if is_animator:
        return
    if phase != POSTING_PHASE:
        raise RuleViolation("board_closed", phase=phase)
    if locked:
        raise RuleViolation("board_locked")
