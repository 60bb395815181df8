"""Event visibility and wire format, without I/O."""

from __future__ import annotations

import json

from board.events import Event, for_public, public_card

CARD = {"id": 7, "column_id": 2, "text": "Mobilités rurales", "author": "Eli",
        "by_animator": False, "hidden": False, "seq": 3, "created_at": None}


def test_hidden_cards_lose_their_text_for_the_public() -> None:
    """A hidden card is reduced to its id, column and seq for non-animators."""
    assert public_card(CARD) == CARD
    assert public_card({**CARD, "hidden": True}) == {
        "id": 7, "column_id": 2, "hidden": True, "seq": 3}


def test_replayed_posts_of_now_hidden_cards_are_redacted() -> None:
    """Replaying card.posted of a card hidden since then does not leak its text."""
    event = Event(board_id=1, seq=3, type="card.posted", data=CARD)
    assert for_public(event) == CARD
    assert "text" not in for_public(event, frozenset({7}))
    rename = Event(board_id=1, seq=4, type="column.renamed", data={"id": 2, "title": "X"})
    assert for_public(rename, frozenset({2})) == {"id": 2, "title": "X"}


def test_hub_messages_are_small_json_and_round_trip() -> None:
    """What crosses the hub is compact JSON (never HTML) and decodes to the same event."""
    event = Event(board_id=1, seq=3, type="card.posted", data=CARD)
    raw = event.to_hub()
    assert json.loads(raw)["data"]["text"] == "Mobilités rurales"
    assert "<" not in raw and len(raw.encode()) < 8000
    assert Event.from_hub(raw) == event
