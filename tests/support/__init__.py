"""What the tests share besides fixtures (tests/conftest.py): paths, resource types, harnesses,
and the committed stacks as the tests expect them (each declared once: tests/program/test_layout.py)."""

import sys
from pathlib import Path

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
