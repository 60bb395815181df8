"""Real database and cache servers for the tests: a PostgreSQL cluster and a Redis server.

Plain classes, no pytest in here: the fixtures (tests/conftest.py) decide their lifetimes.
The binaries come from Debian packages (`postgresql`, `redis-server`); `make system-deps`
installs them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

INSTALL_HINT = "run `make system-deps` (it installs the Debian packages the tests need)"


class EngineMissing(RuntimeError):
    """A server binary the tests need is not installed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM,
                 timeout: float = 15) -> None:
    """Signal a child process and wait for it; killed if it does not end within `timeout`."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def postgres_bindir() -> Path:
    """The newest PostgreSQL server binaries under /usr/lib/postgresql/<version>/bin."""
    candidates = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        with contextlib.suppress(ValueError):
            candidates.append((float(initdb.parent.parent.name), initdb.parent))
    if not candidates:
        raise EngineMissing(
            f"PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): "
            f"{INSTALL_HINT}, or `apt-get install postgresql`")
    return max(candidates)[1]


class PostgresCluster:
    """A throw-away PostgreSQL cluster: its own data directory, port and socket directory.

    Trust authentication for a superuser named ``board``. When the tests run as root (CI
    does), initdb and postgres refuse to: they then run as the ``postgres`` user (created by
    the Debian package) with the cluster in a directory of its own that this user owns,
    since pytest's temporary directories are private to root; ``stop()`` removes it.
    """

    USER = "board"

    def __init__(self, workdir: Path, *, max_connections: int = 300) -> None:
        self.workdir = Path(workdir)
        self.max_connections = max_connections
        self.port = 0
        self.bindir = postgres_bindir()
        self._run_as: str | None = None
        self._own_dir: Path | None = None
        if os.getuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise EngineMissing(
                    f"running as root needs the `postgres` user to run the server: "
                    f"{INSTALL_HINT}") from exc
            self._run_as = "postgres"
        self.datadir = self.workdir / "pgdata"
        self.sockdir = self.workdir
        self.logfile = self.workdir / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None

    # --- plumbing --------------------------------------------------------------------

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if self._run_as is None:
            return argv
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        return [runuser, "-u", self._run_as, "--", *argv]

    def _run(self, argv: list[str], *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self._as_server_user(argv), capture_output=True, text=True,
                                timeout=timeout, env={**os.environ, "LC_ALL": "C"})
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv[:2])} failed ({result.returncode}):\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}\n{self._log_tail()}")
        return result

    def _log_tail(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def _prepare_dirs(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._run_as is None:
            return
        # A directory the server user owns and can reach (a root-only tmp dir is not).
        user = pwd.getpwnam(self._run_as)
        self._own_dir = Path(tempfile.mkdtemp(prefix="board-pg-"))
        os.chmod(self._own_dir, 0o700)
        os.chown(self._own_dir, user.pw_uid, user.pw_gid)
        self.datadir = self._own_dir / "pgdata"
        self.sockdir = self._own_dir
        self.logfile = self._own_dir / "postgres.log"
        # Keep a pointer next to the other test files, for someone reading a failure.
        with contextlib.suppress(OSError):
            link = self.workdir / "pgdata"
            if not link.exists():
                link.symlink_to(self._own_dir)

    # --- lifetime --------------------------------------------------------------------

    def start(self) -> None:
        """initdb (first time only), then start the server and wait until it accepts.

        The postmaster is this process's own child (not daemonized by pg_ctl), so that a
        killed server is reaped here rather than left a zombie holding its lock files."""
        if self.process is not None and self.process.poll() is None:
            return
        if not (self.datadir / "PG_VERSION").exists():
            self._prepare_dirs()
            self._run([str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.USER,
                       "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"])
        if not self.port:
            self.port = free_port()
        argv = [
            str(self.bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.sockdir}",
            "-c", f"max_connections={self.max_connections}",
            # Test data need not survive a power cut (no fsync); a killed server still loses
            # no acknowledged commit: synchronous_commit stays on (WAL reaches the OS first).
            "-c", "fsync=off", "-c", "full_page_writes=off",
            "-c", "shared_buffers=32MB",
        ]
        if self._run_as is not None:
            # setpriv execs (runuser would fork): the child's pid is the postmaster's.
            setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
            argv = [setpriv, f"--reuid={self._run_as}", f"--regid={self._run_as}",
                    "--init-groups", "--", *argv]
        with open(self.logfile, "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL,
                                            env={**os.environ, "LC_ALL": "C"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                raise RuntimeError(f"PostgreSQL exited at start:\n{self._log_tail()}")
            if self._psql("SELECT 1", check=False).returncode == 0:
                return
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"PostgreSQL did not accept connections:\n{self._log_tail()}")

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server (fast shutdown); with ``remove``, drop the cluster's own dir."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)  # fast shutdown
                try:
                    self.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.kill()
            self.process = None
        if remove and self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None

    def kill(self) -> None:
        """SIGKILL the server and its backends (a crash); `start()` brings the same cluster
        back (it recovers from its write-ahead log)."""
        if self.process is None:
            return
        pid = self.process.pid
        family = [pid, *_children(pid)]
        for member in family:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(member, signal.SIGKILL)
        self.process.wait(timeout=15)
        self.process = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(member) for member in family):
            time.sleep(0.05)
        # Lock files of the dead server (its backends, orphaned, may linger as zombies).
        for stale in [self.datadir / "postmaster.pid",
                      *self.sockdir.glob(f".s.PGSQL.{self.port}*")]:
            with contextlib.suppress(OSError):
                stale.unlink()

    def restart(self) -> None:
        self.stop(remove=False)
        self.start()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # --- databases -------------------------------------------------------------------

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{dbname}"

    def _psql(self, sql: str, *, dbname: str = "postgres",
              check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", self.USER, "-d", dbname,
             "-c", sql],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "PGCONNECT_TIMEOUT": "5"})
        if check and result.returncode != 0:
            raise RuntimeError(f"psql failed: {sql!r}\n{result.stderr}")
        return result

    def execute(self, sql: str, dbname: str = "postgres") -> str:
        """Run SQL through psql; the unaligned, tuples-only output."""
        return self._psql(sql, dbname=dbname).stdout

    def create_database(self, name: str) -> str:
        """A fresh, empty database; its URL."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"database name {name!r}: lower-case letters, digits, _")
        self._psql(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\'')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self._psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', check=False)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not reaped, does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class RedisServer:
    """A redis-server process on a fixed port: `stop()` then `start()` comes back on the
    same port (an outage, as a test sees it). Nothing is saved to disk."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.binary = shutil.which("redis-server") or (
            "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
        if self.binary is None:
            raise EngineMissing(f"redis-server not found: {INSTALL_HINT}, "
                                f"or `apt-get install redis-server`")
        self.port = free_port()
        self.logfile = self.workdir / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        while True:
            with self.logfile.open("ab") as log:
                self.process = subprocess.Popen(
                    [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--daemonize", "no",
                     "--dir", str(self.workdir), "--protected-mode", "no"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            while time.monotonic() < deadline and self.process.poll() is None:
                if self.ping():
                    return
                time.sleep(0.05)
            if self.process.poll() is None:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING:\n{self._log_tail()}")
            # It exited: after a stop, the port may still be held for a moment; retry.
            if time.monotonic() >= deadline:
                raise RuntimeError(f"redis-server exited:\n{self._log_tail()}")
            time.sleep(0.2)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            stop_process(self.process, sig, timeout=10)
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _log_tail(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-3000:]
        except OSError:
            return ""
