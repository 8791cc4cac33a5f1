"""Fixtures of the booted-host layer (docs/booted-host.md): one Lab per session, the first boot
made once and kept as a layer, and `host` to boot more hosts on it.

Every test here carries the `booted` marker: `make test-fast` leaves them out, `make test-booted`
runs only them, `make test` runs both.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.booted.documents import Rendered, render
from tests.booted.host import BootedHost, ConvergeRun
from tests.booted.lab import INSTANCE_ID, Lab

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.booted)


@pytest.fixture(scope="session")
def dev_document() -> Rendered:
    """The dev stack's document as `pulumi up` would send it (MariaDB as the MySQL package)."""
    return render("dev")


@pytest.fixture(scope="session")
def lab(dev_document):
    lab = Lab(dev_document)
    yield lab
    lab.close()


class FirstBoot:
    def __init__(self, host: BootedHost, cloud_init: str, output: str, run: ConvergeRun):
        self.host, self.cloud_init, self.output, self.run = host, cloud_init, output, run


@pytest.fixture(scope="session")
def first_boot(lab, dev_document) -> FirstBoot:
    """A host's first boot, through the real user-data: cloud-init's NoCloud seed holds the dev
    stack's rendered #cloud-config, whose fetcher reads the parameter and the document from the
    SSM stand-in (what `pulumi up` published) and runs it. The converge it ran is `run`."""
    import time
    lab.publish(dev_document)
    started = time.monotonic()
    host = lab.boot(seed_user_data=dev_document.user_data)
    # cloud-init's last stage (runcmd: the fetcher, then converge) ends with boot-finished.
    deadline = started + 1200
    finished = host.machine.path(f"/var/lib/cloud/instances/{INSTANCE_ID}/boot-finished")
    while not finished.exists():
        assert host.machine.is_active("cloud-final.service") != "failed", "cloud-final.service failed"
        assert time.monotonic() < deadline, "cloud-init's final stage still running after 20 minutes"
        time.sleep(0.5)
    seconds = time.monotonic() - started
    status = host.machine.run(["cloud-init", "status", "--long"])
    output_log = host.machine.path("/var/log/cloud-init-output.log")
    output = output_log.read_text(errors="replace") if output_log.exists() else ""
    report = output[output.find("== converge "):] if "== converge " in output else output
    returncode = 0 if "== converged on" in report else 1
    lab.timings["first boot: boot + cloud-init + first converge"] = seconds
    return FirstBoot(host, status.stdout + status.stderr, output, ConvergeRun(returncode, report, "", seconds))


@pytest.fixture(scope="session")
def converged_layer(lab, first_boot) -> Path:
    """The first-booted host, powered off: its upper layer, the lower layer of later hosts."""
    return lab.shut(first_boot.host, keep_as_layer=True)


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
