"""A private MariaDB server on loopback for the tests: own data directory, no system service.

Debian packages MariaDB, not MySQL 8 (`make system-deps` installs `mariadb-server` and
`mariadb-client`). `mariadb-install-db` makes a fresh data directory under a temporary
directory; `mariadbd` then serves it on a Unix socket there and on 127.0.0.1 at a free
port. It is started once per test session, in the background as soon as the collected
tests need it (`Launch`, a few seconds, mostly writes: kept in memory when there is
room), and killed at the end.

The server is configured like the production one where it matters to the Agent's
queries: performance_schema on (MariaDB's default is off, MySQL 8's is on) and the
binary log on (MySQL 8's default, so the check issues SHOW BINARY LOGS).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pymysql

from tests.support import ram_directory
from tests.support.local_processes import free_port, stop, wait_until

STARTUP_SECONDS = 30


def _binary(name: str) -> str:
    # mariadbd lives in /usr/sbin, which a non-root PATH often lacks.
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if found is None:
        raise RuntimeError(f"{name} not found: install Debian's mariadb-server and mariadb-client "
                           "(`make system-deps`)")
    return found


def _user_args() -> list[str]:
    # mariadbd refuses to run as root unless told to; any other user runs it as itself.
    return ["--user=root"] if os.geteuid() == 0 else []


@dataclass
class PrivateMariaDB:
    root_dir: Path
    port: int
    process: subprocess.Popen
    storage: Path  # the data directory and the binary log: in memory when it can be

    @property
    def socket(self) -> Path:
        return self.root_dir / "mariadbd.sock"

    @property
    def client_dir(self) -> Path:
        """A directory whose `mysql` is the real client bound to this server's socket.

        Put first on PATH, it lets a script's own `... | mysql --user=root` line run
        unchanged against this server (--no-defaults: ignore /etc/mysql's socket).
        """
        return self.root_dir / "client"

    def connect(self, user: str, password: str = "", **kwargs) -> pymysql.connections.Connection:
        """PyMySQL (the driver of Datadog's mysql check) over TCP, as the Agent connects."""
        return pymysql.connect(host="127.0.0.1", port=self.port, user=user, password=password,
                               autocommit=True, connect_timeout=5, **kwargs)

    def root(self) -> pymysql.connections.Connection:
        return pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True)

    def stop(self) -> None:
        stop(self.process, signal.SIGKILL)  # throwaway data: no clean shutdown needed
        shutil.rmtree(self.storage, ignore_errors=True)


# Throwaway data in memory: on this machine's disk, creating the data directory alone waits
# ~6 s on its writes, ~1.5 s on tmpfs (tests/support's ram_directory).


def _storage(root_dir: Path) -> Path:
    memory = ram_directory("observability-lab-mariadb-")
    if memory is not None:
        return memory
    storage = root_dir / "storage"
    storage.mkdir()
    return storage


# Throwaway data: a small redo log and no flush at each commit keep the disk writes
# (most of the start-up time) small. Passed to mariadb-install-db's bootstrap server too.
FAST_STORAGE = ["--innodb-log-file-size=8M", "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0"]


class Launch:
    """`start(root_dir)` in a background thread; `server()` waits for it."""

    def __init__(self, root_dir: Path):
        self.root_dir = root_dir
        self._server: PrivateMariaDB | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mariadb-launch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._server = start(self.root_dir)
        except BaseException as error:  # noqa: BLE001 handed to server()
            self._error = error

    def server(self) -> PrivateMariaDB:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._server is not None
        return self._server

    def stop(self) -> None:
        self._thread.join()
        if self._server is not None:
            self._server.stop()
        shutil.rmtree(self.root_dir, ignore_errors=True)


def start(root_dir: Path) -> PrivateMariaDB:
    storage = _storage(root_dir)
    try:
        return _start(root_dir, storage)
    except BaseException:
        shutil.rmtree(storage, ignore_errors=True)
        raise


def _start(root_dir: Path, storage: Path) -> PrivateMariaDB:
    data, log = storage / "data", root_dir / "server.log"
    install = subprocess.run(
        [_binary("mariadb-install-db"), "--no-defaults", f"--datadir={data}", "--skip-test-db",
         # root logs in over the socket without a password, as Ubuntu's root does
         # (auth_socket there); the server is reachable by this user only.
         "--auth-root-authentication-method=normal", *_user_args(), *FAST_STORAGE],
        capture_output=True, text=True)
    if install.returncode != 0:
        raise RuntimeError(f"mariadb-install-db failed:\n{install.stdout}\n{install.stderr}")

    port = free_port()
    server = PrivateMariaDB(root_dir, port, storage=storage, process=subprocess.Popen(
        [_binary("mariadbd"), "--no-defaults", f"--datadir={data}", f"--socket={root_dir / 'mariadbd.sock'}",
         f"--port={port}", "--bind-address=127.0.0.1", f"--pid-file={root_dir / 'mariadbd.pid'}",
         f"--log-error={log}", "--skip-name-resolve", "--performance-schema=ON",
         f"--log-bin={storage / 'binlog'}", "--innodb-buffer-pool-size=32M", *FAST_STORAGE, *_user_args()],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))

    def ready() -> bool:
        if server.process.poll() is not None:
            raise RuntimeError(f"mariadbd exited with {server.process.returncode}:\n{log.read_text()}")
        try:
            server.root().close()
            return True
        except pymysql.err.OperationalError:
            return False

    try:
        wait_until(ready, STARTUP_SECONDS, "mariadbd")
    except BaseException:
        server.stop()
        raise
    server.client_dir.mkdir()
    wrapper = server.client_dir / "mysql"
    wrapper.write_text(f'#!/bin/sh\nexec {_binary("mariadb")} --no-defaults --socket={server.socket} "$@"\n')
    wrapper.chmod(0o755)
    return server

