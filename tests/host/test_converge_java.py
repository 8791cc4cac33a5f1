"""converge.sh's `tomcat` unit (the Java workload), on the dev bundle, in a scratch root.

The same recorders as tests/host/test_converge_script.py stand in for apt, systemd, MySQL, ss
and the Agent (`datadog-agent jmx list collected` answers in JMXFetch's report format, or
as one that cannot connect). What is tested is converge's own logic for the unit: the
packages, the passwords made on the host, which unit restarts for which change, the
checks after a JVM restart (the app answering, JMX on loopback only, the Agent collecting
every bean the monitors read; the report read, not the exit status), the rollback, and
the feature switched off. The JVM itself runs in tests/host/test_java_app.py.
"""
from __future__ import annotations

import re

import pytest
import yaml

from rendering.bundle import FEATURE_FILES, JMX_COLLECTED, manifest_entries
from tests.support import JMX_PASSWORD_FILE
from tests.support.converge_harness import HOST_USERS, Host, jmx_report, restarts

DROP_IN = "/etc/systemd/system/tomcat10.service.d/observability-lab.conf"
CONTEXT = "/etc/tomcat10/Catalina/localhost/cars.xml"
TOMCAT_CONF = "/etc/datadog-agent/conf.d/tomcat.d/conf.yaml"
CARS_SQL = "/var/lib/observability-lab/mysql/cars_user.sql"
HEX48 = r"[0-9a-f]{48}"


@pytest.fixture(scope="module")
def java_dev_files(dev_files) -> dict[str, str]:
    """dev's bundle: dev runs the Java app."""
    return dev_files


@pytest.fixture(scope="module")
def dev_files_without_java(rendered_bundle) -> dict[str, str]:
    return rendered_bundle("dev", {"javaAppEnabled": "false"})


def changed(run) -> dict[str, str]:
    return {target: action for target, action in run.report("file").items() if action != "unchanged"}


@pytest.fixture
def first_java_converge(first_converge):
    """The first converge of java_dev_files (tests/host/conftest.py), read only."""
    return first_converge.host, first_converge.run


@pytest.fixture
def java_host(converged) -> Host:
    return converged


def test_the_first_run_installs_the_packages_and_starts_tomcat_after_the_grants(first_java_converge):
    host, run = first_java_converge
    (install,) = [c for c in run.called("apt-get") if "--no-install-recommends" in c]
    assert install.endswith("tomcat10 default-jre-headless libmariadb-java")
    # dev also runs issue 20's traffic generator, after the app it calls (and before Tomcat).
    assert restarts(run) == ["flask-app.service", "app-traffic.service", "tomcat10.service", "datadog-agent"]
    assert "systemctl enable tomcat10.service" in run.calls
    assert run.report("service")["tomcat10.service"] == "restarted"
    # Checked as the unit restarted: the app through the pool, JMX on loopback only, and
    # (its tomcat.d new in this run) the Agent's JMXFetch once the Agent runs on it.
    assert any(c.startswith("ss -Hltn sport = :") for c in run.calls)
    jmx = run.calls.index("datadog-agent jmx list collected --checks tomcat")
    assert jmx > run.calls.index("systemctl restart datadog-agent")
    assert "datadog-agent check tomcat" not in run.calls  # a JMX check: JMXFetch's report instead


def test_the_passwords_are_made_on_the_host_and_agree_between_their_files(first_java_converge):
    host, _ = first_java_converge
    (jmx_password,) = re.findall(rf"^monitorRole ({HEX48})$", host.path(JMX_PASSWORD_FILE).read_text(), re.M)
    conf = yaml.safe_load(host.path(TOMCAT_CONF).read_text())
    assert conf["instances"][0]["password"] == jmx_password
    (cars_password,) = re.findall(rf'password="({HEX48})"', host.path(CONTEXT).read_text())
    granted = (host.fake / "mysql.sql").read_text()
    assert f"'cars'@'127.0.0.1' IDENTIFIED BY '{cars_password}'" in granted
    assert "@@CARS_MYSQL_PASSWORD@@" in host.path(CARS_SQL).read_text()  # the record keeps its placeholder
    assert cars_password != jmx_password
    info = host.path(JMX_PASSWORD_FILE).stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o777) == (HOST_USERS["tomcat"], HOST_USERS["tomcat"], 0o400)


def test_a_second_run_keeps_the_passwords_and_restarts_nothing(second_converge):
    java_host, run = second_converge.host, second_converge.run  # dev converged twice (tests/host/conftest.py)
    before = {path: second_converge.first.path(path).read_text() for path in (JMX_PASSWORD_FILE, TOMCAT_CONF, CONTEXT)}
    assert run.returncode == 0, run.stderr
    assert changed(run) == {} and restarts(run) == []
    assert run.report("service")["tomcat10.service"] == "kept"
    assert "datadog-agent jmx list collected --checks tomcat" not in run.calls
    assert {path: java_host.path(path).read_text() for path in before} == before


def test_a_jvm_flag_change_restarts_only_the_jvm_and_checks_what_the_agent_collects(java_host, java_dev_files):
    files = dict(java_dev_files)
    files["tomcat/observability-lab.conf"] = files["tomcat/observability-lab.conf"].replace("-Xmx", "-Xss1m -Xmx")
    run = java_host.converge(files)
    assert run.returncode == 0, run.stderr
    assert changed(run) == {DROP_IN: "updated"}
    assert restarts(run) == ["tomcat10.service"]
    assert "systemctl daemon-reload" in run.calls
    assert "datadog-agent jmx list collected --checks tomcat" in run.calls


def test_an_agent_side_change_restarts_only_the_agent(java_host, java_dev_files):
    files = dict(java_dev_files)
    files["agent/conf.d/tomcat.d/conf.yaml"] += "# reviewed\n"
    run = java_host.converge(files)
    assert run.returncode == 0, run.stderr
    assert changed(run) == {TOMCAT_CONF: "updated"}
    assert restarts(run) == ["datadog-agent"]
    assert "datadog-agent jmx list collected --checks tomcat" in run.calls


@pytest.mark.parametrize("flags, message", [
    # JMX on every address: what ss shows, the JVM bound as its flags say.
    (lambda opts: opts.replace("jmxremote.host=127.0.0.1", "jmxremote.host=0.0.0.0"), "listening on '*:"),
    # JMX moved off the port the stack names (and the Agent's tomcat.d with it).
    (lambda opts: re.sub(r"(jmxremote(\.rmi)?\.port)=(\d+)", r"\1=19999", opts), "listening on '', expected"),
])
def test_new_jvm_flags_that_break_jmx_are_rolled_back(java_host, java_dev_files, flags, message):
    before = java_host.path(DROP_IN).read_text()
    files = dict(java_dev_files)
    files["tomcat/observability-lab.conf"] = flags(files["tomcat/observability-lab.conf"])
    run = java_host.converge(files)
    assert run.returncode != 0
    assert message in run.stderr
    assert "tomcat rejected its new files; the previous ones are back and it runs on them" in run.stdout
    assert java_host.path(DROP_IN).read_text() == before
    assert restarts(run) == ["tomcat10.service", "tomcat10.service"]


def test_a_tomcat_that_does_not_stay_up_is_rolled_back(java_host, java_dev_files):
    before = java_host.path(DROP_IN).read_text()
    java_host.set("dies-at-start.tomcat10.service")
    files = dict(java_dev_files)
    files["tomcat/observability-lab.conf"] = files["tomcat/observability-lab.conf"].replace("-Xmx", "-Xss1m -Xmx")
    run = java_host.converge(files)
    assert run.returncode != 0 and "tomcat10.service is not active" in run.stderr
    # Its previous drop-in is back (the stand-in's Tomcat dies on that one too, which the run says).
    assert java_host.path(DROP_IN).read_text() == before
    assert "FAILED: tomcat fails with its new files, and with the previous ones restored too" in run.stdout, run.stdout
    assert restarts(run) == ["tomcat10.service", "tomcat10.service"]


def test_only_the_report_tells_whether_the_agent_collects_the_beans(java_host, java_dev_files):
    """JMXFetch's report lists a bean it reaches; an instance that cannot connect lists none,
    and `jmx list` still exits 0: a report without the pool's bean fails the unit."""
    java_host.set("jmx.collected", jmx_report(pair for pair in JMX_COLLECTED if "ConnectionPool" not in pair))
    files = dict(java_dev_files)
    files["agent/conf.d/tomcat.d/conf.yaml"] += "# reviewed\n"
    run = java_host.converge(files)
    assert run.returncode != 0
    assert "does not list tomcat.jdbc:type=ConnectionPool/WaitCount" in run.stderr


def test_a_lost_agent_conf_gets_the_jvms_password_back_without_restarting_the_jvm(java_host, java_dev_files):
    password = java_host.path(JMX_PASSWORD_FILE).read_text()
    java_host.path(TOMCAT_CONF).unlink()
    run = java_host.converge(java_dev_files)
    assert run.returncode == 0, run.stderr
    assert changed(run) == {TOMCAT_CONF: "created"}
    assert restarts(run) == ["datadog-agent"]
    assert java_host.path(JMX_PASSWORD_FILE).read_text() == password
    assert password.split()[-1] in java_host.path(TOMCAT_CONF).read_text()


def test_switching_the_feature_off_removes_its_files_stops_tomcat_and_drops_its_mysql_user(
        java_host, java_dev_files, dev_files_without_java):
    run = java_host.converge(dev_files_without_java)
    assert run.returncode == 0, run.stdout + run.stderr
    entries = manifest_entries(java_dev_files["manifest"])
    feature = {target for file, target, *_ in entries
               if file in {path.removesuffix(".tmpl") for path in FEATURE_FILES["javaApp"]}}
    # The process check's Tomcat instance goes too.
    assert feature and changed(run) == {**{target: "removed" for target in feature},
                                        "/etc/datadog-agent/conf.d/process.d/conf.yaml": "updated"}
    assert not any(java_host.path(target).exists() for target in feature)
    assert "systemctl disable --now tomcat10.service" in run.calls
    assert run.report("service")["tomcat10.service"] == "stopped"
    assert "DROP USER IF EXISTS 'cars'@'127.0.0.1';" in (java_host.fake / "mysql.sql").read_text()
    assert "datadog-agent check tomcat" not in run.calls
    assert "datadog-agent jmx list collected --checks tomcat" not in run.calls
    # Packages stay: no apt run at all, nothing removed.
    assert run.called("apt-get") == []
    # And once off, later runs have nothing of it to report.
    again = java_host.converge(dev_files_without_java)
    assert again.returncode == 0 and "tomcat10.service" not in again.report("service")

