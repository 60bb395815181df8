"""The French catalogue matches the templates' msgids, and the renderer really uses it."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from babel.messages.catalog import Catalog, Message
from markupsafe import escape

from board.i18n import extract_catalog, extract_messages, placeholders, read_catalog
from board.render import Renderer


@pytest.fixture(scope="module")
def extracted() -> Catalog:
    return extract_catalog()


@pytest.fixture(scope="module")
def french() -> Catalog:
    return read_catalog("fr")


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def entries(catalog: Catalog) -> dict[str, Message]:
    """Messages by singular msgid, without the header entry."""
    return {
        message.id if isinstance(message.id, str) else message.id[0]: message
        for message in catalog
        if message.id
    }


def forms(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def test_extraction_finds_template_strings() -> None:
    """Extraction sees plain, attribute and plural messages across pages and partials."""
    messages = extract_messages()
    assert "home.html" in messages["Join an atelier"]
    assert {"home.html", "unknown.html"} <= messages["Join"]
    assert "partials/_presence.html" in messages["%(count)s participant connected"]
    assert "projector.html" in messages["QR code to join: %(url)s"]


def test_every_template_msgid_has_a_french_translation(extracted: Catalog, french: Catalog) -> None:
    """Every msgid in the templates has a non-empty, non-fuzzy French msgstr (all plural forms)."""
    po = entries(french)
    missing = []
    for msgid, message in entries(extracted).items():
        entry = po.get(msgid)
        strings = forms(entry.string) if entry else ()
        wanted = french.num_plurals if message.pluralizable else 1
        # write_mo skips fuzzy entries, so a fuzzy translation never reaches the page.
        if entry is None or entry.fuzzy or len(strings) < wanted or not all(strings):
            missing.append(msgid)
        elif forms(entry.id) != forms(message.id):
            missing.append(f"{msgid} (plural msgid differs: {entry.id!r} vs {message.id!r})")
    assert not missing, "untranslated in board/locales/fr/LC_MESSAGES/messages.po:\n" + "\n".join(
        missing
    )


def test_po_has_no_obsolete_msgid(extracted: Catalog, french: Catalog) -> None:
    """Every msgid of the .po (obsolete #~ entries included) is still used by a template."""
    used = set(entries(extracted))
    stale = sorted((set(entries(french)) | set(french.obsolete)) - used)
    assert not stale, "msgids no template uses any more, delete them from the .po:\n" + "\n".join(
        stale
    )


def test_translations_keep_placeholders(french: Catalog) -> None:
    """Each translation formats like Jinja newstyle gettext does and keeps every %(x)s."""
    broken = []
    for msgid, message in entries(french).items():
        names = set().union(*(placeholders(text) for text in forms(message.id)))
        values = {name: f"<<{name}>>" for name in names} | {"num": 2}
        for translation in forms(message.string):
            try:
                # newstyle gettext always does `translation % variables`, even with none.
                rendered = translation % values
            except (KeyError, ValueError, TypeError) as exc:
                broken.append(f"{msgid!r}: {translation!r} does not format ({exc!r})")
                continue
            lost = sorted(name for name in names if f"<<{name}>>" not in rendered)
            if lost:
                broken.append(f"{msgid!r}: {translation!r} drops {lost}")
    assert not broken, "\n".join(broken)


def test_french_typography(french: Catalog) -> None:
    """French translations put one plain space before : ; ? ! and use « » rather than "."""
    faults = []
    for msgid, message in entries(french).items():
        for translation in forms(message.string):
            if re.search(r"(?:^|[^ ])[:;?!]|[\u00a0\u202f]|\"", translation):
                faults.append(f"{msgid!r}: {translation!r}")
    assert not faults, "\n".join(faults)


def test_home_page_in_french_and_english(renderer: Renderer, french: Catalog) -> None:
    """home.html renders the French translation with lang="fr", and English with "en"."""
    request = SimpleNamespace(url=SimpleNamespace(path="/"))
    translated = french.get("Join an atelier")
    assert translated is not None and translated.string
    assert translated.string != "Join an atelier"

    page_fr = renderer.page("home.html", "fr", request=request, form={}, error=None)
    assert 'lang="fr"' in page_fr
    assert str(escape(translated.string)) in page_fr
    assert "Join an atelier" not in page_fr

    page_en = renderer.page("home.html", "en", request=request, form={}, error=None)
    assert 'lang="en"' in page_en
    assert "Join an atelier" in page_en


@pytest.mark.parametrize(("count", "form"), [(0, 0), (1, 0), (2, 1), (17, 1)])
def test_presence_plural_in_french(
    renderer: Renderer, french: Catalog, count: int, form: int
) -> None:
    """French plural: 0 and 1 take the singular, 2 and more the plural."""
    assert french.plural_forms == "nplurals=2; plural=(n > 1);"
    message = french.get("%(count)s participant connected")
    assert message is not None
    singular, plural = forms(message.string)
    assert singular != plural
    expected = (singular, plural)[form] % {"count": count}
    template = renderer.envs["fr"].get_template("partials/_presence.html")
    html = template.render(n_present=count)
    assert f">{escape(expected)}</p>" in html


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 participants connected"),
        (1, "1 participant connected"),
        (2, "2 participants connected"),
    ],
)
def test_presence_plural_in_english(renderer: Renderer, count: int, text: str) -> None:
    """English keeps gettext's default rule: only 1 is singular."""
    html = renderer.envs["en"].get_template("partials/_presence.html").render(n_present=count)
    assert f">{text}</p>" in html
