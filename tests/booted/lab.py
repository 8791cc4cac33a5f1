"""Everything a booted-host test session shares, made once: the layers, the stand-ins' keys,
certificates and packages, the trace intake; and `boot`, which starts one host on them.

Layers, bottom up: the cached base image (image.py); the session layer (this session's CA and
the machine's own extra CAs in the trust store, /etc/hosts naming the stand-ins, cloud-init told
its datasource is the NoCloud seed and to keep the image's apt sources); then whatever a test
stacks on top, e.g. the upper layer of the host that made the first boot, powered off.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Optional, Sequence
from urllib.parse import urlparse

import boto3
import yaml
from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.serving import make_server

from components.settings import DEFAULT_AGENT_VERSION
from tests.local_processes import free_port, stop, wait_until
from tests.booted.agent_package import AgentVersion, build_agent_deb, embedded_site_packages
from tests.booted.apt_repo import SigningKeys, build_repository
from tests.booted.documents import Rendered
from tests.booted.host import BootedHost
from tests.booted.image import base_image, machine_mirrors
from tests.booted.machine import Machine
from tests.booted.netns import NetworkNamespace
from tests.booted.standins import (PIP_HOSTS, BikeShareFeed, InstanceMetadata, KeyServer, StaticFiles,
                                   ThrowawayCA, World, hosts_file, moto_app)

# The Agent versions the stand-in repository offers: the stacks' default and one above it.
AGENT_VERSIONS = (AgentVersion(DEFAULT_AGENT_VERSION), AgentVersion("7.78.0"))
DATADOG_HOSTNAME = "observability-lab-dev-1"
INSTANCE_ID = "i-0b007edh0570000"
HOSTNAME = "ip-10-0-1-17"
WORK_ROOT = Path("/var/tmp")
WORK_PREFIX = "observability-lab-booted-"
REQUIRED_TOOLS = ("systemd-nspawn", "mmdebstrap", "dpkg-deb", "gpg", "openssl", "ip", "nsenter", "mount")


def check_machine() -> None:
    """The layer needs root and these tools (`make test-booted` installs them); it says so."""
    problems = []
    if os.geteuid() != 0:
        problems.append("it must run as root (namespaces, mounts, systemd-nspawn)")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        problems.append(f"missing {', '.join(missing)} (apt-get install systemd-container mmdebstrap)")
    if problems:
        raise RuntimeError("the booted-host layer cannot run here: " + "; ".join(problems)
                           + ". `make test-booted` sets the machine up.")


def nspawns_under(directory: Path) -> list[int]:
    """systemd-nspawn processes booting a root under directory."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"systemd-nspawn") and any(str(directory).encode() in arg for arg in argv):
            found.append(int(cmdline.parent.name))
    return found


def sweep_leftovers() -> None:
    """What a killed earlier session left (its pid is gone): mounts, namespaces, directories."""
    for directory in WORK_ROOT.glob(f"{WORK_PREFIX}*"):
        pid = directory.name[len(WORK_PREFIX):].split("-")[0]
        if pid.isdigit() and Path(f"/proc/{pid}").exists():
            continue
        for process in nspawns_under(directory):
            os.kill(process, signal.SIGKILL)
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(str(directory))]
        for mount in sorted(mounts, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        for netns in Path("/run/netns").glob(f"obslab-{pid}-*") if Path("/run/netns").exists() else []:
            subprocess.run(["ip", "netns", "delete", netns.name], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


class Lab:
    def __init__(self, rendered: Rendered, log=print):
        check_machine()
        sweep_leftovers()
        # A SIGTERM (CI's timeout, a ^C'd make) unwinds like ^C, so every finalizer runs.
        signal.signal(signal.SIGTERM, _interrupt)
        self.log = log
        self.dir = Path(tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{os.getpid()}-", dir=WORK_ROOT))
        self.hosts: list[BootedHost] = []
        self._cleanups: list = []
        self._sequence = 0
        self.timings: dict[str, float] = {}
        try:
            self._prepare(rendered)
        except BaseException:
            self.close()
            raise

    def _prepare(self, rendered: Rendered) -> None:
        started = time.monotonic()
        self.image = base_image(self.log)
        self.timings["image (cached or built)"] = time.monotonic() - started
        self.region = rendered.region
        feed = urlparse(yaml.safe_load(rendered.files["agent/conf.d/bike_share.yaml"])["instances"][0]["gbfs_url"])
        self.feed_host, self.feed_path = feed.hostname or "", feed.path
        self.ssm_host = f"ssm.{self.region}.amazonaws.com"
        self.tls_names = ["keys.datadoghq.com", "apt.datadoghq.com", self.ssm_host, self.feed_host]
        self.registries = [(urlparse(line.split()[1]).hostname or "", urlparse(line.split()[1]).port or
                            (443 if line.split()[1].startswith("https") else 80)) for line in machine_mirrors()]
        self.registries = list(dict.fromkeys(self.registries)) + [(host, 443) for host in PIP_HOSTS]
        self.ca = ThrowawayCA(self.dir / "ca", self.tls_names)
        self.keys = SigningKeys()
        self._cleanups.append(self.keys.close)
        site = embedded_site_packages(self.dir / "agent")
        self.debs = {agent.version: build_agent_deb(agent, self.dir / "agent", site) for agent in AGENT_VERSIONS}
        self.repository = self.dir / "apt-repository"
        build_repository(self.repository, list(self.debs.values()), self.keys)
        self.moto = moto_app()
        self._start_moto_control()
        self._start_trace_intake()
        self.session_layer = self._make_session_layer()
        self.timings["session set-up"] = time.monotonic() - started

    def _start_moto_control(self) -> None:
        class Quiet(MotoRequestHandler):
            def log_request(self, *args, **kwargs) -> None:
                pass

        server = make_server("127.0.0.1", 0, self.moto, threaded=True, request_handler=Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._cleanups.append(server.shutdown)
        self.ssm = boto3.client("ssm", region_name=self.region, endpoint_url=f"http://127.0.0.1:{server.port}",
                                aws_access_key_id="testing", aws_secret_access_key="testing")

    def _start_trace_intake(self) -> None:
        self.trace_port = free_port()
        log = open(self.dir / "trace-intake.log", "wb")
        process = subprocess.Popen([str(Path(sys.executable).parent / "ddapm-test-agent"), "--host", "127.0.0.1",
                                    "--port", str(self.trace_port), "--otlp-http-port", str(free_port()),
                                    "--otlp-grpc-port", str(free_port())], stdout=log, stderr=subprocess.STDOUT)
        self._cleanups.append(lambda: (stop(process), log.close()))
        self.trace_intake = f"http://127.0.0.1:{self.trace_port}"

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"ddapm-test-agent exited; see {self.dir / 'trace-intake.log'}")
            return bool(urllib.request.urlopen(f"{self.trace_intake}/test/traces", timeout=2).read())
        wait_until(up, 30, "ddapm-test-agent")

    def _make_session_layer(self) -> Path:
        machine = Machine(self.dir / "session-layer", [self.image], None)
        try:
            machine.write("/etc/hosts", hosts_file(self.tls_names, self.registries))
            machine.write("/etc/hostname", HOSTNAME + "\n")
            trust = "/usr/local/share/ca-certificates"
            machine.write(f"{trust}/observability-lab-test-ca.crt", self.ca.cert.read_text())
            # The machine's own extra CAs: where its outbound TLS is re-signed, the registries'
            # certificates are signed by one of them.
            for extra in sorted(Path(trust).glob("*.crt")):
                machine.write(f"{trust}/machine-{extra.name}", extra.read_text())
            machine.write("/etc/cloud/cloud.cfg.d/90-observability-lab-booted.cfg",
                          "# The booted-host tests: the NoCloud seed is the instance's user-data; the\n"
                          "# image's apt sources stay as they are (an AMI's point at its mirror).\n"
                          "datasource_list: [ NoCloud ]\napt:\n  preserve_sources_list: true\n")
            subprocess.run(["chroot", str(machine.root), "update-ca-certificates"], check=True, capture_output=True)
        finally:
            machine.close(keep_upper=True)
        return machine.upper

    # ------------------------------------------------------------------ hosts
    def boot(self, layers: Sequence[Path] = (), seed_user_data: Optional[str] = None,
             tags: Optional[dict[str, str]] = None) -> BootedHost:
        """A new host on these layers (above the session layer and the image), booted."""
        self._sequence += 1
        netns = NetworkNamespace(f"obslab-{os.getpid()}-{self._sequence}")
        machine = None
        world = None
        try:
            machine = Machine(self.dir / f"host-{self._sequence}", [*layers, self.session_layer, self.image], netns,
                              hostname=HOSTNAME)
            imds = InstanceMetadata(self.region, tags if tags is not None else
                                    {"datadog-hostname": DATADOG_HOSTNAME, "Name": "observability-lab-dev-host-1"})
            world = World(netns, imds=imds, ca=self.ca, registries=self.registries, trace_intake=self.trace_port,
                          tls_apps={"keys.datadoghq.com": KeyServer(self.keys.public),
                                    "apt.datadoghq.com": StaticFiles(self.repository, "https://apt.datadoghq.com: "
                                                                     "Datadog's signed apt repository"),
                                    self.ssm_host: self.moto,
                                    self.feed_host: BikeShareFeed(self.feed_host, self.feed_path)})
            if seed_user_data is not None:
                machine.write("/var/lib/cloud/seed/nocloud/user-data", seed_user_data, mode=0o600)
                machine.write("/var/lib/cloud/seed/nocloud/meta-data",
                              f"instance-id: {INSTANCE_ID}\nlocal-hostname: {HOSTNAME}\n", mode=0o600)
            host = BootedHost(machine, netns, world, self.trace_intake)
            host.boot_seconds = machine.boot(("starting", "running", "degraded") if seed_user_data else
                                             ("running", "degraded"))
        except BaseException:
            if world:
                world.close()
            if machine:
                machine.close()
            netns.delete()
            raise
        self.hosts.append(host)
        return host

    def shut(self, host: BootedHost, keep_as_layer: bool = False) -> Optional[Path]:
        """Powers a host off and removes it; its upper layer is returned when kept as a layer."""
        host.machine.close(keep_upper=keep_as_layer)
        host.world.close()
        host.netns.delete()
        if host in self.hosts:
            self.hosts.remove(host)
        return host.machine.upper if keep_as_layer else None

    def publish(self, rendered: Rendered) -> None:
        """What `pulumi up` creates in SSM: the document, and the parameter naming it."""
        self.ssm.create_document(Content=rendered.content, Name=rendered.name, DocumentType="Command",
                                 DocumentFormat="YAML", TargetType="/AWS::EC2::Instance")
        self.ssm.put_parameter(Name=rendered.parameter, Value=rendered.name, Type="String", Overwrite=True)

    def close(self) -> None:
        for host in list(self.hosts):
            try:
                self.shut(host)
            except Exception as error:  # noqa: BLE001  keep cleaning up the rest
                self.log(f"cleanup of a booted host failed: {error!r}")
        for cleanup in reversed(self._cleanups):
            try:
                cleanup()
            except Exception as error:  # noqa: BLE001
                self.log(f"cleanup failed: {error!r}")
        for mount in [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                      if line.split()[1].startswith(str(self.dir))]:
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
