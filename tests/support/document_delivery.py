"""A stack's configuration document delivered to a scratch host the way SSM runs it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from offline.engine import Evaluation
from offline.host_config import ConfigDocument
from tests.support.converge_harness import ConvergeRun, Host
from tests.support.evaluations import document


def run_document(host: Host, script: str) -> ConvergeRun:
    """The document's script run by `sh`, as the SSM Agent runs it (dash on Ubuntu)."""
    path = host.base / "_script.sh"
    path.write_text(script)
    return host.run(["sh", str(path)])


@dataclass(frozen=True)
class Delivery:
    document: ConfigDocument
    host: Host  # after the document's first run: copy it (Host.copy) to run anything more on it
    first: ConvergeRun


def deliver(evaluation: Evaluation, base: Path) -> Delivery:
    """The evaluation's document run once on a fresh host at `base`."""
    delivered = document(evaluation)
    host = Host(base)
    return Delivery(delivered, host, run_document(host, delivered.script))
