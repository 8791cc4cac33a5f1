"""observability-lab: Datadog-monitored EC2 hosts and their Datadog objects, per stack."""

from typing import Optional

import pulumi

from components.bike_share import BikeShareArgs, BikeShareMonitoring
from components.bootstrap import AgentBootstrap
from components.bundle import AppTraffic, BikeShareCheck, BundleArgs, render_bundle
from components.converge import ConvergeAssociation, HostConfiguration
from components.dashboards import Dashboards, DashboardsArgs
from components.datadog_common import HostScope, app_base_url
from components.downtimes import Downtimes, DowntimesArgs
from components.host import HostAccess, HostAccessArgs, MonitoredHost, MonitoredHostArgs
from components.monitors import Audience, Monitors, MonitorsArgs
from components.settings import Settings, load_settings
from components.slos import ServiceLevelObjectives, SlosArgs


# Each component's own arguments, from the stack's settings.
def bundle_args(s: Settings) -> BundleArgs:
    bike = s.bike_share
    return BundleArgs(
        env=s.env, service=s.service, aws_region=s.aws_region, datadog_site=s.datadog_site,
        api_key_parameter_name=s.api_key_parameter_name, agent_version=s.agent.version,
        host_tags=s.agent.host_tags, check_interval_seconds=s.agent.check_interval_seconds,
        watched_processes=s.monitors.watched_processes, app_port=s.host.app_port, app_workers=s.app.workers,
        url_lookup_allowlist=s.app.url_lookup_allowlist, setup_overhead_min_ms=s.app.setup_overhead_min_ms,
        setup_overhead_max_ms=s.app.setup_overhead_max_ms, root_volume_gib=s.host.root_volume_gib,
        bike_share=BikeShareCheck(feed_url=bike.feed_url, station_ids=bike.station_ids,
                                  largest_stations=bike.largest_stations,
                                  check_interval_seconds=bike.check_interval_seconds) if bike.enabled else None,
        traffic=AppTraffic(requests_per_second=s.app.traffic_requests_per_second,
                           url_lookup_percent=s.app.traffic_url_lookup_percent,
                           fail_percent=s.app.traffic_fail_percent) if s.app.traffic_enabled else None)


def host_access_args(s: Settings, configuration: HostConfiguration) -> HostAccessArgs:
    return HostAccessArgs(
        env=s.env, name_prefix=s.name_prefix, tags=s.aws_tags, aws_region=s.aws_region,
        api_key_parameter_name=s.api_key_parameter_name, api_key_kms_alias=s.api_key_kms_alias,
        api_key=s.datadog_api_key, deployer_arns=s.host.deployer_arns,
        config_parameter=configuration.parameter, config_document_prefix=s.config_document_prefix,
        app_port=s.host.app_port, app_allowed_cidrs=s.host.app_allowed_cidrs, subnet_id=s.host.subnet_id,
        ami_id=s.host.ami_id, ubuntu_image_name=s.host.ubuntu_image_name)


def host_args(s: Settings, index: int, user_data: str) -> MonitoredHostArgs:
    return MonitoredHostArgs(
        datadog_hostname=s.datadog_hostname(index), name=s.name(f"host-{index}"), tags=s.aws_tags,
        fleet_tag=s.fleet_tag, instance_type=s.host.instance_type, root_volume_gib=s.host.root_volume_gib,
        user_data=user_data, app_port=s.host.app_port, aws_region=s.aws_region)


def audience(s: Settings, handles: Optional[tuple[str, ...]] = None) -> Audience:
    return Audience(env=s.env, tags=s.standard_tags, handles=handles or s.monitors.notification_handles,
                    footer=s.monitors.message_footer, no_data_minutes=s.monitors.no_data_minutes)


def monitors_args(s: Settings, hosts: HostScope) -> MonitorsArgs:
    m = s.monitors
    return MonitorsArgs(
        hosts=hosts, service=s.service, my_metric_warning=m.my_metric_warning,
        my_metric_critical=m.my_metric_critical, my_metric_window_minutes=m.my_metric_window_minutes,
        watched_processes=m.watched_processes, app_workers=s.app.workers,
        app_error_logs_per_host=m.app_error_logs_per_host)


def bike_share_args(s: Settings, hosts: HostScope) -> BikeShareArgs:
    bike = s.bike_share
    return BikeShareArgs(hosts=hosts, empty_below_bikes=bike.empty_below_bikes,
                         full_below_docks=bike.full_below_docks, window_minutes=bike.window_minutes,
                         stale_after_minutes=bike.stale_after_minutes, feed_url=bike.feed_url)


def host_outputs(host: MonitoredHost) -> dict[str, pulumi.Output[str]]:
    return {"instanceId": host.instance_id, "publicDns": host.public_dns, "appUrl": host.app_url,
            "ssmSessionCommand": host.ssm_session_command}


settings = load_settings()
# Every host of the stack, and nothing else, carries these host tags: the Datadog objects
# below watch them, one object per concern whatever the number of hosts.
stack_hosts = HostScope(tags=settings.stack_host_tags, hostnames=settings.datadog_hostnames)

# One rendering of userdata/ for every host, run by two triggers: each host's first boot,
# and the SSM association after every change. Only the image and the subnet replace a host.
configuration = HostConfiguration(
    "host-config", render_bundle(bundle_args(settings)), name_prefix=settings.config_document_prefix,
    parameter_name=settings.config_parameter_name,
    description=f"observability-lab {settings.env}: unpack a configuration bundle and converge the host on it",
    tags={"Name": settings.name("host-config"), **settings.aws_tags})
bootstrap = AgentBootstrap("bootstrap", settings.config_parameter_name, settings.config_document_prefix)
access = HostAccess("host", host_access_args(settings, configuration))
hosts = [MonitoredHost(f"host-{n}", host_args(settings, n, bootstrap.user_data), access,
                       # Host 1 is the stack's single host of before: it keeps its instance.
                       instance_aliases=[access.single_host_instance_urn] if n == 1 else [])
         for n in range(1, settings.host.count + 1)]
converge = ConvergeAssociation("host-config-run", configuration,
                               instance_ids=[host.instance_id for host in hosts],
                               after=[host.instance for host in hosts])
slos = ServiceLevelObjectives("datadog-slos", SlosArgs(service=settings.service, slos=settings.slos),
                              page=audience(settings, handles=settings.slos.page_handles),
                              ticket=audience(settings, handles=settings.slos.ticket_handles))
dashboards = Dashboards("datadog-dashboards", DashboardsArgs(
    env=settings.env, stack=settings.stack, service=settings.service, hosts=stack_hosts,
    url_base=app_base_url(settings.datadog_site), slo_ids=slos.ids, slo_timeframe=settings.slos.timeframe))
monitors = Monitors("datadog-monitors", monitors_args(settings, stack_hosts), audience(settings))
if settings.downtimes.enabled:  # e.g. dev mutes nights and weekends; prod never does
    Downtimes("datadog-downtimes", DowntimesArgs(env=settings.env, timezone=settings.downtimes.timezone,
                                                 handles=settings.monitors.notification_handles),
              monitor=monitors.my_metric)
monitor_ids, dashboard_urls = {**monitors.ids, **slos.alert_ids}, dict(dashboards.urls)
if settings.bike_share.enabled:  # the seed's closing use case; dev on, prod off by default
    bike_share = BikeShareMonitoring(
        "bike-share", bike_share_args(settings, stack_hosts),
        audience(settings, handles=settings.bike_share.notification_handles),
        dashboard_url_base=app_base_url(settings.datadog_site))
    monitor_ids.update(bike_share.ids)
    dashboard_urls["bikeShare"] = bike_share.url

pulumi.export("environment", settings.env)
pulumi.export("hosts", {host.datadog_hostname: host_outputs(host) for host in hosts})
if len(hosts) == 1:  # the outputs of the one-host stacks, for the scripts that read them
    (host,) = hosts
    pulumi.export("datadogHostname", host.datadog_hostname)
    pulumi.export("instanceId", host.instance_id)
    pulumi.export("publicIp", host.public_ip)
    pulumi.export("publicDns", host.public_dns)
    pulumi.export("appUrl", host.app_url)
    pulumi.export("ssmSessionCommand", host.ssm_session_command)
pulumi.export("configDocument", configuration.document.name)
pulumi.export("convergeAssociationId", converge.association_id)
pulumi.export("dashboardUrls", dashboard_urls)
pulumi.export("monitorIds", monitor_ids)
pulumi.export("sloIds", slos.ids)
