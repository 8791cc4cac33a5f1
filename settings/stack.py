"""Every stack setting, declared once (settings/declare.py), read once into typed, immutable sections.

Each section is what one concern needs; a component receives the sections it uses. Defaults
reproduce the hand-made setup in the seed write-up; `Pulumi.<stack>.yaml` overrides them.
All problems are collected and raised together as one `SettingsError` before any resource
is declared. The reference in docs/configuration.md is generated from these declarations
(`make docs`); a test fails when the two differ.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from settings.declare import (PROJECT, Choice, Flag, Integer, Names, Number, OptionalText, Report, Secret,
                              Source, Text, Timezone, declarations, read_section, setting)
from settings.naming import Naming
from settings.slo import SLO_TIMEFRAMES, BurnRate, BurnRateKind, max_burn_rate
from settings.validation import (SettingsError, is_cidr, is_datadog_tag, is_handle, is_hostname,
                                 is_iam_principal_arn, is_whole_internet, non_public_address)

ENVIRONMENTS = ("dev", "staging", "prod")
# Hosts a stack may run (`hostCount`): every host is billed by Datadog, and each one's
# checks multiply the stack's custom metrics.
MAX_HOSTS = 50


@dataclass(frozen=True)
class UbuntuRelease:
    """How Canonical names the server AMIs of one LTS release."""
    codename: str
    # Canonical publishes gp3 images from 24.04 on; 22.04's are under hvm-ssd/.
    image_family: str
    # The image build (serial) a stack gets unless it sets ubuntuImageSerial. Pinned, so
    # a preview is reproducible and a new Canonical build never replaces the host; bump
    # it deliberately (that replaces the host).
    default_serial: str


UBUNTU_RELEASES = {
    "22.04": UbuntuRelease("jammy", "hvm-ssd", "20260731"),
    "24.04": UbuntuRelease("noble", "hvm-ssd-gp3", "20260714"),
}
# Ports where an internet-wide rule is never acceptable (remote shells, databases).
SSH_LIKE_PORTS = frozenset({22, 23, 3389, 5900, 3306, 5432})
# Datadog sites: what `datadog:apiUrl` may point at, and the Agent's `site`.
DATADOG_SITES = (
    "datadoghq.com", "us3.datadoghq.com", "us5.datadoghq.com", "datadoghq.eu",
    "ap1.datadoghq.com", "ap2.datadoghq.com", "ddog-gov.com",
)
_API_URL = r"https://api\.([a-z0-9.\-]+?)/?"
DEFAULT_AGENT_VERSION = "7.77.2"
# Ubuntu's MySQL 8 server; an image of another distribution (amiId) may name it otherwise.
DEFAULT_MYSQL_SERVER_PACKAGE = "mysql-server-8.0"
# Citi Bike NYC's GBFS 2.3 auto-discovery file (MobilityData's systems.csv).
BIKE_SHARE_DEFAULT_FEED = "https://gbfs.citibikenyc.com/gbfs/2.3/gbfs.json"
# Every watched station is 9 custom metrics per host; the check refuses more than this.
BIKE_SHARE_MAX_STATIONS = 50
_STATION_ID = r"[A-Za-z0-9_.:\-]{1,64}"
_NAME = r"[a-z0-9][a-z0-9_.\-]{0,62}"
_NAME_ALLOWED = "must be a non-empty lowercase name (a-z, 0-9, _ . -), at most 63 characters"
_REGION = r"[a-z]{2}(-gov)?-[a-z]+-\d"
_HANDLES = "list of `@handle`"
_HANDLE_ALLOWED = "must be a Datadog notification handle starting with @"


def _is_api_url(url: str) -> bool:
    match = re.fullmatch(_API_URL, url)
    return match is not None and match.group(1) in DATADOG_SITES


@dataclass(frozen=True)
class StackSettings:
    """What the whole stack is: its environment, its service, where it runs and reports."""
    env: str = setting("environment", Choice(ENVIRONMENTS), "",
                       "goes into every name and `env:` tag", default_text="stack name",
                       derive=lambda context: context.stack)
    service: str = setting("service", Text("name", _NAME_ALLOWED, _NAME), "sample-flask-app",
                           "the app's Datadog service name (`service:` tag, APM service)")
    aws_region: str = setting(
        "aws:region", Text("AWS region", "set an AWS region such as us-east-2 (pulumi config set aws:region us-east-2)",
                           _REGION), "", "region of every AWS resource and of the Agent's SSM secret lookup",
        default_text="required",
        required="set an AWS region such as us-east-2 (pulumi config set aws:region us-east-2)")
    datadog_api_url: str = setting(
        "datadog:apiUrl", Text("URL", "must be https://api.<site>/ with site one of " + ", ".join(DATADOG_SITES),
                               accept=_is_api_url),
        "https://api.datadoghq.com/", "Datadog site for the provider and the Agent (`https://api.datadoghq.eu/`, ...)")
    datadog_api_key: Any = setting(
        "datadog:apiKey", Secret(), None, "Datadog API key (`pulumi config set --secret`)", default_text="required",
        required="required; set it with `pulumi config set --secret datadog:apiKey <key>`")
    # Read by the Datadog provider itself, never by the program: declared so that it is checked
    # (held encrypted) and listed like every other setting.
    datadog_app_key: Any = setting(
        "datadog:appKey", Secret(), None, "Datadog application key, read by the Datadog provider itself "
        "(`pulumi config set --secret`; or the provider's `DD_APP_KEY` environment variable)", default_text="none")

    @property
    def datadog_site(self) -> str:
        """The Agent's `site`, from the provider's `datadog:apiUrl`."""
        match = re.fullmatch(_API_URL, self.datadog_api_url)
        return match.group(1) if match else "datadoghq.com"


@dataclass(frozen=True)
class HostSettings:
    """The monitored hosts: how many, their size, image, network and open port."""
    count: int = setting("hostCount", Integer(1, MAX_HOSTS), 1,
                         "how many monitored hosts the stack runs, `observability-lab-<env>-1` to `-<n>`: "
                         "each its own instance, MySQL and Agent (docs/architecture.md: several hosts per stack)")
    instance_type: str = setting("instanceType", Text("EC2 type", "must be an EC2 instance type such as t3.small",
                                                      r"[a-z][a-z0-9\-]*\.[a-z0-9]+"),
                                 "t3.small", "the hosts' instance type")
    root_volume_gib: int = setting("rootVolumeGiB", Integer(8, 1024), 20, "encrypted gp3 root volume size")
    ubuntu_release: str = setting("ubuntuRelease", Choice(tuple(UBUNTU_RELEASES)), "24.04",
                                  "Ubuntu LTS release of the hosts' image (a change replaces every host)")
    ubuntu_image_serial: str = setting(
        "ubuntuImageSerial", Text("Canonical build date, `YYYYMMDD[.N]`",
                                  "must be a Canonical image serial (build date) such as 20260714 or 20260714.1",
                                  r"\d{8}(\.\d{1,2})?"),
        "", "the exact Canonical image build (a change replaces every host)",
        default_text=", ".join(f"`{r.default_serial}` ({name})" for name, r in reversed(UBUNTU_RELEASES.items())),
        derive=lambda context: UBUNTU_RELEASES[context.values["ubuntu_release"]].default_serial)
    ami_id: Optional[str] = setting(
        "amiId", OptionalText("AMI id", "must be an AMI id: ami- followed by 8 or 17 lowercase hex digits",
                              r"ami-([0-9a-f]{8}|[0-9a-f]{17})"),
        None, "pin the hosts' image by id instead; skips the lookup", default_text="none (lookup)")
    subnet_id: Optional[str] = setting(
        "subnetId", OptionalText("subnet id", "must be a subnet id: subnet- followed by 8 or 17 lowercase hex digits",
                                 r"subnet-([0-9a-f]{8}|[0-9a-f]{17})"),
        None, "where the hosts run", default_text="first default-VPC subnet")
    app_port: int = setting("appPort", Integer(1, 65_535), 5050, "the Flask app's port, the only ingress")
    app_allowed_cidrs: tuple[str, ...] = setting(
        "appAllowedCidrs", Names("list of CIDR", is_cidr, "must be a CIDR block such as 203.0.113.0/24 (host bits zero)"),
        (), "who may reach the app port; the whole internet is refused on SSH/RDP/database ports",
        default_text="`[]` (closed)")
    mysql_server_package: str = setting(
        "mysqlServerPackage", Text("Debian package name", "must be a Debian package name such as "
                                   + DEFAULT_MYSQL_SERVER_PACKAGE, r"[a-z0-9][a-z0-9+.\-]+"),
        DEFAULT_MYSQL_SERVER_PACKAGE,
        "the MySQL server package apt installs: the image's (Ubuntu's MySQL 8; an image of another distribution, "
        "through `amiId`, may name it otherwise; the booted-host tests use Debian's `mariadb-server`)")
    # Who runs `pulumi up`/`refresh` on the stack: the only principals besides its hosts that
    # may use the API key's KMS key (through SSM). Empty: whoever runs the program.
    deployer_arns: tuple[str, ...] = setting(
        "deployerArns", Names("list of IAM role/user ARNs", is_iam_principal_arn,
                              "must be the ARN of an IAM role or user, such as arn:aws:iam::123456789012:role/deploy "
                              "(the role itself with its path, not an assumed-role session)"),
        (), "who runs `pulumi up`/`refresh` on the stack: besides its hosts, the only principals the API key's KMS "
            "key lets encrypt and decrypt, through SSM (docs/security.md); set it when more than one principal runs "
            "Pulumi on the stack (CI)", default_text="the identity running the program")

    @property
    def ubuntu_codename(self) -> str:
        return UBUNTU_RELEASES[self.ubuntu_release].codename

    @property
    def ubuntu_image_name(self) -> str:
        """The exact name of Canonical's amd64 server image: the same build in every region."""
        release = UBUNTU_RELEASES[self.ubuntu_release]
        return (f"ubuntu/images/{release.image_family}/ubuntu-{release.codename}-"
                f"{self.ubuntu_release}-amd64-server-{self.ubuntu_image_serial}")

    def check(self, report: Report) -> None:
        if self.app_port in SSH_LIKE_PORTS:
            for cidr in self.app_allowed_cidrs:
                if is_whole_internet(cidr):
                    report.fail(self, "app_allowed_cidrs", cidr,
                                f"{report.key(self, 'app_port')} {self.app_port} is a remote-access/database port; "
                                "it may not be opened to the whole internet")


# What hostCount down and `pulumi destroy` do to a host's data volume (dataVolumeOnDelete).
DATA_VOLUME_ON_DELETE = ("snapshot", "retain", "protect")
# gp3's limits (EC2 User Guide, "Amazon EBS volume types").
GP3_MAX_GIB = 16_384


@dataclass(frozen=True)
class DataSettings:
    """Each host's data volume (MySQL's data) and the stack's daily snapshots of them (docs/data.md)."""
    volume_gib: int = setting("dataVolumeGiB", Integer(1, GP3_MAX_GIB), 20,
                              "each host's encrypted gp3 data volume, MySQL's data; larger grows it in place "
                              "(EBS cannot shrink a volume)")
    on_delete: str = setting("dataVolumeOnDelete", Choice(DATA_VOLUME_ON_DELETE), "snapshot",
                             "what `hostCount` down and `pulumi destroy` do to a data volume: delete it after a "
                             "final snapshot, leave it in AWS (`retain`), or refuse (`protect`)")
    snapshot_retention_days: int = setting("snapshotRetentionDays", Integer(1, 365), 7,
                                           "how long each daily snapshot of the data volumes is kept")


@dataclass(frozen=True)
class AgentSettings:
    """The Datadog Agent on every host: its version, host tags and checks."""
    version: str = setting(
        # >= 7.70: the Agent resolves ENC[] secrets from SSM natively (secret_backend_type).
        "agentVersion", Text("Agent 7 version ≥ 7.70",
                             "must be an exact Agent 7 version >= 7.70.0, such as " + DEFAULT_AGENT_VERSION,
                             r"7\.(7\d|[89]\d|\d{3})\.\d+"),
        DEFAULT_AGENT_VERSION, "exact `datadog-agent` package version installed on the host (held by apt)")
    check_interval_seconds: int = setting("checkIntervalSeconds", Integer(15, 86_400), 45,
                                          "`min_collection_interval` of the `my_metric` check")
    host_tags: tuple[str, ...] = setting(
        "hostTags", Names("list of `key:value`", is_datadog_tag,
                          "must be a Datadog tag key:value (lowercase, starts with a letter, a-z 0-9 _ - . / :)"),
        ("name:cars_app",), "host tags in `datadog.yaml`; `env:<environment>` and `project:observability-lab` are "
                            "added automatically (the stack's monitors and dashboards select its hosts by them)")
    watched_processes: tuple[str, ...] = setting(
        "watchedProcesses", Names("list of names", lambda p: bool(re.fullmatch(r"[a-z0-9_.\-]+", p)),
                                  "must be a process name (a-z, 0-9, _ . -) as in its command line"),
        ("gunicorn", "mysqld"), "process check instances (and the process monitor's groups)")

    def check(self, report: Report) -> None:
        for tag in self.host_tags:
            if tag.startswith("env:"):
                report.fail(self, "host_tags", tag, "env: is set from the stack's environment; remove it")
            elif tag.startswith("project:"):
                report.fail(self, "host_tags", tag,
                            "project: is set by the program (it scopes the stack's monitors); remove it")
        if not self.watched_processes:
            report.fail(self, "watched_processes", [], "must name at least one process")


@dataclass(frozen=True)
class AppSettings:
    """The sample Flask app (userdata/app/)."""
    url_lookup_allowlist: tuple[str, ...] = setting(
        "urlLookupAllowlist",
        Names("list of hostnames", is_hostname,
              "must be a DNS hostname such as example.com (no scheme, port, path or IP address)"),
        ("www.datadoghq.com", "docs.datadoghq.com", "example.com"), "the only hosts the app's `/url_lookup` may fetch")
    setup_overhead_min_ms: int = setting("setupOverheadMinMs", Integer(0, 10_000), 250,
                                         "lower bound of the app's artificial `setup_overhead` delay")
    setup_overhead_max_ms: int = setting("setupOverheadMaxMs", Integer(0, 10_000), 750, "upper bound of that delay")
    # gunicorn reads it from app.env; the app's live process monitor expects it + 1.
    workers: int = setting("appWorkers", Integer(1, 32), 2,
                           "gunicorn workers of the app (`APP_WORKERS` in `app.env`); the app's process monitor "
                           "expects them plus the master")
    # The bounded load on the app from the host itself (userdata/traffic/, app-traffic.service).
    traffic_enabled: bool = setting("appTrafficEnabled", Flag(), False,
                                    "run `app-traffic.service` on every host: a bounded load on the app from the host "
                                    "itself, so its SLOs and graphs have requests to measure; off stops it")
    traffic_requests_per_second: float = setting("appTrafficRequestsPerSecond", Number(0.1, 50), 2.0,
                                                 "the generator's request rate, per host (never exceeded)")
    traffic_url_lookup_percent: float = setting("appTrafficUrlLookupPercent", Number(0, 100), 5.0,
                                                "percent of its requests that call `/url_lookup` on an allowlisted "
                                                "host (the rest hit `/`, `/api/apm` and `/api/trace`)")
    traffic_fail_percent: float = setting("appTrafficFailPercent", Number(0, 100), 0.25,
                                          "percent of its requests to `/api/fail` (a deliberate 500), so the "
                                          "availability SLO has errors to count; below that SLO's error budget")

    def check(self, report: Report) -> None:
        if self.setup_overhead_min_ms > self.setup_overhead_max_ms:
            report.fail(self, "setup_overhead_min_ms", self.setup_overhead_min_ms,
                        f"must not exceed {report.key(self, 'setup_overhead_max_ms')} ({self.setup_overhead_max_ms})")
        if not self.url_lookup_allowlist:
            report.fail(self, "url_lookup_allowlist", [],
                        "must name at least one host (the app refuses to start without)")
        if self.traffic_url_lookup_percent + self.traffic_fail_percent > 100:
            report.fail(self, "traffic_url_lookup_percent", self.traffic_url_lookup_percent,
                        f"with {report.key(self, 'traffic_fail_percent')} ({self.traffic_fail_percent:g}) it must be "
                        "at most 100 (percent of requests)")


@dataclass(frozen=True)
class MonitorSettings:
    """The stack's monitors: who they notify, and their thresholds."""
    notification_handles: tuple[str, ...] = setting(
        "notificationHandles", Names(_HANDLES, is_handle, "must be a Datadog notification handle starting with @ "
                                                          "(e.g. @ops@example.com, @slack-alerts)"),
        ("@sre-team@example.com",), "who every monitor and downtime notifies")
    my_metric_warning: float = setting("myMetricWarning", Number(0, 1000), 500.0,
                                       "my_metric monitor warning threshold (must be below critical)")
    my_metric_critical: float = setting("myMetricCritical", Number(0, 1000), 800.0, "my_metric monitor alert threshold")
    my_metric_window_minutes: int = setting("myMetricWindowMinutes", Integer(1, 1440), 5,
                                            "my_metric monitor evaluation window")
    no_data_minutes: int = setting("noDataMinutes", Integer(2, 1440), 10,
                                   "the my_metric monitor's no-data alert, per host, after this many minutes (the other "
                                   "host monitors do not alert on missing data: docs/datadog.md, Monitors)")
    message_footer: str = setting("monitorMessageFooter", Text("string, ≤ 1000 chars", "must be at most 1000 characters",
                                                               r"(?s).{0,1000}"),
                                  "", "extra text (runbook link, ...) appended to every monitor message",
                                  default_text="empty")
    app_error_logs_per_host: int = setting("appErrorLogsPerHost", Integer(1, 100_000), 10,
                                           "log monitor: alert when a host logs more than this many error lines of "
                                           "the app in 5 minutes")

    def check(self, report: Report) -> None:
        if self.my_metric_warning >= self.my_metric_critical:
            report.fail(self, "my_metric_warning", self.my_metric_warning,
                        f"must be below {report.key(self, 'my_metric_critical')} ({self.my_metric_critical:g}); "
                        "the monitor alerts above them")


@dataclass(frozen=True)
class DowntimeSettings:
    """The my_metric monitor's nights-and-weekends downtimes."""
    enabled: bool = setting("downtimesEnabled", Flag(), True, "create the nights/weekends downtime schedules")
    timezone: str = setting("downtimeTimezone", Timezone(), "America/New_York", "timezone of the downtime schedules")


@dataclass(frozen=True)
class BikeShareSettings:
    """The bike-share workload (userdata/agent/checks.d/bike_share.py and its Datadog objects)."""
    enabled: bool = setting("bikeShareEnabled", Flag(), False,
                            "the bike-share workload: the `bike_share` check on the host, its monitors and dashboard")
    service: str = setting("bikeShareService", Text("name", _NAME_ALLOWED, _NAME), "bike-share",
                           "the `service:` tag of the check's metrics and of the bike-share monitors (not the app's)")
    feed_url: str = setting(
        "bikeShareFeedUrl",
        Text("https URL", "must be an https:// URL of a system's gbfs.json (MobilityData's systems.csv lists them)",
             r"https://[A-Za-z0-9.\-]+(:\d+)?/\S*"),
        BIKE_SHARE_DEFAULT_FEED, "the system's GBFS `gbfs.json` (MobilityData's `systems.csv` lists them); "
                                 "a literal address must be public unicast, and `localhost` is refused",
        default_text=f"Citi Bike NYC's `{BIKE_SHARE_DEFAULT_FEED}`")
    largest_stations: int = setting("bikeShareLargestStations", Integer(1, BIKE_SHARE_MAX_STATIONS), 10,
                                    "watch the N stations of largest capacity (unless `bikeShareStationIds` is set)")
    station_ids: tuple[str, ...] = setting(
        "bikeShareStationIds", Names(f"list of station ids, at most {BIKE_SHARE_MAX_STATIONS}, distinct",
                                     lambda i: bool(re.fullmatch(_STATION_ID, i)),
                                     "must be a GBFS station_id (letters, digits, _ . : -), as in station_information"),
        (), "watch exactly these stations instead (not together with `bikeShareLargestStations`)",
        default_text="none")
    empty_below_bikes: int = setting("bikeShareEmptyBelowBikes", Integer(1, 100), 2,
                                     "a station alerts as empty when it has fewer bikes than this for the whole window")
    full_below_docks: int = setting("bikeShareFullBelowDocks", Integer(1, 100), 2,
                                    "a station alerts as full when it has fewer free docks than this for the whole "
                                    "window")
    window_minutes: int = setting("bikeShareWindowMinutes", Integer(5, 1440), 15,
                                  "how long a station must stay empty or full before it alerts")
    stale_after_minutes: int = setting("bikeShareStaleAfterMinutes", Integer(2, 1440), 15,
                                       "the feed alerts as stale when station_status is older than this")
    check_interval_seconds: int = setting("bikeShareCheckIntervalSeconds", Integer(15, 3600), 60,
                                          "`min_collection_interval` of the `bike_share` check")
    notification_handles: tuple[str, ...] = setting(
        "bikeShareNotificationHandles", Names(_HANDLES, is_handle, _HANDLE_ALLOWED),
        ("@bike-relocation@example.com",), "the relocation team, notified by the bike-share monitors")

    def check(self, report: Report) -> None:
        problem = non_public_address(self.feed_url)
        if problem:
            report.fail(self, "feed_url", self.feed_url, f"{problem}: the check would fetch from inside the host's "
                                                         "own network; name the feed's public host")
        ids = self.station_ids
        if len(ids) > BIKE_SHARE_MAX_STATIONS or len(set(ids)) != len(ids):
            report.fail(self, "station_ids", list(ids),
                        f"must list at most {BIKE_SHARE_MAX_STATIONS} distinct stations: each one is 9 custom metrics")
        if ids and report.is_set(self, "largest_stations"):
            report.fail(self, "largest_stations", report.source.get(report.key(self, "largest_stations")),
                        f"choose one selection: set either {report.key(self, 'station_ids')} or this, not both")
        if not self.notification_handles:
            report.fail(self, "notification_handles", [], "must name at least one handle (the relocation team)")


# Ports the host already uses, which the JVM's JMX may not take: MySQL, the Agent's (IPC, GUI,
# process agent, expvar, DogStatsD, APM), Tomcat's own HTTP connector (8080, the package's).
HOST_PORTS = frozenset({3306, 5000, 5001, 5002, 5012, 6062, 6162, 8080, 8125, 8126})


@dataclass(frozen=True)
class JavaAppSettings:
    """The Java workload (seed section 5): the cars app on Ubuntu's Tomcat, watched through JMX
    (userdata/tomcat/, agent/conf.d/tomcat.d/), and its Datadog objects."""
    enabled: bool = setting("javaAppEnabled", Flag(), False,
                            "the Java workload: Tomcat with the cars app and its pool on the host, the Agent's JMX "
                            "check, its monitors and dashboard; off removes its files and stops `tomcat10`")
    service: str = setting("javaService", Text("name", _NAME_ALLOWED, _NAME), "cars-app",
                           "the `service:` tag of the JVM's metrics (the tomcat check's instance) and its monitors")
    jmx_port: int = setting("javaJmxPort", Integer(1024, 65_535), 9012,
                            "the JVM's remote JMX port (registry and connector), on 127.0.0.1 only")
    heap_max_mib: int = setting("javaHeapMaxMiB", Integer(64, 16_384), 256,
                                "the JVM's maximum heap (`-Xmx`): the heap monitor's 100%")
    pool_max_active: int = setting("javaPoolMaxActive", Integer(1, 100), 8,
                                   "connections the app's pool may open (`maxActive`; the cars MySQL user's "
                                   "`MAX_USER_CONNECTIONS`): the pool monitor's 100%")
    window_minutes: int = setting("javaWindowMinutes", Integer(5, 1440), 10,
                                  "the heap, GC and pool monitors' evaluation window")
    heap_warning_percent: float = setting("javaHeapWarningPercent", Number(1, 100), 80.0,
                                          "heap used over max: warning above this average over the window")
    heap_critical_percent: float = setting("javaHeapCriticalPercent", Number(1, 100), 90.0,
                                           "heap used over max: alert above this average over the window")
    major_gc_warning_ms_per_minute: float = setting(
        "javaMajorGcWarningMsPerMinute", Number(1, 60_000), 1000.0,
        "major (old generation) GC time: warning above this many ms per minute, averaged over the window")
    major_gc_critical_ms_per_minute: float = setting(
        "javaMajorGcCriticalMsPerMinute", Number(1, 60_000), 3000.0,
        "major GC time: alert above this many ms per minute, averaged over the window")
    pool_warning_percent: float = setting("javaPoolWarningPercent", Number(1, 100), 75.0,
                                          "pool connections in use over its max: warning above this for the whole window")
    pool_critical_percent: float = setting("javaPoolCriticalPercent", Number(1, 100), 90.0,
                                           "pool connections in use over its max: alert above this for the whole "
                                           "window (any request waiting for a connection alerts too)")

    def check(self, report: Report) -> None:
        if self.jmx_port in HOST_PORTS:
            report.fail(self, "jmx_port", self.jmx_port,
                        f"is taken on the host (one of {', '.join(map(str, sorted(HOST_PORTS)))}); choose another")
        for warning, critical in (("heap_warning_percent", "heap_critical_percent"),
                                  ("major_gc_warning_ms_per_minute", "major_gc_critical_ms_per_minute"),
                                  ("pool_warning_percent", "pool_critical_percent")):
            if getattr(self, warning) >= getattr(self, critical):
                report.fail(self, warning, getattr(self, warning),
                            f"must be below {report.key(self, critical)} ({getattr(self, critical):g}); "
                            "the monitor warns, then alerts, above them")


@dataclass(frozen=True)
class SloSettings:
    """The app's two SLOs and their multi-window burn-rate alerts (rendering/slos.py; limits: settings/slo.py)."""
    timeframe: str = setting("sloTimeframe", Choice(SLO_TIMEFRAMES), "30d",
                             "the SLOs' rolling timeframe (the burn-rate alerts' `over`)")
    availability_target: float = setting("sloAvailabilityTarget", Number(90, 99.99), 99.5,
                                         "availability SLO: percent of requests that do not fail with a 5xx")
    latency_target: float = setting("sloLatencyTarget", Number(90, 99.99), 99.0,
                                    "latency SLO: percent of 5-minute slices whose p95 is within `sloLatencySeconds`")
    latency_seconds: float = setting("sloLatencySeconds", Number(0.001, 600), 1.0,
                                     "latency SLO: the p95 of `trace.flask.request` a good slice stays within "
                                     "(seconds); replaces the retired p95 monitor's `apmLatencySeconds`")
    page_handles: tuple[str, ...] = setting(
        "sloPageHandles", Names(_HANDLES, is_handle, _HANDLE_ALLOWED),
        ("@sre-oncall@example.com",), "who the fast burns (both page pairs) page")
    ticket_handles: tuple[str, ...] = setting(
        "sloTicketHandles", Names(_HANDLES, is_handle, _HANDLE_ALLOWED),
        ("@sre-team@example.com",), "who the slow burn files a ticket with")
    page_fast: BurnRate = setting("sloPageFastBurn", BurnRateKind(), BurnRate(14.4, 60, 5),
                                  "page when the budget burns this fast over both windows (2% of 30 days in 1 h)")
    page_slow: BurnRate = setting("sloPageSlowBurn", BurnRateKind(), BurnRate(6, 360, 30),
                                  "page when the budget burns this fast over both windows (5% of 30 days in 6 h)")
    ticket: BurnRate = setting("sloTicketBurn", BurnRateKind(), BurnRate(1.5, 2880, 240),
                               "file a ticket on this slow burn; 48 h is the longest window Datadog accepts "
                               "(10% of 30 days in 48 h)")

    @property
    def alerts(self) -> dict[str, tuple[BurnRate, str]]:
        """key -> (burn rate, severity)."""
        return {"pageFast": (self.page_fast, "page"), "pageSlow": (self.page_slow, "page"),
                "ticket": (self.ticket, "ticket")}

    def check(self, report: Report) -> None:
        for field in ("page_handles", "ticket_handles"):
            if not getattr(self, field):
                report.fail(self, field, [], "must name at least one handle")
        # Each alert watches both SLOs: the lower target bounds its rate.
        lowest = min(("availability_target", "latency_target"), key=lambda target: getattr(self, target))
        target = getattr(self, lowest)
        for field in ("page_fast", "page_slow", "ticket"):
            alert: BurnRate = getattr(self, field)
            if alert.rate > max_burn_rate(target):
                report.fail(self, field, str(alert),
                            f"its rate is above {max_burn_rate(target):.4g}, the most an SLO of target {target:g}% "
                            f"({report.key(self, lowest)}) can burn (every request bad): the alert could never fire, "
                            "and Datadog refuses it")


SECTIONS = (StackSettings, HostSettings, DataSettings, AgentSettings, AppSettings, MonitorSettings,
            DowntimeSettings, BikeShareSettings, JavaAppSettings, SloSettings)


@dataclass(frozen=True)
class Settings:
    """The stack's settings, one typed section per concern, and its one naming object."""
    stack_name: str
    stack: StackSettings
    host: HostSettings
    data: DataSettings
    agent: AgentSettings
    app: AppSettings
    monitors: MonitorSettings
    downtimes: DowntimeSettings
    bike_share: BikeShareSettings
    java_app: JavaAppSettings
    slos: SloSettings
    naming: Naming


def naming_for(stack: StackSettings, host: HostSettings) -> Naming:
    return Naming(project=PROJECT, env=stack.env, service=stack.service, hosts=host.count)


# Settings of before that no longer exist: a stack still setting one is told what replaced it.
RETIRED_SETTINGS = {
    f"{PROJECT}:apmLatencySeconds": "retired with the p95 latency monitor (issue 20): the latency SLO replaces it; "
                                    "set sloLatencySeconds (and sloLatencyTarget) instead",
    f"{PROJECT}:apmErrorRatePercent": "retired with the error-rate monitor (issue 20): the availability SLO and its "
                                      "burn-rate alerts replace it; set sloAvailabilityTarget instead",
}


def _check_retired(report: Report) -> None:
    for key, replaced in RETIRED_SETTINGS.items():
        raw = report.source.get(key)
        if raw is not None:
            report.problems.append(f"{key} = {raw!r}: {replaced}")


def _check_unknown(report: Report) -> None:
    """A key of the program's namespace that no section declares (a typo, or a setting of another
    version): Pulumi would hand it over unread, and the stack would silently run on the default."""
    declared = {d.full_key for section in SECTIONS for _, d in declarations(section)} | set(RETIRED_SETTINGS)
    names = {k.removeprefix(f"{PROJECT}:").lower(): k.removeprefix(f"{PROJECT}:")
             for k in declared if k.startswith(f"{PROJECT}:")}
    for key in sorted(k for k in report.source.keys() if k.startswith(f"{PROJECT}:") and k not in declared):
        close = difflib.get_close_matches(key.removeprefix(f"{PROJECT}:").lower(), list(names), n=1, cutoff=0.8)
        hint = f"; did you mean {names[close[0]]}?" if close else ""
        report.problems.append(f"{key} = {report.source.get(key)!r}: not a setting of this program "
                               f"(docs/configuration.md lists them){hint}")


def _check_across(settings: Settings, report: Report) -> None:
    """Rules between sections: JMX off the app's port; the deliberate failures alone must not spend the
    availability SLO's budget."""
    host, java, app, slos = settings.host, settings.java_app, settings.app, settings.slos
    if java.jmx_port == host.app_port:
        report.fail(java, "jmx_port", java.jmx_port, f"is {report.key(host, 'app_port')}; choose another port")
    budget = 100 - slos.availability_target
    if app.traffic_enabled and app.traffic_fail_percent >= budget:
        report.fail(app, "traffic_fail_percent", app.traffic_fail_percent,
                    f"must be below {budget:g} (the error budget of {report.key(slos, 'availability_target')} "
                    f"{slos.availability_target:g}): the deliberate failures alone would spend it and page")


def read_settings(stack: str, source: Source) -> Settings:
    """Read and validate every setting; raise one SettingsError listing all problems."""
    report = Report(stack, source)
    sections: list[Any] = [read_section(section, report) for section in SECTIONS]
    settings = Settings(stack, *sections, naming=naming_for(sections[0], sections[1]))
    _check_across(settings, report)
    _check_retired(report)
    _check_unknown(report)
    if report.problems:
        raise SettingsError(stack, report.problems)
    return settings


class PulumiConfig:
    """The stack's Pulumi config as a settings source (the only reader of `pulumi.Config`)."""

    def __init__(self) -> None:
        import pulumi  # the engine's config; not needed to render from a mapping

        self._config = pulumi.Config

    def _split(self, key: str) -> tuple[Any, str]:
        namespace, name = key.split(":", 1)
        return self._config(namespace), name

    def get(self, key: str) -> Optional[str]:
        config, name = self._split(key)
        return config.get(name)

    def get_secret(self, key: str) -> Any:
        config, name = self._split(key)
        return config.get_secret(name)

    def is_secret(self, key: str) -> bool:
        import pulumi

        # The CLI's language host hands the program the keys it holds encrypted
        # (PULUMI_CONFIG_SECRET_KEYS); the mock engine's config says the same (offline/engine.py).
        return pulumi.runtime.is_config_secret(key)

    def keys(self) -> Iterable[str]:
        # pulumi.Config reads a key from the runtime's map, else PULUMI_CONFIG_<KEY>, else the
        # PULUMI_CONFIG bag: the keys of the map and of the bag are those the stack sets.
        import pulumi

        config = pulumi.runtime.config
        return {*config.CONFIG.get(), *config.get_config_env()}


def load_settings() -> Settings:
    """The settings of the stack being deployed (or evaluated under the mock engine)."""
    import pulumi

    return read_settings(pulumi.get_stack(), PulumiConfig())
