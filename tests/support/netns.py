"""Network namespaces the tests create (`ip netns`), and reaching a server inside one.

Linux puts a socket in the network namespace of the thread that creates it, and a thread
may switch namespaces (setns(2), root only): so this process can be a client inside a
namespace (`entered`), listen inside one (`listen_in`), and relay what connects there to a
server outside it (`Relay`). Nothing here leaves loopback or the namespaces the tests made.
The booted layer's namespaces and stand-ins (tests/booted) are built on these.
"""
from __future__ import annotations

import ctypes
import os
import secrets
import socket
import subprocess
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)


def setns(fd: int) -> None:
    """The calling thread into the network namespace `fd` refers to (only this thread)."""
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
        setns(target)
        try:
            yield
        finally:
            setns(own)
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


def listen_in(netns: str, address: str, port: int) -> socket.socket:
    """A TCP socket listening on address:port inside `netns`."""
    with entered(netns):
        return socket.create_server((address, port))


class Relay:
    """Connections to `listener` (made inside a namespace) passed to `destination`, reached from
    this process's own namespace, byte for byte: a server inside the namespace reaches one
    outside it (a loopback destination sees a client on 127.0.0.1)."""

    def __init__(self, listener: socket.socket, destination: tuple[str, int]):
        self.listener = listener
        self.destination = destination
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"relay-{destination[0]}").start()

    def admit(self, client: socket.socket) -> bool:
        """Whether to relay this connection (a subclass may refuse, or count)."""
        return True

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed
                return
            if not self.admit(client):
                client.close()
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.destination, timeout=30)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self.listener.close()
