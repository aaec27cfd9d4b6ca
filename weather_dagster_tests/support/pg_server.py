"""A throwaway PostgreSQL server started from the installed binaries, for tests and benchmarks.

``initdb`` refuses to run as root, so as root the cluster is owned by and run as the ``postgres``
system user (through ``runuser``); as anyone else it runs as that user directly. The server listens
on 127.0.0.1 only, on a free port, with fsync off, and is always stopped by :meth:`stop`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    pass


def _find_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if candidates:
        return candidates[0]
    raise PostgresUnavailable(
        f"PostgreSQL binary {name!r} not found: install the PostgreSQL server (e.g. apt-get install postgresql)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    base_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wd-pg-")))
    port: int = field(default_factory=_free_port)
    started: bool = False

    def _run_as(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        return [shutil.which("runuser") or "runuser", "-u", "postgres", "--"]

    def start(self) -> PostgresServer:
        initdb, pg_ctl = _find_bin("initdb"), _find_bin("pg_ctl")
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.base_dir, pw.pw_uid, pw.pw_gid)
        data = self.base_dir / "data"
        self._check([*self._run_as(), initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        options = (
            f"-p {self.port} -k {self.base_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._check(
            [*self._run_as(), pg_ctl, "-D", str(data), "-o", options, "-l", str(self.base_dir / "log"), "-w", "start"]
        )
        self.started = True
        return self

    def stop(self) -> None:
        if self.started:
            subprocess.run(
                [*self._run_as(), _find_bin("pg_ctl"), "-D", str(self.base_dir / "data"), "-m", "fast", "-w", "stop"],
                capture_output=True,
                check=False,
            )
            self.started = False
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def restart(self) -> None:
        """Fast-stop and start again on the same port and data (for fault tests)."""
        pg_ctl = _find_bin("pg_ctl")
        data = str(self.base_dir / "data")
        # -l: without a log file the new postmaster inherits pg_ctl's stdout pipe, and waiting for that
        # pipe to close (subprocess.run with capture_output) would block until the server stops.
        log = str(self.base_dir / "log")
        self._check([*self._run_as(), pg_ctl, "-D", data, "-l", log, "-m", "fast", "-w", "restart"])

    def _check(self, cmd: list[str]) -> None:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = self.base_dir / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise PostgresUnavailable(f"{' '.join(cmd[:4])}... failed: {result.stderr.strip()}\n{tail}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import sqlalchemy as sa

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        engine.dispose()
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import sqlalchemy as sa

        name = url.rsplit("/", 1)[1]
        engine = sa.create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        engine.dispose()

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
