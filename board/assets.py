"""Static files with content-hashed URLs, per-page script bundles and precompressed bodies.

At start the board reads every file under static/ (vendor/ included, which `npm ci` fills),
builds one script bundle per kind of page by concatenating files in a fixed order, and gzips
everything once. Templates ask for `asset("board.css")` and get `/static/board.<hash>.css`:
that URL never changes meaning, so it is served with a one-year `immutable` cache. The plain
URLs (`/static/board.css`) keep working for old pages and links, with `no-cache` and an ETag
(a revalidation costs a 304). Third-party code is never committed: bundles exist in memory only.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from board import paths

HASH_LENGTH = 12  # hex digits of the content's SHA-256 in a hashed file name
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"  # plain URLs: may be kept, but asked again (ETag → 304) before use

_BASE = ("vendor/htmx.min.js", "vendor/hx-ws.min.js", "vendor/hx-upsert.min.js", "board.js")
# One script per kind of page, concatenated in this order: htmx first, then its extensions
# (registered before htmx starts on its timer once parsing ends), then our own scripts.
BUNDLES: dict[str, tuple[str, ...]] = {
    "base": _BASE,
    "participant": (*_BASE, "outbox.js"),
    "projector": (*_BASE, "projector.js"),
    "animator": (*_BASE, "vendor/Sortable.min.js", "animator.js", "outbox.js"),
}
_HASHED = re.compile(rf"^(?P<stem>.+)\.[0-9a-f]{{{HASH_LENGTH}}}(?P<suffix>\.[^./]+)?$")
_TEXT = ("text/", "application/javascript", "application/json", "image/svg+xml")


def hashed_name(name: str, digest: str) -> str:
    """`vendor/htmx.min.js` → `vendor/htmx.min.<digest>.js` (the hash before the last suffix)."""
    folder, _, base = name.rpartition("/")
    stem, dot, suffix = base.rpartition(".")
    base = f"{stem}.{digest}.{suffix}" if dot and stem else f"{base}.{digest}"
    return f"{folder}/{base}" if folder else base


def _media_type(name: str) -> str:
    if name.endswith(".js"):
        return "text/javascript; charset=utf-8"
    guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith(_TEXT) else guessed


@dataclass(frozen=True, slots=True)
class Asset:
    name: str  # logical path under static/: "board.css", "bundles/participant.js"
    body: bytes
    media_type: str
    digest: str = field(init=False)
    gzipped: bytes | None = field(init=False)  # None when gzip would not make it smaller

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest",
                           hashlib.sha256(self.body).hexdigest()[:HASH_LENGTH])
        packed = gzip.compress(self.body, compresslevel=9, mtime=0)
        object.__setattr__(self, "gzipped", packed if len(packed) < len(self.body) else None)

    @property
    def hashed(self) -> str:
        return hashed_name(self.name, self.digest)

    def response(self, scope: Scope, cache_control: str) -> Response:
        gzip_ok = self.gzipped is not None and accepts_gzip(scope)
        body = self.gzipped if gzip_ok and self.gzipped is not None else self.body
        etag = f'"{self.digest}-gz"' if gzip_ok else f'"{self.digest}"'
        headers = {"cache-control": cache_control, "etag": etag}
        if self.gzipped is not None:
            headers["vary"] = "Accept-Encoding"
        if gzip_ok:
            headers["content-encoding"] = "gzip"
        if _not_modified(scope, self.digest):
            return Response(status_code=304, headers=headers)
        headers["content-length"] = str(len(body))
        if scope["method"] == "HEAD":
            body = b""
        return Response(body, headers=headers, media_type=self.media_type)


def accepts_gzip(scope: Scope) -> bool:
    """Accept-Encoding allows gzip: listed (or `*`, when gzip is not) with a q above 0."""
    raw = b",".join(v for k, v in scope.get("headers", []) if k == b"accept-encoding")
    quality: dict[str, float] = {}
    for item in raw.decode("latin-1").lower().split(","):
        coding, _, params = item.partition(";")
        q = params.strip().removeprefix("q=") if params.strip().startswith("q=") else "1"
        try:
            quality.setdefault(coding.strip(), float(q))
        except ValueError:
            quality.setdefault(coding.strip(), 0.0)
    return quality.get("gzip", quality.get("*", 0.0)) > 0


def _not_modified(scope: Scope, digest: str) -> bool:
    raw = b",".join(v for k, v in scope.get("headers", []) if k == b"if-none-match")
    if not raw:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in raw.decode("latin-1").split(",")}
    return "*" in tags or bool(tags & {f'"{digest}"', f'"{digest}-gz"'})


class Assets:
    """Every static file and bundle, in memory, by logical name and by hashed name."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.by_name: dict[str, Asset] = {}
        for path in sorted(_files(root)):
            name = path.relative_to(root).as_posix()
            self.by_name[name] = Asset(name, path.read_bytes(), _media_type(name))
        for bundle, parts in BUNDLES.items():
            missing = [part for part in parts if part not in self.by_name]
            if missing:
                raise FileNotFoundError(f"static/{missing[0]} is missing for the {bundle} "
                                        "bundle: run `npm ci` (or `make run`)")
            name = f"bundles/{bundle}.js"
            self.by_name[name] = Asset(name, _concatenate(self.by_name[p] for p in parts),
                                       _media_type(name))
        self.by_hashed = {asset.hashed: asset for asset in self.by_name.values()}

    def url(self, name: str) -> str:
        """The hashed URL of a static file or bundle (a template's `asset("board.css")`)."""
        try:
            return f"/static/{self.by_name[name].hashed}"
        except KeyError:
            raise KeyError(f"no static file or bundle named {name!r}") from None

    def find(self, path: str) -> tuple[Asset, str] | None:
        """The asset behind a path under /static/ and the Cache-Control it is served with."""
        if path in self.by_hashed:
            return self.by_hashed[path], IMMUTABLE
        if path in self.by_name:
            return self.by_name[path], REVALIDATE
        # A hash from before a restart (an old page): today's content, not to be kept.
        match = _HASHED.match(path)
        if match and (match["stem"] + (match["suffix"] or "")) in self.by_name:
            return self.by_name[match["stem"] + (match["suffix"] or "")], REVALIDATE
        return None


def _files(root: Path) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder) / f for f in files if not f.startswith(".")]
    return found


def _concatenate(parts: Iterable[Asset]) -> bytes:
    """Files one after the other, each named, each closed by `;` (ASI-proof joins)."""
    return b"".join(b"/* " + asset.name.encode() + b" */\n" + asset.body.rstrip() + b"\n;\n"
                    for asset in parts)


class AssetFiles(StaticFiles):
    """/static: hashed URLs from memory with an immutable cache, plain ones revalidated."""

    def __init__(self, assets: Assets) -> None:
        super().__init__(directory=assets.root)
        self.assets = assets

    async def get_response(self, path: str, scope: Scope) -> Response:
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(status_code=405, headers={"Allow": "GET, HEAD"})
        found = self.assets.find(path.replace(os.sep, "/"))
        if found is None:  # a file added since start, for instance: served from disk
            response = await super().get_response(path, scope)
            response.headers.setdefault("cache-control", REVALIDATE)
            return response
        asset, cache_control = found
        return asset.response(scope, cache_control)


class GZipDynamic(GZipMiddleware):
    """Gzip for pages, fragments, JSON and exports; /static is left alone, as it comes
    compressed already (once, at start) with its own Vary and ETag per encoding."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/static/"):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


_signature: tuple[tuple[str, int, int], ...] = ()
_current: Assets | None = None


def load(root: Path | None = None) -> Assets:
    """Read static/ (again only if a file changed since the last load) and make it current."""
    global _signature, _current
    root = root or paths.STATIC
    signature = tuple(sorted((str(p), (st := p.stat()).st_mtime_ns, st.st_size)
                             for p in _files(root)))
    if _current is None or _current.root != root or signature != _signature:
        _current, _signature = Assets(root), signature
    return _current


def url(name: str) -> str:
    """Jinja global `asset(name)`: the hashed URL, from the files read at start."""
    return (_current or load()).url(name)
