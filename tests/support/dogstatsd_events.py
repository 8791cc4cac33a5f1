"""A DogStatsD listener on loopback UDP, and a strict parser of its event datagrams.

The parser reads an event as the Agent's DogStatsD server does: the two declared lengths
(in bytes) say where the title and the text end, the optional fields follow as `|<key>:`,
tags last after `|#`. A datagram whose lengths disagree with its content is malformed.
"""
from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field

EVENT_HEAD = re.compile(rb"_e\{(\d+),(\d+)\}:")
FIELDS = {b"d": "date", b"h": "hostname", b"k": "aggregation_key", b"p": "priority", b"s": "source_type_name",
          b"t": "alert_type"}


@dataclass
class Event:
    title: str
    text: str
    hostname: str = ""
    alert_type: str = ""
    tags: list[str] = field(default_factory=list)
    others: dict[str, str] = field(default_factory=dict)

    def tag(self, key: str) -> str:
        (value,) = [t.split(":", 1)[1] for t in self.tags if t.startswith(key + ":")]
        return value


def parse_event(datagram: bytes) -> Event:
    """One event message: the Agent splits a datagram at newlines, which therefore only end it."""
    assert datagram.endswith(b"\n") and b"\n" not in datagram[:-1], f"not one newline-ended message: {datagram!r}"
    datagram = datagram[:-1]
    head = EVENT_HEAD.match(datagram)
    assert head, f"not a DogStatsD event: {datagram[:40]!r}"
    title_len, text_len = int(head[1]), int(head[2])
    start = head.end()
    title = datagram[start:start + title_len]
    assert datagram[start + title_len:start + title_len + 1] == b"|", f"title length {title_len} is wrong: {datagram!r}"
    start += title_len + 1
    text = datagram[start:start + text_len]
    rest = datagram[start + text_len:]
    assert len(text) == text_len and (rest == b"" or rest.startswith(b"|")), f"text length {text_len} is wrong"
    event = Event(title.decode().replace("\\n", "\n"), text.decode().replace("\\n", "\n"))
    for part in rest.split(b"|")[1:]:
        if part.startswith(b"#"):
            event.tags = part[1:].decode().split(",")
        else:
            key, _, value = part.partition(b":")
            assert key in FIELDS, f"unknown event field {part!r}"
            name = FIELDS[key]
            if hasattr(event, name):
                setattr(event, name, value.decode())
            else:
                event.others[name] = value.decode()
    return event


class Listener:
    """Collects every datagram sent to 127.0.0.1:<port>."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"

    def received(self, wait: float = 0.5, first: float | None = None) -> list[bytes]:
        """Every datagram that arrived, waiting `wait` s for stragglers after the last one
        (and `first` s, `wait` by default, for the first one: a sender that has finished
        sent it already, so a long bound there costs nothing when it has come)."""
        datagrams = []
        self.socket.settimeout(wait if first is None else first)
        try:
            while True:
                datagrams.append(self.socket.recv(65_535))
                self.socket.settimeout(wait)
        except TimeoutError:
            return datagrams

    def close(self) -> None:
        self.socket.close()
