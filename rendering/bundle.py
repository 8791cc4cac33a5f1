"""The hosts' configuration bundle: every file under userdata/, rendered once for a whole stack.

`*.tmpl` files are rendered from the stack's settings sections (`BundleArgs`) with
`string.Template`: every setting of those sections is `${<section>_<field>}` (and `_json` for
YAML), so a new setting reaches a template with no code here; every other file is taken as
it is. The bundle's digest is the sha256 of the `sha256sum` listing of its
files (sorted by path): one digest names the exact content of every file. On the host a
bundle lives in `/opt/observability-lab/bundles/<digest>/`, and converge.sh refuses a
directory whose files do not hash to its name.

The SSM document of components/configuration.py (rendering/document.py) carries the bundle; both triggers (the first
boot, rendering/first_boot.py, and the SSM association after every change) run its
converge.sh. Pure rendering: no Pulumi here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from string import Template
from typing import Any

from settings.declare import Secret, declarations
from settings.naming import Naming
from settings.stack import (AgentSettings, AppSettings, BikeShareSettings, DataSettings, HostSettings, JavaAppSettings,
                            StackSettings)

USERDATA_DIR = Path(__file__).resolve().parent.parent / "userdata"
BUNDLES_DIR = "/opt/observability-lab/bundles"
APP_DIR = "/opt/sample-flask-app"
APP_USER = "flaskapp"
APP_UNIT = "flask-app.service"
# The Java workload: Ubuntu's tomcat10 (its unit, user and CATALINA_BASE) and the cars app.
CARS_DIR = "/opt/cars-app"
TOMCAT_USER = "tomcat"
# What identifies the Tomcat JVM among the host's java processes (the Agent's JMXFetch is
# one too, under dd-agent): its main class, under its user.
TOMCAT_MAIN_CLASS = "org.apache.catalina.startup.Bootstrap"
# The MBean attributes behind the Java monitors and dashboard (the Agent's metric names in
# the comments): converge.sh checks that the Agent's JMXFetch collects each one.
JMX_COLLECTED = (
    "java.lang:type=Memory/HeapMemoryUsage",               # jvm.heap_memory, jvm.heap_memory_max
    "java.lang:type=GarbageCollector/CollectionTime",      # jvm.gc.major_collection_time (G1 Old)
    "java.lang:type=Threading/ThreadCount",                # jvm.thread_count
    "Catalina:type=ThreadPool/currentThreadsBusy",         # tomcat.threads.busy
    "Catalina:type=GlobalRequestProcessor/requestCount",   # tomcat.request_count
    "Catalina:type=GlobalRequestProcessor/errorCount",     # tomcat.error_count
    "Catalina:type=DataSource/active",                     # tomcat.jdbc.connection_pool.active
    "Catalina:type=DataSource/maxActive",                  # tomcat.jdbc.connection_pool.max_active
    "tomcat.jdbc:type=ConnectionPool/WaitCount",           # tomcat.jdbc.connection_pool.wait_count
)
MANIFEST = "manifest"
# Files converge.sh reads from the bundle itself; every other file must have a manifest line.
BUNDLE_ONLY = frozenset({"converge.sh", "converge.env", MANIFEST})
# The first-boot fetcher travels in the user-data, not in the bundle.
FIRST_BOOT_DIR = "first-boot/"
# Files of a feature that a stack switches on or off: in the bundle only when it is on
# (converge.sh removes a manifest entry's file from the host when the bundle lacks it).
FEATURE_FILES = {
    "bikeShare": ("agent/checks.d/bike_share.py", "agent/conf.d/bike_share.yaml.tmpl"),
    "javaApp": ("tomcat/cars/index.jsp", "tomcat/cars.xml.tmpl", "tomcat/observability-lab.conf.tmpl",
                "tomcat/jmxremote.password", "tomcat/jmxremote.access", "agent/conf.d/tomcat.d/conf.yaml.tmpl",
                "mysql/cars_user.sql.tmpl"),
    "appTraffic": ("traffic/app_traffic.py", "traffic/app-traffic.env.tmpl", "traffic/app-traffic.service.tmpl"),
}


@dataclass(frozen=True)
class Bundle:
    """Bundle-relative path -> content."""

    files: dict[str, str]

    @cached_property
    def digest(self) -> str:
        return sha256(checksums(self.files))

    @property
    def directory(self) -> str:
        """Where the bundle is written on the host."""
        return f"{BUNDLES_DIR}/{self.digest}"

    def manifest(self) -> list[list[str]]:
        """[bundle file, installed at, owner:group, mode, unit] per manifest line."""
        return manifest_entries(self.files[MANIFEST])


def manifest_entries(manifest: str) -> list[list[str]]:
    return [line.split() for line in manifest.splitlines() if line.strip() and not line.startswith("#")]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def checksums(files: dict[str, str]) -> str:
    """What `sha256sum` prints for these files, sorted by path (as `LC_ALL=C sort` would)."""
    return "".join(f"{sha256(files[path])}  {path}\n" for path in sorted(files))


@dataclass(frozen=True)
class BundleArgs:
    """The settings sections the *.tmpl files are rendered from: the same for every host of a stack.

    What differs per host (the Agent's hostname) is filled in on the host by converge.sh,
    so one bundle, one document and one association serve the whole stack.
    """
    naming: Naming
    stack: StackSettings
    host: HostSettings
    data: DataSettings             # converge.sh learns the data volume's size (and grows into it)
    agent: AgentSettings
    app: AppSettings
    bike_share: BikeShareSettings  # its files are in the bundle only when it is enabled
    java_app: JavaAppSettings      # likewise

    def sections(self) -> dict[str, Any]:
        """Each section by the prefix of its template values."""
        return {"stack": self.stack, "host": self.host, "data": self.data, "agent": self.agent, "app": self.app,
                "bike_share": self.bike_share, "java": self.java_app}


def bundle_args(settings: Any) -> BundleArgs:
    """The sections of a stack's settings (settings.stack.Settings, whose fields BundleArgs's are
    named after) the bundle is rendered from."""
    return BundleArgs(**{field.name: getattr(settings, field.name) for field in dataclasses.fields(BundleArgs)})


def setting_values(prefix: str, section: Any) -> dict[str, str]:
    """`${<prefix>_<field>}` (plain text: env files, the manifest) and `${<prefix>_<field>_json}`
    (a JSON scalar or list: valid YAML, no quoting surprises) for every setting of a section.
    Secrets never reach a template."""
    values = {}
    for name, declared in declarations(type(section)):
        if isinstance(declared.kind, Secret):
            continue
        value = getattr(section, name)
        data = list(value) if isinstance(value, tuple) else value
        values[f"{prefix}_{name}_json"] = json.dumps(data)
        values[f"{prefix}_{name}"] = (",".join(value) if isinstance(value, tuple) else
                                      "" if value is None else json.dumps(value) if isinstance(value, bool) else
                                      str(value))
    return values


def template_values(args: BundleArgs, sources: dict[str, str]) -> dict[str, str]:
    """Everything the *.tmpl files may use: every setting of the sections (setting_values), and
    what the program derives from them."""
    values: dict[str, str] = {}
    for prefix, section in args.sections().items():
        values.update(setting_values(prefix, section))
    values.update({
        "api_key_ref": json.dumps(f"ENC[{args.naming.api_key_parameter}]"),
        "site_json": json.dumps(args.stack.datadog_site),
        # The Agent's host tags: the stack's own ones, which its Datadog objects select by, last.
        "host_tags_json": json.dumps([*args.agent.host_tags, *args.naming.stack_host_tags]),
        "process_instances_json": json.dumps(process_instances(args)),
        "app_user": APP_USER,
        "app_dir": APP_DIR,
        "app_unit": APP_UNIT,
        "cars_dir": CARS_DIR,
        # converge.sh: whether the Java workload is on, and what the Agent must collect from it.
        "java_app": "on" if args.java_app.enabled else "off",
        "jmx_port": str(args.java_app.jmx_port) if args.java_app.enabled else "",
        "jmx_collected": " ".join(JMX_COLLECTED) if args.java_app.enabled else "",
        "app_version": app_version(sources),
        "bike_share_selection": _station_selection(args.bike_share),
    })
    return values


def process_instances(args: BundleArgs) -> list[dict[str, Any]]:
    """The process check's instances: each watched process by name, and (the Java workload
    on) the Tomcat JVM by its main class under its user."""
    instances: list[dict[str, Any]] = [{"name": process, "search_string": [process], "exact_match": False}
                                       for process in args.agent.watched_processes]
    if args.java_app.enabled:
        instances.append({"name": "tomcat", "search_string": [re.escape(TOMCAT_MAIN_CLASS)],
                          "exact_match": False, "user": TOMCAT_USER})
    return instances


def _station_selection(check: BikeShareSettings) -> str:
    """The check's one selection option, as a YAML key: value line."""
    if check.station_ids:
        return f"station_ids: {json.dumps(list(check.station_ids))}"
    return f"largest_stations: {check.largest_stations}"


def enabled_features(args: BundleArgs) -> set[str]:
    return {feature for feature, on in (("bikeShare", args.bike_share.enabled), ("javaApp", args.java_app.enabled),
                                        ("appTraffic", args.app.traffic_enabled))
            if on}


def app_version(sources: dict[str, str]) -> str:
    """DD_VERSION: a digest of the app's code, so every code change is a new version."""
    digest = hashlib.sha256()
    for relative in sorted(sources):
        if relative.startswith("app/") and relative.endswith((".py", "requirements.txt")):
            digest.update(sources[relative].encode())
    return digest.hexdigest()[:12]


def read_sources() -> dict[str, str]:
    """Every file of the bundle under userdata/ (relative path -> text), read once per rendering."""
    return {relative: path.read_text()
            for path in sorted(USERDATA_DIR.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
            and not (relative := path.relative_to(USERDATA_DIR).as_posix()).startswith(FIRST_BOOT_DIR)}


# Shipped without their comment-only lines: converge.sh's comments are a third of it, and the
# SSM document that carries the bundle is near SSM's size limit. The repo's copy is the one to
# read; tests/program/test_bundle.py checks bash reads the same functions and variables from both.
SHIPPED_WITHOUT_COMMENTS = frozenset({"converge.sh"})


def without_comment_lines(script: str) -> str:
    """A shell script without the lines that hold only a comment (its first line, the shebang, kept)."""
    first, *rest = script.split("\n")
    return "\n".join([first, *(line for line in rest if not line.lstrip().startswith("#"))])


def render_bundle(args: BundleArgs) -> Bundle:
    switched_off = {path for feature, paths in FEATURE_FILES.items()
                    if feature not in enabled_features(args) for path in paths}
    sources = {path: text for path, text in read_sources().items() if path not in switched_off}
    values = template_values(args, sources)
    files: dict[str, str] = {}
    for relative, content in sources.items():
        if relative.endswith(".tmpl"):
            relative = relative[: -len(".tmpl")]
            content = Template(content).substitute(values)
        files[relative] = without_comment_lines(content) if relative in SHIPPED_WITHOUT_COMMENTS else content
    _check(files)
    return Bundle(files)


def _check(files: dict[str, str]) -> None:
    """Refuse a bundle converge.sh could not install as a whole."""
    entries = manifest_entries(files.get(MANIFEST, ""))
    problems = [f"userdata/manifest.tmpl: line {' '.join(entry)!r} needs 5 fields"
                 for entry in entries if len(entry) != 5]
    mapped = {entry[0] for entry in entries}
    problems += [f"userdata/{path}: has no line in userdata/manifest.tmpl, so converge.sh would not install it"
                 for path in sorted(set(files) - mapped - BUNDLE_ONLY)]
    if problems:
        raise ValueError("the configuration bundle cannot be installed:\n  " + "\n  ".join(problems))
