"""A private network namespace for one booted host, and listening sockets inside it.

The container gets this namespace (`systemd-nspawn --network-namespace-path`) and nothing else:
loopback only, plus 169.254.169.254 for instance metadata. The stand-ins' listening sockets are
made inside it by the calling thread, which enters the namespace for the bind only (setns
affects only that thread; tests/support/netns.py's `entered`); the tests' own threads then serve
those sockets from the machine's namespace, so a relay can reach the package registries while
the container can reach nothing but these sockets.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.support.netns import entered


class NetworkNamespace:
    def __init__(self, name: str):
        self.name = name
        self.path = Path("/run/netns") / name
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        self.ip("link", "set", "lo", "up")

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", "-n", self.name, *args], check=True, capture_output=True)

    def add_address(self, address: str) -> None:
        """An address on the namespace's loopback (e.g. IMDS's link-local 169.254.169.254)."""
        self.ip("addr", "add", f"{address}/32", "dev", "lo")

    def listen(self, address: str, port: int) -> socket.socket:
        """A TCP socket listening on address:port inside the namespace."""
        def bind() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(128)
            return sock
        return self._inside(bind)

    def connect(self, address: str, port: int, timeout: float = 10) -> socket.socket:
        """A TCP connection made from inside the namespace (to the host's MySQL, its app)."""
        return self._inside(lambda: socket.create_connection((address, port), timeout=timeout))

    def _inside(self, make):
        with entered(self.name):  # this thread only, and back (tests/support/netns.py)
            return make()

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)
