from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Every setting is (name, default, help): the README table is checked against this class by
# tests/unit/test_docs.py, so a new setting cannot go undocumented.


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOARD_", extra="ignore")

    database_url: str = Field(
        "sqlite:///board.db",
        description="Where boards are stored: sqlite:///path.db or postgresql://user:pw@host/db",
    )
    db_busy_timeout: float = Field(
        5.0, description="Seconds a write waits for a locked SQLite file (or a PostgreSQL lock) "
        "before a retryable 503"
    )
    pubsub_url: str | None = Field(
        None, description="Pub/sub between workers: redis://host:6379/0, or postgresql://… "
        "(LISTEN/NOTIFY). Unset: in memory, one worker (with --workers > 1 on PostgreSQL, the "
        "database itself is used)",
    )
    rate_limits_url: str | None = Field(
        None, description="Where rate-limit counters live: redis://… shares them between "
        "workers (default: BOARD_PUBSUB_URL when it is Redis, else in each worker's memory)",
    )
    workers: int = Field(
        1, description="Worker processes `board serve` starts (more than one needs PostgreSQL "
        "or BOARD_PUBSUB_URL; migrations run once, before the workers start)",
    )
    host: str = Field("0.0.0.0", description="Interface `board serve` listens on")
    port: int = Field(8000, description="Port `board serve` listens on")
    public_url: str | None = Field(
        None,
        description="Base URL for links and QR codes, e.g. behind a proxy (default: the address "
        "the page was opened with)",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Extra origins allowed to open websockets and post forms (same host always is)",
    )
    max_card_length: int = Field(500, description="Longest card text, in characters")
    max_name_length: int = Field(40, description="Longest participant pseudonym")
    max_body_bytes: int = Field(65536, description="Largest HTTP request body accepted")
    max_import_bytes: int = Field(
        10_000_000, description="Largest synthesis JSON accepted by POST /api/v1/import"
    )
    retention_days: int | None = Field(
        None, description="Days after a board is frozen before its pseudonyms are deleted "
        "(anonymised); unset keeps them until the animator anonymises or deletes the board"
    )
    timezone: str = Field(
        "Europe/Paris", description="Time zone of the dates shown in syntheses and exports"
    )
    ws_max_frame_bytes: int = Field(
        65536, description="Largest websocket frame accepted (bigger: closed with 1009)"
    )
    ws_queue_size: int = Field(
        512, description="Frames queued per socket before a slow client is cut off (it resyncs)"
    )
    ws_send_timeout: float = Field(
        20.0, description="Seconds one frame may take to leave; a socket slower than that "
        "(a peer that stopped reading) is dropped and catches up when it reconnects"
    )
    snapshot_after: int = Field(
        1000, description="A reconnect missing more events than this gets a snapshot instead"
    )
    presence_interval: float = Field(
        1.0, description="Seconds between presence-count broadcasts (changes are coalesced)"
    )
    secure_cookies: bool = Field(False, description="Mark cookies Secure (set when behind HTTPS)")
    rate_posts_per_participant: str = Field(
        "30/minute", description="Cards one participant may post (limits syntax: N/second|minute)"
    )
    rate_posts_per_ip: str = Field("600/minute", description="Cards posted from one IP address")
    rate_joins_per_ip: str = Field("120/minute", description="Joins (new participants) per IP")
    rate_code_misses_per_ip: str = Field(
        "30/minute", description="Unknown join codes tried per IP (code guessing)"
    )
    rate_ws_messages: str = Field("60/minute", description="Messages one websocket may send")
    max_ws_per_ip: int = Field(1000, description="Open websockets per IP address")

    def pubsub(self) -> str | None:
        """The pub/sub engine in use: the setting, else the PostgreSQL database when several
        workers share it, else none (in memory)."""
        if self.pubsub_url:
            return self.pubsub_url
        if self.workers > 1 and self.database_url.startswith(("postgresql", "postgres:")):
            return self.database_url
        return None

    def shared_limits(self) -> str | None:
        """The Redis URL rate limits are counted in, if any."""
        if self.rate_limits_url:
            return self.rate_limits_url
        url = self.pubsub()
        return url if url and url.startswith(("redis://", "rediss://")) else None
