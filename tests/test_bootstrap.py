"""The host's user-data, checked with the real tools that consume it (cloud-init, shellcheck)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.bootstrap import EC2_USER_DATA_LIMIT, STAGE_DIR, USERDATA_DIR
from offline.engine import PLACEHOLDER_SECRETS
from offline.plan import decoded_user_data, is_gzip, stored_user_data

INSTANCE = "aws:ec2/instance:Instance"
SHELLCHECK = Path(sys.executable).parent / "shellcheck"


def cloud_config(evaluation) -> str:
    """The document cloud-init will parse, whichever way it travels to EC2."""
    return decoded_user_data(stored_user_data(evaluation.one(INSTANCE)))


def staged(evaluation) -> dict[str, str]:
    document = yaml.safe_load(cloud_config(evaluation))
    return {entry["path"].removeprefix(STAGE_DIR + "/"): entry["content"]
            for entry in document["write_files"]}


def test_user_data_passes_cloud_init_schema(stack_eval, tmp_path):
    path = tmp_path / "user-data.yaml"
    path.write_text(cloud_config(stack_eval))
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_cloud_init_schema_catches_a_broken_document(tmp_path):
    # Guards the test above: the validator really rejects what EC2 would not run.
    path = tmp_path / "broken.yaml"
    path.write_text("#cloud-config\nwrite_files:\n  - path: /x\n    permissions: 0644\n")
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)],
                            capture_output=True, text=True)
    assert result.returncode != 0


def test_user_data_is_one_cloud_config_running_the_staged_bootstrap(stack_eval):
    text = cloud_config(stack_eval)
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    assert document["runcmd"] == [["bash", f"{STAGE_DIR}/bootstrap.sh"]]
    for entry in document["write_files"]:
        assert isinstance(entry["permissions"], str) and entry["permissions"].startswith("0")


def test_every_userdata_file_is_staged_and_templates_are_fully_rendered(stack_eval):
    files = staged(stack_eval)
    sources = {p.relative_to(USERDATA_DIR).as_posix().removesuffix(".tmpl")
               for p in USERDATA_DIR.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".example"}
    assert set(files) == sources
    templates = [p.relative_to(USERDATA_DIR).as_posix().removesuffix(".tmpl")
                 for p in USERDATA_DIR.rglob("*.tmpl")]
    assert len(templates) >= 6
    for path in templates:
        assert "${" not in files[path], path
    assert files["bootstrap.sh"] == (USERDATA_DIR / "bootstrap.sh").read_text()


def test_user_data_size_keeps_30_percent_headroom(stack_eval):
    inputs = stack_eval.one(INSTANCE).inputs
    stored = stored_user_data(stack_eval.one(INSTANCE))
    assert len(stored) < EC2_USER_DATA_LIMIT
    assert len(stored) <= 0.7 * EC2_USER_DATA_LIMIT
    if "userDataBase64" in inputs:  # gzip only when the plain document would not fit
        assert len(cloud_config(stack_eval).encode()) > 0.7 * EC2_USER_DATA_LIMIT
        assert is_gzip(stored)


def test_user_data_is_deterministic(run_stack):
    first, second = run_stack("dev"), run_stack("dev")
    assert first.one(INSTANCE).inputs == second.one(INSTANCE).inputs


def test_no_secret_in_user_data(stack_eval):
    text = cloud_config(stack_eval)
    for placeholder in PLACEHOLDER_SECRETS.values():
        assert placeholder not in text


def test_agent_config_reads_the_key_from_ssm_and_tags_the_host(stack_eval):
    config = yaml.safe_load(staged(stack_eval)["agent/datadog.yaml"])
    env = stack_eval.stack
    assert config["api_key"] == f"ENC[/observability-lab/{env}/datadog/api_key]"
    assert config["secret_backend_type"] == "aws.ssm"
    assert config["secret_backend_config"] == {"aws_session": {"aws_region": "us-east-2"}}
    assert config["site"] == "datadoghq.com"
    assert config["hostname"] == f"observability-lab-{env}" == stack_eval.outputs["datadogHostname"]
    assert config["env"] == env
    assert "name:cars_app" in config["tags"] and f"env:{env}" in config["tags"]
    assert config["apm_config"]["enabled"] is True
    assert config["process_config"]["process_collection"]["enabled"] is True


def test_agent_site_follows_the_provider_api_url(run_stack):
    config = yaml.safe_load(staged(run_stack("dev", {"datadog:apiUrl": "https://api.datadoghq.eu/"}))
                            ["agent/datadog.yaml"])
    assert config["site"] == "datadoghq.eu"


def test_check_interval_comes_from_the_setting(run_stack):
    for interval in (45, 90):
        conf = yaml.safe_load(staged(run_stack("dev", {"checkIntervalSeconds": interval}))
                              ["agent/conf.d/custom_my_metric.yaml"])
        (instance,) = conf["instances"]
        assert instance["min_collection_interval"] == interval
        assert (instance["min_value"], instance["max_value"]) == (0, 1000)


def test_check_interval_change_never_touches_the_check_code(run_stack):
    a, b = (staged(run_stack("dev", {"checkIntervalSeconds": s})) for s in (45, 300))
    assert a["agent/checks.d/custom_my_metric.py"] == b["agent/checks.d/custom_my_metric.py"]
    assert a["agent/conf.d/custom_my_metric.yaml"] != b["agent/conf.d/custom_my_metric.yaml"]


def test_process_check_watches_the_configured_processes(run_stack):
    conf = yaml.safe_load(staged(run_stack("dev", {"watchedProcesses": ["gunicorn", "mysqld", "nginx"]}))
                          ["agent/conf.d/process.d/conf.yaml"])
    assert [i["name"] for i in conf["instances"]] == ["gunicorn", "mysqld", "nginx"]
    assert all(i["search_string"] == [i["name"]] for i in conf["instances"])


def test_mysql_integration_connects_over_tcp_with_a_host_generated_password(stack_eval):
    files = staged(stack_eval)
    (instance,) = yaml.safe_load(files["agent/conf.d/mysql.d/conf.yaml"])["instances"]
    assert (instance["host"], instance["port"], instance["username"]) == ("127.0.0.1", 3306, "datadog")
    assert instance["password"] == "@@DATADOG_MYSQL_PASSWORD@@"  # filled in on the host only
    sql = files["mysql/datadog_user.sql"]
    for grant in ("REPLICATION CLIENT ON *.*", "PROCESS ON *.*", "SELECT ON performance_schema.*",
                  "MAX_USER_CONNECTIONS 5", "CREATE USER IF NOT EXISTS"):
        assert grant in sql


def test_app_environment_sets_unified_service_tags(run_stack):
    env_file = staged(run_stack("prod", {"urlLookupAllowlist": ["example.com"], "setupOverheadMaxMs": 500}))[
        "app/app.env"]
    values = dict(line.split("=", 1) for line in env_file.splitlines() if line and not line.startswith("#"))
    assert values["DD_SERVICE"] == "sample-flask-app"
    assert values["DD_ENV"] == "prod"
    assert len(values["DD_VERSION"]) == 12
    assert values["URL_LOOKUP_ALLOWLIST"] == "example.com"
    assert (values["SETUP_OVERHEAD_MIN_MS"], values["SETUP_OVERHEAD_MAX_MS"]) == ("250", "500")
    assert values["APP_PORT"] == "5050"


def test_app_unit_runs_unprivileged_under_ddtrace_and_restarts(stack_eval):
    unit = staged(stack_eval)["app/flask-app.service"]
    assert "User=flaskapp" in unit and "User=root" not in unit
    assert "Restart=on-failure" in unit
    assert "ddtrace-run" in unit and "gunicorn" in unit
    assert "EnvironmentFile=/opt/sample-flask-app/app.env" in unit


def test_agent_version_is_pinned_for_apt(run_stack):
    env_file = staged(run_stack("dev", {"agentVersion": "7.71.0"}))["bootstrap.env"]
    assert "DD_AGENT_VERSION=7.71.0" in env_file
    script = (USERDATA_DIR / "bootstrap.sh").read_text()
    assert 'datadog-agent=1:${DD_AGENT_VERSION}-1' in script
    assert "apt-mark hold datadog-agent" in script


def shell_sources() -> list[Path]:
    return sorted(USERDATA_DIR.rglob("*.sh")) + [Path(__file__).resolve().parent.parent / ".ci" / "run"]


@pytest.mark.parametrize("script", shell_sources(), ids=lambda p: p.name)
def test_shell_passes_shellcheck(script):
    result = subprocess.run([str(SHELLCHECK), "--shell=bash", "--severity=style", str(script)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_shellcheck_is_real():
    result = subprocess.run([str(SHELLCHECK), "--shell=bash", "-"], input="echo $UNQUOTED\n",
                            capture_output=True, text=True)
    assert result.returncode != 0 and "SC2086" in result.stdout


def test_bootstrap_script_is_strict_logged_and_bounded():
    script = (USERDATA_DIR / "bootstrap.sh").read_text()
    assert "set -euo pipefail" in script
    assert 'exec >>"$LOG" 2>&1' in script and "LOG=${LOG:-/var/log/" in script
