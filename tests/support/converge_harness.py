"""Runs userdata/converge.sh for real, with bash, in a scratch root.

Every host path of the script is under CONVERGE_ROOT. The commands that would change the
machine or need a real host (apt-get, dpkg-query, apt-mark, systemctl, mysql,
datadog-agent, useradd, id, chown, python3's venv, curl, growpart, resize2fs, findmnt,
lsblk, sleep) are small executables first on PATH that record each call in `calls` and
act out the part of their behaviour the script depends on, from state files the tests
can set: installed packages, active services, a failing Agent config check, the disk's
size, the instance's tags in instance metadata. Everything else (gpg, sha256sum, install,
flock, tar, base64, openssl) is the real tool; curl's downloads of Datadog's apt keys get
a real public key made for the tests.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rendering.bundle import Bundle

# What the instance metadata of a test host says by default (Host.set() changes it).
IMDS_TOKEN = "imds-session-token-for-tests"
DEFAULT_DATADOG_HOSTNAME = "observability-lab-dev-1"

_RECORD = 'echo "${0##*/} $*" >>"$FAKE/calls"\n'

# name -> body run after recording the call ($FAKE is the recorders' state directory).
RECORDERS = {
    "apt-get": r'''
[ ! -e "$FAKE/fail.apt-get" ] || exit 100
installing=0
for arg in "$@"; do
  if [ "$arg" = install ]; then installing=1; continue; fi
  [ "$installing" = 1 ] || continue
  case "$arg" in
    -*) ;;
    *=*) sed -i "/^${arg%%=*} /d" "$FAKE/dpkg"; echo "${arg%%=*} ${arg#*=}" >>"$FAKE/dpkg" ;;
    *) echo "$arg 1.0" >>"$FAKE/dpkg" ;;
  esac
done''',
    "dpkg-query": r'''
status=0
for package in "$@"; do
  case "$package" in -*) continue ;; esac
  line=$(grep "^$package " "$FAKE/dpkg" | tail -n 1) || { status=1; continue; }
  echo "$package installed ${line#* }"
done
exit "$status"''',
    "apt-mark": "",
    "systemctl": r'''
# A run killed mid-way (SSM timeout, reboot): the restart never happens, nor anything after.
if [ "$1" = restart ] && [ -e "$FAKE/kill-at-restart.$2" ]; then kill -KILL "$PPID"; exit 1; fi
case "$1" in
  is-active) [ -e "$FAKE/active.${*: -1}" ] ;;
  enable) [ "$2" != --now ] || touch "$FAKE/active.${*: -1}" ;;
esac''',
    "mysql": 'cat >>"$FAKE/mysql.sql"',
    "datadog-agent": r'''
case "$1" in
  status) [ ! -e "$FAKE/fail.agent-status" ] ;;
  # Running a check once fails when its code or configuration says so.
  check) ! grep -rqs CHECK_FAILS "$CONVERGE_ROOT/etc/datadog-agent" ;;
  configcheck)
    # Like the real Agent: config errors are listed, and the exit status is still 0.
    if grep -rqs BROKEN "$CONVERGE_ROOT/etc/datadog-agent"; then
      printf '=== Configuration errors ===\n\ncustom_my_metric: Configuration error: BROKEN\n'
    fi
    echo "=== custom_my_metric check ===" ;;
esac''',
    "useradd": 'echo "${*: -1}" >>"$FAKE/users"',
    "id": 'grep -qx "${*: -1}" "$FAKE/users" 2>/dev/null',
    "chown": "",
    "python3": r'''
[ "$1 $2" = "-m venv" ] || exit 2
mkdir -p "$3/bin"
printf '#!/bin/sh\n' >"$3/bin/python"
printf '#!/bin/sh\necho "pip $*" >>"$FAKE/calls"\n' >"$3/bin/pip"
chmod +x "$3/bin/python" "$3/bin/pip"''',
    "curl": r'''
# Instance metadata (IMDSv2): a session token for a PUT, then the instance's
# datadog-hostname tag (imds.datadog-hostname; a 404 without it) for that token only.
case "$*" in
  *"-X PUT"*"X-aws-ec2-metadata-token-ttl-seconds: "*" http://169.254.169.254/latest/api/token")
    printf %s "$IMDS_TOKEN"; exit 0 ;;
  *" http://169.254.169.254/latest/meta-data/tags/instance/datadog-hostname")
    [[ "$*" == *"-H X-aws-ec2-metadata-token: $IMDS_TOKEN "* ]] || exit 22  # 401
    [ -e "$FAKE/imds.datadog-hostname" ] || exit 22  # 404
    cat "$FAKE/imds.datadog-hostname"; exit 0 ;;
  *169.254.169.254*) exit 22 ;;
esac
[ ! -e "$FAKE/fail.curl" ] || exit 7
while [ $# -gt 0 ]; do if [ "$1" = -o ] && [ "$2" != /dev/null ]; then cp "$FAKE/apt-key.asc" "$2"; fi; shift; done''',
    "findmnt": "echo /dev/nvme0n1p1",
    # The disk's size: the first line of disk.gib, dropped once read while more lines follow.
    "lsblk": r'''
case "$*" in
  *SIZE*)
    gib=$(head -n 1 "$FAKE/disk.gib" 2>/dev/null || echo 1024)
    if [ "$(wc -l <"$FAKE/disk.gib" 2>/dev/null || echo 0)" -gt 1 ]; then sed -i 1d "$FAKE/disk.gib"; fi
    echo $((gib * 1024 * 1024 * 1024)) ;;
  *) echo nvme0n1 ;;
esac''',
    "growpart": 'exit "$(cat "$FAKE/growpart.status" 2>/dev/null || echo 1)"',
    "resize2fs": "",
    "sleep": "",
}


def _install_recorders(bin_dir: Path) -> None:
    bin_dir.mkdir(parents=True)
    for name, body in RECORDERS.items():
        path = bin_dir / name
        path.write_text("#!/usr/bin/env bash\n" + _RECORD + body.lstrip("\n") + "\n")
        path.chmod(0o755)


@functools.cache
def apt_signing_key() -> str:
    """An armored OpenPGP public key, made once per test session with the real gpg."""
    with tempfile.TemporaryDirectory() as home:
        gpg = ["gpg", "--batch", "--homedir", home]
        subprocess.run([*gpg, "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
                        "observability-lab tests <tests@example.invalid>", "ed25519", "sign", "never"],
                       check=True, capture_output=True)
        key = subprocess.run([*gpg, "--armor", "--export"], check=True, capture_output=True, text=True).stdout
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "gpg-agent"], capture_output=True)
    return key


def write_bundle(files: dict[str, str], bundles: Path) -> Path:
    """The bundle's files in bundles/<digest>/, as the SSM document unpacks them."""
    directory = bundles / Bundle(files).digest
    for path, content in files.items():
        (directory / path).parent.mkdir(parents=True, exist_ok=True)
        (directory / path).write_text(content)
    return directory


@dataclass
class ConvergeRun:
    returncode: int
    stdout: str
    stderr: str
    calls: list[str]

    def report(self, prefix: str) -> dict[str, str]:
        """`file /etc/x: updated` -> {"/etc/x": "updated"} for lines starting with prefix."""
        return dict(line[len(prefix) + 1:].rsplit(": ", 1) for line in self.stdout.splitlines()
                    if line.startswith(prefix + " "))

    def called(self, command: str) -> list[str]:
        return [call for call in self.calls if call.split(" ", 1)[0] == command]


class Host:
    """A scratch root that keeps its state across converge runs, like a host."""

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "root"
        self.fake = base / "fake"
        self.bundles = base / "bundles"
        self.bin = base / "bin"
        for directory in (self.root, self.fake, self.bundles):
            directory.mkdir(parents=True)
        _install_recorders(self.bin)
        (self.fake / "dpkg").write_text("")
        (self.fake / "imds.datadog-hostname").write_text(DEFAULT_DATADOG_HOSTNAME)
        (self.fake / "apt-key.asc").write_text(apt_signing_key())
        partition = self.root / "sys/class/block/nvme0n1p1/partition"
        partition.parent.mkdir(parents=True)
        partition.write_text("1\n")

    def copy(self, base: Path) -> "Host":
        """Another host in the same state (paths reach the script through its environment)."""
        shutil.copytree(self.base, base, symlinks=True, dirs_exist_ok=True)
        clone = object.__new__(Host)
        clone.__dict__.update(self.__dict__, base=base, root=base / "root", fake=base / "fake",
                              bundles=base / "bundles", bin=base / "bin")
        return clone

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": f"{self.bin}:/usr/bin:/bin", "FAKE": str(self.fake), "HOME": str(self.base),
                "IMDS_TOKEN": IMDS_TOKEN,
                "CONVERGE_ROOT": str(self.root), "OBSERVABILITY_LAB_BUNDLES": str(self.bundles),
                "TMPDIR": str(self.base), **extra}

    def path(self, host_path: str) -> Path:
        return self.root / host_path.lstrip("/")

    def run(self, command: list[str], **extra_env: str) -> ConvergeRun:
        calls = self.fake / "calls"
        calls.unlink(missing_ok=True)
        result = subprocess.run(command, env=self.env(**extra_env), capture_output=True, text=True,
                                timeout=60)
        return ConvergeRun(result.returncode, result.stdout, result.stderr,
                           calls.read_text().splitlines() if calls.exists() else [])

    def converge(self, files: dict[str, str], **extra_env: str) -> ConvergeRun:
        directory = write_bundle(files, self.bundles)
        return self.run(["bash", str(directory / "converge.sh")], **extra_env)

    def set(self, name: str, content: str = "") -> None:
        """Create a recorder state file (e.g. `fail.agent-status`, `growpart.status`)."""
        (self.fake / name).write_text(content)

    def clear(self, name: str) -> None:
        (self.fake / name).unlink(missing_ok=True)
