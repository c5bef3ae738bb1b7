"""An embedded PostgreSQL server for development and tests, from the `pgserver` wheel.

The wheel ships real PostgreSQL binaries; this module drives `initdb` and `pg_ctl` itself so
the server listens on a loopback TCP port (like any other server) and can be stopped and
started again (tests restart it to prove workers survive). When run as root, PostgreSQL
refuses to start, so the server runs as an unprivileged system user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import warnings
from pathlib import Path

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
        self._user = self._system_user()

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def start(self) -> str:
        """Create the cluster if needed and start it; returns its URL."""
        if self._user is not None:
            _allow_traversal(self._bin)
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

    # --- internals ------------------------------------------------------------------------

    def _remembered_port(self) -> int | None:
        saved = self.data_dir / "reportsvc.port"
        return int(saved.read_text()) if saved.exists() else None

    def _init(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            self._grant(self.data_dir)
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

    @staticmethod
    def _system_user() -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            import pwd  # noqa: PLC0415

            pwd.getpwnam(RUN_AS)
        except KeyError:
            subprocess.run(["useradd", "--system", "--shell", "/bin/false", RUN_AS], check=True)
        return RUN_AS

    def _grant(self, directory: Path) -> None:
        """Let the unprivileged user own the data directory, and reach it and the
        PostgreSQL binaries (which may sit in a private directory, such as a checkout
        in a `mktemp -d` directory)."""
        assert self._user is not None
        shutil.chown(directory, user=self._user)
        directory.chmod(0o700)
        _allow_traversal(directory)


def _allow_traversal(path: Path) -> None:
    """Add the execute (search) bit for others to every directory above `path`; nothing
    becomes listable or readable that was not."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
