"""Secrets, cookies, Origin checks and security headers."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


def new_secret() -> str:
    """192 random bits, URL-safe: unguessable animator and participant tokens."""
    return secrets.token_urlsafe(24)


def hash_secret(secret: str) -> str:
    # Tokens carry 192 bits of entropy, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def participant_cookie(join_code: str) -> str:
    return f"ab_p_{join_code}"


def animator_cookie(join_code: str) -> str:
    return f"ab_a_{join_code}"


def organiser_cookie(event_code: str) -> str:
    return f"ab_o_{event_code}"


def bearer_token(headers: Headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def origin_allowed(headers: Headers, allowed: list[str]) -> bool:
    """No Origin (a script, not a browser) is fine; a browser must come from this host.

    Under `Referrer-Policy: no-referrer` browsers send `Origin: null` on form posts, even
    same-origin ones; Fetch Metadata (`Sec-Fetch-Site`) then tells where the post came from.
    """
    origin = headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return headers.get("sec-fetch-site") == "same-origin"
    if origin in allowed:
        return True
    host = headers.get("host", "")
    return urlsplit(origin).netloc.lower() == host.lower() and bool(host)


class SecurityHeaders:
    """Adds CSP and friends to every HTTP response (pure ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Refuses request bodies over the limit, declared or streamed, with a clear 413."""

    def __init__(self, app: ASGIApp, limit: int, overrides: dict[str, int] | None = None
                 ) -> None:
        self.app = app
        self.limit = limit
        self.overrides = overrides or {}  # path -> its own limit (a synthesis import)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from board.errors import RuleViolation

        limit = self.overrides.get(scope.get("path", ""), self.limit)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, send, limit)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise RuleViolation("body_too_large", limit=limit)
            return message

        await self.app(scope, counting_receive, send)

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        import json

        from board.errors import RuleViolation

        error = RuleViolation("body_too_large", limit=limit)
        body = json.dumps({"error": error.to_dict()}, ensure_ascii=False).encode()
        await send({
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")],
        })
        await send({"type": "http.response.body", "body": body})
