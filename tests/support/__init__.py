"""What the tests share besides fixtures (tests/conftest.py): paths, resource types, harnesses,
and the committed stacks as the tests expect them (each declared once: tests/program/test_layout.py)."""

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[2]
USERDATA = ROOT / "userdata"
DATA = ROOT / "tests" / "data"
CONVERGE = USERDATA / "converge.sh"
BIN = Path(sys.executable).parent  # console scripts of the venv running the tests

# The committed stacks (Pulumi.dev.yaml, Pulumi.prod.yaml), stated here, not read from the program.
STACKS = ("dev", "prod")
HOSTS = {"dev": 1, "prod": 2}  # their hostCount
REGION = "us-east-2"           # their aws:region
SERVICE = "sample-flask-app"   # the app's service (the `service` setting's default)

# Host paths several layers look at.
DATA_MOUNT = "/var/lib/observability-lab-data"  # where converge.sh and its fstab line mount the data volume
JMX_PASSWORD_FILE = "/etc/tomcat10/jmxremote.password"


def hostnames(stack: str) -> list[str]:
    """The committed stack's Datadog hostnames."""
    return [f"observability-lab-{stack}-{n}" for n in range(1, HOSTS[stack] + 1)]


# A RAM filesystem, when the machine has one with room (a container's /dev/shm may be 64 MB):
# the scratch hosts (a converge creates hundreds of files, each a tenth of ext4's CPU there) and
# MariaDB's data directory.
RAM = Path("/dev/shm")
RAM_NEEDED = 256 << 20


def ram_directory(prefix: str) -> Optional[Path]:
    """A new directory on the RAM filesystem; None when there is none usable."""
    if RAM.is_dir() and os.access(RAM, os.W_OK | os.X_OK) and shutil.disk_usage(RAM).free >= RAM_NEEDED:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=RAM))
    return None
