"""What the host layer's converge tests share: the dev stack's bundle, a scratch host (in
tests/conftest.py's `scratch`, on a RAM filesystem where there is one), one first converge of
that bundle that the tests which start from it read or copy, and one second converge of the
same bundle after it (a run with nothing to change) that the tests of such a run read."""

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
def host(scratch) -> Host:
    """A scratch root no converge has run in yet (tests/support/converge_harness.py)."""
    return Host(scratch)


@dataclass(frozen=True)
class FirstConverge:
    """A default scratch host after its first converge on the dev bundle: that run, and the
    Datadog events it sent. Shared by every test of the session: read it, never change it;
    a test that converges again takes a copy (`converged`)."""
    host: Host
    run: ConvergeRun
    events: list[Event]


@pytest.fixture(scope="session")
def first_converge(session_scratch, dev_files) -> FirstConverge:
    # strict: every command it runs is a recorder or a recording wrapper of the real tool
    # (Host.run), so the tests of what a first run runs (its command lines) read this one too.
    host = Host(session_scratch("converged-"))
    run = host.converge(dev_files, strict=True)
    assert run.returncode == 0, run.stdout + run.stderr
    return FirstConverge(host, run, host.events())


@pytest.fixture
def converged(first_converge, scratch) -> Host:
    """A host after its first converge on the dev bundle (a copy of one, run once)."""
    return first_converge.host.copy(scratch / "host")


@dataclass(frozen=True)
class SecondConverge:
    """A copy of the first converge's host, converged again on the same bundle: nothing to
    change. Shared by every test of the session: read it, never change it. first: the host
    it is a copy of, as that run left it."""
    first: Host
    host: Host
    run: ConvergeRun
    events: list[Event]


@pytest.fixture(scope="session")
def second_converge(session_scratch, first_converge, dev_files) -> SecondConverge:
    host = first_converge.host.copy(session_scratch("converged-again-") / "host")
    run = host.converge(dev_files)
    return SecondConverge(first_converge.host, host, run, host.events())
