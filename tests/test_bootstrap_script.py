"""Single steps of userdata/bootstrap.sh, run for real by bash in a scratch directory.

The script is sourced (it only runs its main when executed), its paths point into
tmp_path, and the host commands it would change the machine with (mysql, systemctl,
install's chown, apt-get, sleep) are shell functions that record their input. What is
tested is the script's own logic: the MySQL password made once and reused, and the
bounded apt retries. Package installs, systemd and MySQL themselves only run on a host.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from components.bootstrap import USERDATA_DIR

SCRIPT = USERDATA_DIR / "bootstrap.sh"
RECORDERS = r"""
mysql() { cat >>"$WORK/mysql.sql"; }
systemctl() { echo "systemctl $*" >>"$WORK/calls"; }
sleep() { echo "sleep $*" >>"$WORK/calls"; }
install() {  # drop -o/-g: the dd-agent user exists only on the host
  local args=()
  while [ $# -gt 0 ]; do
    case "$1" in -o|-g) shift 2 ;; *) args+=("$1"); shift ;; esac
  done
  command install "${args[@]}"
}
"""


def run_steps(work: Path, steps: str) -> subprocess.CompletedProcess:
    script = f"source {SCRIPT}\n{RECORDERS}\n{steps}\n"
    env = {"PATH": "/usr/bin:/bin", "WORK": str(work), "STAGE": str(work / "stage"),
           "AGENT_ETC": str(work / "etc"), "LOG": str(work / "bootstrap.log")}
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True)


def staged_mysql_files(work: Path) -> Path:
    for relative in ("mysql/datadog_user.sql", "agent/conf.d/mysql.d/conf.yaml"):
        target = work / "stage" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(USERDATA_DIR / relative, target)
    (work / "etc" / "conf.d" / "mysql.d").mkdir(parents=True)
    return work / "etc" / "conf.d" / "mysql.d" / "conf.yaml"


def test_mysql_password_is_made_once_and_reused_on_a_second_run(tmp_path):
    conf = staged_mysql_files(tmp_path)
    first = run_steps(tmp_path, "configure_mysql")
    assert first.returncode == 0, first.stderr
    (instance,) = yaml.safe_load(conf.read_text())["instances"]
    password = instance["password"]
    assert re.fullmatch(r"[0-9a-f]{48}", password)
    assert conf.stat().st_mode & 0o777 == 0o640
    second = run_steps(tmp_path, "configure_mysql")
    assert second.returncode == 0, second.stderr
    assert yaml.safe_load(conf.read_text())["instances"][0]["password"] == password
    sql = (tmp_path / "mysql.sql").read_text()
    assert "@@" not in sql
    assert sql.count(f"IDENTIFIED BY '{password}'") == 8  # 4 statements per run, same password
    assert password not in first.stdout + first.stderr + second.stdout + second.stderr


def test_apt_retries_with_backoff_until_success(tmp_path):
    result = run_steps(tmp_path, """
apt-get() { n=$(cat "$WORK/tries" 2>/dev/null || echo 0); echo $((n + 1)) >"$WORK/tries"; [ "$n" -ge 2 ]; }
apt_retry update""")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tries").read_text().strip() == "3"
    assert (tmp_path / "calls").read_text().split("\n")[:2] == ["sleep 5", "sleep 10"]


def test_apt_retries_are_bounded(tmp_path):
    result = run_steps(tmp_path, """
apt-get() { echo x >>"$WORK/tries"; return 100; }
apt_retry install mysql-server-8.0""")
    assert result.returncode != 0
    assert len((tmp_path / "tries").read_text().split()) == 6
    assert "failed after 6 tries" in result.stderr


def test_sourcing_the_script_runs_nothing(tmp_path):
    result = run_steps(tmp_path, "true")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "bootstrap.log").exists() and not (tmp_path / "calls").exists()
