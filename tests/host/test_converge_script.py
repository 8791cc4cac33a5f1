"""userdata/converge.sh, run by bash on the bundles the stacks render, in a scratch root.

The host commands it would change the machine with are recorders (tests/support/converge_harness.py);
what is tested is the script's own logic: what it writes, restarts, installs and reports
on a first run, a repeated run and single changes, and how it refuses and rolls back.
Package installs, systemd, MySQL and the Agent themselves only run on a host.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from rendering.bundle import USERDATA_DIR, manifest_entries
from tests.support.converge_harness import (DEFAULT_DATADOG_HOSTNAME, HOST_USERS, IMDS_TOKEN, ConvergeRun, Host,
                                            restarts, write_bundle)

AGENT_CONFIG = "/etc/datadog-agent/datadog.yaml"
AGENT_CHECK_CONF = "/etc/datadog-agent/conf.d/custom_my_metric.yaml"
MYSQL_CONF = "/etc/datadog-agent/conf.d/mysql.d/conf.yaml"
HOSTNAME_TAG_URL = "http://169.254.169.254/latest/meta-data/tags/instance/datadog-hostname"


def owner_ids(owner: str) -> tuple[int, int]:
    user, group = owner.split(":")
    return HOST_USERS[user], HOST_USERS[group]


def test_first_run_installs_everything(first_converge, dev_files):
    host, run = first_converge.host, first_converge.run  # a scratch host's first run (tests/host/conftest.py)
    # Every file of the bundle (a switched-off feature's files are not in it).
    entries = [entry for entry in manifest_entries(dev_files["manifest"]) if entry[0] in dev_files]
    assert run.report("file") == {target: "created" for _, target, *_ in entries}
    for file, target, owner, mode, _ in entries:
        installed = host.path(target)
        assert oct(installed.lstat().st_mode & 0o7777) == oct(int(mode, 8)), target
        assert (installed.lstat().st_uid, installed.lstat().st_gid) == owner_ids(owner), target
        # As in the bundle, but for what converge fills in (the hostname, the passwords made
        # on the host; the grants records keep their placeholders).
        if "@@" not in dev_files[file] or target.startswith("/var/lib/observability-lab/mysql/"):
            assert installed.read_text() == dev_files[file], target
        # Every directory on the way is root's and only root may write to it.
        for directory in installed.relative_to(host.root).parents[:-1]:
            info = (host.root / directory).lstat()
            assert (info.st_uid, info.st_mode & 0o022) == (0, 0), directory
    assert run.called("chown") == []  # owned as the manifest says from the start (install -o -g)
    # The one per-host value, from the instance's tag; the bundle is the same on every host.
    assert host.path(AGENT_CONFIG).read_text() == dev_files["agent/datadog.yaml"].replace(
        '"@@DATADOG_HOSTNAME@@"', f'"{DEFAULT_DATADOG_HOSTNAME}"')
    assert f"datadog hostname: {DEFAULT_DATADOG_HOSTNAME} (instance tag datadog-hostname)" in run.stdout
    # Packages from apt, the Agent at its pinned version and held.
    assert any("install --no-install-recommends ca-certificates curl gnupg python3-venv acl mysql-server-8.0" in c
               for c in run.called("apt-get"))
    assert any(c.endswith("install --allow-downgrades --allow-change-held-packages datadog-agent=1:7.77.2-1")
               for c in run.called("apt-get"))
    assert "apt-mark hold datadog-agent" in run.calls
    # A binary OpenPGP keyring, the format apt reads (gpg makes a keybox, which apt ignores,
    # when the file does not exist yet).
    keyring = host.path("/usr/share/keyrings/datadog-archive-keyring.gpg").read_bytes()
    assert keyring[0] in (0x98, 0x99, 0xC6) and keyring[8:12] != b"KBXf"
    assert host.path("/etc/apt/sources.list.d/datadog.list").read_text().startswith(
        "deb [signed-by=/usr/share/keyrings/datadog-archive-keyring.gpg] https://apt.datadoghq.com/ stable 7")
    assert "useradd --system --home-dir /opt/sample-flask-app --shell /usr/sbin/nologin flaskapp" in run.calls
    assert "systemctl enable --now mysql" in run.calls
    # Grants applied, app installed and started, the Agent restarted and checked, in that order.
    assert restarts(run) == ["flask-app.service", "app-traffic.service", "tomcat10.service", "datadog-agent"]
    assert "pip install --quiet --disable-pip-version-check -r " \
           f"{host.path('/opt/sample-flask-app/requirements.txt')}" in run.calls
    assert run.calls.index("datadog-agent configcheck") > run.calls.index("systemctl restart datadog-agent")
    assert run.report("service") == {"mysql": "started", "flask-app.service": "restarted",
                                      "app-traffic.service": "restarted", "tomcat10.service": "restarted",
                                      "datadog-agent": "restarted"}
    assert run.report("grants for") == {"datadog@mysql": "applied"}
    assert "filesystem /: kept" in run.stdout


# Run as the Agent's user while converge writes: for every temporary file converge makes,
# swap it for a link to a file of root's, so that a chown or chmod (or the rename) after
# the write lands on root's file; and before that, plant such links where temporary
# files will be. Each swap that succeeds is a line in `swapped`.
RACER = r'''
import os, sys
tree, victim, out = sys.argv[1:]
for base, _, names in os.walk(tree):
    for name in names:
        try:
            os.symlink(victim, os.path.join(base, name + ".converge-new"))
        except OSError:
            pass
open(os.path.join(out, "ready"), "w").close()
while True:
    for base, _, names in os.walk(tree):
        for name in names:
            if name.endswith(".converge-new") and not os.path.islink(os.path.join(base, name)):
                path = os.path.join(base, name)
                try:
                    os.rename(path, path + ".taken")
                    os.symlink(victim, path)
                except OSError:
                    continue
                with open(os.path.join(out, "swapped"), "a") as swapped:
                    swapped.write(path + "\n")
'''


@dataclass(frozen=True)
class RacedHost:
    """A host converged twice (the second time on changed Agent files) while RACER ran."""
    host: Host
    first: ConvergeRun
    again: ConvergeRun
    racing: bool  # the racer still ran when the second converge ended
    victim: Path  # root's file the racer's links point at
    out: Path  # the racer's own directory (`swapped`: what it swapped)


@pytest.fixture(scope="module")
def raced_host(dev_files):
    """A host whose scratch root another user can reach (pytest's own tmp is root's only), its
    Agent's directories the Agent's user's, converged as RACER races it. Read only."""
    base = Path(tempfile.mkdtemp(prefix="converge-shared-"))
    try:
        base.chmod(0o711)
        host, agent_user = Host(base / "host"), HOST_USERS["dd-agent"]
        agent_dir = host.path("/etc/datadog-agent")
        for directory in ("", "checks.d", "conf.d", "conf.d/mysql.d", "conf.d/process.d"):
            (agent_dir / directory).mkdir(parents=True, exist_ok=True)
            os.chown(agent_dir / directory, agent_user, agent_user)  # as the Agent's package leaves them
            (agent_dir / directory / ".keep").write_text("")
        victim = host.base / "victim"
        victim.write_text("root's own\n")
        victim.chmod(0o600)
        out = host.base / "racer"
        out.mkdir()
        os.chown(out, agent_user, agent_user)
        racer = subprocess.Popen(["setpriv", f"--reuid={agent_user}", f"--regid={agent_user}", "--clear-groups",
                                  "/usr/bin/python3", "-c", RACER, str(agent_dir), str(victim), str(out)])
        try:
            for _ in range(100):
                if (out / "ready").exists() or racer.poll() is not None:
                    break
                time.sleep(0.1)
            assert (out / "ready").exists(), "the racer did not start"
            first = host.converge(dev_files)
            code = "agent/checks.d/custom_my_metric.py"
            again = host.converge(dict(dev_files, **{code: dev_files[code] + "# changed\n",
                                                     "agent/datadog.yaml": dev_files["agent/datadog.yaml"] + "#\n"}))
            racing = racer.poll() is None
        finally:
            racer.kill()
            racer.wait()
        yield RacedHost(host, first, again, racing, victim, out)
    finally:
        shutil.rmtree(base)


def test_a_process_of_the_agents_user_cannot_redirect_a_write(raced_host, dev_files):
    host, first, again, victim, out = (raced_host.host, raced_host.first, raced_host.again, raced_host.victim,
                                       raced_host.out)
    assert raced_host.racing, "the racer stopped"
    assert first.returncode == 0 and again.returncode == 0, first.stdout + again.stdout
    info = victim.lstat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777, victim.read_text()) == (0, 0, 0o600, "root's own\n")
    assert not (out / "swapped").exists(), (out / "swapped").read_text()
    for _, target, owner, _, _ in manifest_entries(dev_files["manifest"]):
        if target.startswith("/etc/datadog-agent/"):
            installed = host.path(target).lstat()
            assert stat.S_ISREG(installed.st_mode) and (installed.st_uid, installed.st_gid) == owner_ids(owner)


LOCK = "/run/observability-lab-converge.lock"


def test_no_other_user_can_take_the_converge_lock(raced_host):
    host = raced_host.host  # converged, in a root another user can reach
    assert raced_host.first.returncode == 0
    lock = host.path(LOCK)
    info, directory = lock.lstat(), lock.parent.lstat()
    assert (info.st_uid, info.st_mode & 0o777) == (0, 0o600)
    assert (directory.st_uid, directory.st_mode & 0o022) == (0, 0)  # only root creates files there
    user = HOST_USERS["dd-agent"]
    taken = subprocess.run(["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups",
                            "flock", "--nonblock", str(lock), "true"], capture_output=True, text=True)
    assert taken.returncode != 0 and "Permission denied" in taken.stderr


def test_a_held_lock_is_waited_for_a_bounded_time_then_fails_clearly(host, dev_files):
    lock = host.path(LOCK)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another converge, still running
        # flock -w takes fractions of a second: the bound shows without waiting one out.
        run = host.converge(dev_files, CONVERGE_LOCK_WAIT_SECONDS="0.2")
    assert run.returncode != 0
    assert run.stdout.splitlines()[-1] == (f"FAILED: another converge has held {lock} for 0.2 s; "
                                           "this one stops here (run it again once that one is done)")
    assert run.calls == [] and not host.path("/etc/datadog-agent").exists()


def test_the_agents_hostname_is_the_instances_tag_read_with_an_imdsv2_token(host, dev_files):
    host.set("imds.datadog-hostname", "observability-lab-prod-7")
    run = host.converge(dev_files)
    assert run.returncode == 0, run.stdout + run.stderr
    config = yaml.safe_load(host.path(AGENT_CONFIG).read_text())
    assert config["hostname"] == "observability-lab-prod-7"
    token, tag = run.called("curl")[:2]
    assert "-X PUT" in token and token.endswith("http://169.254.169.254/latest/api/token")
    # The token reaches curl as a header file (the recorder answers 404 to a wrong one), not
    # on its command line.
    assert tag.endswith(HOSTNAME_TAG_URL) and " -H @/dev/fd/" in tag and IMDS_TOKEN not in tag


def test_a_host_whose_tag_names_another_host_restarts_only_the_agent(converged, dev_files):
    converged.set("imds.datadog-hostname", "observability-lab-dev-2")
    run = converged.converge(dev_files)
    assert run.returncode == 0, run.stderr
    assert {f: s for f, s in run.report("file").items() if s != "unchanged"} == {AGENT_CONFIG: "updated"}
    assert yaml.safe_load(converged.path(AGENT_CONFIG).read_text())["hostname"] == "observability-lab-dev-2"
    assert restarts(run) == ["datadog-agent"] and run.called("apt-get") == []


@pytest.mark.parametrize("tag,reason", [
    (None, "no instance tag datadog-hostname in instance metadata"),
    ("Observability_Lab", "instance tag datadog-hostname is not a hostname"),
    ("host; rm -rf /", "instance tag datadog-hostname is not a hostname"),
])
def test_a_missing_or_invalid_hostname_tag_fails_the_run_before_anything_changes(host, dev_files, tag, reason):
    host.tag_instance("datadog-hostname", tag)
    run = host.converge(dev_files)
    assert run.returncode != 0 and reason in run.stdout, run.stdout
    assert {c.split()[0] for c in run.calls} <= {"curl", "sleep"}  # no apt, no service, no file
    assert not host.path("/etc/datadog-agent").exists() and not host.path("/opt").exists()
    if tag is None:  # retried for a while: a tag added by the same `pulumi up` may lag in metadata
        assert len([c for c in run.called("curl") if c.endswith(HOSTNAME_TAG_URL)]) == 30
        assert run.called("sleep") == ["sleep 4"] * 29


def test_mysql_password_is_made_on_the_host_once_and_never_printed(converged, dev_files):
    (password,) = re.findall(r'password: "([0-9a-f]{48})"', converged.path(MYSQL_CONF).read_text())
    sql = (converged.fake / "mysql.sql").read_text()
    assert "@@" not in sql and sql.count(f"IDENTIFIED BY '{password}'") == 4
    # The grants record keeps the placeholder; the password is nowhere else.
    assert "@@DATADOG_MYSQL_PASSWORD@@" in converged.path(
        "/var/lib/observability-lab/mysql/datadog_user.sql").read_text()
    changed = dict(dev_files, **{"mysql/datadog_user.sql": dev_files["mysql/datadog_user.sql"] + "-- again\n"})
    again = converged.converge(changed)
    assert again.returncode == 0, again.stderr
    assert (converged.fake / "mysql.sql").read_text().count(f"IDENTIFIED BY '{password}'") == 8
    log = converged.path("/var/log/observability-lab-converge.log").read_text()
    assert password not in again.stdout + again.stderr + log
    # Nor in the Datadog event of the run that re-granted it (events leave the host).
    events = converged.events()
    assert any("mysql-grants" in e.title for e in events)
    assert not [e for e in events if password in e.title + e.text]


def test_a_statement_mysql_refuses_is_logged_and_reported_with_the_password_masked(converged, dev_files):
    (password,) = re.findall(r'password: "([0-9a-f]{48})"', converged.path(MYSQL_CONF).read_text())
    converged.set("fail.mysql")
    changed = dict(dev_files, **{"mysql/datadog_user.sql": dev_files["mysql/datadog_user.sql"] + "-- again\n"})
    run = converged.converge(changed)
    assert run.returncode != 0 and "mysql refused the grants for datadog" in run.stdout
    log = converged.path("/var/log/observability-lab-converge.log").read_text()
    # mysql's refusal is there, in the log and in what SSM keeps (stderr), but not the password.
    assert "IDENTIFIED BY '[masked]'" in log and "IDENTIFIED BY '[masked]'" in run.stderr
    assert password not in run.stdout + run.stderr + log


def test_no_secret_is_on_the_command_line_of_anything_converge_runs(first_converge, converged, dev_files):
    # strict: every command converge runs is a recorder or a recording wrapper of the real
    # tool, or the run fails (process collection, on in datadog.yaml, sends command lines).
    # The first run is the shared one (strict, tests/host/conftest.py): its command lines are in
    # the copy's argv too.
    host, first = converged, first_converge.run
    assert first.returncode == 0, first.stdout + first.stderr
    (password,) = re.findall(r'password: "([0-9a-f]{48})"', host.path(MYSQL_CONF).read_text())
    grants = dict(dev_files, **{"mysql/datadog_user.sql": dev_files["mysql/datadog_user.sql"] + "-- again\n"})
    assert host.converge(grants, strict=True).returncode == 0
    broken = dict(grants, **{"agent/conf.d/mysql.d/conf.yaml": dev_files["agent/conf.d/mysql.d/conf.yaml"] + "# BROKEN\n"})
    rolled_back = host.converge(broken, strict=True)  # backups, restores, the Agent's checks
    assert "the previous ones are back" in rolled_back.stdout, rolled_back.stdout + rolled_back.stderr
    argv = (host.fake / "argv").read_text()
    assert "openssl rand -hex 24" in argv and "install -o dd-agent -g dd-agent -m 0640 " in argv
    assert "mysql --user=root" in argv and "cp -a " in argv  # the grants, a backup: all seen
    assert password not in argv
    assert IMDS_TOKEN not in argv  # the instance metadata session token neither
    # dev runs the Java workload: its two passwords are made on the host too, and never shown.
    (jmx,) = re.findall(r"^monitorRole ([0-9a-f]{48})$", host.path("/etc/tomcat10/jmxremote.password").read_text(),
                        re.M)
    (cars,) = re.findall(r'password="([0-9a-f]{48})"', host.path("/etc/tomcat10/Catalina/localhost/cars.xml").read_text())
    log = host.path("/var/log/observability-lab-converge.log").read_text()
    outputs = "".join(run.stdout + run.stderr for run in (first, rolled_back))
    for secret in (jmx, cars):
        assert secret not in argv and secret not in log and secret not in outputs


def test_the_log_and_the_state_are_roots_only(host, dev_files):
    log, state = host.path("/var/log/observability-lab-converge.log"), host.path("/var/lib/observability-lab")
    state.mkdir(parents=True)
    state.chmod(0o755)  # as an older converge left them
    log.parent.mkdir(parents=True)
    log.write_text("an older run\n")
    log.chmod(0o644)
    host.set("kill-at-check")  # a run killed half-way leaves its scratch files behind
    assert host.converge(dev_files).returncode != 0
    host.clear("kill-at-check")
    assert host.converge(dev_files).returncode == 0
    assert oct(log.stat().st_mode & 0o777) == "0o600" and oct(state.stat().st_mode & 0o777) == "0o700"
    # Nothing converge keeps (backups of the MySQL check's conf, its scratch copies) lies
    # elsewhere; HOME (root's home on a host) holds only gpg's own directory.
    assert {p.name for p in host.base.iterdir()} == {"root", "fake", "bundles", "bin", "pass-through", ".gnupg"}


def test_a_new_password_is_granted_even_when_the_grants_did_not_change(converged, dev_files):
    converged.path(MYSQL_CONF).unlink()  # e.g. removed by hand, or by a rolled-back first run
    run = converged.converge(dev_files)
    assert run.returncode == 0, run.stderr
    (password,) = re.findall(r'password: "([0-9a-f]{48})"', converged.path(MYSQL_CONF).read_text())
    assert run.report("grants for") == {"datadog@mysql": "applied"}
    assert (converged.fake / "mysql.sql").read_text().count(f"IDENTIFIED BY '{password}'") == 4


def test_a_run_killed_before_its_restart_is_finished_by_the_next_one(converged, rendered_bundle):
    files = rendered_bundle("dev", {"checkIntervalSeconds": 30})
    converged.set("kill-at-restart.datadog-agent")
    killed = converged.converge(files)
    assert killed.returncode != 0 and "service datadog-agent" not in killed.stdout
    converged.clear("kill-at-restart.datadog-agent")
    run = converged.converge(files)
    assert run.returncode == 0, run.stderr
    assert set(run.report("file").values()) == {"unchanged"}  # written by the killed run
    assert restarts(run) == ["datadog-agent"] and run.report("service")["datadog-agent"] == "restarted"
    assert converged.converge(files).report("service")["datadog-agent"] == "kept"


def test_a_venv_left_half_built_by_a_killed_run_is_built_again(host, dev_files):
    host.set("kill-in-venv")
    killed = host.converge(dev_files)
    assert killed.returncode != 0 and host.path("/opt/sample-flask-app/venv/bin/python").exists()
    host.clear("kill-in-venv")
    run = host.converge(dev_files)
    assert run.returncode == 0, run.stdout + run.stderr
    venv = host.path("/opt/sample-flask-app/venv")
    assert f"python3 -m venv {venv}" in run.calls and any(c.startswith("pip install") for c in run.calls)
    assert converged_again_keeps(host, dev_files).called("python3") == []


def converged_again_keeps(host: Host, files: dict[str, str]):
    """A run after a good one: the app is applied again (its files changed) on the same venv."""
    run = host.converge(dict(files, **{"app/app.py": files["app/app.py"] + "# again\n"}))
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def test_a_run_killed_while_a_changed_check_runs_is_rolled_back_by_the_next(converged, dev_files):
    code = "agent/checks.d/custom_my_metric.py"
    before = converged.path("/etc/datadog-agent/checks.d/custom_my_metric.py").read_text()
    files = dict(dev_files, **{code: dev_files[code] + "# CHECK_FAILS\n"})
    converged.set("kill-at-check")
    killed = converged.converge(files)
    assert killed.returncode != 0 and "datadog-agent check custom_my_metric" in killed.calls
    converged.clear("kill-at-check")
    run = converged.converge(files)  # the same bundle: its files look unchanged now
    assert run.returncode != 0
    assert "datadog-agent check custom_my_metric" in run.calls
    assert "FAILED: datadog-agent rejected its new files; the previous ones are back" in run.stdout
    assert converged.path("/etc/datadog-agent/checks.d/custom_my_metric.py").read_text() == before


def test_a_run_killed_while_the_agent_starts_on_a_new_config_is_rolled_back_by_the_next(converged, dev_files):
    before = converged.path(AGENT_CONFIG).read_text()
    files = dict(dev_files, **{"agent/datadog.yaml": dev_files["agent/datadog.yaml"] + "# AGENT_WONT_START\n"})
    converged.set("kill-at-status")
    assert converged.converge(files).returncode != 0
    converged.clear("kill-at-status")
    run = converged.converge(files)
    assert run.returncode != 0
    assert "FAILED: datadog-agent rejected its new files; the previous ones are back" in run.stdout
    assert converged.path(AGENT_CONFIG).read_text() == before
    assert restarts(run) == ["datadog-agent", "datadog-agent"]
    assert converged.converge(files).returncode != 0  # the bad file is refused again, not kept
    assert converged.path(AGENT_CONFIG).read_text() == before


def test_the_wait_for_an_agent_systemd_stopped_restarting_ends_at_once(converged, dev_files):
    files = dict(dev_files, **{"agent/datadog.yaml": dev_files["agent/datadog.yaml"] + "# AGENT_WONT_START\n"})
    run = converged.converge(files)
    assert run.returncode != 0
    assert run.stdout.splitlines()[-1].startswith(
        "FAILED: datadog-agent rejected its new files; the previous ones are back and it runs on them "
        "(datadog-agent failed and systemd stopped restarting it (journalctl -u datadog-agent); see ")
    assert run.called("sleep") == []  # not a minute of `status` against a unit that will not come back
    # A unit still starting is waited for: an Agent slow to answer, not failed, gets its minute.
    converged.set("fail.agent-status")
    slow = converged.converge(dict(dev_files, **{"agent/datadog.yaml": dev_files["agent/datadog.yaml"] + "# new\n"}))
    assert "datadog-agent status still fails 60 s after the restart" in slow.stdout
    assert len(slow.called("sleep")) >= 60


def test_a_failure_with_nothing_to_restore_says_so(converged, dev_files):
    # An earlier run was killed after marking the Agent for a restart, its files already applied.
    (converged.path("/var/lib/observability-lab") / "pending.datadog-agent").write_text("")
    converged.set("fail.agent-status")
    run = converged.converge(dev_files)
    assert run.returncode != 0
    assert run.stdout.splitlines()[-1] == (
        "FAILED: datadog-agent fails, and none of its files changed since it last ran: there is nothing to "
        "restore (datadog-agent status still fails 60 s after the restart; see "
        f"{converged.path('/var/log/observability-lab-converge.log')})")
    assert restarts(run) == ["datadog-agent"]


DEFAULT_AGENT = "1:7.77.2-1"
BROKEN_AGENT = "1:7.71.0-1"


def agent_installs(run) -> list[str]:
    return [c.split()[-1] for c in run.called("apt-get") if " install " in f" {c} " and "datadog-agent=" in c]


def test_an_agent_version_that_fails_its_checks_is_rolled_back_to_the_previous_one(converged, rendered_bundle, dev_files):
    converged.set("fail.agent-version", BROKEN_AGENT)
    new = rendered_bundle("dev", {"agentVersion": "7.71.0"})
    run = converged.converge(new)
    assert run.returncode != 0
    # Through apt: the new version, then the previous one again, each held.
    assert agent_installs(run) == [f"datadog-agent={BROKEN_AGENT}", f"datadog-agent={DEFAULT_AGENT}"]
    assert run.called("apt-mark") == ["apt-mark hold datadog-agent"] * 2
    assert f"package datadog-agent: {BROKEN_AGENT} -> {DEFAULT_AGENT} (rolled back)" in run.stdout
    assert f"datadog-agent {DEFAULT_AGENT}" in converged.fake.joinpath("dpkg").read_text()
    # Every check of the bundle ran on the new version (the first failed), and all again on the previous.
    checks = [c.split()[-1] for c in run.called("datadog-agent") if c.split()[1] == "check"]
    bundle_checks = {"custom_my_metric", "process", "mysql", "bike_share"}
    assert checks[0] in bundle_checks and set(checks[1:]) == bundle_checks
    last = run.stdout.splitlines()[-1]
    assert last.startswith(f"FAILED: datadog-agent {BROKEN_AGENT} failed its checks; rolled back: {DEFAULT_AGENT} "
                           "is installed again and held, its previous files are back, and it passes its checks")
    assert f"datadog-agent check {checks[0]} failed" in last
    assert not converged.path("/var/lib/observability-lab/rollback.datadog-agent").exists()
    # The previous version runs on the previous files: the same run again changes no file.
    again = converged.converge(dev_files)
    assert again.returncode == 0, again.stdout
    assert set(again.report("file").values()) == {"unchanged"} and agent_installs(again) == []


def test_an_agent_rollback_also_puts_back_the_files_the_new_version_came_with(converged, rendered_bundle):
    converged.set("fail.agent-version", BROKEN_AGENT)
    before = converged.path(AGENT_CONFIG).read_text()
    run = converged.converge(rendered_bundle("dev", {"agentVersion": "7.71.0", "checkIntervalSeconds": 30}))
    assert run.returncode != 0 and "rolled back" in run.stdout.splitlines()[-1]
    assert run.report("file")[AGENT_CHECK_CONF] == "restored"
    assert converged.path(AGENT_CONFIG).read_text() == before


def test_a_run_killed_while_a_new_agent_version_is_checked_rolls_it_back_next_time(converged, rendered_bundle):
    converged.set("fail.agent-version", BROKEN_AGENT)
    converged.set("kill-at-check")
    new = rendered_bundle("dev", {"agentVersion": "7.71.0"})
    assert converged.converge(new).returncode != 0
    assert converged.path("/var/lib/observability-lab/rollback.datadog-agent/package").read_text() == DEFAULT_AGENT + "\n"
    converged.clear("kill-at-check")
    run = converged.converge(new)
    assert agent_installs(run) == [f"datadog-agent={DEFAULT_AGENT}"]  # the new one was already installed
    assert f"rolled back: {DEFAULT_AGENT} is installed again" in run.stdout.splitlines()[-1]


def test_an_agent_that_fails_on_the_previous_version_too_says_both(converged, rendered_bundle):
    converged.set("fail.agent-status")  # e.g. a host the Agent cannot run on at all
    run = converged.converge(rendered_bundle("dev", {"agentVersion": "7.71.0"}))
    assert run.returncode != 0
    assert agent_installs(run) == [f"datadog-agent={BROKEN_AGENT}", f"datadog-agent={DEFAULT_AGENT}"]
    assert run.stdout.splitlines()[-1].startswith(
        f"FAILED: datadog-agent fails with its new files, and with the previous ones restored on version "
        f"{DEFAULT_AGENT} too (datadog-agent status still fails 60 s after the restart, then datadog-agent status")


def test_second_run_with_the_same_files_changes_and_restarts_nothing(second_converge):
    run = second_converge.run  # the first converge's host, converged again (tests/host/conftest.py)
    assert run.returncode == 0, run.stderr
    assert set(run.report("file").values()) == {"unchanged"}
    assert run.report("service") == {"mysql": "kept", "flask-app.service": "kept", "app-traffic.service": "kept",
                                      "tomcat10.service": "kept",
                                      "datadog-agent": "kept"}
    assert run.report("grants for") == {"datadog@mysql": "kept"}
    assert run.called("apt-get") == [] and run.called("mysql") == [] and run.called("pip") == []
    assert restarts(run) == [] and run.called("useradd") == [] and run.called("chown") == []
    assert "restarted or applied: nothing" in run.stdout


def test_a_file_whose_mode_or_owner_drifted_on_the_host_is_written_again(converged, dev_files):
    grants = converged.path("/var/lib/observability-lab/mysql/datadog_user.sql")
    grants.chmod(0o644)  # world-readable: the issue's own example of a fault
    os.chown(converged.path(AGENT_CHECK_CONF), 0, 0)  # root's: the Agent could not read it
    run = converged.converge(dev_files)
    assert run.returncode == 0, run.stdout + run.stderr
    assert {f: s for f, s in run.report("file").items() if s != "unchanged"} == {
        "/var/lib/observability-lab/mysql/datadog_user.sql": "updated", AGENT_CHECK_CONF: "updated"}
    assert stat.S_IMODE(grants.stat().st_mode) == 0o600
    assert (converged.path(AGENT_CHECK_CONF).stat().st_uid,) == owner_ids("dd-agent:dd-agent")[:1]
    # Their units apply the files again, as after any other rewrite of them.
    assert run.report("grants for") == {"datadog@mysql": "applied"} and restarts(run) == ["datadog-agent"]


def test_a_mode_changed_only_in_the_manifest_reaches_the_host(converged, dev_files):
    manifest = dev_files["manifest"].replace(f"{AGENT_CHECK_CONF}    dd-agent:dd-agent  0640",
                                             f"{AGENT_CHECK_CONF}    dd-agent:dd-agent  0600")
    assert manifest != dev_files["manifest"]
    run = converged.converge(dict(dev_files, manifest=manifest))
    assert run.returncode == 0, run.stdout + run.stderr
    assert {f: s for f, s in run.report("file").items() if s != "unchanged"} == {AGENT_CHECK_CONF: "updated"}
    assert stat.S_IMODE(converged.path(AGENT_CHECK_CONF).stat().st_mode) == 0o600


def test_changing_only_the_check_interval_rewrites_one_file_and_restarts_only_the_agent(
        converged, rendered_bundle):
    run = converged.converge(rendered_bundle("dev", {"checkIntervalSeconds": 30}))
    assert run.returncode == 0, run.stderr
    assert {f: s for f, s in run.report("file").items() if s != "unchanged"} == {AGENT_CHECK_CONF: "updated"}
    assert "min_collection_interval: 30" in converged.path(AGENT_CHECK_CONF).read_text()
    assert restarts(run) == ["datadog-agent"]
    assert run.report("service")["flask-app.service"] == "kept"
    assert run.called("apt-get") == [] and run.called("mysql") == []


def test_changing_only_the_app_code_restarts_only_the_app(converged, dev_files):
    files = dict(dev_files, **{"app/app.py": dev_files["app/app.py"] + "\n# a comment\n"})
    run = converged.converge(files)
    assert run.returncode == 0, run.stderr
    assert {f: s for f, s in run.report("file").items() if s != "unchanged"} == {
        "/opt/sample-flask-app/app.py": "updated"}
    assert restarts(run) == ["flask-app.service"]
    assert run.report("service")["datadog-agent"] == "kept"


def test_agent_upgrade_or_downgrade_is_an_apt_install_in_place(converged, rendered_bundle):
    run = converged.converge(rendered_bundle("dev", {"agentVersion": "7.71.0"}))
    assert run.returncode == 0, run.stderr
    (install,) = [c for c in run.called("apt-get") if " install " in c]
    assert install.endswith("--allow-downgrades --allow-change-held-packages datadog-agent=1:7.71.0-1")
    assert "package datadog-agent: 1:7.77.2-1 -> 1:7.71.0-1" in run.stdout
    assert restarts(run) == ["datadog-agent"]
    assert set(run.report("file").values()) == {"unchanged"}


# What apt prints when Datadog's new InRelease is signed by a key the keyring lacks; exit 0.
UNVERIFIED = ("W: An error occurred during the signature verification. The repository is not updated and the "
              "previous index files will be used. GPG error: https://apt.datadoghq.com stable InRelease: The "
              "following signatures couldn't be verified because the public key is not available: NO_PUBKEY "
              "E6266D4AC0962C7D")
KEY_DOWNLOADS = "keys.datadoghq.com/DATADOG_APT_KEY_"


def test_an_agent_index_that_does_not_verify_fails_the_update_with_apts_words(converged, rendered_bundle):
    converged.set("warn.apt-get-update", f"Hit:1 http://archive.ubuntu.com/ubuntu jammy InRelease\n{UNVERIFIED}\n")
    run = converged.converge(rendered_bundle("dev", {"agentVersion": "7.71.0"}))
    assert run.returncode != 0
    assert run.stdout.splitlines()[-1] == f"FAILED: apt-get update: {UNVERIFIED}"
    assert [c for c in run.called("apt-get") if " install " in c] == [] and restarts(run) == []
    # Datadog's keys were fetched again (a rotated signing key) before the update was tried again.
    assert len(run.called("apt-get")) == 2 and sum(KEY_DOWNLOADS in c for c in run.called("curl")) == 4


def test_an_index_that_verifies_once_the_keys_are_fetched_again_is_installed_from(converged, rendered_bundle):
    converged.set("warn.apt-get-update.once", f"{UNVERIFIED}\n")
    run = converged.converge(rendered_bundle("dev", {"agentVersion": "7.71.0"}))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "fetching Datadog's keys again" in run.stdout
    assert "package datadog-agent: 1:7.77.2-1 -> 1:7.71.0-1" in run.stdout


def test_another_sources_signature_warning_does_not_stop_the_agents_install(converged, rendered_bundle):
    warning = UNVERIFIED.replace("https://apt.datadoghq.com stable", "http://ppa.launchpadcontent.net/x/y/ubuntu jammy")
    converged.set("warn.apt-get-update", f"{warning}\n")
    run = converged.converge(rendered_bundle("dev", {"agentVersion": "7.71.0"}))
    assert run.returncode == 0, run.stdout + run.stderr
    assert not any(KEY_DOWNLOADS in c for c in run.called("curl"))


def test_a_config_the_agent_rejects_is_rolled_back_and_fails_the_run(converged, dev_files):
    before = converged.path(AGENT_CHECK_CONF).read_text()
    files = dict(dev_files, **{"agent/conf.d/custom_my_metric.yaml": before + "# BROKEN\n"})
    run = converged.converge(files)
    assert run.returncode != 0
    assert "datadog-agent rejected its new files; the previous ones are back" in run.stdout
    assert "custom_my_metric: Configuration error: BROKEN" in run.stderr
    assert converged.path(AGENT_CHECK_CONF).read_text() == before
    assert restarts(run) == ["datadog-agent", "datadog-agent"]  # new config, then the old one again
    # The state still names the last good bundle, so nothing pretends the bad one converged.
    assert (converged.path("/var/lib/observability-lab/applied").read_text().strip()
            != write_bundle(files, converged.bundles).name)


def test_changed_check_code_is_run_once_and_rolled_back_when_it_fails(converged, dev_files):
    code = "agent/checks.d/custom_my_metric.py"
    ok = converged.converge(dict(dev_files, **{code: dev_files[code] + "# refactored\n"}))
    assert ok.returncode == 0 and "datadog-agent check custom_my_metric" in ok.calls
    assert "datadog-agent check mysql" not in ok.calls  # only the checks that changed
    before = converged.path("/etc/datadog-agent/checks.d/custom_my_metric.py").read_text()
    run = converged.converge(dict(dev_files, **{code: dev_files[code] + "# CHECK_FAILS\n"}))
    assert run.returncode != 0 and "datadog-agent rejected its new files" in run.stdout
    assert converged.path("/etc/datadog-agent/checks.d/custom_my_metric.py").read_text() == before


def test_grants_that_mysql_refuses_are_rolled_back_to_the_previous_ones(converged, dev_files):
    record = converged.path("/var/lib/observability-lab/mysql/datadog_user.sql")
    before = record.read_text()
    (converged.bin / "mysql").write_text('#!/usr/bin/env bash\ncat >>"$FAKE/mysql.sql"\n'
                                         '! grep -q NO_SUCH_PRIVILEGE "$FAKE/mysql.sql"\n')
    (converged.fake / "mysql.sql").write_text("")
    run = converged.converge(dict(dev_files, **{"mysql/datadog_user.sql": "GRANT NO_SUCH_PRIVILEGE;\n"}))
    assert run.returncode != 0
    assert record.read_text() == before
    # Applied twice: the new grants (refused), then the previous ones again.
    assert (converged.fake / "mysql.sql").read_text().count("GRANT PROCESS ON *.*") == 1


def test_a_created_file_is_removed_again_when_the_agent_rejects_it(converged, dev_files):
    files = dict(dev_files, **{"agent/conf.d/process.d/conf.yaml": "# BROKEN\n"})
    del files["agent/conf.d/mysql.d/conf.yaml"]
    converged.path(MYSQL_CONF).unlink()  # so the run has a file to create, then to take back
    files["agent/conf.d/mysql.d/conf.yaml"] = dev_files["agent/conf.d/mysql.d/conf.yaml"]
    run = converged.converge(files)
    assert run.returncode != 0
    assert f"file {MYSQL_CONF}: created" in run.stdout
    assert run.report("file")[MYSQL_CONF] == "removed again (it was new)"  # the report's last word
    assert not converged.path(MYSQL_CONF).exists()


def test_a_file_left_out_of_the_bundle_is_removed_from_the_host(converged, dev_files):
    files = {k: v for k, v in dev_files.items() if k != "agent/conf.d/process.d/conf.yaml"}
    run = converged.converge(files)
    assert run.returncode == 0, run.stderr
    assert run.report("file")["/etc/datadog-agent/conf.d/process.d/conf.yaml"] == "removed"
    assert not converged.path("/etc/datadog-agent/conf.d/process.d/conf.yaml").exists()
    assert restarts(run) == ["datadog-agent"]


def test_an_app_that_does_not_answer_gets_its_previous_code_back(converged, dev_files):
    before = converged.path("/opt/sample-flask-app/app.py").read_text()
    converged.set("fail.curl")
    run = converged.converge(dict(dev_files, **{"app/app.py": before + "raise SystemExit\n"}))
    assert run.returncode != 0
    assert "flask-app fails with its new files, and with the previous ones restored" in run.stdout
    assert converged.path("/opt/sample-flask-app/app.py").read_text() == before


def test_the_apps_30_s_to_answer_hold_for_the_whole_wait_when_every_try_hangs(converged, dev_files):
    converged.set("fail.curl")
    converged.set("hang.curl")  # each try lasts until curl's own --max-time
    start = int((converged.fake / "clock").read_text())
    run = converged.converge(dict(dev_files, **{"app/app.py": dev_files["app/app.py"] + "# hangs\n"}))
    assert run.returncode != 0
    assert "flask-app.service does not answer on 127.0.0.1:5050 30 s after its restart" in run.stderr
    # Two waits (the new code, then the previous code restored), each within its 30 s.
    assert int((converged.fake / "clock").read_text()) - start <= 2 * 30
    assert len([c for c in run.called("curl") if "127.0.0.1:5050" in c]) > 2


@contextlib.contextmanager
def full_filesystem(directory: Path):
    """directory on a small tmpfs of its own with its files, and the rest of the space used up."""
    saved = directory.with_name(directory.name + ".saved")
    directory.rename(saved)
    directory.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(directory)], check=True)
    try:
        shutil.copytree(saved, directory, symlinks=True, dirs_exist_ok=True)
        filler = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):
            while True:
                os.write(filler, b"\0" * 4096)
        os.close(filler)
        with pytest.raises(OSError) as full:
            (directory / "probe").write_text("x" * 8192)
        assert full.value.errno == errno.ENOSPC
        (directory / "probe").unlink(missing_ok=True)
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)
        directory.rmdir()
        saved.rename(directory)


@pytest.mark.parametrize("action", ["updated", "created"])
def test_a_full_disk_fails_the_write_with_a_failed_line_and_leaves_nothing_half_written(
        converged, dev_files, action):
    conf_d = converged.path("/etc/datadog-agent/conf.d")
    before = (conf_d / "custom_my_metric.yaml").read_text()
    if action == "created":
        (conf_d / "custom_my_metric.yaml").unlink()
    files = dict(dev_files, **{"agent/conf.d/custom_my_metric.yaml": before + "# more\n" * 100})
    with full_filesystem(conf_d):
        run = converged.converge(files)
        left = sorted(p.name for p in conf_d.rglob("*") if p.is_file())
        assert run.returncode != 0
        assert f"file {AGENT_CHECK_CONF}: {action}" not in run.stdout  # only after the write
        assert run.stdout.splitlines()[-1].startswith(
            f"FAILED: writing {AGENT_CHECK_CONF}: install: error writing")
        assert run.stdout.splitlines()[-1].endswith(
            "No space left on device; datadog-agent's files are as they were before this run")
        assert f"file {AGENT_CHECK_CONF}: re" not in run.stdout  # no restore claimed: none was needed
        assert [p for p in left if p != "custom_my_metric.yaml"] == ["bike_share.yaml", *["conf.yaml"] * 4, "filler"]
        if action == "updated":
            assert (conf_d / "custom_my_metric.yaml").read_text() == before
        else:
            assert not (conf_d / "custom_my_metric.yaml").exists()
    assert restarts(run) == []  # the Agent keeps running on the files it has


def test_an_unexpected_failure_still_ends_with_a_failed_line(converged, dev_files):
    applied = converged.path("/var/lib/observability-lab/applied")
    applied.unlink()
    applied.mkdir()  # nothing converge can write its record to
    run = converged.converge(dev_files)
    assert run.returncode != 0
    assert run.stdout.splitlines()[-1].startswith("FAILED: record_applied: ")


def test_a_run_asked_to_stop_ends_with_a_failed_line(converged, rendered_bundle):
    converged.set("term-at-restart.datadog-agent")
    run = converged.converge(rendered_bundle("dev", {"checkIntervalSeconds": 30}))
    assert run.returncode == 143
    assert run.stdout.splitlines()[-1] == "FAILED: stopped by a signal (exit 143)"


def test_first_boot_never_goes_back_to_an_older_bundle(converged, rendered_bundle):
    newer = converged.converge(rendered_bundle("dev", {"checkIntervalSeconds": 30}))
    assert newer.returncode == 0
    run = converged.converge(rendered_bundle("dev"), CONVERGE_TRIGGER="first-boot")
    assert run.returncode == 0
    assert "the first-boot bundle is not applied" in run.stdout
    assert "min_collection_interval: 30" in converged.path(AGENT_CHECK_CONF).read_text()
    assert run.called("systemctl") == [] and run.called("apt-get") == []


def test_a_bundle_whose_files_do_not_match_its_name_is_refused(host, dev_files):
    directory = write_bundle(dev_files, host.bundles)
    (directory / "agent" / "datadog.yaml").write_text("api_key: tampered\n")
    run = host.run(["bash", str(directory / "converge.sh")])
    assert run.returncode != 0
    assert "its files hash to" in run.stdout and "not to its name" in run.stdout
    assert run.calls == [] and not host.path("/etc/datadog-agent").exists()


def test_a_grown_volume_grows_the_root_filesystem(converged, rendered_bundle):
    converged.set("growpart.status", "0")
    run = converged.converge(rendered_bundle("dev", {"rootVolumeGiB": 40}))
    assert run.returncode == 0, run.stderr
    assert "growpart /dev/nvme0n1 1" in run.calls and "resize2fs /dev/nvme0n1p1" in run.calls
    assert "filesystem /: grown" in run.stdout
    assert restarts(run) == []


def test_growing_waits_for_ec2_to_finish_resizing_the_volume(converged, rendered_bundle):
    converged.set("growpart.status", "0")
    converged.set("disk.gib", "20\n20\n20\n40\n")
    run = converged.converge(rendered_bundle("dev", {"rootVolumeGiB": 40}))
    assert run.returncode == 0, run.stderr
    assert run.called("sleep") == ["sleep 1"] * 3
    assert run.calls.index("growpart /dev/nvme0n1 1") > run.calls.index("sleep 1")


@pytest.mark.parametrize("mount,source", [
    ("overlay 0:31 overlay", "overlay"),  # a container's root
    ("/dev/mapper/vg0-root 253:0 ext4", "/dev/mapper/vg0-root"),  # LVM
    ("/dev/nvme0n1p1 259:1 xfs", "xfs on /dev/nvme0n1p1"),  # a partition, but not ext4
])
def test_a_root_that_is_not_a_growable_partition_is_left_as_it_is(converged, rendered_bundle, mount, source):
    converged.set("root.mount", mount)
    run = converged.converge(rendered_bundle("dev", {"rootVolumeGiB": 40}))
    assert run.returncode == 0, run.stdout + run.stderr
    assert [line for line in run.stdout.splitlines() if line.startswith("filesystem /:")] == [
        f"filesystem /: not grown ({source} is not a growable ext4 partition)"]
    assert run.called("growpart") == [] and run.called("resize2fs") == []
    assert "== converged on" in run.stdout


def test_growpart_errors_fail_the_run(converged, dev_files):
    converged.set("growpart.status", "2")
    run = converged.converge(dev_files)
    assert run.returncode != 0 and "growpart /dev/nvme0n1 1 exited 2" in run.stdout


def test_old_bundles_are_pruned_but_the_current_one_kept(converged, dev_files):
    bundles = [dict(dev_files, **{"converge.env": dev_files["converge.env"] + f"# variant {n}\n"})
               for n in range(4)]
    for files in bundles:
        assert converged.converge(files).returncode == 0
    kept = {p.name for p in converged.bundles.iterdir()}
    assert kept == {write_bundle(files, converged.bundles).name for files in bundles[-3:]}


# --- single steps, with the script sourced ------------------------------------------------

def run_steps(host: Host, steps: str) -> subprocess.CompletedProcess:
    script = f"source {USERDATA_DIR / 'converge.sh'}\nLOG=$FAKE/log\n{steps}\n"
    return subprocess.run(["bash", "-c", script], env=host.env(), capture_output=True, text=True)


# apt-get's own messages (apt 2.x) for what waiting can fix and what it cannot.
APT_LOCKED = ("E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 812 (unattended-upgr)\n"
              "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), "
              "is another process using it?")
APT_OFFLINE = ("E: Failed to fetch http://archive.ubuntu.com/ubuntu/pool/main/m/mysql-8.0/"
               "mysql-server-8.0_8.0.39-0ubuntu0.24.04.2_amd64.deb  Temporary failure resolving "
               "'archive.ubuntu.com'\nE: Unable to fetch some archives, maybe run apt-get update "
               "or try with --fix-missing?")
APT_NO_SUCH_PACKAGE = "Reading package lists...\nE: Unable to locate package mysql-server-8.0"


def failing_apt(times: int, message: str) -> str:
    """An apt-get that fails `times` times with apt's message, then succeeds."""
    return f"""
apt-get() {{
  n=$(cat "$FAKE/tries" 2>/dev/null || echo 0); echo $((n + 1)) >"$FAKE/tries"
  [ "$n" -ge {times} ] || {{ printf '%s\\n' "{message}"; return 100; }}
}}"""


def test_an_interrupted_dpkg_is_finished_before_installing(host, dev_files):
    host.set("dpkg-interrupted")  # a first converge killed while dpkg unpacked mysql-server
    run = host.converge(dev_files)
    assert run.returncode == 0, run.stdout + run.stderr
    installs = [i for i, call in enumerate(run.calls) if " install --no-install-recommends " in call]
    configure = run.calls.index("dpkg --force-confdef --force-confold --configure -a")
    assert len(installs) == 2 and installs[0] < configure < installs[1]
    assert run.called("sleep") == []


@pytest.mark.parametrize("message", [APT_LOCKED, APT_OFFLINE], ids=["lock", "fetch"])
def test_apt_retries_a_held_lock_or_a_failed_download_with_backoff(host, message):
    result = run_steps(host, failing_apt(2, message) + "\napt_retry update")
    assert result.returncode == 0, result.stderr
    assert (host.fake / "tries").read_text().strip() == "3"
    assert (host.fake / "calls").read_text().split("\n")[:2] == ["sleep 5", "sleep 10"]


def test_apt_retries_are_bounded(host):
    result = run_steps(host, failing_apt(99, APT_OFFLINE) + "\napt_retry install mysql-server-8.0")
    assert result.returncode != 0
    assert (host.fake / "tries").read_text().strip() == "6"
    assert "failed after 6 tries" in result.stderr


def test_a_package_apt_cannot_find_fails_at_once_with_apts_message(host, dev_files):
    host.set("fail.apt-get-install", APT_NO_SUCH_PACKAGE)
    run = host.converge(dev_files)
    assert run.returncode != 0
    assert run.called("apt-get")[1:] == [
        "apt-get -o DPkg::Lock::Timeout=60 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "
        "-q -y install --no-install-recommends ca-certificates curl gnupg python3-venv acl mysql-server-8.0 "
        "tomcat10 default-jre-headless libmariadb-java"]
    assert run.called("sleep") == []
    assert run.stdout.splitlines()[-1] == ("FAILED: installing ca-certificates curl gnupg python3-venv acl "
                                           "mysql-server-8.0 tomcat10 default-jre-headless libmariadb-java: "
                                           "E: Unable to locate package mysql-server-8.0")


def test_sourcing_the_script_runs_nothing(host):
    result = run_steps(host, "true")
    assert result.returncode == 0, result.stderr
    assert not (host.fake / "calls").exists() and not (host.fake / "log").exists()


def test_main_is_the_list_of_steps_each_a_function_of_its_own():
    script = (USERDATA_DIR / "converge.sh").read_text()
    defined = set(re.findall(r"^([a-z_]+)\(\) \{", script, re.M))
    body = re.search(r"^main\(\) \{\n(.*?)^\}", script, re.M | re.S).group(1)
    steps = [re.sub(r"^if (\w+);.*", r"\1", line.strip()) for line in body.splitlines()]
    assert [step for step in steps if step.split()[0] not in defined] == []
    assert len(steps) >= 15  # starting MySQL, pruning old bundles, ... are steps, not inline code


# --------------------------------------------------------------------------- Datadog change events
STACK_TAGS = {"env:dev", "service:sample-flask-app", "host:observability-lab-dev-1", "source:observability-lab"}


def test_a_changing_converge_sends_one_event_with_its_change_report(converged, dev_files):
    files = dict(dev_files, **{"app/app.py": dev_files["app/app.py"] + "\n# a comment\n"})
    run = converged.converge(files)
    assert run.returncode == 0, run.stderr
    (event,) = converged.events()
    assert event.alert_type == "info" and event.hostname == "observability-lab-dev-1"
    assert set(event.tags) == STACK_TAGS
    assert event.title == "Converge on observability-lab-dev-1: flask-app restarted or applied; 1 file changed"
    digest = write_bundle(files, converged.bundles).name
    assert event.text.splitlines() == [
        "file /opt/sample-flask-app/app.py: updated", "service flask-app.service: restarted",
        f"bundle {digest} (association)"]


def test_the_first_converge_event_lists_everything_it_installed(first_converge):
    run = first_converge.run
    (event,) = first_converge.events
    assert "mysql-grants, flask-app, app-traffic, tomcat, datadog-agent restarted or applied;" in event.title
    assert "package datadog-agent: none -> 1:7.77.2-1" in event.text.splitlines()
    assert all(line in run.stdout.splitlines() for line in event.text.splitlines()[:-1])


def test_a_converge_that_changes_nothing_sends_no_event(second_converge):
    run = second_converge.run  # the first converge's host, converged again (tests/host/conftest.py)
    assert run.returncode == 0, run.stderr
    assert second_converge.events == []


def test_a_failed_converge_sends_one_error_event_naming_the_unit(converged, dev_files):
    before = converged.path(AGENT_CHECK_CONF).read_text()
    run = converged.converge(dict(dev_files, **{"agent/conf.d/custom_my_metric.yaml": before + "# BROKEN\n"}))
    assert run.returncode != 0
    (event,) = converged.events()
    assert (event.alert_type, event.title) == ("error", "Converge FAILED on observability-lab-dev-1: datadog-agent")
    assert set(event.tags) == STACK_TAGS
    # What failed, then where the log is (issue 19's rollback names the failed check).
    assert re.fullmatch(r"FAILED: datadog-agent rejected its new files; the previous ones are back and it runs on "
                        r"them \(datadog-agent configcheck [^;]+; see \S+/observability-lab-converge\.log\)",
                        event.text.splitlines()[0])
    assert f"file {AGENT_CHECK_CONF}: restored" in event.text.splitlines()


def test_a_step_that_fails_before_any_unit_is_named(host, dev_files):
    host.set("imds.datadog-hostname", "")  # no hostname tag: the run stops before changing anything
    run = host.converge(dev_files)
    assert run.returncode != 0
    (event,) = host.events()
    assert event.alert_type == "error" and event.title == "Converge FAILED on this host: read_instance_tags"
    assert event.hostname == ""  # not known yet: the Agent names the event's host itself


# --------------------------------------------------------------------------- the logs the Agent reads
def test_the_agent_may_read_the_journal_and_only_mysqls_log_directory(host, dev_files):
    host.path("/var/log/mysql").mkdir(parents=True)  # what Ubuntu's mysql-server leaves (mysql:adm)
    (host.path("/var/log/mysql") / "error.log").write_text("")
    run = host.converge(dev_files)
    assert run.returncode == 0, run.stderr
    assert "usermod -aG systemd-journal dd-agent" in run.calls
    log_dir = host.path("/var/log/mysql")
    assert f"setfacl -m u:dd-agent:rx -m d:u:dd-agent:r {log_dir}" in run.calls
    assert f"setfacl -m u:dd-agent:r {log_dir}/error.log" in run.calls
    assert not [c for c in run.calls if c.startswith("usermod") and " adm " in c]  # never all of /var/log
    assert {"user dd-agent: added to systemd-journal", "directory /var/log/mysql: readable by dd-agent"} <= set(
        run.stdout.splitlines())
    again = host.converge(dev_files)
    assert again.called("usermod") == [] and again.called("setfacl") == []
    assert "readable by dd-agent" not in again.stdout


def test_a_logs_only_agent_config_is_not_run_as_a_check(converged, dev_files):
    conf = "agent/conf.d/flask_app.d/conf.yaml"
    run = converged.converge(dict(dev_files, **{conf: dev_files[conf] + "# changed\n"}))
    assert run.returncode == 0, run.stdout + run.stderr
    assert restarts(run) == ["datadog-agent"]
    assert not [c for c in run.called("datadog-agent") if c.startswith("datadog-agent check")]


# --------------------------------------------------------------------------- the traffic generator
def test_switching_the_traffic_off_stops_and_disables_it_and_removes_its_files(converged, rendered_bundle):
    unit = converged.path("/etc/systemd/system/app-traffic.service")
    assert unit.exists()  # dev runs it (appTrafficEnabled)
    run = converged.converge(rendered_bundle("dev", {"appTrafficEnabled": False}))
    assert run.returncode == 0, run.stderr
    assert "systemctl stop app-traffic.service" in run.calls
    assert not [c for c in run.calls if c.startswith(("systemctl restart app-traffic", "systemctl enable app-traffic"))]
    assert not unit.exists()
    assert not converged.path("/etc/systemd/system/multi-user.target.wants/app-traffic.service").exists()
    assert not converged.path("/usr/local/lib/observability-lab/app_traffic.py").exists()
    (event,) = converged.events()  # a change like any other: on the graphs
    assert "app-traffic" in event.title + event.text
    # Off stays off: the next run neither starts it nor reports a change.
    again = converged.converge(rendered_bundle("dev", {"appTrafficEnabled": False}))
    assert again.returncode == 0 and converged.events() == []
    assert not [c for c in again.calls if "app-traffic" in c and not c.startswith("systemctl stop")]
