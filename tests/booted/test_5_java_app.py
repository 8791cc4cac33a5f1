"""Scenario 10: the Java workload (javaAppEnabled, on in dev) on the booted host.

The first boot converged the dev document, which has it: converge installed Debian 12's own
tomcat10 on its default headless JRE with libmariadb-java (from the Debian mirror, through the
relay), the drop-in, the cars app and its pool, the JMX files, and the Agent's tomcat.d, and
required the Agent's `jmx list collected` to list the monitored beans (the stand-in reads them
for real over remote JMX). Here, on a host booted from that disk: the JVM the unit runs, JMX as
the Agent sees it (from the host's own loopback, through the test's JMX client run in the host's
network namespace), the app through the pool, the password file after a login, a re-converge,
and the feature switched off and on again.
"""

from __future__ import annotations

import http.client
import re
import secrets
import stat
import subprocess
import urllib.parse

import pytest
from jmxquery import JMXConnection, JMXQuery

from rendering.bundle import JMX_COLLECTED, TOMCAT_MAIN_CLASS
from tests.support import JMX_PASSWORD_FILE
from tests.booted.documents import render
from tests.booted.host import JAVA_UNIT, assert_succeeded
from tests.support.local_processes import wait_until

CARS_PORT = 8080  # the package's own HTTP connector
MACHINE_JAVA = "/usr/lib/jvm/default-java/bin/java"  # the test's JMX client runs on the machine's JRE


def converge_env(rendered) -> dict[str, str]:
    return dict(line.split("=", 1) for line in rendered.files["converge.env"].splitlines()
                if "=" in line and not line.startswith("#"))


@pytest.fixture(scope="module")
def java_host(lab, converged_layer):
    """One host booted from the first boot's disk and a copy of its data volume (MySQL's data,
    the cars database among it), for the read-mostly checks of this module."""
    booted = lab.boot([converged_layer], volume=lab.converged_volume())
    wait_for_cars(booted)
    yield booted
    lab.shut(booted)


def wait_for_cars(booted, seconds: float = 120) -> None:
    wait_until(lambda: request(booted, "GET")[0] == 200, seconds,
               f"the cars app to answer on :{CARS_PORT} after the boot", interval=1)


def request(booted, method: str, form: dict | None = None) -> tuple[int, str]:
    """GET or POST /cars/ on 127.0.0.1:8080 inside the host's namespace."""
    connection = http.client.HTTPConnection("127.0.0.1", CARS_PORT, timeout=30)
    connection.sock = booted.netns.connect("127.0.0.1", CARS_PORT)
    body = urllib.parse.urlencode(form) if form else None
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if form else {}
    connection.request(method, "/cars/", body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read().decode()


@pytest.fixture(scope="module")
def jvm_in_namespace(java_host, tmp_path_factory) -> str:
    """A `java` that runs the machine's JRE inside the host's network namespace: 127.0.0.1 there
    is the host's loopback, where the JVM's JMX listens for the Agent."""
    wrapper = tmp_path_factory.mktemp("jmx") / "java"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {java_host.netns.name} {MACHINE_JAVA} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def jmx(booted, java: str, queries: list[str], user, password) -> list:
    port = converge_env(render())["JAVA_JMX_PORT"]  # the dev document's, which the host converged on
    connection = JMXConnection(f"service:jmx:rmi:///jndi/rmi://127.0.0.1:{port}/jmxrmi", user, password,
                               java_path=java)
    return connection.query([JMXQuery(query) for query in queries], timeout=60)


def jmx_password(booted) -> str:
    return booted.java_secrets()["@@JMX_PASSWORD@@"]


def main_pid(booted) -> str:
    pid = booted.machine.ok(["systemctl", "show", "-p", "MainPID", "--value", JAVA_UNIT]).strip()
    assert pid not in ("", "0"), f"{JAVA_UNIT} has no main process"
    return pid


def test_tomcat10_runs_on_the_distributions_default_headless_jre_with_the_drop_ins_flags(java_host, dev_document):
    booted = java_host
    assert booted.machine.is_active(JAVA_UNIT) == "active"
    for package in ("tomcat10", "default-jre-headless", "libmariadb-java"):
        version, _ = booted.package(package)
        assert version, package
    pid = main_pid(booted)
    # The unit's JVM is the distribution's default Java, as the Agent's java_bin_path names it.
    assert booted.machine.ok(["readlink", "-f", f"/proc/{pid}/exe"]).strip() == \
        booted.machine.ok(["readlink", "-f", "/usr/lib/jvm/default-java/bin/java"]).strip()
    user = booted.machine.ok(["ps", "-o", "user=", "-p", pid]).strip()
    argv = booted.machine.ok(["cat", f"/proc/{pid}/cmdline"]).split("\0")  # the container's /proc
    assert user == "tomcat" and TOMCAT_MAIN_CLASS in argv
    # Every flag of the rendered drop-in reached the packaged unit's JVM (CATALINA_OPTS).
    drop_in = dev_document.files["tomcat/observability-lab.conf"]
    (opts,) = re.findall(r'^Environment="CATALINA_OPTS=(.*)"$', drop_in, re.M)
    assert [flag for flag in opts.split() if flag not in argv] == []
    # JMX listens on the loopback only (the JVM's local-attach listener is another port).
    port = converge_env(dev_document)["JAVA_JMX_PORT"]
    listening = booted.machine.ok(["ss", "-Hltn", f"sport = :{port}"]).split("\n")
    addresses = [line.split()[3] for line in listening if line.strip()]
    assert addresses and all(re.fullmatch(r"(127\.0\.0\.1|\[::ffff:127\.0\.0\.1\]):\d+", a) for a in addresses), \
        addresses


def test_jmx_answers_monitor_role_on_the_loopback_and_refuses_a_wrong_or_no_password(java_host, jvm_in_namespace):
    results = jmx(java_host, jvm_in_namespace, ["java.lang:type=Memory/HeapMemoryUsage",
                                                "Catalina:type=DataSource,*/maxActive"],
                  "monitorRole", jmx_password(java_host))
    values = {(r.attribute, r.attributeKey): r.value for r in results}
    assert values[("HeapMemoryUsage", "used")] > 0 and values[("maxActive", None)] == 8, values
    for user, password, refusal in (("monitorRole", "not-" + secrets.token_hex(8), "Authentication failed"),
                                    (None, None, "Credentials required")):
        with pytest.raises(subprocess.CalledProcessError) as refused:
            jmx(java_host, jvm_in_namespace, ["java.lang:type=Runtime/Uptime"], user, password)
        assert refusal in (refused.value.stderr or b"").decode(errors="replace")


def test_the_agents_jmxfetch_collects_every_bean_the_monitors_read(java_host):
    report = java_host.machine.run(["datadog-agent", "jmx", "list", "collected", "--checks", "tomcat"], timeout=180)
    assert report.returncode == 0 and "Cannot connect" not in report.stdout, report.stdout + report.stderr
    for expected in JMX_COLLECTED:
        bean, attribute = expected.rsplit("/", 1)
        domain, keys = bean.split(":", 1)
        assert re.search(rf"Bean name: {re.escape(domain)}:(.*,)?{re.escape(keys)}(,.*)? - Attribute name: "
                         rf"{attribute} ", report.stdout), expected
    # The stand-in can fail as JMXFetch does: the same conf with another password connects to
    # nothing, says so, and still exits 0 (why converge reads the output).
    conf = java_host.machine.path("/etc/datadog-agent/conf.d/tomcat.d/conf.yaml").read_text()
    wrong = re.sub(r'password: "[0-9a-f]+"', 'password: "0123456789abcdef0123"', conf)
    assert wrong != conf
    java_host.machine.write("/var/lib/observability-lab-test/wrong/conf.d/tomcat.d/conf.yaml", wrong, mode=0o600)
    refused = java_host.machine.run(["datadog-agent", "jmx", "list", "collected", "--checks", "tomcat"], timeout=180,
                                    env={"DD_CONF_DIR": "/var/lib/observability-lab-test/wrong"})
    assert refused.returncode == 0 and "Cannot connect to instance 127.0.0.1:" in refused.stdout, refused.stdout
    assert "Authentication failed" in refused.stdout and "Matching:" not in refused.stdout


def test_the_cars_page_reads_and_writes_mysql_through_the_pool(java_host, jvm_in_namespace):
    def borrowed() -> int:
        (result,) = jmx(java_host, jvm_in_namespace, ["tomcat.jdbc:type=ConnectionPool,*/BorrowedCount"],
                        "monitorRole", jmx_password(java_host))
        return int(result.value)

    before = borrowed()
    status, page = request(java_host, "GET")
    assert status == 200 and "Model T" in page
    make = f"Saab-{secrets.token_hex(3)}"
    assert request(java_host, "POST", {"make": make, "model": "900", "year": "1979"})[0] == 303
    status, page = request(java_host, "GET")
    assert status == 200 and make in page
    # The row is in the host's MySQL, written as the cars user.
    rows = java_host.machine.ok(["mysql", "--user=root", "-N", "-e",
                                 f"SELECT model, year FROM cars.cars WHERE make = '{make}'"])
    assert rows.split() == ["900", "1979"], rows
    # Each request borrowed a connection from the pool: its metric moved.
    assert borrowed() >= before + 3


def test_the_password_file_stays_cleartext_0400_after_a_login_and_a_reconverge_changes_nothing(
        java_host, jvm_in_namespace, dev_document):
    path = java_host.machine.path(JMX_PASSWORD_FILE)

    def state():
        info = path.stat()
        return path.read_bytes(), stat.S_IMODE(info.st_mode), info.st_mtime_ns, info.st_ino

    before = state()
    assert jmx(java_host, jvm_in_namespace, ["java.lang:type=Runtime/Uptime"], "monitorRole", jmx_password(java_host))
    assert state() == before
    assert before[1] == 0o400
    assert before[0].decode().splitlines()[-1] == f"monitorRole {jmx_password(java_host)}"  # not a hash
    units = java_host.invocations()
    run = java_host.converge(dev_document)
    assert_succeeded(dev_document, run)
    assert run.changed_files() == {} and run.applied() == [], run.stdout
    assert run.report("service")["tomcat10.service"] == "kept"
    assert java_host.invocations() == units and state() == before


def test_switching_it_off_stops_tomcat_and_removes_its_files_and_on_brings_it_back(host, dev_document):
    off = render(javaAppEnabled=False)
    booted = host()
    run = booted.converge(off)
    booted.assert_converged(off, run)  # the feature's files gone, tomcat10 not active
    removed = {target for target, action in run.changed_files().items() if action == "removed"}
    assert {"/etc/tomcat10/jmxremote.password", "/etc/datadog-agent/conf.d/tomcat.d/conf.yaml",
            "/etc/systemd/system/tomcat10.service.d/observability-lab.conf", "/opt/cars-app/index.jsp",
            "/etc/tomcat10/Catalina/localhost/cars.xml"} <= removed, run.stdout
    assert run.report("service")["tomcat10.service"] == "stopped"
    assert booted.machine.run(["systemctl", "is-enabled", JAVA_UNIT]).stdout.strip() == "disabled"
    assert booted.processes(TOMCAT_MAIN_CLASS) == []
    assert booted.machine.ok(["mysql", "--user=root", "-N", "-e",
                              "SELECT COUNT(*) FROM mysql.user WHERE user = 'cars'"]).strip() == "0"
    again = booted.converge(dev_document)
    booted.assert_converged(dev_document, again)
    assert again.report("service")["tomcat10.service"] == "restarted"
    wait_for_cars(booted)
