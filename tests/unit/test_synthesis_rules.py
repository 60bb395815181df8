"""Exports and search folding, without I/O: escaping that no card text can break."""

from __future__ import annotations

import csv
import html
import io
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from board import search
from board import synthesis as syn
from board.errors import RuleViolation

# A Markdown renderer that would honour raw HTML: what a reader's tool might do with our .md.
permissive = MarkdownIt("commonmark", {"html": True})
HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "[x](javascript:alert(1))",
           "**bold** _it_ `code`", "# title", "1. one", "- item", "> quote", "***", "=1+1",
           "a\n- b\n# c", "&lt;b&gt;", "![i](http://evil.example/x.png)", "<https://x.y>",
           "| a | b |\n|---|---|", "line\\", "Setext\n===", "~~~\ncode\n~~~",
           "a\n    indented code", "\t\ttabbed"]


def rendered_text(markdown: str) -> tuple[str, set[str]]:
    """The text a Markdown reader shows, and the tags it made."""
    out = permissive.render(markdown)
    tags = set(re.findall(r"<\s*([a-zA-Z0-9]+)", out))
    text = html.unescape(re.sub(r"<[^>]+>", "", out))
    return text, tags


def test_hostile_card_texts_stay_text_in_markdown() -> None:
    for text in HOSTILE:
        shown, tags = rendered_text(syn.md_text(text))
        assert tags <= {"p", "br"}, (text, tags)
        # Same words; only whitespace may differ (line starts are trimmed).
        assert "".join(shown.split()) == "".join(text.split()), text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from(
    list("<>&*_[]()#!`|~\\-+=.\n 1")), min_size=1, max_size=60))
def test_no_text_becomes_markup_in_markdown(text: str) -> None:
    _, tags = rendered_text(syn.md_text(text))
    assert tags <= {"p", "br"}, (text, tags)


def test_notes_are_markdown_but_raw_html_is_text() -> None:
    out = syn.notes_html("**Peu** de bus <b>x</b> <script>alert(1)</script> "
                         "![i](http://evil.example/x.png) [lien](javascript:alert(1))")
    assert "<strong>Peu</strong>" in out
    assert "<b>" not in out and "<script" not in out and "<img" not in out
    assert "&lt;script&gt;" in out
    assert 'href="javascript' not in out
    md_tags = rendered_text(syn.md_notes("<b>x</b> **ok**"))[1]
    assert "b" not in md_tags and "strong" in md_tags


def test_csv_cells_never_start_a_formula() -> None:
    for text in ("=1+1", "+33 6", "-2", "@SUM(A1)", "\tx", "\rx", "=HYPERLINK(\"x\")"):
        assert syn.csv_cell(text).startswith("'"), text
    assert syn.csv_cell("Un bus") == "Un bus"
    assert syn.csv_cell(None) == ""
    content = {"columns": [{"title": "=Constats", "themes": [], "cards": [
        {"id": 1, "text": "-danger", "votes": 2, "merged_texts": ["@x"], "author": "+A"}]}]}
    rows = list(csv.reader(io.StringIO(syn.to_csv(content))))
    assert rows[0] == list(syn.CSV_FIELDS)
    assert rows[1] == ["'=Constats", "", "'-danger", "2", "'@x", "'+A", "1"]


def test_french_folding_finds_accents_and_plurals() -> None:
    assert search.stem("coopération") == search.stem("cooperations") == search.stem(
        "Coopérations")
    assert search.stem("mobilités") == search.stem("Mobilité")
    assert search.stem("élus") == search.stem("élu")
    assert search.stem("besoins") == search.stem("besoin")
    assert search.query_terms("Les élus, les ÉLUS !") == [search.stem("les"), search.stem("élus")]


def test_search_expressions_cannot_carry_operators() -> None:
    terms = search.query_terms('bus" OR NEAR(a b) * -x ^y')
    expression = search.fts5_match(terms)
    for term in terms:
        assert re.fullmatch(r"\w+", term)
    assert expression.count('"') == 2 * len(terms)
    assert search.fts5_match([]) == ""


def test_filenames_are_ascii_and_dated() -> None:
    content = {"format": syn.FORMAT, "version": 2, "frozen_at": "2026-11-21T14:05:00+00:00",
               "board": {"title": "Mobilités rurales : « quels besoins ? »"}}
    assert syn.filename(content, "md") == (
        "2026-11-21-mobilites-rurales-quels-besoins-synthese-v2.md")
    content["board"]["title"] = "<>/\\..??"
    assert syn.filename(content, "csv") == "2026-11-21-atelier-synthese-v2.csv"


def test_hash_covers_the_content_and_import_checks_it() -> None:
    content = {"format": syn.FORMAT, "format_version": 1, "version": 1,
               "frozen_at": "2026-11-21T14:05:00+00:00", "conclusion": "",
               "board": {"title": "T", "question": "", "template": "libre", "slot": "",
                         "room": "", "animator_name": ""},
               "columns": [{"title": "Idées", "notes": "", "themes": [], "cards": [
                   {"id": 1, "text": "un", "votes": 0, "merged_texts": []}]}]}
    digest = syn.content_hash(content)
    assert syn.parse_import({**content, "hash": digest}) == (content, digest)
    tampered = {**content, "conclusion": "changed", "hash": digest}
    with pytest.raises(RuleViolation) as refused:
        syn.parse_import(tampered)
    assert refused.value.code == "bad_import"
    # Key order does not change the hash (canonical JSON).
    assert syn.content_hash(dict(reversed(list(content.items())))) == digest
