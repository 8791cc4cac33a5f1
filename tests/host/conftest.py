"""What the host layer's converge tests share: the dev stack's bundle, a scratch host, and one
first converge of that bundle that the tests which start from it read or copy."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.support.converge_harness import ConvergeRun, Host
from tests.support.dogstatsd_events import Event


@pytest.fixture(scope="session")
def dev_files(rendered_bundle) -> dict[str, str]:
    """The dev stack's bundle, path -> content, as the host unpacks it."""
    return rendered_bundle("dev")


@pytest.fixture
def host(tmp_path) -> Host:
    """A scratch root no converge has run in yet (tests/support/converge_harness.py)."""
    return Host(tmp_path)


@dataclass(frozen=True)
class FirstConverge:
    """A default scratch host after its first converge on the dev bundle: that run, and the
    Datadog events it sent. Shared by every test of the session: read it, never change it;
    a test that converges again takes a copy (`converged`)."""
    host: Host
    run: ConvergeRun
    events: list[Event]


@pytest.fixture(scope="session")
def first_converge(tmp_path_factory, dev_files) -> FirstConverge:
    host = Host(tmp_path_factory.mktemp("converged"))
    run = host.converge(dev_files)
    assert run.returncode == 0, run.stdout + run.stderr
    return FirstConverge(host, run, host.events())


@pytest.fixture
def converged(first_converge, tmp_path) -> Host:
    """A host after its first converge on the dev bundle (a copy of one, run once)."""
    return first_converge.host.copy(tmp_path / "host")
