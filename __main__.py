"""observability-lab: Datadog-monitored EC2 hosts and their Datadog objects, per stack."""

import pulumi

from components.bike_share import BikeShareMonitoring
from components.configuration import ConvergeAssociation, HostConfiguration, HostConfigurationArgs
from components.dashboards import Dashboards
from components.downtimes import Downtimes, DowntimesArgs
from components.host import HostAccess, HostAccessArgs, MonitoredHost, MonitoredHostArgs
from components.java_app import JavaAppMonitoring
from components.monitors import Monitors
from components.snapshots import DataSnapshots, DataSnapshotsArgs
from components.slos import ServiceLevelObjectives
from rendering.bike_share import BikeShareArgs
from rendering.bundle import bundle_args
from rendering.dashboards import DashboardsArgs
from rendering.first_boot import user_data
from rendering.java_app import JavaAppArgs
from rendering.monitors import MonitorsArgs
from rendering.slos import SlosArgs
from settings.stack import load_settings

settings = load_settings()
stack, naming = settings.stack, settings.naming

# One rendering of userdata/ for every host, run by two triggers: each host's first boot
# (its user-data fetches the document the parameter names) and the SSM association after
# every change. Only the image and the subnet replace a host.
configuration = HostConfiguration("host-config", HostConfigurationArgs(naming, bundle_args(settings)))
access = HostAccess("host", HostAccessArgs(naming, settings.host, stack.aws_region, stack.datadog_api_key,
                                           configuration.parameter))
first_boot = user_data(naming.config_parameter, naming.config_documents)
hosts = [MonitoredHost(f"host-{n}", MonitoredHostArgs(naming, n, settings.host, first_boot, stack.aws_region,
                                                         settings.data, settings.stack_name), access,
                       # Host 1 is the stack's single host of before: it keeps its instance.
                       instance_aliases=[access.single_host_instance_urn] if n == 1 else [])
         for n in range(1, settings.host.count + 1)]
# Each host's data volume outlives its instance; the stack snapshots them daily.
DataSnapshots("data-snapshots", DataSnapshotsArgs(naming, stack.aws_region, settings.data))
# After the data volumes are attached too: converge waits for its host's, but not for ever.
converge = ConvergeAssociation("host-config-run", configuration, instance_ids=[host.instance_id for host in hosts],
                               after=[r for host in hosts for r in (host.instance, host.data_volume_attachment)])

# Every host of the stack, and nothing else, carries the stack's host tags: the Datadog
# objects watch them, one object per concern whatever the number of hosts.
slos = ServiceLevelObjectives("datadog-slos", SlosArgs(naming, settings.slos, settings.monitors))
dashboards = Dashboards("datadog-dashboards", DashboardsArgs(naming, settings.stack_name, stack.datadog_site,
                                                             slo_ids=slos.ids, slo_timeframe=settings.slos.timeframe))
monitors = Monitors("datadog-monitors", MonitorsArgs(naming, settings.monitors, settings.agent, settings.app))
if settings.downtimes.enabled:  # e.g. dev mutes nights and weekends; prod never does
    Downtimes("datadog-downtimes", DowntimesArgs(naming, settings.downtimes, settings.monitors),
              monitor=monitors.my_metric)
monitor_ids, dashboard_urls = {**monitors.ids, **slos.alert_ids}, dict(dashboards.urls)
if settings.bike_share.enabled:  # the seed's closing use case; dev on, prod off by default
    bike_share = BikeShareMonitoring("bike-share", BikeShareArgs(
        naming, settings.bike_share, settings.monitors, stack.datadog_site))
    monitor_ids.update(bike_share.ids)
    dashboard_urls["bikeShare"] = bike_share.url
if settings.java_app.enabled:  # seed section 5, the Java app through JMX; dev on, prod off by default
    java_app = JavaAppMonitoring("java-app", JavaAppArgs(naming, settings.java_app, settings.monitors,
                                                         stack.datadog_site))
    monitor_ids.update(java_app.ids)
    dashboard_urls["javaApp"] = java_app.url


def host_outputs(host: MonitoredHost) -> dict[str, pulumi.Output[str]]:
    return {"instanceId": host.instance_id, "dataVolumeId": host.data_volume_id, "publicDns": host.public_dns,
            "appUrl": host.app_url, "ssmSessionCommand": host.ssm_session_command}


pulumi.export("environment", naming.env)
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
