"""What `pulumi up` installs into ./venv (Pulumi.yaml: toolchain pip, requirements.txt) is the
set the suite ran: every distribution the program needs, its dependencies' too, pinned exactly.
A dependency left unpinned is resolved anew by each `pulumi up` (a newer grpcio, protobuf or
OpenTelemetry than the tests saw), so a preview would not be reproducible."""

from __future__ import annotations

from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import ROOT


def exact_pins(text: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{line} is not an exact pin"
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def needed(roots: list[str]) -> set[str]:
    """The roots and everything they require on this interpreter, from the installed metadata."""
    seen: set[str] = set()
    todo = [canonicalize_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


def test_the_program_pins_every_distribution_it_installs():
    pins = exact_pins((ROOT / "requirements.txt").read_text())
    assert {"pulumi", "pulumi-aws", "pulumi-datadog"} <= set(pins)
    closure = needed(sorted(pins))
    assert sorted(closure - set(pins)) == [], "installed by `pulumi up` but not pinned in requirements.txt"
    # Pinned at the versions the suite runs on.
    assert {name: metadata.version(name) for name in closure} == {name: pins[name] for name in closure}


def test_the_hosts_app_pins_every_distribution_its_venv_installs():
    # converge.sh builds /opt/sample-flask-app/venv from userdata/app/requirements.txt; the tests
    # run the app on this venv's versions of the same distributions.
    pins = exact_pins((ROOT / "userdata" / "app" / "requirements.txt").read_text())
    assert {"ddtrace", "flask", "gunicorn", "urllib3"} <= set(pins)
    closure = needed(sorted(pins))
    assert sorted(closure - set(pins)) == [], "installed on the host but not pinned in userdata/app/requirements.txt"
    assert {name: metadata.version(name) for name in closure} == {name: pins[name] for name in closure}


def test_the_closure_check_sees_a_dependency_of_a_dependency():
    # None of these is a root: grpcio comes in through pulumi, zipp through OpenTelemetry's API
    # (three levels down). They must be found, or the test above proves nothing.
    assert {"grpcio", "protobuf", "semver", "zipp"} <= needed(["pulumi"])
