"""The README documents every setting, event type and API route (docs that cannot drift)."""

from __future__ import annotations

from pathlib import Path

from board.events import EVENT_TYPES
from board.settings import Settings
from board.web import api, syntheses

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented() -> None:
    """Each BOARD_* environment variable appears in the README."""
    missing = [f"BOARD_{name.upper()}" for name in Settings.model_fields
               if f"BOARD_{name.upper()}" not in README]
    assert missing == []


def test_every_event_type_is_documented() -> None:
    """Each websocket event type appears in the README."""
    assert [t for t in EVENT_TYPES if f"`{t}`" not in README] == []


def test_every_api_route_is_documented() -> None:
    """Each /api/v1 path appears in the README."""
    missing = [r.path for r in [*api.routes, *syntheses.routes]
               if r.path.startswith("/api/") and r.path not in README]
    assert missing == []
