"""A real, throwaway PostgreSQL server for tests and benchmarks (Debian's server binaries).

`PgServer().start()` runs initdb into a fresh temporary folder and starts `postgres` on
127.0.0.1 (a free port) and a Unix socket in that folder, tuned for speed (fsync off).
initdb and postgres refuse to run as root, so when we are root (as CI is) the server runs
as the `postgres` system user (Debian's package creates it) or, failing that, `nobody`.

Roles: `watcher` (superuser, trust on 127.0.0.1) and `secretive` (password required, for
the tests of `state_password_env`; its password is SECRET_PASSWORD).

Use `skip_reason()` to skip when no server binaries can be found.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER = "watcher"
SECRET_USER = "secretive"
SECRET_PASSWORD = "s3cret-pw-not-in-logs"
_FAST = {
    "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
    "max_connections": "200", "shared_buffers": "64MB", "max_wal_size": "1GB",
    "checkpoint_timeout": "30min", "log_min_messages": "warning",
    "logging_collector": "off", "jit": "off",
}
_UNSAFE = {"fsync", "synchronous_commit", "full_page_writes"}


def find_bin_dir() -> Path | None:
    """The folder holding initdb and postgres: $PG_BIN, Debian's layout, or the PATH."""
    candidates = [os.environ.get("PG_BIN", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit()
                         else 0, reverse=True)
    which = shutil.which("initdb")
    if which:
        candidates.append(str(Path(which).resolve().parent))
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "postgres").exists():
            return Path(folder)
    return None


def skip_reason() -> str | None:
    if find_bin_dir() is None:
        return ("PostgreSQL server binaries (initdb, postgres) not found: install Debian's "
                "`postgresql` package (scripts/test does when run as root) or set PG_BIN")
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> pwd.struct_passwd | None:
    """Who runs the server: None for ourselves, else an unprivileged system user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and neither a `postgres` nor a `nobody` user exists")


class PgServer:
    """One PostgreSQL server in a temporary folder; `stop()` removes everything."""

    def __init__(self, *, durable: bool = False) -> None:
        """`durable`: keep PostgreSQL's crash-safe defaults (fsync on), for benchmarks."""
        self.durable = durable
        self.bin = find_bin_dir()
        if self.bin is None:
            raise RuntimeError(skip_reason())
        self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="watcher-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._databases = 0

    # --- lifecycle ---

    def _popen_kwargs(self) -> dict[str, object]:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": [],
                "env": {**os.environ, "HOME": str(self.root), "USER": self.user.pw_name}}

    def start(self) -> PgServer:
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        pwfile = self.root / "pw"
        pwfile.write_text("unused-superuser-password\n")
        if self.user is not None:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        subprocess.run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
             "--no-sync", "-E", "UTF8", "--locale=C.UTF-8", "--pwfile", str(pwfile)],
            check=True, capture_output=True, cwd=self.root, **self._popen_kwargs())  # type: ignore[call-overload]
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"local all all trust\n"
                       f"host all {SECRET_USER} 127.0.0.1/32 scram-sha-256\n"
                       f"host all all 127.0.0.1/32 trust\n")
        self.launch()
        self.execute(f"CREATE ROLE {SECRET_USER} LOGIN PASSWORD '{SECRET_PASSWORD}'")
        return self

    def launch(self) -> None:
        """Start the server process on the existing data folder (again, after `halt`)."""
        args = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}"]
        for key, value in _FAST.items():
            if not (self.durable and key in _UNSAFE):
                args += ["-c", f"{key}={value}"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the server's life
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, cwd=self.root,
                                     start_new_session=True, **self._popen_kwargs())  # type: ignore[call-overload]
        log.close()
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log_path.read_text()[-2000:]}")
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def halt(self) -> None:
        """Stop the server process (fast shutdown: clients are disconnected); keep the data."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- databases ---

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database (owned by the superuser, public to SECRET_USER); its URL."""
        self._databases += 1
        name = f"{prefix}_{os.getpid()}_{self._databases}"
        self.execute(f"CREATE DATABASE {name} TEMPLATE template0 STRATEGY file_copy")
        self.execute(f"GRANT ALL ON SCHEMA public TO {SECRET_USER}", name)
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


_shared: PgServer | None = None


def shared_server() -> PgServer:
    """One server per test process (xdist worker), started on first use, stopped at exit."""
    global _shared
    if _shared is None:
        import atexit

        _shared = PgServer().start()
        atexit.register(_shared.stop)
    return _shared
