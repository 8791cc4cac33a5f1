"""A booted stand-in for one EC2 host: a Machine in its namespace with its World of stand-ins.

`converge` runs a rendered SSM document inside as the SSM Agent does (the script written to a
file under /var/lib/amazon/ssm/, run by `sh` as root, in a unit of the host's systemd); a
`KillPoint` ends that run with SIGKILL at a chosen command, as an SSM timeout or a power cut
would. `assert_converged` is the layer's verdict on the real system: the run's report, every
unit active, each managed file with the manifest's owner, mode and content (and none readable
by others but unit files), the datadog MySQL user logging in over TCP with the password in the
rendered conf, the app answering and its trace reaching the intake, the Agent stand-in running
at the pinned version, held.
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
import stat
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pymysql
import yaml

from tests.booted.documents import Rendered
from tests.booted.machine import Machine
from tests.booted.netns import NetworkNamespace
from tests.booted.standins import World
from tests.booted.volume import DataVolume
from tests.support.local_processes import wait_until

UNITS = ("mariadb.service", "flask-app.service", "tomcat10.service", "datadog-agent.service")
JAVA_UNIT = "tomcat10.service"  # active only where the document has the Java workload (javaAppEnabled)
# Where converge keeps the Java workload's passwords made on the host (a file, and how to read it).
JAVA_SECRETS = {"@@JMX_PASSWORD@@": ("/etc/tomcat10/jmxremote.password", r"^monitorRole ([0-9a-f]{48})$"),
                "@@CARS_MYSQL_PASSWORD@@": ("/etc/tomcat10/Catalina/localhost/cars.xml", r'password="([0-9a-f]{48})"')}
SQL_RECORD = "/var/lib/observability-lab/mysql/datadog_user.sql"
SSM_DIR = "/var/lib/amazon/ssm/i-0b007edh0570000/document/orchestration"
_RUNS = itertools.count(1)


@dataclass
class ConvergeRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def report(self, prefix: str) -> dict[str, str]:
        """`file /etc/x: updated` -> {"/etc/x": "updated"} for the report lines starting with prefix."""
        return dict(line[len(prefix) + 1:].rsplit(": ", 1) for line in self.stdout.splitlines()
                    if line.startswith(prefix + " ") and ": " in line)

    def changed_files(self) -> dict[str, str]:
        return {path: action for path, action in self.report("file").items() if action != "unchanged"}

    def applied(self) -> list[str]:
        """The units the run restarted or applied, from its last line."""
        last = [line for line in self.stdout.splitlines() if line.startswith("== converged on")]
        return [] if not last else last[-1].split("restarted or applied: ", 1)[1].replace("nothing", "").split()


def assert_succeeded(rendered: Rendered, run: ConvergeRun) -> None:
    assert run.returncode == 0, f"converge exited {run.returncode}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert f"== converged on {rendered.digest[:12]}" in run.stdout, run.stdout[-2000:]


@dataclass(frozen=True)
class KillPoint:
    """SIGKILL to the whole converge run when it calls `command` with arguments containing
    `words`: before that command runs, or, with `once_exists`, while it runs, as soon as that
    path exists (a venv half made). For dpkg, apt is pointed at the wrapper."""
    command: str
    words: str
    once_exists: Optional[str] = None


def has_java(rendered: Rendered) -> bool:
    return "tomcat/observability-lab.conf" in rendered.files


class BootedHost:
    def __init__(self, machine: Machine, netns: NetworkNamespace, world: World, trace_intake: str):
        self.machine = machine
        self.netns = netns
        self.world = world
        self.trace_intake = trace_intake
        self.volume: Optional[DataVolume] = None  # its data volume (Lab.boot attaches it)
        self.volume_links: Optional[Path] = None  # the directory bound at its /dev/disk
        self.data_mount: Optional[Path] = None    # the machine's mount of it, bound in at boot

    # ------------------------------------------------------------------ running the document
    def converge(self, rendered: Rendered, kill: Optional[KillPoint] = None, timeout: float = 900,
                 env: Optional[dict[str, str]] = None) -> ConvergeRun:
        n = next(_RUNS)
        unit = f"ssm-converge-{n}"
        script = f"{SSM_DIR}/booted-{n:04d}/converge/_script.sh"
        self.machine.write(script, rendered.script, mode=0o700)
        if kill:
            self._arm(kill, unit)
        started = time.monotonic()
        try:
            result = self.machine.run(["sh", script], unit=unit, timeout=timeout, env=env)
        finally:
            if kill:
                self._disarm(kill)
        return ConvergeRun(result.returncode, result.stdout, result.stderr, time.monotonic() - started)

    def _arm(self, kill: KillPoint, unit: str) -> None:
        real = f"/usr/bin/{kill.command}"
        during = "" if kill.once_exists is None else (
            f'{real} "$@" &\n    while [ ! -e {kill.once_exists} ]; do sleep 0.02; done\n    ')
        self.machine.write(f"/usr/local/sbin/{kill.command}", f"""#!/bin/sh
# Test kill point: the converge run dies here, as under an SSM timeout or a power cut.
case " $* " in
  *"{kill.words}"*)
    # Never past this point: a kill systemd is slow to deliver (a loaded machine) is asked again,
    # and the real command never runs after it, or its work would be done after all.
    {during}while :; do /usr/bin/systemctl kill --signal=SIGKILL {unit}.service; sleep 5; done ;;
esac
exec {real} "$@"
""", mode=0o755)
        if kill.command == "dpkg":  # apt runs dpkg by its configured path, not through PATH
            self.machine.write("/etc/apt/apt.conf.d/00-test-kill-point",
                               'Dir::Bin::dpkg "/usr/local/sbin/dpkg";\n')

    def _disarm(self, kill: KillPoint) -> None:
        self.machine.path(f"/usr/local/sbin/{kill.command}").unlink(missing_ok=True)
        self.machine.path("/etc/apt/apt.conf.d/00-test-kill-point").unlink(missing_ok=True)

    # ------------------------------------------------------------------ looking at the system
    def sh(self, script: str, timeout: float = 120):
        """A shell script run inside as root (a file: systemd-run would expand `$`)."""
        path = f"/var/lib/observability-lab-test/{next(_RUNS)}.sh"  # not /run: a tmpfs inside
        self.machine.write(path, script, mode=0o700)
        return self.machine.run(["sh", path], timeout=timeout)

    def invocations(self) -> dict[str, str]:
        """Each unit's InvocationID: a new one means it was (re)started."""
        return {unit: self.machine._nsenter(["systemctl", "show", "-p", "InvocationID", "--value", unit],
                                            timeout=30).stdout.strip() for unit in UNITS}

    def file_states(self, rendered: Rendered) -> dict[str, tuple]:
        """(inode, mtime, ctime) of every managed file there is: any write, chmod or chown shows."""
        states = {}
        for _, target, *_ in rendered.manifest():
            path = self.machine.path(target)
            if path.exists():
                info = path.stat()
                states[target] = (info.st_ino, info.st_mtime_ns, info.st_ctime_ns)
        return states

    def package(self, name: str) -> tuple[str, bool]:
        """(installed version, held) of a package, from the host's dpkg and apt."""
        version = self.machine.ok(["dpkg-query", "-W", "-f=${Version}", name])
        held = name in self.machine.ok(["apt-mark", "showhold"]).split()
        return version, held

    def processes(self, needle: str) -> list[str]:
        """Command lines of the host's processes that contain needle (Live Processes' search)."""
        out = self.machine._nsenter(["ps", "-eo", "args", "--no-headers"], timeout=30).stdout
        return [line for line in out.splitlines() if needle in line and "ps -eo" not in line]

    def wait_for_listener(self, port: int, seconds: float = 30) -> None:
        """Waits until 127.0.0.1:port accepts a connection inside the host's namespace. After a boot
        systemd counts the app's Type=simple unit as started once gunicorn is forked, before it
        listens: `is-system-running` can say "running" a moment before the app answers."""
        wait_until(lambda: self.netns.connect("127.0.0.1", port).close() is None, seconds,
                   f"a listener on 127.0.0.1:{port} in the host", interval=0.5)

    def http_get(self, port: int, path: str = "/") -> tuple[int, bytes]:
        """A GET to 127.0.0.1:port inside the host's namespace."""
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.sock = self.netns.connect("127.0.0.1", port)
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()

    def passwd(self) -> tuple[dict[int, str], dict[int, str]]:
        users = {int(line.split(":")[2]): line.split(":")[0]
                 for line in self.machine.path("/etc/passwd").read_text().splitlines() if line}
        groups = {int(line.split(":")[2]): line.split(":")[0]
                  for line in self.machine.path("/etc/group").read_text().splitlines() if line}
        return users, groups

    def mysql_conf(self) -> dict:
        conf = yaml.safe_load(self.machine.path("/etc/datadog-agent/conf.d/mysql.d/conf.yaml").read_text())
        return conf["instances"][0]

    # ------------------------------------------------------------------ the verdict
    def assert_converged(self, rendered: Rendered, run: ConvergeRun) -> None:
        """Raises AssertionError naming what is wrong; every check looks at the real system."""
        assert_succeeded(rendered, run)
        self.assert_host_state(rendered)

    def assert_host_state(self, rendered: Rendered) -> None:
        """The host runs what `rendered` describes, whatever got it there (a converge, a reboot)."""
        self.assert_units_active(rendered)
        self.assert_files_as_manifest(rendered)
        self.assert_mysql_login()
        self.assert_app_traced(rendered)
        self.assert_agent_running(rendered)

    def assert_units_active(self, rendered: Rendered) -> None:
        states = {unit: self.machine.is_active(unit) for unit in UNITS}
        java = has_java(rendered)
        assert all(state == "active" for unit, state in states.items() if java or unit != JAVA_UNIT), \
            f"units not active: {states}"
        assert java or states[JAVA_UNIT] != "active", f"{JAVA_UNIT} runs, though the Java workload is off"

    def java_secrets(self) -> dict[str, str]:
        """The Java workload's passwords as converge made them on the host (placeholder -> value)."""
        found = {}
        for placeholder, (target, pattern) in JAVA_SECRETS.items():
            path = self.machine.path(target)
            match = re.search(pattern, path.read_text(), re.M) if path.exists() else None
            if match:
                found[placeholder] = match.group(1)
        return found

    def assert_files_as_manifest(self, rendered: Rendered) -> None:
        users, groups = self.passwd()
        hostname = self.world.imds.tags["datadog-hostname"]
        password = self.mysql_conf().get("password", "")
        java_secrets = self.java_secrets()
        problems = []
        for source, target, owner, mode, unit in rendered.manifest():
            path = self.machine.path(target)
            if source not in rendered.files:
                if path.exists():
                    problems.append(f"{target}: still on the host, though its feature is off")
                continue
            if not path.is_file():
                problems.append(f"{target}: missing")
                continue
            info = path.stat()
            on_disk = f"{users.get(info.st_uid, info.st_uid)}:{groups.get(info.st_gid, info.st_gid)}"
            if on_disk != owner:
                problems.append(f"{target}: owner {on_disk}, manifest {owner}")
            if stat.S_IMODE(info.st_mode) != int(mode, 8):
                problems.append(f"{target}: mode {stat.S_IMODE(info.st_mode):04o}, manifest {mode}")
            # Nothing converge installs is for everyone to read but systemd's unit files.
            if info.st_mode & 0o007 and not target.startswith("/etc/systemd/system/"):
                problems.append(f"{target}: readable by others ({stat.S_IMODE(info.st_mode):04o})")
            want = rendered.files[source].replace("@@DATADOG_HOSTNAME@@", hostname)
            if unit != "mysql-grants":
                want = want.replace("@@DATADOG_MYSQL_PASSWORD@@", password)
                for placeholder, secret in java_secrets.items():
                    want = want.replace(placeholder, secret)
            if path.read_text() != want:
                problems.append(f"{target}: content differs from the bundle's {source}")
        assert not problems, "files not as the manifest says:\n  " + "\n  ".join(problems)

    def assert_mysql_login(self) -> None:
        conf = self.mysql_conf()
        assert re.fullmatch(r"[0-9a-f]{48}", conf.get("password", "")), "no generated password in the conf"
        connection = pymysql.connect(user=conf["username"], password=conf["password"], defer_connect=True,
                                     host=conf["host"], port=int(conf["port"]), connect_timeout=10)
        connection.connect(sock=self.netns.connect(conf["host"], int(conf["port"])))
        denied = []
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT CURRENT_USER()")
                (user,) = cursor.fetchone()
                # What the Agent's collectors need the grants for (MariaDB calls REPLICATION
                # CLIENT's part of this BINLOG MONITOR): a refusal is error 1227 or 1142.
                for statement in ("SHOW ENGINE INNODB STATUS", "SHOW BINARY LOGS",
                                  "SELECT COUNT(*) FROM performance_schema.threads",
                                  "SELECT COUNT(*) FROM mysql.innodb_index_stats"):
                    try:
                        cursor.execute(statement)
                        cursor.fetchall()
                    except pymysql.err.MySQLError as error:
                        if error.args[0] in (1227, 1142, 1044):
                            denied.append(f"{statement}: {error.args[1]}")
        finally:
            connection.close()
        assert user.startswith("datadog@"), user
        assert not denied, f"the datadog user is refused what the Agent's MySQL check runs: {denied}"

    def assert_app_traced(self, rendered: Rendered) -> None:
        env = dict(line.split("=", 1) for line in rendered.files["app/app.env"].splitlines()
                   if "=" in line and not line.startswith("#"))
        urllib.request.urlopen(urllib.request.Request(f"{self.trace_intake}/test/session/clear"), timeout=10)
        self.wait_for_listener(int(env["APP_PORT"]))  # at once after a converge; after a boot, once gunicorn binds
        status, _ = self.http_get(int(env["APP_PORT"]))
        assert status == 200, f"the app answered {status}"

        def traced() -> bool:
            with urllib.request.urlopen(f"{self.trace_intake}/test/traces", timeout=10) as response:
                spans = [span for trace in json.loads(response.read()) for span in trace]
            return any(span.get("service") == env["DD_SERVICE"] and span.get("meta", {}).get("env") == env["DD_ENV"]
                       and span.get("meta", {}).get("version") == env["DD_VERSION"] for span in spans)

        wait_until(traced, 30, f"a trace of {env['DD_SERVICE']} (env {env['DD_ENV']}, version "
                   f"{env['DD_VERSION']}) at the trace intake", interval=0.5)

    def unit_log(self, unit: str) -> str:
        """What systemd says of a unit and its journal's last lines, for a failure message."""
        state = self.machine.run(["systemctl", "status", "--no-pager", "--lines=0", unit])
        journal = self.machine.run(["journalctl", "--no-pager", "--lines=40", "--unit", unit])
        return f"{state.stdout}{state.stderr}\n{journal.stdout}{journal.stderr}"

    def assert_agent_running(self, rendered: Rendered) -> None:
        env = dict(line.split("=", 1) for line in rendered.files["converge.env"].splitlines()
                   if "=" in line and not line.startswith("#"))
        version, held = self.package("datadog-agent")
        assert (version, held) == (f"1:{env['DD_AGENT_VERSION']}-1", True), (version, held)
        status = self.machine.run(["datadog-agent", "status"])
        assert status.returncode == 0, (f"datadog-agent status exited {status.returncode}: {status.stdout}{status.stderr}"
                                        f"\n{self.unit_log('datadog-agent')}")
        assert f"Agent (v{env['DD_AGENT_VERSION']})" in status.stdout, status.stdout
        assert f"Hostname: {self.world.imds.tags['datadog-hostname']}" in status.stdout, status.stdout
