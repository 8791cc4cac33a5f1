"""Network namespaces the tests create (`ip netns`), and reaching a server inside one.

Linux puts a socket in the network namespace of the thread that creates it, and a thread
may switch namespaces (setns(2), root only): so this process can be a client inside a
namespace (`entered`), and relay a port inside one to a loopback server outside it
(`LoopbackRelay`). Nothing here leaves loopback or the namespaces the tests made.
"""
from __future__ import annotations

import ctypes
import os
import secrets
import selectors
import socket
import subprocess
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _LIBC.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


@contextmanager
def entered(netns: str | None) -> Iterator[None]:
    """The calling thread inside `netns` (None: where it is) for the block: its sockets live there."""
    if netns is None:
        yield
        return
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def exec_in(netns: str | None) -> list[str]:
    """The command prefix that runs a program inside `netns` (nothing for None)."""
    return ["ip", "netns", "exec", netns] if netns else []


@dataclass(frozen=True)
class Pair:
    """Two namespaces joined by a veth pair: the server's at SERVER_ADDRESS, the client's at
    CLIENT_ADDRESS (TEST-NET-1, documentation addresses: nothing outside these namespaces)."""
    server: str
    client: str

    SERVER_ADDRESS = "192.0.2.1"
    CLIENT_ADDRESS = "192.0.2.2"


@contextmanager
def pair(prefix: str) -> Iterator[Pair]:
    if os.geteuid() != 0:
        raise PermissionError("network namespaces need root (CI and `make test` run as root)")
    tag = secrets.token_hex(3)
    server, client = f"{prefix}-s-{tag}", f"{prefix}-c-{tag}"
    commands = [
        ["ip", "netns", "add", server], ["ip", "netns", "add", client],
        ["ip", "link", "add", f"vs{tag}", "netns", server, "type", "veth", "peer", "name", f"vc{tag}",
         "netns", client],
        ["ip", "-n", server, "addr", "add", f"{Pair.SERVER_ADDRESS}/30", "dev", f"vs{tag}"],
        ["ip", "-n", client, "addr", "add", f"{Pair.CLIENT_ADDRESS}/30", "dev", f"vc{tag}"],
        *[["ip", "-n", ns, "link", "set", dev, "up"] for ns, dev in
          ((server, "lo"), (server, f"vs{tag}"), (client, "lo"), (client, f"vc{tag}"))],
    ]
    try:
        for command in commands:
            subprocess.run(command, check=True, capture_output=True)
        yield Pair(server, client)
    finally:
        for ns in (server, client):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class LoopbackRelay:
    """127.0.0.1:`port` inside `netns` relayed to 127.0.0.1:`target` of this process's own
    namespace, byte for byte, one outside connection per inside one: a server inside the
    namespace reaches a loopback server outside it (which sees a client on 127.0.0.1)."""

    def __init__(self, netns: str, port: int, target: int):
        self.target = target
        with entered(netns):
            self._listener = socket.create_server(("127.0.0.1", port))
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name=f"relay-{port}", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                inside, _ = self._listener.accept()
            except OSError:  # closed
                return
            try:
                outside = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                inside.close()
                continue
            outside.settimeout(None)
            threading.Thread(target=self._pump, args=(inside, outside), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            try:
                while not self._closed.is_set():
                    for key, _ in selector.select(timeout=0.5):
                        data = key.fileobj.recv(65536)
                        if not data:
                            return
                        peers[key.fileobj].sendall(data)
            except OSError:
                return
            finally:
                a.close()
                b.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
