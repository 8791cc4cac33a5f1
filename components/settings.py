"""Every stack setting, read once from Pulumi config into typed, immutable objects.

This is the only module that reads `pulumi.Config`. Defaults reproduce the
hand-made setup in the seed write-up; `Pulumi.<stack>.yaml` overrides them.
All problems are collected and raised together as one `SettingsError`
before any resource is declared.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from typing import Optional

import pulumi

from components.slo_settings import SLO_TIMEFRAMES, BurnRate, SloSettings, max_burn_rate, parse_burn_rate
from components.validation import (
    ConfigReader,
    SettingsError,
    is_cidr,
    is_datadog_tag,
    is_handle,
    is_hostname,
    is_iam_principal_arn,
    is_whole_internet,
)

PROJECT = "observability-lab"
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
DEFAULT_AGENT_VERSION = "7.77.2"
# Citi Bike NYC's GBFS 2.3 auto-discovery file (MobilityData's systems.csv).
BIKE_SHARE_DEFAULT_FEED = "https://gbfs.citibikenyc.com/gbfs/2.3/gbfs.json"
# Every watched station is 9 custom metrics per host; the check refuses more than this.
BIKE_SHARE_MAX_STATIONS = 50
_STATION_ID = r"[A-Za-z0-9_.:\-]{1,64}"
_NAME = r"[a-z0-9][a-z0-9_.\-]{0,62}"
_REGION = r"[a-z]{2}(-gov)?-[a-z]+-\d"


@dataclass(frozen=True)
class HostSettings:
    count: int  # hostCount: hosts 1..count, each its own instance, MySQL and Agent
    instance_type: str
    root_volume_gib: int
    ubuntu_release: str
    ubuntu_image_serial: str
    ami_id: Optional[str]
    subnet_id: Optional[str]
    app_port: int
    app_allowed_cidrs: tuple[str, ...]
    # Who runs `pulumi up`/`refresh` on the stack: the only principals besides its hosts that
    # may use the API key's KMS key (through SSM). Empty: whoever runs the program.
    deployer_arns: tuple[str, ...]

    @property
    def ubuntu_codename(self) -> str:
        return UBUNTU_RELEASES[self.ubuntu_release].codename

    @property
    def ubuntu_image_name(self) -> str:
        """The exact name of Canonical's amd64 server image: the same build in every region."""
        release = UBUNTU_RELEASES[self.ubuntu_release]
        return (f"ubuntu/images/{release.image_family}/ubuntu-{release.codename}-"
                f"{self.ubuntu_release}-amd64-server-{self.ubuntu_image_serial}")


@dataclass(frozen=True)
class AgentSettings:
    version: str
    check_interval_seconds: int
    host_tags: tuple[str, ...]


@dataclass(frozen=True)
class AppSettings:
    url_lookup_allowlist: tuple[str, ...]
    setup_overhead_min_ms: int
    setup_overhead_max_ms: int
    workers: int
    # The bounded load on the app from the host itself (userdata/traffic/).
    traffic_enabled: bool = False
    traffic_requests_per_second: float = 2.0
    traffic_url_lookup_percent: float = 5.0
    traffic_fail_percent: float = 0.25


@dataclass(frozen=True)
class MonitorSettings:
    notification_handles: tuple[str, ...]
    my_metric_warning: float
    my_metric_critical: float
    my_metric_window_minutes: int
    no_data_minutes: int
    watched_processes: tuple[str, ...]
    message_footer: str
    # The log monitor: app error lines per host over 5 minutes above this.
    app_error_logs_per_host: int = 10


@dataclass(frozen=True)
class BikeShareSettings:
    """The bike-share workload (userdata/agent/checks.d/bike_share.py and its Datadog objects)."""
    enabled: bool
    feed_url: str
    station_ids: tuple[str, ...]  # an explicit selection; else the largest stations
    largest_stations: int
    empty_below_bikes: int
    full_below_docks: int
    window_minutes: int
    stale_after_minutes: int
    check_interval_seconds: int
    notification_handles: tuple[str, ...]


@dataclass(frozen=True)
class DowntimeSettings:
    enabled: bool
    timezone: str


@dataclass(frozen=True)
class Settings:
    project: str
    stack: str
    env: str
    service: str
    aws_region: str
    datadog_site: str
    datadog_api_key: pulumi.Output[str]
    host: HostSettings
    agent: AgentSettings
    app: AppSettings
    monitors: MonitorSettings
    downtimes: DowntimeSettings
    bike_share: BikeShareSettings
    slos: SloSettings

    def datadog_hostname(self, index: int) -> str:
        """Host `index`'s name in Datadog (1-based), known before its instance exists."""
        return f"{self.project}-{self.env}-{index}"

    @property
    def datadog_hostnames(self) -> tuple[str, ...]:
        return tuple(self.datadog_hostname(n) for n in range(1, self.host.count + 1))

    @property
    def stack_host_tags(self) -> tuple[str, ...]:
        """Host tags the Agent adds on every host of the stack: what scopes its Datadog
        objects to its own hosts (another project's hosts in the same env never match)."""
        return stack_host_tags(self.env)

    @property
    def api_key_parameter_name(self) -> str:
        """SSM path of the Datadog API key; the Agent resolves it at boot."""
        return f"/{self.project}/{self.env}/datadog/api_key"

    @property
    def api_key_kms_alias(self) -> str:
        """The alias of the stack's own KMS key that encrypts the API key parameter."""
        return f"alias/{self.name_prefix}-datadog-api-key"

    @property
    def standard_tags(self) -> tuple[str, ...]:
        """Tags carried by every Datadog object this program owns."""
        return (f"env:{self.env}", f"service:{self.service}", "managed-by:pulumi")

    @property
    def aws_tags(self) -> dict[str, str]:
        """Tags carried by every AWS resource this program owns."""
        return {"env": self.env, "service": self.service,
                "managed-by": "pulumi", "project": self.project}

    @property
    def config_parameter_name(self) -> str:
        """SSM path naming the document with the host's current configuration bundle."""
        return f"/{self.project}/{self.env}/host-config/document"

    @property
    def config_document_prefix(self) -> str:
        """What the names of the stack's configuration documents start with (then `-<id>`)."""
        return self.name("host-config")

    @property
    def fleet_tag(self) -> tuple[str, str]:
        """The EC2 tag that marks this stack's hosts, for people and tools. Nothing trusts it:
        anyone may tag an instance, so the SSM association names the instances by id."""
        return ("fleet", f"{self.project}-{self.env}")

    @property
    def name_prefix(self) -> str:
        """What every environment-scoped name starts with, so dev and prod never collide."""
        return f"{self.project}-{self.env}"

    def name(self, suffix: str) -> str:
        return f"{self.name_prefix}-{suffix}"


def stack_host_tags(env: str) -> tuple[str, ...]:
    return (f"env:{env}", f"project:{PROJECT}")


def load_settings() -> Settings:
    """Read and validate every setting; raise one SettingsError listing all problems."""
    stack = pulumi.get_stack()
    datadog_config = pulumi.Config("datadog")
    cfg = ConfigReader(PROJECT, pulumi.Config(PROJECT).get)
    aws = ConfigReader("aws", pulumi.Config("aws").get)
    datadog = ConfigReader("datadog", datadog_config.get)

    env = cfg.choice("environment", stack, ENVIRONMENTS)
    service = cfg.string("service", "sample-flask-app", _NAME,
                         "must be a non-empty lowercase name (a-z, 0-9, _ . -), at most 63 characters")
    host = _host_settings(cfg)
    agent = AgentSettings(
        version=_agent_version(cfg),
        check_interval_seconds=cfg.integer("checkIntervalSeconds", 45, 15, 86_400),
        host_tags=_host_tags(cfg, stack_host_tags(env)),
    )
    app = _app_settings(cfg)
    monitors = _monitor_settings(cfg)
    downtimes = DowntimeSettings(
        enabled=cfg.boolean("downtimesEnabled", True),
        timezone=_timezone(cfg, "downtimeTimezone", "America/New_York"),
    )
    bike_share = _bike_share_settings(cfg)
    slos = _slo_settings(cfg)
    _check_traffic_against_budget(cfg, app, slos)
    region = aws.raw("region")
    if region is None or not re.fullmatch(_REGION, region):
        aws.fail("region", region, "set an AWS region such as us-east-2 (pulumi config set aws:region us-east-2)")
    site = _datadog_site(datadog)
    if datadog_config.get_secret("apiKey") is None:
        datadog.fail("apiKey", None, "required; set it with `pulumi config set --secret datadog:apiKey <key>`")

    problems = cfg.problems + aws.problems + datadog.problems
    if problems:
        raise SettingsError(stack, problems)
    return Settings(
        project=PROJECT, stack=stack, env=env, service=service,
        aws_region=region or "", datadog_site=site,
        datadog_api_key=datadog_config.require_secret("apiKey"),
        host=host, agent=agent, app=app, monitors=monitors, downtimes=downtimes, bike_share=bike_share, slos=slos,
    )


def _host_settings(cfg: ConfigReader) -> HostSettings:
    release = cfg.choice("ubuntuRelease", "24.04", tuple(UBUNTU_RELEASES))
    app_port = cfg.integer("appPort", 5050, 1, 65_535)
    cidrs = cfg.string_list("appAllowedCidrs", (), is_cidr,
                            "must be a CIDR block such as 203.0.113.0/24 (host bits zero)")
    if app_port in SSH_LIKE_PORTS:
        for cidr in cidrs:
            if is_whole_internet(cidr):
                cfg.fail("appAllowedCidrs", cidr,
                         f"{cfg.key('appPort')} {app_port} is a remote-access/database port; "
                         "it may not be opened to the whole internet")
    return HostSettings(
        count=cfg.integer("hostCount", 1, 1, MAX_HOSTS),
        instance_type=cfg.string("instanceType", "t3.small", r"[a-z][a-z0-9\-]*\.[a-z0-9]+",
                                 "must be an EC2 instance type such as t3.small"),
        root_volume_gib=cfg.integer("rootVolumeGiB", 20, 8, 1024),
        ubuntu_release=release,
        ubuntu_image_serial=cfg.string(
            "ubuntuImageSerial", UBUNTU_RELEASES[release].default_serial, r"\d{8}(\.\d{1,2})?",
            "must be a Canonical image serial (build date) such as 20260714 or 20260714.1"),
        ami_id=cfg.optional("amiId", r"ami-([0-9a-f]{8}|[0-9a-f]{17})",
                            "must be an AMI id: ami- followed by 8 or 17 lowercase hex digits"),
        subnet_id=cfg.optional("subnetId", r"subnet-([0-9a-f]{8}|[0-9a-f]{17})",
                               "must be a subnet id: subnet- followed by 8 or 17 lowercase hex digits"),
        app_port=app_port,
        app_allowed_cidrs=cidrs,
        deployer_arns=cfg.string_list(
            "deployerArns", (), is_iam_principal_arn,
            "must be the ARN of an IAM role or user, such as arn:aws:iam::123456789012:role/deploy "
            "(the role itself with its path, not an assumed-role session)"),
    )


def _host_tags(cfg: ConfigReader, stack_tags: tuple[str, ...]) -> tuple[str, ...]:
    tags = cfg.string_list("hostTags", ("name:cars_app",), is_datadog_tag,
                           "must be a Datadog tag key:value (lowercase, starts with a letter, a-z 0-9 _ - . / :)")
    for tag in tags:
        if tag.startswith("env:"):
            cfg.fail("hostTags", tag, "env: is set from the stack's environment; remove it")
        elif tag.startswith("project:"):
            cfg.fail("hostTags", tag, "project: is set by the program (it scopes the stack's monitors); remove it")
    return tuple(tags) + stack_tags


def _agent_version(cfg: ConfigReader) -> str:
    # >= 7.70: the Agent resolves ENC[] secrets from SSM natively (secret_backend_type).
    return cfg.string("agentVersion", DEFAULT_AGENT_VERSION, r"7\.(7\d|[89]\d|\d{3})\.\d+",
                      "must be an exact Agent 7 version >= 7.70.0, such as " + DEFAULT_AGENT_VERSION)


def _app_settings(cfg: ConfigReader) -> AppSettings:
    low = cfg.integer("setupOverheadMinMs", 250, 0, 10_000)
    high = cfg.integer("setupOverheadMaxMs", 750, 0, 10_000)
    if low > high:
        cfg.fail("setupOverheadMinMs", low,
                 f"must not exceed {cfg.key('setupOverheadMaxMs')} ({high})")
    allowlist = cfg.string_list(
        "urlLookupAllowlist", ("www.datadoghq.com", "docs.datadoghq.com", "example.com"),
        is_hostname, "must be a DNS hostname such as example.com (no scheme, port, path or IP address)")
    if not allowlist:
        cfg.fail("urlLookupAllowlist", [], "must name at least one host (the app refuses to start without)")
    lookups = cfg.decimal("appTrafficUrlLookupPercent", 5.0, 0, 100)
    failures = cfg.decimal("appTrafficFailPercent", 0.25, 0, 100)
    if lookups + failures > 100:
        cfg.fail("appTrafficUrlLookupPercent", lookups,
                 f"with {cfg.key('appTrafficFailPercent')} ({failures:g}) it must be at most 100 (percent of requests)")
    return AppSettings(
        url_lookup_allowlist=allowlist,
        setup_overhead_min_ms=low,
        setup_overhead_max_ms=high,
        # gunicorn reads it from app.env; the app's live process monitor expects it + 1.
        workers=cfg.integer("appWorkers", 2, 1, 32),
        traffic_enabled=cfg.boolean("appTrafficEnabled", False),
        traffic_requests_per_second=cfg.decimal("appTrafficRequestsPerSecond", 2.0, 0.1, 50),
        traffic_url_lookup_percent=lookups,
        traffic_fail_percent=failures,
    )


def _monitor_settings(cfg: ConfigReader) -> MonitorSettings:
    warning = cfg.decimal("myMetricWarning", 500.0, 0, 1000)
    critical = cfg.decimal("myMetricCritical", 800.0, 0, 1000)
    if warning >= critical:
        cfg.fail("myMetricWarning", warning,
                 f"must be below observability-lab:myMetricCritical ({critical:g}); the monitor alerts above them")
    return MonitorSettings(
        notification_handles=cfg.string_list(
            "notificationHandles", ("@sre-team@example.com",), is_handle,
            "must be a Datadog notification handle starting with @ (e.g. @ops@example.com, @slack-alerts)"),
        my_metric_warning=warning,
        my_metric_critical=critical,
        my_metric_window_minutes=cfg.integer("myMetricWindowMinutes", 5, 1, 1440),
        no_data_minutes=cfg.integer("noDataMinutes", 10, 2, 1440),
        watched_processes=_watched_processes(cfg),
        message_footer=cfg.string("monitorMessageFooter", "", r"(?s).{0,1000}",
                                  "must be at most 1000 characters"),
        app_error_logs_per_host=cfg.integer("appErrorLogsPerHost", 10, 1, 100_000),
    )


def _slo_settings(cfg: ConfigReader) -> SloSettings:
    def handles(name: str, default: str) -> tuple[str, ...]:
        found = cfg.string_list(name, (default,), is_handle, "must be a Datadog notification handle starting with @")
        if not found:
            cfg.fail(name, [], "must name at least one handle")
        return found

    def burn(name: str, default: str) -> BurnRate:
        raw = cfg.raw(name) or default
        try:
            return parse_burn_rate(raw)
        except ValueError as problem:
            cfg.fail(name, raw, str(problem))
            return parse_burn_rate(default)

    slos = SloSettings(
        timeframe=cfg.choice("sloTimeframe", "30d", SLO_TIMEFRAMES),
        availability_target=cfg.decimal("sloAvailabilityTarget", 99.5, 90, 99.99),
        latency_target=cfg.decimal("sloLatencyTarget", 99.0, 90, 99.99),
        latency_seconds=cfg.decimal("sloLatencySeconds", 1.0, 0.001, 600),
        page_handles=handles("sloPageHandles", "@sre-oncall@example.com"),
        ticket_handles=handles("sloTicketHandles", "@sre-team@example.com"),
        page_fast=burn("sloPageFastBurn", "14.4x 1h/5m"),
        page_slow=burn("sloPageSlowBurn", "6x 6h/30m"),
        ticket=burn("sloTicketBurn", "1.5x 48h/4h"),
    )
    lowest = min(slos.availability_target, slos.latency_target)
    for name, (alert, _) in zip(("sloPageFastBurn", "sloPageSlowBurn", "sloTicketBurn"), slos.alerts.values()):
        if alert.rate > max_burn_rate(lowest):
            cfg.fail(name, cfg.raw(name) or f"{alert.rate:g}x",
                     f"its rate is above {max_burn_rate(lowest):.4g}, the most an SLO of target {lowest:g}% can "
                     "burn (every request bad): the alert could never fire, and Datadog refuses it")
    return slos


def _check_traffic_against_budget(cfg: ConfigReader, app: AppSettings, slos: SloSettings) -> None:
    """The deliberate failures alone must not spend the availability SLO's budget."""
    budget = 100 - slos.availability_target
    if app.traffic_enabled and app.traffic_fail_percent >= budget:
        cfg.fail("appTrafficFailPercent", app.traffic_fail_percent,
                 f"must be below {budget:g} (the error budget of {cfg.key('sloAvailabilityTarget')} "
                 f"{slos.availability_target:g}): the deliberate failures alone would spend it and page")


def _watched_processes(cfg: ConfigReader) -> tuple[str, ...]:
    processes = cfg.string_list("watchedProcesses", ("gunicorn", "mysqld"),
                                lambda p: bool(re.fullmatch(r"[a-z0-9_.\-]+", p)),
                                "must be a process name (a-z, 0-9, _ . -) as in its command line")
    if not processes:
        cfg.fail("watchedProcesses", [], "must name at least one process")
    return processes


def _bike_share_settings(cfg: ConfigReader) -> BikeShareSettings:
    station_ids = cfg.string_list("bikeShareStationIds", (), lambda i: bool(re.fullmatch(_STATION_ID, i)),
                                  "must be a GBFS station_id (letters, digits, _ . : -), as in station_information")
    if len(station_ids) > BIKE_SHARE_MAX_STATIONS or len(set(station_ids)) != len(station_ids):
        cfg.fail("bikeShareStationIds", list(station_ids),
                 f"must list at most {BIKE_SHARE_MAX_STATIONS} distinct stations: each one is 9 custom metrics")
    if station_ids and cfg.raw("bikeShareLargestStations") is not None:
        cfg.fail("bikeShareLargestStations", cfg.raw("bikeShareLargestStations"),
                 f"choose one selection: set either {cfg.key('bikeShareStationIds')} or this, not both")
    handles = cfg.string_list("bikeShareNotificationHandles", ("@bike-relocation@example.com",), is_handle,
                              "must be a Datadog notification handle starting with @")
    if not handles:
        cfg.fail("bikeShareNotificationHandles", [], "must name at least one handle (the relocation team)")
    return BikeShareSettings(
        enabled=cfg.boolean("bikeShareEnabled", False),
        feed_url=cfg.string("bikeShareFeedUrl", BIKE_SHARE_DEFAULT_FEED, r"https://[A-Za-z0-9.\-]+(:\d+)?/\S*",
                            "must be an https:// URL of a system's gbfs.json (MobilityData's systems.csv lists them)"),
        station_ids=station_ids,
        largest_stations=cfg.integer("bikeShareLargestStations", 10, 1, BIKE_SHARE_MAX_STATIONS),
        empty_below_bikes=cfg.integer("bikeShareEmptyBelowBikes", 2, 1, 100),
        full_below_docks=cfg.integer("bikeShareFullBelowDocks", 2, 1, 100),
        window_minutes=cfg.integer("bikeShareWindowMinutes", 15, 5, 1440),
        stale_after_minutes=cfg.integer("bikeShareStaleAfterMinutes", 15, 2, 1440),
        check_interval_seconds=cfg.integer("bikeShareCheckIntervalSeconds", 60, 15, 3600),
        notification_handles=handles,
    )


def _timezone(cfg: ConfigReader, name: str, default: str) -> str:
    value = cfg.raw(name)
    if value is None:
        return default
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        cfg.fail(name, value, "must be an IANA timezone such as America/New_York or Europe/Paris")
        return default
    return value


def _datadog_site(datadog: ConfigReader) -> str:
    """The Agent's `site`, derived from the provider's `datadog:apiUrl`."""
    url = datadog.raw("apiUrl")
    if url is None:
        return "datadoghq.com"
    match = re.fullmatch(r"https://api\.([a-z0-9.\-]+?)/?", url)
    if match is None or match.group(1) not in DATADOG_SITES:
        datadog.fail("apiUrl", url, "must be https://api.<site>/ with site one of " + ", ".join(DATADOG_SITES))
        return "datadoghq.com"
    return match.group(1)
