""".ci/run, CI's entry point, run by bash on a copy of itself whose PATH holds only recorders:
which base tools it installs with apt, that it runs README's test command, and that a failing
test command fails it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

BASH = shutil.which("bash")


def run_ci(tmp_path: Path, *, python3_has_venv: bool, make_status: int = 0) -> tuple[int, list[str]]:
    repo, bin_dir, log = tmp_path / "clone", tmp_path / "bin", tmp_path / "calls"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy2(ROOT / ".ci" / "run", repo / ".ci" / "run")
    bin_dir.mkdir()
    for tool in ("dirname",):  # what the script itself needs, real
        (bin_dir / tool).symlink_to(shutil.which(tool))
    recorders = {
        # Debian's python3 without python3-venv: no ensurepip, so `python3 -m venv` fails.
        "python3": f'echo "python3 $*" >>{log}; [ "$1" = -c ] && exit {0 if python3_has_venv else 1}; exit 0',
        "make": f'echo "make $*" >>{log}; exit {make_status}',
        "apt-get": f'echo "apt-get $*" >>{log}',
        **{tool: "exit 0" for tool in ("node", "npm", "openssl")},
    }
    for name, body in recorders.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    run = subprocess.run([BASH, str(repo / ".ci" / "run")], env={"PATH": str(bin_dir)},
                         capture_output=True, text=True, timeout=30)
    calls = log.read_text().splitlines() if log.exists() else []
    return run.returncode, [c for c in calls if not c.startswith("python3 ")]


def test_python3_without_venv_gets_python3_venv_before_the_tests(tmp_path):
    status, calls = run_ci(tmp_path, python3_has_venv=False)
    assert status == 0
    assert calls[0] == "apt-get update -qq"
    assert calls[1].startswith("apt-get install ") and "python3-venv" in calls[1].split()
    assert calls[2:] == ["make test"]


def test_nothing_is_installed_when_every_base_tool_is_there(tmp_path):
    status, calls = run_ci(tmp_path, python3_has_venv=True)
    assert (status, calls) == (0, ["make test"])


@pytest.mark.parametrize("make_status", [1, 2])
def test_a_failing_test_command_fails_ci(tmp_path, make_status):
    status, calls = run_ci(tmp_path, python3_has_venv=True, make_status=make_status)
    assert status == make_status and calls == ["make test"]
