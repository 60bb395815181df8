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
    "card.hidden": "the animator hid a card; data is the card (text only for the animator)",
    "card.restored": "the animator restored a hidden card; data is the card",
    "column.renamed": "a column got a new title; data is {id, title}",
    "board.updated": "board settings changed; data is {phase, locked}",
    "snapshot": "the whole board as the caller may see it (not stored; sent on (re)connect)",
    "presence": "participants connected now, {participants} (ephemeral, seq null)",
}


@dataclass(frozen=True, slots=True)
class Event:
    board_id: int
    seq: int | None
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_hub(self) -> str:
        """Small JSON for the hub (never HTML, well under PostgreSQL NOTIFY's 8000 bytes)."""
        return json.dumps(
            {"b": self.board_id, "seq": self.seq, "type": self.type, "data": self.data},
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_hub(cls, raw: str | bytes) -> Event:
        obj = json.loads(raw)
        return cls(board_id=obj["b"], seq=obj["seq"], type=obj["type"], data=obj["data"])


def public_card(card: dict[str, Any]) -> dict[str, Any]:
    """What participants, projectors and participant API clients see of a card."""
    if not card.get("hidden"):
        return card
    return {"id": card["id"], "column_id": card["column_id"], "hidden": True, "seq": card["seq"]}


def for_public(event: Event, hidden_now: frozenset[int] = frozenset()) -> dict[str, Any]:
    """The event's data as a non-animator may see it; hidden_now redacts replayed posts."""
    data = event.data
    if event.type.startswith("card.") and "text" in data:
        if data.get("hidden") or data["id"] in hidden_now:
            return public_card({**data, "hidden": True})
    return data


def frame(seq: int | None, type_: str, data: dict[str, Any]) -> str:
    return json.dumps(
        {"seq": seq, "type": type_, "data": data}, ensure_ascii=False, separators=(",", ":")
    )
