"""Issue 21 on the booted OS: MySQL's data on the host's data volume survives a replacement of
the host, and an Agent version whose checks fail goes back to the previous one.

The data volume is a loop device over an image file (tests/booted/volume.py says what it
imitates and how it fails), bound into the container under the by-id link converge looks for.
A replacement is a fresh container from the clean image given the same volume, after the old
one was powered off (as the attachment's stop-before-detach does on EC2).
"""

from __future__ import annotations

from tests.booted.documents import render
from tests.booted.host import assert_succeeded
from tests.booted.lab import BROKEN_AGENT_VERSION, DATA_MOUNT, DATA_VOLUME_ID
from tests.booted.volume import DataVolume

ROW = "order 1: placed before the host was replaced"
# Root over MariaDB's socket, as the apps using MySQL would write (the datadog user may not).
WRITE_ROW = ("mysql -e \"CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, note TEXT); "
             f"INSERT INTO shop.orders VALUES (1, '{ROW}');\"")
READ_ROWS = "mysql -N -e 'SELECT note FROM shop.orders'"


def mounted(booted, path: str) -> str:
    return booted.machine.run(["findmnt", "-n", "-o", "SOURCE", "--mountpoint", path]).stdout.strip()


def test_mysqls_data_outlives_its_host_and_a_replacement_uses_it_as_it_is(lab, first_boot, converged_layer,
                                                                          dev_document):
    # The first host is the run's first boot: a new instance whose first converge found its
    # volume blank (its verdict was taken on the live host). Here it runs again on its disk and
    # a copy of its volume (a snapshot restored), one more row is written, and it goes.
    assert f"data volume {DATA_VOLUME_ID}: ext4 filesystem made (it was blank)" in first_boot.run.stdout
    first = lab.boot([converged_layer], volume=lab.converged_volume())
    volume = first.volume
    try:
        uuid = volume.uuid()
        assert uuid and f"filesystem {DATA_MOUNT}: mounted (UUID={uuid}" in first_boot.run.stdout
        written = first.sh(WRITE_ROW)
        assert written.returncode == 0, written.stdout + written.stderr
        first_password = first.mysql_conf()["password"]
        first.machine.poweroff()  # MariaDB stops, the filesystem is unmounted; then the volume goes
    finally:
        lab.shut(first)

    second = lab.boot(volume=volume)  # the replacement: a fresh container, the same volume
    try:
        run = second.converge(dev_document)
        # The whole verdict: units up, files as the manifest says, the datadog user logging in
        # with this host's new password (the grants applied again on the old data), the app, the Agent.
        second.assert_converged(dev_document, run)
        assert "filesystem made" not in run.stdout and volume.uuid() == uuid  # never formatted twice
        assert f"filesystem {DATA_MOUNT}: mounted (UUID={uuid}" in run.stdout
        assert mounted(second, "/var/lib/mysql") == f"{volume.device}[/mysql]"
        assert second.mysql_conf()["password"] != first_password
        rows = second.sh(READ_ROWS)
        assert rows.stdout.strip() == ROW, rows.stdout + rows.stderr
        assert f"UUID={uuid} {DATA_MOUNT} ext4" in second.machine.path("/etc/fstab").read_text()
        again = second.converge(dev_document)
        assert_succeeded(dev_document, again)
        assert again.changed_files() == {} and again.applied() == [], again.stdout
        assert set(again.report("service").values()) == {"kept"}, again.stdout
        assert f"filesystem {DATA_MOUNT}: kept" in again.stdout
    finally:
        lab.shut(second)


def test_without_its_volume_mysql_stays_down_converge_waits_a_bounded_time_then_uses_the_late_volume(
        lab, host, dev_document):
    booted = host(volume_attached=False)  # the converged host's disk, its volume not attached at boot
    # fstab's nofail let it boot. systemd still bound /var/lib/mysql (the volume's own line is a
    # device entry, which a container's fstab generator skips), from a source directory it made on
    # the root disk; the drop-in (through MariaDB's mysql.service alias) kept MariaDB down.
    assert mounted(booted, "/var/lib/mysql") == f"overlay[{DATA_MOUNT}/mysql]"
    assert mounted(booted, DATA_MOUNT) == ""
    show = booted.machine.ok(["systemctl", "show", "-p", "ConditionResult", "-p", "DropInPaths", "mariadb.service"])
    assert "ConditionResult=no" in show and "mysql.service.d/observability-lab-data-volume.conf" in show, show
    assert booted.machine.is_active("mariadb.service") != "active"
    run = booted.converge(dev_document, env={"CONVERGE_DATA_VOLUME_WAIT_SECONDS": "5"})
    assert run.returncode != 0
    last = run.stdout.strip().splitlines()[-1]
    assert (f"data volume {DATA_VOLUME_ID} (instance tag data-volume-id) did not appear under /dev/disk/by-id/ "
            "within 5 s: is it attached to this instance?") in last, last
    assert booted.machine.is_active("mariadb.service") != "active"
    # The volume attached at last: the next run unbinds the root disk's directory and binds the volume's.
    lab.attach_later(booted)
    run = booted.converge(dev_document)
    booted.assert_converged(dev_document, run)
    assert f"directory /var/lib/mysql: overlay[{DATA_MOUNT}/mysql] unbound" in run.stdout, run.stdout
    assert mounted(booted, "/var/lib/mysql") == f"{booted.volume.device}[/mysql]"


def test_an_agent_version_whose_checks_fail_is_rolled_back_through_apt(host, dev_document):
    booted = host()
    agent_files = {path: booted.machine.path(path).read_text() for path in (
        "/etc/datadog-agent/datadog.yaml", "/etc/datadog-agent/conf.d/custom_my_metric.yaml")}
    broken = f"1:{BROKEN_AGENT_VERSION}-1"
    run = booted.converge(render(agentVersion=BROKEN_AGENT_VERSION))
    assert run.returncode != 0, run.stdout
    assert f"package datadog-agent: {broken} -> 1:7.77.2-1 (rolled back)" in run.stdout, run.stdout
    last = run.stdout.strip().splitlines()[-1]
    assert last.startswith(f"FAILED: datadog-agent {broken} failed its checks; rolled back: 1:7.77.2-1 is "
                           "installed again and held, its previous files are back, and it passes its checks"), last
    assert booted.package("datadog-agent") == ("1:7.77.2-1", True)
    assert {path: booted.machine.path(path).read_text() for path in agent_files} == agent_files
    booted.assert_host_state(dev_document)  # the Agent runs, at its previous version, on its previous files
