"""Static files: hashed URLs, per-page bundles, cache headers and gzip (real server)."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import httpx
import pytest

from board.assets import BUNDLES, accepts_gzip, hashed_name
from tests.conftest import ROOT, LiveServer
from tests.integration.helpers import bearer, create_board, join, post

STATIC = ROOT / "static"
IMMUTABLE = "public, max-age=31536000, immutable"
HASHED = re.compile(r'(?:src|href)="(/static/[\w./-]+\.[0-9a-f]{12}\.\w+)"')
GZIP = {"accept-encoding": "gzip"}
IDENTITY = {"accept-encoding": "identity"}


def source(url: str) -> bytes:
    """What a hashed URL must serve: the file under static/, or its bundle's parts in order."""
    name = re.sub(r"\.[0-9a-f]{12}(\.\w+)$", r"\1", url.removeprefix("/static/"))
    bundle = re.fullmatch(r"bundles/(\w+)\.js", name)
    if bundle is None:
        return (STATIC / name).read_bytes()
    return b"".join(b"/* " + part.encode() + b" */\n" + (STATIC / part).read_bytes().rstrip()
                    + b"\n;\n" for part in BUNDLES[bundle[1]])


async def raw_get(http: httpx.AsyncClient, url: str, headers: dict[str, str]
                  ) -> tuple[httpx.Response, bytes]:
    """The bytes as sent on the wire (httpx would otherwise decode gzip)."""
    async with http.stream("GET", url, headers=headers) as response:
        return response, b"".join([chunk async for chunk in response.aiter_raw()])


async def page_urls(server: LiveServer) -> dict[str, list[str]]:
    """The hashed asset URLs of the join, participant, projector and animator pages."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        board = await create_board(http)
        code = board["join_code"]
        pages = {"join": await http.get(f"/b/{code}"),
                 "projector": await http.get(f"/b/{code}/projector")}
        await http.post(f"/b/{code}/join", data={"name": "Ana"})
        pages["participant"] = await http.get(f"/b/{code}")
        await http.get(board["urls"]["animator"])
        pages["animator"] = await http.get(f"/b/{code}/animator")
    urls = {}
    for label, page in pages.items():
        assert page.status_code == 200, label
        urls[label] = HASHED.findall(page.text)
    return urls


async def test_pages_load_one_bundle_and_hashed_files(module_server: LiveServer) -> None:
    """Each page: the favicon, the stylesheet and its one script bundle, all hashed URLs."""
    urls = await page_urls(module_server)
    expected = {"join": "base", "participant": "participant", "projector": "projector",
                "animator": "animator"}
    for label, found in urls.items():
        names = [re.sub(r"\.[0-9a-f]{12}\.", ".", u) for u in found]
        assert names == ["/static/favicon.svg", "/static/board.css",
                         f"/static/bundles/{expected[label]}.js"], (label, found)


async def test_hashed_urls_serve_the_source_bytes_for_a_year(module_server: LiveServer) -> None:
    """A hashed URL serves exactly the source (a bundle: its parts in order), immutable."""
    urls = {u for found in (await page_urls(module_server)).values() for u in found}
    assert len(urls) == 6  # favicon, stylesheet, four bundles
    async with httpx.AsyncClient(base_url=module_server.url, timeout=10) as http:
        for url in sorted(urls):
            response, body = await raw_get(http, url, IDENTITY)
            assert response.status_code == 200, url
            assert body == source(url), url
            assert "content-encoding" not in response.headers, url
            assert response.headers["cache-control"] == IMMUTABLE, url
            assert response.headers["etag"], url
            assert response.headers["content-length"] == str(len(body)), url
            assert "script-src 'self'" in response.headers["content-security-policy"], url
            kind = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
            assert response.headers["content-type"].startswith(kind[url.rsplit(".", 1)[1]])


async def test_static_files_are_gzipped_once_asked(module_server: LiveServer) -> None:
    """Accept-Encoding: gzip gets the precompressed body (smaller, same bytes once unzipped);
    without it, the plain bytes; both say Vary: Accept-Encoding."""
    urls = await page_urls(module_server)
    async with httpx.AsyncClient(base_url=module_server.url, timeout=10) as http:
        for url in urls["participant"][1:]:  # the stylesheet and the bundle
            packed, wire = await raw_get(http, url, GZIP)
            assert packed.headers["content-encoding"] == "gzip", url
            assert gzip.decompress(wire) == source(url) and len(wire) < len(source(url)) / 2
            assert packed.headers["content-length"] == str(len(wire))
            assert packed.headers["cache-control"] == IMMUTABLE
            assert packed.headers["vary"] == "Accept-Encoding"
            plain, body = await raw_get(http, url, IDENTITY)
            assert "content-encoding" not in plain.headers and body == source(url)
            assert plain.headers["vary"] == "Accept-Encoding"
            assert packed.headers["etag"] != plain.headers["etag"]
            # An immutable URL still answers a revalidation with 304.
            again = await http.get(url, headers={**GZIP, "if-none-match": packed.headers["etag"]})
            assert again.status_code == 304 and again.content == b""
            head = await http.head(url, headers=GZIP)
            assert head.status_code == 200 and head.headers["content-length"] == str(len(wire))


async def test_plain_static_urls_stay_reachable_and_revalidate(
        module_server: LiveServer) -> None:
    """/static/board.css (old pages, links) and a hash from before a restart: today's bytes,
    `no-cache` with an ETag (a 304 when unchanged); an unknown file is a 404."""
    async with httpx.AsyncClient(base_url=module_server.url, timeout=10) as http:
        for url in ("/static/board.css", "/static/vendor/htmx.min.js",
                    "/static/board.000000000000.css"):
            response, body = await raw_get(http, url, IDENTITY)
            assert response.status_code == 200, url
            name = url.replace(".000000000000", "").removeprefix("/static/")
            assert body == (STATIC / name).read_bytes(), url
            assert response.headers["cache-control"] == "no-cache", url
            again = await http.get(url, headers={"if-none-match": response.headers["etag"]})
            assert again.status_code == 304, url
        bundle = await http.get("/static/bundles/participant.js")
        assert bundle.status_code == 200 and bundle.headers["cache-control"] == "no-cache"
        assert (await http.get("/static/nothing.js")).status_code == 404
        assert (await http.get("/static/../board/app.py")).status_code == 404
        assert (await http.post("/static/board.css")).status_code == 405


async def test_pages_json_and_exports_are_gzipped_with_their_headers(
        module_server: LiveServer) -> None:
    """HTML pages, JSON and export downloads are gzipped for clients that ask, keep the
    security headers, and unzip to the same bytes as the plain answer."""
    async with httpx.AsyncClient(base_url=module_server.url, timeout=10) as http:
        board = await create_board(http)
        code = board["join_code"]
        token = await join(http, code, "Ana")
        column = board["columns"][0]["id"]
        for i in range(5):
            assert (await post(http, code, token, column, f"Idée numéro {i} pour le quartier",
                               f"asset-{i}")).status_code == 201
        frozen = await http.post(f"/api/v1/boards/{code}/freeze", json={},
                                 headers=bearer(board["animator_token"]))
        assert frozen.status_code == 201, frozen.text
        urls = ["/", f"/b/{code}/projector", f"/api/v1/boards/{code}",
                frozen.json()["urls"]["html"], frozen.json()["urls"]["md"],
                frozen.json()["urls"]["csv"] + "?download=1", frozen.json()["urls"]["json"]]
        for url in urls:
            packed, wire = await raw_get(http, url, GZIP)
            plain, body = await raw_get(http, url, IDENTITY)
            assert packed.status_code == plain.status_code == 200, url
            if len(body) < 500:  # below the threshold, sent as is
                assert "content-encoding" not in packed.headers, url
                continue
            assert packed.headers["content-encoding"] == "gzip", url
            assert gzip.decompress(wire) == body, url
            assert "content-encoding" not in plain.headers, url
            for name in ("content-security-policy", "x-content-type-options",
                         "referrer-policy"):
                assert packed.headers[name] == plain.headers[name], (url, name)
            for name in ("content-type", "content-disposition", "cache-control"):
                assert packed.headers.get(name) == plain.headers.get(name), (url, name)


@pytest.mark.parametrize(("header", "expected"), [
    ("gzip, deflate, br, zstd", True), ("identity", False), ("", False), ("*", True),
    ("br;q=1, gzip;q=0", False), ("GZIP;q=0.5", True), ("gzip;q=x", False),
    ("*;q=0, gzip", True), ("gzip;q=0, *", False), ("br, *;q=0", False)])
def test_accept_encoding_is_read_with_its_q_values(header: str, expected: bool) -> None:
    assert accepts_gzip({"headers": [(b"accept-encoding", header.encode())]}) is expected


def test_hashed_names_put_the_hash_before_the_last_suffix() -> None:
    assert hashed_name("board.css", "abc") == "board.abc.css"
    assert hashed_name("vendor/htmx.min.js", "abc") == "vendor/htmx.min.abc.js"
    assert hashed_name("bundles/participant.js", "abc") == "bundles/participant.abc.js"
    assert hashed_name("LICENSE", "abc") == "LICENSE.abc"
    assert hashed_name(".hidden", "abc") == ".hidden.abc"
    assert Path(hashed_name("a/b.c.d", "h")).name == "b.c.h.d"
