"""Everything a booted-host test session shares, made once: the layers, the stand-ins' keys,
certificates and packages, the trace intake; and `boot`, which starts one host on them.

Layers, bottom up: the cached base image (image.py); the session layer (this session's CA and
the machine's own extra CAs in the trust store, /etc/hosts naming the stand-ins, cloud-init told
its datasource is the NoCloud seed and to keep the image's apt sources); then whatever a test
stacks on top, e.g. the upper layer of the host that made the first boot, powered off.
"""

from __future__ import annotations

import fcntl
import json
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

from settings.stack import DEFAULT_AGENT_VERSION
from tests.support import DATA_MOUNT
from tests.support.local_processes import free_port, stop, wait_until
from tests.booted.agent_package import AgentVersion, build_agent_deb, embedded_site_packages
from tests.booted.apt_repo import SigningKeys, build_repository
from tests.booted.documents import Rendered
from tests.booted.host import BootedHost, ConvergeRun
from tests.booted.image import base_image, machine_mirrors
from tests.booted.machine import Machine
from tests.booted.netns import NetworkNamespace
from tests.booted.standins import (PIP_HOSTS, BikeShareFeed, InstanceMetadata, KeyServer, StaticFiles,
                                   ThrowawayCA, World, hosts_file, moto_app)
from tests.booted.volume import DataVolume

# The Agent versions the stand-in repository offers: the stacks' default, one above it, and a
# broken one above that, whose every `datadog-agent check` fails (the rollback's scenario).
BROKEN_AGENT_VERSION = "7.79.0"
AGENT_VERSIONS = (AgentVersion(DEFAULT_AGENT_VERSION), AgentVersion("7.78.0"),
                  AgentVersion(BROKEN_AGENT_VERSION, failing_checks=("*",)))
# The host's data volume, as the instance's data-volume-id tag names it (tests/booted/volume.py).
DATA_VOLUME_ID = "vol-0d47a5e1b2c3f4a5b"


def unmount(path: Optional[Path]) -> None:
    if path is not None and path.is_mount():
        subprocess.run(["umount", str(path)], capture_output=True)
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


def detach_loops_under(directory: Path) -> None:
    """The loop devices (data volumes) whose image files are under directory."""
    listed = subprocess.run(["losetup", "-n", "-O", "NAME,BACK-FILE", "-l"], capture_output=True, text=True)
    for line in listed.stdout.splitlines():
        name, _, backing = line.partition(" ")
        if backing.strip().startswith(str(directory)):
            subprocess.run(["losetup", "-d", name], capture_output=True)


def sweep_leftovers() -> None:
    """What a killed earlier session left (its pid is gone): mounts, namespaces, loop devices, directories."""
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
        detach_loops_under(directory)
        for netns in Path("/run/netns").glob(f"obslab-{pid}-*") if Path("/run/netns").exists() else []:
            subprocess.run(["ip", "netns", "delete", netns.name], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


def run_dir() -> Path:
    """One directory per test run, shared by its pytest-xdist workers: the material every host
    needs (CA, keys, repository, session layer) and the first-booted host, made once. Named
    after the process that owns the run (the xdist controller), so a sweep knows when it is dead."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    owner = os.getppid() if run else os.getpid()
    path = WORK_ROOT / f"{WORK_PREFIX}{owner}-run-{(run or 'solo')[:12]}"
    path.mkdir(exist_ok=True)
    return path


def run_dirs_of(owner: int) -> list[Path]:
    return sorted(WORK_ROOT.glob(f"{WORK_PREFIX}{owner}-run-*"))


def remove_run_dir(path: Path) -> None:
    for mount in sorted((line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                         if line.split()[1].startswith(str(path))), reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    detach_loops_under(path)
    shutil.rmtree(path, ignore_errors=True)


class once:
    """A step made by the first process of the run that gets here; the others wait, then reuse it."""

    def __init__(self, directory: Path, name: str):
        self.lock, self.done = directory / f".{name}.lock", directory / f"{name}.done"

    def __enter__(self) -> bool:
        self.handle = open(self.lock, "w")
        fcntl.flock(self.handle, fcntl.LOCK_EX)
        return self.done.exists()

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.done.touch()
        self.handle.close()


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


class FirstBoot:
    """What the run's first boot left: its record (taken on the live host) and its disk."""

    def __init__(self, record: dict, layer: Path):
        self.record, self.layer = record, layer
        self.run = ConvergeRun(0 if "== converged on" in record["report"] else 1, record["report"], "",
                               record["seconds"])


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
        self.data_volume_gib = int(rendered.settings["dataVolumeGiB"])
        feed = urlparse(yaml.safe_load(rendered.files["agent/conf.d/bike_share.yaml"])["instances"][0]["gbfs_url"])
        self.feed_host, self.feed_path = feed.hostname or "", feed.path
        self.ssm_host = f"ssm.{self.region}.amazonaws.com"
        self.tls_names = ["keys.datadoghq.com", "apt.datadoghq.com", self.ssm_host, self.feed_host]
        self.registries = [(urlparse(line.split()[1]).hostname or "", urlparse(line.split()[1]).port or
                            (443 if line.split()[1].startswith("https") else 80)) for line in machine_mirrors()]
        self.registries = list(dict.fromkeys(self.registries)) + [(host, 443) for host in PIP_HOSTS]
        self.shared = run_dir()
        self.ca = ThrowawayCA(self.shared / "ca", self.tls_names, make=False)
        self.repository = self.shared / "apt-repository"
        self.session_layer = self.shared / "session-layer" / "upper"
        keys = self.shared / "keys"
        with once(self.shared, "material") as made:
            if not made:
                self._make_material(keys)
        self.public_keys = {path.stem: path.read_bytes() for path in sorted(keys.glob("*.asc"))}
        self.moto = moto_app()
        self._start_moto_control()
        self._start_trace_intake()
        self.timings["session set-up, image included"] = time.monotonic() - started

    def _make_material(self, keys: Path) -> None:
        self.ca.make()
        signing = SigningKeys()
        try:
            keys.mkdir()
            for key_id, key in signing.public.items():
                (keys / f"{key_id}.asc").write_bytes(key)
            site = embedded_site_packages(self.shared / "agent")
            debs = [build_agent_deb(agent, self.shared / "agent", site) for agent in AGENT_VERSIONS]
            build_repository(self.repository, debs, signing)
        finally:
            signing.close()
        self._make_session_layer()

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

    def _make_session_layer(self) -> None:
        machine = Machine(self.shared / "session-layer", [self.image], None)
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

    # ------------------------------------------------------------------ hosts
    def boot(self, layers: Sequence[Path] = (), seed_user_data: Optional[str] = None,
             tags: Optional[dict[str, str]] = None, workdir: Optional[Path] = None,
             volume: Optional[DataVolume] = None, volume_attached: bool = True,
             mounted_at_boot: Optional[bool] = None) -> BootedHost:
        """A new host on these layers (above the session layer and the image), booted, with its data
        volume (a new blank one unless given) attached before it boots, or never (`volume_attached`).

        A host booted on a converged disk has the volume in its fstab; systemd's fstab generator
        ignores device entries in a container, so the machine mounts the volume and binds the
        mount where that fstab line would have put it (`mounted_at_boot`, by default for such a
        host whose volume has a filesystem); fstab's own bind of MySQL's directory still runs inside."""
        self._sequence += 1
        netns = NetworkNamespace(f"obslab-{os.getpid()}-{self._sequence}")
        machine = None
        world = None
        workdir = workdir or self.dir / f"host-{self._sequence}"
        volume = volume or DataVolume(self.dir / f"volume-{self._sequence}.img", DATA_VOLUME_ID, self.data_volume_gib)
        links = self.dir / f"dev-disk-{self._sequence}"
        data_mount = self.dir / f"data-mount-{self._sequence}"
        mount_it = volume_attached and (bool(layers) if mounted_at_boot is None else mounted_at_boot)
        try:
            volume.write_links(links, attached=volume_attached)
            binds = [f"{links}:/dev/disk", *([volume.attach()] if volume_attached else [])]
            if mount_it and volume.uuid():
                data_mount.mkdir()
                subprocess.run(["mount", "-o", "nodev,nosuid,noexec", volume.attach(), str(data_mount)],
                               check=True, capture_output=True)
                binds.append(f"{data_mount}:{DATA_MOUNT}")
            machine = Machine(workdir, [*layers, self.session_layer, self.image], netns, hostname=HOSTNAME,
                              binds=binds)
            imds = InstanceMetadata(self.region, {"data-volume-id": volume.volume_id, **(
                tags if tags is not None else
                {"datadog-hostname": DATADOG_HOSTNAME, "Name": "observability-lab-dev-host-1"})})
            world = World(netns, imds=imds, ca=self.ca, registries=self.registries, trace_intake=self.trace_port,
                          tls_apps={"keys.datadoghq.com": KeyServer(self.public_keys),
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
            unmount(data_mount)
            volume.detach()
            netns.delete()
            raise
        host.volume, host.volume_links, host.data_mount = volume, links, data_mount
        self.hosts.append(host)
        return host

    def attach_later(self, host: BootedHost) -> None:
        """Its volume attached to the running host: the disk node made inside (what the kernel and
        udev do on an attachment), udev's links written."""
        assert host.volume is not None and host.volume_links is not None
        major, minor = host.volume.device_numbers()
        made = host.machine.run(["mknod", "-m", "0660", str(host.volume.attach()), "b", str(major), str(minor)])
        assert made.returncode == 0, made.stdout + made.stderr
        host.volume.write_links(host.volume_links)

    def converged_volume(self) -> DataVolume:
        """A copy of the first-booted host's data volume (a snapshot of it restored): for a host
        booted on that host's disk, whose fstab names the volume's filesystem."""
        self._sequence += 1
        return self.first_boot_volume().copy(self.dir / f"volume-{self._sequence}.img")

    def first_boot_volume(self) -> DataVolume:
        return DataVolume(self.shared / "first-boot" / "data-volume.img", DATA_VOLUME_ID, self.data_volume_gib)

    def first_boot(self, rendered: Rendered) -> "FirstBoot":
        """The run's first boot, made once (by whichever worker asks first) and recorded: the
        verdict is taken on the live host, then it is powered off and its disk kept as a layer."""
        directory = self.shared / "first-boot"
        with once(self.shared, "first-boot") as made:
            if not made:
                self._first_boot(rendered, directory)
        return FirstBoot(json.loads((directory / "record.json").read_text()), directory / "machine" / "upper")

    def _first_boot(self, rendered: Rendered, directory: Path) -> None:
        """cloud-init's NoCloud seed holds the stack's rendered #cloud-config; its fetcher reads
        the parameter and the document from the SSM stand-in (what `pulumi up` published)."""
        self.publish(rendered)
        started = time.monotonic()
        host = self.boot(seed_user_data=rendered.user_data, workdir=directory / "machine",
                         volume=self.first_boot_volume())
        try:
            # cloud-init's last stage (runcmd: the fetcher, then converge) ends with boot-finished.
            finished = host.machine.path(f"/var/lib/cloud/instances/{INSTANCE_ID}/boot-finished")
            while not finished.exists():
                if host.machine.is_active("cloud-final.service") == "failed":
                    break
                if time.monotonic() - started > 1200:
                    raise RuntimeError("cloud-init's final stage still running after 20 minutes")
                time.sleep(0.5)
            seconds = time.monotonic() - started
            output_log = host.machine.path("/var/log/cloud-init-output.log")
            output = output_log.read_text(errors="replace") if output_log.exists() else ""
            report = output[output.find("== converge "):] if "== converge " in output else output
            run = ConvergeRun(0 if "== converged on" in report else 1, report, "", seconds)
            try:
                host.assert_converged(rendered, run)
                verdict = None
            except AssertionError as error:
                verdict = str(error)
            analyze = host.machine.run(["systemd-analyze", "verify", "/etc/systemd/system/flask-app.service"])
            record = {"cloud_init": host.machine.run(["cloud-init", "status", "--long"]).stdout, "output": output,
                      "report": report, "seconds": seconds, "verdict": verdict,
                      "analyze": [analyze.returncode, analyze.stdout + analyze.stderr],
                      "imds_requests": host.world.imds.requests}
        finally:
            self.shut(host, keep_as_layer=True)
        (directory / "record.json").write_text(json.dumps(record))
        self.timings["first boot: boot + cloud-init + first converge"] = seconds

    def shut(self, host: BootedHost, keep_as_layer: bool = False) -> Optional[Path]:
        """Powers a host off and removes it; its upper layer is returned when kept as a layer."""
        host.machine.close(keep_upper=keep_as_layer)
        unmount(host.data_mount)
        if host.volume is not None:
            host.volume.detach()
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
        detach_loops_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)
