"""Board events: what the log stores, the hub carries and the websocket sends.

A frame on the wire is ``{"seq": int | null, "type": str, "data": {...}}``. Events with a seq
are stored in ``board_event`` in the same transaction as the change they describe; ``seq`` is
strictly increasing per board, so a client that remembers the last seq it saw can ask for
exactly what it missed. Frames with ``"seq": null`` are ephemeral (presence) and never replayed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# type -> what `data` holds. The README documents each; tests/unit/test_docs.py checks it.
EVENT_TYPES: dict[str, str] = {
    "card.posted": "a card was posted; data is the card",
    "card.updated": "the animator edited or moved a card (column, theme); data is the card",
    "card.hidden": "the animator hid a card; data is the card (text only for the animator)",
    "card.restored": "the animator restored a hidden card; data is the card",
    "card.deleted": "the animator deleted a card; data is {id, column_id}",
    "card.merged": "a duplicate was folded into another card; data is {id, column_id, into}",
    "column.renamed": "a column got a new title; data is {id, title}",
    "theme.created": "a theme was created in a column; data is {id, column_id, title}",
    "theme.updated": "a theme was renamed; data is {id, column_id, title}",
    "theme.deleted": "a theme was removed, its cards stay unthemed; data is {id, column_id}",
    "board.updated": "board settings changed; data is the settings",
    "board.frozen": "the animator froze the board into a synthesis; data is the settings plus "
                    "{version, hash, url} (the version's permalink path)",
    "board.reopened": "the animator reopened a frozen board; data is the settings",
    "vote.changed": "a dot was put or taken back; data is {card_id|theme_id, votes}",
    "timer.updated": "the timer started, paused or changed; data is {running, remaining, "
                     "ends_at}",
    "snapshot": "the whole board as the caller may see it (not stored; sent on (re)connect)",
    "presence": "participants connected now, {participants} (ephemeral, seq null)",
}

CARD_EVENTS = frozenset({"card.posted", "card.updated", "card.hidden", "card.restored"})
# Events whose data is the board's settings (plus their own fields).
SETTINGS_EVENTS = frozenset({"board.updated", "board.frozen", "board.reopened"})


@dataclass(frozen=True, slots=True)
class Event:
    board_id: int
    seq: int | None
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_hub(self, origin: str = "") -> str:
        """Small JSON for the hub (never HTML, well under PostgreSQL NOTIFY's 8000 bytes);
        ``origin`` names the worker that sent it, so that it can skip its own echo."""
        message: dict[str, Any] = {"b": self.board_id, "seq": self.seq, "type": self.type,
                                   "data": self.data}
        if origin:
            message["o"] = origin
        return json.dumps(message, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_hub(cls, raw: str | bytes) -> Event:
        return cls.read_hub(raw)[1]

    @classmethod
    def read_hub(cls, raw: str | bytes) -> tuple[str, Event]:
        """The sending worker's id ("" if none) and the event; ValueError, KeyError or
        TypeError when the message is not one."""
        obj = json.loads(raw)
        event = cls(board_id=int(obj["b"]), seq=obj["seq"], type=str(obj["type"]),
                    data=obj.get("data") or {})
        return str(obj.get("o") or ""), event


def public_card(card: dict[str, Any]) -> dict[str, Any]:
    """A card a non-animator may not read: only where it is, never what it says."""
    flag = "silent" if card.get("silent") and not card.get("hidden") else "hidden"
    return {"id": card["id"], "column_id": card["column_id"], flag: True, "seq": card["seq"]}


def for_public(event: Event, invisible_now: frozenset[int] | None = None, *,
               results_visible: bool = False) -> dict[str, Any]:
    """The event's data as a non-animator may see it.

    Live, the event's own flags decide (hidden, silent writing, results not shown). On a
    replay, ``invisible_now`` (cards this viewer cannot see today) decides instead, so a card
    hidden since is not replayed and one revealed since is.
    """
    data = event.data
    if event.type in CARD_EVENTS:
        return _card_for_public(data, invisible_now, results_visible)
    if event.type == "card.merged":
        shown = {k: v for k, v in data.items() if k != "votes" or results_visible}
        shown["into"] = _card_for_public(data["into"], invisible_now, results_visible)
        return shown
    if event.type == "vote.changed" and not data.get("results_visible"):
        return {}
    return data


def _card_for_public(card: dict[str, Any], invisible_now: frozenset[int] | None,
                     results_visible: bool) -> dict[str, Any]:
    if invisible_now is not None:
        if card["id"] in invisible_now:
            return public_card({**card, "hidden": True})
        card = {k: v for k, v in card.items() if k != "silent"}
    elif card.get("hidden") or card.get("silent"):
        return public_card(card)
    if "votes" in card and not results_visible:
        card = {k: v for k, v in card.items() if k != "votes"}
    return card
