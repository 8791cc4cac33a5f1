"""converge.sh's data volume step, on the harness (tests/support/converge_harness.py): the volume found
by its EBS id under udev's link, a filesystem made only on a blank volume, mounted by UUID and
in fstab, MySQL's data directory on it (bound onto /var/lib/mysql before MySQL's package is
installed), a replaced host's data used as it is, and nothing on the volume ever removed.
The same step on a booted host with a real disk: tests/booted/.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support import DATA_MOUNT
from tests.support.converge_harness import (DATA_DISK, DATA_VOLUME_BYTES, DATA_VOLUME_ID, DATA_VOLUME_LINK,
                                            HOST_USERS, Host)

DATADIR = "/var/lib/mysql"
UUID = "0f3c5e2a-6b1d-4c8e-9a7f-2d4b6c8e0a13"  # what the harness's mkfs.ext4 writes
OTHER_UUID = "7d1e0c4b-2a9f-4e61-8b3d-5c0f1a2e9b74"
DROP_IN = "/etc/systemd/system/mysql.service.d/observability-lab-data-volume.conf"
FSTAB_LINES = [
    f"UUID={UUID} {DATA_MOUNT} ext4 defaults,nodev,nosuid,noexec,nofail 0 2",
    f"{DATA_MOUNT}/mysql {DATADIR} none bind,nofail,x-systemd.requires-mounts-for={DATA_MOUNT} 0 0",
]
# systemd's own generator (Debian's systemd package; Makefile: system-deps) reads the fstab.
GENERATOR = Path("/usr/lib/systemd/system-generators/systemd-fstab-generator")


def header(host: Host) -> bytes:
    return host.path(DATA_DISK).read_bytes()[:512]


def formatted(host: Host, uuid: str = OTHER_UUID) -> None:
    """The volume as another host left it: an ext4 filesystem, MySQL's data on it (another uid)."""
    disk = host.path(DATA_DISK).read_bytes()
    host.path(DATA_DISK).write_bytes(f"TYPE=ext4\nUUID={uuid}\n".encode() + disk[64:])
    data = host.path(f"{DATA_MOUNT}/mysql")
    (data / "shop").mkdir(parents=True)
    (data / "shop" / "orders.ibd").write_text("row 1: the order placed before the host was replaced\n")
    (data / "ibdata1").write_text("InnoDB system tablespace\n")
    for path in (data, data / "shop", data / "shop" / "orders.ibd", data / "ibdata1"):
        os.lchown(path, 4242, 4242)  # the old host's mysql user


def mounts(host: Host) -> list[tuple[str, str]]:
    path = host.fake / "mounts"
    lines = path.read_text().splitlines() if path.exists() else []
    return [tuple(line.split(" ", 1)) for line in lines]  # type: ignore[misc]


def removed_on_the_volume(host: Host) -> list[str]:
    """Every rm converge ran on a path of the data volume (argv of the real tools' wrappers)."""
    argv = (host.fake / "argv").read_text().splitlines() if (host.fake / "argv").exists() else []
    volume = str(host.path(DATA_MOUNT))
    return [line for line in argv if line.split(" ", 1)[0] in ("rm", "rmdir") and volume in line]


def test_a_blank_volume_gets_a_filesystem_mounted_by_uuid_and_mysqls_data_before_mysql_is_installed(first_converge):
    host, run = first_converge.host, first_converge.run  # a default host's first run, strict (conftest.py)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"data volume: {DATA_VOLUME_ID} (instance tag data-volume-id)" in run.stdout
    assert run.called("mkfs.ext4") == [f"mkfs.ext4 -q -L obslab-data {host.path(DATA_DISK)}"]
    assert header(host).startswith(f"TYPE=ext4\nUUID={UUID}\n".encode())
    disk, data = str(host.path(DATA_DISK)), host.path(f"{DATA_MOUNT}/mysql")
    assert mounts(host) == [(disk, str(host.path(DATA_MOUNT))), (f"{disk}[/mysql]", str(host.path(DATADIR)))]
    assert f"mount -t ext4 -o nodev,nosuid,noexec UUID={UUID} {host.path(DATA_MOUNT)}" in run.calls
    # MySQL's user first, then its directory on the volume bound onto the package's, then the package.
    order = [c for c in run.calls if c.startswith(("useradd", "mount --bind", "apt-get -o"))]
    assert order[0].endswith(" mysql") and order[1].startswith("mount --bind")
    assert any("mysql-server-8.0" in c for c in order[2:])
    assert (data.stat().st_uid, data.stat().st_gid, oct(data.stat().st_mode & 0o777)) == (
        HOST_USERS["mysql"], HOST_USERS["mysql"], "0o700")
    fstab = host.path("/etc/fstab").read_text().splitlines()
    assert fstab[-2:] == FSTAB_LINES
    assert host.path(DROP_IN).read_text().splitlines()[1:] == [
        "[Unit]", f"RequiresMountsFor={DATA_MOUNT} {DATADIR}", f"ConditionPathIsMountPoint={DATA_MOUNT}",
        f"ConditionPathIsMountPoint={DATADIR}"]
    assert (host.path(DROP_IN).stat().st_mode & 0o777) == 0o644
    assert "data volume vol-0123456789abcdef0: ext4 filesystem made (it was blank)" in run.stdout
    assert run.called("resize2fs") == []  # a new filesystem fills its volume


def test_a_second_run_finds_everything_in_place_and_changes_nothing(second_converge):
    host, run = second_converge.host, second_converge.run  # converged twice (tests/host/conftest.py)
    fstab = second_converge.first.path("/etc/fstab").read_text()  # as the first run left it
    assert run.returncode == 0, run.stdout
    assert run.called("mkfs.ext4") == [] and run.called("mount") == [] and run.called("chown") == []
    assert "system file" not in run.stdout and host.path("/etc/fstab").read_text() == fstab
    assert f"filesystem {DATA_MOUNT}: kept" in run.stdout


def test_a_replaced_host_uses_the_data_it_finds_and_gives_it_to_its_own_mysql_user(host, dev_files):
    formatted(host)
    run = host.converge(dev_files, strict=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.called("mkfs.ext4") == [] and header(host).startswith(f"TYPE=ext4\nUUID={OTHER_UUID}\n".encode())
    data = host.path(f"{DATA_MOUNT}/mysql")
    assert (data / "shop" / "orders.ibd").read_text().startswith("row 1:")
    assert {(p.stat().st_uid, p.stat().st_gid) for p in [data, *data.rglob("*")]} == {(HOST_USERS["mysql"],) * 2}
    assert f"directory {DATA_MOUNT}/mysql: 4 files given to this host's mysql user" in run.stdout
    assert f"UUID={OTHER_UUID} {DATA_MOUNT} ext4" in host.path("/etc/fstab").read_text()
    # This host made a new datadog password: MySQL gets it (the data's user had the old one), and the Agent.
    password = host.path("/etc/datadog-agent/conf.d/mysql.d/conf.yaml").read_text().split('password: "')[1][:48]
    sql = (host.fake / "mysql.sql").read_text()
    assert f"ALTER USER 'datadog'@'localhost' IDENTIFIED BY '{password}'" in sql
    assert removed_on_the_volume(host) == []


def test_the_packages_maintenance_user_gets_this_hosts_password_without_it_on_a_command_line(host, dev_files):
    formatted(host)
    cnf = host.path("/etc/mysql/debian.cnf")
    cnf.parent.mkdir(parents=True)
    cnf.write_text("[client]\nhost     = localhost\nuser     = debian-sys-maint\npassword = n3w'Pw\\d\n"
                   "socket   = /var/run/mysqld/mysqld.sock\n")
    run = host.converge(dev_files, strict=True)
    assert run.returncode == 0, run.stdout
    sql = (host.fake / "mysql.sql").read_text()
    assert "ALTER USER IF EXISTS 'debian-sys-maint'@'localhost' IDENTIFIED BY 'n3w''Pw\\\\d';" in sql
    assert "n3w" not in (host.fake / "argv").read_text() + "\n".join(run.calls)


def test_debians_mariadb_maintenance_user_is_root_without_a_password_and_left_alone(host, dev_files):
    cnf = host.path("/etc/mysql/debian.cnf")
    cnf.parent.mkdir(parents=True)
    cnf.write_text("[client]\nhost     = localhost\nuser     = root\n")
    assert host.converge(dev_files).returncode == 0
    assert "debian-sys-maint" not in (host.fake / "mysql.sql").read_text()


@pytest.mark.parametrize("content, says", [
    (b"TYPE=xfs\nUUID=" + OTHER_UUID.encode() + b"\n", "holds xfs, not ext4"),
    (b"PTTYPE=gpt\n", "holds partition table gpt, not ext4"),
    (b"\x00" * 4096 + b"some bytes blkid knows nothing about", "has no filesystem blkid knows, but it is not blank"),
], ids=["another-filesystem", "partitioned", "data-without-a-filesystem"])
def test_a_volume_that_is_neither_blank_nor_ext4_is_refused_and_left_as_it_is(host, dev_files, content, says):
    disk = host.path(DATA_DISK)
    disk.write_bytes(content + disk.read_bytes()[len(content):])
    before = disk.read_bytes()
    run = host.converge(dev_files)
    assert run.returncode != 0
    assert says in run.stdout.splitlines()[-1] and "nothing was changed on it" in run.stdout.splitlines()[-1]
    assert disk.read_bytes() == before
    assert run.called("mkfs.ext4") == [] and run.called("mount") == [] and run.called("apt-get") == []


@pytest.mark.parametrize("link", [f"{DATA_VOLUME_LINK}_1", f"{DATA_VOLUME_LINK}-ns-1"],
                         ids=["systemd-254-namespace", "amazon-ec2-utils"])
def test_the_volume_is_found_under_each_of_udevs_names_for_it(host, dev_files, link):
    host.path(DATA_VOLUME_LINK).unlink()
    host.path(link).symlink_to("../../nvme1n1")
    run = host.converge(dev_files)
    assert run.returncode == 0, run.stdout
    assert run.called("mkfs.ext4") == [f"mkfs.ext4 -q -L obslab-data {host.path(DATA_DISK)}"]


def test_a_volume_that_never_appears_fails_clearly_after_a_bounded_wait(host, dev_files):
    host.path(DATA_VOLUME_LINK).unlink()
    run = host.converge(dev_files)
    assert run.returncode != 0
    assert run.stdout.splitlines()[-1] == (
        f"FAILED: data volume {DATA_VOLUME_ID} (instance tag data-volume-id) did not appear under /dev/disk/by-id/ "
        f"within 600 s: is it attached to this instance? (aws ec2 describe-volumes --volume-ids {DATA_VOLUME_ID})")
    assert 590 <= len(run.called("sleep")) <= 600  # once a second, on the harness's clock
    assert run.called("apt-get") == [] and run.called("mkfs.ext4") == []


def test_a_volume_attached_while_converge_waits_is_used(host, dev_files):
    host.path(DATA_VOLUME_LINK).unlink()
    # The link appears after the 5th second of waiting (EC2 attaches the volume once the instance runs).
    sleep = host.bin / "sleep"
    sleep.write_text(sleep.read_text() + f'[ "$(cat "$FAKE/clock")" -lt 1700000005 ] || '
                                         f'ln -sf ../../nvme1n1 "$CONVERGE_ROOT{DATA_VOLUME_LINK}"\n')
    run = host.converge(dev_files)
    assert run.returncode == 0, run.stdout
    assert 4 <= len(run.called("sleep")) <= 6


@pytest.mark.parametrize("tag, says", [("vol-12", "is not an EBS volume id"), (None, "no instance tag data-volume-id")])
def test_a_missing_or_malformed_volume_tag_changes_nothing(host, dev_files, tag, says):
    host.tag_instance("data-volume-id", tag)
    run = host.converge(dev_files)
    assert run.returncode != 0 and says in run.stdout.splitlines()[-1]
    assert run.called("mount") == [] and run.called("apt-get") == []


def test_a_host_whose_mysql_ran_on_its_root_disk_gets_that_data_copied_onto_the_volume(host, dev_files):
    root_data = host.path(DATADIR)
    (root_data / "shop").mkdir(parents=True)
    (root_data / "shop" / "orders.ibd").write_text("the data of a host made before it had a volume\n")
    host.set("active.mysql")
    run = host.converge(dev_files)
    assert run.returncode == 0, run.stdout
    copied = host.path(f"{DATA_MOUNT}/mysql/shop/orders.ibd")
    assert copied.read_text() == (root_data / "shop" / "orders.ibd").read_text()  # the root disk keeps its copy
    stops = [c for c in run.calls if c == "systemctl stop mysql"]
    assert stops and run.calls.index(stops[0]) < next(i for i, c in enumerate(run.calls) if c.startswith("mount --bind"))
    assert "service mysql: stopped (its data moves onto the data volume)" in run.stdout
    assert "service mysql: started" in run.stdout


def test_the_root_disks_directory_bound_at_a_boot_without_the_volume_is_unbound_then_the_volumes_bound(
        host, dev_files):
    # What systemd does with fstab's bind when the volume's mount failed: it makes the source on
    # the root disk and binds it (seen on the booted host). MySQL did not start (the drop-in).
    (host.fake / "mounts").write_text(f"/dev/nvme0n1p1[{DATA_MOUNT}/mysql] {host.path(DATADIR)}\n")
    run = host.converge(dev_files, strict=True)
    assert run.returncode == 0, run.stdout
    assert run.called("umount") == [f"umount {host.path(DATADIR)}"]
    assert f"directory {DATADIR}: /dev/nvme0n1p1[{DATA_MOUNT}/mysql] unbound" in run.stdout
    assert mounts(host)[-1] == (f"{host.path(DATA_DISK)}[/mysql]", str(host.path(DATADIR)))
    assert removed_on_the_volume(host) == []


def test_a_wrong_bind_under_a_running_mysql_is_refused(host, dev_files):
    (host.fake / "mounts").write_text(f"/dev/nvme0n1p1[/srv/elsewhere] {host.path(DATADIR)}\n")
    host.set("active.mysql")
    run = host.converge(dev_files)
    assert run.returncode != 0 and run.called("umount") == []
    assert "and MySQL runs on it" in run.stdout.splitlines()[-1]


def test_something_else_mounted_where_the_volume_goes_is_refused(host, dev_files):
    (host.fake / "mounts").write_text(f"/dev/nvme2n1 {host.path(DATA_MOUNT)}\n")
    run = host.converge(dev_files)
    assert run.returncode != 0
    assert f"{DATA_MOUNT} has /dev/nvme2n1 mounted, not data volume {DATA_VOLUME_ID}" in run.stdout.splitlines()[-1]


def test_a_larger_volume_is_waited_for_and_its_filesystem_grown_once(converged, rendered_bundle):
    host = converged  # after its first converge on the dev bundle (tests/host/conftest.py)
    larger = rendered_bundle("dev", {"dataVolumeGiB": 50})
    host.set(f"fs.{DATA_DISK.rsplit('/', 1)[1]}", str(DATA_VOLUME_BYTES))  # the filesystem, still 20 GiB
    # EC2 shows the new size after a while: 20 GiB for the first 3 looks, then 50.
    sizes = host.fake / "size.nvme1n1"
    sleep = host.bin / "sleep"
    sleep.write_text(sleep.read_text() + f'[ "$(cat "$FAKE/clock")" -lt 1700000003 ] || echo {50 * 1024 ** 3} >{sizes}\n')
    run = host.converge(larger)
    assert run.returncode == 0, run.stdout
    assert run.called("resize2fs") == [f"resize2fs {host.path(DATA_DISK)}"]
    assert f"filesystem {DATA_MOUNT}: grown" in run.stdout
    again = host.converge(larger)
    assert again.returncode == 0 and again.called("resize2fs") == []


def test_systemd_makes_the_two_mounts_of_the_fstab_converge_writes_and_mysql_waits_for_them(first_converge, tmp_path):
    host = first_converge.host  # after its first converge on the dev bundle (tests/host/conftest.py)
    units = tmp_path / "units"
    for directory in ("normal", "early", "late"):
        (units / directory).mkdir(parents=True)
    subprocess.run([str(GENERATOR), *(str(units / d) for d in ("normal", "early", "late"))], check=True,
                   env={"SYSTEMD_FSTAB": str(host.path("/etc/fstab")), "SYSTEMD_PROC_CMDLINE": "",
                        "PATH": os.environ["PATH"]})
    volume = (units / "normal" / r"var-lib-observability\x2dlab\x2ddata.mount").read_text()
    assert f"What=/dev/disk/by-uuid/{UUID}" in volume and "Options=defaults,nodev,nosuid,noexec,nofail" in volume
    bind = (units / "normal" / "var-lib-mysql.mount").read_text()
    assert f"RequiresMountsFor={DATA_MOUNT}" in bind and f"What={DATA_MOUNT}/mysql" in bind
    # nofail: wanted by local-fs.target, not required, so a host whose volume is gone still boots.
    wants = {p.name for p in (units / "normal" / "local-fs.target.wants").iterdir()}
    assert {r"var-lib-observability\x2dlab\x2ddata.mount", "var-lib-mysql.mount"} <= wants
    assert not (units / "normal" / "local-fs.target.requires").exists()
