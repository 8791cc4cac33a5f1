"""The configuration bundle: every file of userdata/ rendered for a stack, as the SSM document carries it."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

import rendering.bundle as bundle
from offline.engine import PLACEHOLDER_SECRETS, evaluate
from rendering.bundle import BUNDLE_ONLY, USERDATA_DIR, manifest_entries
from tests.support.evaluations import bundle_files, document
from tests.support.resource_types import DOCUMENT, PARAMETER
from tests.support.shared_settings import DEV_DATADOG, PROD_DATADOG


def switched_off(evaluation) -> set[str]:
    """Files of features the stack does not enable (prod: no bike-share, no Java workload, no traffic)."""
    features = {"dev": set(), "prod": {"bikeShare", "javaApp", "appTraffic"}}[evaluation.stack]
    return {path.removesuffix(".tmpl") for feature in features for path in bundle.FEATURE_FILES[feature]}


def test_every_userdata_file_is_in_the_bundle_and_templates_are_fully_rendered(stack_eval):
    files = bundle_files(stack_eval)
    sources = {p.relative_to(USERDATA_DIR).as_posix().removesuffix(".tmpl")
               for p in USERDATA_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    first_boot = {s for s in sources if s.startswith("first-boot/")}
    assert first_boot and set(files) == sources - first_boot - switched_off(stack_eval)
    templates = [p.relative_to(USERDATA_DIR).as_posix().removesuffix(".tmpl")
                 for p in USERDATA_DIR.rglob("*.tmpl")]
    assert len(templates) >= 6
    for path in set(templates) - switched_off(stack_eval):
        assert "${" not in files[path], path
    assert files["converge.sh"] == bundle.without_comment_lines((USERDATA_DIR / "converge.sh").read_text())


# What bash reads from a script: its functions as bash prints them back (comments gone) and
# every variable it sets, sourced at one path (the script's directory is one of them).
BASH_READS = r'''fresh=" $(compgen -v | tr '\n' ' ') "
source "$1"
declare -f
for name in $(compgen -v); do case "$fresh" in *" $name "*) ;; *) declare -p "$name" ;; esac; done'''


def test_converge_sh_ships_as_the_same_program_without_its_comment_lines(tmp_path):
    # Dropping a line that only holds a comment could still change a script (one inside a
    # multi-line string, say): bash says whether it did.
    source = (USERDATA_DIR / "converge.sh").read_text()
    shipped = bundle.without_comment_lines(source)
    assert len(shipped) < 0.75 * len(source) and shipped.startswith("#!/usr/bin/env bash\n")
    script = tmp_path / "converge.sh"

    def reads(text: str) -> str:
        script.write_text(text)
        result = subprocess.run(["bash", "-c", BASH_READS, "_", str(script)], env={"PATH": "/usr/bin:/bin"},
                                capture_output=True, text=True, check=True)
        return result.stdout

    program = reads(source)
    assert "\ninstall_agent () \n" in program and "declare -a UNITS=" in program
    assert reads(shipped) == program
    # And the check can fail: a line of a multi-line string that looks like a comment.
    quoting = source.replace("set -euo pipefail\n", "set -euo pipefail\nNOTE='first\n# not a comment\nlast'\n", 1)
    assert reads(bundle.without_comment_lines(quoting)) != reads(quoting)


def test_every_bundle_file_is_installed_by_the_manifest_or_read_by_converge(stack_eval):
    files = bundle_files(stack_eval)
    entries = manifest_entries(files["manifest"])
    assert all(len(entry) == 5 for entry in entries)
    assert {entry[0] for entry in entries} - switched_off(stack_eval) | BUNDLE_ONLY == set(files)
    targets = [entry[1] for entry in entries]
    assert len(set(targets)) == len(targets) and all(t.startswith("/") for t in targets)
    assert {entry[4] for entry in entries} == {"datadog-agent", "flask-app", "app-traffic", "mysql-grants", "tomcat"}
    for _, target, owner, mode, _ in entries:
        assert owner.count(":") == 1 and mode in ("0400", "0600", "0640", "0644"), target
        if target.startswith("/etc/datadog-agent/"):
            assert (owner, mode) == ("dd-agent:dd-agent", "0640"), target
    # The JVM refuses a JMX password file anyone else may read, and must not be able to
    # rewrite it (JDK 17+ hashes a writable one at the first login).
    (password,) = [entry for entry in entries if entry[1] == "/etc/tomcat10/jmxremote.password"]
    assert password[2:4] == ["tomcat:tomcat", "0400"]


def test_a_userdata_file_without_a_manifest_line_is_refused(monkeypatch, tmp_path):
    copy = tmp_path / "userdata"
    shutil.copytree(USERDATA_DIR, copy)
    (copy / "agent" / "conf.d" / "stray.yaml").write_text("instances: [{}]\n")
    monkeypatch.setattr(bundle, "USERDATA_DIR", copy)
    evaluation = evaluate("dev")
    assert "userdata/agent/conf.d/stray.yaml: has no line in userdata/manifest.tmpl" in str(evaluation.error)
    assert not any(r.type == DOCUMENT for r in evaluation.resources)


def test_bundle_digest_is_what_sha256sum_says_on_the_host(dev, tmp_path):
    decoded = document(dev)
    for path, content in decoded.files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content)
    listing = subprocess.run("find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum",
                             shell=True, cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert listing.split()[0] == decoded.digest


@pytest.mark.parametrize("stack,overrides", [("dev", None), ("prod", None), ("dev", {"checkIntervalSeconds": 30}),
                                             ("dev", DEV_DATADOG), ("prod", PROD_DATADOG)])
def test_the_document_carries_the_bundle_its_settings_render(run_stack, rendered_bundle, rendered_document, stack, overrides):
    # The bundle tests (and the host's and the checks') render the bundle and the document from the
    # settings alone (`rendered_bundle`, `rendered_document`): the very files and document the program registers.
    evaluation = run_stack(stack, overrides)
    assert bundle_files(evaluation) == rendered_bundle(stack, overrides)
    rendered, (parameter,) = rendered_document(stack, overrides), [
        r for r in evaluation.of_type(PARAMETER) if r.name == "host-config-current-document"]
    document = evaluation.one(DOCUMENT).inputs
    assert (document["name"], document["content"]) == (rendered.name, rendered.content)
    assert (parameter.inputs["name"], parameter.inputs["insecureValue"]) == (rendered.parameter, rendered.name)


def test_bundle_is_deterministic(run_stack, run_stack_again):
    first, second = run_stack("dev"), run_stack_again("dev")
    assert first is not second and first.one(DOCUMENT).inputs == second.one(DOCUMENT).inputs


def test_no_secret_in_the_bundle(stack_eval):
    text = "\n".join(bundle_files(stack_eval).values()) + stack_eval.one(DOCUMENT).inputs["content"]
    for placeholder in PLACEHOLDER_SECRETS.values():
        assert placeholder not in text


def test_agent_config_reads_the_key_from_ssm_and_tags_the_host(stack_eval):
    config = yaml.safe_load(bundle_files(stack_eval)["agent/datadog.yaml"])
    env = stack_eval.stack
    assert config["api_key"] == f"ENC[/observability-lab/{env}/datadog/api_key]"
    assert config["secret_backend_type"] == "aws.ssm"
    assert config["secret_backend_config"] == {"aws_session": {"aws_region": "us-east-2"}}
    assert config["site"] == "datadoghq.com"
    # Filled in on each host from its instance's tag (tests/host/test_converge_script.py): one bundle, every host.
    assert config["hostname"] == "@@DATADOG_HOSTNAME@@"
    assert config["env"] == env
    # The tags the stack's monitors and dashboards select its hosts by, on every host.
    assert config["tags"][-2:] == [f"env:{env}", "project:observability-lab"]
    assert "name:cars_app" in config["tags"]
    assert config["apm_config"]["enabled"] is True
    assert config["process_config"]["process_collection"]["enabled"] is True


def test_agent_site_follows_the_provider_api_url(rendered_bundle):
    config = yaml.safe_load(rendered_bundle("dev", {"datadog:apiUrl": "https://api.datadoghq.eu/"})["agent/datadog.yaml"])
    assert config["site"] == "datadoghq.eu"


def test_check_interval_comes_from_the_setting(rendered_bundle):
    for interval in (45, 90):
        conf = yaml.safe_load(rendered_bundle("dev", {"checkIntervalSeconds": interval})["agent/conf.d/custom_my_metric.yaml"])
        (instance,) = conf["instances"]
        assert instance["min_collection_interval"] == interval
        assert (instance["min_value"], instance["max_value"]) == (0, 1000)
        assert instance["service"] == "sample-flask-app" and "tags" not in instance


def test_check_interval_change_never_touches_the_check_code(rendered_bundle):
    a, b = (rendered_bundle("dev", {"checkIntervalSeconds": s}) for s in (45, 300))
    assert a["agent/checks.d/custom_my_metric.py"] == b["agent/checks.d/custom_my_metric.py"]
    assert a["agent/conf.d/custom_my_metric.yaml"] != b["agent/conf.d/custom_my_metric.yaml"]


def test_process_check_watches_the_configured_processes(rendered_bundle):
    conf = yaml.safe_load(rendered_bundle("dev", {"watchedProcesses": ["gunicorn", "mysqld", "nginx"]})
                          ["agent/conf.d/process.d/conf.yaml"])
    *watched, tomcat = conf["instances"]
    assert [i["name"] for i in watched] == ["gunicorn", "mysqld", "nginx"]
    assert all(i["search_string"] == [i["name"]] for i in watched)
    # The Java workload's JVM: by its main class (a regular expression over the command
    # line), under its user; the Agent's own JMXFetch JVM is java too, under dd-agent.
    assert tomcat == {"name": "tomcat", "search_string": [r"org\.apache\.catalina\.startup\.Bootstrap"],
                      "exact_match": False, "user": "tomcat"}
    off = yaml.safe_load(rendered_bundle("dev", {"javaAppEnabled": "false"})["agent/conf.d/process.d/conf.yaml"])
    assert [i["name"] for i in off["instances"]] == ["gunicorn", "mysqld"]


def test_mysql_integration_connects_over_tcp_with_a_host_generated_password(stack_eval):
    files = bundle_files(stack_eval)
    (instance,) = yaml.safe_load(files["agent/conf.d/mysql.d/conf.yaml"])["instances"]
    assert (instance["host"], instance["port"], instance["username"]) == ("127.0.0.1", 3306, "datadog")
    assert instance["password"] == "@@DATADOG_MYSQL_PASSWORD@@"  # filled in on the host only
    sql = files["mysql/datadog_user.sql"]
    for grant in ("REPLICATION CLIENT ON *.*", "PROCESS ON *.*", "SELECT ON performance_schema.*",
                  "SELECT ON mysql.innodb_index_stats", "MAX_USER_CONNECTIONS 5", "CREATE USER IF NOT EXISTS"):
        assert grant in sql


def test_app_environment_sets_unified_service_tags(rendered_bundle):
    env_file = rendered_bundle("prod", {"urlLookupAllowlist": ["example.com"], "setupOverheadMaxMs": 500})["app/app.env"]
    values = dict(line.split("=", 1) for line in env_file.splitlines() if line and not line.startswith("#"))
    assert values["DD_SERVICE"] == "sample-flask-app"
    assert values["DD_ENV"] == "prod"
    assert len(values["DD_VERSION"]) == 12
    assert values["URL_LOOKUP_ALLOWLIST"] == "example.com"
    assert (values["SETUP_OVERHEAD_MIN_MS"], values["SETUP_OVERHEAD_MAX_MS"]) == ("250", "500")
    assert values["APP_PORT"] == "5050"
    assert values["APP_WORKERS"] == "2"  # gunicorn.conf.py has no default of its own


def env_values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_app_logs_carry_the_trace_ids_and_the_agent_reads_them_from_the_units_journal(rendered_bundle):
    files = rendered_bundle("prod")
    assert env_values(files["app/app.env"])["DD_LOGS_INJECTION"] == "true"
    assert yaml.safe_load(files["agent/datadog.yaml"])["logs_enabled"] is True
    assert yaml.safe_load(files["agent/conf.d/flask_app.d/conf.yaml"]) == {"logs": [{
        "type": "journald", "include_units": ["flask-app.service"], "source": "python",
        "service": "sample-flask-app"}]}
    unit = files["app/flask-app.service"]
    assert "ExecStart=" in unit and "StandardOutput=file" not in unit  # stdout is the journal's
    mysql_logs = yaml.safe_load(files["agent/conf.d/mysql.d/conf.yaml"])["logs"]
    assert mysql_logs == [{"type": "file", "path": "/var/log/mysql/error.log", "source": "mysql", "service": "mysql"}]


def test_the_traffic_generators_settings_reach_its_environment(rendered_bundle):
    files = rendered_bundle("dev", {"appTrafficRequestsPerSecond": 4.5, "appTrafficUrlLookupPercent": 10,
                                    "appTrafficFailPercent": 0.1, "urlLookupAllowlist": ["example.com"]})
    assert env_values(files["traffic/app-traffic.env"]) == {
        "TRAFFIC_TARGET": "http://127.0.0.1:5050", "TRAFFIC_REQUESTS_PER_SECOND": "4.5",
        "TRAFFIC_URL_LOOKUP_PERCENT": "10.0", "TRAFFIC_FAIL_PERCENT": "0.1", "TRAFFIC_URL_LOOKUP_HOSTS": "example.com"}
    assert not [path for path in rendered_bundle("prod") if path.startswith("traffic/")]  # prod: off


def test_gunicorn_workers_follow_the_stack_setting(rendered_bundle):
    env_file = rendered_bundle("prod", {"appWorkers": 5})["app/app.env"]  # as in test_monitors
    assert "APP_WORKERS=5" in env_file.splitlines()


def test_app_unit_runs_unprivileged_under_ddtrace_and_restarts(stack_eval):
    unit = bundle_files(stack_eval)["app/flask-app.service"]
    assert "User=flaskapp" in unit and "User=root" not in unit
    assert "Restart=on-failure" in unit
    assert "ddtrace-run" in unit and "gunicorn" in unit
    assert "EnvironmentFile=/opt/sample-flask-app/app.env" in unit


def test_agent_version_and_volume_size_reach_converge(rendered_bundle):
    env_file = rendered_bundle("dev", {"agentVersion": "7.71.0", "rootVolumeGiB": 40})["converge.env"]
    assert "DD_AGENT_VERSION=7.71.0" in env_file.splitlines()
    assert "ROOT_VOLUME_GIB=40" in env_file.splitlines()


def test_the_mysql_server_package_is_the_images_ubuntus_by_default(rendered_bundle):
    assert "MYSQL_SERVER_PACKAGE=mysql-server-8.0" in rendered_bundle("dev")["converge.env"].splitlines()
    chosen = rendered_bundle("dev", {"mysqlServerPackage": "mariadb-server"})["converge.env"]
    assert "MYSQL_SERVER_PACKAGE=mariadb-server" in chosen.splitlines()
