"""The booted host's base image: a minimal Debian 12 rootfs, built once per machine and cached.

What goes in is what an Ubuntu cloud image already has (systemd, python3 with PyYAML, curl,
gnupg, openssl, sudo, growpart, e2fsprogs, cloud-init and the user tools), never what
converge.sh must install itself (MySQL, python3-venv, the Agent). It is built with mmdebstrap
from the Debian mirrors this machine's own apt uses, into /var/cache/observability-lab/, under a
name that is the hash of everything that goes into it: a change to the list is a new image, and
a run never writes into one (each boot is an overlay over it, see machine.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

CACHE = Path(os.environ.get("OBSERVABILITY_LAB_CACHE", "/var/cache/observability-lab"))
SUITE = "bookworm"
VARIANT = "minbase"
PACKAGES = (
    # PID 1 and what a cloud image boots with.
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "cloud-init",
    # The tools converge.sh and the first-boot fetcher take for granted on an Ubuntu image.
    "python3", "python3-yaml", "ca-certificates", "curl", "gnupg", "openssl", "sudo",
    "cloud-guest-utils", "e2fsprogs", "iproute2", "procps", "passwd", "adduser", "locales",
)
# Bump when the way the image is made changes without the inputs above changing.
RECIPE = 2


def machine_mirrors(sources: Path = Path("/etc/apt")) -> list[str]:
    """The machine's own Debian mirrors for SUITE, as one-line `deb` entries for mmdebstrap."""
    lines: list[str] = []
    legacy = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*.list"))]
    for path in legacy:
        if path.is_file():
            for line in path.read_text().splitlines():
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 4 and fields[0] == "deb" and not fields[1].startswith("["):
                    lines.append(" ".join(fields))
    for path in sorted((sources / "sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            entry: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ")):
                    key, value = line.split(":", 1)
                    entry[key.strip()] = value.strip()
            if "deb" in entry.get("Types", "").split() and entry.get("Enabled", "yes") != "no":
                for uri in entry.get("URIs", "").split():
                    for suite in entry.get("Suites", "").split():
                        lines.append(f"deb {uri} {suite} {entry.get('Components', 'main')}")
    mirrors = [line for line in dict.fromkeys(lines) if line.split()[2].startswith(SUITE)]
    if not mirrors:
        raise RuntimeError(f"no Debian {SUITE} mirror in {sources}: the booted host's image needs one")
    return mirrors


def image_key(mirrors: list[str]) -> str:
    inputs = {"suite": SUITE, "variant": VARIANT, "packages": sorted(PACKAGES), "mirrors": mirrors,
              "recipe": RECIPE}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def base_image(log=print) -> Path:
    """The cached rootfs (built first if this machine has none), read-only by convention."""
    mirrors = machine_mirrors()
    target = CACHE / "rootfs" / image_key(mirrors)
    if (target / "etc/os-release").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Several test runs (helpers, CI) may start at once: one builds, the others wait for it.
    with open(target.parent / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "etc/os-release").exists():
            return target
        # Under the lock no one else builds: a `.building-*` left is a killed build's.
        for leftover in target.parent.glob(f".{target.name}.building-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        building = target.with_name(f".{target.name}.building-{os.getpid()}")
        started = time.monotonic()
        result = subprocess.run(
            ["mmdebstrap", "--quiet", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}",
             # An image has no machine-id of its own: systemd makes one at each first boot.
             "--customize-hook=rm -f \"$1/etc/machine-id\" && touch \"$1/etc/machine-id\"",
             # cloud-init sets LANG=en_US.UTF-8 at first boot: the image has that locale, as
             # Ubuntu's have.
             "--customize-hook=sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' \"$1/etc/locale.gen\""
             " && chroot \"$1\" locale-gen",
             SUITE, str(building), *mirrors],
            capture_output=True, text=True)
        if result.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            raise RuntimeError(f"mmdebstrap failed ({result.returncode}):\n{result.stderr[-4000:]}")
        building.rename(target)
        (CACHE / "rootfs" / f"{target.name}.json").write_text(json.dumps(
            {"packages": PACKAGES, "mirrors": mirrors, "build_seconds": round(time.monotonic() - started, 1)}))
        log(f"built the booted host's image {target} in {time.monotonic() - started:.0f} s")
    return target


if __name__ == "__main__":
    print(base_image())
