from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Template:
    id: str
    title: str
    columns: tuple[str, ...]


# Column sets taken from the documents of real ateliers (see shared/seeds and DESIGN.md).
TEMPLATES: tuple[Template, ...] = (
    Template("constats-enjeux-besoins", "Constats / Enjeux / Besoins",
             ("Constats", "Enjeux", "Besoins")),
    Template(
        "atlas-relationnel",
        "Constats / Enjeux / Questionnements / Pistes d'action",
        ("Constats", "Enjeux", "Questionnements", "Pistes d'action"),
    ),
    Template("freins-leviers", "Freins / Leviers / Conditions de réussite",
             ("Freins", "Leviers", "Conditions de réussite")),
    Template(
        "invariants-transition",
        "Engagement des acteurs / Coopération / Approche systémique / Valeur créée et moyens",
        ("Engagement des acteurs", "Coopération", "Approche systémique",
         "Valeur créée et moyens"),
    ),
)

FREE = "free"
BY_ID = {template.id: template for template in TEMPLATES}
