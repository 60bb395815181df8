"""Pure board rules: no I/O. Each check returns the cleaned value or raises RuleViolation."""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Sequence
from typing import TypeGuard

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


MAX_ID = 2**31 - 1


def parse_id(value: object) -> int | None:
    """A non-negative integer id (JSON number or ASCII digits) within the database's range."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID:
        return value
    return None


def new_join_code() -> str:
    return "".join(secrets.choice(JOIN_ALPHABET) for _ in range(JOIN_LENGTH))


def normalize_join_code(raw: str) -> str:
    """Accept what people type: lower case, spaces, dashes."""
    return "".join(ch for ch in raw.upper() if ch.isalnum())[:32]


def multiline(text: str) -> str:
    """Text of several lines as stored: control characters dropped (line breaks and tabs
    kept), NFC, trimmed."""
    kept = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    return unicodedata.normalize("NFC", kept).strip()


def clean_text(text: object, *, limit: int, field: str = "text") -> str:
    """Trim a card text; refuse empty or over-long text (length counted after trimming)."""
    if not isinstance(text, str):
        raise RuleViolation("invalid_field", field=field)
    cleaned = multiline(text)
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
    printable = "".join(ch for ch in value if ch.isspace() or unicodedata.category(ch) != "Cc")
    cleaned = " ".join(unicodedata.normalize("NFC", printable).split())
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


# --- facilitation: settings, silent writing, votes, timer ---------------------------------

SETTING_KEYS = ("phase", "silent", "locked", "vote_budget", "max_votes_per_item",
                "results_visible")
MAX_VOTE_BUDGET = 20
MAX_THEME_TITLE = 80
MAX_TIMER_SECONDS = 3 * 60 * 60
VOTE_PHASE = "vote"


def check_settings(changes: dict[str, object]) -> dict[str, object]:
    """Validate a PATCH of board settings; returns the cleaned changes."""
    unknown = sorted(set(changes) - set(SETTING_KEYS))
    if unknown:
        raise RuleViolation("invalid_field", field=unknown[0])
    clean: dict[str, object] = {}
    for key, value in changes.items():
        if key == "phase":
            clean[key] = check_phase(value)
        elif key in ("silent", "locked", "results_visible"):
            if not isinstance(value, bool):
                raise RuleViolation("invalid_field", field=key)
            clean[key] = value
        elif key == "vote_budget":
            if not _is_int(value) or not 1 <= value <= MAX_VOTE_BUDGET:
                raise RuleViolation("bad_budget", limit=MAX_VOTE_BUDGET)
            clean[key] = value
        elif key == "max_votes_per_item":
            if value is not None and (not _is_int(value) or not 1 <= value <= MAX_VOTE_BUDGET):
                raise RuleViolation("invalid_field", field=key)
            clean[key] = value
    return clean


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def card_visible(*, hidden: bool, deleted: bool, merged: bool, own: bool, silent: bool,
                 is_animator: bool) -> bool:
    """Whether one viewer sees one card. Silent writing: participants see only their own."""
    if deleted or merged:
        return False
    if is_animator:
        return True
    if hidden:
        return False
    return own or not silent


def check_vote(*, phase: str, budget: int, max_per_item: int | None, my_votes: int,
               my_votes_on_item: int) -> int:
    """Whether one more dot may go on an item; returns the dots left after it."""
    if phase != VOTE_PHASE:
        raise RuleViolation("not_voting", phase=phase)
    if my_votes >= budget:
        raise RuleViolation("vote_budget_spent", budget=budget)
    if max_per_item is not None and my_votes_on_item >= max_per_item:
        raise RuleViolation("vote_item_limit", limit=max_per_item)
    return budget - my_votes - 1


def check_unvote(*, phase: str, my_votes_on_item: int) -> None:
    if phase != VOTE_PHASE:
        raise RuleViolation("not_voting", phase=phase)
    if my_votes_on_item <= 0:
        raise RuleViolation("no_vote_to_remove")


def timer_state(*, action: object, seconds: object, running: bool, remaining: float,
                ) -> tuple[bool, float]:
    """Next (running, seconds remaining) of the atelier timer after an animator action."""
    if action not in ("start", "pause", "add", "reset"):
        raise RuleViolation("invalid_field", field="action")
    if seconds is not None and not (_is_int(seconds) and 0 < seconds <= MAX_TIMER_SECONDS):
        raise RuleViolation("invalid_field", field="seconds")
    step = float(seconds) if seconds is not None else None
    if action == "start":
        return True, step if step is not None else (remaining or 300.0)
    if action == "pause":
        return False, remaining
    if action == "add":
        return running, min(remaining + (step or 60.0), float(MAX_TIMER_SECONDS))
    return False, 0.0
