"""The host's shell scripts (and CI's), checked the way shellcheck reads them."""

from __future__ import annotations

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
