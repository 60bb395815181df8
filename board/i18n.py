"""Message extraction from the Jinja templates and access to the translation catalogues.

The templates use English msgids (``{{ _("Post") }}``, ``{% trans %}`` blocks); French lives in
``board/locales/fr/LC_MESSAGES/messages.po``, which board.render compiles in memory at start-up.
This module finds the msgids the templates use, for the i18n test and a future check command.
"""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from board import paths

# Jinja's extractor, named by import path so it does not depend on the entry point table.
EXTRACTOR = "jinja2.ext:babel_extract"
METHOD_MAP = [("**.html", EXTRACTOR), ("**.md", EXTRACTOR)]
# Must mirror the Environment built in board.render.make_environment, otherwise `{% trans %}`
# blocks would be extracted with other whitespace or `%` escaping than the runtime looks up.
# "silent": a template with a syntax error raises instead of silently yielding no message.
OPTIONS = {
    "extensions": "jinja2.ext.i18n",
    "trim_blocks": "true",
    "lstrip_blocks": "true",
    "newstyle_gettext": "true",
    "silent": "false",
}

# %(name)s style placeholders, as Jinja's newstyle gettext formats them (`rv % variables`).
PLACEHOLDER = re.compile(r"%\((\w+)\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]")


def po_path(lang: str, locales: Path = paths.LOCALES) -> Path:
    return locales / lang / "LC_MESSAGES" / "messages.po"


def extract_catalog(templates: Path = paths.TEMPLATES) -> Catalog:
    """Every message the templates use; plural messages keep their (singular, plural) id."""
    catalog = Catalog(fuzzy=False)
    for filename, lineno, message, comments, context in extract_from_dir(
        templates, method_map=METHOD_MAP, options_map={"**.html": OPTIONS, "**.md": OPTIONS}
    ):
        catalog.add(
            message, locations=[(filename, lineno)], auto_comments=comments, context=context
        )
    return catalog


def extract_messages(templates: Path = paths.TEMPLATES) -> dict[str, set[str]]:
    """msgid (the singular one for plurals) -> template files using it, relative to templates/."""
    return {
        str(message.id if isinstance(message.id, str) else message.id[0]): {
            filename for filename, _lineno in message.locations
        }
        for message in extract_catalog(templates)
        if message.id
    }


def read_catalog(lang: str, locales: Path = paths.LOCALES) -> Catalog:
    with po_path(lang, locales).open("rb") as po_file:
        return read_po(po_file, locale=lang)


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))
