"""The hosts' configuration bundle: every file under userdata/, rendered once for a whole stack.

`*.tmpl` files are rendered from the stack's `BundleArgs` with `string.Template`; every other file
is taken as it is. The bundle's digest is the sha256 of the `sha256sum` listing of its
files (sorted by path): one digest names the exact content of every file. On the host a
bundle lives in `/opt/observability-lab/bundles/<digest>/`, and converge.sh refuses a
directory whose files do not hash to its name.

The SSM document of components/converge.py carries the bundle; both triggers (the first
boot, components/bootstrap.py, and the SSM association after every change) run its
converge.sh. Pure rendering: no Pulumi resources here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from string import Template
from typing import Optional

USERDATA_DIR = Path(__file__).resolve().parent.parent / "userdata"
BUNDLES_DIR = "/opt/observability-lab/bundles"
APP_DIR = "/opt/sample-flask-app"
APP_USER = "flaskapp"
APP_UNIT = "flask-app.service"
MANIFEST = "manifest"
# Files converge.sh reads from the bundle itself; every other file must have a manifest line.
BUNDLE_ONLY = frozenset({"converge.sh", "converge.env", MANIFEST})
# The first-boot fetcher travels in the user-data, not in the bundle.
FIRST_BOOT_DIR = "first-boot/"
# Files of a feature that a stack switches on or off: in the bundle only when it is on
# (converge.sh removes a manifest entry's file from the host when the bundle lacks it).
FEATURE_FILES = {
    "bikeShare": ("agent/checks.d/bike_share.py", "agent/conf.d/bike_share.yaml.tmpl"),
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
class BikeShareCheck:
    """The `bike_share` check's instance (agent/conf.d/bike_share.yaml.tmpl)."""
    feed_url: str
    station_ids: tuple[str, ...]  # an explicit selection; else the largest stations
    largest_stations: int
    check_interval_seconds: int


@dataclass(frozen=True)
class BundleArgs:
    """Everything the *.tmpl files are rendered from: the same for every host of a stack.

    What differs per host (the Agent's hostname) is filled in on the host by converge.sh,
    so one bundle, one document and one association serve the whole stack.
    """
    env: str
    service: str
    aws_region: str
    datadog_site: str
    api_key_parameter_name: str
    agent_version: str
    host_tags: tuple[str, ...]
    check_interval_seconds: int
    watched_processes: tuple[str, ...]
    app_port: int
    app_workers: int
    url_lookup_allowlist: tuple[str, ...]
    setup_overhead_min_ms: int
    setup_overhead_max_ms: int
    root_volume_gib: int
    bike_share: Optional[BikeShareCheck]  # None: the check is not shipped
    traffic: Optional["AppTraffic"] = None  # None: no traffic generator on the host


@dataclass(frozen=True)
class AppTraffic:
    """The traffic generator's settings (userdata/traffic/app-traffic.env.tmpl)."""
    requests_per_second: float
    url_lookup_percent: float
    fail_percent: float


def template_values(args: BundleArgs, sources: dict[str, str]) -> dict[str, str]:
    """Everything the *.tmpl files may use, already quoted for their format."""
    values = {
        # YAML templates take JSON scalars/lists: valid YAML, no quoting surprises.
        "api_key_ref": json.dumps(f"ENC[{args.api_key_parameter_name}]"),
        "aws_region": json.dumps(args.aws_region),
        "site": json.dumps(args.datadog_site),
        "env": args.env,
        "host_tags": json.dumps(list(args.host_tags)),
        "check_interval": str(args.check_interval_seconds),
        "check_service": json.dumps(args.service),
        "process_instances": json.dumps([
            {"name": process, "search_string": [process], "exact_match": False}
            for process in args.watched_processes]),
        # Shell/systemd env files and the manifest: plain values (validated to need no quoting).
        "agent_version": args.agent_version,
        "app_user": APP_USER,
        "app_dir": APP_DIR,
        "app_unit": APP_UNIT,
        "service": args.service,
        "app_version": app_version(sources),
        "app_port": str(args.app_port),
        "app_workers": str(args.app_workers),
        "root_volume_gib": str(args.root_volume_gib),
        "url_lookup_allowlist": ",".join(args.url_lookup_allowlist),
        "setup_overhead_min_ms": str(args.setup_overhead_min_ms),
        "setup_overhead_max_ms": str(args.setup_overhead_max_ms),
    }
    if args.traffic is not None:  # its templates are in the bundle only then
        values.update({
            "stack_service": args.service, "host_app_port": str(args.app_port),
            "app_url_lookup_allowlist": ",".join(args.url_lookup_allowlist),
            "app_traffic_requests_per_second": f"{args.traffic.requests_per_second:g}",
            "app_traffic_url_lookup_percent": f"{args.traffic.url_lookup_percent:g}",
            "app_traffic_fail_percent": f"{args.traffic.fail_percent:g}",
        })
    if args.bike_share is not None:  # its template is in the bundle only then
        values.update({
            "bike_share_feed_url": json.dumps(args.bike_share.feed_url),
            "bike_share_selection": _station_selection(args.bike_share),
            "bike_share_interval": str(args.bike_share.check_interval_seconds),
        })
    return values


def _station_selection(check: BikeShareCheck) -> str:
    """The check's one selection option, as a YAML key: value line."""
    if check.station_ids:
        return f"station_ids: {json.dumps(list(check.station_ids))}"
    return f"largest_stations: {check.largest_stations}"


def enabled_features(args: BundleArgs) -> set[str]:
    return ({"bikeShare"} if args.bike_share is not None else set()) | (
        {"appTraffic"} if args.traffic is not None else set())


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
        files[relative] = content
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
