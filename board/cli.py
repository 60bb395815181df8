"""`board` command line: serve, migrate, bench."""

from __future__ import annotations

import logging
import re
import resource

import click
import uvicorn

from board.netaddr import lan_addresses
from board.settings import Settings


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
@click.option("--log-level", default="info", show_default=True)
def serve(host: str | None, port: int | None, database_url: str | None,
          public_url: str | None, log_level: str) -> None:
    """Run the board (migrations applied at start)."""
    overrides = {k: v for k, v in {"host": host, "port": port, "database_url": database_url,
                                   "public_url": public_url}.items() if v is not None}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    from board.app import MissingAssets, create_app

    try:
        app = create_app(settings)
    except MissingAssets as exc:
        raise click.ClickException(str(exc)) from exc
    raise_open_file_limit()
    logging.getLogger("uvicorn.access").addFilter(RedactSecrets())
    print_urls(settings.host, settings.port, settings.public_url)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        ws="websockets-sansio",
        ws_max_size=settings.ws_max_frame_bytes,
        ws_per_message_deflate=False,  # ~3x memory per socket and ~40 % throughput
        log_level=log_level,
        timeout_graceful_shutdown=5,
    )


@cli.command()
@click.option("--database", "database_url", default=None, help="Database URL.")
def migrate(database_url: str | None) -> None:
    """Apply database migrations (for deployments that start several workers)."""
    from board.migrate import upgrade

    settings = Settings(**({"database_url": database_url} if database_url else {}))  # type: ignore[arg-type]
    upgrade(settings.database_url)
    click.echo(f"Database up to date: {settings.database_url}")


try:
    from board.bench import bench
except ImportError:  # pragma: no cover - bench is optional while it is being written
    pass
else:
    cli.add_command(bench)


def main() -> None:
    cli()
