"""`board` command line: serve, migrate, export, import, retention, bench."""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import logging
import logging.config
import os
import re
import resource
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click
import uvicorn

from board.netaddr import lan_addresses
from board.settings import Settings

if TYPE_CHECKING:
    from board.archive import Archive


class RedactSecrets(logging.Filter):
    """Keep animator secrets (?key=…) out of access logs."""

    pattern = re.compile(r"(key=)[^&\s\"]+")  # animator and organiser secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self.pattern.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        return True


def raise_open_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def print_urls(host: str, port: int, public_url: str | None) -> None:
    if public_url:
        bases = [public_url.rstrip("/")]
    elif host in ("0.0.0.0", "::", ""):
        bases = [f"http://{a}:{port}" for a in lan_addresses()] + [f"http://127.0.0.1:{port}"]
        if len(bases) == 1:
            click.echo("  (aucune adresse réseau trouvée : les téléphones ne pourront pas "
                       "joindre ce poste / no network address found: phones cannot reach it)")
    else:
        bases = [f"http://{host}:{port}"]
    click.echo("Atelier board")
    click.echo(f"  Créer un atelier / create a board : {bases[0]}/")
    for base in bases[1:]:
        click.echo(f"  Aussi / also                     : {base}/")
    click.echo("  Participants : le code affiché au projecteur / the code on the projector")
    click.echo("  Ctrl+C pour arrêter / to stop")


@click.group()
def cli() -> None:
    """Atelier board: a live board for participatory workshops."""


@cli.command()
@click.option("--host", default=None, help="Interface to listen on (default 0.0.0.0: all).")
@click.option("--port", default=None, type=int, help="Port (default 8000).")
@click.option("--database", "database_url", default=None,
              help="sqlite:///path.db (default ./board.db) or postgresql://…")
@click.option("--public-url", default=None, help="Base URL for links and QR codes.")
@click.option("--workers", default=None, type=click.IntRange(1, 64),
              help="Worker processes (default 1). More than one needs PostgreSQL or "
              "BOARD_PUBSUB_URL.")
@click.option("--pubsub", "pubsub_url", default=None,
              help="Pub/sub between workers: redis://host:6379/0 or postgresql://…")
@click.option("--log-level", default="info", show_default=True)
def serve(host: str | None, port: int | None, database_url: str | None,
          public_url: str | None, workers: int | None, pubsub_url: str | None,
          log_level: str) -> None:
    """Run the board (migrations applied at start)."""
    overrides = {k: v for k, v in {"host": host, "port": port, "database_url": database_url,
                                   "public_url": public_url, "workers": workers,
                                   "pubsub_url": pubsub_url}.items() if v is not None}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    from board.app import MissingAssets, check_assets, create_app
    from board.socket_protocol import BoardSocketProtocol

    if settings.workers > 1 and settings.pubsub() is None:
        raise click.ClickException(
            "Plusieurs workers ont besoin de PostgreSQL ou de BOARD_PUBSUB_URL (redis://…) pour "
            "se passer les événements / several workers need PostgreSQL or BOARD_PUBSUB_URL "
            "(redis://…) to pass events to each other")
    raise_open_file_limit()
    log_config = logging_config(log_level)
    logging.config.dictConfig(log_config)
    logging.getLogger("uvicorn.access").addFilter(RedactSecrets())
    options = dict(
        log_config=log_config,
        host=settings.host,
        port=settings.port,
        ws=BoardSocketProtocol,  # websockets-sansio, lighter per socket
        ws_max_size=settings.ws_max_frame_bytes,
        ws_per_message_deflate=False,  # ~3x memory per socket and ~40 % throughput
        log_level=log_level,
        timeout_graceful_shutdown=5,
    )
    if settings.workers == 1:
        try:
            app = create_app(settings)
        except MissingAssets as exc:
            raise click.ClickException(str(exc)) from exc
        print_urls(settings.host, settings.port, settings.public_url)
        uvicorn.run(app, **options)  # type: ignore[arg-type]
        return
    # Several workers: migrate once here, then each worker builds its app from the same
    # settings (passed down as BOARD_* variables) without migrating again.
    from board.migrate import upgrade

    try:
        check_assets()  # before migrating and starting workers that would all fail
    except MissingAssets as exc:
        raise click.ClickException(str(exc)) from exc
    upgrade(settings.database_url)
    for name, value in overrides.items():
        os.environ[f"BOARD_{name.upper()}"] = str(value)
    print_urls(settings.host, settings.port, settings.public_url)
    click.echo(f"  {settings.workers} workers, pub/sub : {_redact(settings.pubsub() or '')}")
    uvicorn.run("board.app:worker_app", factory=True, workers=settings.workers,
                **options)  # type: ignore[arg-type]


def logging_config(level: str) -> dict[str, Any]:
    """Uvicorn's console logging, extended to the board's own loggers (hub, migrations, …)."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["board"] = {"handlers": ["default"], "level": level.upper(),
                                  "propagate": False}
    # One line per socket opened only when debugging (see board.socket_protocol).
    config["loggers"]["board.sockets"] = {
        "level": level.upper() if level.lower() in ("debug", "trace") else "WARNING"}
    return config


def _redact(url: str) -> str:
    """A URL without its password, for the console."""
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)


@cli.command()
@click.option("--database", "database_url", default=None, help="Database URL.")
def migrate(database_url: str | None) -> None:
    """Apply database migrations (for deployments that start several workers)."""
    from board.migrate import upgrade

    settings = Settings(**({"database_url": database_url} if database_url else {}))  # type: ignore[arg-type]
    upgrade(settings.database_url)
    click.echo(f"Database up to date: {settings.database_url}")


@asynccontextmanager
async def _archive(database_url: str | None) -> AsyncIterator[tuple[Archive, Settings]]:
    """The archive commands on the configured database (migrated first), without a server."""
    from board.archive import Archive
    from board.commands import Commands
    from board.hub import MemoryHub
    from board.migrate import upgrade
    from board.store import Store

    settings = Settings(**({"database_url": database_url} if database_url else {}))  # type: ignore[arg-type]
    await asyncio.to_thread(upgrade, settings.database_url)
    store = Store.open(settings.database_url, busy_timeout=settings.db_busy_timeout)
    try:
        commands = Commands(store, MemoryHub(), settings)
        yield Archive(commands, pdf=importlib.util.find_spec("weasyprint") is not None), settings
    finally:
        await store.close()


def _fail(error: Exception) -> NoReturn:
    from board.errors import RuleViolation

    if isinstance(error, RuleViolation):
        raise click.ClickException(f"{error.message('fr')} / {error.message('en')}")
    raise error


@cli.command("export")
@click.argument("join_code")
@click.option("--format", "fmt", type=click.Choice(["json", "md", "csv", "html", "pdf"]),
              default="json", show_default=True)
@click.option("--version", "version", type=int, default=None,
              help="Which version (default: the latest).")
@click.option("--output", "-o", type=click.Path(dir_okay=False), default=None,
              help="File to write (default: the synthesis' own file name; '-' for stdout).")
@click.option("--database", "database_url", default=None, help="Database URL.")
def export_command(join_code: str, fmt: str, version: int | None, output: str | None,
                   database_url: str | None) -> None:
    """Export a board's synthesis (frozen version) to a file."""
    from board import synthesis as syn

    async def run() -> tuple[bytes, str]:
        from board.render import Renderer
        from board.web.syntheses import export_body, to_pdf

        async with _archive(database_url) as (archive, settings):
            board = await archive.commands.find_board(join_code)
            versions = await archive.versions(board)
            chosen = [v for v in versions if version is None or v.version == version]
            if not chosen:
                which = "" if version is None else f" version {version}"
                raise click.ClickException(
                    f"aucune synthèse{which} pour {board.join_code} / "
                    f"no synthesis{which} for {board.join_code}")
            row, content = await archive.by_slug(chosen[-1].slug)
            html_or_text = export_body(Renderer(settings.timezone), content, row.hash,
                                       "html" if fmt == "pdf" else fmt, base_name=row.slug,
                                       exports=archive.exports())
            data = to_pdf(html_or_text) if fmt == "pdf" else html_or_text.encode()
            return data, syn.filename(content, fmt)

    try:
        data, name = asyncio.run(run())
    except Exception as error:  # noqa: BLE001 - shown as a clear message, not a trace
        _fail(error)
    if output == "-":
        sys.stdout.buffer.write(data)
        return
    path = output or name
    with open(path, "wb") as handle:
        handle.write(data)
    click.echo(f"{path} ({len(data)} octets / bytes)")


@cli.command("import")
@click.argument("file", type=click.File("rb"))
@click.option("--database", "database_url", default=None, help="Database URL.")
def import_command(file: IO[bytes], database_url: str | None) -> None:
    """Recreate an archived board from a synthesis JSON export (board export --format json)."""
    from board.web.common import json_object

    async def run() -> tuple[str, int, str, str]:
        async with _archive(database_url) as (archive, _settings):
            board, version, token = await archive.import_synthesis(json_object(file.read()))
            return board.join_code, version.version, version.slug, token

    try:
        code, number, slug, token = asyncio.run(run())
    except Exception as error:  # noqa: BLE001
        _fail(error)
    click.echo(f"Imported: board {code}, synthesis version {number}")
    click.echo(f"  synthesis: /s/{slug}")
    click.echo(f"  animator:  /b/{code}/animator?key={token}")


@cli.command("retention")
@click.option("--days", type=int, default=None,
              help="Anonymise boards frozen this many days ago or more "
                   "(default: BOARD_RETENTION_DAYS).")
@click.option("--database", "database_url", default=None, help="Database URL.")
def retention_command(days: int | None, database_url: str | None) -> None:
    """Delete pseudonyms from boards frozen long enough ago (what the server does hourly)."""
    async def run() -> list[str]:
        async with _archive(database_url) as (archive, settings):
            limit = days if days is not None else settings.retention_days
            if limit is None:
                raise click.ClickException(
                    "indiquez --days ou BOARD_RETENTION_DAYS / "
                    "give --days or set BOARD_RETENTION_DAYS")
            return await archive.apply_retention(limit)

    codes = asyncio.run(run())
    click.echo(f"Anonymised: {len(codes)} board(s) {' '.join(codes)}".rstrip())


try:
    from board.bench import bench
except ImportError:  # pragma: no cover - bench is optional while it is being written
    pass
else:
    cli.add_command(bench)
    from board.bench_archive import bench_archive

    cli.add_command(bench_archive)


def main() -> None:
    cli()
