"""Event visibility and wire format, without I/O."""

from __future__ import annotations

import json

from board.events import Event, for_public, public_card

CARD = {"id": 7, "column_id": 2, "theme_id": None, "text": "Mobilités rurales", "author": "Eli",
        "by_animator": False, "hidden": False, "seq": 3, "created_at": None}


def test_hidden_cards_lose_their_text_for_the_public() -> None:
    """A hidden card is reduced to its id, column and seq for non-animators."""
    assert for_public(Event(1, 3, "card.posted", CARD)) == CARD
    hidden = Event(1, 4, "card.hidden", {**CARD, "hidden": True})
    assert for_public(hidden) == {"id": 7, "column_id": 2, "hidden": True, "seq": 3}
    assert public_card({**CARD, "silent": True}) == {
        "id": 7, "column_id": 2, "silent": True, "seq": 3}


def test_silent_cards_are_redacted_live_and_revealed_on_replay() -> None:
    """Live, a card written in silence carries no text; replayed after the reveal, it does."""
    event = Event(1, 3, "card.posted", {**CARD, "silent": True})
    assert "text" not in for_public(event) and "author" not in for_public(event)
    replayed = for_public(event, frozenset())
    assert replayed["text"] == "Mobilités rurales" and "silent" not in replayed


def test_replayed_posts_of_now_hidden_cards_are_redacted() -> None:
    """Replaying card.posted of a card hidden since then does not leak its text."""
    event = Event(board_id=1, seq=3, type="card.posted", data=CARD)
    assert "text" not in for_public(event, frozenset({7}))
    rename = Event(board_id=1, seq=4, type="column.renamed", data={"id": 2, "title": "X"})
    assert for_public(rename, frozenset({2})) == {"id": 2, "title": "X"}


def test_vote_counts_stay_private_until_results_are_shown() -> None:
    """vote.changed tells the public nothing while results are hidden."""
    hidden = Event(1, 5, "vote.changed", {"card_id": 7, "votes": 4, "results_visible": False})
    shown = Event(1, 6, "vote.changed", {"card_id": 7, "votes": 5, "results_visible": True})
    assert for_public(hidden) == {}
    assert for_public(shown)["votes"] == 5
    merged = Event(1, 7, "card.merged", {"id": 8, "column_id": 2, "into": CARD, "votes": 5})
    assert "votes" not in for_public(merged)
    assert for_public(merged, results_visible=True)["votes"] == 5


def test_hub_messages_are_small_json_and_round_trip() -> None:
    """What crosses the hub is compact JSON (never HTML) and decodes to the same event."""
    event = Event(board_id=1, seq=3, type="card.posted", data=CARD)
    raw = event.to_hub()
    assert json.loads(raw)["data"]["text"] == "Mobilités rurales"
    assert "<" not in raw and len(raw.encode()) < 8000
    assert Event.from_hub(raw) == event
    assert Event.read_hub(raw) == ("", event)
    assert Event.read_hub(event.to_hub(origin="worker-a")) == ("worker-a", event)
