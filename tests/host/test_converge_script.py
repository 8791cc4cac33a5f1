"""userdata/converge.sh, run by bash on the bundles the stacks render, in a scratch root.

The host commands it would change the machine with are recorders (tests/converge_harness.py);
what is tested is the script's own logic: what it writes, restarts, installs and reports
on a first run, a repeated run and single changes, and how it refuses and rolls back.
Package installs, systemd, MySQL and the Agent themselves only run on a host.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from rendering.bundle import USERDATA_DIR, manifest_entries
from tests.support.converge_harness import DEFAULT_DATADOG_HOSTNAME, IMDS_TOKEN, Host, write_bundle

AGENT_CONFIG = "/etc/datadog-agent/datadog.yaml"
AGENT_CHECK_CONF = "/etc/datadog-agent/conf.d/custom_my_metric.yaml"
MYSQL_CONF = "/etc/datadog-agent/conf.d/mysql.d/conf.yaml"
HOSTNAME_TAG_URL = "http://169.254.169.254/latest/meta-data/tags/instance/datadog-hostname"


@pytest.fixture(scope="module")
def dev_files(bundle_of) -> dict[str, str]:
    return bundle_of("dev")


@pytest.fixture
def host(tmp_path) -> Host:
    return Host(tmp_path)


@pytest.fixture(scope="module")
def first_converge(tmp_path_factory, dev_files) -> Host:
    host = Host(tmp_path_factory.mktemp("converged"))
    first = host.converge(dev_files)
    assert first.returncode == 0, first.stdout + first.stderr
    return host


@pytest.fixture
def converged(first_converge, tmp_path) -> Host:
    """A host after its first converge on the dev bundle (a copy of one, run once)."""
    return first_converge.copy(tmp_path / "host")


def restarts(run) -> list[str]:
    return [c.split()[-1] for c in run.called("systemctl") if c.split()[1] == "restart"]


def test_first_run_installs_everything(host, dev_files):
    run = host.converge(dev_files)
    assert run.returncode == 0, run.stdout + run.stderr
    entries = manifest_entries(dev_files["manifest"])
    assert run.report("file") == {target: "created" for _, target, *_ in entries}
    for file, target, owner, mode, _ in entries:
        installed = host.path(target)
        assert oct(installed.stat().st_mode & 0o777) == oct(int(mode, 8)), target
        assert f"chown {owner} {installed}.converge-new" in run.calls
        if target not in (MYSQL_CONF, AGENT_CONFIG):
            assert installed.read_text() == dev_files[file], target
    # The one per-host value, from the instance's tag; the bundle is the same on every host.
    assert host.path(AGENT_CONFIG).read_text() == dev_files["agent/datadog.yaml"].replace(
        '"@@DATADOG_HOSTNAME@@"', f'"{DEFAULT_DATADOG_HOSTNAME}"')
    assert f"datadog hostname: {DEFAULT_DATADOG_HOSTNAME} (instance tag datadog-hostname)" in run.stdout
    # Packages from apt, the Agent at its pinned version and held.
    assert any("install --no-install-recommends ca-certificates curl gnupg python3-venv mysql-server-8.0" in c
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
    assert restarts(run) == ["flask-app.service", "datadog-agent"]
    assert "pip install --quiet --disable-pip-version-check -r " \
           f"{host.path('/opt/sample-flask-app/requirements.txt')}" in run.calls
    assert run.calls.index("datadog-agent configcheck") > run.calls.index("systemctl restart datadog-agent")
    assert run.report("service") == {"mysql": "started", "flask-app.service": "restarted",
                                      "datadog-agent": "restarted"}
    assert run.report("grants for") == {"datadog@mysql": "applied"}
    assert "filesystem /: kept" in run.stdout


def test_the_agents_hostname_is_the_instances_tag_read_with_an_imdsv2_token(host, dev_files):
    host.set("imds.datadog-hostname", "observability-lab-prod-7")
    run = host.converge(dev_files)
    assert run.returncode == 0, run.stdout + run.stderr
    config = yaml.safe_load(host.path(AGENT_CONFIG).read_text())
    assert config["hostname"] == "observability-lab-prod-7"
    token, tag = run.called("curl")[:2]
    assert "-X PUT" in token and token.endswith("http://169.254.169.254/latest/api/token")
    assert tag.endswith(HOSTNAME_TAG_URL) and f"X-aws-ec2-metadata-token: {IMDS_TOKEN}" in tag


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
    if tag is None:
        host.clear("imds.datadog-hostname")
    else:
        host.set("imds.datadog-hostname", tag)
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


def test_a_new_password_is_granted_even_when_the_grants_did_not_change(converged, dev_files):
    converged.path(MYSQL_CONF).unlink()  # e.g. removed by hand, or by a rolled-back first run
    run = converged.converge(dev_files)
    assert run.returncode == 0, run.stderr
    (password,) = re.findall(r'password: "([0-9a-f]{48})"', converged.path(MYSQL_CONF).read_text())
    assert run.report("grants for") == {"datadog@mysql": "applied"}
    assert (converged.fake / "mysql.sql").read_text().count(f"IDENTIFIED BY '{password}'") == 4


def test_a_run_killed_before_its_restart_is_finished_by_the_next_one(converged, bundle_of):
    files = bundle_of("dev", {"checkIntervalSeconds": 30})
    converged.set("kill-at-restart.datadog-agent")
    killed = converged.converge(files)
    assert killed.returncode != 0 and "service datadog-agent" not in killed.stdout
    converged.clear("kill-at-restart.datadog-agent")
    run = converged.converge(files)
    assert run.returncode == 0, run.stderr
    assert set(run.report("file").values()) == {"unchanged"}  # written by the killed run
    assert restarts(run) == ["datadog-agent"] and run.report("service")["datadog-agent"] == "restarted"
    assert converged.converge(files).report("service")["datadog-agent"] == "kept"


def test_second_run_with_the_same_files_changes_and_restarts_nothing(converged, dev_files):
    run = converged.converge(dev_files)
    assert run.returncode == 0, run.stderr
    assert set(run.report("file").values()) == {"unchanged"}
    assert run.report("service") == {"mysql": "kept", "flask-app.service": "kept", "datadog-agent": "kept"}
    assert run.report("grants for") == {"datadog@mysql": "kept"}
    assert run.called("apt-get") == [] and run.called("mysql") == [] and run.called("pip") == []
    assert restarts(run) == [] and run.called("useradd") == [] and run.called("chown") == []
    assert "restarted or applied: nothing" in run.stdout


def test_changing_only_the_check_interval_rewrites_one_file_and_restarts_only_the_agent(
        converged, bundle_of):
    run = converged.converge(bundle_of("dev", {"checkIntervalSeconds": 30}))
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


def test_agent_upgrade_or_downgrade_is_an_apt_install_in_place(converged, bundle_of):
    run = converged.converge(bundle_of("dev", {"agentVersion": "7.71.0"}))
    assert run.returncode == 0, run.stderr
    (install,) = [c for c in run.called("apt-get") if " install " in c]
    assert install.endswith("--allow-downgrades --allow-change-held-packages datadog-agent=1:7.71.0-1")
    assert "package datadog-agent: 1:7.77.2-1 -> 1:7.71.0-1" in run.stdout
    assert restarts(run) == ["datadog-agent"]
    assert set(run.report("file").values()) == {"unchanged"}


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
    assert run.report("file")[MYSQL_CONF] == "created"
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


def test_first_boot_never_goes_back_to_an_older_bundle(converged, bundle_of):
    newer = converged.converge(bundle_of("dev", {"checkIntervalSeconds": 30}))
    assert newer.returncode == 0
    run = converged.converge(bundle_of("dev"), CONVERGE_TRIGGER="first-boot")
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


def test_a_grown_volume_grows_the_root_filesystem(converged, bundle_of):
    converged.set("growpart.status", "0")
    run = converged.converge(bundle_of("dev", {"rootVolumeGiB": 40}))
    assert run.returncode == 0, run.stderr
    assert "growpart /dev/nvme0n1 1" in run.calls and "resize2fs /dev/nvme0n1p1" in run.calls
    assert "filesystem /: grown" in run.stdout
    assert restarts(run) == []


def test_growing_waits_for_ec2_to_finish_resizing_the_volume(converged, bundle_of):
    converged.set("growpart.status", "0")
    converged.set("disk.gib", "20\n20\n20\n40\n")
    run = converged.converge(bundle_of("dev", {"rootVolumeGiB": 40}))
    assert run.returncode == 0, run.stderr
    assert run.called("sleep") == ["sleep 1"] * 3
    assert run.calls.index("growpart /dev/nvme0n1 1") > run.calls.index("sleep 1")


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


def test_apt_retries_with_backoff_until_success(host):
    result = run_steps(host, """
apt-get() { n=$(cat "$FAKE/tries" 2>/dev/null || echo 0); echo $((n + 1)) >"$FAKE/tries"; [ "$n" -ge 2 ]; }
apt_retry update""")
    assert result.returncode == 0, result.stderr
    assert (host.fake / "tries").read_text().strip() == "3"
    assert (host.fake / "calls").read_text().split("\n")[:2] == ["sleep 5", "sleep 10"]


def test_apt_retries_are_bounded(host):
    result = run_steps(host, """
apt-get() { echo x >>"$FAKE/tries"; return 100; }
apt_retry install mysql-server-8.0""")
    assert result.returncode != 0
    assert len((host.fake / "tries").read_text().split()) == 6
    assert "failed after 6 tries" in result.stderr


def test_sourcing_the_script_runs_nothing(host):
    result = run_steps(host, "true")
    assert result.returncode == 0, result.stderr
    assert not (host.fake / "calls").exists() and not (host.fake / "log").exists()
