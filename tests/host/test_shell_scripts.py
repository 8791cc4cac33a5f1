"""The host's shell scripts (and CI's), checked the way shellcheck reads them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from rendering.bundle import USERDATA_DIR
from tests.support import ROOT

SHELLCHECK = Path(sys.executable).parent / "shellcheck"


def shell_sources() -> list[Path]:
    return sorted(USERDATA_DIR.rglob("*.sh")) + [ROOT / ".ci" / "run"]


@pytest.mark.parametrize("script", shell_sources(), ids=lambda p: p.name)
def test_shell_passes_shellcheck(script):
    result = subprocess.run([str(SHELLCHECK), "--shell=bash", "--severity=style", str(script)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_shellcheck_is_real():
    result = subprocess.run([str(SHELLCHECK), "--shell=bash", "-"], input="echo $UNQUOTED\n",
                            capture_output=True, text=True)
    assert result.returncode != 0 and "SC2086" in result.stdout


def test_converge_script_is_strict_and_logged():
    script = (USERDATA_DIR / "converge.sh").read_text()
    assert "set -euo pipefail" in script
    assert 'LOG=$ROOT/var/log/' in script


def test_every_script_the_host_files_name_exists():
    # A comment naming a script that was renamed or removed misleads whoever reads it on a host.
    tracked = subprocess.run(["git", "ls-files"], cwd=USERDATA_DIR.parent, capture_output=True, text=True, check=True)
    files = {Path(path).name for path in tracked.stdout.splitlines()}
    named = {name for path in USERDATA_DIR.rglob("*") if path.is_file() and path.suffix != ".pyc"
             for name in re.findall(r"(?<![\w.-])[\w.-]+\.(?:sh|py)\b", path.read_text())}
    assert sorted(named - files) == []
