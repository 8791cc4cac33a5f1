"""Debian's tomcat10 started privately with the rendered bundle's Java files, as the host runs it.

The host's packaged unit (tomcat10.service) runs `catalina.sh run` as `tomcat` with
CATALINA_HOME=/usr/share/tomcat10, CATALINA_BASE=/var/lib/tomcat10 (conf -> /etc/tomcat10)
and the CATALINA_OPTS of our drop-in. Here the same catalina.sh of the same package runs
as the same user, on a scratch CATALINA_BASE:
* every file of the bundle's `tomcat` unit is installed under a scratch root exactly as
  converge.sh installs it on the host (manifest target, owner, mode; the host secrets
  filled in), and the JVM gets the drop-in's CATALINA_OPTS word for word, with only its
  host paths moved under that root;
* conf/ is the package's own /etc/tomcat10, with the shutdown port off and the HTTP
  connector on a free port (the package's server.xml is not ours to change on the host);
* the context descriptor is the rendered cars.xml, its docBase moved under the root and
  its MySQL address moved to the test's MariaDB.
Run as root (CI, and `make test` here), the JVM runs as `tomcat`, so the password file's
ownership rule is the one the host has; as another user, that user plays `tomcat`.
"""
from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

from tests.support.local_processes import free_port, stop, wait_until

CATALINA_HOME = Path("/usr/share/tomcat10")
PACKAGE_CONF = Path("/etc/tomcat10")
JAVA = Path("/usr/lib/jvm/default-java/bin/java")
UNIT = "tomcat"
STARTUP_SECONDS = 60
STARTED = "org.apache.catalina.startup.Catalina.start Server startup in"
# A test JVM lives seconds: C1 alone (no C2 compiler threads competing for this machine's
# two cores) halves the CPU a start and the first JSP page cost (measured: ~7 -> ~3.5 CPU-s).
# JIT tiers change no JMX bean, GC (G1 stays the drop-in's choice), flag or file the tests read.
TEST_JVM_FLAGS = ("-XX:TieredStopAtLevel=1",)
# The host's paths that the JVM's flags and the context name, and where they live here.
HOST_CONF = "/etc/tomcat10/"
HOST_MYSQL = "127.0.0.1:3306/"

# What `collect_default_metrics: true` and `new_gc_metrics: true` make the Agent read, on
# top of the conf's own `conf:` list (the fast JMX test reads them all; the booted host's
# Agent stand-in collects them): the beans and attributes behind the metrics our
# monitors and dashboard use. Sources: integrations-core tomcat/datadog_checks/tomcat/data/
# metrics.yaml (Catalina ThreadPool, GlobalRequestProcessor, Servlet, JspMonitor, and
# DataSource as tomcat.jdbc.connection_pool.*), JMXFetch's default-jmx-metrics.yaml and
# new-gc-default-jmx-metrics.yaml (G1 Young = minor, G1 Old = major collections).
JMXFETCH_TOMCAT_DEFAULTS = {
    "java.lang:type=Memory": ("HeapMemoryUsage", "NonHeapMemoryUsage"),
    "java.lang:type=Threading": ("ThreadCount",),
    "java.lang:type=GarbageCollector,name=G1 Young Generation": ("CollectionCount", "CollectionTime"),
    "java.lang:type=GarbageCollector,name=G1 Old Generation": ("CollectionCount", "CollectionTime"),
    "Catalina:type=ThreadPool,*": ("maxThreads", "currentThreadCount", "currentThreadsBusy"),
    "Catalina:type=GlobalRequestProcessor,*": ("requestCount", "errorCount", "processingTime", "maxTime",
                                              "bytesSent", "bytesReceived"),
    "Catalina:j2eeType=Servlet,*": ("requestCount", "errorCount", "processingTime"),
    "Catalina:type=JspMonitor,*": ("jspCount",),
    "Catalina:type=DataSource,*": ("active", "idle", "size", "maxActive", "maxIdle", "minIdle"),
}


def require_packages() -> None:
    missing = [str(p) for p in (CATALINA_HOME / "bin" / "catalina.sh", PACKAGE_CONF / "server.xml", JAVA)
               if not p.exists()]
    if missing:
        raise RuntimeError(f"missing {', '.join(missing)}: install Debian's tomcat10, default-jre-headless "
                           "and libmariadb-java (`make system-deps`)")


def jvm_user() -> str:
    return "tomcat" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def _owner(owner: str) -> tuple[int, int]:
    """user:group of a manifest line as uid, gid; without root, every file is the test user's."""
    if os.geteuid() != 0:
        return os.geteuid(), os.getegid()
    user, group = owner.split(":")
    return pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid


def catalina_opts(dropin: str) -> list[str]:
    """The CATALINA_OPTS words of the rendered systemd drop-in."""
    values = [shlex.split(line.partition("=")[2])[0] for line in dropin.splitlines()
              if line.startswith("Environment=")]
    opts = [value.partition("=")[2] for value in values if value.startswith("CATALINA_OPTS=")]
    assert len(opts) == 1, f"the drop-in sets CATALINA_OPTS once, not {len(opts)} times"
    return opts[0].split()


@dataclass
class ScratchTomcat:
    root: Path            # host paths of the bundle's files live under here
    base: Path            # CATALINA_BASE
    http_port: int
    jmx_port: int
    opts: list[str]
    netns: Optional[str] = None
    process: Optional[subprocess.Popen] = None
    log: Path = field(init=False)

    def __post_init__(self):
        self.log = self.base / "catalina.out"

    def host_path(self, target: str) -> Path:
        return self.root / target.lstrip("/")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/cars/"

    def command(self) -> list[str]:
        runner = ["setpriv", "--reuid", "tomcat", "--regid", "tomcat", "--init-groups"] if os.geteuid() == 0 else []
        netns = ["ip", "netns", "exec", self.netns] if self.netns else []
        return [*netns, *runner, str(CATALINA_HOME / "bin" / "catalina.sh"), "run"]

    def environment(self) -> dict[str, str]:
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                "JAVA_HOME": str(JAVA.parent.parent), "CATALINA_HOME": str(CATALINA_HOME),
                "CATALINA_BASE": str(self.base), "CATALINA_TMPDIR": str(self.base / "temp"),
                # The unit's own JAVA_OPTS (plus the test's JIT flag), and the drop-in's CATALINA_OPTS.
                "JAVA_OPTS": " ".join(["-Djava.awt.headless=true", *TEST_JVM_FLAGS]),
                "CATALINA_OPTS": " ".join(self.opts)}

    def launch(self) -> subprocess.Popen:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.command(), env=self.environment(), cwd=self.base,
                                            stdout=out, stderr=subprocess.STDOUT)
        return self.process

    def start(self, ready_path: str = "/cars/") -> "ScratchTomcat":
        """Launch and wait until the app answers (or the JVM exits: RuntimeError with its log)."""
        process = self.launch()

        def answering() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"tomcat exited with {process.returncode}:\n{self.log_text()[-4000:]}")
            # Probe HTTP (a curl each time) once Catalina says it has started, not every
            # 0.1 s of the JVM's start-up; every second regardless, should its log change.
            if STARTED not in self.log_text() and time.monotonic() < probes["next"]:
                return False
            probes["next"] = time.monotonic() + 1
            return self.http_status(ready_path) is not None

        probes = {"next": time.monotonic() + 1}

        try:
            wait_until(answering, STARTUP_SECONDS, "tomcat's HTTP connector")
        except BaseException:
            self.stop()
            raise
        return self

    def http_status(self, path: str) -> Optional[int]:
        """The status of GET path, asked from inside the JVM's network namespace."""
        probe = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                 f"http://127.0.0.1:{self.http_port}{path}"]
        netns = ["ip", "netns", "exec", self.netns] if self.netns else []
        result = subprocess.run([*netns, *probe], capture_output=True, text=True)
        code = result.stdout.strip()
        return int(code) if code.isdigit() and code != "000" else None

    def client_java(self) -> Path:
        """A `java` for a JMX client of this server (jmxquery takes one path, no flags): the
        JRE's, inside the server's network namespace, with the same JIT flag (~20% of a
        client's ~0.5 CPU-s); in the scratch directory."""
        wrapper = self.base.parent / "jmx-client-java"
        if not wrapper.exists():
            command = shlex.join(["ip", "netns", "exec", self.netns] if self.netns else [])
            wrapper.write_text(f'#!/bin/sh\nexec {command} {JAVA} {" ".join(TEST_JVM_FLAGS)} "$@"\n')
            wrapper.chmod(0o755)
        return wrapper

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, signal.SIGKILL)  # a scratch server: no test reads its shutdown


@contextmanager
def scratch_directory() -> Iterator[Path]:
    """A directory the JVM's user can walk into (pytest's tmp_path is under a 0700 one)."""
    work = Path(tempfile.mkdtemp(prefix="observability-lab-tomcat-"))
    work.chmod(0o755)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def prepare(work: Path, files: dict[str, str], manifest: Sequence[Sequence[str]], secrets: dict[str, str],
            mysql_port: int, jmx_port: int, netns: Optional[str] = None,
            http_address: str = "127.0.0.1") -> ScratchTomcat:
    """A scratch root with the package's /etc/tomcat10 and the bundle's `tomcat` unit
    installed over it, and a CATALINA_BASE whose conf is that /etc/tomcat10 (as on the host)."""
    require_packages()
    root, base = work / "root", work / "base"
    http_port = free_port()
    _package_conf(root / HOST_CONF.strip("/"), http_port, http_address)
    for file, target, owner, mode, unit in manifest:
        if unit != UNIT or file not in files:
            continue
        content = files[file]
        for placeholder, value in secrets.items():
            content = content.replace(placeholder, value)
        if file == "tomcat/cars.xml":
            content = _moved_context(content, root, mysql_port)
        install(root / target.lstrip("/"), content, owner, int(mode, 8))
    dropin = next(files[file] for file, _, _, _, unit in manifest if unit == UNIT and file.endswith(".conf"))
    opts = [opt.replace(HOST_CONF, f"{root}{HOST_CONF}") for opt in catalina_opts(dropin)]
    # The package's CATALINA_BASE: conf -> /etc/tomcat10, and the directories the JVM writes.
    base.mkdir()
    (base / "conf").symlink_to(root / HOST_CONF.strip("/"))
    uid, gid = _owner("tomcat:tomcat")
    for name in ("logs", "work", "temp", "webapps", "lib"):
        (base / name).mkdir()
        os.chown(base / name, uid, gid)
    return ScratchTomcat(root=root, base=base, http_port=http_port, jmx_port=jmx_port, opts=opts, netns=netns)


def install(path: Path, content: str, owner: str, mode: int) -> None:
    """As converge.sh's write_files: a missing parent directory 0750 with the file's owner,
    the file with the manifest's owner and mode."""
    missing = [parent for parent in reversed(path.parents) if not parent.exists()]
    for parent in missing:
        parent.mkdir()
        parent.chmod(0o755 if parent != path.parent else 0o750)
    if missing:
        os.chown(path.parent, *_owner(owner))
    path.write_text(content)
    os.chown(path, *_owner(owner))
    path.chmod(mode)


def _moved_context(context: str, root: Path, mysql_port: int) -> str:
    """The rendered cars.xml, with its docBase under the scratch root and its MySQL the test's."""
    assert context.count(HOST_MYSQL) == 1, "the pool's URL names MySQL at 127.0.0.1:3306 once"
    context = context.replace(HOST_MYSQL, f"127.0.0.1:{mysql_port}/")
    moved, count = re.subn(r'docBase="(/[^"]+)"', lambda m: f'docBase="{root}{m.group(1)}"', context)
    assert count == 1, "the context names its docBase once"
    return moved


def _package_conf(conf: Path, http_port: int, http_address: str) -> None:
    """The package's /etc/tomcat10 with its owners and modes; HTTP on a free port of
    `http_address`, no shutdown port (its server.xml is not ours to change on the host)."""
    for parent in reversed(conf.parents):
        if not parent.exists():
            parent.mkdir()
            parent.chmod(0o755)
    shutil.copytree(PACKAGE_CONF, conf, symlinks=True)
    for source in [PACKAGE_CONF, *PACKAGE_CONF.rglob("*")]:
        stat = source.lstat()
        copy = conf / source.relative_to(PACKAGE_CONF)
        if os.geteuid() == 0:
            os.lchown(copy, stat.st_uid, stat.st_gid)
    server_xml = conf / "server.xml"
    server = server_xml.read_text()
    server = re.sub(r'<Server port="\d+"', '<Server port="-1"', server)  # Debian's is -1 already
    server, connectors = re.subn(r'<Connector port="8080"', f'<Connector address="{http_address}" port="{http_port}"',
                                 server)
    assert connectors == 1, "the package's server.xml has one HTTP connector on 8080"
    server_xml.write_text(server)
