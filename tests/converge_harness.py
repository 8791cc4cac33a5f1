"""Runs userdata/converge.sh for real, with bash, in a scratch root.

Every host path of the script is under CONVERGE_ROOT. The commands that would change the
machine or need a real host (apt-get, dpkg-query, apt-mark, systemctl, mysql,
datadog-agent, useradd, id, chown, python3's venv, curl, gpg, growpart, resize2fs,
findmnt, lsblk, sleep) are small executables first on PATH that record each call in
`calls` and act out the part of their behaviour the script depends on, from state files
the tests can set: installed packages, active services, a failing Agent config check.
Everything else (sha256sum, install, cmp, flock, tar, base64, openssl) is the real tool.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from components.bundle import Bundle

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
case "$1" in
  is-active) [ -e "$FAKE/active.${*: -1}" ] ;;
  enable) [ "$2" != --now ] || touch "$FAKE/active.${*: -1}" ;;
esac''',
    "mysql": 'cat >>"$FAKE/mysql.sql"',
    "datadog-agent": r'''
case "$1" in
  status) [ ! -e "$FAKE/fail.agent-status" ] ;;
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
[ ! -e "$FAKE/fail.curl" ] || exit 7
while [ $# -gt 0 ]; do if [ "$1" = -o ] && [ "$2" != /dev/null ]; then echo key >"$2"; fi; shift; done''',
    "gpg": r'''
while [ $# -gt 0 ]; do if [ "$1" = --keyring ]; then echo key >>"$2"; fi; shift; done''',
    "findmnt": "echo /dev/nvme0n1p1",
    "lsblk": "echo nvme0n1",
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
        partition = self.root / "sys/class/block/nvme0n1p1/partition"
        partition.parent.mkdir(parents=True)
        partition.write_text("1\n")
        self.runs = 0

    def env(self, **extra: str) -> dict[str, str]:
        return {"PATH": f"{self.bin}:/usr/bin:/bin", "FAKE": str(self.fake), "HOME": str(self.base),
                "CONVERGE_ROOT": str(self.root), "OBSERVABILITY_LAB_BUNDLES": str(self.bundles),
                "TMPDIR": str(self.base), **extra}

    def path(self, host_path: str) -> Path:
        return self.root / host_path.lstrip("/")

    def run(self, command: list[str], **extra_env: str) -> ConvergeRun:
        calls = self.fake / "calls"
        calls.unlink(missing_ok=True)
        result = subprocess.run(command, env=self.env(**extra_env), capture_output=True, text=True,
                                timeout=60)
        self.runs += 1
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
