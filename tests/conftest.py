"""Shared fixtures: a real `board serve` process on 127.0.0.1 with a real SQLite file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


TEST_LIMITS = {
    "BOARD_RATE_POSTS_PER_PARTICIPANT": "100000/minute",
    "BOARD_RATE_POSTS_PER_IP": "1000000/minute",
    "BOARD_RATE_JOINS_PER_IP": "1000000/minute",
}


class LiveServer:
    """A real server process; restartable on the same port and database file."""

    def __init__(self, db_path: Path, log_path: Path, env: dict[str, str] | None = None,
                 log_level: str = "warning"):
        self.log_level = log_level
        self.db_path = db_path
        self.log_path = log_path
        self.port = free_port()
        # Tests post from one address faster than people do: generous limits unless a test
        # sets its own (tests/resilience and the rate-limit tests do).
        self.env = {**os.environ, **TEST_LIMITS, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "board", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port), "--database", f"sqlite:///{self.db_path}",
                 "--log-level", self.log_level],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=self.env,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not answer in 30 s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(tmp_path / "board.db", tmp_path / "server.log")
    live.start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One real server for a whole test module (tests there make their own boards)."""
    folder = tmp_path_factory.mktemp("module-server")
    live = LiveServer(folder / "board.db", folder / "server.log")
    live.start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
