"""`board bench-archive`: what freezing, exporting, importing and searching cost.

Against the real app (a `board serve` it starts on a throw-away SQLite file, or `--url`): one
big board of `--big` cards, then `--boards` boards of `--cards` cards each, all frozen; then
every export of the big one, its import, and searches over everything archived. Prints figures;
asserts nothing about time.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import httpx

from board.bench import Server

WORDS = ("coopération mobilité ingénierie territoire élus habitants tiers-lieux transition "
         "alimentaire agricole réseau gouvernance financement bénévoles jeunes santé numérique "
         "logement énergie eau commune intercommunalité").split()
QUERIES = WORDS + ["cooperations", "mobilites", "elu", "reseaux", "jeune habitant"]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


async def _frozen_board(http: httpx.AsyncClient, title: str, cards: int,
                        rng: random.Random) -> tuple[dict[str, Any], float]:
    created = (await http.post("/api/v1/boards", json={
        "title": title, "template": "constats-enjeux-besoins"})).json()
    code, animator = created["join_code"], created["animator_token"]
    token = (await http.post(f"/api/v1/boards/{code}/participants", json={})).json()["token"]
    columns = [c["id"] for c in created["columns"]]
    for n in range(cards):
        text = " ".join(rng.choice(WORDS) for _ in range(12))
        answer = await http.post(f"/api/v1/boards/{code}/cards",
                                 headers={"Authorization": f"Bearer {token}"},
                                 json={"column_id": columns[n % len(columns)], "text": text})
        answer.raise_for_status()
    started = time.perf_counter()
    frozen = await http.post(f"/api/v1/boards/{code}/freeze",
                             headers={"Authorization": f"Bearer {animator}"},
                             json={"conclusion": "Une conclusion."})
    elapsed = time.perf_counter() - started
    frozen.raise_for_status()
    return frozen.json(), elapsed


async def run(url: str, *, big: int, boards: int, cards: int) -> dict[str, Any]:
    rng = random.Random(7)
    async with httpx.AsyncClient(base_url=url, timeout=120, trust_env=False) as http:
        frozen, big_freeze = await _frozen_board(http, "Grand atelier", big, rng)
        exports = {}
        for fmt, link in frozen["urls"].items():
            started = time.perf_counter()
            answer = await http.get(link)
            answer.raise_for_status()
            exports[fmt] = {"kb": round(len(answer.content) / 1024, 1),
                            "ms": _ms(time.perf_counter() - started)}
        document = (await http.get(frozen["urls"]["json"])).content
        started = time.perf_counter()
        imported = await http.post("/api/v1/import", content=document)
        import_ms = _ms(time.perf_counter() - started)
        imported.raise_for_status()
        freezes = [(await _frozen_board(http, f"Atelier {n}", cards, rng))[1]
                   for n in range(boards)]
        latencies, hits = [], 0
        for query in QUERIES * 3:
            started = time.perf_counter()
            answer = await http.get("/api/v1/search", params={"q": query})
            latencies.append(time.perf_counter() - started)
            answer.raise_for_status()
            hits += bool(answer.json())
    latencies.sort()
    return {
        "archived_cards": big * 2 + boards * cards,
        "freeze_big": {"cards": big, "ms": _ms(big_freeze)},
        "freeze_each": {"cards": cards, "boards": boards,
                        "p50_ms": _ms(statistics.median(freezes)) if freezes else None,
                        "max_ms": _ms(max(freezes)) if freezes else None},
        "exports_of_big": exports,
        "import_of_big_ms": import_ms,
        "search": {"queries": len(latencies), "with_results": hits,
                   "p50_ms": _ms(statistics.median(latencies)),
                   "p95_ms": _ms(latencies[int(len(latencies) * 0.95) - 1]),
                   "max_ms": _ms(latencies[-1])},
    }


def report(result: dict[str, Any]) -> str:
    big, each, search = result["freeze_big"], result["freeze_each"], result["search"]
    lines = [
        f"freeze of a {big['cards']}-card board: {big['ms']} ms",
        f"freeze of {each['boards']} boards of {each['cards']} cards: p50 {each['p50_ms']} ms, "
        f"max {each['max_ms']} ms",
        "exports of the big board: " + ", ".join(
            f"{fmt} {e['kb']} KB in {e['ms']} ms" for fmt, e in result["exports_of_big"].items()),
        f"import of the big board's JSON: {result['import_of_big_ms']} ms",
        f"search over {result['archived_cards']} archived cards: p50 {search['p50_ms']} ms, "
        f"p95 {search['p95_ms']} ms, max {search['max_ms']} ms "
        f"({search['queries']} queries, {search['with_results']} with results)",
    ]
    return "\n".join(lines)


@click.command("bench-archive")
@click.option("--url", default=None, help="A running server (default: start one).")
@click.option("--big", type=click.IntRange(min=1), default=500, show_default=True,
              help="Cards on the big board.")
@click.option("--boards", type=click.IntRange(min=0), default=50, show_default=True,
              help="Other boards frozen.")
@click.option("--cards", type=click.IntRange(min=1), default=100, show_default=True,
              help="Cards per other board.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
def bench_archive(url: str | None, big: int, boards: int, cards: int, as_json: bool) -> None:
    """Measure freeze, exports, import and search on an archive built for the purpose."""
    if url is not None:
        result = asyncio.run(run(url, big=big, boards=boards, cards=cards))
    else:
        with tempfile.TemporaryDirectory(prefix="board-bench-") as tmp:
            server = Server.start(Path(tmp))
            try:
                server.wait_healthy()
                result = asyncio.run(run(server.url, big=big, boards=boards, cards=cards))
            finally:
                server.stop()
    click.echo(json.dumps(result, indent=2) if as_json else report(result))
