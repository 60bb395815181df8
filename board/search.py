"""French-aware folding for full-text search: no I/O.

Both what is indexed and what is searched go through `stems`: lower case, accents dropped,
a plural ``s`` dropped, then the Snowball French stemmer. So "Coopérations", "coopération" and
"cooperation" all become ``cooper``, and a query matches whatever form the card used.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import snowballstemmer

WORD = re.compile(r"\w+", re.UNICODE)
MAX_QUERY_TERMS = 8
_stemmer = snowballstemmer.stemmer("french")


def fold(word: str) -> str:
    """Lower case without accents: 'Élus' -> 'elus'."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=50_000)
def stem(word: str) -> str:
    folded = fold(word)
    if len(folded) > 3 and folded.endswith("s") and not folded.endswith("ss"):
        folded = folded[:-1]
    return str(_stemmer.stemWord(folded))


def stems(text: str) -> str:
    """The text as the index stores it: stems separated by spaces."""
    return " ".join(stem(word) for word in WORD.findall(text))


def query_terms(query: str) -> list[str]:
    """The stems of a query, in order, without repeats (at most MAX_QUERY_TERMS)."""
    terms: list[str] = []
    for word in WORD.findall(query):
        term = stem(word)
        if term and term not in terms:
            terms.append(term)
    return terms[:MAX_QUERY_TERMS]


def fts5_match(terms: list[str]) -> str:
    """An FTS5 MATCH expression: every term, each as a prefix ("elu" finds "elus").

    Terms are runs of word characters, quoted, so no FTS5 operator can come from a query."""
    return " AND ".join(f'"{term}"*' for term in terms)


def tsquery(terms: list[str]) -> str:
    """The same for PostgreSQL's to_tsquery('simple', …)."""
    return " & ".join(f"{term}:*" for term in terms)
