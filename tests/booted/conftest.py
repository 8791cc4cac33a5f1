"""Fixtures of the booted-host layer (docs/booted-host.md): one Lab per session, the first boot
made once and kept as a layer, and `host` to boot more hosts on it.

Every test here carries the `booted` marker: `make test-fast` leaves them out, `make test-booted`
runs only them, `make test` runs both.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.booted.documents import Rendered, render
from tests.booted.host import BootedHost
from tests.booted.lab import FirstBoot, Lab, remove_run_dir, run_dirs_of

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.booted)


@pytest.fixture(scope="session")
def dev_document() -> Rendered:
    """The dev stack's document as `pulumi up` would send it (MariaDB as the MySQL package)."""
    return render("dev")


_TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def lab(dev_document):
    lab = Lab(dev_document)
    yield lab
    _TIMINGS.update(lab.timings)
    lab.close()


def pytest_sessionfinish(session):
    """The run's shared directory goes with the process that owns the run (xdist's controller)."""
    if not hasattr(session.config, "workerinput"):
        for directory in run_dirs_of(os.getpid()):
            remove_run_dir(directory)


def pytest_terminal_summary(terminalreporter):
    """What the session's shared steps took (reported, never asserted)."""
    if _TIMINGS:
        terminalreporter.write_sep("-", "booted host")
        for step, seconds in _TIMINGS.items():
            terminalreporter.write_line(f"{step}: {seconds:.1f} s")


@pytest.fixture(scope="session")
def first_boot(lab, dev_document) -> FirstBoot:
    """The run's first boot through the real user-data (Lab.first_boot), shared by every worker."""
    return lab.first_boot(dev_document)


@pytest.fixture(scope="session")
def converged_layer(first_boot) -> Path:
    """The first-booted host's disk, powered off: the lower layer of later hosts."""
    return first_boot.layer


@pytest.fixture
def host(lab, converged_layer):
    """Boots a host that was converged by the first boot (a fresh overlay over it), per test."""
    booted: list[BootedHost] = []

    def boot(**options) -> BootedHost:
        booted.append(lab.boot([converged_layer], **options))
        return booted[-1]

    yield boot
    for each in booted:
        lab.shut(each)
