"""A throwaway PostgreSQL server for the tests that need one (Debian's `postgresql` package; `make test` installs
it). Each test session gets its own cluster in a temporary folder, on a free loopback port, stopped at the end."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; CI runs as root, so the server runs as the package's `postgres` user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PostgresServer:
    def __init__(self) -> None:
        self.bin = _binaries()
        self.dir: Path | None = None
        self.port = 0

    def unavailable_reason(self) -> str | None:
        if self.bin is None:
            return "PostgreSQL server binaries not installed (apt-get install postgresql)"
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return "psycopg (v3) is not installed"
        return None

    def start(self) -> str:
        assert self.bin is not None
        self.dir = Path(tempfile.mkdtemp(prefix="tf-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        self.port = _free_port()
        subprocess.run(_as_postgres([str(self.bin / "initdb"), "-D", str(data), "-U", "tuneforge",
                                     "--auth=trust", "-E", "UTF8"]), check=True, capture_output=True, timeout=120)
        options = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir}"
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                                     str(self.dir / "server.log"), "-w", "-t", "60", "start"]),
                       check=True, capture_output=True, timeout=120)
        subprocess.run(_as_postgres([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                                     "tuneforge", "tuneforge"]), check=True, capture_output=True, timeout=60)
        return f"postgresql://tuneforge@127.0.0.1:{self.port}/tuneforge"

    def new_database(self, name: str) -> str:
        assert self.bin is not None
        subprocess.run(_as_postgres([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                                     "tuneforge", name]), check=True, capture_output=True, timeout=60)
        return f"postgresql://tuneforge@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.dir is None or self.bin is None:
            return
        subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate",
                                     "-w", "-t", "30", "stop"]), capture_output=True, timeout=60)
        deadline = time.time() + 10
        while time.time() < deadline and (self.dir / "data" / "postmaster.pid").exists():
            time.sleep(0.2)
        shutil.rmtree(self.dir, ignore_errors=True)
