"""An embedded PostgreSQL server for development and tests, from the `pgserver` wheel.

The wheel ships real PostgreSQL binaries; this module drives `initdb` and `pg_ctl` itself so
the server listens on a loopback TCP port (like any other server) and can be stopped and
started again (tests restart it to prove workers survive), and can have a streaming
standby that is promoted when the primary goes away (the failover test). When run as root,
PostgreSQL refuses to start, so the server runs as an unprivileged system user.

`PgBouncer` runs the system's `pgbouncer` in transaction mode in front of any server, for
the tests and the benchmark of what running behind it costs; it refuses root too.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from reportsvc.errors import ConfigError

RUN_AS = "pgserver"  # the user pgserver itself uses when started as root


def _bin_dir() -> Path:
    try:
        with warnings.catch_warnings():
            # pgserver asks platformdirs for a runtime directory on import, which warns
            # without a login session (XDG_RUNTIME_DIR unset, as in CI).
            warnings.simplefilter("ignore")
            from pgserver._commands import POSTGRES_BIN_PATH  # noqa: PLC0415
    except ImportError:  # pragma: no cover - a dependency of the dev extra
        raise ConfigError(
            "the embedded PostgreSQL needs the pgserver package: "
            "pip install 'reportsvc[embedded]' (make dev installs it), or set DATABASE_URL"
        ) from None
    return Path(POSTGRES_BIN_PATH)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir`, listening on `host:port`, trust auth."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        durable: bool = True,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.host = host
        self.port = port or self._remembered_port() or free_port(host)
        # Tests trade crash safety for speed; a developer's reports are kept safe.
        self.durable = durable
        self._bin = _bin_dir()
        self._user = unprivileged_user()

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def start(self) -> str:
        """Create the cluster if needed and start it; returns its URL."""
        if self._user is not None:
            allow_traversal(self._bin)
        self._init()
        if not self.is_running():
            options = f"-h {self.host} -p {self.port} -c unix_socket_directories=''"
            if not self.durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            self._pg_ctl(
                "-w", "-t", "60", "-l", str(self.data_dir / "server.log"), "-o", options, "start"
            )
        return self.url

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            self._pg_ctl("-w", "-t", "60", "-m", mode, "stop")

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        result = subprocess.run(
            [str(self._bin / "pg_ctl"), "-D", str(self.data_dir), "status"],
            capture_output=True,
            check=False,
            # Drop root entirely: the user, its own group, and none of root's groups.
            user=self._user,
            group=self._user,
            extra_groups=[] if self._user else None,
        )
        return result.returncode == 0

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def standby(self, data_dir: Path, *, port: int | None = None) -> EmbeddedPostgres:
        """A streaming standby of this running server, copied into `data_dir` with
        `pg_basebackup -R` (which also writes its `primary_conninfo`); not started yet."""
        standby = EmbeddedPostgres(
            data_dir, port=port or free_port(self.host), host=self.host, durable=self.durable
        )
        standby.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            hand_over(standby.data_dir, self._user)
        self._run(
            "pg_basebackup",
            "-D", str(standby.data_dir),
            "-R",
            "--checkpoint=fast",
            "-h", self.host,
            "-p", str(self.port),
            "-U", "postgres",
        )  # fmt: skip
        # The copy remembers the primary's port; the standby listens on its own.
        (standby.data_dir / "reportsvc.port").write_text(str(standby.port))
        return standby

    def promote(self) -> None:
        """Make this standby a primary (it stops following and accepts writes)."""
        self._pg_ctl("-w", "-t", "60", "promote")

    # --- internals ------------------------------------------------------------------------

    def _remembered_port(self) -> int | None:
        saved = self.data_dir / "reportsvc.port"
        return int(saved.read_text()) if saved.exists() else None

    def _init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            hand_over(self.data_dir, self._user)
        self._run(
            "initdb",
            "-D", str(self.data_dir),
            "-U", "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            *([] if self.durable else ["--no-sync"]),
        )  # fmt: skip
        (self.data_dir / "reportsvc.port").write_text(str(self.port))

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), *args)

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            [str(self._bin / program), *args],
            capture_output=True,
            text=True,
            check=False,
            cwd="/",
            # Drop root entirely: the user, its own group, and none of root's groups.
            user=self._user,
            group=self._user,
            extra_groups=[] if self._user else None,
        )
        if result.returncode != 0:
            log = self.data_dir / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stderr.strip()}\n{tail}"
            )


def unprivileged_user() -> str | None:
    """Who runs servers that refuse root (PostgreSQL, PgBouncer): nobody special when we
    are not root; as root, the system user `RUN_AS`, created if needed."""
    if os.geteuid() != 0:
        return None
    try:
        import pwd  # noqa: PLC0415

        pwd.getpwnam(RUN_AS)
    except KeyError:
        subprocess.run(["useradd", "--system", "--shell", "/bin/false", RUN_AS], check=True)
    return RUN_AS


def hand_over(directory: Path, user: str) -> None:
    """Let `user` own `directory` and reach it (it may sit in a private directory, such as
    a checkout in a `mktemp -d` directory)."""
    shutil.chown(directory, user=user)
    directory.chmod(0o700)
    allow_traversal(directory)


def allow_traversal(path: Path) -> None:
    """Add the execute (search) bit for others to every directory above `path`; nothing
    becomes listable or readable that was not."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def pgbouncer_binary() -> str | None:
    """The system's `pgbouncer` program (Debian puts it in /usr/sbin), if installed."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/sbin")


class PgBouncer:
    """One PgBouncer process in transaction mode, in front of the server of `server_url`,
    with its files in `directory`; `url_for(url)` is `url` routed through it."""

    def __init__(self, server_url: str, directory: Path, *, pool_size: int = 4) -> None:
        self.port = free_port()
        self.pool_size = pool_size
        self.log_path = directory / "pgbouncer.log"
        self._server = urlsplit(server_url)
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    def url_for(self, url: str) -> str:
        """`url` (same user and database), connecting through PgBouncer instead."""
        parts = urlsplit(url)
        user = parts.username or "postgres"
        return urlunsplit((parts.scheme, f"{user}@127.0.0.1:{self.port}", *parts[2:]))

    def start(self) -> None:
        binary = pgbouncer_binary()
        if binary is None:
            raise ConfigError("pgbouncer is not installed (apt-get install pgbouncer)")
        self._directory.mkdir(parents=True, exist_ok=True)
        user = unprivileged_user()
        if user is not None:
            hand_over(self._directory, user)
        ini = self._directory / "pgbouncer.ini"
        ini.write_text(self._ini())
        (self._directory / "users.txt").write_text(f'"{self._server.username or "postgres"}" ""\n')
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [binary, str(ini)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._directory,
                user=user,
                group=user,
                extra_groups=[] if user else None,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while not self._accepts():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pgbouncer did not start:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        self._process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _accepts(self) -> bool:
        with socket.socket() as probe:
            probe.settimeout(0.5)
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def _ini(self) -> str:
        host = self._server.hostname or "127.0.0.1"
        password = f" password={self._server.password}" if self._server.password else ""
        return f"""\
[databases]
* = host={host} port={self._server.port or 5432}{password}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = users.txt
pool_mode = transaction
default_pool_size = {self.pool_size}
reserve_pool_size = 0
max_client_conn = 1000
; After PostgreSQL restarts, try logging in again after 1 s (the default is 15 s).
server_login_retry = 1
; A client waiting for a server connection gets an error (the API: 503) after 10 s.
query_wait_timeout = 10
"""
