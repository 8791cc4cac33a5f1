"""The Java workload for real: Debian's tomcat10 and JRE running the rendered bundle's files.

The dev stack's bundle is rendered by the program; its `tomcat` unit's files are installed
in a scratch root with their manifest owners and modes, and the package's own catalina.sh
runs as `tomcat` with the drop-in's CATALINA_OPTS (tests/support/tomcat_server.py). The cars
app's pool connects to the test's MariaDB with the rendered grants (mysql/cars_user.sql,
applied as converge.sh applies it). A JMX client that is not ours (PyPI jmxquery: its own
jar on the JRE, connecting over remote JMX like the Agent's JMXFetch) then reads every
MBean attribute the rendered tomcat.d conf makes the Agent collect.

One JVM serves every test but the refusal's: it runs in a network namespace of its own
(tests/support/netns.py), where another namespace, joined by a veth pair, plays another
host; the tests' clients run inside the JVM's namespace, and its pool reaches the test's
MariaDB through a relay of 127.0.0.1 at MariaDB's port (MariaDB sees a client on 127.0.0.1).

Debian 12 ships Tomcat 10.1 and OpenJDK 17; Ubuntu 24.04 ships Tomcat 10.1 and OpenJDK 21
(22.04: Tomcat 10.0, OpenJDK 11), so nothing here depends on a JDK-17-only behaviour: the
flags are the JDK's documented com.sun.management.jmxremote.* properties. MariaDB is not
MySQL 8: the driver's caching_sha2_password handshake (allowPublicKeyRetrieval in the
pool's URL) is not exercised here (tests/test_mysql_grants.py lists the other differences).
"""
from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from jmxquery import JMXConnection, JMXQuery

from rendering.bundle import JMX_COLLECTED, TOMCAT_MAIN_CLASS, TOMCAT_USER, manifest_entries
from tests.support import JMX_PASSWORD_FILE, netns, tomcat_server
from tests.support.local_processes import free_port, wait_until

TOMCAT_CONF = "agent/conf.d/tomcat.d/conf.yaml"
PROCESS_CONF = "agent/conf.d/process.d/conf.yaml"
CARS_SQL = "mysql/cars_user.sql"
SECRETS = ("@@CARS_MYSQL_PASSWORD@@", "@@JMX_PASSWORD@@")

DEFAULT_TARGETS = tomcat_server.JMXFETCH_TOMCAT_DEFAULTS


def jmx_read(tomcat: tomcat_server.ScratchTomcat, queries: list[str], user, password) -> list:
    connection = JMXConnection(f"service:jmx:rmi:///jndi/rmi://127.0.0.1:{tomcat.jmx_port}/jmxrmi",
                               user, password, java_path=str(tomcat.client_java()))
    return connection.query([JMXQuery(query) for query in queries], timeout=60)


def jmx_refusal(tomcat, user, password) -> str:
    """The client's error output for a login that must fail."""
    with pytest.raises(subprocess.CalledProcessError) as refused:
        jmx_read(tomcat, ["java.lang:type=Memory/HeapMemoryUsage"], user, password)
    return (refused.value.stderr or b"").decode(errors="replace")


def conf_targets(conf: dict) -> dict[str, tuple[str, ...]]:
    """The conf's own `conf:` includes as bean pattern -> attributes."""
    targets = {}
    for entry in conf["init_config"]["conf"]:
        include = dict(entry["include"])
        domain = include.pop("domain")
        attributes = tuple(include.pop("attribute"))
        keys = ",".join(f"{key}={value}" for key, value in include.items())
        targets[f"{domain}:{keys},*"] = attributes
    return targets


@pytest.fixture(scope="module")
def java_bundle(rendered_bundle):
    """The dev stack's bundle (the Java workload on), its JMX on a free port: other programs
    share this machine's loopback."""
    files = rendered_bundle("dev", {"javaJmxPort": str(free_port())})
    return files, manifest_entries(files["manifest"])


@pytest.fixture(scope="module")
def host_secrets() -> dict[str, str]:
    """The passwords converge.sh makes on the host (openssl rand -hex 24)."""
    return {placeholder: secrets.token_hex(24) for placeholder in SECRETS}


@pytest.fixture(scope="module")
def cars_database(mariadb, java_bundle, host_secrets):
    """The rendered cars_user.sql applied as root, twice (every statement is re-runnable)."""
    files, _ = java_bundle
    sql = files[CARS_SQL].replace("@@CARS_MYSQL_PASSWORD@@", host_secrets["@@CARS_MYSQL_PASSWORD@@"])
    for _ in range(2):
        subprocess.run([str(mariadb.client_dir / "mysql"), "--user=root"], input=sql, text=True, check=True)
    return mariadb


@pytest.fixture(scope="module")
def namespaces():
    """The server's and a client's network namespace (tests/support/netns.py); None without
    root: the JVM then runs in this process's namespace, and the isolation test fails."""
    if os.geteuid() != 0:
        yield None
        return
    with netns.pair("ol-jmx") as pair:
        yield pair


@pytest.fixture(scope="module")
def tomcat(java_bundle, host_secrets, cars_database, namespaces):
    """The JVM, in a network namespace of its own where root can make one (one JVM serves the
    app's, JMX's and the isolation tests: a Tomcat start is ~2-4 CPU-s). There the package's
    HTTP connector listens on every address, as on the host, and 127.0.0.1 at MariaDB's port is
    relayed to the test's MariaDB; the tests' clients run inside that namespace."""
    files, manifest = java_bundle
    jmx_port = int(yaml.safe_load(files[TOMCAT_CONF])["instances"][0]["port"])
    server_ns = namespaces.server if namespaces else None
    relay = netns.Relay(netns.listen_in(server_ns, "127.0.0.1", cars_database.port),
                        ("127.0.0.1", cars_database.port)) if server_ns else None
    try:
        with tomcat_server.scratch_directory() as work:
            server = tomcat_server.prepare(work, files, manifest, host_secrets, mysql_port=cars_database.port,
                                           jmx_port=jmx_port, netns=server_ns,
                                           http_address="0.0.0.0" if server_ns else "127.0.0.1")
            server.start()
            yield server
            server.stop()
    finally:
        if relay is not None:
            relay.close()


@pytest.fixture
def scratch():
    with tomcat_server.scratch_directory() as work:
        yield work


def jmx_password(files, host_secrets) -> str:
    conf = yaml.safe_load(files[TOMCAT_CONF].replace("@@JMX_PASSWORD@@", host_secrets["@@JMX_PASSWORD@@"]))
    return conf["instances"][0]["password"]


def request(tomcat: tomcat_server.ScratchTomcat, form: dict | None = None) -> tuple[int, str]:
    """GET (or POST `form` to) the app's page, from inside the JVM's network namespace."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    try:
        with netns.entered(tomcat.netns), \
                urllib.request.build_opener(NoRedirect).open(tomcat.url, data=data, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def pool_borrows(tomcat, password) -> int:
    (borrowed,) = jmx_read(tomcat, ["tomcat.jdbc:type=ConnectionPool,*/BorrowedCount"], "monitorRole", password)
    return int(borrowed.value)


def test_the_app_reads_and_writes_mysql_through_the_tomcat_jdbc_pool(tomcat, java_bundle, host_secrets):
    files, _ = java_bundle
    password = jmx_password(files, host_secrets)
    before = pool_borrows(tomcat, password)
    status, page = request(tomcat)
    assert status == 200 and "Model T" in page and "Beetle" in page
    make = f"Saab-{secrets.token_hex(3)}"
    status, _ = request(tomcat, {"make": make, "model": "<9-3>", "year": "2003"})
    assert status == 303
    status, page = request(tomcat)
    assert status == 200 and make in page and "&lt;9-3&gt;" in page and "<9-3>" not in page
    assert request(tomcat, {"make": make, "model": "x", "year": "203"})[0] == 400
    # Each request that reached the database borrowed a connection: the pool's metric moves.
    assert pool_borrows(tomcat, password) >= before + 3


def test_the_cars_user_may_only_list_and_add_cars(cars_database, host_secrets):
    import pymysql
    db = cars_database.connect("cars", host_secrets["@@CARS_MYSQL_PASSWORD@@"], database="cars")
    with db.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM cars")
        for statement in ("DELETE FROM cars", "UPDATE cars SET year = 1900", "DROP TABLE cars",
                          "SELECT user FROM mysql.user", "CREATE TABLE cars.other (id INT)"):
            with pytest.raises(pymysql.err.OperationalError) as denied:
                cursor.execute(statement)
            assert denied.value.args[0] in (1044, 1142, 1227), statement
    db.close()


def collected_targets(files) -> dict[str, tuple[str, ...]]:
    """Every bean pattern -> attributes the Agent reads with the rendered tomcat.d conf."""
    return {**DEFAULT_TARGETS, **conf_targets(yaml.safe_load(files[TOMCAT_CONF]))}


@dataclass(frozen=True)
class Collection:
    """One JMX login of the Agent's: what it read, and the password file around it."""
    results: list
    password_file_before: tuple
    password_file_after: tuple


def _password_file(tomcat) -> tuple:
    path = tomcat.host_path(JMX_PASSWORD_FILE)
    return path.read_bytes(), path.stat().st_mode, path.stat().st_mtime_ns, path.stat().st_uid


@pytest.fixture(scope="module")
def collection(tomcat, java_bundle, host_secrets) -> Collection:
    """Every bean and attribute the conf collects, read in one login (a JMX client JVM each
    costs ~0.5 CPU-s) once the app has served a page: the servlet and JSP beans exist then."""
    files, _ = java_bundle
    request(tomcat)
    before = _password_file(tomcat)
    queries = [f"{bean}/{attribute}" for bean, attributes in collected_targets(files).items()
               for attribute in attributes]
    results = jmx_read(tomcat, queries, "monitorRole", jmx_password(files, host_secrets))
    return Collection(results, before, _password_file(tomcat))


def test_jmx_serves_every_bean_and_attribute_the_tomcat_conf_collects(collection, java_bundle):
    files, _ = java_bundle
    conf = yaml.safe_load(files[TOMCAT_CONF])
    init = conf["init_config"]
    assert init["is_jmx"] is True and init["collect_default_metrics"] is True and init["new_gc_metrics"] is True
    assert Path(init["java_bin_path"]) == tomcat_server.JAVA
    targets = collected_targets(files)
    assert "tomcat.jdbc:type=ConnectionPool,*" in targets
    # What converge.sh requires the Agent to collect is among what is read here.
    for expected in JMX_COLLECTED:
        bean, attribute = expected.rsplit("/", 1)
        assert any(pattern.startswith(bean) and attribute in attributes for pattern, attributes in targets.items()), \
            expected
    results = collection.results
    found = {(result.attribute, _bean_matches(result.mBeanName, targets)) for result in results
             if isinstance(result.value, (int, float))}
    missing = [f"{bean}/{attribute}" for bean, attributes in targets.items() for attribute in attributes
               if (attribute, bean) not in found]
    assert not missing, f"no numeric value over JMX for {missing}"
    pool = {result.attribute: result.value for result in results if "type=DataSource" in result.mBeanName}
    assert pool["maxActive"] == int(re.search(r'maxActive="(\d+)"', files["tomcat/cars.xml"]).group(1))


def _bean_matches(name: str, targets) -> str | None:
    domain, _, keys = name.partition(":")
    properties = dict(key.split("=", 1) for key in keys.split(","))
    for pattern in targets:
        pattern_domain, _, pattern_keys = pattern.partition(":")
        wanted = [key.split("=", 1) for key in pattern_keys.split(",") if key != "*"]
        if pattern_domain == domain and all(properties.get(k) == v for k, v in wanted):
            return pattern
    return None


def test_jmx_refuses_a_wrong_and_a_missing_password(tomcat):
    assert "Authentication failed" in jmx_refusal(tomcat, "monitorRole", "not-" + secrets.token_hex(8))
    assert "Credentials required" in jmx_refusal(tomcat, None, None)


def test_a_login_leaves_the_password_file_as_installed(collection, host_secrets):
    before, after = collection.password_file_before, collection.password_file_after
    assert collection.results  # the login succeeded
    assert after == before
    # Still the cleartext line converge.sh wrote (JDK 17+ would have replaced it by a hash).
    assert before[0].decode().splitlines()[-1] == f"monitorRole {host_secrets['@@JMX_PASSWORD@@']}"


def test_jmx_listens_on_the_loopback_port_only(tomcat):
    listeners = subprocess.run([*netns.exec_in(tomcat.netns), "ss", "-Hltnp"], capture_output=True, text=True,
                               check=True).stdout
    mine = [line.split()[3] for line in listeners.splitlines() if f"pid={tomcat.process.pid}," in line]
    on_jmx_port = [address for address in mine if address.rsplit(":", 1)[1] == str(tomcat.jmx_port)]
    assert on_jmx_port and all(re.fullmatch(r"(\[::ffff:)?127\.0\.0\.1\]?", a.rsplit(":", 1)[0])
                               for a in on_jmx_port), mine


def test_the_process_check_and_the_live_process_monitor_find_the_tomcat_jvm(tomcat, java_bundle):
    files, _ = java_bundle
    instances = yaml.safe_load(files[PROCESS_CONF])["instances"]
    (instance,) = [i for i in instances if i["name"] == "tomcat"]
    # How the process check matches (integrations-core process.py): exact_match false ->
    # re.search over the command line joined by spaces; `user` -> the process's user name.
    pid = _child_java(tomcat.process.pid)
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    joined = " ".join(part.decode() for part in cmdline)
    assert instance["exact_match"] is False and any(re.search(s, joined) for s in instance["search_string"])
    owner = os.stat(f"/proc/{pid}").st_uid
    assert instance["user"] == TOMCAT_USER
    if os.geteuid() == 0:
        import pwd
        assert pwd.getpwuid(owner).pw_name == TOMCAT_USER
    assert TOMCAT_MAIN_CLASS in joined.split()
    # The Agent's own JMXFetch JVM is java too, under dd-agent, with another main class.
    jmxfetch = "java -Xmx200m -Xms50m -classpath /opt/datadog-agent/bin/agent/dist/jmx/jmxfetch.jar org.datadog.jmxfetch.App"
    assert not any(re.search(s, jmxfetch) for s in instance["search_string"])


def _child_java(pid: int) -> int:
    """The JVM's pid: catalina.sh execs java (setpriv too), so the launched pid is the JVM."""
    assert Path(f"/proc/{pid}/exe").resolve().name == "java", Path(f"/proc/{pid}/exe").resolve()
    return pid


def _connects(namespace: str, address: str, port: int) -> bool:
    """A TCP connection to address:port, made from inside `namespace`."""
    with netns.entered(namespace):
        try:
            socket.create_connection((address, port), timeout=3).close()
            return True
        except OSError:
            return False


def test_the_jmx_port_is_unreachable_from_another_network_namespace(tomcat, namespaces):
    if namespaces is None:
        pytest.fail("network namespaces need root (CI and `make test` run as root)")
    # The package's HTTP connector listens on every address: the control that the client
    # does reach the server's namespace.
    wait_until(lambda: _connects(namespaces.server, "127.0.0.1", tomcat.jmx_port), 30,
               "JMX inside the server's namespace")
    assert _connects(namespaces.client, netns.Pair.SERVER_ADDRESS, tomcat.http_port)
    assert not _connects(namespaces.client, netns.Pair.SERVER_ADDRESS, tomcat.jmx_port)


# --- A refusal: a JVM of its own on the same rendered files -----------------------------

def test_a_password_file_others_can_read_stops_the_jvm(scratch, java_bundle, host_secrets, cars_database):
    files, manifest = java_bundle
    server = tomcat_server.prepare(scratch, files, manifest, host_secrets, mysql_port=cars_database.port,
                                   jmx_port=free_port())
    server.host_path(JMX_PASSWORD_FILE).chmod(0o644)
    process = server.launch()
    try:
        process.wait(timeout=60)
    finally:
        server.stop()
    assert process.returncode != 0
    assert "Password file read access must be restricted" in server.log_text()
