"""Board rules, without I/O."""

from __future__ import annotations

import pytest

from board import domain
from board.errors import MESSAGES, RuleViolation
from board.presets import BY_ID, FREE, TEMPLATES


def violation(fn, *args, **kwargs) -> RuleViolation:  # type: ignore[no-untyped-def]
    with pytest.raises(RuleViolation) as caught:
        fn(*args, **kwargs)
    return caught.value


def test_text_is_trimmed_and_normalised() -> None:
    """Surrounding blanks go, inner line breaks stay, Unicode is NFC, control chars vanish."""
    assert domain.clean_text("  Cafe\u0301 \n partagé\x07  ", limit=500) == "Café \n partagé"


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\x00\x01"])
def test_empty_text_is_refused(text: str) -> None:
    """Nothing but blanks or control characters is an empty card."""
    assert violation(domain.clean_text, text, limit=500).code == "empty_text"


def test_length_limit_counts_characters_after_trimming() -> None:
    """500 accented characters pass; 501 fail, and the message gives both numbers."""
    assert len(domain.clean_text(" " + "é" * 500 + " ", limit=500)) == 500
    error = violation(domain.clean_text, "é" * 501, limit=500)
    assert error.code == "text_too_long"
    assert error.params == {"length": 501, "limit": 500}
    assert "501" in error.message("fr") and "500" in error.message("en")


def test_non_text_is_an_invalid_field() -> None:
    """A number or null where text is expected names the field."""
    error = violation(domain.clean_text, 12, limit=500)
    assert (error.code, error.params) == ("invalid_field", {"field": "text"})


def test_join_codes_are_readable_and_forgiving() -> None:
    """Codes avoid look-alike characters; typed codes ignore case, spaces and dashes."""
    codes = {domain.new_join_code() for _ in range(200)}
    assert len(codes) > 190
    for code in codes:
        assert len(code) == domain.JOIN_LENGTH
        assert not set(code) & set("0O1IL5S2Z")
    assert domain.normalize_join_code(" k7m-r4 q ") == "K7MR4Q"


def test_template_or_free_columns() -> None:
    """A template gives its columns; free columns are cleaned; bad input is refused."""
    assert domain.board_columns("freins-leviers", None) == (
        "freins-leviers", ["Freins", "Leviers", "Conditions de réussite"])
    assert domain.board_columns(None, ["  Idées ", "", "Questions"]) == (
        FREE, ["Idées", "Questions"])
    assert domain.board_columns(FREE, None) == (FREE, ["Idées"])
    assert violation(domain.board_columns, "nope", None).code == "unknown_template"
    assert violation(domain.board_columns, None, []).code == "bad_columns"
    assert violation(domain.board_columns, None, ["c"] * 9).code == "bad_columns"
    assert violation(domain.board_columns, None, "Idées").code == "invalid_field"


def test_the_four_seed_templates_are_there() -> None:
    """The column sets of the seed documents are offered, in their order."""
    assert [t.columns for t in TEMPLATES] == [
        ("Constats", "Enjeux", "Besoins"),
        ("Constats", "Enjeux", "Questionnements", "Pistes d'action"),
        ("Freins", "Leviers", "Conditions de réussite"),
        ("Engagement des acteurs", "Coopération", "Approche systémique",
         "Valeur créée et moyens"),
    ]
    assert set(BY_ID) == {t.id for t in TEMPLATES}


def test_posting_rules() -> None:
    """Participants post only in collecte while unlocked; the animator always may."""
    domain.check_can_post(phase="collecte", locked=False, is_animator=False)
    domain.check_can_post(phase="vote", locked=True, is_animator=True)
    assert violation(domain.check_can_post, phase="collecte", locked=True,
                     is_animator=False).code == "board_locked"
    for phase in set(domain.PHASES) - {"collecte"}:
        error = violation(domain.check_can_post, phase=phase, locked=False, is_animator=False)
        assert error.code == "board_closed" and phase in error.message("fr")


def test_one_line_fields() -> None:
    """Titles fold whitespace, are required where needed, and have a length limit."""
    assert domain.clean_line("  Atelier \n  du   matin ", field="title", limit=120) == (
        "Atelier du matin")
    assert violation(domain.clean_line, " ", field="title", limit=120,
                     required=True).code == "title_required"
    assert violation(domain.clean_line, "x" * 41, field="name",
                     limit=40).code == "field_too_long"
    assert domain.clean_line(None, field="name", limit=40) == ""


def test_every_error_message_is_bilingual_and_formats() -> None:
    """Each error code has a 4xx/5xx status and distinct French and English messages."""
    for code, (status, fr, en) in MESSAGES.items():
        assert 400 <= status < 600, code
        assert fr != en, code
    error = RuleViolation("unknown_board", code="ABC")
    assert error.to_dict()["fr"] == (
        "Aucun atelier ne porte le code « ABC ». Vérifiez le code affiché au tableau.")
    with pytest.raises(KeyError):
        RuleViolation("no_such_code")
