"""The HTML pages as a browser without JavaScript uses them: forms, cookies, headers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import LiveServer


@pytest.fixture
async def browser(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10,
                                 headers={"accept-language": "fr-FR,fr;q=0.9"}) as client:
        yield client


async def create_through_form(browser: httpx.AsyncClient) -> dict[str, str]:
    page = await browser.post("/boards", data={
        "title": "Atelier <coopération>", "question": "Comment coopérer ?",
        "template": "freins-leviers"})
    assert page.status_code == 200
    found = {}
    for name in ("animator", "participant", "projector"):
        match = re.search(rf'id="{name}-link" href="([^"]+)"', page.text)
        assert match, name
        found[name] = match.group(1).replace("&amp;", "&")
    found["code"] = found["participant"].rsplit("/", 1)[1]
    found["html"] = page.text
    return found


async def test_create_join_and_post_without_javascript(server: LiveServer,
                                                       browser: httpx.AsyncClient) -> None:
    """Create a board, join with a pseudonym and post a card with plain form posts."""
    board = await create_through_form(browser)
    assert "Atelier &lt;coopération&gt;" in board["html"]  # escaped, never raw
    code = board["code"]
    join_page = await browser.get(f"/b/{code}")
    assert 'action="/b/' + code + '/join"' in join_page.text
    joined = await browser.post(f"/b/{code}/join", data={"name": "Lou"})
    assert joined.status_code == 303
    assert f"ab_p_{code}" in joined.cookies
    cookie = joined.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    page = await browser.get(f"/b/{code}")
    assert 'id="post-form"' in page.text and "Freins" in page.text
    column = re.search(r'name="column_id" value="(\d+)"', page.text)
    client_id = re.search(r'name="client_id" value="([0-9a-f]+)"', page.text)
    assert column and client_id
    form = {"column_id": column.group(1), "text": "Manque de temps",
            "client_id": client_id.group(1)}
    posted = await browser.post(f"/b/{code}/cards", data=form)
    assert posted.status_code == 303 and posted.headers["location"].startswith(f"/b/{code}#card-")
    again = await browser.post(f"/b/{code}/cards", data=form)  # double click / resubmit
    assert again.headers["location"] == posted.headers["location"]
    page = await browser.get(f"/b/{code}")
    assert page.text.count("Manque de temps") == 1
    assert "Lou" in page.text


async def test_htmx_post_answers_a_fresh_form_and_the_card(server: LiveServer,
                                                           browser: httpx.AsyncClient) -> None:
    """An htmx post gets the form back (new client_id, confirmation) plus an upsert of the card."""
    board = await create_through_form(browser)
    code = board["code"]
    await browser.post(f"/b/{code}/join", data={"name": ""})
    page = await browser.get(f"/b/{code}")
    column = re.search(r'name="column_id" value="(\d+)"', page.text)
    assert column
    response = await browser.post(
        f"/b/{code}/cards", headers={"hx-request": "true"},
        data={"column_id": column.group(1), "text": "Idée rapide", "client_id": "k1"})
    assert response.status_code == 200
    assert 'id="post-form"' in response.text and 'value="k1"' not in response.text
    assert "Carte envoyée" in response.text
    assert f'<hx-upsert hx-target="#cards-{column.group(1)}"' in response.text
    refused = await browser.post(
        f"/b/{code}/cards", headers={"hx-request": "true"},
        data={"column_id": column.group(1), "text": "x" * 600, "client_id": "k2"})
    assert refused.status_code == 422
    assert "x" * 600 in refused.text  # the text is given back, not lost
    assert "600" in refused.text


async def test_animator_link_becomes_a_cookie(server: LiveServer,
                                              browser: httpx.AsyncClient) -> None:
    """?key= is traded for an HttpOnly cookie and dropped from the address; a bad key is 403."""
    board = await create_through_form(browser)
    code = board["code"]
    response = await browser.get(board["animator"])
    assert response.status_code == 303
    assert response.headers["location"] == f"/b/{code}/animator"
    page = await browser.get(f"/b/{code}/animator")
    assert page.status_code == 200 and 'id="controls"' in page.text
    async with httpx.AsyncClient(base_url=server.url) as stranger:
        assert (await stranger.get(f"/b/{code}/animator")).status_code == 403
        assert (await stranger.get(f"/b/{code}/animator?key=wrong")).status_code == 403
        refused = await stranger.post(f"/b/{code}/animator/settings", data={"locked": "1"})
        assert refused.status_code == 403


async def test_animator_forms_hide_rename_and_pause(server: LiveServer,
                                                    browser: httpx.AsyncClient) -> None:
    """The animator's plain forms hide a card, rename a column and pause posting."""
    board = await create_through_form(browser)
    code = board["code"]
    await browser.get(board["animator"])
    page = await browser.get(f"/b/{code}/animator")
    column = re.search(r'name="column_id" value="(\d+)"', page.text)
    assert column
    await browser.post(f"/b/{code}/cards", data={"column_id": column.group(1),
                                                 "text": "Note de l'animation"})
    state = (await browser.get(f"/api/v1/boards/{code}")).json()
    card = state["columns"][0]["cards"][0]
    assert card["by_animator"] is True
    await browser.post(f"/b/{code}/animator/cards/{card['id']}", data={"hidden": "1"})
    await browser.post(f"/b/{code}/animator/columns/{column.group(1)}",
                       data={"title": "Obstacles"})
    await browser.post(f"/b/{code}/animator/settings", data={"locked": "1"})
    state = (await browser.get(f"/api/v1/boards/{code}")).json()
    assert state["columns"][0]["title"] == "Obstacles"
    assert state["columns"][0]["cards"] == [] and state["locked"] is True
    animator_page = (await browser.get(f"/b/{code}/animator")).text
    assert "is-hidden" in animator_page and "Note de l&#39;animation" in animator_page


async def test_pages_are_french_first_and_switch_to_english(server: LiveServer) -> None:
    """No preference gives French; the browser's English or the switch gives English."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert '<html lang="fr">' in (await client.get("/")).text
        english = await client.get("/", headers={"accept-language": "en-GB,en;q=0.9"})
        assert '<html lang="en">' in english.text
        switched = await client.get("/lang/en?next=/")
        assert switched.status_code == 303 and switched.headers["location"] == "/"
        assert '<html lang="en">' in (await client.get("/")).text
        assert (await client.get("/lang/fr?next=//evil.example")).headers["location"] == "/"


async def test_security_headers_and_no_inline_script(server: LiveServer,
                                                     browser: httpx.AsyncClient) -> None:
    """Every page has a strict CSP and loads only same-origin scripts, none inline."""
    board = await create_through_form(browser)
    await browser.get(board["animator"])
    code = board["code"]
    for path in ("/", f"/b/{code}", f"/b/{code}/projector", f"/b/{code}/animator",
                 "/join?code=NOPE"):
        response = await browser.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["referrer-policy"] == "no-referrer"
        for tag in re.findall(r"<script[^>]*>", response.text):
            assert re.search(r'src="/static/', tag), tag
        # No http:// URL but links to this server itself (its own pages, the LAN-address
        # hint), so nothing is loaded from elsewhere.
        assert "<script>" not in response.text and "http://" not in re.sub(
            r'href="http://127\.0\.0\.1:\d+/b/[^"]*"|alt="[^"]*"|<strong>[^<]*</strong>'
            r'|<p class="lan-hint".*?</p>', "",
            response.text, flags=re.S).replace('xmlns="http://www.w3.org/2000/svg"', "")


async def test_form_post_from_another_site_is_refused(server: LiveServer,
                                                      browser: httpx.AsyncClient) -> None:
    """A cross-site form post (Origin of another site) is refused with 403."""
    board = await create_through_form(browser)
    response = await browser.post(f"/b/{board['code']}/join", data={"name": "x"},
                                  headers={"origin": "https://evil.example"})
    assert response.status_code == 403
    # Under no-referrer, browsers send Origin: null; Fetch Metadata tells same-site from not.
    for site, status in (("cross-site", 403), ("same-site", 403), ("same-origin", 303)):
        response = await browser.post(f"/b/{board['code']}/join", data={"name": "x"},
                                      headers={"origin": "null", "sec-fetch-site": site})
        assert response.status_code == status, site


async def test_projector_shows_code_and_qr(server: LiveServer,
                                           browser: httpx.AsyncClient) -> None:
    """The projector page shows the join code and a QR code of the join URL."""
    board = await create_through_form(browser)
    code = board["code"]
    page = await browser.get(f"/b/{code}/projector")
    assert f'id="join-code">{code}<' in page.text
    qr = await browser.get(f"/b/{code}/qr.svg")
    assert qr.status_code == 200 and qr.headers["content-type"].startswith("image/svg+xml")
    assert qr.text.startswith("<svg") and "<path" in qr.text


async def test_unknown_code_page(server: LiveServer, browser: httpx.AsyncClient) -> None:
    """A wrong code shows a clear page (404) with a field to type it again."""
    for path in ("/b/QQQQQQ", "/join?code=qqq-qqq"):
        page = await browser.get(path)
        assert page.status_code == 404
        assert "QQQQQQ" in page.text and 'name="code"' in page.text


async def test_pages_opened_through_loopback_point_phones_to_the_lan(server: LiveServer) -> None:
    """Through 127.0.0.1 a page says where phones can reach the board; through a LAN host
    name it says nothing (the Host header is set over loopback: no traffic leaves)."""
    from board.netaddr import lan_addresses

    lan = lan_addresses()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        local = await client.get("/")
        if lan:
            expected = f"http://{lan[0]}:{server.port}/"
            assert 'class="lan-hint"' in local.text and f'href="{expected}"' in local.text
        else:
            assert 'class="lan-hint"' not in local.text
        remote = await client.get("/", headers={"host": f"192.0.2.77:{server.port}"})
        assert remote.status_code == 200 and 'class="lan-hint"' not in remote.text
        # What people in the room use is never 127.0.0.1 when the LAN is known.
        created = await client.post("/boards", data={"title": "Salle B", "template": "free"})
        code = re.search(r'id="join-code">(\w+)<', created.text)
        assert code
        projector = await client.get(f"/b/{code.group(1)}/projector")
        room = f"{lan[0]}:{server.port}" if lan else f"127.0.0.1:{server.port}"
        assert f"Rendez-vous sur {room} avec le code" in projector.text
        if lan:
            assert f'href="http://{room}/b/{code.group(1)}"' in created.text
            assert f'<a href="http://{room}/">' in created.text  # a post: the hint goes home
        through_lan = await client.get(f"/b/{code.group(1)}/projector",
                                       headers={"host": f"192.0.2.77:{server.port}"})
        assert f"Rendez-vous sur 192.0.2.77:{server.port} avec le code" in through_lan.text
