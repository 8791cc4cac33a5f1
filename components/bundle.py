"""The host's configuration bundle: every file under userdata/, rendered for one stack.

`*.tmpl` files are rendered from stack settings with `string.Template`; every other file
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

from components.settings import Settings

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


def template_values(settings: Settings, sources: dict[str, str]) -> dict[str, str]:
    """Everything the *.tmpl files may use, already quoted for their format."""
    return {
        # YAML templates take JSON scalars/lists: valid YAML, no quoting surprises.
        "api_key_ref": json.dumps(f"ENC[{settings.api_key_parameter_name}]"),
        "aws_region": json.dumps(settings.aws_region),
        "site": json.dumps(settings.datadog_site),
        "env": settings.env,
        "host_tags": json.dumps(list(settings.agent.host_tags)),
        "check_interval": str(settings.agent.check_interval_seconds),
        "check_service": json.dumps(settings.service),
        "process_instances": json.dumps([
            {"name": process, "search_string": [process], "exact_match": False}
            for process in settings.monitors.watched_processes]),
        # Shell/systemd env files and the manifest: plain values (validated to need no quoting).
        "agent_version": settings.agent.version,
        "app_user": APP_USER,
        "app_dir": APP_DIR,
        "app_unit": APP_UNIT,
        "service": settings.service,
        "app_version": app_version(sources),
        "app_port": str(settings.host.app_port),
        "app_workers": str(settings.app.workers),
        "root_volume_gib": str(settings.host.root_volume_gib),
        "url_lookup_allowlist": ",".join(settings.app.url_lookup_allowlist),
        "setup_overhead_min_ms": str(settings.app.setup_overhead_min_ms),
        "setup_overhead_max_ms": str(settings.app.setup_overhead_max_ms),
        "bike_share_feed_url": json.dumps(settings.bike_share.feed_url),
        "bike_share_selection": _station_selection(settings),
        "bike_share_interval": str(settings.bike_share.check_interval_seconds),
    }


def _station_selection(settings: Settings) -> str:
    """The check's one selection option, as a YAML key: value line."""
    bike_share = settings.bike_share
    if bike_share.station_ids:
        return f"station_ids: {json.dumps(list(bike_share.station_ids))}"
    return f"largest_stations: {bike_share.largest_stations}"


def enabled_features(settings: Settings) -> set[str]:
    return {"bikeShare"} if settings.bike_share.enabled else set()


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


def render_bundle(settings: Settings) -> Bundle:
    switched_off = {path for feature, paths in FEATURE_FILES.items()
                    if feature not in enabled_features(settings) for path in paths}
    sources = {path: text for path, text in read_sources().items() if path not in switched_off}
    values = template_values(settings, sources)
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
