"""One booted host: systemd as PID 1 in a container over an overlay of cached layers.

The root filesystem is an overlay: its lower layers are read-only directories (the cached base
image, the session's trust and name settings, and possibly a host converged earlier in the same
run), its upper layer is this machine's own, so a run never writes into a layer it shares and
teardown is one unmount and one `rm -rf`. `systemd-nspawn --boot` starts the container's own
systemd in the machine's private network namespace (netns.py). Commands run inside as units of
the container's systemd (`systemd-run --wait --pipe`), as the SSM Agent's children would.

Everything started here is stopped by its pid, and every mount made here is unmounted, also
when a test fails (`close`, called by the fixtures' finalizers).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional, Sequence

from tests.booted.netns import NetworkNamespace

BOOT_TIMEOUT = 60
_SEQUENCE = itertools.count(1)


class BootError(RuntimeError):
    pass


class Machine:
    def __init__(self, workdir: Path, layers: Sequence[Path], netns: Optional[NetworkNamespace],
                 hostname: str = "ip-10-0-1-17"):
        self.workdir = workdir
        self.layers = list(layers)  # topmost first
        self.netns = netns
        self.hostname = hostname
        # nspawn keys /run/systemd/nspawn/propagate/<name> by the machine's name: unique per host,
        # so hosts of concurrent runs on one machine never share it.
        self.machine_name = netns.name if netns is not None else f"obslab-{os.getpid()}"
        self.upper = workdir / "upper"
        self.root = workdir / "root"
        self.console = workdir / "console.log"
        self.process: Optional[subprocess.Popen] = None
        self.leader: Optional[int] = None
        self.mounted = False
        for directory in (self.upper, workdir / "work", self.root):
            directory.mkdir(parents=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={':'.join(map(str, self.layers))},upperdir={self.upper},"
                        f"workdir={workdir / 'work'}", str(self.root)], check=True, capture_output=True)
        self.mounted = True

    # ----------------------------------------------------------------------- files
    def path(self, host_path: str) -> Path:
        """A path of the container, seen from the machine (the overlay's merged view)."""
        return self.root / host_path.lstrip("/")

    def write(self, host_path: str, content: str, mode: int = 0o644) -> None:
        path = self.path(host_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(mode)

    # ----------------------------------------------------------------------- life cycle
    def boot(self, until: tuple[str, ...] = ("running", "degraded")) -> float:
        """Starts the container and waits for one of these system states; returns the seconds.

        A first boot stays `starting` while cloud-init's final stage converges the host: wait for
        `starting` then, and for cloud-init itself afterwards."""
        assert self.netns is not None, "a machine boots only in a network namespace of its own"
        started = time.monotonic()
        with open(self.console, "ab") as console:
            self.process = subprocess.Popen(
                ["systemd-nspawn", "--boot", "--quiet", "-D", str(self.root), f"--machine={self.machine_name}",
                 f"--hostname={self.hostname}",
                 "--register=no", "--keep-unit", "--console=pipe", f"--network-namespace-path={self.netns.path}",
                 "--resolv-conf=off", "--timezone=off", "--link-journal=no"],
                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = started + BOOT_TIMEOUT
        # The container's init: nspawn's child once it has exec'd systemd (before that, the
        # child is nspawn's own set-up process).
        while self.leader is None:
            self._check_alive()
            children = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True)
            for pid in children.stdout.split():
                try:
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        self.leader = int(pid)
                except OSError:
                    continue
            if self.leader is None:
                if time.monotonic() > deadline:
                    raise BootError(f"no container init after {BOOT_TIMEOUT} s; see {self.console}")
                time.sleep(0.05)
        while True:
            self._check_alive()
            state = self._nsenter(["systemctl", "is-system-running"], timeout=10).stdout.strip()
            if state in until:
                return time.monotonic() - started
            if time.monotonic() > deadline:
                raise BootError(f"system state {state!r} after {BOOT_TIMEOUT} s; see {self.console}")
            time.sleep(0.1)

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise BootError(f"systemd-nspawn exited {self.process.returncode}; see {self.console}:\n"
                            + self.console.read_text(errors="replace")[-3000:])

    def reboot(self) -> float:
        """`systemctl reboot` inside, as on a host; nspawn ends with the container, and starts it again."""
        assert self.process is not None
        self.run(["systemctl", "reboot"], timeout=30)
        self.process.wait(timeout=60)
        self.process = self.leader = None
        return self.boot()

    def poweroff(self, timeout: float = 30) -> None:
        """SIGTERM to nspawn: the container's systemd shuts down cleanly; SIGKILL if it hangs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = self.leader = None

    def discard(self) -> None:
        """SIGKILL to the container's init: the kernel ends every process of its PID namespace
        at once and nspawn exits. For a host whose disk is thrown away; one kept as a layer is
        powered off cleanly instead."""
        if self.process is not None and self.process.poll() is None and self.leader is not None:
            try:
                os.kill(self.leader, signal.SIGKILL)
                self.process.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.poweroff()

    def close(self, keep_upper: bool = False) -> None:
        """Stops the host, unmounts; the upper layer is removed unless kept as a later lower layer."""
        if keep_upper:
            self.poweroff()
        else:
            self.discard()
        if self.mounted:
            subprocess.run(["umount", str(self.root)], check=True, capture_output=True)
            self.mounted = False
        if not keep_upper:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            shutil.rmtree(self.workdir / "work", ignore_errors=True)

    # ----------------------------------------------------------------------- commands
    def _nsenter(self, command: Sequence[str], timeout: float, input: Optional[str] = None):
        assert self.leader is not None, "the machine is not running"
        return subprocess.run(["nsenter", "-t", str(self.leader), "-a", *command], input=input,
                              capture_output=True, text=True, timeout=timeout)

    def run(self, command: Sequence[str], timeout: float = 300, unit: Optional[str] = None,
            env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
        """A command as a unit of the container's systemd, as root; its exit status and output.

        systemd expands `$NAME` in a unit's command line: every `$` is passed as `$$`, literal.
        """
        unit = unit or f"observability-lab-test-{next(_SEQUENCE)}"
        properties = [f"--setenv={key}={value}" for key, value in (env or {}).items()]
        return self._nsenter(["systemd-run", "--quiet", "--wait", "--pipe", "--collect", f"--unit={unit}",
                              "-p", "StandardInput=null", *properties, "--",
                              *(arg.replace("$", "$$") for arg in command)], timeout=timeout)

    def kill_unit(self, unit: str) -> None:
        """SIGKILL to every process of a unit, as an SSM timeout or a power cut would end it."""
        self._nsenter(["systemctl", "kill", "--signal=SIGKILL", f"{unit}.service"], timeout=30)

    def is_active(self, unit: str) -> str:
        return self._nsenter(["systemctl", "is-active", unit], timeout=30).stdout.strip()

    def ok(self, command: Sequence[str], timeout: float = 300) -> str:
        """Runs a command that must succeed; its stdout."""
        result = self.run(command, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n"
                                 f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
        return result.stdout
