#!/usr/bin/python3
"""Stand-in for the Datadog Agent 7's `agent` program, installed by the test-built datadog-agent .deb.

It imitates what converge.sh and the booted-host tests rely on, and nothing more
(docs/booted-host.md lists what it imitates and what stays an assumption):

* `agent run -p PIDFILE` (the unit's ExecStart, as dd-agent): reads datadog.yaml and refuses to
  start without an api_key, loads every check configuration from conf.d as the Agent's file
  provider does, runs the checks whose code is in checks.d on their interval through the real
  datadog_checks.base, and answers the CLI on 127.0.0.1:<cmd_port> (5001) with the auth token
  it creates at start (auth_token_file_path, by default next to datadog.yaml) beside its IPC
  certificate (ipc_cert.pem), as the Agent's IPC API does: the Agent's user must be able to
  write there.
* `agent status`: asks the running daemon; fails when it does not answer.
* `agent configcheck`: the configurations the running daemon loaded, and the ones it could not
  load under `=== Configuration errors ===`; exits 0 either way, like the real one.
* `agent check NAME`: loads NAME's configuration itself (no daemon needed, as the real command),
  runs checks.d/NAME.py once per instance through datadog_checks.base, prints what it submitted,
  and exits non-zero when the configuration does not load or a run raises. A check that ships
  with the real Agent (mysql, process) has no code here: its configuration must parse and carry
  instances (a file with only a `logs` section is the logs collector's, no check: as the Agent).
* `agent version`.
* `agent jmx list collected --checks NAME`: what JMXFetch would collect for a JMX check, read
  for real over remote JMX from the JVM its conf names (with the JRE of its java_bin_path):
  JMXFetch's default beans for the check (stand-in.json's `jmx_defaults`) and the conf's own
  includes, one `Matching:` line per bean attribute found; an instance it cannot reach or log in
  to shows only as "Cannot connect" in the output, and the exit status is 0 either way.

What one package version does beyond that is data, in /opt/datadog-agent/stand-in.json, so a
later version can behave differently without another program: `failing_checks` (names whose
`check` runs fail, "*" for all) and `answers` (fixed outputs for further subcommands, e.g.
"jmx list collected").
"""

import http.server
import importlib.util
import json
import os
import secrets
import signal
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

INSTALL_DIR = Path("/opt/datadog-agent")
sys.path.insert(0, str(INSTALL_DIR / "embedded/lib/site-packages"))

import yaml  # noqa: E402  (from the embedded site-packages)

CONFIG_DIR = Path(os.environ.get("DD_CONF_DIR", "/etc/datadog-agent"))
BEHAVIOUR = json.loads((INSTALL_DIR / "stand-in.json").read_text())
DEFAULT_INTERVAL = 15


def agent_config() -> dict:
    """datadog.yaml, checked the way the Agent refuses to start on it."""
    path = CONFIG_DIR / "datadog.yaml"
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SystemExit(f"Error: unable to load the configuration file {path}: {error}")
    if not isinstance(config, dict):
        raise SystemExit(f"Error: {path} is not a mapping")
    api_key = config.get("api_key")
    if not isinstance(api_key, str) or not api_key.strip():
        raise SystemExit("Error: no API key configured, exiting")
    if api_key.startswith("ENC[") and not (config.get("secret_backend_type") or config.get("secret_backend_command")):
        raise SystemExit(f"Error: {api_key} needs a secret backend (secret_backend_type), none configured")
    return config


def cmd_port(config: dict) -> int:
    return int(config.get("cmd_port", 5001))


def auth_token_path(config: dict) -> Path:
    """auth_token_file_path, else auth_token next to datadog.yaml; ipc_cert.pem goes beside it."""
    return Path(config.get("auth_token_file_path") or CONFIG_DIR / "auth_token")


# ----------------------------------------------------------------------------- check configurations
def check_configs():
    """(configs, errors) as the file provider finds them: conf.d/NAME.yaml and conf.d/NAME.d/*.yaml
    (a NAME.d/conf.yaml.default only when the directory has no other .yaml)."""
    conf_d = CONFIG_DIR / "conf.d"
    found: list[tuple[str, Path]] = []
    for entry in sorted(conf_d.iterdir()) if conf_d.is_dir() else []:
        if entry.is_file() and entry.suffix == ".yaml":
            found.append((entry.stem, entry))
        elif entry.is_dir() and entry.name.endswith(".d"):
            yamls = sorted(path for path in entry.iterdir() if path.suffix == ".yaml")
            defaults = sorted(entry.glob("*.yaml.default"))
            found += [(entry.name[:-2], path) for path in (yamls or defaults)]
    configs, errors = [], {}
    for name, path in found:
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as error:
            errors[name] = f"{path}: {error}"
            continue
        instances = data.get("instances") if isinstance(data, dict) else None
        # As the Agent's file provider (comp/core/autodiscovery/providers/config_reader.go): a file
        # with a `logs` (or `jmx_metrics`) section and no instances is a valid configuration, of the
        # logs collector only: no check to schedule.
        if not instances and isinstance(data, dict) and (data.get("logs") is not None
                                                          or data.get("jmx_metrics") is not None):
            continue
        if not isinstance(instances, list) or not instances or not all(isinstance(i, dict) for i in instances):
            errors[name] = f"{path}: Configuration file contains no valid instances"
            continue
        configs.append({"name": name, "source": f"file:{path}", "instances": instances,
                        "init_config": data.get("init_config") or {}})
    return configs, errors


def check_class(name: str):
    """The AgentCheck subclass in checks.d/NAME.py, or None for a check the real Agent ships."""
    path = CONFIG_DIR / "checks.d" / f"{name}.py"
    if not path.exists():
        return None
    from datadog_checks.base import AgentCheck
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    classes = [value for value in vars(module).values() if isinstance(value, type)
               and issubclass(value, AgentCheck) and value.__module__ == module.__name__]
    if len(classes) != 1:
        raise RuntimeError(f"{path}: expected one AgentCheck subclass, found {len(classes)}")
    return classes[0]


def run_once(name: str, config: dict, instance: dict) -> str:
    """One run of a check instance: '' when it passed, else the error."""
    if name in BEHAVIOUR.get("failing_checks", []) or "*" in BEHAVIOUR.get("failing_checks", []):
        return f"check {name} fails in stand-in version {BEHAVIOUR['version']}"
    cls = check_class(name)
    if cls is None:
        return ""
    check = cls(name, config["init_config"], [instance])
    errors = check.run()  # the Agent's own entry point: '' or a JSON list of errors
    return "" if not errors else errors


# ----------------------------------------------------------------------------- the daemon
class Daemon:
    def __init__(self):
        self.config = agent_config()
        self.configs, self.errors = check_configs()
        self.started = time.time()
        self.runs: dict[str, dict] = {}
        self.token = secrets.token_hex(32)
        token = auth_token_path(self.config)
        old = os.umask(0o077)
        try:  # the real Agent fails to start when it cannot create them ("auth_init_timeout")
            token.write_text(self.token)
            (token.parent / "ipc_cert.pem").write_text(f"stand-in IPC certificate {secrets.token_hex(8)}\n")
        except OSError as error:
            raise SystemExit(f"Error: unable to create the IPC auth artifacts: {error}")
        finally:
            os.umask(old)

    def status(self) -> dict:
        return {"version": BEHAVIOUR["version"], "pid": os.getpid(), "hostname": self.config.get("hostname"),
                "started": self.started, "runs": self.runs, "config_errors": self.errors,
                "checks": sorted({config["name"] for config in self.configs})}

    def schedule(self) -> None:
        """Runs each check that has code here on its interval, keeping the last result per instance."""
        due: dict[tuple[str, int], float] = {}
        while True:
            for config in self.configs:
                for index, instance in enumerate(config["instances"]):
                    key = (config["name"], index)
                    if time.monotonic() < due.get(key, 0):
                        continue
                    interval = instance.get("min_collection_interval", DEFAULT_INTERVAL)
                    due[key] = time.monotonic() + float(interval)
                    try:
                        error = run_once(config["name"], config, instance)
                    except Exception:  # noqa: BLE001  a check's failure is reported, never fatal
                        error = traceback.format_exc(limit=3)
                    self.runs[f"{config['name']}[{index}]"] = {"at": time.time(), "error": error}
            time.sleep(1)

    def serve(self, pidfile: str) -> None:
        daemon = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.headers.get("Authorization") != f"Bearer {daemon.token}":
                    return self.answer(401, {"error": "unauthorized"})
                if self.path == "/agent/status":
                    return self.answer(200, daemon.status())
                if self.path == "/agent/config-check":
                    return self.answer(200, {"configs": daemon.configs, "errors": daemon.errors})
                self.answer(404, {"error": self.path})

            def answer(self, status, body):
                data = json.dumps(body, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", cmd_port(self.config)), Handler)
        if pidfile:
            Path(pidfile).write_text(f"{os.getpid()}\n")
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        threading.Thread(target=self.schedule, daemon=True).start()
        print(f"stand-in Agent {BEHAVIOUR['version']} running: {len(self.configs)} check configurations, "
              f"{len(self.errors)} errors", flush=True)
        server.serve_forever()


def ask(path: str) -> dict:
    """A request to the running daemon's IPC API, as the real CLI makes it."""
    config = agent_config()
    try:
        token = auth_token_path(config).read_text().strip()
    except OSError as error:
        raise SystemExit(f"Error: unable to read authentication token file: {error}")
    request = urllib.request.Request(f"http://127.0.0.1:{cmd_port(config)}{path}",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())
    except (OSError, urllib.error.URLError) as error:
        raise SystemExit(f"Error: could not reach agent: {error}\nMake sure the agent is running before "
                         "requesting the status and contact support if you continue having issues.")


# ----------------------------------------------------------------------------- the CLI
def status() -> int:
    answer = ask("/agent/status")
    print(f"===============\nAgent (v{answer['version']})\n===============\n")
    print(f"  Status: running\n  PID: {answer['pid']}\n  Hostname: {answer['hostname']}\n")
    print("=========\nCollector\n=========\n\n  Running Checks\n  ==============")
    for key, run in sorted(answer["runs"].items()):
        print(f"    {key}: {'[OK]' if not run['error'] else '[ERROR] ' + run['error'].splitlines()[-1]}")
    return 0


def configcheck() -> int:
    answer = ask("/agent/config-check")
    if answer["errors"]:
        print("=== Configuration errors ===\n")
        for name, error in sorted(answer["errors"].items()):
            print(f"{name}: {error}\n")
    for config in answer["configs"]:
        print(f"=== {config['name']} check ===\nConfiguration provider: file\n"
              f"Configuration source: {config['source']}")
        for instance in config["instances"]:
            print(f"Config for instance ID: {config['name']}:{abs(hash(json.dumps(instance, sort_keys=True))):x}")
            print(yaml.safe_dump(instance, default_flow_style=False).rstrip() + "\n~")
        print("Init Config:\n" + yaml.safe_dump(config["init_config"]).rstrip() + "\n===\n")
    return 0


def check(name: str) -> int:
    configs, errors = check_configs()
    if name in errors:
        print(f"Error: could not load the configuration of {name}: {errors[name]}", file=sys.stderr)
        return 1
    mine = [config for config in configs if config["name"] == name]
    if not mine:
        print(f"Error: no valid check found: {name}", file=sys.stderr)
        return 1
    from datadog_checks.base.stubs import aggregator
    failed = 0
    for config in mine:
        for instance in config["instances"]:
            try:
                error = run_once(name, config, instance)
            except Exception:  # noqa: BLE001
                error = traceback.format_exc()
            if error:
                failed += 1
                print(f"Error: {name} instance failed:\n{error}", file=sys.stderr)
    if check_class(name) is None:
        print(f"{name}: a check that ships with the real Agent; its configuration parsed "
              f"({sum(len(c['instances']) for c in mine)} instances), not run by the stand-in")
    for metric, points in sorted(aggregator._metrics.items()):
        for point in points:
            print(f"metric {metric} {point.value} {sorted(point.tags)}")
    for check_name, points in sorted(aggregator._service_checks.items()):
        for point in points:
            print(f"service_check {check_name} {point.status} {sorted(point.tags)}")
    if failed:
        print(f"Error: there were some errors when running the check {name}", file=sys.stderr)
    return 1 if failed else 0


# ----------------------------------------------------------------------------- JMX checks
def jmx_targets(name: str, init_config: dict) -> dict:
    """bean pattern -> attributes JMXFetch collects for a JMX check: its defaults for the check
    (stand-in.json's jmx_defaults, with collect_default_metrics) and the conf's own includes."""
    targets = {bean: list(attributes) for bean, attributes in BEHAVIOUR.get("jmx_defaults", {}).get(name, {}).items()
               if init_config.get("collect_default_metrics")}
    for entry in init_config.get("conf") or []:
        include = dict(entry.get("include") or {})
        attributes = include.pop("attribute", {})
        domain = include.pop("domain", "*")
        keys = ",".join(f"{key}={value}" for key, value in include.items() if key != "bean")
        targets[f"{domain}:{keys},*" if keys else f"{domain}:*"] = list(attributes)
    return targets


def jmx_list_collected(names: list[str]) -> int:
    """`agent jmx list collected --checks NAME...`, as JMXFetch answers it: each instance of each
    JMX check is connected to over remote JMX (its host, port, user, password) from the JRE of its
    java_bin_path, and every bean and attribute collected is listed, one `Matching:` line each.
    An instance it cannot connect to or log in to is reported in the output only: like the real
    command, it exits 0 whatever it found."""
    configs, errors = check_configs()
    for name in names:
        if name in errors:
            print(f"Error: could not load the configuration of {name}: {errors[name]}")
            continue
        for config in [c for c in configs if c["name"] == name]:
            init_config = config["init_config"]
            if not init_config.get("is_jmx"):
                print(f"{name}: not a JMX check (no is_jmx)")
                continue
            java = init_config.get("java_bin_path") or "java"
            if not os.access(java, os.X_OK):
                print(f"Error: cannot start JMXFetch: {java} is not an executable Java runtime")
                continue
            targets = jmx_targets(name, init_config)
            for instance in config["instances"]:
                print(f"#####\n# Instance: {instance.get('name', name)}\n#####")
                print("\n".join(_jmx_collected(instance, java, targets)))
    return 0


def _jmx_collected(instance: dict, java: str, targets: dict) -> list[str]:
    import subprocess
    from jmxquery import JMXConnection, JMXQuery
    address = f"{instance.get('host')}:{instance.get('port')}"
    connection = JMXConnection(f"service:jmx:rmi:///jndi/rmi://{address}/jmxrmi", instance.get("user"),
                               instance.get("password"), java_path=java)
    queries = [JMXQuery(f"{bean}/{attribute}") for bean, attributes in targets.items() for attribute in attributes]
    try:
        results = connection.query(queries, timeout=60)
    except subprocess.CalledProcessError as error:
        # The client's own report of why (on either stream), on one line.
        reason = " ".join(b"".join(part or b"" for part in (error.stderr, error.stdout)).decode(errors="replace").split())
        return [f"Cannot connect to instance {address}: {reason or error}"]
    collected = sorted({(r.mBeanName, r.attribute, r.value_type) for r in results
                        if isinstance(r.value, (int, float))})
    return [f"       Matching: {n}/350. Bean name: {bean} - Attribute name: {attribute}  - Attribute type: {kind}"
            for n, (bean, attribute, kind) in enumerate(collected, 1)]


def main(argv: list[str]) -> int:
    command = " ".join(argv[1:])
    if argv[1:2] == ["run"]:
        pidfile = argv[argv.index("-p") + 1] if "-p" in argv else ""
        Daemon().serve(pidfile)
        return 0
    if command == "status":
        return status()
    if command == "configcheck":
        return configcheck()
    if argv[1:2] == ["check"] and len(argv) == 3:
        return check(argv[2])
    if command == "version":
        print(f"Agent {BEHAVIOUR['version']} - observability-lab stand-in")
        return 0
    if command in BEHAVIOUR.get("answers", {}):
        print(BEHAVIOUR["answers"][command])
        return 0
    if argv[1:4] == ["jmx", "list", "collected"] and argv[4:5] == ["--checks"]:
        return jmx_list_collected(argv[5:])
    print(f"Error: unknown command {command!r} (stand-in Agent {BEHAVIOUR['version']})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
